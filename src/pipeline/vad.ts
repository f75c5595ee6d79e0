/**
 * The pipeline's turn-taking stage (issue 19): a per-call voice activity
 * detector on the caller's audio that reports speech onsets (barge-in) and
 * offsets (with the STT's endpointing, end of turn).
 *
 * Contract, for every implementation:
 * - push(frame): the caller's next frame, G.711 µ-law at 8 kHz (20 ms = 160
 *   bytes is what Twilio sends; 1..480 bytes are taken). Stream time advances
 *   by frame.length / 8 ms per push; the first sample is at 0 ms.
 * - played(frame): the far end as it is played to the caller (µ-law 8 kHz)
 *   during the coming caller frame, so our own voice leaking back is not taken
 *   for the caller. Optional: a stage never told anything assumes no echo.
 * - Events go to `onEvent` in stream order: `onset` then `offset`, alternating,
 *   each with `atMs`, the stream time at the end of the audio that decided it
 *   (decision latency = atMs - the true speech start). A stage that decides
 *   in batches (Silero: 32 ms windows, inference off the call's turn) may
 *   deliver them later than push() returns, never out of order.
 * - Buffers are bounded: a stage that falls more than `maxBacklogMs` behind
 *   reports an `error` (retryable) and drops the backlog.
 * - close() stops everything: nothing is delivered after it; idle() resolves
 *   once every pushed frame has been decided (tests and the bench).
 */

export type VadEventType = 'onset' | 'offset';

export type VadEvent =
  | { type: 'onset'; atMs: number; probability: number }
  | { type: 'offset'; atMs: number }
  | { type: 'error'; error: VadError };

export type VadErrorCode = 'unavailable' | 'backlog' | 'bad_input' | 'internal';

/** A VAD failure; `retryable` says whether opening another one (or going on) may help. */
export class VadError extends Error {
  readonly code: VadErrorCode;
  readonly retryable: boolean;
  constructor(code: VadErrorCode, message: string, retryable: boolean) {
    super(message);
    this.name = 'VadError';
    this.code = code;
    this.retryable = retryable;
  }
}

export interface VadStage {
  /** 'core' (the WebAssembly detector) or 'silero'. */
  readonly kind: 'core' | 'silero';
  push(frame: Uint8Array): void;
  played(frame: Uint8Array): void;
  /** Resolves when every frame pushed so far has been decided. */
  idle(): Promise<void>;
  close(): void;
}

export interface VadStageOptions {
  onEvent: (event: VadEvent) => void;
  /** Most audio (ms) a stage may hold undecided; default 1000. */
  maxBacklogMs?: number;
  signal?: AbortSignal;
}

/** µ-law 8 kHz: 8 samples per ms. */
export const SAMPLES_PER_MS = 8;
/** Largest frame push() and played() take, in samples (60 ms). */
export const MAX_FRAME = 480;

export function checkFrame(frame: Uint8Array): void {
  if (!(frame instanceof Uint8Array) || frame.length === 0 || frame.length > MAX_FRAME) {
    throw new VadError('bad_input', `a VAD frame is 1..${MAX_FRAME} µ-law bytes`, false);
  }
}

/** The audio core's detector behind the stage interface; decides synchronously inside push(). */
export async function openCoreVad(options: VadStageOptions): Promise<VadStage> {
  options.signal?.throwIfAborted();
  const { CoreVad } = await import('../dsp/vad.js');
  return new CoreVadStage(CoreVad.open('ulaw'), options.onEvent);
}

class CoreVadStage implements VadStage {
  readonly kind = 'core' as const;
  #vad: import('../dsp/vad.js').CoreVad | undefined;
  #samples = 0;
  readonly #onEvent: (event: VadEvent) => void;

  constructor(vad: import('../dsp/vad.js').CoreVad, onEvent: (event: VadEvent) => void) {
    this.#vad = vad;
    this.#onEvent = onEvent;
  }

  push(frame: Uint8Array): void {
    checkFrame(frame);
    if (!this.#vad) return;
    const d = this.#vad.push(frame);
    this.#samples += frame.length;
    const atMs = this.#samples / SAMPLES_PER_MS;
    if (d.onset) this.#onEvent({ type: 'onset', atMs, probability: d.probability });
    else if (d.offset) this.#onEvent({ type: 'offset', atMs });
  }

  played(frame: Uint8Array): void {
    checkFrame(frame);
    this.#vad?.played(frame);
  }

  idle(): Promise<void> {
    return Promise.resolve();
  }

  close(): void {
    this.#vad?.close();
    this.#vad = undefined;
  }
}
