/**
 * What both edges (uws-edge.ts, node-edge.ts) do the same way, so they keep
 * one contract: rate limit, signature checks, webhook parsing into typed
 * values (twilio/webhooks.ts), health, metrics, admin, upgrade checks, and
 * the life of one media stream (exactly one onClose, guarded handlers,
 * backpressure counted). An edge only moves bytes: it copies the request out
 * of its server, calls in here, and writes the HttpReply it gets back.
 *
 * Behaviour decisions (both edges):
 * - Signatures: checked whenever TWILIO_AUTH_TOKEN is set, over
 *   PUBLIC_URL + path (+ query). Without PUBLIC_URL the origin is derived as
 *   `https://<Host header>` (Twilio only calls https, and a TLS-terminating
 *   proxy keeps Host); the stream URL handed to the app is the same origin
 *   with wss. The upgrade is checked over `wss://…/voice/stream` with no params.
 * - STREAM_URL_TEMPLATE names this instance in the TwiML's stream URL (e.g.
 *   wss://{instance}.calls.example.com/voice/stream, or
 *   {publicUrl}/i/{instance}/voice/stream that the balancer routes on and
 *   strips to /voice/stream). The upgrade's signature is then accepted over
 *   that URL too, since it is the one Twilio signed, and over
 *   wss://<Host><path> (a host-per-instance stream failed over to this one).
 *   Only Twilio can sign with the auth token, and the stream's token is
 *   checked on `start` besides.
 * - A signed webhook whose body does not parse (twilio/webhooks.ts) → 400,
 *   counted as malformed `bad_webhook`; the app never sees it.
 * - GET /voice/health: 200 when the app reports `ok`, 503 when `degraded`
 *   (model unreachable) or `draining` (shutting down) so a load balancer
 *   drains this instance; the JSON body is the same either way.
 * - Client address: the peer's, unless the peer is in TRUST_PROXY; then the
 *   right-most X-Forwarded-For address that is not itself a trusted proxy.
 * - Rate limits, shaped for telephony (Twilio is a few addresses, often behind
 *   one proxy, so a per-address limit on genuine traffic would refuse calls):
 *   - with TWILIO_AUTH_TOKEN set, a webhook or upgrade that carries a valid
 *     signature is not counted per address; one that fails the check is
 *     counted per client address (RATE_LIMIT_UNSIGNED_*: burst 5, 10/min):
 *     403 while within it, 429 past it;
 *   - a signed /voice/incoming is counted per calling number (`From`,
 *     RATE_LIMIT_CALLER_*: burst 5, 10/min); past it the call gets the busy
 *     TwiML. Withheld numbers share one `From` ("anonymous") and so one bucket;
 *   - everything else (health, metrics, admin, 404s, and every webhook and
 *     upgrade when running unsigned) shares one bucket per client address
 *     (`rateLimit`, default RATE_LIMIT_BURST / RATE_LIMIT_PER_SECOND). Over → 429.
 * - Bodies over MAX_BODY_BYTES → 413 (early from Content-Length, with the
 *   connection closed). Frames over MAX_WS_MESSAGE_BYTES close the socket,
 *   counted as malformed `oversize_frame`; other framing errors `ws_protocol`.
 * - Capacity: app.openStream → null or `capacity` closes with 1013 (try again
 *   later), `draining` with 1001 (going away); a throw closes with 1011.
 * - GET /calls… answers carry `Cache-Control: no-store` (call records are personal data).
 */
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { AdminReader, AdminRequest, StreamHandler, StreamInfo, StreamRefusal, TwilioSocket, VoiceApp } from '../call/ports.js';
import { verifyTwilioSignature } from '../twilio/signature.js';
import { parseForm, parseStatusCallback, parseVoiceWebhook } from '../twilio/webhooks.js';
import { BlockList, isIP } from 'node:net';
import { Gauge } from 'prom-client';
import { buildRejectTwiml, streamUrlFromTemplate } from '../twilio/twiml.js';
import type { Metrics } from './metrics.js';
import { RateLimiter } from './rate-limit.js';

