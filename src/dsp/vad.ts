/**
 * The audio core's voice activity detector (assembly/vad.ts), one per call.
 *
 * Input: the caller's audio at 8 kHz, µ-law bytes (default) or int16 samples,
 * in frames of 1..480 samples (20 ms = 160 is the design point: the detector's
 * time constants count frames). Optionally the far end as it was played
 * (`played()`, same format, before the caller frame of the same 20 ms), so the
 * assistant's own voice leaking back (≥ 18 dB down, ≤ 80 ms late) is not
 * taken for the caller.
 *
 * push() returns a decision: `speech` for this frame, `active` inside a
 * segment, `onset` / `offset` on the frame that decided them (onset after 3
 * speech frames in a row, offset after 15 quiet frames), and `probability`
 * (0..1, a logistic of the dB margin above the adaptive threshold). The
 * returned object is reused by the next push(): copy what you keep.
 * Steady state allocates nothing.
 */
import { loadDsp, type Dsp, DspError } from './wasm.js';

/** The VAD exports of assembly/index.ts (beside DspExports). Status < 0 is an error. */
interface VadExports {
  vadMaxIn(): number;
  vadSlots(): number;
  vadOpenSlots(): number;
  vadOpen(): number;
  vadClose(slot: number): number;
  vadRestart(slot: number): number;
  vadPush(slot: number, n: number, codec: number): number;
  vadPlayed(slot: number, n: number, codec: number): number;
  vadLastProb(slot: number): number;
}

/** Decision bits of vadPush (assembly/vad.ts). */
const BIT_SPEECH = 1;
const BIT_ACTIVE = 2;
const BIT_ONSET = 4;
const BIT_OFFSET = 8;

export type VadInput = 'ulaw' | 'pcm16';

export interface VadDecision {
  /** This frame is speech. */
  speech: boolean;
  /** Inside a speech segment (from the onset frame to the frame before the offset). */
  active: boolean;
  /** The onset was decided at the end of this frame. */
  onset: boolean;
  /** The offset was decided at the end of this frame. */
  offset: boolean;
  /** 0..1. */
  probability: number;
}

const leaked = new FinalizationRegistry<number>((slot) => {
  (loadDsp().exports as unknown as VadExports).vadClose(slot);
});

function vadExports(dsp: Dsp): VadExports {
  const ex = dsp.exports as unknown as Partial<VadExports>;
  if (typeof ex.vadPush !== 'function') throw new DspError('not_built', 'build/dsp.wasm has no VAD; run `npm run build:wasm`');
  return ex as VadExports;
}

export class CoreVad {
  readonly input: VadInput;
  /** Largest frame in samples. */
  readonly maxFrame: number;
  readonly #dsp: Dsp;
  readonly #ex: VadExports;
  readonly #codec: number;
  #slot: number;
  readonly #decision: VadDecision = { speech: false, active: false, onset: false, offset: false, probability: 0 };

  private constructor(dsp: Dsp, ex: VadExports, slot: number, input: VadInput) {
    this.#dsp = dsp;
    this.#ex = ex;
    this.#slot = slot;
    this.input = input;
    this.#codec = input === 'ulaw' ? 1 : 0;
    this.maxFrame = ex.vadMaxIn();
  }

  /** Throws DspError('no_slots') when the thread's VAD slots are used up. */
  static open(input: VadInput = 'ulaw'): CoreVad {
    if (input !== 'ulaw' && input !== 'pcm16') throw new DspError('bad_input', `unknown VAD input '${String(input)}'`);
    const dsp = loadDsp();
    const ex = vadExports(dsp);
    const slot = ex.vadOpen();
    if (slot < 0) throw new DspError('no_slots', `all ${ex.vadSlots()} VAD slots are in use`);
    const vad = new CoreVad(dsp, ex, slot, input);
    leaked.register(vad, slot, vad);
    return vad;
  }

  /** One caller frame (Uint8Array µ-law or Int16Array, per `input`). */
  push(frame: Uint8Array | Int16Array): VadDecision {
    const bits = this.#call(frame, false);
    const d = this.#decision;
    d.speech = (bits & BIT_SPEECH) !== 0;
    d.active = (bits & BIT_ACTIVE) !== 0;
    d.onset = (bits & BIT_ONSET) !== 0;
    d.offset = (bits & BIT_OFFSET) !== 0;
    d.probability = this.#ex.vadLastProb(this.#slot);
    return d;
  }

  /** The far end as played during the coming caller frame (same format as push). */
  played(frame: Uint8Array | Int16Array): void {
    this.#call(frame, true);
  }

  /** Back to the start state (e.g. after a transfer). */
  reset(): void {
    if (this.#slot < 0) throw new DspError('closed', 'VAD is closed');
    this.#ex.vadRestart(this.#slot);
  }

  close(): void {
    if (this.#slot < 0) return;
    this.#ex.vadClose(this.#slot);
    leaked.unregister(this);
    this.#slot = -1;
  }

  #call(frame: Uint8Array | Int16Array, reference: boolean): number {
    if (this.#slot < 0) throw new DspError('closed', 'VAD is closed');
    const n = frame.length;
    if (n === 0 || n > this.maxFrame) throw new DspError('bad_input', `frame of ${n} samples; 1..${this.maxFrame}`);
    if ((this.#codec === 1) !== (frame instanceof Uint8Array)) {
      throw new DspError('bad_input', `this VAD takes ${this.#codec === 1 ? 'Uint8Array µ-law' : 'Int16Array'} frames`);
    }
    if (this.#codec === 1) this.#dsp.u8.set(frame, this.#dsp.ioIn);
    else this.#dsp.i16.set(frame, this.#dsp.ioIn >> 1);
    const r = reference ? this.#ex.vadPlayed(this.#slot, n, this.#codec) : this.#ex.vadPush(this.#slot, n, this.#codec);
    if (r < 0) throw new DspError('internal', `VAD status ${r}`);
    return r;
  }
}

/** Open detectors on this thread (for leak checks). */
export function openVads(): number {
  return vadExports(loadDsp()).vadOpenSlots();
}
