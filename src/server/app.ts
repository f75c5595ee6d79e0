/**
 * The network edge: one uWebSockets.js app on one port.
 *
 *   POST /voice/incoming   Twilio voice webhook → TwiML (signature-checked)
 *   POST /voice/status     call status callbacks (signature-checked)
 *   GET  /voice/health     JSON health
 *   GET  /metrics          Prometheus text
 *   GET  /calls[/:sid]     call records (VoiceApp.admin; bearer token)
 *   WS   /voice/stream     Twilio Media Stream (signature-checked upgrade)
 *
 * uWS rules followed here: everything needed from `req` is copied out
 * synchronously (req is stack-allocated and dies after the handler returns);
 * request bodies are copied chunk by chunk (uWS reuses the ArrayBuffer);
 * every async reply checks `aborted` and is written inside `res.cork`;
 * websocket sends report backpressure and the call resumes on `drain`;
 * sends after close are no-ops. Nothing a client sends can throw out of a
 * handler: every handler is guarded, logged and counted.
 *
 * Behaviour decisions:
 * - Signatures: checked whenever TWILIO_AUTH_TOKEN is set, over
 *   PUBLIC_URL + path (+ query). Without PUBLIC_URL the origin is derived as
 *   `https://<Host header>` (Twilio only calls https, and a TLS-terminating
 *   proxy keeps Host); the stream URL handed to the app is the same origin
 *   with wss. The upgrade is checked over `wss://…/voice/stream` with no params.
 * - GET /voice/health: 200 when the app reports `ok`, 503 when `degraded`
 *   (model unreachable or shutting down) so a load balancer drains this
 *   instance; the JSON body is the same either way.
 * - Rate limit: one token bucket per client IP shared by HTTP requests and
 *   upgrades, burst 50, refill 20/s (override with `rateLimit`). Twilio's own
 *   traffic per call is ~3 requests + 1 upgrade, far below it. Over → 429.
 * - Bodies over 64 KiB → 413 (early from Content-Length, with the connection
 *   closed). Frames over 64 KiB → uWS closes the socket (1006), counted as
 *   malformed `oversize_frame`.
 * - Capacity: app.openStream → null closes with 1013; a throw closes with 1011.
 * - GET /metrics is served only when config.metrics (METRICS, default true).
 */
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { AdminRequest, StreamHandler, TwilioSocket, VoiceApp } from '../call/ports.js';
import { parseForm, verifyTwilioSignature } from '../twilio/signature.js';
import { Gauge } from 'prom-client';
import { createMetrics, type Metrics } from './metrics.js';
import { RateLimiter } from './rate-limit.js';
import { uws, type HttpRequest, type HttpResponse, type WebSocket, type us_listen_socket, type us_socket_context_t } from './uws.js';

/** A Twilio media frame is < 1 KiB; anything near this is not Twilio. */
export const MAX_WS_MESSAGE_BYTES = 64 * 1024;
export const MAX_BODY_BYTES = 64 * 1024;
/** Per-socket send buffer past which send() drops frames (uWS maxBackpressure): >10 s of outbound media frames (~15 KB/s). */
export const MAX_BACKPRESSURE_BYTES = 256 * 1024;
/** Twilio sends media every 20 ms; a silent socket for this long is dead. */
export const WS_IDLE_TIMEOUT_S = 60;

export interface ServerOptions {
  config: Config;
  app: VoiceApp;
  log: Logger;
  metrics?: Metrics;
  /** Per-IP token bucket for HTTP requests and upgrades (default: burst 50, 20/s). */
  rateLimit?: { burst: number; perSecond: number };
}

export interface RunningServer {
  port: number;
  metrics: Metrics;
  /** Stop listening, close every stream (1001), wait for their handlers' onClose. */
  close(): Promise<void>;
}

interface StreamData {
  remoteAddress: string;
  headers: Record<string, string>;
  handler: StreamHandler | null;
  closed: boolean;
  /** Set by `close`: replayed to a handler whose openStream closed the socket before returning. */
  closeCode: number;
  closeReason: string;
}

