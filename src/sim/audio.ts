/**
 * Simulator audio: a deterministic speech-like signal and a small G.711
 * µ-law codec of its own (G.191 formulas), independent of src/dsp so the
 * simulators never share code with what they test.
 */

/** Speech-like PCM16: a voiced source (f0 ~120–160 Hz, harmonics) through a syllable-rate envelope, about -12 dBFS. */
export function speechLike(durationMs: number, rate: number, seed = 1): Int16Array {
  const n = Math.round((durationMs * rate) / 1000);
  const out = new Int16Array(n);
  let s = seed >>> 0 || 1;
  const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) - 0.5;
  const f0 = 120 + (seed % 5) * 10;
  const formants = [500 + (seed % 3) * 100, 1500, 2500];
  for (let i = 0; i < n; i++) {
    const t = i / rate;
    const syllable = 0.5 - 0.5 * Math.cos(2 * Math.PI * 4 * t); // 4 syllables/s
    const edge = Math.min(1, t / 0.02, (durationMs / 1000 - t) / 0.02);
    let v = 0;
    for (let h = 1; h * f0 < Math.min(3400, rate / 2 - 200); h++) {
      const f = h * f0;
      let g = 0;
      for (const fm of formants) g += 1 / (1 + ((f - fm) / 150) ** 2);
      v += (g / h) * Math.sin(2 * Math.PI * f * t);
    }
    v = v * 3500 * syllable * Math.max(0, edge) + rand() * 80;
    out[i] = Math.max(-32768, Math.min(32767, Math.round(v)));
  }
  return out;
}

export function ulawEncodeSample(x: number): number {
  const sign = x < 0;
  let abs = (sign ? ~x : x) >> 2;
  abs += 33;
  if (abs > 0x1fff) abs = 0x1fff;
  let seg = 1;
  for (let i = abs >> 6; i !== 0; i >>= 1) seg++;
  const code = ((8 - seg) << 4) | (0x0f - ((abs >> seg) & 0x0f));
  return sign ? code : code | 0x80;
}

export function ulawDecodeSample(code: number): number {
  const sign = code < 0x80 ? -1 : 1;
  const m = ~code;
  const exponent = (m >> 4) & 7;
  const step = 4 << (exponent + 1);
  return sign * ((0x80 << exponent) + step * (m & 0x0f) + step / 2 - 4 * 33);
}

export function ulawEncode(pcm: Int16Array): Uint8Array {
  const out = new Uint8Array(pcm.length);
  for (let i = 0; i < pcm.length; i++) out[i] = ulawEncodeSample(pcm[i]!);
  return out;
}

export function ulawDecode(bytes: Uint8Array): Int16Array {
  const out = new Int16Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = ulawDecodeSample(bytes[i]!);
  return out;
}

/** RMS of PCM16 samples in dBFS (-Infinity for silence). */
/** Squared PCM16 level of each µ-law byte: a VAD's energy without decoding. */
const ULAW_SQUARED = Float64Array.from({ length: 256 }, (_, b) => ulawDecodeSample(b) ** 2);

/**
 * A stand-in VAD's input level: the caller's energy summed in place, window by
 * window across appends, with no decode and no copy (at a hundred calls in the
 * bench's process, per-sample reads and a buffer per append slowed every
 * call's clock). µ-law: each byte's squared level from a table; PCM16 little
 * endian: every `stride`-th sample of a typed-array view, the stride's phase
 * kept from the window's start. Each whole window's level (dBFS) goes to
 * `onWindow`.
 */
export class WindowLevel {
  private acc = 0;
  private pos = 0;

  constructor(private readonly onWindow: (dbfs: number) => void) {}

  /** The next audio: µ-law bytes, or PCM16 (`stride`: use every n-th sample); `win` samples a window. */
  push(bytes: Buffer, ulaw: boolean, win: number, stride = 1): void {
    if (ulaw) {
      for (let i = 0; i < bytes.length; i++) {
        this.acc += ULAW_SQUARED[bytes[i]!]!;
        if (++this.pos === win) this.close(win);
      }
      return;
    }
    const samples = bytes.length >> 1;
    // A typed-array view of the PCM16 (copied once only when the bytes sit at an odd offset).
    const src = bytes.byteOffset & 1 ? Buffer.from(bytes) : bytes;
    const pcm = new Int16Array(src.buffer, src.byteOffset, samples);
    let i = 0;
    while (i < samples) {
      // Samples left in this window; the stride's phase is kept from the window's start.
      const end = Math.min(samples, i + (win - this.pos));
      const first = i + ((stride - (this.pos % stride)) % stride);
      let acc = 0;
      for (let j = first; j < end; j += stride) acc += pcm[j]! * pcm[j]!;
      this.acc += acc;
      this.pos += end - i;
      i = end;
      if (this.pos === win) this.close(win / stride);
    }
  }

