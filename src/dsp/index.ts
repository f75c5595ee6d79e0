/**
 * callbridge's audio core, as the rest of the code sees it.
 *
 * - Transcoder: one per call, two independent directions.
 *   inbound:  phone audio at 8 kHz (µ-law by default) -> PCM16LE at 24 kHz, exactly 6 bytes out per µ-law byte.
 *   outbound: PCM16LE at 24 kHz, any byte count -> phone audio at 8 kHz; odd bytes and
 *             sample counts not a multiple of 3 are carried to the next call, never dropped.
 *   Output for a stream is identical however it is chunked. Linear phase; group delay
 *   1.979 ms inbound, 1.896 ms outbound (round trip exactly 31 samples at 8 kHz).
 *   With { model: 'pcm16k' } the model side is PCM16LE at 16 kHz instead (4 bytes out
 *   per µ-law byte; 2:1 outbound; group delay 1.969 ms inbound, 1.906 ms outbound).
 * - Resampler: one direction of one rate pair, int16 in and out (or G.711 at 8 kHz):
 *   8 kHz -> 16 / 24 / 48 kHz, 16 / 22.05 / 24 / 44.1 / 48 kHz -> 8 kHz; stateful and
 *   chunk-invariant, allocation-free process(in, inLen, out) -> written.
 * - ulawToPcm16 / pcm16ToUlaw / alawToPcm16 / pcm16ToAlaw: stateless 8 kHz codecs,
 *   bit-exact with ITU-T G.191.
 *
 * Limits: DSP_SLOTS (4096) open transcoders per thread (DspError 'no_slots' beyond): each
 * transcoded call holds one, so MAX_CONCURRENT_CALLS may not exceed it (src/config.ts).
 * Returned views point into buffers the object reuses: copy them if you keep them.
 */
import { CODEC, Dsp, DspError, STATUS, loadDsp } from './wasm.js';

export { Dsp, DspError, loadDsp } from './wasm.js';

/**
 * Channel slots of the wasm DSP per thread (assembly/index.ts MAX_SLOTS, fixed at build time;
 * test/dsp.test.ts checks they agree): the most transcoders open at once, so the most calls one
 * process can transcode. A constant here so the configuration can check it without loading wasm.
 */
export const DSP_SLOTS = 4096;
export type { DspErrorCode } from './wasm.js';

/** Audio on the phone side of a Transcoder, all at 8 kHz. */
export type PhoneCodec = 'ulaw' | 'alaw' | 'pcm16';

export interface TranscoderOptions {
  /** Phone-side encoding; default 'ulaw' (Twilio Media Streams). */
  phone?: PhoneCodec;
  /**
   * The model speaks the phone's own format (e.g. G.711 µ-law at 8 kHz):
   * inbound and outbound hand bytes through unchanged (copied), no resampling,
   * and no channel slot is used.
   */
  passthrough?: boolean;
  /** Model-side PCM: 'pcm24k' (default) or 'pcm16k'. */
  model?: ModelPcm;
}

/** PCM16LE formats a Transcoder serves on the model side. */
export type ModelPcm = 'pcm24k' | 'pcm16k';
const MODEL_RATE: Record<ModelPcm, 24000 | 16000> = { pcm24k: 24000, pcm16k: 16000 };

/** Frees the slot of a Transcoder that was dropped without close(). */
const leaked = new FinalizationRegistry<number>((slot) => {
  loadDsp().exports.close(slot);
});

type Direction = 0 | 1; // 0 inbound (up), 1 outbound (down)

export class Transcoder {
  readonly phone: PhoneCodec;
  readonly model: ModelPcm;
  readonly #dsp: Dsp;
  /** Model samples per phone sample: 3 (24 kHz) or 2 (16 kHz). */
  readonly #factor: 2 | 3;
  readonly #codec: number;
  /** Bytes per 8 kHz phone sample: 1 for G.711, 2 for PCM16. */
  readonly #phoneWidth: 1 | 2;
  #slot: number;
  #open = true;
  readonly #passthrough: boolean;
  /** Per direction: a byte carried to the next call (-1: none), the output buffer, the last view handed out. */
  #carry: [number, number] = [-1, -1];
  #out: [Uint8Array, Uint8Array] = [new Uint8Array(960 * 4), new Uint8Array(160 * 4)];
  #view: [Uint8Array, Uint8Array] = [new Uint8Array(0), new Uint8Array(0)];

