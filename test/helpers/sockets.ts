/**
 * Loopback plumbing the tests' own servers share: the sockets a proxy
 * (balancer.ts, tcp-proxy.ts) holds open, an upstream tied to its client,
 * closing all of it at once, and the port a fake WebSocket server got.
 */
import { connect, type Server, type Socket } from 'node:net';
import type { WebSocketServer } from 'ws';

/** Keep an accepted `client` in `open` while it lives; its errors end it quietly. */
export function track(client: Socket, open: Set<Socket>): void {
  open.add(client);
  client.on('close', () => open.delete(client));
  client.on('error', () => {});
}

/** Connect to `target` on behalf of `client`: the upstream is kept in `open`, and when either side closes or fails the other goes too. */
export function connectFor(client: Socket, target: { host: string; port: number }, open: Set<Socket>): Socket {
  const upstream = connect(target.port, target.host);
  open.add(upstream);
  upstream.on('close', () => {
    open.delete(upstream);
    client.destroy();
  });
  upstream.on('error', () => client.destroy());
  client.on('close', () => upstream.destroy());
  return upstream;
}

/** Destroy every socket still open, then close `server` (which would otherwise wait for them). */
export function closeAll(server: Server, open: Set<Socket>): Promise<void> {
  return new Promise((resolve) => {
    for (const s of open) s.destroy();
    server.close(() => resolve());
  });
}

/** The port a WebSocketServer started on port 0 got, once it listens. */
export async function listeningPort(wss: WebSocketServer): Promise<number> {
  await new Promise<void>((r) => (wss.address() ? r() : wss.once('listening', () => r())));
  return (wss.address() as { port: number }).port;
}
