/**
 * Wire suite: the JavaScript each 20 ms message costs at the edges of a call.
 *
 * Parse (per Twilio message): the media/mark fast path (parseTwilioMessage)
 * against the full parser (JSON.parse + validation, what every message paid
 * before) and against bare JSON.parse. Inputs: 50 distinct recorded-shape
 * messages cycled.
 *
 * Write (per `input_audio_buffer.append`, on a real loopback TCP socket to a
 * sink in a worker thread that completes the WebSocket handshake and then
 * discards every byte): `ws.send` of the JSON text (today's path) against the
 * lean path (src/realtime/ws-lean.ts: guard + one frame + one socket.write)
 * and against the same frame written with no `ws` guard at all (what owning
 * the client framing in src/realtime would cost per write). Writes are timed
 * in batches while the socket accepts them at once; between batches the
 * suite waits (untimed) for the socket to drain, so a backed-up socket, where
 * writes only queue and get cheaper, never flatters a figure. Transcode
 * appends start from raw PCM (base64 via Buffer#toString). The base64 step
 * is also measured alone against a JS encoder writing straight into frame
 * memory: what a raw-bytes `appendAudio` would save or cost.
 *
 * All figures are ns per message; ratios within one run are what to read.
 */
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { Worker } from 'node:worker_threads';
import WebSocket from 'ws';
import { appendAudioEvent } from '../../src/realtime/protocol.js';
import { AppendFrameWriter } from '../../src/realtime/ws-frame.js';
import { writeAppend } from '../../src/realtime/ws-lean.js';
import { parseTwilioMessage, parseTwilioMessageFull } from '../../src/twilio/media-stream.js';
import { measureFrames, median, type FrameTask } from '../measure.js';
import type { Result, RunOptions, Suite } from '../types.js';
import { syntheticPcm } from './dsp.js';

const MESSAGES = 50;
const SID = 'MZ18ad3ab5a668481ce02b83e7395059f0';

/** A sink on 127.0.0.1 in its own thread: answers the WebSocket upgrade, then reads and drops everything. */
const SINK_SOURCE = `
const { createServer } = require('node:http');
const { createHash } = require('node:crypto');
const { parentPort } = require('node:worker_threads');
const server = createServer((_req, res) => res.writeHead(404).end());
server.on('upgrade', (req, socket) => {
  const accept = createHash('sha1').update(req.headers['sec-websocket-key'] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  socket.write('HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Accept: ' + accept + '\\r\\n\\r\\n');
  socket.on('data', () => {});
  socket.on('error', () => {});
});
server.listen(0, '127.0.0.1', () => parentPort.postMessage(server.address().port));
parentPort.on('message', (m) => { if (m === 'close') { server.closeAllConnections?.(); server.close(); process.exit(0); } });
`;

function mediaText(i: number, payload: string): string {
  return `{"event":"media","sequenceNumber":"${i + 2}","streamSid":"${SID}","media":{"track":"inbound","chunk":"${i + 1}","timestamp":"${i * 20 + 5}","payload":"${payload}"}}`;
}

function markText(i: number): string {
  return `{"event":"mark","sequenceNumber":"${i + 2}","streamSid":"${SID}","mark":{"name":"r${1 + (i >> 3)}:${i}"}}`;
}

/** µ-law-ish bytes for 50 frames (the content does not matter to parsing or framing, only its size). */
function frames(bytesPerFrame: number, seed: number): Buffer[] {
  const pcm = syntheticPcm(bytesPerFrame * MESSAGES, 8000, seed);
  const all = Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength);
  return Array.from({ length: MESSAGES }, (_, i) => all.subarray(i * bytesPerFrame, (i + 1) * bytesPerFrame));
}

