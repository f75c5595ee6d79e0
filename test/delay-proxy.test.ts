/**
 * bench/delay-proxy.ts over loopback: bytes arrive unchanged and in order, no
 * earlier than the configured delay (no upper wall-clock bound: a busy box may
 * be late, never early), jitter never reorders, and ends and resets cross it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createServer, connect, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { startDelayProxy, type DelayProxy } from '../bench/delay-proxy.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A TCP server that records what it receives (with arrival times) and hands each accepted socket to `onConn`. */
async function sink(onConn?: (s: Socket) => void): Promise<{ port: number; got: { at: number; bytes: Buffer }[]; ended: Promise<void>; server: Server }> {
  const got: { at: number; bytes: Buffer }[] = [];
  let endedResolve!: () => void;
  const ended = new Promise<void>((r) => (endedResolve = r));
  const server = createServer({ allowHalfOpen: true }, (s) => {
    s.on('data', (b: Buffer) => got.push({ at: performance.now(), bytes: b }));
    s.on('end', () => {
      endedResolve();
      s.end();
    });
    s.on('error', () => {});
    onConn?.(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  return { port: (server.address() as AddressInfo).port, got, ended, server };
}

async function proxyTo(port: number, delayMs: number, jitterMs = 0): Promise<DelayProxy> {
  const p = await startDelayProxy({ targetPort: port, delayMs, jitterMs, seed: 7 });
  cleanups.push(() => p.close());
  return p;
}

async function dial(port: number): Promise<Socket> {
  const s = connect({ host: '127.0.0.1', port, noDelay: true });
  s.on('error', () => {});
  await new Promise<void>((r) => s.once('connect', () => r()));
  cleanups.push(() => void s.destroy());
  return s;
}

/** Numbered 4-byte records, so order and completeness can be read back from the byte stream. */
function record(i: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(i);
  return b;
}
function records(bytes: Buffer): number[] {
  const out: number[] = [];
  for (let off = 0; off + 4 <= bytes.length; off += 4) out.push(bytes.readUInt32BE(off));
  return out;
}
const until = async (cond: () => boolean, what: string): Promise<void> => {
  for (let i = 0; i < 1000 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  if (!cond()) throw new Error(`timed out waiting for ${what}`);
};

describe('delay proxy', () => {
  it('forwards every byte in order, each chunk no earlier than the configured delay', async () => {
    const target = await sink();
    const proxy = await proxyTo(target.port, 30);
    const s = await dial(proxy.port);
    const sentAt: number[] = [];
    for (let i = 0; i < 20; i++) {
      sentAt.push(performance.now());
      s.write(record(i));
      await new Promise((r) => setTimeout(r, 3));
    }
    await until(() => Buffer.concat(target.got.map((g) => g.bytes)).length === 80, 'all 80 bytes');
    expect(records(Buffer.concat(target.got.map((g) => g.bytes)))).toEqual(Array.from({ length: 20 }, (_, i) => i));
    // The first byte cannot arrive before the first write + the delay.
    expect(target.got[0]!.at - sentAt[0]!).toBeGreaterThanOrEqual(30 - 1);
    // Each record arrives no earlier than its own write + the delay (arrival chunks may merge several records).
    let rec = 0;
    for (const g of target.got) {
      const last = rec + g.bytes.length / 4 - 1;
      expect(g.at - sentAt[last]!).toBeGreaterThanOrEqual(30 - 1);
      rec = last + 1;
    }
    const st = proxy.stats();
    expect(st.chunks).toBeGreaterThan(0);
    expect(st.errP50Ms).toBeGreaterThanOrEqual(0);
    expect(st.connections).toBe(1);
  });

  it('jitter larger than the gap between chunks never reorders them', async () => {
    const target = await sink();
    const proxy = await proxyTo(target.port, 10, 10); // each chunk 0-20 ms, chunks 1 ms apart: unordered scheduling would reorder
    const s = await dial(proxy.port);
    for (let i = 0; i < 200; i++) {
      s.write(record(i));
      if (i % 10 === 9) await new Promise((r) => setTimeout(r, 1));
    }
    await until(() => Buffer.concat(target.got.map((g) => g.bytes)).length === 800, 'all 800 bytes');
    expect(records(Buffer.concat(target.got.map((g) => g.bytes)))).toEqual(Array.from({ length: 200 }, (_, i) => i));
  });

  it('delays the answer direction too and passes an end both ways, after the data', async () => {
    const echo = await sink((s) => s.on('data', (b: Buffer) => s.write(b)));
    const proxy = await proxyTo(echo.port, 20);
    const s = await dial(proxy.port);
    const back: Buffer[] = [];
    s.on('data', (b: Buffer) => back.push(b));
    const closed = new Promise<void>((r) => s.once('close', () => r()));
    const t0 = performance.now();
    s.write(record(1));
    s.write(record(2));
    await until(() => Buffer.concat(back).length === 8, 'the echo');
    // Out and back through the proxy: at least twice the delay.
    expect(performance.now() - t0).toBeGreaterThanOrEqual(40 - 1);
    expect(records(Buffer.concat(back))).toEqual([1, 2]);
    s.end();
    await echo.ended; // the target saw our end
    await closed; // and its own end came back through the proxy
  });

  it('a reset on one side destroys the other', async () => {
    let accepted!: Socket;
    const target = await sink((s) => (accepted = s));
    const proxy = await proxyTo(target.port, 5);
    const s = await dial(proxy.port);
    s.write(record(1));
    await until(() => accepted !== undefined && target.got.length > 0, 'the connection');
    const targetClosed = new Promise<void>((r) => accepted.once('close', () => r()));
    s.resetAndDestroy();
    await targetClosed;
    expect(accepted.destroyed).toBe(true);
  });
});