/** A Twilio media frame is < 1 KiB; anything near this is not Twilio. */
export const MAX_WS_MESSAGE_BYTES = 64 * 1024;
export const MAX_BODY_BYTES = 64 * 1024;
/** Per-socket send buffer past which send() drops frames: >10 s of outbound media frames (~15 KB/s). */
export const MAX_BACKPRESSURE_BYTES = 256 * 1024;
/** Twilio sends media every 20 ms; a silent socket for this long is dead (s). */
export const WS_IDLE_TIMEOUT_S = 60;

export type Route = 'incoming' | 'status' | 'health' | 'metrics' | 'admin' | 'other';

export interface HttpReply {
  route: Route;
  status: number;
  body: string;
  type: string;
  /** Close the connection after this reply (the request body was not read). */
  closeConnection?: boolean;
  /** Extra response headers (lower-case names). */
  headers?: Record<string, string>;
}

/** A webhook request as copied out of the edge's server. `body` null = over MAX_BODY_BYTES. */
export interface WebhookRequest {
  host: string;
  /** Path without the query, as sent (not decoded). */
  path: string;
  /** Query without the '?', '' when none. */
  query: string;
  signature: string;
  body: Buffer | null;
  /** The client address (EdgeCore.clientAddress). */
  client: string;
}

export interface UpgradeRequest {
  /** The peer address of the TCP connection. */
  remoteAddress: string;
  /** The X-Forwarded-For header, '' when absent. */
  forwardedFor: string;
  host: string;
  path: string;
  query: string;
  signature: string;
}

export type SendResult = 'sent' | 'backpressure' | 'dropped';

/** One websocket as an edge drives it. */
export interface RawStream {
  /** Send a text frame: sent; queued under backpressure (wait for drain); or dropped (over MAX_BACKPRESSURE_BYTES). */
  send(text: string): SendResult;
  bufferedAmount(): number;
  cork(fn: () => void): void;
  /** Start closing with this code and reason (≤ 123 bytes). The edge then calls StreamBinding.closed once. */
  end(code: number, reason: Buffer): void;
}

/** A listening edge. */
export interface EdgeServer {
  port: number;
  /** Stop listening, close every stream (1001), wait for their handlers' onClose, drop idle HTTP connections. */
  close(): Promise<void>;
}

export interface EdgeOptions {
  config: Config;
  app: VoiceApp;
  log: Logger;
  metrics: Metrics;
  /** GET /calls… (absent → 404). */
  admin?: AdminReader;
  rateLimit?: { burst: number; perSecond: number };
}

const text = 'text/plain; charset=utf-8';
const json = 'application/json';
/** Call records are personal data: no cache (browser, proxy) may keep them. */
const NO_STORE = { 'cache-control': 'no-store' };
const reply = (route: Route, status: number, body: string, type = text): HttpReply => ({ route, status, body, type });

/** Which route a request goes to (the same table on both edges). */
export function routeOf(method: string, path: string, config: Config): Route {
  const m = method.toUpperCase();
  if (m === 'POST' && path === '/voice/incoming') return 'incoming';
  if (m === 'POST' && path === '/voice/status') return 'status';
  if (m === 'GET' && path === '/voice/health') return 'health';
  if (m === 'GET' && path === '/metrics' && config.metrics) return 'metrics';
  if (m === 'GET' && (path === '/calls' || path.startsWith('/calls/'))) return 'admin';
  return 'other';
}

export class EdgeCore {
  readonly config: Config;
  readonly log: Logger;
  readonly metrics: Metrics;
  private readonly app: VoiceApp;
  private readonly adminReader?: AdminReader;
  private readonly limiter: RateLimiter;
  private readonly unsignedLimiter: RateLimiter;
  private readonly callerLimiter: RateLimiter;
  private readonly trusted: BlockList | undefined;
  private readonly streams = new Set<StreamBinding>();
  private onAllClosed: (() => void) | undefined;