// ── The raw-bytes alternative measured for transcode: base64 straight into frame memory ──
const B64 = Uint8Array.from('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/', (c) => c.charCodeAt(0));
function encodeBase64Into(src: Uint8Array, dst: Uint8Array, at: number): number {
  const len = src.length;
  const whole = len - (len % 3);
  let o = at;
  let i = 0;
  for (; i < whole; i += 3) {
    const v = (src[i]! << 16) | (src[i + 1]! << 8) | src[i + 2]!;
    dst[o] = B64[v >>> 18]!;
    dst[o + 1] = B64[(v >>> 12) & 63]!;
    dst[o + 2] = B64[(v >>> 6) & 63]!;
    dst[o + 3] = B64[v & 63]!;
    o += 4;
  }
  if (len - whole === 1) {
    const v = src[i]! << 16;
    dst[o] = B64[v >>> 18]!;
    dst[o + 1] = B64[(v >>> 12) & 63]!;
    dst[o + 2] = dst[o + 3] = 0x3d;
    o += 4;
  } else if (len - whole === 2) {
    const v = (src[i]! << 16) | (src[i + 1]! << 8);
    dst[o] = B64[v >>> 18]!;
    dst[o + 1] = B64[(v >>> 12) & 63]!;
    dst[o + 2] = B64[(v >>> 6) & 63]!;
    dst[o + 3] = 0x3d;
    o += 4;
  }
  return o;
}

interface WriteTask {
  id: string;
  name: string;
  group: string;
  /** The socket whose queue tells whether the write was accepted at once. */
  socket: Socket;
  fn: (i: number) => void;
  peer?: string;
  ours?: boolean;
  note?: string;
}

const BATCH = 32;

/**
 * ns per write: batches of BATCH writes timed with hrtime while the socket
 * accepted every write at once; then an untimed wait until it drains.
 * Rounds interleave the tasks; a task's figure is the lowest round median.
 */
async function measureWrites(tasks: WriteTask[], opts: RunOptions): Promise<Result[]> {
  const perRoundMs = opts.quick ? 150 : opts.timeMs;
  const state = tasks.map((t) => ({ t, medians: [] as number[], p99s: [] as number[], samples: 0, queued: 0, k: 0 }));
  const drain = async (s: Socket): Promise<void> => {
    while (s.writableLength > 0) await once(s, 'drain');
  };
  // Warm-up (JIT on every path).
  for (const st of state) {
    const end = performance.now() + (opts.quick ? 50 : opts.warmupMs);
    while (performance.now() < end) {
      for (let i = 0; i < BATCH; i++) st.t.fn(st.k++);
      await drain(st.t.socket);
    }
  }
  for (let round = 0; round < opts.rounds; round++) {
    opts.log(`  wire: write round ${round + 1}/${opts.rounds}, ${tasks.length} tasks x ${perRoundMs} ms`);
    for (const st of state) {
      const ns: number[] = [];
      const end = performance.now() + perRoundMs;
      while (performance.now() < end) {
        await drain(st.t.socket);
        const t0 = process.hrtime.bigint();
        for (let i = 0; i < BATCH; i++) st.t.fn(st.k++);
        const dt = Number(process.hrtime.bigint() - t0);
        // Only batches the kernel took whole count: a queued write is cheaper and not what a live call sees.
        if (st.t.socket.writableLength > 0) st.queued++;
        else ns.push(dt / BATCH);
      }
      if (ns.length === 0) throw new Error(`wire: ${st.t.id}: the socket never accepted a whole batch at once`);
      st.medians.push(median(ns));
      ns.sort((a, b) => a - b);
      st.p99s.push(ns[Math.min(ns.length - 1, Math.floor(ns.length * 0.99))]!);
      st.samples += ns.length;
    }
  }
  return state.map((st) => ({
    id: st.t.id,
    suite: 'wire',
    name: st.t.name,
    group: st.t.group,
    per: 'append',
    medianNs: Math.min(...st.medians),
    p99Ns: median(st.p99s),
    samples: st.samples * BATCH,
    peer: st.t.peer,
    ours: st.t.ours,
    extra: {
      batch: BATCH,
      batchesQueued: st.queued,
      roundMediansNs: st.medians.map((x) => Math.round(x)).join(' '),
    },
    note: st.t.note,
  }));
}

