/**
 * The portable edge: node:http + ws, for a Node where no native
 * uWebSockets.js loads. Same routes, limits and guarantees as uws-edge.ts
 * (they come from core.ts); this file only moves bytes in and out of Node.
 *
 * How the uWS guarantees map onto Node:
 * - Body limit: Content-Length over MAX_BODY_BYTES → 413 before reading, the
 *   connection closed after it; a chunked body that grows past it → 413 as
 *   soon as it does, the connection closed after it.
 * - Frame limit: ws `maxPayload` = MAX_WS_MESSAGE_BYTES; ws closes (1009) and
 *   reports the error, counted as `oversize_frame` (other framing errors,
 *   e.g. bad UTF-8: `ws_protocol`).
 * - Backpressure: `send` reports backpressure when the socket's write buffer
 *   is past its high-water mark (the frame is queued, `writableNeedDrain`),
 *   and drops the frame once ws's buffered amount reaches
 *   MAX_BACKPRESSURE_BYTES; the socket's `drain` event calls onDrain.
 * - Cork: the TCP socket is corked for the callback and uncorked after it,
 *   so the frames go out in one writev.
 * - Close: closing from our side reports onClose(code, reason) at once, as
 *   uWS does; ws finishes the close handshake on its own. Idle sockets are
 *   pinged and closed after WS_IDLE_TIMEOUT_S without any frame or pong.
 * - Every listener is guarded; socket errors are swallowed after counting,
 *   so no client can crash the process.
 * - Console event streams: the head and an SSE comment are written at once;
 *   each chunk is written as it comes (false past the response's high-water
 *   mark) and dropped once the response and its socket hold
 *   MAX_BACKPRESSURE_BYTES (`writableLength`); the response's 'close' before
 *   its end is the client going away.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import type { AdminRequest } from '../call/ports.js';
import {
  CONSOLE_BODY_METHODS, EVENT_STREAM_PREAMBLE, EdgeCore, MAX_BACKPRESSURE_BYTES, MAX_BODY_BYTES, MAX_WS_MESSAGE_BYTES, WS_IDLE_TIMEOUT_S, routeOf, statusText,
  type EdgeServer, type EventStreamBinding, type EventStreamReply, type HttpReply, type RawEventStream, type Route,
} from './core.js';

/** How long close() lets streams finish their close handshake before cutting them, ms. */
const CLOSE_GRACE_MS = 1000;
/** A request (headers and body) must arrive within this, ms (slow senders hold no connection for long). */
const REQUEST_TIMEOUT_MS = 30_000;

interface Live {
  lastSeenMs: number;
}

const STREAM_PATH = /^(?:\/i\/[A-Za-z0-9._:-]{1,64})?\/voice\/stream$/;