  constructor(opts: EdgeOptions) {
    this.config = opts.config;
    this.app = opts.app;
    this.log = opts.log;
    this.metrics = opts.metrics;
    this.adminReader = opts.admin;
    const general = opts.rateLimit ?? this.config.rateLimit;
    this.limiter = new RateLimiter(general.burst, general.perSecond);
    this.unsignedLimiter = new RateLimiter(this.config.unsignedLimit.burst, this.config.unsignedLimit.perMinute / 60);
    this.callerLimiter = new RateLimiter(this.config.callerLimit.burst, this.config.callerLimit.perMinute / 60);
    if (this.config.trustProxy.length > 0) {
      this.trusted = new BlockList();
      for (const c of this.config.trustProxy) this.trusted.addSubnet(c.address, c.prefix, c.family);
    }
    const { metrics, app, log } = this;
    // Active calls as the app counts them (streams that got a handler and have not ended).
    if (!metrics.registry.getSingleMetric('callbridge_active_calls')) {
      new Gauge({
        name: 'callbridge_active_calls',
        help: 'Calls in progress, as VoiceApp.health() reports them',
        registers: [metrics.registry],
        collect() {
          try {
            this.set(app.health().activeCalls);
          } catch (err) {
            metrics.handlerErrors.inc({ handler: 'health' });
            log.error({ err }, 'health() failed while collecting metrics');
          }
        },
      });
    }
  }

  /** The URL Twilio used, for signatures: PUBLIC_URL when set, else https://<Host>. */
  publicOrigin(host: string): string {
    return this.config.publicUrl ?? `https://${host}`;
  }

  wsOrigin(host: string): string {
    return this.publicOrigin(host).replace(/^http/, 'ws');
  }

  /** The stream URL put in the TwiML: STREAM_URL_TEMPLATE for this instance, else the origin's /voice/stream. */
  streamUrl(host: string): string {
    const template = this.config.streamUrlTemplate;
    if (!template) return `${this.wsOrigin(host)}/voice/stream`;
    return streamUrlFromTemplate(template, { instance: this.config.instanceId ?? '', publicUrl: this.wsOrigin(host) });
  }

  /** Count a reply the edge has written. */
  counted(r: HttpReply): void {
    this.metrics.httpRequests.inc({ route: r.route, status: String(r.status) });
  }

  /**
   * The client's address: `peer`, or when `peer` is a trusted proxy
   * (TRUST_PROXY), the right-most X-Forwarded-For entry that is not itself
   * trusted (the left-most when all are). Addresses come back canonical
   * (IPv4 dotted, IPv6 compressed), so one client is one rate-limit key.
   */
  clientAddress(peer: string, forwardedFor: string): string {
    const p = canonicalIp(peer) ?? peer;
    if (!this.trusted || !this.isTrusted(p)) return p;
    const hops = forwardedFor.split(',').map((h) => canonicalIp(h)).filter((h): h is string => h !== null);
    for (let i = hops.length - 1; i >= 0; i--) if (!this.isTrusted(hops[i]!)) return hops[i]!;
    return hops[0] ?? p;
  }

  private isTrusted(ip: string): boolean {
    return this.trusted!.check(ip, ip.includes(':') ? 'ipv6' : 'ipv4');
  }

  /** Rate limit an HTTP request from `client` (clientAddress): null to go on, or the 429 to send. */
  limitHttp(client: string, route: Route): HttpReply | null {
    // Signed webhooks are limited in webhook(), once the signature is known.
    if ((route === 'incoming' || route === 'status') && this.config.twilioAuthToken) return null;
    if (this.limiter.allow(client)) return null;
    this.metrics.rateLimited.inc({ kind: 'http' });
    return reply(route, 429, 'too many requests\n');
  }

  /** A 413 sent before reading the body (Content-Length over the limit); the connection is closed after it. */
  tooLarge(route: Route): HttpReply {
    return { ...reply(route, 413, 'body too large\n'), closeConnection: true };
  }

