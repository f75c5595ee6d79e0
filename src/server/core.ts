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
 *   wss://<Host><path> (a host-per-instance stream failed over to this one)
 *   when the template's host names {instance} and the Host header is that
 *   host with one DNS label for it; a Host the template cannot produce is
 *   never used for a signed URL. Only Twilio can sign with the auth token,
 *   and the stream's token is checked on `start` besides.
 * - A signed webhook whose body does not parse (twilio/webhooks.ts) → 400,
 *   counted as malformed `bad_webhook`; the app never sees it.
 * - GET /voice/health: 200 when the app reports `ok`, 503 when `draining`
 *   (shutting down) so a load balancer drains this instance; a model outage
 *   is in the body, never a 503 (call/relay.ts). The JSON body is the app's report; without
 *   `Authorization: Bearer <ADMIN_TOKEN>` every error text in it is left out
 *   (withoutErrorText), with it the whole report (Cache-Control: no-store).
 * - Client address: the peer's, unless the peer is in TRUST_PROXY; then the
 *   right-most X-Forwarded-For address that is not itself a trusted proxy,
 *   over every X-Forwarded-For line of the request (joined in order). Per
 *   address limits key IPv4 by address and IPv6 by its /64 (addressKey).
 * - Rate limits, shaped for telephony (Twilio is a few addresses, often behind
 *   one proxy, so a per-address limit on genuine traffic would refuse calls):
 *   - with TWILIO_AUTH_TOKEN set, a webhook or upgrade that fails the
 *     signature check (or a webhook refused for its size or field count) is
 *     counted per client address (RATE_LIMIT_UNSIGNED_*: burst 5, 10/min):
 *     403 while within it, 429 past it. While an address is past it, its
 *     webhooks get 429 before their body is read (the bucket is only looked
 *     at, not charged), so a flood of forged webhooks costs no parse or HMAC;
 *   - a validly signed upgrade or status callback is counted per client
 *     address (RATE_LIMIT_SIGNED_*: burst 1000, 100/s): signatures carry no
 *     nonce and replay; past it → 429. A signed /voice/incoming is not;
 *   - a signed /voice/incoming is counted per calling number (`From`,
 *     RATE_LIMIT_CALLER_*: burst 5, 10/min); past it the call gets the busy
 *     TwiML. Withheld numbers share one `From` ("anonymous") and so one bucket;
 *   - everything else (health, metrics, admin, 404s, and every webhook and
 *     upgrade when running unsigned) shares one bucket per client address
 *     (`rateLimit`, default RATE_LIMIT_BURST / RATE_LIMIT_PER_SECOND). Over → 429.
 * - Bodies over MAX_BODY_BYTES (8 KiB) → 413, early from Content-Length or as
 *   soon as a streamed body passes it, with the connection closed; more than
 *   MAX_WEBHOOK_FIELDS form fields → 413, before any signature work.
 * - Streams awaiting `start` (opened, handler given, no frame yet that parses
 *   as a `start`): at most MAX_STREAMS_AWAITING_START; one more closes the
 *   oldest such stream with 1013 (counted as refused `awaiting_start`), so
 *   replayed upgrades that never start cannot hold the call slots, and a
 *   genuine stream, which starts within a round trip, is never the oldest
 *   (unless more streams than the cap open at once: keep it at or above
 *   MAX_PENDING_CALLS, the calls answered here whose stream is on its way).
 * - Frames over MAX_WS_MESSAGE_BYTES close the socket,
 *   counted as malformed `oversize_frame`; other framing errors `ws_protocol`.
 * - Capacity: app.openStream → null or `capacity` closes with 1013 (try again
 *   later), `draining` with 1001 (going away); a throw closes with 1011.
 * - GET /calls… answers carry `Cache-Control: no-store` (call records are personal data);
 *   DELETE /calls/:sid goes to the same reader; GET /calls/:sid/recording to
 *   the recording reader (audio bytes, one range per request), no-store too.
 * - Call control webhooks: POST /voice/action and /voice/dial-action (query
 *   `leg`, 1..MAX_LEG, else 400), /voice/whisper (query `target` and
 *   `agent`, else 400) and /voice/amd are signed, limited, capped and parsed
 *   exactly like /voice/incoming, and charged like /voice/status to the
 *   signed limiter (signatures replay). A refusal from the app (a replayed
 *   action) is its status (403). A route whose handler the app or the
 *   OutboundApp lacks → 404 before its body is read.
 * - /voice/incoming with query `o`: an outbound call's sealed token
 *   (OutboundApp.openCallToken) → its agent and context for the app; a token
 *   that does not open (or no OutboundApp) → 403. A call whose token opened
 *   is not counted per calling number (its `From` is ours, shared by every
 *   placed call; OUTBOUND_CPS paces them).
 * - POST /calls (OutboundApp.placeCall): a JSON body ≤ MAX_BODY_BYTES read by
 *   the edge (over → 413), the Authorization header passed on (the handler
 *   checks ADMIN_TOKEN), the general per-address limit; the answer is JSON
 *   with `Cache-Control: no-store`; absent OutboundApp → 404.
 * - /console and /console/* (every method, route `console`): the ConsoleApp
 *   (absent → 404). The general per-address limit applies. POST, PUT and
 *   DELETE bodies are read (≤ MAX_BODY_BYTES, over → 413 as elsewhere),
 *   other methods get body null; headers (lower-case), query and the client
 *   address (TRUST_PROXY applied) are copied into a ConsoleRequest. A throw or
 *   rejection → 500 JSON, logged. A BinaryResponse is written as it is: its
 *   status, type, headers (a header that is not valid HTTP is left out and
 *   logged; one `set-cookie` value is one cookie) and body. An event stream
 *   (consoleStream/EventStreamBinding): status 200 with EVENT_STREAM_HEADERS
 *   and the reply's own, an SSE comment line so the head reaches the client
 *   at once on both edges, then `stream.open(send, end)` once. `send` writes
 *   at once; false when the socket is backpressured, and the chunk is dropped
 *   once MAX_BACKPRESSURE_BYTES are queued. The function `open` returned is
 *   called exactly once, whichever ends the stream first: the client going
 *   away, the app's `end()`, or the server closing (closeAllEventStreams, so
 *   an open console tab never holds a shutdown); `send` is never honoured
 *   after it.
 */
