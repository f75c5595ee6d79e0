/**
 * A load generator that keeps real time at hundreds of simulated Twilio
 * calls on one core (issue 21, calls per core): the callers run in a few
 * worker processes (bench/loadgen-worker.ts), each driving its share of the
 * calls from ONE drift-free timer, with every caller frame's audio encoded
 * once per process (base64 µ-law reused, no per-frame encoding), WebSocket
 * frames written by hand on raw TCP (mask key 0: one buffer, one write per
 * frame), and call starts ramped over a second or two instead of at once.
 *
 * What a caller does is src/sim/caller.ts's (connected/start, one 20 ms
 * frame every 20 ms, utterances after the greeting and each reply, marks
 * echoed once their audio has played at 8000 bytes/s, `clear` honoured, a
 * frame due more than LATE_FRAMES frames ago skipped, not burst), minus what
 * the calls-per-core steps do not use (DTMF, barge-in, recordings).
 *
 * This module is the parent side (the pool, for measureRelay's `callers`)
 * and the pure parts both sides share (schedule, WebSocket framing, media
 * message text); the pure parts are tested in test/percore-plan.test.ts.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { pin, stopChild } from './proc.js';
import type { CallerPool, CallOutcome, PlaceTarget } from './suites/relay.js';

/** Frame period, ms (FRAME_MS of src/dsp/format.ts). */
export const TICK_MS = 20;

/** Where one call goes: which worker, when it starts (ms after the run's epoch), which tick phase it sends on. */
export interface CallSlot {
  index: number;
  worker: number;
  startMs: number;
  /** 0 … phases-1: the call sends at epoch + phaseOffset(worker, phase) + k × 20 ms. */
  phase: number;
}

export interface Schedule {
  workers: number;
  /** Timer phases per worker per 20 ms (its timer fires every 20 / phases ms). */
  phases: number;
  rampMs: number;
  slots: CallSlot[];
}

/** Workers for `calls` calls: one per ~200 calls, 1 … 4 (one core: more processes only add switches). */
export function workersFor(calls: number): number {
  return Math.min(4, Math.max(1, Math.ceil(calls / 200)));
}

/** Ramp over which the calls start: 2 ms a call, 0.5 … 2 s. */
export function rampFor(calls: number): number {
  return Math.min(2000, Math.max(500, calls * 2));
}

/**
 * Calls spread evenly over workers (round robin), start times (evenly over
 * the ramp, in call order) and tick phases (so no 20 ms slot carries more than
 * ⌈calls ÷ (workers × phases)⌉ frames: the relay sees a steady stream, not
 * one burst per tick).
 */
export function schedule(calls: number, phases = 4, workers = workersFor(calls), rampMs = rampFor(calls)): Schedule {
  const slots: CallSlot[] = [];
  for (let i = 0; i < calls; i++) {
    slots.push({ index: i, worker: i % workers, startMs: calls > 1 ? (rampMs * i) / calls : 0, phase: Math.floor(i / workers) % phases });
  }
  return { workers, phases, rampMs, slots };
}

/** Offset of a worker's phase within the 20 ms period, ms: workers × phases slots, evenly spaced. */
export function phaseOffsetMs(worker: number, phase: number, workers: number, phases: number): number {
  return ((phase * workers + worker) * TICK_MS) / (workers * phases);
}

/**
 * A client WebSocket text frame (FIN, opcode 1) of an ASCII string, masked
 * with the key 0 (RFC 6455 requires client frames to be masked; a zero key
 * leaves the payload as is, so the text is written straight into the frame).
 */
export function clientTextFrame(text: string): Buffer {
  return clientFrame(0x1, text);
}

/** A client frame of `opcode` (1 text, 8 close, 10 pong) with an ASCII/latin1 payload, zero mask key. */
export function clientFrame(opcode: number, payload: string | Buffer): Buffer {
  const len = typeof payload === 'string' ? payload.length : payload.length;
  const hdr = len < 126 ? 2 : len < 65536 ? 4 : 10;
  const buf = Buffer.allocUnsafe(hdr + 4 + len);
  buf[0] = 0x80 | opcode;
  if (len < 126) buf[1] = 0x80 | len;
  else if (len < 65536) {
    buf[1] = 0x80 | 126;
    buf.writeUInt16BE(len, 2);
  } else {
    buf[1] = 0x80 | 127;
    buf.writeUInt32BE(0, 2);
    buf.writeUInt32BE(len, 6);
  }
  buf.writeUInt32BE(0, hdr);
  if (typeof payload === 'string') buf.write(payload, hdr + 4, 'latin1');
  else payload.copy(buf, hdr + 4);
  return buf;
}

/** One frame read off the server's side (unmasked), or undefined when `buf` does not hold a whole one yet. */
export function readServerFrame(buf: Buffer, off: number): { opcode: number; fin: boolean; payload: Buffer; next: number } | undefined {
  if (buf.length - off < 2) return undefined;
  const b0 = buf[off]!;
  const b1 = buf[off + 1]!;
  let len = b1 & 0x7f;
  let p = off + 2;
  if (len === 126) {
    if (buf.length - off < 4) return undefined;
    len = buf.readUInt16BE(off + 2);
    p = off + 4;
  } else if (len === 127) {
    if (buf.length - off < 10) return undefined;
    len = buf.readUInt32BE(off + 2) * 2 ** 32 + buf.readUInt32BE(off + 6);
    p = off + 10;
  }
  const masked = (b1 & 0x80) !== 0;
  const key = masked ? p : -1;
  if (masked) p += 4;
  if (buf.length - p < len) return undefined;
  let payload = buf.subarray(p, p + len);
  if (masked) {
    payload = Buffer.from(payload);
    for (let i = 0; i < len; i++) payload[i]! ^= buf[key + (i & 3)]!;
  }
  return { opcode: b0 & 0x0f, fin: (b0 & 0x80) !== 0, payload, next: p + len };
}