  /** A handler threw: count and log it, answer 500. */
  failed(route: Route, err: unknown, handler: string = route): HttpReply {
    this.metrics.handlerErrors.inc({ handler });
    this.log.error({ err, route }, 'http handler failed');
    return route === 'admin'
      ? { ...reply(route, 500, '{"error":"internal error"}', json), headers: NO_STORE }
      : reply(route, 500, 'internal error\n');
  }

  notFound(route: Route = 'other'): HttpReply {
    return reply(route, 404, 'not found\n');
  }

  /** POST /voice/incoming and /voice/status: signature over the form, then the typed body to the app. Never throws. */
  webhook(route: 'incoming' | 'status', r: WebhookRequest): HttpReply {
    try {
      if (r.body === null) return reply(route, 413, 'body too large\n');
      const form = parseForm(r.body);
      const token = this.config.twilioAuthToken;
      const url = this.publicOrigin(r.host) + r.path + (r.query ? `?${r.query}` : '');
      if (token && !verifyTwilioSignature(token, r.signature || undefined, url, form)) {
        return this.signatureFailed(route, r.client) ?? reply(route, 403, 'forbidden\n');
      }
      if (route === 'incoming') {
        const call = parseVoiceWebhook(form);
        if (!call.ok) return this.badWebhook(route, call.error);
        if (token && !this.callerLimiter.allow(call.value.from)) {
          this.metrics.rateLimited.inc({ kind: 'caller' });
          this.log.warn({ callSid: call.value.callSid }, 'too many call set-ups from this calling number: busy');
          return reply(route, 200, buildRejectTwiml(), 'text/xml');
        }
        const result = this.app.incoming(call.value, this.streamUrl(r.host));
        return result.ok ? reply(route, 200, result.twiml, 'text/xml') : reply(route, result.status, `${result.message}\n`);
      }
      const cb = parseStatusCallback(form);
      if (!cb.ok) return this.badWebhook(route, cb.error);
      this.app.status(cb.value);
      return reply(route, 204, '');
    } catch (err) {
      return this.failed(route, err);
    }
  }

  /** A request failed the signature check: counted per client address; the 429 once past RATE_LIMIT_UNSIGNED_*, else null (answer 403). */
  private signatureFailed(route: Route | 'stream', client: string): HttpReply | null {
    this.metrics.signatureRejections.inc({ route });
    if (!this.unsignedLimiter.allow(client)) {
      this.metrics.rateLimited.inc({ kind: 'unsigned' });
      return reply(route === 'stream' ? 'other' : route, 429, 'too many requests\n');
    }
    this.log.warn({ route, client }, 'bad or missing X-Twilio-Signature');
    return null;
  }

  private badWebhook(route: Route, error: string): HttpReply {
    this.metrics.malformed.inc({ reason: 'bad_webhook' });
    this.log.warn({ route, error }, 'signed webhook with a body that does not parse');
    return reply(route, 400, `bad request: ${error}\n`);
  }

  health(): HttpReply {
    try {
      const h = this.app.health();
      return reply('health', h.status === 'ok' ? 200 : 503, JSON.stringify(h), json);
    } catch (err) {
      return this.failed('health', err);
    }
  }

  async metricsText(): Promise<HttpReply> {
    try {
      return reply('metrics', 200, await this.metrics.registry.metrics(), this.metrics.registry.contentType);
    } catch (err) {
      this.log.error({ err }, 'metrics collection failed');
      return reply('metrics', 500, 'metrics failed\n');
    }
  }

  /** GET /calls…: the admin reader's answer as JSON; a throw, a rejection or an unserialisable body → 500. */
  async admin(req: AdminRequest): Promise<HttpReply> {
    if (!this.adminReader) return this.notFound('admin');
    try {
      const r = await this.adminReader(req);
      return { ...reply('admin', r.status, JSON.stringify(r.body), json), headers: NO_STORE };
    } catch (err) {
      return this.failed('admin', err);
    }
  }