import type { Logger } from '../log.js';
import type {
  AdminReader, AdminRequest, CallUrls, ConsoleApp, ConsoleRequest, EventStream, RecordingReader, IncomingOptions, IncomingResult, OutboundApp, StreamHandler,
  StreamInfo, StreamRefusal, TwilioSocket, VoiceApp,
} from '../call/ports.js';
import { MAX_LEG } from '../call/admission-token.js';
import { verifyTwilioSignature } from '../twilio/signature.js';
import {
  countFormFields, parseAmdCallback, parseConnectAction, parseDialAction, parseForm, parseStatusCallback, parseVoiceWebhook,
  type FormParams,
} from '../twilio/webhooks.js';
import { parseTwilioMessage } from '../twilio/media-stream.js';
import { bearerCheck } from '../admin/bearer.js';
import { BlockList, isIP } from 'node:net';
import { Gauge } from 'prom-client';
import { buildRejectTwiml, streamUrlFromTemplate } from '../twilio/twiml.js';
import type { Metrics } from './metrics.js';
import { addressKey, RateLimiter } from './rate-limit.js';

/** A Twilio media frame is < 1 KiB; anything near this is not Twilio. */
export const MAX_WS_MESSAGE_BYTES = 64 * 1024;
/** Webhook bodies (the only bodies read): Twilio's are ~1-2 KiB; a bigger one is refused before it is parsed. */
export const MAX_BODY_BYTES = 8 * 1024;
/** Form fields in a webhook body, at most (Twilio sends ~20-40): refused 413 before any signature work. */
export const MAX_WEBHOOK_FIELDS = 100;
/** Per-socket send buffer past which send() drops frames: >10 s of outbound media frames (~15 KB/s). */
export const MAX_BACKPRESSURE_BYTES = 256 * 1024;
/** Twilio sends media every 20 ms; a silent socket for this long is dead (s). */
export const WS_IDLE_TIMEOUT_S = 60;

export type Route = 'incoming' | 'status' | 'action' | 'dial_action' | 'whisper' | 'amd' | 'place_call' | 'health' | 'metrics' | 'admin' | 'console' | 'other';

/** The routes of Twilio's signed form webhooks. */
export type WebhookRoute = 'incoming' | 'status' | 'action' | 'dial_action' | 'whisper' | 'amd';
const WEBHOOK_ROUTES: ReadonlySet<Route> = new Set<Route>(['incoming', 'status', 'action', 'dial_action', 'whisper', 'amd']);

/** Whether `route` is a signed Twilio form webhook (read, capped and checked by EdgeCore.webhook). */
export function isWebhookRoute(route: Route): route is WebhookRoute {
  return WEBHOOK_ROUTES.has(route);
}

export interface HttpReply {
  route: Route;
  status: number;
  /** Text, or bytes (a recording). */
  body: string | Uint8Array;
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

/** The head of a console event stream, as an edge writes it before EventStreamBinding.open. */
export interface EventStreamReply {
  route: 'console';
  status: 200;
  /** EVENT_STREAM_HEADERS and the reply's own (lower-case names, valid HTTP). */
  headers: Record<string, string>;
  stream: EventStream;
}

/** What /console answers: an ordinary reply, or an event stream. */
export type ConsoleOutcome = HttpReply | EventStreamReply;

/** Response headers of every console event stream (the reply may add its own; its content-type never replaces this one). */
export const EVENT_STREAM_HEADERS: Readonly<Record<string, string>> = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-store',
  'x-accel-buffering': 'no',
};

/** Written first on every event stream: an SSE comment (ignored by EventSource), so the response head is flushed at once. */
export const EVENT_STREAM_PREAMBLE = ': stream open\n\n';

/** The methods whose body /console reads (≤ MAX_BODY_BYTES); any other method's body is not read. */
export const CONSOLE_BODY_METHODS: ReadonlySet<string> = new Set(['POST', 'PUT', 'DELETE']);