  /** Forget the window in progress. */
  reset(): void {
    this.acc = 0;
    this.pos = 0;
  }

  /** The window is whole: its RMS over `n` summed samples. */
  private close(n: number): void {
    const rms = Math.sqrt(this.acc / n);
    this.reset();
    this.onWindow(20 * Math.log10(rms / 32768));
  }
}

export function rmsDbfs(pcm: Int16Array): number {
  let acc = 0;
  for (let i = 0; i < pcm.length; i++) acc += pcm[i]! * pcm[i]!;
  const rms = Math.sqrt(acc / Math.max(1, pcm.length));
  return 20 * Math.log10(rms / 32768);
}

/** PCM16 8 kHz → 24 kHz by linear interpolation: good enough for a stand-in's VAD-level audio. */
export function up3(pcm8: Int16Array): Int16Array {
  const out = new Int16Array(pcm8.length * 3);
  for (let i = 0; i < pcm8.length; i++) {
    const a = pcm8[i]!;
    const b = pcm8[i + 1] ?? a;
    out[3 * i] = a;
    out[3 * i + 1] = Math.round(a + (b - a) / 3);
    out[3 * i + 2] = Math.round(a + ((b - a) * 2) / 3);
  }
  return out;
}

/**
 * Reads a mono WAV of PCM16 (format 1) or µ-law (format 7) into PCM16 at its
 * own rate. Throws on anything else (stereo, float, other codecs): a
 * simulator fixture should be simple.
 */
export function readWav(buf: Uint8Array): { rate: number; pcm: Int16Array } {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < 12 || b.toString('ascii', 0, 4) !== 'RIFF' || b.toString('ascii', 8, 12) !== 'WAVE') throw new Error('not a RIFF/WAVE file');
  let fmt: { format: number; channels: number; rate: number; bits: number } | undefined;
  for (let off = 12; off + 8 <= b.length; ) {
    const id = b.toString('ascii', off, off + 4);
    const size = b.readUInt32LE(off + 4);
    const body = b.subarray(off + 8, Math.min(b.length, off + 8 + size));
    if (id === 'fmt ') {
      fmt = { format: body.readUInt16LE(0), channels: body.readUInt16LE(2), rate: body.readUInt32LE(4), bits: body.readUInt16LE(14) };
    } else if (id === 'data') {
      if (!fmt) throw new Error('WAV data chunk before fmt chunk');
      if (fmt.channels !== 1) throw new Error(`WAV has ${fmt.channels} channels; mono only`);
      if (fmt.format === 1 && fmt.bits === 16) {
        const pcm = new Int16Array(body.length >> 1);
        for (let i = 0; i < pcm.length; i++) pcm[i] = body.readInt16LE(2 * i);
        return { rate: fmt.rate, pcm };
      }
      if (fmt.format === 7 && fmt.bits === 8) return { rate: fmt.rate, pcm: ulawDecode(body) };
      throw new Error(`WAV format ${fmt.format}/${fmt.bits} bits not supported (PCM16 or µ-law only)`);
    }
    off += 8 + size + (size & 1);
  }
  throw new Error('WAV has no data chunk');
}

/** Writes mono PCM16 as a WAV (for fixtures and for listening to what a simulated caller heard). */
export function writeWav(pcm: Int16Array, rate: number): Buffer {
  const out = Buffer.alloc(44 + pcm.length * 2);
  out.write('RIFF', 0, 'ascii');
  out.writeUInt32LE(36 + pcm.length * 2, 4);
  out.write('WAVEfmt ', 8, 'ascii');
  out.writeUInt32LE(16, 16);
  out.writeUInt16LE(1, 20);
  out.writeUInt16LE(1, 22);
  out.writeUInt32LE(rate, 24);
  out.writeUInt32LE(rate * 2, 28);
  out.writeUInt16LE(2, 32);
  out.writeUInt16LE(16, 34);
  out.write('data', 36, 'ascii');
  out.writeUInt32LE(pcm.length * 2, 40);
  for (let i = 0; i < pcm.length; i++) out.writeInt16LE(pcm[i]!, 44 + 2 * i);
  return out;
}
