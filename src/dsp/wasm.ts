/**
 * Loads build/dsp.wasm once per thread and keeps typed-array views over its
 * memory. This file and ./index.ts are the only TypeScript that touch wasm
 * memory. The module's memory is fixed (64 pages) but views are still re-made
 * whenever memory.buffer changes, so a future growable build stays correct.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Error codes: 'no_slots', 'closed', 'bad_input', 'not_built', 'internal'. */
export type DspErrorCode = 'no_slots' | 'closed' | 'bad_input' | 'not_built' | 'internal';

export class DspError extends Error {
  readonly code: DspErrorCode;
  constructor(code: DspErrorCode, message: string) {
    super(message);
    this.name = 'DspError';
    this.code = code;
  }
}

/** Codec argument of the wasm up()/down() calls. */
export const CODEC = { pcm16: 0, ulaw: 1, alaw: 2 } as const;

/** The raw exports of assembly/index.ts. Status < 0 is an error (see STATUS). */
export interface DspExports {
  memory: WebAssembly.Memory;
  ioIn(): number;
  ioOut(): number;
  ioBytes(): number;
  maxSlots(): number;
  openSlots(): number;
  maxUpIn(): number;
  maxDownIn(): number;
  maxCodecIn(): number;
  firPrototype(): number;
  firTaps(): number;
  open(): number;
  close(slot: number): number;
  resetUp(slot: number): number;
  resetDown(slot: number): number;
  downPending(slot: number): number;
  up(slot: number, n: number, codec: number): number;
  down(slot: number, n: number, codec: number): number;
  ulawToPcm(n: number): number;
  alawToPcm(n: number): number;
  pcmToUlaw(n: number): number;
  pcmToAlaw(n: number): number;
  /** Largest n for upTo (down = 0) or downFrom (down = 1) at a rate; 0 for an unknown rate. */
  maxPairIn(rate: number, down: number): number;
  /** 8 kHz -> 16000 / 48000 Hz on a slot's up area; returns (rate / 8000) n. */
  upTo(slot: number, rate: number, n: number, codec: number): number;
  /** 16000 / 48000 / 22050 / 44100 Hz -> 8 kHz on a slot's down area; returns the outputs written. */
  downFrom(slot: number, rate: number, n: number, codec: number): number;
}

export const STATUS: Record<number, string> = {
  [-1]: 'no free channel slot',
  [-2]: 'channel slot not open',
  [-3]: 'length out of range',
  [-4]: 'unknown codec',
  [-5]: 'unknown rate pair',
};

/** One instantiated module with its limits and memory views. */
export class Dsp {
  readonly exports: DspExports;
  /** Byte offsets of the shared input and output areas (16-aligned). */
  readonly ioIn: number;
  readonly ioOut: number;
  readonly ioBytes: number;
  readonly maxSlots: number;
  /** Largest input per call: 8 kHz samples (up), 24 kHz samples (down), codec samples. */
  readonly maxUpIn: number;
  readonly maxDownIn: number;
  readonly maxCodecIn: number;
  /** The memory's buffer as last seen; growth detaches it (byteLength 0), which forces a remap. */
  #buffer: ArrayBuffer = new ArrayBuffer(0);
  #u8 = new Uint8Array(0);
  #i16 = new Int16Array(0);
  #outViews = new Map<number, Uint8Array>();
  #outViews16 = new Map<number, Int16Array>();

  constructor(exports: DspExports) {
    this.exports = exports;
    this.ioIn = exports.ioIn();
    this.ioOut = exports.ioOut();
    this.ioBytes = exports.ioBytes();
    this.maxSlots = exports.maxSlots();
    this.maxUpIn = exports.maxUpIn();
    this.maxDownIn = exports.maxDownIn();
    this.maxCodecIn = exports.maxCodecIn();
  }

  /** The whole memory as bytes; valid until the next call into this object. */
  get u8(): Uint8Array {
    if (this.#buffer.byteLength === 0) this.#remap();
    return this.#u8;
  }

  /** The whole memory as int16 (index = byte offset / 2). */
  get i16(): Int16Array {
    if (this.#buffer.byteLength === 0) this.#remap();
    return this.#i16;
  }

  /** The resampler prototype taps as designed (float64, unit DC gain). */
  firPrototype(): Float64Array {
    const taps = this.exports.firTaps();
    return new Float64Array(this.exports.memory.buffer.slice(this.exports.firPrototype(), this.exports.firPrototype() + taps * 8));
  }

  /**
   * The first byteLength bytes of the output area. Views are cached per length
   * (frames repeat a few sizes), so the steady state allocates nothing.
   */
  outView(byteLength: number): Uint8Array {
    if (this.#buffer.byteLength === 0) this.#remap();
    let view = this.#outViews.get(byteLength);
    if (!view) {
      if (this.#outViews.size >= 64) this.#outViews.clear();
      view = new Uint8Array(this.#buffer, this.ioOut, byteLength);
      this.#outViews.set(byteLength, view);
    }
    return view;
  }

  /** The first `samples` int16 of the output area, cached per length like outView(). */
  outInt16(samples: number): Int16Array {
    if (this.#buffer.byteLength === 0) this.#remap();
    let view = this.#outViews16.get(samples);
    if (!view) {
      if (this.#outViews16.size >= 64) this.#outViews16.clear();
      view = new Int16Array(this.#buffer, this.ioOut, samples);
      this.#outViews16.set(samples, view);
    }
    return view;
  }

  #remap(): void {
    const buffer = this.exports.memory.buffer;
    this.#buffer = buffer;
    this.#outViews.clear();
    this.#outViews16.clear();
    this.#u8 = new Uint8Array(buffer);
    this.#i16 = new Int16Array(buffer);
  }
}

let cached: Dsp | undefined;

/** The thread's DSP module, instantiated synchronously on first use. */
export function loadDsp(): Dsp {
  if (cached) return cached;
  const path = wasmPath();
  if (!existsSync(path)) throw new DspError('not_built', `${path} not found; run \`npm run build:wasm\``);
  const module = new WebAssembly.Module(readFileSync(path));
  const instance = new WebAssembly.Instance(module, {
    env: {
      abort(_msg: number, _file: number, line: number, column: number): never {
        throw new DspError('internal', `dsp.wasm aborted at ${line}:${column}`);
      },
    },
  });
  cached = new Dsp(instance.exports as unknown as DspExports);
  return cached;
}

/** build/dsp.wasm under the nearest ancestor holding package.json (works from src/ and build/src/). */
function wasmPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return join(dir, 'build', 'dsp.wasm');
    const parent = dirname(dir);
    if (parent === dir) throw new DspError('not_built', 'no package.json above src/dsp; cannot locate build/dsp.wasm');
    dir = parent;
  }
}