async function openClient(port: number): Promise<WebSocket> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { perMessageDeflate: false });
  await once(ws, 'open');
  return ws;
}

async function run(opts: RunOptions): Promise<Result[]> {
  // ── parse ──
  const ulaw = frames(160, 3);
  const media = ulaw.map((f, i) => mediaText(i, f.toString('base64')));
  const marks = Array.from({ length: MESSAGES }, (_, i) => markText(i));
  for (const t of [...media, ...marks]) {
    const fast = parseTwilioMessage(t);
    if (!fast.ok || JSON.stringify(fast) !== JSON.stringify(parseTwilioMessageFull(t))) throw new Error(`wire: parsers disagree on ${t.slice(0, 60)}`);
  }
  let k = 0;
  const next = (): number => (k = k + 1 === MESSAGES ? 0 : k + 1);
  const parseTasks: FrameTask[] = [
    { id: 'wire.parse.media.fast', group: 'parse Twilio media (160 B µ-law)', name: 'parseTwilioMessage (fast path)', ours: true, peer: 'wire.parse.media.full',
      fn: () => parseTwilioMessage(media[next()]!) },
    { id: 'wire.parse.media.full', group: 'parse Twilio media (160 B µ-law)', name: 'JSON.parse + full validation',
      fn: () => parseTwilioMessageFull(media[next()]!) },
    { id: 'wire.parse.media.jsonParse', group: 'parse Twilio media (160 B µ-law)', name: 'bare JSON.parse (no validation)',
      fn: () => JSON.parse(media[next()]!) },
    { id: 'wire.parse.mark.fast', group: 'parse Twilio mark', name: 'parseTwilioMessage (fast path)', ours: true, peer: 'wire.parse.mark.full',
      fn: () => parseTwilioMessage(marks[next()]!) },
    { id: 'wire.parse.mark.full', group: 'parse Twilio mark', name: 'JSON.parse + full validation',
      fn: () => parseTwilioMessageFull(marks[next()]!) },
  ];
  const results = await measureFrames('wire', 'message', parseTasks, opts);

  // ── write ──
  const sink = new Worker(SINK_SOURCE, { eval: true });
  const clients: WebSocket[] = [];
  try {
    const [port] = (await once(sink, 'message')) as [number];
    const wsSend = await openClient(port);
    const wsLean = await openClient(port);
    const wsOwn = await openClient(port);
    clients.push(wsSend, wsLean, wsOwn);
    const sockOf = (ws: WebSocket): Socket => (ws as unknown as { _socket: Socket })._socket;
    const own = new AppendFrameWriter();
    const ownSock = sockOf(wsOwn);
    /** Own framing: the frame straight to a socket we would own; no ws state to check. */
    const ownWrite = (b64: string): void => {
      ownSock.write(own.frameBase64(b64));
      if (ownSock.writableLength !== 0) own.release();
    };
    const ulawB64 = ulaw.map((f) => f.toString('base64'));
    const pcm = frames(960, 5);
    const lean = (b64: string): void => {
      if (!writeAppend(wsLean, b64)) throw new Error('wire: lean path refused an idle socket');
    };
    const scratch = Buffer.alloc(4096);
    const tasks: WriteTask[] = [
      { id: 'wire.write.ulaw.lean', group: 'append to model: passthrough (216 b64 chars)', name: 'lean: guard + one frame + one write', ours: true, peer: 'wire.write.ulaw.wsSend',
        socket: sockOf(wsLean), fn: (i) => lean(ulawB64[i % MESSAGES]!) },
      { id: 'wire.write.ulaw.own', group: 'append to model: passthrough (216 b64 chars)', name: 'own framing (same frame, no ws guard)', ours: true, peer: 'wire.write.ulaw.wsSend',
        socket: ownSock, fn: (i) => ownWrite(ulawB64[i % MESSAGES]!) },
      { id: 'wire.write.ulaw.wsSend', group: 'append to model: passthrough (216 b64 chars)', name: 'ws.send(JSON text)',
        socket: sockOf(wsSend), fn: (i) => wsSend.send(appendAudioEvent(ulawB64[i % MESSAGES]!)) },
      { id: 'wire.write.pcm.lean', group: 'append to model: transcode (960 B PCM -> base64)', name: 'lean: toString(base64) + guard + frame + write', ours: true, peer: 'wire.write.pcm.wsSend',
        socket: sockOf(wsLean), fn: (i) => lean(pcm[i % MESSAGES]!.toString('base64')) },
      { id: 'wire.write.pcm.wsSend', group: 'append to model: transcode (960 B PCM -> base64)', name: 'ws.send(JSON text)',
        socket: sockOf(wsSend), fn: (i) => wsSend.send(appendAudioEvent(pcm[i % MESSAGES]!.toString('base64'))) },
    ];
    results.push(...(await measureWrites(tasks, opts)));
    // The raw-bytes idea (appendAudio taking PCM bytes, base64 written straight into the frame) differs from the
    // lean path only in this step: weighed alone, without the socket's noise.
    const encodeTasks: FrameTask[] = [
      { id: 'wire.b64.toString', group: 'base64 of 960 B PCM', name: 'Buffer#toString(base64) + latin1 copy', ours: true, peer: 'wire.b64.jsInto',
        fn: () => scratch.write(pcm[next()]!.toString('base64'), 0, 'latin1') },
      { id: 'wire.b64.jsInto', group: 'base64 of 960 B PCM', name: 'JS encoder straight into the buffer',
        fn: () => encodeBase64Into(pcm[next()]!, scratch, 0) },
    ];
    results.push(...(await measureFrames('wire', 'append', encodeTasks, opts)));
    return results;
  } finally {
    for (const c of clients) c.terminate();
    sink.postMessage('close');
    await once(sink, 'exit');
  }
}