  /** WS /voice/stream upgrade checks: null to accept, or the refusal to answer. */
  checkUpgrade(u: UpgradeRequest): HttpReply | null {
    const client = this.clientAddress(u.remoteAddress, u.forwardedFor);
    const token = this.config.twilioAuthToken;
    if (token) {
      const url = `${this.wsOrigin(u.host)}${u.path}${u.query ? `?${u.query}` : ''}`;
      if (verifyTwilioSignature(token, u.signature || undefined, url, {})) return null;
      if (this.config.streamUrlTemplate && !u.query) {
        // Signed over this instance's templated URL, which the balancer rewrote to /voice/stream on the way here;
        // or over a host-per-instance URL naming another instance, whose stream the balancer sent here instead
        // (that instance is gone): the URL Twilio used is then this request's Host and path.
        const urls = [this.streamUrl(u.host), `wss://${u.host}${u.path}`];
        if (urls.some((url) => verifyTwilioSignature(token, u.signature || undefined, url, {}))) return null;
      }
      const limited = this.signatureFailed('stream', client);
      this.metrics.streamsRefused.inc({ reason: limited ? 'rate_limited' : 'signature' });
      return limited ?? reply('other', 403, 'forbidden\n');
    }
    if (!this.limiter.allow(client)) {
      this.metrics.rateLimited.inc({ kind: 'upgrade' });
      this.metrics.streamsRefused.inc({ reason: 'rate_limited' });
      return reply('other', 429, 'too many requests\n');
    }
    return null;
  }

  /** An accepted websocket: bind it to the app (call `open()` next). */
  attach(raw: RawStream, info: StreamInfo): StreamBinding {
    const b = new StreamBinding(this, raw, info, this.app);
    this.streams.add(b);
    this.metrics.activeStreams.set(this.streams.size);
    return b;
  }

  /** @internal StreamBinding reports its close here. */
  detach(b: StreamBinding): void {
    if (!this.streams.delete(b)) return;
    this.metrics.activeStreams.set(this.streams.size);
    if (this.streams.size === 0) this.onAllClosed?.();
  }

  /** Close every stream with 1001; resolves once every one has reported its close. */
  closeAllStreams(): Promise<void> {
    return new Promise<void>((resolve) => {
      if (this.streams.size === 0) return resolve();
      this.onAllClosed = resolve;
      for (const b of [...this.streams]) b.endQuietly(1001, 'server shutting down');
    });
  }

  get openStreams(): number {
    return this.streams.size;
  }
}

/**
 * One media stream between an edge and the app. Guarantees: the handler's
 * onClose runs exactly once (also when openStream closed the socket before
 * returning); sends after close return false; every handler call is guarded.
 */
export class StreamBinding {
  private handler: StreamHandler | null = null;
  private isClosed = false;
  private closeCode = 0;
  private closeReason = '';
  readonly port: TwilioSocket;

  constructor(
    private readonly core: EdgeCore,
    private readonly raw: RawStream,
    private readonly info: StreamInfo,
    private readonly app: VoiceApp,
  ) {
    const metrics = core.metrics;
    this.port = {
      send: (t) => {
        if (this.isClosed) return false;
        const r = raw.send(t);
        if (r === 'sent') return true;
        metrics.backpressure.inc({ result: r === 'dropped' ? 'dropped' : 'backpressure' });
        return false;
      },
      bufferedAmount: () => (this.isClosed ? 0 : raw.bufferedAmount()),
      cork: (fn) => {
        if (this.isClosed) fn();
        else raw.cork(fn);
      },
      close: (code = 1000, reason = '') => {
        if (this.isClosed) return;
        raw.end(code, closeReasonBytes(reason));
      },
    };
  }