const textDecoder = new TextDecoder('utf-8', { fatal: false });

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const { config, app, log } = opts;
  const metrics = opts.metrics ?? createMetrics();
  const limiter = new RateLimiter(opts.rateLimit?.burst ?? 50, opts.rateLimit?.perSecond ?? 20);
  const sockets = new Set<WebSocket<StreamData>>();
  let onAllClosed: (() => void) | undefined;

  /** The URL Twilio used, for signatures: PUBLIC_URL when set, else https://<Host>. */
  const publicOrigin = (host: string) => config.publicUrl ?? `https://${host}`;
  const wsOrigin = (host: string) => publicOrigin(host).replace(/^http/, 'ws');

  const server = uws.App();

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

  const reply = (res: HttpResponse, route: string, status: number, body: string, type = 'text/plain; charset=utf-8') => {
    res.cork(() => {
      res.writeStatus(statusLine(status)).writeHeader('content-type', type).end(body);
    });
    metrics.httpRequests.inc({ route, status: String(status) });
  };

  const guard = (route: string, fn: (res: HttpResponse, req: HttpRequest) => void) => (res: HttpResponse, req: HttpRequest) => {
    const ip = textDecoder.decode(res.getRemoteAddressAsText());
    if (!limiter.allow(ip)) {
      metrics.rateLimited.inc({ kind: 'http' });
      reply(res, route, 429, 'too many requests\n');
      return;
    }
    try {
      fn(res, req);
    } catch (err) {
      metrics.handlerErrors.inc({ handler: route });
      log.error({ err, route }, 'http handler failed');
      try {
        reply(res, route, 500, 'internal error\n');
      } catch {
        /* response already ended or aborted */
      }
    }
  };

  /** POST with a form body and a Twilio signature over PUBLIC_URL + path. */
  const twilioForm = (route: string, handle: (form: Record<string, string>, host: string, res: HttpResponse) => void) =>
    guard(route, (res, req) => {
      const host = req.getHeader('host');
      const signature = req.getHeader('x-twilio-signature');
      const url = publicOrigin(host) + req.getUrl() + (req.getQuery() ? `?${req.getQuery()}` : '');
      const declaredLength = Number(req.getHeader('content-length') || '0');
      if (declaredLength > MAX_BODY_BYTES) {
        // Refuse before reading; close the connection so the unread body is not parsed as a request.
        res.cork(() => res.writeStatus(statusLine(413)).writeHeader('content-type', 'text/plain; charset=utf-8').end('body too large\n', true));
        metrics.httpRequests.inc({ route, status: '413' });
        return;
      }
      let aborted = false;
      res.onAborted(() => (aborted = true));
      readBody(res, MAX_BODY_BYTES, (body) => {
        // Runs from a uWS data callback, outside `guard`: nothing may throw out of it.
        try {
          if (aborted) return;
          if (body === null) return reply(res, route, 413, 'body too large\n');
          const form = parseForm(body);
          if (config.twilioAuthToken && !verifyTwilioSignature(config.twilioAuthToken, signature || undefined, url, form)) {
            metrics.signatureRejections.inc({ route });
            log.warn({ route }, 'bad or missing X-Twilio-Signature');
            return reply(res, route, 403, 'forbidden\n');
          }
          handle(form, host, res);
        } catch (err) {
          metrics.handlerErrors.inc({ handler: route });
          log.error({ err, route }, 'webhook handler failed');
          try {
            if (!aborted) reply(res, route, 500, 'internal error\n');
          } catch {
            /* already answered */
          }
        }
      });
    });

  server.post(
    '/voice/incoming',
    twilioForm('incoming', (form, host, res) => {
      const result = app.incoming(form, `${wsOrigin(host)}/voice/stream`);
      if (result.ok) reply(res, 'incoming', 200, result.twiml, 'text/xml');
      else reply(res, 'incoming', result.status, `${result.message}\n`);
    }),
  );

  server.post(
    '/voice/status',
    twilioForm('status', (form, _host, res) => {
      app.status(form);
      res.cork(() => res.writeStatus('204 No Content').endWithoutBody());
      metrics.httpRequests.inc({ route: 'status', status: '204' });
    }),
  );

  server.get(
    '/voice/health',
    guard('health', (res) => {
      const h = app.health();
      reply(res, 'health', h.status === 'ok' ? 200 : 503, JSON.stringify(h), 'application/json');
    }),
  );

  // METRICS=false: no /metrics route (404); the counters still exist for RunningServer.metrics.
  if (config.metrics) {
    server.get(
      '/metrics',
      guard('metrics', (res) => {
        let aborted = false;
        res.onAborted(() => (aborted = true));
        metrics.registry
          .metrics()
          .then(
            (text) => void (!aborted && reply(res, 'metrics', 200, text, metrics.registry.contentType)),
            (err: unknown) => {
              log.error({ err }, 'metrics collection failed');
              if (!aborted) reply(res, 'metrics', 500, 'metrics failed\n');
            },
          )
          .catch((err: unknown) => log.error({ err }, 'metrics reply failed'));
      }),
    );
  }

  const admin = (res: HttpResponse, req: HttpRequest) => {
    if (!app.admin) return reply(res, 'admin', 404, 'not found\n');
    const headers: Record<string, string> = {};
    req.forEach((k, v) => (headers[k] = v));
    const request: AdminRequest = {
      method: req.getMethod().toUpperCase(),
      path: req.getUrl(),
      query: new URLSearchParams(req.getQuery() ?? ''),
      headers,
    };
    let aborted = false;
    res.onAborted(() => (aborted = true));
    const failed = (err: unknown) => {
      metrics.handlerErrors.inc({ handler: 'admin' });
      log.error({ err }, 'admin handler failed');
      if (!aborted) reply(res, 'admin', 500, '{"error":"internal error"}', 'application/json');
    };
    // Promise.resolve().then: a synchronous throw from admin() lands in `failed` too.
    Promise.resolve()
      .then(() => app.admin!(request))
      .then((r) => {
        if (aborted) return;
        const body = JSON.stringify(r.body); // may throw (cycles, BigInt) → failed
        reply(res, 'admin', r.status, body, 'application/json');
      })
      .catch(failed)
      .catch((err: unknown) => log.error({ err }, 'admin error reply failed'));
  };
  server.get('/calls', guard('admin', admin));
  server.get('/calls/*', guard('admin', admin));

  /** WS /voice/stream upgrade: everything is read from `req` here, synchronously (uWS frees it on return). */
  const upgradeStream = (res: HttpResponse, req: HttpRequest, context: us_socket_context_t) => {
    // Copy out of req now: it is invalid once this function returns.
    const secKey = req.getHeader('sec-websocket-key');
    const secProtocol = req.getHeader('sec-websocket-protocol');
    const secExtensions = req.getHeader('sec-websocket-extensions');
    const host = req.getHeader('host');
    const signature = req.getHeader('x-twilio-signature');
    const headers: Record<string, string> = {};
    req.forEach((k, v) => (headers[k] = v));
    const remoteAddress = textDecoder.decode(res.getRemoteAddressAsText());
    if (!limiter.allow(remoteAddress)) {
      metrics.rateLimited.inc({ kind: 'upgrade' });
      metrics.streamsRefused.inc({ reason: 'rate_limited' });
      res.writeStatus(statusLine(429)).end('too many requests\n');
      return;
    }
    if (config.twilioAuthToken) {
      const query = req.getQuery();
      const url = `${wsOrigin(host)}${req.getUrl()}${query ? `?${query}` : ''}`;
      if (!verifyTwilioSignature(config.twilioAuthToken, signature || undefined, url, {})) {
        metrics.signatureRejections.inc({ route: 'stream' });
        metrics.streamsRefused.inc({ reason: 'signature' });
        log.warn({ remoteAddress }, 'stream upgrade with bad or missing X-Twilio-Signature');
        res.writeStatus(statusLine(403)).end('forbidden\n');
        return;
      }
    }
    const data: StreamData = { remoteAddress, headers, handler: null, closed: false, closeCode: 0, closeReason: '' };
    res.upgrade(data, secKey, secProtocol, secExtensions, context);
  };

  server.ws<StreamData>('/voice/stream', {
    maxPayloadLength: MAX_WS_MESSAGE_BYTES,
    maxBackpressure: MAX_BACKPRESSURE_BYTES,
    closeOnBackpressureLimit: 0,
    idleTimeout: WS_IDLE_TIMEOUT_S,
    sendPingsAutomatically: true,

    upgrade: (res, req, context) => {
      try {
        upgradeStream(res, req, context);
      } catch (err) {
        metrics.handlerErrors.inc({ handler: 'upgrade' });
        metrics.streamsRefused.inc({ reason: 'error' });
        log.error({ err }, 'stream upgrade failed');
        try {
          res.writeStatus(statusLine(500)).end('internal error\n');
        } catch {
          /* already answered or upgraded */
        }
      }
    },

    open: (ws) => {
      const data = ws.getUserData();
      sockets.add(ws);
      metrics.activeStreams.set(sockets.size);
      const port: TwilioSocket = {
        send: (text) => {
          if (data.closed) return false;
          // 1 sent, 0 queued with backpressure (wait for drain), 2 dropped (over maxBackpressure).
          const status = ws.send(text, false);
          if (status === 1) return true;
          metrics.backpressure.inc({ result: status === 2 ? 'dropped' : 'backpressure' });
          return false;
        },
        bufferedAmount: () => (data.closed ? 0 : ws.getBufferedAmount()),
        cork: (fn) => {
          if (data.closed) fn();
          else ws.cork(fn);
        },
        close: (code = 1000, reason = '') => {
          if (data.closed) return;
          ws.end(code, closeReasonBytes(reason));
        },
      };
      let handler: StreamHandler | null = null;
      try {
        handler = app.openStream(port, { remoteAddress: data.remoteAddress, headers: data.headers });
      } catch (err) {
        metrics.handlerErrors.inc({ handler: 'openStream' });
        metrics.streamsRefused.inc({ reason: 'error' });
        log.error({ err }, 'openStream failed');
        if (!data.closed) ws.end(1011, 'internal error');
        return;
      }
      if (!handler) {
        metrics.streamsRefused.inc({ reason: 'capacity' });
        if (!data.closed) ws.end(1013, 'try again later');
        return;
      }
      data.handler = handler;
      metrics.streamsOpened.inc();
      if (data.closed) {
        // openStream closed the socket itself: the close event has passed, so report it now (still exactly once).
        try {
          handler.onClose(data.closeCode, data.closeReason);
        } catch (err) {
          metrics.handlerErrors.inc({ handler: 'close' });
          log.error({ err }, 'stream close handler failed');
        }
      }
    },

    message: (ws, message, isBinary) => {
      const h = ws.getUserData().handler;
      if (!h) return;
      try {
        // The ArrayBuffer is only valid during this call: decode it now.
        if (isBinary) h.onBinary(message.byteLength);
        else h.onText(textDecoder.decode(message));
      } catch (err) {
        metrics.handlerErrors.inc({ handler: 'message' });
        log.error({ err }, 'stream message handler failed');
      }
    },

    drain: (ws) => {
      try {
        ws.getUserData().handler?.onDrain();
      } catch (err) {
        metrics.handlerErrors.inc({ handler: 'drain' });
        log.error({ err }, 'stream drain handler failed');
      }
    },

    close: (ws, code, message) => {
      const data = ws.getUserData();
      if (data.closed) return;
      data.closed = true;
      sockets.delete(ws);
      metrics.activeStreams.set(sockets.size);
      const reason = textDecoder.decode(message);
      data.closeCode = code;
      data.closeReason = reason;
      // uWS closes with 1006 and a reason of its own on bad input (too big, bad UTF-8, bad framing).
      if (code === 1006 && reason) {
        metrics.malformed.inc({ reason: /too big/i.test(reason) ? 'oversize_frame' : 'ws_protocol' });
        log.warn({ remoteAddress: data.remoteAddress, reason }, 'stream closed on malformed input');
      }
      try {
        data.handler?.onClose(code, reason);
      } catch (err) {
        metrics.handlerErrors.inc({ handler: 'close' });
        log.error({ err }, 'stream close handler failed');
      }
      if (sockets.size === 0) onAllClosed?.();
    },
  });

  server.any('/*', guard('other', (res) => reply(res, 'other', 404, 'not found\n')));

  const listenSocket = await new Promise<us_listen_socket>((resolve, reject) => {
    server.listen(config.host, config.port, (s) => (s ? resolve(s) : reject(new Error(`cannot listen on ${config.host}:${config.port}`))));
  });
  const port = uws.us_socket_local_port(listenSocket);

  let closing: Promise<void> | undefined;
  return {
    port,
    metrics,
    close() {
      closing ??= new Promise<void>((resolve) => {
        uws.us_listen_socket_close(listenSocket);
        if (sockets.size === 0) return resolve();
        onAllClosed = resolve;
        for (const ws of [...sockets]) {
          try {
            ws.end(1001, 'server shutting down');
          } catch {
            /* already closing */
          }
        }
      }).then(() => {
        // Idle keep-alive HTTP connections would otherwise hold the event loop
        // until clients drop them. App.close() (present in this build's
        // binary though missing from its index.d.ts) closes them; the 1001
        // close frames were written above.
        const closeAll = (server as unknown as { close?: () => void }).close;
        if (typeof closeAll === 'function') closeAll.call(server);
      });
      return closing;
    },
  };
}

/** Read a request body, copying each chunk (uWS reuses its buffer). null = over `limit`. */
function readBody(res: HttpResponse, limit: number, done: (body: Buffer | null) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let over = false;
  res.onData((chunk, isLast) => {
    if (!over) {
      size += chunk.byteLength;
      if (size > limit) over = true;
      else chunks.push(Buffer.from(chunk.slice(0)));
    }
    if (isLast) done(over ? null : Buffer.concat(chunks, size));
  });
}

/** A close reason is at most 123 bytes of UTF-8 (RFC 6455 §5.5); cut on a character boundary. */
function closeReasonBytes(reason: string): Buffer {
  const bytes = Buffer.from(reason, 'utf8');
  if (bytes.length <= 123) return bytes;
  let end = 123;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--; // don't split a multi-byte character
  return bytes.subarray(0, end);
}

const STATUS_TEXT: Record<number, string> = {
  200: 'OK', 204: 'No Content', 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found',
  413: 'Payload Too Large', 429: 'Too Many Requests', 500: 'Internal Server Error', 503: 'Service Unavailable',
};

function statusLine(status: number): string {
  return `${status} ${STATUS_TEXT[status] ?? 'Status'}`;
}