/** One event-stream response as an edge drives it. */
export interface RawEventStream {
  /** Write one chunk now: sent; queued under backpressure; or dropped (about MAX_BACKPRESSURE_BYTES already queued). Never throws. */
  write(chunk: string): SendResult;
  /** End the response (the edge then reports nothing more for it). Never throws. */
  end(): void;
}

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

/** One TRUST_PROXY entry: a subnet whose X-Forwarded-For is believed. */
export interface TrustedSubnet {
  address: string;
  /** Prefix length in bits. */
  prefix: number;
  family: 'ipv4' | 'ipv6';
}

/** What the edge reads (main.ts fills it in from the configuration; the variable names are in the file comment). */
export interface EdgeSettings {
  host: string;
  port: number;
  /** PUBLIC_URL without a trailing slash; undefined = https://<Host header>. */
  publicUrl: string | undefined;
  /** TWILIO_AUTH_TOKEN; undefined = no signature checks (ALLOW_UNSIGNED). */
  twilioAuthToken: string | undefined;
  /** Serve GET /metrics (METRICS). */
  serveMetrics: boolean;
  /** ADMIN_TOKEN: shows the health report's error texts; undefined = never shown. */
  adminToken: string | undefined;
  /** STREAM_URL_TEMPLATE; undefined = the origin's /voice/stream. */
  streamUrlTemplate: string | undefined;
  /** This instance's name for `{instance}` in the template (INSTANCE_ID); undefined = ''. */
  instanceId: string | undefined;
  /** Proxies whose X-Forwarded-For is believed (TRUST_PROXY); empty = the peer is the client. */
  trustProxy: TrustedSubnet[];
  /** The general per-address bucket (RATE_LIMIT_BURST / RATE_LIMIT_PER_SECOND). */
  rateLimit: { burst: number; perSecond: number };
  /** Failed signatures per client address (RATE_LIMIT_UNSIGNED_*). */
  unsignedLimit: { burst: number; perMinute: number };
  /** Signed call set-ups per calling number (RATE_LIMIT_CALLER_*). */
  callerLimit: { burst: number; perMinute: number };
  /** Signed upgrades and status callbacks per client address (RATE_LIMIT_SIGNED_*). */
  signedLimit: { burst: number; perSecond: number };
  /** Streams open without a valid `start`, at most (MAX_STREAMS_AWAITING_START). */
  maxStreamsAwaitingStart: number;
}

export interface EdgeOptions {
  settings: EdgeSettings;
  app: VoiceApp;
  log: Logger;
  metrics: Metrics;
  /** GET /calls…, DELETE /calls/:sid (absent → 404). */
  admin?: AdminReader;
  /** GET /calls/:sid/recording (absent → 404). */
  recording?: RecordingReader;
  /** POST /calls, POST /voice/amd and /voice/incoming's `o` token (absent → 404, 404, 403). */
  outbound?: OutboundApp;
  /** Everything under /console (absent → 404). */
  console?: ConsoleApp;
}

const text = 'text/plain; charset=utf-8';
const json = 'application/json';
/** Call records are personal data: no cache (browser, proxy) may keep them. */
const NO_STORE = { 'cache-control': 'no-store' };
const reply = (route: Route, status: number, body: string, type = text): HttpReply => ({ route, status, body, type });

/** Which route a request goes to (the same table on both edges). */
export function routeOf(method: string, path: string, settings: EdgeSettings): Route {
  const m = method.toUpperCase();
  if (m === 'POST' && path === '/voice/incoming') return 'incoming';
  if (m === 'POST' && path === '/voice/status') return 'status';
  if (m === 'POST' && path === '/voice/action') return 'action';
  if (m === 'POST' && path === '/voice/dial-action') return 'dial_action';
  if (m === 'POST' && path === '/voice/whisper') return 'whisper';
  if (m === 'POST' && path === '/voice/amd') return 'amd';
  if (m === 'POST' && path === '/calls') return 'place_call';
  if (m === 'GET' && path === '/voice/health') return 'health';
  if (m === 'GET' && path === '/metrics' && settings.serveMetrics) return 'metrics';
  if (m === 'GET' && (path === '/calls' || path.startsWith('/calls/'))) return 'admin';
  if (m === 'DELETE' && path.startsWith('/calls/')) return 'admin';
  if (path === '/console' || path.startsWith('/console/')) return 'console';
  return 'other';
}

export class EdgeCore {
  readonly settings: EdgeSettings;
  readonly log: Logger;
  readonly metrics: Metrics;
  private readonly app: VoiceApp;
  private readonly adminReader?: AdminReader;
  private readonly recordingReader?: RecordingReader;
  private readonly outbound?: OutboundApp;
  private readonly consoleApp?: ConsoleApp;
  /** Console event streams open now (ended by closeAllEventStreams on shutdown). */
  private readonly eventStreams = new Set<EventStreamBinding>();
  private readonly limiter: RateLimiter;
  private readonly unsignedLimiter: RateLimiter;
  private readonly callerLimiter: RateLimiter;
  private readonly signedLimiter: RateLimiter;
  private readonly trusted: BlockList | undefined;
  /** Host headers a host-per-instance STREAM_URL_TEMPLATE can name (its host, {instance} = one DNS label); undefined = none. */
  private readonly instanceHost: RegExp | undefined;
  /** `Authorization: Bearer <ADMIN_TOKEN>`; undefined without ADMIN_TOKEN (no one is admin). */
  private readonly isAdmin: ((authorization: string) => boolean) | undefined;
  private readonly streams = new Set<StreamBinding>();
  /** Streams with a handler and no `start` seen yet, oldest first. */
  private readonly awaitingStart = new Set<StreamBinding>();
  private onAllClosed: (() => void) | undefined;

