/**
 * A WebSocket proxy on loopback, in front of a model endpoint (the stand-in):
 * the one the fuzzer and the model-link tests put between callbridge and the
 * model, to watch, refuse, hold, freeze or cut its connections.
 *
 * - Each client connection gets an upstream socket of its own
 *   (`upstreamUrl(request URL)`), with the client's Authorization header.
 *   Client messages sent before the upstream is open are queued, then both
 *   ways are relayed as they are (text stays text, binary binary).
 * - Upgrades pass `admit`: accepted (default), refused with an HTTP status,
 *   or held unanswered (the held request's client going away is counted in
 *   `heldAbandoned`). `upgrades` counts every upgrade request.
 * - Pings from the client are answered unless `answerPing` says no (a frozen
 *   connection: the client's heartbeat then misses its pong).
 * - When either side closes or fails, `ended` is called once and the other
 *   side follows: an upstream close code a close frame can carry is passed
 *   to the client with its reason; any other end (1005, 1006, an error) cuts
 *   the client without a close frame, or closes it with 1011 when
 *   `unsendableClose` is 1011.
 */
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';

export interface ProxiedPair {
  client: WebSocket;
  upstream: WebSocket;
}

export interface WsProxyOptions<C extends ProxiedPair> {
  /** The upstream URL for a client's request URL (path and query as sent). */
  upstreamUrl(requestUrl: string): string;
  /** The record kept for a new connection (before any message flows). */
  connection(pair: ProxiedPair): C;
  /** Each upgrade request: accept (default), leave it unanswered, or refuse it with an HTTP status. */
  admit?(req: IncomingMessage): 'accept' | 'hold' | { refuse: number };
  /** A client message, before it is relayed upstream. */
  fromClient?(c: C, data: WebSocket.RawData, binary: boolean): void;
  /** An upstream message, after it is relayed to the client. */
  fromUpstream?(c: C, data: WebSocket.RawData, binary: boolean): void;
  /** Whether to answer the client's ping (default: always). */
  answerPing?(c: C): boolean;
  /** One side of the connection closed or failed (called once per connection). */
  ended?(c: C): void;
  /** An end whose code a close frame cannot carry: cut the client (default) or close it with 1011. */
  unsendableClose?: 'terminate' | 1011;
  /** Largest message relayed, bytes (ws's default otherwise). */
  maxPayload?: number;
}

/** Close codes a peer may send in a close frame. */
export function sendableCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

export class WsProxy<C extends ProxiedPair> {
  readonly conns: C[] = [];
  /** Upgrade requests seen (= connect attempts). */
  upgrades = 0;
  /** Held upgrade requests whose client went away. */
  heldAbandoned = 0;
  port = 0;
  private readonly held: IncomingMessage[] = [];
  private readonly wss: WebSocketServer;

  private constructor(private readonly opts: WsProxyOptions<C>) {
    this.wss = new WebSocketServer({
      host: '127.0.0.1',
      port: 0,
      autoPong: false,
      ...(opts.maxPayload !== undefined ? { maxPayload: opts.maxPayload } : {}),
      verifyClient: (info, cb) => {
        this.upgrades++;
        const verdict = opts.admit?.(info.req) ?? 'accept';
        if (verdict === 'accept') cb(true);
        else if (verdict === 'hold') {
          this.held.push(info.req);
          // Read the held socket (it is never upgraded) so the client's going away (FIN) is noticed.
          info.req.socket.resume();
          info.req.socket.once('end', () => this.heldAbandoned++);
        } else cb(false, verdict.refuse, 'refused by the proxy');
      },
    });
    this.wss.on('connection', (client, req) => this.relay(client, req));
  }

  static async start<C extends ProxiedPair>(opts: WsProxyOptions<C>): Promise<WsProxy<C>> {
    const proxy = new WsProxy(opts);
    await new Promise<void>((resolve, reject) => {
      proxy.wss.once('listening', resolve);
      proxy.wss.once('error', reject);
    });
    proxy.port = (proxy.wss.address() as AddressInfo).port;
    return proxy;
  }

  /** `ws://127.0.0.1:<port>` */
  get origin(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  async close(): Promise<void> {
    for (const req of this.held.splice(0)) req.socket.destroy();
    for (const c of this.conns) {
      c.client.terminate();
      c.upstream.terminate();
    }
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }

  private relay(client: WebSocket, req: IncomingMessage): void {
    const { opts } = this;
    const authorization = req.headers.authorization;
    const upstream = new WebSocket(opts.upstreamUrl(req.url ?? '/'), { headers: authorization ? { authorization } : {} });
    const c = opts.connection({ client, upstream });
    this.conns.push(c);
    const early: { data: WebSocket.RawData; binary: boolean }[] = [];
    client.on('ping', (data) => {
      if (opts.answerPing?.(c) ?? true) client.pong(data);
    });
    client.on('message', (data, binary) => {
      opts.fromClient?.(c, data, binary);
      if (upstream.readyState === WebSocket.OPEN) upstream.send(data, { binary });
      else early.push({ data, binary });
    });
    upstream.on('open', () => {
      for (const m of early.splice(0)) upstream.send(m.data, { binary: m.binary });
    });
    upstream.on('message', (data, binary) => {
      if (client.readyState !== WebSocket.OPEN) return;
      client.send(data, { binary });
      opts.fromUpstream?.(c, data, binary);
    });
    let ended = false;
    const end = (code: number | null, reason = ''): void => {
      if (!ended) {
        ended = true;
        opts.ended?.(c);
      }
      if (client.readyState === WebSocket.OPEN) {
        if (code !== null && sendableCloseCode(code)) client.close(code, reason);
        else if (opts.unsendableClose === 1011) client.close(1011);
        else client.terminate();
      }
      if (upstream.readyState === WebSocket.OPEN || upstream.readyState === WebSocket.CONNECTING) upstream.terminate();
    };
    upstream.on('close', (code, reason) => end(code, reason.toString()));
    upstream.on('error', () => end(null));
    client.on('close', () => end(null));
    client.on('error', () => end(null));
  }
}