function conclusions(results: Result[]): string[] {
  const by = new Map(results.map((r) => [r.id, r.medianNs]));
  const ratio = (a: string, b: string): string => {
    const x = by.get(a);
    const y = by.get(b);
    return x !== undefined && y !== undefined ? `${(x / y).toFixed(2)}x` : 'n/a';
  };
  const ns = (id: string): string => {
    const v = by.get(id);
    return v === undefined ? 'n/a' : `${Math.round(v)} ns`;
  };
  return [
    `wire: media parse fast path = ${ratio('wire.parse.media.fast', 'wire.parse.media.full')} of the full parser (${ns('wire.parse.media.fast')} vs ${ns('wire.parse.media.full')}); mark ${ratio('wire.parse.mark.fast', 'wire.parse.mark.full')}.`,
    `wire: append write, passthrough: lean = ${ratio('wire.write.ulaw.lean', 'wire.write.ulaw.wsSend')} of ws.send; own framing = ${ratio('wire.write.ulaw.own', 'wire.write.ulaw.lean')} of lean ` +
      `(${ns('wire.write.ulaw.own')} vs ${ns('wire.write.ulaw.lean')}: the ws guard is what owning the framing would save).`,
    `wire: append write, transcode: lean = ${ratio('wire.write.pcm.lean', 'wire.write.pcm.wsSend')} of ws.send; ` +
      `JS base64 into the frame = ${ratio('wire.b64.jsInto', 'wire.b64.toString')} of toString + copy, so appendAudio keeps taking base64.`,
  ];
}

export const wireSuite: Suite = {
  name: 'wire',
  description: 'per-message JS at the edges: Twilio media/mark fast parse vs JSON.parse; lean append frame vs ws.send on a loopback socket',
  run,
  conclusions,
};
