/**
 * The fast edge: one native uWebSockets.js app on one port (the module
 * comes from edge.ts, which checked it is native). Routes and behaviour are
 * core.ts's; this file only moves bytes in and out of uWS.
 *
 * uWS rules followed here: everything needed from `req` is copied out
 * synchronously (req is stack-allocated and dies after the handler returns);
 * request bodies are copied chunk by chunk (uWS reuses the ArrayBuffer);
 * every async reply checks `aborted` and is written inside `res.cork`;
 * websocket sends report backpressure and the call resumes on `drain`;
 * sends after close are no-ops. Nothing a client sends can throw out of a
 * handler: every handler is guarded, logged and counted.
 *
 * Console event streams: each chunk is written at once inside `res.cork`.
 * uWS keeps what the socket does not take and reports it (write → false) but
 * does not say how much it holds, so the edge keeps an upper bound: the bytes
 * written since a write last went through whole. Past MAX_BACKPRESSURE_BYTES
 * chunks are dropped, except one per writable event (onWritable), whose
 * success resets the bound; nothing is buffered here.
 */
import type { HttpRequest, HttpResponse, WebSocketBehavior, us_listen_socket, us_socket_context_t } from '@based/uws';
import type { AdminRequest } from '../call/ports.js';
import {
  CONSOLE_BODY_METHODS, EVENT_STREAM_PREAMBLE, EdgeCore, MAX_BACKPRESSURE_BYTES, MAX_BODY_BYTES, MAX_WS_MESSAGE_BYTES, WS_IDLE_TIMEOUT_S, statusText,
  type EdgeServer, type EventStreamBinding, type EventStreamReply, type HttpReply, type RawEventStream, type Route, type StreamBinding, type WebhookRoute,
} from './core.js';
import type { UwsModule } from './edge.js';

interface StreamData {
  remoteAddress: string;
  headers: Record<string, string>;
  binding: StreamBinding | null;
}

const textDecoder = new TextDecoder('utf-8', { fatal: false });