export async function startNodeEdge(core: EdgeCore): Promise<EdgeServer> {
  const { settings, log, metrics } = core;
  const live = new Map<WebSocket, Live>();
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_WS_MESSAGE_BYTES, perMessageDeflate: false, clientTracking: false });
  const server = createServer({ requestTimeout: REQUEST_TIMEOUT_MS });

  const write = (res: ServerResponse, r: HttpReply) => {
    if (res.headersSent || res.destroyed) return; // the client went away
    if (r.status === 204 || r.status === 304) res.writeHead(r.status, statusText(r.status), r.headers ?? {}).end();
    else {
      const headers: Record<string, string | number> = { 'content-type': r.type, 'content-length': Buffer.byteLength(r.body) };
      if (r.closeConnection) headers.connection = 'close';
      Object.assign(headers, r.headers);
      res.writeHead(r.status, statusText(r.status), headers).end(r.body);
    }
    core.counted(r);
  };

  const handle = (req: IncomingMessage, res: ServerResponse, route: Route, path: string, query: string) => {
    const client = core.clientAddress(req.socket.remoteAddress ?? '', header(req, 'x-forwarded-for'));
    const length = req.headers['content-length'];
    const limited = core.limitHttp(client, route, length ? Number(length) : undefined);
    if (limited) {
      req.resume(); // the body is not wanted: discarded as it comes (the connection closes after the reply when it may be large)
      return write(res, limited);
    }
    const unserved = core.unserved(route);
    if (unserved) {
      req.resume(); // the body is not wanted
      return write(res, unserved);
    }
    const answer = (r: HttpReply | Promise<HttpReply>) => {
      // core's replies never throw or reject: a failure here is the socket's
      const put = (x: HttpReply) => {
        try {
          write(res, x);
        } catch (err) {
          log.error({ err, route }, 'reply failed');
        }
      };
      if (r instanceof Promise) void r.then(put);
      else put(r);
    };
    switch (route) {
      case 'incoming':
      case 'status':
      case 'action':
      case 'dial_action':
      case 'whisper':
      case 'amd': {
        if (Number(req.headers['content-length'] ?? '0') > MAX_BODY_BYTES) {
          req.resume(); // discard what the client still sends; the connection closes after the reply
          return write(res, core.tooLarge(route));
        }
        const host = header(req, 'host');
        const signature = header(req, 'x-twilio-signature');
        return readBody(req, MAX_BODY_BYTES, (body) => answer(core.webhook(route, { host, path, query, signature, body, client })));
      }
      case 'place_call': {
        if (Number(req.headers['content-length'] ?? '0') > MAX_BODY_BYTES) {
          req.resume();
          return write(res, core.tooLarge(route));
        }
        const authorization = req.headers.authorization;
        return readBody(req, MAX_BODY_BYTES, (body) => answer(core.placeCall(authorization, body)));
      }
      case 'health':
        return write(res, core.health(header(req, 'authorization')));
      case 'metrics':
        return void core.metricsText().then((r) => write(res, r), (err: unknown) => log.error({ err }, 'metrics reply failed'));
      case 'admin': {
        const request: AdminRequest = { method: (req.method ?? 'GET').toUpperCase(), path, query: new URLSearchParams(query), headers: copyHeaders(req) };
        return void core.admin(request).then((r) => write(res, r), (err: unknown) => log.error({ err }, 'admin reply failed'));
      }
      case 'console': {
        const method = (req.method ?? 'GET').toUpperCase();
        const headers = copyHeaders(req);
        const go = (body: Buffer | null) =>
          void core.console({ method, path, query: new URLSearchParams(query), headers, body, client }).then(
            (r) => ('stream' in r ? openEventStream(res, r) : write(res, r)),
            (err: unknown) => log.error({ err, route }, 'console reply failed'),
          );
        if (!CONSOLE_BODY_METHODS.has(method)) {
          req.resume(); // a body is not read for this method
          return go(null);
        }
        if (Number(req.headers['content-length'] ?? '0') > MAX_BODY_BYTES) {
          req.resume(); // discard what the client still sends; the connection closes after the reply
          return write(res, core.tooLarge(route));
        }
        return readBody(req, MAX_BODY_BYTES, (body) => (body === null ? write(res, core.tooLarge(route)) : go(body)));
      }
      case 'other':
        return write(res, core.notFound());
    }
  };

  /** The head of an event stream, then the app's stream on it (unless the client has gone already). */
  const openEventStream = (res: ServerResponse, head: EventStreamReply) => {
    if (res.headersSent || res.destroyed) return; // the client went away
    res.writeHead(200, statusText(200), head.headers);
    res.write(EVENT_STREAM_PREAMBLE);
    const usable = () => !res.destroyed && !res.writableEnded;
    const raw: RawEventStream = {
      write: (chunk) => {
        if (!usable() || res.writableLength >= MAX_BACKPRESSURE_BYTES) return 'dropped';
        return res.write(chunk) ? 'sent' : 'backpressure';
      },
      end: () => {
        if (usable()) res.end();
      },
    };
    // 'close' before the end is the client going away; after an end the binding is finished and ignores it.
    let binding: EventStreamBinding | undefined;
    let closed = false;
    res.on('close', () => {
      closed = true;
      binding?.gone();
    });
    binding = core.openEventStream(raw, head);
    if (closed) binding.gone();
  };

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const { path, query } = splitUrl(req.url ?? '/');
    const route = routeOf(req.method ?? 'GET', path, settings);
    res.on('error', () => {}); // a reset client: nothing to answer
    try {
      handle(req, res, route, path, query);
    } catch (err) {
      try {
        write(res, core.failed(route, err));
      } catch {
        /* response already ended or aborted */
      }
    }
  });

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => {}); // ECONNRESET and the like: ws or we close it
    try {
      const { path, query } = splitUrl(req.url ?? '/');
      // /voice/stream, and /i/<instance>/voice/stream when a balancer routes on that prefix without stripping it.
      if (!STREAM_PATH.test(path) || header(req, 'upgrade').toLowerCase() !== 'websocket') {
        const r = core.notFound();
        core.counted(r);
        return rawReply(socket, r);
      }
      const remoteAddress = (socket as Socket).remoteAddress ?? '';
      const refusal = core.checkUpgrade({
        remoteAddress, forwardedFor: header(req, 'x-forwarded-for'), host: header(req, 'host'), path, query, signature: header(req, 'x-twilio-signature'),
      });
      if (refusal) return rawReply(socket, refusal);
      const headers = copyHeaders(req);
      wss.handleUpgrade(req, socket, head, (ws) => {
        try {
          openStream(ws, socket as Socket, remoteAddress, headers);
        } catch (err) {
          metrics.handlerErrors.inc({ handler: 'upgrade' });
          log.error({ err }, 'stream open failed');
          ws.terminate();
        }
      });
    } catch (err) {
      metrics.handlerErrors.inc({ handler: 'upgrade' });
      metrics.streamsRefused.inc({ reason: 'error' });
      log.error({ err }, 'stream upgrade failed');
      rawReply(socket, { route: 'other', status: 500, body: 'internal error\n', type: 'text/plain; charset=utf-8' });
    }
  });

  const openStream = (ws: WebSocket, socket: Socket, remoteAddress: string, headers: Record<string, string>) => {
    const state: Live = { lastSeenMs: Date.now() };
    live.set(ws, state);
    let malformed: 'oversize_frame' | 'ws_protocol' | undefined;
    const binding = core.attach(
      {
        send: (t) => {
          if (ws.bufferedAmount >= MAX_BACKPRESSURE_BYTES) return 'dropped';
          ws.send(t);
          return socket.writableNeedDrain ? 'backpressure' : 'sent';
        },
        bufferedAmount: () => ws.bufferedAmount,
        cork: (fn) => {
          socket.cork();
          try {
            fn();
          } finally {
            socket.uncork();
          }
        },
        end: (code, reason) => {
          try {
            ws.close(code, reason);
          } catch {
            ws.terminate(); // a code ws will not put on the wire (e.g. 1006)
          }
          binding.closed(code, reason.toString('utf8')); // reported now, as uWS does
        },
      },
      { remoteAddress, headers },
    );
    ws.on('error', (err: Error & { code?: string }) => {
      // ws closes the socket itself after a framing error; say why when it does.
      if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') malformed = 'oversize_frame';
      else if (err.code?.startsWith('WS_ERR_')) malformed = 'ws_protocol';
    });
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      state.lastSeenMs = Date.now();
      if (isBinary) binding.binary(data.byteLength);
      else binding.text(data.toString('utf8'));
    });
    ws.on('pong', () => (state.lastSeenMs = Date.now()));
    socket.on('drain', () => binding.drain());
    ws.on('close', (code: number, reason: Buffer) => {
      live.delete(ws);
      binding.closed(code, reason.toString('utf8'), malformed);
    });
    binding.open();
  };

  // Idle sockets: ping every half period; cut those silent (no frame, no pong) for a whole one.
  const idleTimer = setInterval(() => {
    const now = Date.now();
    for (const [ws, s] of live) {
      try {
        if (now - s.lastSeenMs > WS_IDLE_TIMEOUT_S * 1000) ws.terminate();
        else ws.ping();
      } catch {
        /* closing already */
      }
    }
  }, (WS_IDLE_TIMEOUT_S * 1000) / 2);
  idleTimer.unref();

  server.on('clientError', (_err, socket) => {
    // Malformed HTTP: answer 400 when still possible (Node's default), never throw.
    try {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      else socket.destroy();
    } catch {
      /* gone */
    }
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(new Error(`cannot listen on ${settings.host}:${settings.port}: ${err.message}`, { cause: err }));
    server.once('error', onError);
    server.listen(settings.port, settings.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (err) => log.error({ err }, 'http server error'));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : settings.port;

  let closing: Promise<void> | undefined;
  return {
    port,
    close() {
      closing ??= (async () => {
        server.close();
        core.closeAllEventStreams();
        await core.closeAllStreams();
        server.closeAllConnections();
        clearInterval(idleTimer);
        // Let the close handshakes finish, then cut whatever still hangs on.
        const t0 = Date.now();
        while (live.size > 0 && Date.now() - t0 < CLOSE_GRACE_MS) await new Promise((r) => setTimeout(r, 10));
        for (const ws of live.keys()) ws.terminate();
        wss.close();
      })();
      return closing;
    },
  };
}

/** "/a/b?x=1" → path "/a/b", query "x=1" (a bare "?" is no query, as uWS reports it). */
function splitUrl(url: string): { path: string; query: string } {
  const q = url.indexOf('?');
  return q < 0 ? { path: url, query: '' } : { path: url.slice(0, q), query: url.slice(q + 1) };
}

function header(req: IncomingMessage, name: string): string {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(', ') : (v ?? '');
}

function copyHeaders(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) out[k] = Array.isArray(v) ? v.join(', ') : v;
  return out;
}

/**
 * Read a request body. null = over `limit`, reported as soon as it is (the
 * rest is read and discarded until the connection closes). Calls `done` once,
 * unless the client aborts.
 */
function readBody(req: IncomingMessage, limit: number, done: (body: Buffer | null) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let finished = false;
  req.on('data', (chunk: Buffer) => {
    if (finished) return;
    size += chunk.byteLength;
    if (size <= limit) chunks.push(chunk);
    else {
      finished = true;
      done(null);
    }
  });
  req.on('end', () => {
    if (finished) return;
    finished = true;
    done(Buffer.concat(chunks, size));
  });
  req.on('error', () => {}); // aborted: nothing to answer
}

/** Answer an upgrade request we do not accept, on the raw socket, and close it. */
function rawReply(socket: Duplex, r: HttpReply): void {
  const body = Buffer.from(r.body);
  socket.end(
    Buffer.concat([Buffer.from(`HTTP/1.1 ${r.status} ${statusText(r.status)}\r\nContent-Type: ${r.type}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`), body]),
  );
}