  private constructor(dsp: Dsp, slot: number, phone: PhoneCodec, passthrough: boolean, model: ModelPcm) {
    this.#dsp = dsp;
    this.model = model;
    this.#factor = model === 'pcm16k' ? 2 : 3;
    this.#slot = slot;
    this.#passthrough = passthrough;
    this.phone = phone;
    this.#codec = CODEC[phone];
    this.#phoneWidth = phone === 'pcm16' ? 2 : 1;
  }

  /** Opens a transcoder with silent filter history. Throws DspError('no_slots') when the thread's slots are used up. */
  static open(options: TranscoderOptions = {}): Transcoder {
    const phone = options.phone ?? 'ulaw';
    if (!Object.hasOwn(CODEC, phone)) throw new DspError('bad_input', `unknown phone codec '${String(phone)}'`);
    const model = options.model ?? 'pcm24k';
    if (!Object.hasOwn(MODEL_RATE, model)) throw new DspError('bad_input', `unknown model format '${String(model)}'`);
    const dsp = loadDsp();
    if (options.passthrough) return new Transcoder(dsp, -1, phone, true, model);
    const slot = dsp.exports.open();
    if (slot < 0) throw new DspError('no_slots', `all ${dsp.maxSlots} DSP channel slots are in use`);
    const transcoder = new Transcoder(dsp, slot, phone, false, model);
    leaked.register(transcoder, slot, transcoder);
    return transcoder;
  }

  /** True after close(). */
  get closed(): boolean {
    return !this.#open;
  }

  /**
   * Phone audio at 8 kHz (µ-law bytes by default; any length) -> PCM16LE at 24 kHz,
   * 3 samples out per phone sample. The view is valid until the next inbound().
   */
  inbound(phone: Uint8Array): Uint8Array {
    return this.#convert(phone, 0);
  }

  /**
   * PCM16LE at 24 kHz (any byte count) -> phone audio at 8 kHz, one sample per 3 in.
   * The view is valid until the next outbound().
   */
  outbound(pcm24: Uint8Array): Uint8Array {
    return this.#convert(pcm24, 1);
  }

