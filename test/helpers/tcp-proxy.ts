/**
 * A TCP proxy on loopback whose link the test controls, to play a database
 * that goes away: 'pass' forwards, 'blackhole' accepts and swallows every
 * byte (a dead route: nothing is refused, nothing answers), 'refuse' closes
 * every connection at once (server down).
 */
import { createServer, type Server, type Socket } from 'node:net';
import { closeAll, connectFor, track } from './sockets.js';

export type ProxyMode = 'pass' | 'blackhole' | 'refuse';

export interface TcpProxy {
  port: number;
  url(base: string): string;
  setMode(mode: ProxyMode): void;
  close(): Promise<void>;
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  let mode: ProxyMode = 'pass';
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    track(client, sockets);
    if (mode === 'refuse') return void client.destroy();
    if (mode === 'blackhole') return void client.on('data', () => {});
    const upstream = connectFor(client, target, sockets);
    // Once the link goes dark, bytes already flowing on this connection are swallowed too.
    client.on('data', (d) => {
      if (mode === 'pass') upstream.write(d);
    });
    upstream.on('data', (d) => {
      if (mode === 'pass') client.write(d);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    url: (base) => {
      const u = new URL(base);
      u.hostname = '127.0.0.1';
      u.port = String(port);
      return u.toString();
    },
    setMode(m) {
      mode = m;
      if (m === 'refuse') for (const s of sockets) s.destroy();
    },
    close: () => closeAll(server, sockets),
  };
}
