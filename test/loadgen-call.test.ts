/**
 * The calls-per-core load generator's caller (bench/loadgen-worker.ts
 * LeanCall) on a real loopback socket, its clock driven by hand: once every
 * utterance is said it hangs up `hangupAfterMs` after the assistant went
 * quiet, and the assistant's voice again restarts that wait, as
 * src/sim/caller.ts does. A caller that hung up on a moment's quiet in the
 * middle of an answer cut the rest of it off, and the bench counted that
 * audio as lost by the relay (a full CI run read "relay failed" at 300
 * passthrough calls: 360 outbound frames lost, no stall).
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { LeanCall } from '../bench/loadgen-worker.js';
import { until } from './helpers/until.js';

const STREAM_SID = `MZ${'a'.repeat(32)}`;
/** A loud 20 ms µ-law frame (alternating full-scale codes): the assistant speaking. */
const VOICED_B64 = Buffer.from(Array.from({ length: 160 }, (_, i) => (i % 2 ? 0x00 : 0x80))).toString('base64');

/** An unmasked server → client WebSocket text frame (RFC 6455 §5.2). */
function serverTextFrame(text: string): Buffer {
  const payload = Buffer.from(text);
  const head = payload.length < 126 ? Buffer.from([0x81, payload.length]) : Buffer.from([0x81, 126, payload.length >> 8, payload.length & 0xff]);
  return Buffer.concat([head, payload]);
}
const media = (n: number): Buffer =>
  Buffer.concat(Array.from({ length: n }, () => serverTextFrame(JSON.stringify({ event: 'media', streamSid: STREAM_SID, media: { payload: VOICED_B64 } }))));

const closers: (() => void)[] = [];
afterEach(() => {
  for (const c of closers.splice(0)) c();
});

/** A LeanCall on the client end of a loopback connection; `relay` is the server end. */
async function connected(hangupAfterMs: number): Promise<{ call: LeanCall; relay: net.Socket }> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const sock = net.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port });
  await new Promise<void>((r) => sock.once('connect', () => r()));
  const relay = await accepted;
  relay.on('data', () => {}); // what the caller sends (connected, start, media) is not read here
  closers.push(() => {
    sock.destroy();
    relay.destroy();
    server.close();
  });
  const call = new LeanCall(sock, { streamSid: STREAM_SID, callSid: `CA${'b'.repeat(32)}`, accountSid: `AC${'c'.repeat(32)}`, customParameters: {} }, [], hangupAfterMs, 60_000);
  call.begin(0, Buffer.alloc(0));
  return { call, relay };
}

/** Ticks from `from` to `to` ms of the call's clock, every 20 ms. */
function ticks(call: LeanCall, from: number, to: number): void {
  for (let t = from; t <= to; t += 20) call.tick(t);
}

describe('load generator caller hang-up', () => {
  it('an answer that resumes after its audio ran out for a moment is heard to its end; the hang-up comes after the quiet that follows', async () => {
    const { call, relay } = await connected(500);
    relay.write(media(10));
    await until(() => call.out.frameSizes[160] === 10, { what: 'the first 10 frames at the caller' });
    ticks(call, 20, 220); // frame n is due at n × 20 ms: 10 frames played at 0 … 180 ms; at 200 ms the buffer is empty: the wait starts
    relay.write(media(30)); // the rest of the answer arrives
    await until(() => call.out.frameSizes[160] === 40, { what: 'the other 30 frames at the caller' });
    ticks(call, 240, 840); // 30 frames played, 240 … 820 ms
    expect(call.hungUp).toBe(false); // not at 700 ms (500 ms after the first quiet): the answer went on
    ticks(call, 860, 1320);
    expect(call.hungUp).toBe(false);
    ticks(call, 1340, 1340); // 500 ms after the quiet that began at 840 ms
    expect(call.hungUp).toBe(true);
    expect(call.out.protocolViolations).toEqual([]);
  });

  it('with no more audio, hangs up hangupAfterMs after the answer ended', async () => {
    const { call, relay } = await connected(300);
    relay.write(media(5));
    await until(() => call.out.frameSizes[160] === 5, { what: '5 frames at the caller' });
    ticks(call, 20, 380); // frame n is due at n × 20 ms: played at 0 … 80 ms, quiet from 100 ms
    expect(call.hungUp).toBe(false);
    ticks(call, 400, 400);
    expect(call.hungUp).toBe(true);
  });
});