  /** Forgets inbound filter history (and a carried odd byte, for 'pcm16'). */
  resetInbound(): void {
    this.#checkOpen();
    if (this.#passthrough) return;
    this.#dsp.exports.resetUp(this.#slot);
    this.#carry[0] = -1;
  }

  /** Forgets outbound carry and filter history, e.g. after a barge-in clear. */
  resetOutbound(): void {
    this.#checkOpen();
    if (this.#passthrough) return;
    this.#dsp.exports.resetDown(this.#slot);
    this.#carry[1] = -1;
  }

  /** Frees the slot. Idempotent; any later use throws DspError('closed'). */
  close(): void {
    if (!this.#open) return;
    this.#open = false;
    if (this.#passthrough) return;
    this.#dsp.exports.close(this.#slot);
    leaked.unregister(this);
    this.#slot = -1;
  }

  #checkOpen(): void {
    if (!this.#open) throw new DspError('closed', 'transcoder is closed');
  }

  #convert(input: Uint8Array, dir: Direction): Uint8Array {
    this.#checkOpen();
    if (!(input instanceof Uint8Array)) {
      throw new DspError('bad_input', `${dir === 0 ? 'inbound' : 'outbound'}() takes a Uint8Array, got ${describe(input)}`);
    }
    if (this.#passthrough) return this.#copy(input, dir);
    const dsp = this.#dsp;
    const inWidth = dir === 0 ? this.#phoneWidth : 2;
    const outWidth = dir === 0 ? 2 : this.#phoneWidth;
    const factor = this.#factor;
    const maxIn = (factor === 3 ? (dir === 0 ? dsp.maxUpIn : dsp.maxDownIn) : pairMaxIn(dsp, 16000, dir)) * inWidth; // bytes per wasm call
    let carry = this.#carry[dir];
    const samplesIn = Math.floor(((carry >= 0 ? 1 : 0) + input.length) / inWidth);
    const maxOut = (dir === 0 ? factor * samplesIn : Math.floor((samplesIn + factor - 1) / factor)) * outWidth;
    let out = this.#out[dir];
    if (out.length < maxOut) out = this.#out[dir] = new Uint8Array(Math.max(maxOut, 2 * out.length));

    let written = 0;
    let pos = 0;
    do {
      const mem = dsp.u8;
      let head = 0;
      if (carry >= 0) {
        mem[dsp.ioIn] = carry;
        head = 1;
        carry = -1;
      }
      const take = Math.min(maxIn - head, input.length - pos);
      mem.set(take === input.length ? input : input.subarray(pos, pos + take), dsp.ioIn + head);
      pos += take;
      let bytes = head + take;
      if (bytes % inWidth !== 0) {
        bytes -= 1; // only the last block can be odd: earlier ones fill maxIn exactly
        carry = mem[dsp.ioIn + bytes];
      }
      const n = bytes / inWidth;
      const produced = factor === 3
        ? (dir === 0 ? dsp.exports.up(this.#slot, n, this.#codec) : dsp.exports.down(this.#slot, n, this.#codec))
        : (dir === 0 ? dsp.exports.upTo(this.#slot, 16000, n, this.#codec) : dsp.exports.downFrom(this.#slot, 16000, n, this.#codec));
      if (produced < 0) throw new DspError('internal', `dsp: ${STATUS[produced] ?? `status ${produced}`}`);
      const outBytes = produced * outWidth;
      out.set(dsp.outView(outBytes), written);
      written += outBytes;
    } while (pos < input.length);
    this.#carry[dir] = carry;

    return this.#result(dir, out, written);
  }

  #copy(input: Uint8Array, dir: Direction): Uint8Array {
    let out = this.#out[dir];
    if (out.length < input.length) out = this.#out[dir] = new Uint8Array(Math.max(input.length, 2 * out.length));
    out.set(input);
    return this.#result(dir, out, input.length);
  }

  /** out[0, length), reusing the previous view when it fits (the steady state makes none). */
  #result(dir: Direction, out: Uint8Array, length: number): Uint8Array {
    let view = this.#view[dir];
    if (view.buffer !== out.buffer || view.length !== length) view = this.#view[dir] = out.subarray(0, length);
    return view;
  }
}

function pairMaxIn(dsp: Dsp, rate: number, dir: Direction): number {
  return dsp.exports.maxPairIn(rate, dir);
}

/** Sample rates a Resampler converts to or from 8 kHz. */
export type ResampleRate = 16000 | 22050 | 24000 | 44100 | 48000;
const UP_RATES: readonly number[] = [16000, 24000, 48000];
const DOWN_RATES: readonly number[] = [16000, 22050, 24000, 44100, 48000];

export interface ResamplerOptions {
  /** Input rate, Hz: 8000 (then `to` is 16000, 24000 or 48000), or 16000, 22050, 24000, 44100, 48000 (then `to` is 8000). */
  from: number;
  to: number;
  /** The 8 kHz side's encoding (input when up, output when down); default 'pcm16'. */
  phone?: PhoneCodec;
}

/**
 * One direction of one rate pair on a channel slot of its own. int16 (or G.711
 * bytes on the 8 kHz side) in and out; output identical however the input is
 * chunked; zeroed history at open() and reset(). process() allocates nothing.
 * Up: L = to / 8000 samples out per sample in. Down (L/M = 8000 / from): the
 * samples due, at most maxOutput(inLen); group delay ≤ 2 ms each (see assembly/pairs.ts).
 */
export class Resampler {
  readonly from: number;
  readonly to: number;
  readonly phone: PhoneCodec;
  readonly #dsp: Dsp;
  readonly #up: boolean;
  readonly #rate: number;
  readonly #codec: number;
  readonly #maxIn: number;
  #slot: number;

  private constructor(dsp: Dsp, slot: number, from: number, to: number, phone: PhoneCodec) {
    this.#dsp = dsp;
    this.#slot = slot;
    this.from = from;
    this.to = to;
    this.phone = phone;
    this.#up = from === 8000;
    this.#rate = this.#up ? to : from;
    this.#codec = CODEC[phone];
    this.#maxIn = this.#rate === 24000
      ? (this.#up ? dsp.maxUpIn : dsp.maxDownIn)
      : dsp.exports.maxPairIn(this.#rate, this.#up ? 0 : 1);
  }

  /** Throws DspError('bad_input') for a pair not served, 'no_slots' when the thread's slots are used up. */
  static open(options: ResamplerOptions): Resampler {
    const { from, to } = options;
    const phone = options.phone ?? 'pcm16';
    if (!Object.hasOwn(CODEC, phone)) throw new DspError('bad_input', `unknown phone codec '${String(phone)}'`);
    const ok = (from === 8000 && UP_RATES.includes(to)) || (to === 8000 && DOWN_RATES.includes(from));
    if (!ok) throw new DspError('bad_input', `no resampler from ${String(from)} Hz to ${String(to)} Hz`);
    const dsp = loadDsp();
    const slot = dsp.exports.open();
    if (slot < 0) throw new DspError('no_slots', `all ${dsp.maxSlots} DSP channel slots are in use`);
    const r = new Resampler(dsp, slot, from, to, phone);
    leaked.register(r, slot, r);
    return r;
  }

  /** Most samples (or bytes) process() can write for inLen input samples. */
  maxOutput(inLen: number): number {
    if (this.#up) return (this.to / 8000) * inLen;
    return Math.floor((inLen * 8000) / this.from) + 1;
  }

  /**
   * Converts input[0, inLen) into out (Int16Array, or Uint8Array of G.711 bytes
   * when down with phone 'ulaw'/'alaw'; up with G.711 takes a Uint8Array input).
   * Returns the samples written. Throws DspError('bad_input') if out may be too small.
   */
  process(input: Int16Array | Uint8Array, inLen: number, out: Int16Array | Uint8Array): number {
    if (this.#slot < 0) throw new DspError('closed', 'resampler is closed');
    if (!Number.isInteger(inLen) || inLen < 0 || inLen > input.length) {
      throw new DspError('bad_input', `inLen ${String(inLen)} out of range 0..${input.length}`);
    }
    const byteIn = this.#up && this.phone !== 'pcm16';
    const byteOut = !this.#up && this.phone !== 'pcm16';
    if (byteIn !== (input instanceof Uint8Array) || byteOut !== (out instanceof Uint8Array)) {
      throw new DspError('bad_input', `process() takes ${byteIn ? 'Uint8Array' : 'Int16Array'} input and ${byteOut ? 'Uint8Array' : 'Int16Array'} output for this resampler`);
    }
    if (out.length < this.maxOutput(inLen)) throw new DspError('bad_input', `out holds ${out.length}, need ${this.maxOutput(inLen)}`);
    const dsp = this.#dsp;
    const ex = dsp.exports;
    let written = 0;
    for (let pos = 0; pos < inLen || (pos === 0 && inLen === 0); ) {
      const n = Math.min(this.#maxIn, inLen - pos);
      if (byteIn) {
        const mem = dsp.u8;
        const base = dsp.ioIn;
        if (pos === 0 && n === input.length) mem.set(input as Uint8Array, base);
        else for (let i = 0; i < n; i++) mem[base + i] = input[pos + i]!;
      } else {
        const mem = dsp.i16;
        const base = dsp.ioIn >> 1;
        if (pos === 0 && n === input.length) mem.set(input as Int16Array, base);
        else for (let i = 0; i < n; i++) mem[base + i] = input[pos + i]!;
      }
      let produced: number;
      if (this.#rate === 24000) produced = this.#up ? ex.up(this.#slot, n, this.#codec) : ex.down(this.#slot, n, this.#codec);
      else produced = this.#up ? ex.upTo(this.#slot, this.#rate, n, this.#codec) : ex.downFrom(this.#slot, this.#rate, n, this.#codec);
      if (produced < 0) throw new DspError('internal', `dsp: ${STATUS[produced] ?? `status ${produced}`}`);
      if (byteOut) (out as Uint8Array).set(dsp.outView(produced), written);
      else (out as Int16Array).set(dsp.outInt16(produced), written);
      written += produced;
      pos += n;
      if (n === 0) break;
    }
    return written;
  }

  /** Back to silent history (e.g. after a barge-in clear). */
  reset(): void {
    if (this.#slot < 0) throw new DspError('closed', 'resampler is closed');
    if (this.#up) this.#dsp.exports.resetUp(this.#slot);
    else this.#dsp.exports.resetDown(this.#slot);
  }

  /** Frees the slot. Idempotent. */
  close(): void {
    if (this.#slot < 0) return;
    this.#dsp.exports.close(this.#slot);
    leaked.unregister(this);
    this.#slot = -1;
  }
}

/** µ-law bytes -> int16 (G.191). Writes into `out` when given (length >= input); returns exactly ulaw.length samples. */
export function ulawToPcm16(ulaw: Uint8Array, out?: Int16Array): Int16Array {
  return decode(ulaw, out, 'ulawToPcm');
}

/** A-law bytes -> int16 (G.191). */
export function alawToPcm16(alaw: Uint8Array, out?: Int16Array): Int16Array {
  return decode(alaw, out, 'alawToPcm');
}

/** int16 -> µ-law bytes (G.191). Writes into `out` when given (length >= input); returns exactly pcm.length bytes. */
export function pcm16ToUlaw(pcm: Int16Array, out?: Uint8Array): Uint8Array {
  return encode(pcm, out, 'pcmToUlaw');
}

/** int16 -> A-law bytes (G.191). */
export function pcm16ToAlaw(pcm: Int16Array, out?: Uint8Array): Uint8Array {
  return encode(pcm, out, 'pcmToAlaw');
}

function decode(input: Uint8Array, out: Int16Array | undefined, fn: 'ulawToPcm' | 'alawToPcm'): Int16Array {
  if (!(input instanceof Uint8Array)) throw new DspError('bad_input', `expected a Uint8Array of G.711 bytes, got ${describe(input)}`);
  const result = outputFor(out, input.length, Int16Array);
  const dsp = loadDsp();
  const block = dsp.maxCodecIn;
  for (let pos = 0; pos < input.length; pos += block) {
    const n = Math.min(block, input.length - pos);
    dsp.u8.set(n === input.length ? input : input.subarray(pos, pos + n), dsp.ioIn);
    dsp.exports[fn](n);
    result.set(dsp.outInt16(n), pos);
  }
  return result;
}

function encode(input: Int16Array, out: Uint8Array | undefined, fn: 'pcmToUlaw' | 'pcmToAlaw'): Uint8Array {
  if (!(input instanceof Int16Array)) throw new DspError('bad_input', `expected an Int16Array, got ${describe(input)}`);
  const result = outputFor(out, input.length, Uint8Array);
  const dsp = loadDsp();
  const block = dsp.maxCodecIn;
  for (let pos = 0; pos < input.length; pos += block) {
    const n = Math.min(block, input.length - pos);
    dsp.i16.set(n === input.length ? input : input.subarray(pos, pos + n), dsp.ioIn >> 1);
    dsp.exports[fn](n);
    result.set(dsp.outView(n), pos);
  }
  return result;
}

function outputFor<T extends Int16Array | Uint8Array>(
  out: T | undefined, length: number, Kind: { new (length: number): T; name: string },
): T {
  if (out === undefined) return new Kind(length);
  if (!(out instanceof Kind)) throw new DspError('bad_input', `out must be a ${Kind.name}, got ${describe(out)}`);
  if (out.length < length) throw new DspError('bad_input', `out holds ${out.length} samples, need ${length}`);
  return (out.length === length ? out : out.subarray(0, length)) as T;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value !== 'object') return typeof value;
  return (value as object).constructor?.name ?? 'object';
}