  /** Ask the app for a handler: refusal → 1013 (capacity) or 1001 (draining), a throw → 1011. */
  open(): void {
    const { metrics, log } = this.core;
    let handler: StreamHandler | StreamRefusal | null;
    try {
      handler = this.app.openStream(this.port, this.info);
    } catch (err) {
      metrics.handlerErrors.inc({ handler: 'openStream' });
      metrics.streamsRefused.inc({ reason: 'error' });
      log.error({ err }, 'openStream failed');
      this.endQuietly(1011, 'internal error');
      return;
    }
    if (!handler || 'refused' in handler) {
      const draining = handler?.refused === 'draining';
      metrics.streamsRefused.inc({ reason: draining ? 'draining' : 'capacity' });
      if (draining) this.endQuietly(1001, 'server shutting down');
      else this.endQuietly(1013, 'try again later');
      return;
    }
    this.handler = handler;
    metrics.streamsOpened.inc();
    // openStream closed the socket itself: the close has passed, so report it now (still exactly once).
    if (this.isClosed) this.guarded('close', () => handler.onClose(this.closeCode, this.closeReason));
  }

  text(t: string): void {
    const h = this.handler;
    if (h && !this.isClosed) this.guarded('message', () => h.onText(t));
  }

  binary(byteLength: number): void {
    const h = this.handler;
    if (h && !this.isClosed) this.guarded('message', () => h.onBinary(byteLength));
  }

  drain(): void {
    const h = this.handler;
    if (h && !this.isClosed) this.guarded('drain', () => h.onDrain());
  }

  /** The socket closed (either side). `malformed`: the edge closed it on bad input (counted). Idempotent. */
  closed(code: number, reason: string, malformed?: 'oversize_frame' | 'ws_protocol'): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.closeCode = code;
    this.closeReason = reason;
    if (malformed) {
      this.core.metrics.malformed.inc({ reason: malformed });
      this.core.log.warn({ remoteAddress: this.info.remoteAddress, reason }, 'stream closed on malformed input');
    }
    const h = this.handler;
    if (h) this.guarded('close', () => h.onClose(code, reason));
    this.core.detach(this);
  }

  /** Close from the edge's side (refusal, shutdown); never throws. */
  endQuietly(code: number, reason: string): void {
    if (this.isClosed) return;
    try {
      this.raw.end(code, closeReasonBytes(reason));
    } catch {
      /* already closing */
    }
  }

  private guarded(handler: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.core.metrics.handlerErrors.inc({ handler });
      this.core.log.error({ err }, `stream ${handler} handler failed`);
    }
  }
}

/** An address as written by a socket or in X-Forwarded-For ("1.2.3.4", "1.2.3.4:80", "[::1]:443", "::ffff:1.2.3.4", uWS's long IPv6 form) → canonical text; null when not an address. */
export function canonicalIp(raw: string): string | null {
  let a = raw.trim();
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(a);
  if (bracketed) a = bracketed[1]!;
  else if (/^[\d.]+:\d+$/.test(a)) a = a.slice(0, a.lastIndexOf(':'));
  const v = isIP(a);
  if (v === 4) return a;
  if (v !== 6) return null;
  let h: string;
  try {
    h = new URL(`http://[${a}]/`).hostname.slice(1, -1); // compressed, lower case
  } catch {
    return null;
  }
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(h);
  if (mapped) {
    const hi = parseInt(mapped[1]!, 16);
    const lo = parseInt(mapped[2]!, 16);
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  return h;
}

/** A close reason is at most 123 bytes of UTF-8 (RFC 6455 §5.5); cut on a character boundary. */
export function closeReasonBytes(reason: string): Buffer {
  const bytes = Buffer.from(reason, 'utf8');
  if (bytes.length <= 123) return bytes;
  let end = 123;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--; // don't split a multi-byte character
  return bytes.subarray(0, end);
}

const STATUS_TEXT: Record<number, string> = {
  200: 'OK', 204: 'No Content', 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found',
  405: 'Method Not Allowed', 413: 'Payload Too Large', 429: 'Too Many Requests', 500: 'Internal Server Error', 503: 'Service Unavailable',
};

export function statusText(status: number): string {
  return STATUS_TEXT[status] ?? 'Status';
}