  constructor(opts: EdgeOptions) {
    this.settings = opts.settings;
    this.app = opts.app;
    this.log = opts.log;
    this.metrics = opts.metrics;
    this.adminReader = opts.admin;
    this.recordingReader = opts.recording;
    this.outbound = opts.outbound;
    this.consoleApp = opts.console;
    const general = this.settings.rateLimit;
    this.limiter = new RateLimiter(general.burst, general.perSecond);
    this.unsignedLimiter = new RateLimiter(this.settings.unsignedLimit.burst, this.settings.unsignedLimit.perMinute / 60);
    this.callerLimiter = new RateLimiter(this.settings.callerLimit.burst, this.settings.callerLimit.perMinute / 60);
    this.signedLimiter = new RateLimiter(this.settings.signedLimit.burst, this.settings.signedLimit.perSecond);
    this.instanceHost = instanceHostPattern(this.settings.streamUrlTemplate);
    this.isAdmin = bearerCheck(this.settings.adminToken);
    if (this.settings.trustProxy.length > 0) {
      this.trusted = new BlockList();
      for (const c of this.settings.trustProxy) this.trusted.addSubnet(c.address, c.prefix, c.family);
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
    return this.settings.publicUrl ?? `https://${host}`;
  }

  wsOrigin(host: string): string {
    return this.publicOrigin(host).replace(/^http/, 'ws');
  }

  /** The stream URL put in the TwiML: STREAM_URL_TEMPLATE for this instance, else the origin's /voice/stream. */
  streamUrl(host: string): string {
    const template = this.settings.streamUrlTemplate;
    if (!template) return `${this.wsOrigin(host)}/voice/stream`;
    return streamUrlFromTemplate(template, { instance: this.settings.instanceId ?? '', publicUrl: this.wsOrigin(host) });
  }

  /**
   * Where Twilio reaches this instance, for a call's TwiML: the stream URL and
   * the webhook URLs on the public origin (PUBLIC_URL, else https://<Host>).
   */
  callUrls(host: string): CallUrls {
    const origin = this.publicOrigin(host);
    return {
      streamUrl: this.streamUrl(host),
      actionUrl: `${origin}/voice/action`,
      dialActionUrl: `${origin}/voice/dial-action`,
      whisperUrl: `${origin}/voice/whisper`,
    };
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

  /**
   * Rate limit an HTTP request from `client` (clientAddress) before its body
   * is read: null to go on, or the reply to send. A signed webhook is charged
   * in webhook(), once its signature is known; here it is only refused (429,
   * body not copied) while its address is past its budget of failed
   * signatures, so a flood of forged webhooks costs no body copy, form parse
   * or HMAC. Genuine Twilio traffic is never charged here. `bodyBytes` is the
   * Content-Length (undefined when there is none): a body of unknown or
   * oversize length is not skipped over but the connection closed after the
   * 429; a small one is skipped by the server, keeping the connection (a
   * reconnect per refusal would cost more than the skip).
   */
  limitHttp(client: string, route: Route, bodyBytes?: number): HttpReply | null {
    const key = addressKey(client);
    if (isWebhookRoute(route) && this.settings.twilioAuthToken) {
      if (this.unsignedLimiter.has(key)) return null;
      this.metrics.rateLimited.inc({ kind: 'unsigned' });
      const closeConnection = bodyBytes === undefined || !(bodyBytes <= MAX_BODY_BYTES);
      return { ...reply(route, 429, 'too many requests\n'), closeConnection };
    }
    if (this.limiter.allow(key)) return null;
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
    return route === 'admin' || route === 'console'
      ? { ...reply(route, 500, '{"error":"internal error"}', json), headers: NO_STORE }
      : reply(route, 500, 'internal error\n');
  }

  notFound(route: Route = 'other'): HttpReply {
    return reply(route, 404, 'not found\n');
  }

  /**
   * Whether the app serves `route` at all: a webhook route whose handler is
   * missing (the app has no call control, no OutboundApp) is answered 404
   * before its body is read. Null to go on.
   */
  unserved(route: Route): HttpReply | null {
    const served =
      route === 'action' ? this.app.connectEnded !== undefined
      : route === 'dial_action' ? this.app.dialEnded !== undefined
      : route === 'whisper' ? this.app.whisper !== undefined
      : route === 'amd' || route === 'place_call' ? this.outbound !== undefined
      : route === 'console' ? this.consoleApp !== undefined
      : true;
    return served ? null : this.notFound(route);
  }

  /**
   * POST /voice/* webhooks: size and field count, signature over the form,
   * then the typed body to the app. Never throws, never rejects. A body over
   * MAX_BODY_BYTES or MAX_WEBHOOK_FIELDS is refused 413 before any signature
   * work (Twilio never sends one) and, when signed, charged as a failure.
   * Incoming and status answer at once; the others may take a round trip to
   * the store.
   */
  webhook(route: WebhookRoute, r: WebhookRequest): HttpReply | Promise<HttpReply> {
    try {
      const missing = this.unserved(route);
      if (missing) return missing;
      const token = this.settings.twilioAuthToken;
      if (r.body === null || countFormFields(r.body) > MAX_WEBHOOK_FIELDS) {
        const limited = token ? this.chargeFailure(route, r.client) : null;
        return limited ?? { ...reply(route, 413, r.body === null ? 'body too large\n' : 'too many form fields\n'), closeConnection: r.body === null };
      }
      const form = parseForm(r.body);
      const url = this.publicOrigin(r.host) + r.path + (r.query ? `?${r.query}` : '');
      if (token && !verifyTwilioSignature(token, r.signature || undefined, url, form)) {
        this.metrics.signatureRejections.inc({ route });
        return this.signatureFailed(route, r.client) ?? reply(route, 403, 'forbidden\n');
      }
      if (route === 'incoming') {
        const call = parseVoiceWebhook(form);
        if (!call.ok) return this.badWebhook(route, call.error);
        let opts: IncomingOptions | undefined;
        const o = new URLSearchParams(r.query).get('o');
        if (o !== null) {
          const opened = this.outbound?.openCallToken(o) ?? null;
          if (!opened) {
            this.log.warn({ callSid: call.value.callSid }, 'outbound call token does not open: refused');
            return reply(route, 403, 'forbidden\n');
          }
          opts = opened;
        }
        // A call we placed (its token opened) is paced by OUTBOUND_CPS, not by its `From` (ours, the same for every one).
        if (token && opts === undefined && !this.callerLimiter.allow(call.value.from)) {
          this.metrics.rateLimited.inc({ kind: 'caller' });
          this.log.warn({ callSid: call.value.callSid }, 'too many call set-ups from this calling number: busy');
          return reply(route, 200, buildRejectTwiml(), 'text/xml');
        }
        return twimlReply(route, this.app.incoming(call.value, this.callUrls(r.host), opts));
      }
      if (route !== 'status') return this.callControl(route, r, form);
      const cb = parseStatusCallback(form);
      if (!cb.ok) return this.badWebhook(route, cb.error);
      // Signatures carry no nonce: a captured callback can be replayed, so signed ones are limited per address too.
      if (token && !this.signedLimiter.allow(addressKey(r.client))) {
        this.metrics.rateLimited.inc({ kind: 'signed' });
        return reply(route, 429, 'too many requests\n');
      }
      this.app.status(cb.value);
      return reply(route, 204, '');
    } catch (err) {
      return this.failed(route, err);
    }
  }

  /** The signed call-control webhooks (action, dial-action, whisper, AMD), once the form is checked. */
  private callControl(route: 'action' | 'dial_action' | 'whisper' | 'amd', r: WebhookRequest, form: FormParams): HttpReply | Promise<HttpReply> {
    const query = new URLSearchParams(r.query);
    const urls = this.callUrls(r.host);
    const settle = (p: Promise<HttpReply>) => p.catch((err: unknown) => this.failed(route, err));
    const legOf = (): number | null => {
      const raw = query.get('leg') ?? '';
      const leg = /^\d{1,2}$/.test(raw) ? Number(raw) : 0;
      return leg >= 1 && leg <= MAX_LEG ? leg : null;
    };
    const badLeg = `leg: expected 1..${MAX_LEG}`;
    switch (route) {
      case 'action': {
        const call = parseConnectAction(form);
        if (!call.ok) return this.badWebhook(route, call.error);
        const leg = legOf();
        if (leg === null) return this.badWebhook(route, badLeg);
        return this.replayLimited(route, r.client) ?? settle(this.app.connectEnded!(call.value, urls, leg).then((res) => twimlReply(route, res)));
      }
      case 'dial_action': {
        const call = parseDialAction(form);
        if (!call.ok) return this.badWebhook(route, call.error);
        const leg = legOf();
        if (leg === null) return this.badWebhook(route, badLeg);
        return this.replayLimited(route, r.client) ?? settle(this.app.dialEnded!(call.value, urls, leg).then((res) => twimlReply(route, res)));
      }
      case 'whisper': {
        const target = query.get('target') ?? '';
        const agent = query.get('agent') ?? '';
        if (target === '' || agent === '') return this.badWebhook(route, 'target and agent are required');
        return this.replayLimited(route, r.client) ?? twimlReply(route, this.app.whisper!(target, agent));
      }
      case 'amd': {
        const cb = parseAmdCallback(form);
        if (!cb.ok) return this.badWebhook(route, cb.error);
        // The AMD URL carries the call's sealed token: its agent's voicemail policy applies on whichever instance this is.
        const o = query.get('o');
        const opts = o ? this.outbound!.openCallToken(o) : null;
        return this.replayLimited(route, r.client) ?? settle(this.outbound!.amd(cb.value, opts).then(() => reply(route, 204, '')));
      }
    }
  }

  /** Signatures carry no nonce: a captured webhook can be replayed, so signed ones are limited per address. The 429, or null. */
  private replayLimited(route: Route, client: string): HttpReply | null {
    if (!this.settings.twilioAuthToken || this.signedLimiter.allow(addressKey(client))) return null;
    this.metrics.rateLimited.inc({ kind: 'signed' });
    return reply(route, 429, 'too many requests\n');
  }

  /**
   * POST /calls: place an outbound call (OutboundApp.placeCall). `body` null =
   * over MAX_BODY_BYTES (413). The answer is JSON, never cached. Never rejects.
   */
  async placeCall(authorization: string | undefined, body: Buffer | null): Promise<HttpReply> {
    const route = 'place_call';
    if (!this.outbound) return this.notFound(route);
    if (body === null) return { ...reply(route, 413, JSON.stringify({ error: 'body too large' }), json), closeConnection: true, headers: NO_STORE };
    try {
      const r = await this.outbound.placeCall({ authorization, body: body.toString('utf8') });
      return { ...reply(route, r.status, JSON.stringify(r.body), json), headers: NO_STORE };
    } catch (err) {
      return { ...this.failed(route, err), headers: NO_STORE };
    }
  }

  /** A request failed the signature check: counted and logged; the 429 once past RATE_LIMIT_UNSIGNED_*, else null (answer 403). */
  private signatureFailed(route: Route | 'stream', client: string): HttpReply | null {
    const limited = this.chargeFailure(route, client);
    if (!limited) this.log.warn({ route, client }, 'bad or missing X-Twilio-Signature');
    return limited;
  }

  /** Charge a failed request to its address's RATE_LIMIT_UNSIGNED_* bucket: the 429 when it had no token left, else null. */
  private chargeFailure(route: Route | 'stream', client: string): HttpReply | null {
    if (this.unsignedLimiter.allow(addressKey(client))) return null;
    this.metrics.rateLimited.inc({ kind: 'unsigned' });
    return reply(route === 'stream' ? 'other' : route, 429, 'too many requests\n');
  }

  private badWebhook(route: Route, error: string): HttpReply {
    this.metrics.malformed.inc({ reason: 'bad_webhook' });
    this.log.warn({ route, error }, 'signed webhook with a body that does not parse');
    return reply(route, 400, `bad request: ${error}\n`);
  }

  /**
   * GET /voice/health. Error text (database and model errors can name hosts,
   * users, addresses) is shown only to `Authorization: Bearer <ADMIN_TOKEN>`;
   * anyone else gets the report without it (withoutErrorText).
   */
  health(authorization = ''): HttpReply {
    try {
      const h = this.app.health();
      const body = this.isAdmin?.(authorization) ? h : withoutErrorText(h);
      const r = reply('health', h.status === 'ok' ? 200 : 503, JSON.stringify(body), json);
      return body === h ? { ...r, headers: NO_STORE } : r;
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
    if (/^\/calls\/[^/]+\/recording\/?$/.test(req.path)) {
      // A recording (audio): its reader sets its own type and headers (no-store, ranges).
      if (!this.recordingReader) return this.notFound('admin');
      try {
        const r = await this.recordingReader(req);
        return { route: 'admin', status: r.status, body: r.body, type: r.type, headers: { ...r.headers, ...NO_STORE } };
      } catch (err) {
        return this.failed('admin', err);
      }
    }
    if (!this.adminReader) return this.notFound('admin');
    try {
      const r = await this.adminReader(req);
      return { ...reply('admin', r.status, JSON.stringify(r.body), json), headers: NO_STORE };
    } catch (err) {
      return this.failed('admin', err);
    }
  }

  /**
   * /console…: the ConsoleApp's answer. A BinaryResponse becomes an HttpReply
   * (headers checked: one that is not valid HTTP is left out and logged); an
   * event stream becomes its head, for the edge to write and then open with
   * `openEventStream`. A throw, a rejection or a reply of no known shape →
   * 500 JSON. Never rejects.
   */
  async console(req: ConsoleRequest): Promise<ConsoleOutcome> {
    const route = 'console';
    if (!this.consoleApp) return this.notFound(route);
    try {
      const r = await this.consoleApp.handle(req);
      if ('stream' in r) {
        if (typeof r.stream?.open !== 'function') throw new Error('console event stream without an open function');
        // The reply's headers after EVENT_STREAM_HEADERS (it may set its own cache-control); its content-type is never taken.
        return { route, status: 200, headers: this.validHeaders(r.headers, EVENT_STREAM_HEADERS), stream: r.stream };
      }
      if (!Number.isInteger(r.status) || r.status < 200 || r.status > 599) throw new Error(`console reply with status ${String(r.status)}`);
      if (typeof r.body !== 'string' && !(r.body instanceof Uint8Array)) throw new Error('console reply whose body is neither text nor bytes');
      const type = typeof r.type === 'string' && VALID_HEADER_VALUE.test(r.type) ? r.type : 'application/octet-stream';
      return { route, status: r.status, body: r.body, type, headers: this.validHeaders(r.headers, {}) };
    } catch (err) {
      return this.failed(route, err);
    }
  }

  /** `base` then `extra`, names lower-cased; the headers the edge writes itself, and any that is not valid HTTP, are left out (logged). */
  private validHeaders(extra: Record<string, string> | undefined, base: Readonly<Record<string, string>>): Record<string, string> {
    const out: Record<string, string> = { ...base };
    for (const [k, v] of Object.entries(extra ?? {})) {
      const name = k.toLowerCase();
      if (EDGE_HEADERS.has(name)) continue;
      if (!HEADER_NAME.test(name) || typeof v !== 'string' || !VALID_HEADER_VALUE.test(v)) {
        this.log.warn({ route: 'console', header: name }, 'console reply header is not valid HTTP: left out');
        continue;
      }
      out[name] = v;
    }
    return out;
  }

  /**
   * An event stream whose head (EventStreamReply) the edge has written: open
   * it on `raw`. The returned binding's `gone()` is for the edge to call when
   * the client goes away. Counts the reply (console, 200).
   */
  openEventStream(raw: RawEventStream, head: EventStreamReply): EventStreamBinding {
    const b = new EventStreamBinding(this, raw, head.stream);
    this.eventStreams.add(b);
    this.counted({ route: head.route, status: head.status, body: '', type: EVENT_STREAM_HEADERS['content-type']! });
    b.open();
    return b;
  }

  /** @internal EventStreamBinding: it has finished. */
  eventStreamDone(b: EventStreamBinding): void {
    this.eventStreams.delete(b);
  }

  /** End every open console event stream (server shutdown): each response is ended and its stop function called. */
  closeAllEventStreams(): void {
    for (const b of [...this.eventStreams]) b.shutdown();
  }

  get openEventStreams(): number {
    return this.eventStreams.size;
  }

  /** WS /voice/stream upgrade checks: null to accept, or the refusal to answer. */
  checkUpgrade(u: UpgradeRequest): HttpReply | null {
    const client = this.clientAddress(u.remoteAddress, u.forwardedFor);
    const token = this.settings.twilioAuthToken;
    if (token) {
      if (this.upgradeSigned(token, u)) {
        // One captured upgrade replays for ever (its signature is constant per URL): limit them per address.
        if (this.signedLimiter.allow(addressKey(client))) return null;
        this.metrics.rateLimited.inc({ kind: 'signed' });
        this.metrics.streamsRefused.inc({ reason: 'rate_limited' });
        return reply('other', 429, 'too many requests\n');
      }
      this.metrics.signatureRejections.inc({ route: 'stream' });
      const limited = this.signatureFailed('stream', client);
      this.metrics.streamsRefused.inc({ reason: limited ? 'rate_limited' : 'signature' });
      return limited ?? reply('other', 403, 'forbidden\n');
    }
    if (!this.limiter.allow(addressKey(client))) {
      this.metrics.rateLimited.inc({ kind: 'upgrade' });
      this.metrics.streamsRefused.inc({ reason: 'rate_limited' });
      return reply('other', 429, 'too many requests\n');
    }
    return null;
  }

  /** Whether the upgrade carries a valid signature over a URL Twilio may have used for this stream. */
  private upgradeSigned(token: string, u: UpgradeRequest): boolean {
    const sig = u.signature || undefined;
    if (verifyTwilioSignature(token, sig, `${this.wsOrigin(u.host)}${u.path}${u.query ? `?${u.query}` : ''}`, {})) return true;
    if (!this.settings.streamUrlTemplate || u.query) return false;
    // Signed over this instance's templated URL, which the balancer rewrote to /voice/stream on the way here.
    if (verifyTwilioSignature(token, sig, this.streamUrl(u.host), {})) return true;
    // Or over a host-per-instance URL naming another instance, whose stream the balancer sent here instead (that
    // instance is gone): the URL Twilio used is then this request's Host and path, but only a Host the template
    // can produce, never one a client picked (a signature captured for any other URL of the account).
    return this.instanceHost !== undefined && this.instanceHost.test(u.host) && verifyTwilioSignature(token, sig, `wss://${u.host}${u.path}`, {});
  }

  /** @internal StreamBinding: a stream got its handler; it waits for a `start`. Past MAX_STREAMS_AWAITING_START the oldest waiting one is closed. */
  awaitStart(b: StreamBinding): void {
    this.awaitingStart.add(b);
    while (this.awaitingStart.size > this.settings.maxStreamsAwaitingStart) {
      const oldest = this.awaitingStart.values().next().value!;
      this.awaitingStart.delete(oldest);
      this.metrics.streamsRefused.inc({ reason: 'awaiting_start' });
      this.log.debug({ remoteAddress: oldest.remoteAddress }, 'too many streams awaiting start: closing the oldest');
      oldest.endQuietly(1013, 'too many streams awaiting start');
    }
  }

  /** @internal StreamBinding: its `start` arrived (or it closed). */
  started(b: StreamBinding): void {
    this.awaitingStart.delete(b);
  }

  /** Streams open with no `start` seen yet. */
  get streamsAwaitingStart(): number {
    return this.awaitingStart.size;
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
    this.awaitingStart.delete(b);
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
  /** No `start` seen yet (counted in EdgeCore's streams awaiting start). */
  private awaiting = false;
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
    else {
      this.awaiting = true;
      this.core.awaitStart(this);
    }
  }

  get remoteAddress(): string {
    return this.info.remoteAddress;
  }

  text(t: string): void {
    const h = this.handler;
    if (!h || this.isClosed) return;
    // Until the first frame that parses as a `start` (Twilio sends `connected`, then `start`): only frames naming it are parsed.
    if (this.awaiting && t.includes('"start"')) {
      const m = parseTwilioMessage(t);
      if (m.ok && m.msg.event === 'start') {
        this.awaiting = false;
        this.core.started(this);
      }
    }
    this.guarded('message', () => h.onText(t));
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

/**
 * One console event stream between an edge and the ConsoleApp. Guarantees:
 * `open` is called once; the stop function it returned is called exactly
 * once, whichever comes first of the client going away (`gone`), the app's
 * `end()` and the server's shutdown; `send` after that returns false and
 * writes nothing. Nothing the app does throws out of here.
 */
export class EventStreamBinding {
  private done = false;
  private opening = false;
  private stop: (() => void) | null = null;

  constructor(
    private readonly core: EdgeCore,
    private readonly raw: RawEventStream,
    private readonly stream: EventStream,
  ) {}

  /** Call the app's `open` (once). */
  open(): void {
    if (this.opening || this.done) return;
    this.opening = true;
    const send = (chunk: string): boolean => {
      if (this.done) return false;
      return this.raw.write(String(chunk)) === 'sent';
    };
    const end = () => {
      if (this.done) return;
      this.raw.end();
      this.finish();
    };
    let stop: unknown;
    try {
      stop = this.stream.open(send, end);
    } catch (err) {
      this.core.metrics.handlerErrors.inc({ handler: 'console_stream' });
      this.core.log.error({ err }, 'console event stream failed to open');
      end();
      return;
    }
    this.stop = typeof stop === 'function' ? (stop as () => void) : () => {};
    // Ended (by the app, or the client left) while opening: its stop function is due now.
    if (this.done) this.callStop();
  }

  /** The client went away: stop the app's stream (the response is already gone). */
  gone(): void {
    this.finish();
  }

  /** The server is closing: end the response and stop the app's stream. */
  shutdown(): void {
    if (this.done) return;
    this.raw.end();
    this.finish();
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    this.core.eventStreamDone(this);
    this.callStop();
  }

  private callStop(): void {
    const stop = this.stop;
    if (!stop) return; // still inside open(): called once it returns
    this.stop = null;
    try {
      stop();
    } catch (err) {
      this.core.metrics.handlerErrors.inc({ handler: 'console_stream' });
      this.core.log.error({ err }, 'console event stream stop failed');
    }
  }
}

/** Response headers the edges write themselves: a console reply's own are ignored. */
const EDGE_HEADERS: ReadonlySet<string> = new Set(['content-type', 'content-length', 'transfer-encoding', 'connection']);
/** An HTTP token (RFC 9110 §5.6.2). */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;
/** What node:http accepts in a header value (no CR, LF or NUL). */
const VALID_HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

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

/**
 * A health report without error text: every key whose name says error,
 * message, detail or reason and whose value is not a number or boolean is
 * left out, at any depth (so fields added to the report later are covered).
 */
export function withoutErrorText(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(withoutErrorText);
  if (v === null || typeof v !== 'object') return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) {
    if (/error|message|detail|reason/i.test(k) && typeof x !== 'number' && typeof x !== 'boolean') continue;
    out[k] = withoutErrorText(x);
  }
  return out;
}


/** `wss://{instance}.calls.example.com/…` → /^[label]\.calls\.example\.com$/i; undefined when the template's host has no {instance}. */
export function instanceHostPattern(template: string | undefined): RegExp | undefined {
  const host = template ? /^wss:\/\/([^/?#]*)/i.exec(template)?.[1] : undefined;
  if (!host || !host.includes('{instance}')) return undefined;
  const label = '[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
  const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^${host.split('{instance}').map(escape).join(label)}$`, 'i');
}

/** A close reason is at most 123 bytes of UTF-8 (RFC 6455 §5.5); cut on a character boundary. */
export function closeReasonBytes(reason: string): Buffer {
  const bytes = Buffer.from(reason, 'utf8');
  if (bytes.length <= 123) return bytes;
  let end = 123;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--; // don't split a multi-byte character
  return bytes.subarray(0, end);
}

/** The app's answer to a webhook: TwiML, or its refusal as plain text. */
function twimlReply(route: Route, result: IncomingResult): HttpReply {
  return result.ok ? reply(route, 200, result.twiml, 'text/xml') : reply(route, result.status, `${result.message}\n`);
}

const STATUS_TEXT: Record<number, string> = {
  200: 'OK', 201: 'Created', 204: 'No Content', 206: 'Partial Content', 301: 'Moved Permanently', 302: 'Found', 303: 'See Other',
  304: 'Not Modified', 307: 'Temporary Redirect', 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found',
  405: 'Method Not Allowed', 409: 'Conflict', 412: 'Precondition Failed', 413: 'Payload Too Large', 415: 'Unsupported Media Type',
  416: 'Range Not Satisfiable', 422: 'Unprocessable Content', 429: 'Too Many Requests', 500: 'Internal Server Error', 503: 'Service Unavailable',
};

export function statusText(status: number): string {
  return STATUS_TEXT[status] ?? 'Status';
}
