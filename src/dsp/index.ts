/**
 * callbridge's audio core, as the rest of the code sees it.
 *
 * - Transcoder: one per call, two independent directions.
 *   inbound:  phone audio at 8 kHz (µ-law by default) -> PCM16LE at 24 kHz, exactly 6 bytes out per µ-law byte.
 *   outbound: PCM16LE at 24 kHz, any byte count -> phone audio at 8 kHz; odd bytes and
 *             sample counts not a multiple of 3 are carried to the next call, never dropped.
 *   Output for a stream is identical however it is chunked. Linear phase; group delay
 *   1.979 ms inbound, 1.896 ms outbound (round trip exactly 31 samples at 8 kHz).
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
}

/** Frees the slot of a Transcoder that was dropped without close(). */
const leaked = new FinalizationRegistry<number>((slot) => {
  loadDsp().exports.close(slot);
});

type Direction = 0 | 1; // 0 inbound (up), 1 outbound (down)

export class Transcoder {
  readonly phone: PhoneCodec;
  readonly #dsp: Dsp;
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

  private constructor(dsp: Dsp, slot: number, phone: PhoneCodec, passthrough: boolean) {
    this.#dsp = dsp;
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
    const dsp = loadDsp();
    if (options.passthrough) return new Transcoder(dsp, -1, phone, true);
    const slot = dsp.exports.open();
    if (slot < 0) throw new DspError('no_slots', `all ${dsp.maxSlots} DSP channel slots are in use`);
    const transcoder = new Transcoder(dsp, slot, phone, false);
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
    const maxIn = (dir === 0 ? dsp.maxUpIn : dsp.maxDownIn) * inWidth; // bytes per wasm call
    let carry = this.#carry[dir];
    const samplesIn = Math.floor(((carry >= 0 ? 1 : 0) + input.length) / inWidth);
    const maxOut = (dir === 0 ? 3 * samplesIn : Math.floor((samplesIn + 2) / 3)) * outWidth;
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
      const produced = dir === 0
        ? dsp.exports.up(this.#slot, n, this.#codec)
        : dsp.exports.down(this.#slot, n, this.#codec);
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
