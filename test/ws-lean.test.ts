// When a raw append frame may go straight to ws's socket (src/realtime/ws-lean.ts), on real loopback sockets.
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { idleSocketOf, writeAppend } from '../src/realtime/ws-lean.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function pair(deflate: boolean): Promise<{ client: WebSocket; received: string[] }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: deflate });
  await once(wss, 'listening');
  const received: string[] = [];
  wss.on('connection', (ws) => ws.on('message', (d) => received.push(d.toString())));
  const client = new WebSocket(`ws://127.0.0.1:${(wss.address() as { port: number }).port}`, { perMessageDeflate: deflate });
  await once(client, 'open');
  cleanups.push(() => new Promise<void>((r) => {
    client.terminate();
    for (const c of wss.clients) c.terminate();
    wss.close(() => r());
  }));
  return { client, received };
}

describe('idleSocketOf / writeAppend', () => {
  it('an open, idle client without extensions gets raw frames', async () => {
    const { client, received } = await pair(false);
    expect(idleSocketOf(client)).toBeDefined();
    expect(writeAppend(client, 'AAAA')).toBe(true);
    await new Promise((r) => setTimeout(r, 50));
    expect(received).toEqual(['{"type":"input_audio_buffer.append","audio":"AAAA"}']);
  });

  it('with permessage-deflate negotiated, every append goes through ws', async () => {
    const { client, received } = await pair(true);
    expect(Object.keys((client as unknown as { _extensions: object })._extensions)).toEqual(['permessage-deflate']);
    expect(idleSocketOf(client)).toBe(undefined);
    expect(writeAppend(client, 'AAAA')).toBe(false);
    client.send('{"type":"via.ws"}');
    await new Promise((r) => setTimeout(r, 50));
    expect(received).toEqual(['{"type":"via.ws"}']);
  });

  it('a client whose internals are not the shape this was checked against is never written to raw', async () => {
    const { client } = await pair(false);
    const sender = (client as unknown as { _sender: Record<string, unknown> })._sender;
    const saved = sender._state;
    sender._state = undefined; // e.g. a future ws that renamed its Sender state
    expect(writeAppend(client, 'AAAA')).toBe(false);
    sender._state = saved;
    const queue = sender._queue;
    sender._queue = { length: 0 }; // not an array
    expect(writeAppend(client, 'AAAA')).toBe(false);
    sender._queue = queue;
    expect(writeAppend(client, 'AAAA')).toBe(true);
  });

  it('a socket that was ended is not written to', async () => {
    const { client } = await pair(false);
    (client as unknown as { _socket: { end(): void } })._socket.end();
    expect(writeAppend(client, 'AAAA')).toBe(false);
  });
});