/** Twilio's `media` message text, in the order Twilio writes it (`{"event":"media"` first: the wire counter's test). */
export function mediaText(streamSid: string, seq: number, chunk: number, timestampMs: number, payloadB64: string): string {
  return `{"event":"media","sequenceNumber":"${seq}","streamSid":"${streamSid}","media":{"track":"inbound","chunk":"${chunk}","timestamp":"${timestampMs}","payload":"${payloadB64}"}}`;
}

/** Bytes a base64 string decodes to, without decoding it. */
export function base64Bytes(b64: string): number {
  const pad = b64.endsWith('==') ? 2 : b64.endsWith('=') ? 1 : 0;
  return (b64.length / 4) * 3 - pad;
}

/** What the parent sends a worker. Times: `epochMs` is wall-clock ms (performance.timeOrigin + now) shared by all workers. */
export interface WorkerJob {
  type: 'job';
  target: Omit<PlaceTarget, 'calls'>;
  worker: number;
  workers: number;
  phases: number;
  epochMs: number;
  calls: { index: number; startMs: number; phase: number }[];
}

/** What a worker reports when its calls are over. */
export interface WorkerDone {
  type: 'done';
  results: CallOutcome[];
  counts: { callerSent: number; callerMediaSent: number; callerReceived: number };
  /** The worker's CPU from job to done, µs (user + system). */
  cpuUs: number;
  /** Frames skipped as late (the worker fell behind its own 20 ms clock). */
  framesSkippedLate: number;
  /** Calls that could not start (webhook or upgrade refused): their error sentences. */
  errors: string[];
}

const workerScript = fileURLToPath(new URL('./loadgen-worker.js', import.meta.url));

/** The generator's own figures of its last run (what percore prints beside the relay's). */
export interface GeneratorFigures {
  workers: number;
  rampMs: number;
  /** CPU of the caller workers over their run, µs (all workers). */
  workersCpuUs: number;
  framesSkippedLate: number;
}

/**
 * A CallerPool for measureRelay (RunSpec.callers): `place` forks the workers,
 * pins them to `cpu` when given (the core the stand-in shares), waits for all
 * calls to end and merges what they report. `last` holds the run's figures.
 */
export function loadgenPool(opts: { cpu?: string; phases?: number } = {}): CallerPool & { last?: GeneratorFigures } {
  const pool: CallerPool & { last?: GeneratorFigures } = {
    async place(target: PlaceTarget) {
      const sch = schedule(target.calls, opts.phases ?? 4);
      const children = Array.from({ length: sch.workers }, () => {
        const c = fork(workerScript, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
        // A worker that exits as it is told to stop breaks the IPC pipe (EPIPE): its exit is what counts.
        c.on('error', () => {});
        return c;
      });
      try {
        await Promise.all(
          children.map(
            (c) =>
              new Promise<void>((resolve, reject) => {
                c.once('message', (m: { type: string }) => (m.type === 'ready' ? resolve() : reject(new Error('load generator worker: bad ready'))));
                c.once('exit', (code) => reject(new Error(`load generator worker exited early (${code})`)));
              }),
          ),
        );
        if (opts.cpu !== undefined) for (const c of children) pin(c.pid!, opts.cpu);
        // Start a little ahead so every worker has the job before the first call is due.
        const epochMs = performance.timeOrigin + performance.now() + 300;
        const done = await Promise.all(
          children.map(
            (c, w) =>
              new Promise<WorkerDone>((resolve, reject) => {
                c.once('message', (m: WorkerDone) => (m.type === 'done' ? resolve(m) : reject(new Error('load generator worker: bad done'))));
                c.once('exit', (code) => reject(new Error(`load generator worker ${w} exited (${code}) before reporting`)));
                const { calls: _n, ...rest } = target;
                const job: WorkerJob = {
                  type: 'job',
                  target: rest,
                  worker: w,
                  workers: sch.workers,
                  phases: sch.phases,
                  epochMs,
                  calls: sch.slots.filter((s) => s.worker === w).map(({ index, startMs, phase }) => ({ index, startMs, phase })),
                };
                c.send(job);
              }),
          ),
        );
        const errors = done.flatMap((d) => d.errors);
        if (errors.length) throw new Error(`load generator: ${errors.length} of ${target.calls} calls could not start (${errors[0]})`);
        const counts = { callerSent: 0, callerMediaSent: 0, callerReceived: 0 };
        for (const d of done) for (const k of Object.keys(counts) as (keyof typeof counts)[]) counts[k] += d.counts[k];
        pool.last = {
          workers: sch.workers,
          rampMs: sch.rampMs,
          workersCpuUs: done.reduce((s, d) => s + d.cpuUs, 0),
          framesSkippedLate: done.reduce((s, d) => s + d.framesSkippedLate, 0),
        };
        return { results: done.flatMap((d) => d.results), counts };
      } finally {
        // A worker exits once it has reported; one that has not is told to stop (and killed if it hangs).
        await Promise.all(children.map((c) => stopChild(c, { type: 'stop' })));
      }
    },
  };
  return pool;
}
