/**
 * A plain HTTP and WebSocket load balancer on loopback, as in front of
 * several callbridge instances: nothing sticky. Each request goes to the
 * backend `pick` names for it (the test decides: webhooks to one instance,
 * streams to another). A path `/i/<instance>/…` is routed to that instance
 * with the prefix stripped (what a proxy routing on STREAM_URL_TEMPLATE's
 * path prefix does). Upgrades are piped as raw bytes after the request head.
 */
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { closeAll, connectFor, track } from './sockets.js';

export interface Balancer {
  port: number;
  base: string;
  /** Backends by instance name: host port. */
  backends: Map<string, number>;
  /** Which backend a request without an /i/<instance> prefix goes to. */
  pick: (kind: 'http' | 'upgrade', path: string) => string;
  /** Requests routed so far: kind, backend, path as forwarded. */
  routed: { kind: 'http' | 'upgrade'; to: string; path: string }[];
  close(): Promise<void>;
}

export async function startBalancer(backends: Map<string, number>): Promise<Balancer> {
  const sockets = new Set<Socket>();
  const lb: Balancer = {
    port: 0,
    base: '',
    backends,
    pick: () => [...backends.keys()][0]!,
    routed: [],
    close: () => closeAll(server, sockets),
  };
  const route = (kind: 'http' | 'upgrade', url: string): { port: number; path: string } | null => {
    const m = /^\/i\/([^/]+)(\/.*)$/.exec(url);
    const to = m ? m[1]! : lb.pick(kind, url);
    const path = m ? m[2]! : url;
    const port = backends.get(to);
    if (port === undefined) return null;
    lb.routed.push({ kind, to, path });
    return { port, path };
  };
  const server: Server = createServer((req, res) => {
    const r = route('http', req.url ?? '/');
    if (!r) return void res.writeHead(502).end('no backend\n');
    const up = request({ host: '127.0.0.1', port: r.port, method: req.method, path: r.path, headers: req.headers }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      ur.pipe(res);
    });
    up.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(up);
  });
  server.on('upgrade', (req: IncomingMessage, client: Socket, head: Buffer) => {
    track(client, sockets);
    const r = route('upgrade', req.url ?? '/');
    if (!r) return void client.end('HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n');
    const upstream = connectFor(client, { host: '127.0.0.1', port: r.port }, sockets);
    let headText = `${req.method} ${r.path} HTTP/1.1\r\n`;
    for (let i = 0; i < req.rawHeaders.length; i += 2) headText += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
    upstream.write(headText + '\r\n');
    if (head.length > 0) upstream.write(head);
    upstream.pipe(client);
    client.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  lb.port = typeof addr === 'object' && addr ? addr.port : 0;
  lb.base = `http://127.0.0.1:${lb.port}`;
  return lb;
}