export async function startUwsEdge(uws: UwsModule, core: EdgeCore): Promise<EdgeServer> {
  const { settings, log, metrics } = core;
  const server = uws.App();

  const write = (res: HttpResponse, r: HttpReply) => {
    res.cork(() => {
      res.writeStatus(`${r.status} ${statusText(r.status)}`);
      if (r.status === 204 || r.status === 304) {
        for (const [k, v] of Object.entries(r.headers ?? {})) res.writeHeader(k, v);
        res.endWithoutBody();
      } else {
        res.writeHeader('content-type', r.type);
        for (const [k, v] of Object.entries(r.headers ?? {})) res.writeHeader(k, v);
        res.end(r.body, r.closeConnection ?? false);
      }
    });
    core.counted(r);
  };

  /**
   * Every X-Forwarded-For line, joined as node:http joins them (getHeader
   * returns only the first: behind a proxy that appends its own line, the
   * client would choose its address). Read only when TRUST_PROXY is set.
   */
  const trustsProxies = settings.trustProxy.length > 0;
  const forwardedFor = (req: HttpRequest): string => {
    if (!trustsProxies) return '';
    let all = '';
    req.forEach((k, v) => {
      if (k.toLowerCase() === 'x-forwarded-for') all = all ? `${all}, ${v}` : v;
    });
    return all;
  };

  /** Rate limit, then `fn` (given the client address); a throw from `fn` answers 500. */
  const guard = (route: Route, fn: (res: HttpResponse, req: HttpRequest, client: string) => void) => (res: HttpResponse, req: HttpRequest) => {
    const client = core.clientAddress(textDecoder.decode(res.getRemoteAddressAsText()), forwardedFor(req));
    const length = req.getHeader('content-length');
    const limited = core.limitHttp(client, route, length ? Number(length) : undefined);
    if (limited) return write(res, limited);
    try {
      fn(res, req, client);
    } catch (err) {
      try {
        write(res, core.failed(route, err));
      } catch {
        /* response already ended or aborted */
      }
    }
  };

  /** An async reply: written only if the client is still there. */
  const later = (res: HttpResponse, route: Route, make: () => Promise<HttpReply>) => {
    let aborted = false;
    res.onAborted(() => (aborted = true));
    make()
      .then((r) => void (!aborted && write(res, r)))
      .catch((err: unknown) => log.error({ err, route }, 'reply failed'));
  };

  /** A reply now or later: written only if the client is still there (core's replies never throw or reject). */
  const answer = (res: HttpResponse, route: Route, isAborted: () => boolean, r: HttpReply | Promise<HttpReply>) => {
    if (r instanceof Promise) r.then((x) => void (!isAborted() && write(res, x))).catch((err: unknown) => log.error({ err, route }, 'reply failed'));
    else if (!isAborted()) write(res, r);
  };

  const webhook = (route: WebhookRoute) =>
    guard(route, (res, req, client) => {
      const unserved = core.unserved(route);
      if (unserved) return write(res, unserved);
      const host = req.getHeader('host');
      const signature = req.getHeader('x-twilio-signature');
      const path = req.getUrl();
      const query = req.getQuery() ?? '';
      if (Number(req.getHeader('content-length') || '0') > MAX_BODY_BYTES) return write(res, core.tooLarge(route));
      let aborted = false;
      res.onAborted(() => (aborted = true));
      readBody(res, MAX_BODY_BYTES, (body) => {
        // Runs from a uWS data callback, outside `guard`; core.webhook never throws. body null: over the
        // limit, answered at once (413, connection closed) without waiting for the rest.
        answer(res, route, () => aborted, core.webhook(route, { host, path, query, signature, body, client }));
      });
    });

  server.post('/voice/incoming', webhook('incoming'));
  server.post('/voice/status', webhook('status'));
  server.post('/voice/action', webhook('action'));
  server.post('/voice/dial-action', webhook('dial_action'));
  server.post('/voice/whisper', webhook('whisper'));
  server.post('/voice/amd', webhook('amd'));
  server.post(
    '/calls',
    guard('place_call', (res, req) => {
      const unserved = core.unserved('place_call');
      if (unserved) return write(res, unserved);
      if (Number(req.getHeader('content-length') || '0') > MAX_BODY_BYTES) return write(res, core.tooLarge('place_call'));
      const auth = req.getHeader('authorization');
      const authorization = auth === '' ? undefined : auth;
      let aborted = false;
      res.onAborted(() => (aborted = true));
      readBody(res, MAX_BODY_BYTES, (body) => answer(res, 'place_call', () => aborted, core.placeCall(authorization, body)));
    }),
  );
  server.get('/voice/health', guard('health', (res, req) => write(res, core.health(req.getHeader('authorization')))));
  // METRICS=false: no /metrics route (404); the counters still exist for RunningServer.metrics.
  if (settings.serveMetrics) server.get('/metrics', guard('metrics', (res) => later(res, 'metrics', () => core.metricsText())));

  const admin = guard('admin', (res, req) => {
    const headers: Record<string, string> = {};
    req.forEach((k, v) => (headers[k] = v));
    const request: AdminRequest = { method: req.getMethod().toUpperCase(), path: req.getUrl(), query: new URLSearchParams(req.getQuery() ?? ''), headers };
    later(res, 'admin', () => core.admin(request));
  });
  server.get('/calls', admin);
  server.get('/calls/*', admin);
  server.del('/calls/*', admin);

  /** The head of an event stream, then the app's stream on it (the client is still there). */
  const openEventStream = (res: HttpResponse, head: EventStreamReply, isAborted: () => boolean, onGone: (b: EventStreamBinding) => void) => {
    res.cork(() => {
      res.writeStatus('200 OK');
      for (const [k, v] of Object.entries(head.headers)) res.writeHeader(k, v);
      res.write(EVENT_STREAM_PREAMBLE); // the head goes out with the first chunk
    });
    let finished = false;
    /** Upper bound on the bytes uWS holds for this response: written since a write last went through whole. */
    let queuedBytes = 0;
    let writable = false;
    res.onWritable(() => {
      writable = true;
      return true;
    });
    const raw: RawEventStream = {
      write: (chunk) => {
        if (finished || isAborted()) return 'dropped';
        if (queuedBytes >= MAX_BACKPRESSURE_BYTES && !writable) return 'dropped';
        writable = false;
        let ok = false;
        try {
          res.cork(() => (ok = res.write(chunk)));
        } catch {
          return 'dropped'; // the response is gone
        }
        if (ok) {
          queuedBytes = 0;
          return 'sent';
        }
        queuedBytes += Buffer.byteLength(chunk);
        return 'backpressure';
      },
      end: () => {
        if (finished || isAborted()) return;
        finished = true;
        try {
          res.cork(() => res.end());
        } catch {
          /* the response is gone */
        }
      },
    };
    onGone(core.openEventStream(raw, head));
  };

  const consoleRoute = guard('console', (res, req, client) => {
    const unserved = core.unserved('console');
    if (unserved) return write(res, unserved);
    const method = req.getMethod().toUpperCase();
    const headers = copyHeaders(req);
    const path = req.getUrl();
    const query = new URLSearchParams(req.getQuery() ?? '');
    let aborted = false;
    let binding: EventStreamBinding | undefined;
    res.onAborted(() => {
      aborted = true;
      binding?.gone();
    });
    const go = (body: Buffer | null) => {
      core
        .console({ method, path, query, headers, body, client })
        .then((r) => {
          if (aborted) return;
          if ('stream' in r) openEventStream(res, r, () => aborted, (b) => (binding = b));
          else write(res, r);
        })
        .catch((err: unknown) => log.error({ err, route: 'console' }, 'reply failed'));
    };
    if (!CONSOLE_BODY_METHODS.has(method)) return go(null);
    if (Number(headers['content-length'] || '0') > MAX_BODY_BYTES) return write(res, core.tooLarge('console'));
    // Runs from a uWS data callback: null = over the limit, answered at once (413, connection closed).
    readBody(res, MAX_BODY_BYTES, (body) => (body === null ? write(res, core.tooLarge('console')) : go(body)));
  });
  server.any('/console', consoleRoute);
  server.any('/console/*', consoleRoute);

  /** WS /voice/stream upgrade: everything is read from `req` here, synchronously (uWS frees it on return). */
  const upgradeStream = (res: HttpResponse, req: HttpRequest, context: us_socket_context_t) => {
    // Copy out of req now: it is invalid once this function returns.
    const secKey = req.getHeader('sec-websocket-key');
    const secProtocol = req.getHeader('sec-websocket-protocol');
    const secExtensions = req.getHeader('sec-websocket-extensions');
    const headers: Record<string, string> = {};
    req.forEach((k, v) => (headers[k] = v));
    const remoteAddress = textDecoder.decode(res.getRemoteAddressAsText());
    const refusal = core.checkUpgrade({
      remoteAddress,
      forwardedFor: forwardedFor(req),
      host: req.getHeader('host'),
      path: req.getUrl(),
      query: req.getQuery() ?? '',
      signature: req.getHeader('x-twilio-signature'),
    });
    if (refusal) {
      res.writeStatus(`${refusal.status} ${statusText(refusal.status)}`).end(refusal.body);
      return;
    }
    const data: StreamData = { remoteAddress, headers, binding: null };
    res.upgrade(data, secKey, secProtocol, secExtensions, context);
  };

  const streamBehavior: WebSocketBehavior<StreamData> = {
    maxPayloadLength: MAX_WS_MESSAGE_BYTES,
    maxBackpressure: MAX_BACKPRESSURE_BYTES,
    closeOnBackpressureLimit: false,
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
          res.writeStatus('500 Internal Server Error').end('internal error\n');
        } catch {
          /* already answered or upgraded */
        }
      }
    },

    open: (ws) => {
      const data = ws.getUserData();
      const binding = core.attach(
        {
          send: (t) => {
            // 1 sent, 0 queued with backpressure (wait for drain), 2 dropped (over maxBackpressure).
            const status = ws.send(t, false);
            return status === 1 ? 'sent' : status === 2 ? 'dropped' : 'backpressure';
          },
          bufferedAmount: () => ws.getBufferedAmount(),
          cork: (fn) => void ws.cork(fn),
          end: (code, reason) => ws.end(code, reason), // runs `close` below synchronously
        },
        { remoteAddress: data.remoteAddress, headers: data.headers },
      );
      data.binding = binding;
      binding.open();
    },

    message: (ws, message, isBinary) => {
      const b = ws.getUserData().binding;
      // The ArrayBuffer is only valid during this call: decode it now.
      if (isBinary) b?.binary(message.byteLength);
      else b?.text(textDecoder.decode(message));
    },

    drain: (ws) => ws.getUserData().binding?.drain(),

    close: (ws, code, message) => {
      const reason = textDecoder.decode(message);
      // uWS closes with 1006 and a reason of its own on bad input (too big, bad UTF-8, bad framing).
      const malformed = code === 1006 && reason ? (/too big/i.test(reason) ? 'oversize_frame' : 'ws_protocol') : undefined;
      ws.getUserData().binding?.closed(code, reason, malformed);
    },
  };
  // /voice/stream, and /i/<instance>/voice/stream when a balancer routes on that prefix without stripping it.
  server.ws<StreamData>('/voice/stream', streamBehavior);
  server.ws<StreamData>('/i/:instance/voice/stream', streamBehavior);

  server.any('/*', guard('other', (res) => write(res, core.notFound())));

  const listenSocket = await new Promise<us_listen_socket>((resolve, reject) => {
    server.listen(settings.host, settings.port, (s) => (s ? resolve(s) : reject(new Error(`cannot listen on ${settings.host}:${settings.port}`))));
  });

  let closing: Promise<void> | undefined;
  return {
    port: uws.us_socket_local_port(listenSocket),
    close() {
      closing ??= (async () => {
        uws.us_listen_socket_close(listenSocket);
        core.closeAllEventStreams();
        await core.closeAllStreams();
        // Idle keep-alive HTTP connections would otherwise hold the event loop
        // until clients drop them; App.close() closes them (the 1001 close
        // frames were written above).
        server.close();
      })();
      return closing;
    },
  };
}

/** Every request header (uWS gives lower-case names); repeated ones joined as node:http joins them (cookie with '; ', others with ', '). */
function copyHeaders(req: HttpRequest): Record<string, string> {
  const out: Record<string, string> = {};
  req.forEach((k, v) => {
    const prev = out[k];
    out[k] = prev === undefined ? v : `${prev}${k === 'cookie' ? '; ' : ', '}${v}`;
  });
  return out;
}

/** Read a request body, copying each chunk (uWS reuses its buffer). null = over `limit`, reported as soon as it is (the rest is not waited for). */
function readBody(res: HttpResponse, limit: number, done: (body: Buffer | null) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let finished = false;
  res.onData((chunk, isLast) => {
    if (finished) return;
    size += chunk.byteLength;
    if (size > limit) {
      finished = true;
      return done(null);
    }
    chunks.push(Buffer.from(chunk.slice(0)));
    if (isLast) {
      finished = true;
      done(Buffer.concat(chunks, size));
    }
  });
}
