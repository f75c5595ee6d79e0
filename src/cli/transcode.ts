/**
 * `callbridge transcode --from FMT --to FMT [IN] [OUT]`
 *
 * Converts a recording through the same per-call Transcoder a call uses,
 * streamed in blocks of BLOCK_BYTES (memory stays a few MiB for any length).
 * Formats: ulaw8k, alaw8k, pcm8k, pcm16k, pcm24k, pcm48k, and as input only
 * pcm22k (22.05 kHz) and pcm44k (44.1 kHz) (raw PCM is little-endian s16
 * mono). A path ending in .wav is read or written as WAV (PCM tag 1, A-law 6,
 * µ-law 7; dsp/wav.ts); '-' or a missing path means stdin/stdout.
 *
 * Output is what a call would hear, byte for byte the same as feeding the
 * Transcoder (8 <-> 16 / 24 kHz) or a Resampler (the other pairs) 20 ms
 * frames: L samples per 8 kHz sample up (L = rate / 8 kHz), the samples due
 * down (a trailing part of one 8 kHz sample period is not emitted), the
 * resampler's 1.9-2 ms delay is not removed and its tail is not flushed.
 * Between two rates neither of which is 8 kHz the audio goes through 8 kHz
 * (the phone's band), as a call's would.
 * Errors: one line on stderr; exit 2 for usage, 1 for unreadable or bad input.
 * A file input is checked whole before anything is written; from stdin, a
 * short WAV or a trailing partial sample is reported at the end, after the
 * whole samples before it were written.
 */
import { open, stat, type FileHandle } from 'node:fs/promises';
import type { CliIO } from './io.js';
import { Resampler, Transcoder, alawToPcm16, pcm16ToAlaw, pcm16ToUlaw, ulawToPcm16 } from '../dsp/index.js';
import { readWavHeader, truncatedDataError, wavFileHeader, wavFormatProblems } from '../dsp/wav.js';

export interface Format {
  rateHz: number;
  bytesPerSample: 1 | 2;
  wavTag: number; // WAVE_FORMAT_PCM 1, _ALAW 6, _MULAW 7
  phone?: 'ulaw' | 'alaw' | 'pcm16'; // 8 kHz formats only
}

const FORMATS: Record<string, Format> = {
  ulaw8k: { rateHz: 8000, bytesPerSample: 1, wavTag: 7, phone: 'ulaw' },
  alaw8k: { rateHz: 8000, bytesPerSample: 1, wavTag: 6, phone: 'alaw' },
  pcm8k: { rateHz: 8000, bytesPerSample: 2, wavTag: 1, phone: 'pcm16' },
  pcm16k: { rateHz: 16000, bytesPerSample: 2, wavTag: 1 },
  pcm22k: { rateHz: 22050, bytesPerSample: 2, wavTag: 1 },
  pcm24k: { rateHz: 24000, bytesPerSample: 2, wavTag: 1 },
  pcm44k: { rateHz: 44100, bytesPerSample: 2, wavTag: 1 },
  pcm48k: { rateHz: 48000, bytesPerSample: 2, wavTag: 1 },
};

/** Rates the audio core makes from 8 kHz (22.05 and 44.1 kHz only go down to 8 kHz). */
const UP_RATES = [16000, 24000, 48000];

const USAGE = 'usage: callbridge transcode --from FMT --to FMT [IN] [OUT]  (FMT: ulaw8k, alaw8k, pcm8k, pcm16k, pcm24k, pcm48k; --from also pcm22k, pcm44k; .wav by extension; - = stdin/stdout)';

class UsageError extends Error {}
class InputError extends Error {}

export async function run(args: string[], io: CliIO): Promise<number> {
  try {
    const opts = parseArgs(args);
    if (opts.help) {
      io.stdout.write(`${USAGE}\n`);
      return 0;
    }
    await transcode(opts, io);
    return 0;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    io.stderr.write(`callbridge transcode: ${message.split('\n')[0]}\n`);
    return err instanceof UsageError ? 2 : 1;
  }
}

interface Options {
  help: boolean;
  fromName: string;
  toName: string;
  from: Format;
  input?: string;
  output?: string;
}

function parseArgs(args: string[]): Options {
  let fromName: string | undefined;
  let toName: string | undefined;
  let help = false;
  const paths: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const [flag, inline] = arg.startsWith('--') && arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    if (flag === '--from' || flag === '--to') {
      const value = inline ?? args[++i];
      if (value === undefined) throw new UsageError(`${flag} needs a format`);
      if (flag === '--from') fromName = value;
      else toName = value;
    } else if (flag === '-h' || flag === '--help') {
      help = true;
    } else if (arg.startsWith('-') && arg !== '-') {
      throw new UsageError(`unknown option '${arg}'; ${USAGE}`);
    } else {
      paths.push(arg);
    }
  }
  if (help) return { help, fromName: '', toName: '', from: FORMATS.pcm8k };
  if (paths.length > 2) throw new UsageError(`too many paths: ${paths.join(' ')}`);
  if (fromName === undefined || toName === undefined) throw new UsageError(`--from and --to are required; ${USAGE}`);
  for (const name of [fromName, toName]) {
    if (!Object.hasOwn(FORMATS, name)) throw new UsageError(`unknown format '${name}' (known: ${Object.keys(FORMATS).join(', ')})`);
  }
  const toRate = FORMATS[toName].rateHz;
  if (fromName !== toName && toRate !== 8000 && !UP_RATES.includes(toRate)) {
    throw new UsageError(`--to ${toName}: ${toRate / 1000} kHz is an input rate only (outputs: ${Object.keys(FORMATS).filter((n) => FORMATS[n].rateHz === 8000 || UP_RATES.includes(FORMATS[n].rateHz)).join(', ')})`);
  }
  const dash = (p: string | undefined): string | undefined => (p === '-' ? undefined : p);
  return { help, fromName, toName, from: FORMATS[fromName], input: dash(paths[0]), output: dash(paths[1]) };
}

function isWav(path: string | undefined): boolean {
  return path !== undefined && path.toLowerCase().endsWith('.wav');
}

/**
 * Input bytes read and converted per block. At 1 MiB (6 MiB of output for
 * µ-law up) the per-block JavaScript is noise next to the DSP, and memory
 * stays a few blocks however long the recording.
 */
export const BLOCK_BYTES = 1 << 20;

/**
 * Streams the input through the conversion to the output, a block at a time.
 * Everything that can be checked before the first byte is written is: file
 * size, WAV header, sample alignment. From stdin the length is only known at
 * the end: a short WAV data chunk or a trailing partial sample is reported
 * then, after every whole sample before it was converted and written.
 */
async function transcode(opts: Options, io: CliIO): Promise<void> {
  const to = FORMATS[opts.toName];
  const input = await openInput(opts.input, io);
  try {
    const audio = isWav(opts.input) ? await wavAudio(input, opts.from, opts.fromName) : rawAudio(input, opts.from, opts.fromName);
    const expected = audio.bytes === undefined ? undefined : outputBytes(audio.bytes, opts.from, to);
    if (opts.output !== undefined && input.file) await checkNotInput(opts.output, input.file);
    const convert = converter(opts.fromName, opts.toName);
    try {
      const output = await openOutput(opts.output, io, isWav(opts.output) ? to : undefined, expected);
      try {
        const { read, written, partial } = await pump(input.reader, audio.bytes, opts.from.bytesPerSample, convert.convert, output);
        await output.finish(written);
        if (audio.declared !== undefined && read < audio.declared) {
          throw new InputError(truncatedDataError(audio.declared, read));
        }
        if (partial > 0) {
          throw new InputError(`${opts.fromName} input ends mid-sample (${read} bytes is not a whole number of samples; the last ${partial} not converted)`);
        }
      } finally {
        await output.close();
      }
    } finally {
      convert.close();
    }
  } finally {
    await input.close();
  }
}

/**
 * Moves up to `limit` input bytes (all of them if undefined) through
 * `convert` to `output` in whole samples of `width` bytes; a sample split
 * between blocks is joined. Returns bytes read and written, and the bytes of
 * a trailing partial sample left unconverted.
 */
async function pump(
  reader: ByteReader, limit: number | undefined, width: number,
  convert: (block: Uint8Array) => Uint8Array, output: Output,
): Promise<{ read: number; written: number; partial: number }> {
  let read = 0;
  let written = 0;
  let carry: Uint8Array | undefined;
  for (;;) {
    const want = limit === undefined ? BLOCK_BYTES : Math.min(BLOCK_BYTES, limit - read);
    if (want === 0) break;
    let block = await reader.next(want);
    if (block === undefined) break;
    read += block.length;
    if (carry) {
      block = Buffer.concat([carry, block]); // only when a stream splits a sample: rare, and one block
      carry = undefined;
    }
    const whole = block.length - (block.length % width);
    if (whole < block.length) {
      carry = Uint8Array.prototype.slice.call(block, whole); // a copy, whatever the source does with its buffers
      block = block.subarray(0, whole);
    }
    if (block.length === 0) continue;
    const out = convert(block);
    await output.write(out);
    written += out.length;
  }
  return { read, written, partial: carry?.length ?? 0 };
}

/** Output bytes for `inBytes` of whole input samples (through 8 kHz when neither side is 8 kHz). */
function outputBytes(inBytes: number, from: Format, to: Format): number {
  const samples = Math.floor(inBytes / from.bytesPerSample);
  let out = samples;
  if (from.rateHz !== to.rateHz) {
    const at8k = from.rateHz === 8000 ? samples : samplesDown(samples, from.rateHz);
    out = to.rateHz === 8000 ? at8k : (to.rateHz / 8000) * at8k;
  }
  return out * to.bytesPerSample;
}

/**
 * 8 kHz samples a down resampler gives for n input samples at `rate`: one per
 * M in for the integer pairs (16 / 24 / 48 kHz; a trailing part group waits),
 * ceil(n L / M) for 22.05 kHz (160/441) and 44.1 kHz (80/441), where output m
 * is due once input floor(m M / L) has arrived.
 */
function samplesDown(n: number, rate: number): number {
  if (rate === 22050 || rate === 44100) return Math.ceil((n * (rate === 22050 ? 160 : 80)) / 441);
  return Math.floor(n / (rate / 8000));
}

/** Pulls bytes from an async source in the sizes asked for, counting what it consumed. */
class ByteReader {
  readonly #source: AsyncIterator<Uint8Array | string>;
  #head: Uint8Array = new Uint8Array(0);
  #done = false;
  /** Bytes handed out or skipped so far. */
  position = 0;

  constructor(source: AsyncIterator<Uint8Array | string>) {
    this.#source = source;
  }

  /** The next 1..max bytes (a view, valid until the source reuses it: never, for the sources here), or undefined at the end. */
  async next(max: number): Promise<Uint8Array | undefined> {
    while (this.#head.length === 0) {
      if (this.#done) return undefined;
      const r = await this.#source.next();
      if (r.done) {
        this.#done = true;
        return undefined;
      }
      this.#head = typeof r.value === 'string' ? Buffer.from(r.value) : r.value;
    }
    const n = Math.min(max, this.#head.length);
    const out = this.#head.subarray(0, n);
    this.#head = this.#head.subarray(n);
    this.position += n;
    return out;
  }

  /** Exactly n bytes, fewer only at the end, in one Buffer of its own. */
  async take(n: number): Promise<Buffer> {
    const parts: Uint8Array[] = [];
    let got = 0;
    while (got < n) {
      const part = await this.next(n - got);
      if (part === undefined) break;
      parts.push(part);
      got += part.length;
    }
    return Buffer.concat(parts, got);
  }

  /** Discards n bytes (fewer at the end); returns how many. */
  async skip(n: number): Promise<number> {
    let skipped = 0;
    while (skipped < n) {
      const part = await this.next(Math.min(n - skipped, BLOCK_BYTES));
      if (part === undefined) break;
      skipped += part.length;
    }
    return skipped;
  }
}

interface Input {
  reader: ByteReader;
  /** Bytes in the input file; undefined for stdin, pipes and devices. */
  size?: number;
  /** The input file's identity, to refuse writing over it while it is read. */
  file?: { dev: number; ino: number };
  close(): Promise<void>;
}

async function openInput(path: string | undefined, io: CliIO): Promise<Input> {
  if (path === undefined) {
    return { reader: new ByteReader((io.stdin as AsyncIterable<Uint8Array | string>)[Symbol.asyncIterator]()), close: async () => {} };
  }
  let fh: FileHandle | undefined;
  try {
    fh = await open(path, 'r');
    const st = await fh.stat();
    if (st.isDirectory()) throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
    const file = fh;
    return {
      reader: new ByteReader(fileBlocks(file, path)),
      size: st.isFile() ? st.size : undefined,
      file: { dev: st.dev, ino: st.ino },
      close: () => file.close(),
    };
  } catch (err) {
    await fh?.close();
    throw new InputError(`cannot read ${path}: ${ioReason(err)}`);
  }
}

/** The file from its current position, BLOCK_BYTES per read, each in a buffer of its own. */
async function* fileBlocks(fh: FileHandle, path: string): AsyncGenerator<Uint8Array> {
  for (;;) {
    const buf = Buffer.allocUnsafe(BLOCK_BYTES);
    let bytesRead: number;
    try {
      ({ bytesRead } = await fh.read(buf, 0, BLOCK_BYTES, null));
    } catch (err) {
      throw new InputError(`cannot read ${path}: ${ioReason(err)}`);
    }
    if (bytesRead === 0) return;
    yield buf.subarray(0, bytesRead);
  }
}

/** Streaming reads the input while the output is written: the output must be another file. */
async function checkNotInput(path: string, input: { dev: number; ino: number }): Promise<void> {
  const st = await stat(path).catch(() => undefined);
  if (st && st.isFile() && st.dev === input.dev && st.ino === input.ino) {
    throw new InputError(`${path} is also the input: write the output to another file`);
  }
}

interface Output {
  /** Writes all of `bytes`; they may be reused once this resolves. */
  write(bytes: Uint8Array): Promise<void>;
  /** After the last write, with the audio byte count: pads and completes a WAV header. */
  finish(audioBytes: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * stdout (raw only), or a file, raw or WAV. The WAV header is written first
 * with the expected audio length (from the input's, when known) and rewritten
 * at the end if the length turned out different.
 */
async function openOutput(path: string | undefined, io: CliIO, wav: Format | undefined, expected: number | undefined): Promise<Output> {
  if (path === undefined) {
    const write = (bytes: Uint8Array): Promise<void> => new Promise((resolve, reject) => {
      io.stdout.write(bytes, (err) => (err ? reject(new InputError(`cannot write stdout: ${ioReason(err)}`)) : resolve()));
    });
    return { write, finish: async () => {}, close: async () => {} };
  }
  const fail = (err: unknown): never => {
    throw new InputError(`cannot write ${path}: ${ioReason(err)}`);
  };
  const fh = await open(path, 'w').catch(fail);
  const writeAt = async (bytes: Uint8Array, position: number | null): Promise<void> => {
    for (let at = 0; at < bytes.length;) {
      const { bytesWritten } = await fh.write(bytes, at, bytes.length - at, position === null ? null : position + at).catch(fail);
      at += bytesWritten;
    }
  };
  const header = wav ? wavFileHeader(wav, expected ?? 0) : undefined;
  try {
    if (header) await writeAt(header, null);
  } catch (err) {
    await fh.close();
    throw err;
  }
  return {
    write: (bytes) => writeAt(bytes, null),
    async finish(audioBytes) {
      if (!wav || !header) return;
      if (audioBytes & 1) await writeAt(new Uint8Array(1), null); // chunks are padded to even length
      if (audioBytes !== (expected ?? 0)) await writeAt(wavFileHeader(wav, audioBytes), 0);
    },
    close: () => fh.close(),
  };
}

function ioReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  const reasons: Record<string, string> = {
    ENOENT: 'no such file or directory',
    EACCES: 'permission denied',
    EISDIR: 'is a directory',
    EPIPE: 'the reader went away (broken pipe)',
  };
  return (code && reasons[code]) ?? (err instanceof Error ? err.message : String(err));
}

interface Audio {
  /** Audio bytes to convert; undefined: up to the end of the input. */
  bytes?: number;
  /** Length a WAV data chunk declares, checked against what arrives when the input's size is not known up front. */
  declared?: number;
}

function rawAudio(input: Input, format: Format, name: string): Audio {
  if (input.size !== undefined) checkWhole(input.size, format, name);
  return { bytes: input.size };
}

function checkWhole(bytes: number, format: Format, name: string): void {
  if (bytes % format.bytesPerSample !== 0) {
    throw new InputError(`${name} input ends mid-sample (${bytes} bytes is not a whole number of samples)`);
  }
}

/** Largest fmt chunk accepted, bytes (WAVE_FORMAT_EXTENSIBLE is 40). */
const MAX_FMT_BYTES = 1024;

/**
 * Reads a WAV header up to the start of its audio (dsp/wav.ts, the prompts'
 * reader), after checking it holds `format` (mono, same rate and encoding)
 * and, for a file, that the data chunk is complete.
 */
async function wavAudio(input: Input, format: Format, name: string): Promise<Audio> {
  const { reader, size } = input;
  const header = await readWavHeader(reader, { maxFmtBytes: MAX_FMT_BYTES });
  if (!header.ok) throw new InputError(header.error);
  const problems = wavFormatProblems(header.fmt, { encodings: [{ tag: format.wavTag, bits: format.bytesPerSample * 8 }], rateHz: format.rateHz });
  if (problems.length) throw new InputError(`WAV does not match --from ${name}: ${problems.join('; ')}`);
  const present = size === undefined ? undefined : size - reader.position;
  if (header.dataBytes === undefined) { // written by a streaming encoder that could not seek back; the data runs to the end
    if (present !== undefined) checkWhole(present, format, name);
    return { bytes: present };
  }
  if (present !== undefined && header.dataBytes > present) throw new InputError(truncatedDataError(header.dataBytes, present));
  checkWhole(header.dataBytes, format, name);
  return { bytes: header.dataBytes, declared: present === undefined ? header.dataBytes : undefined };
}

interface Converter {
  /** Whole input samples -> output; the view is valid until the next call. */
  convert(block: Uint8Array): Uint8Array;
  close(): void;
}

/**
 * The conversion, as a call does it: a rate change goes through one
 * Transcoder (whose output does not depend on how the input is cut, so
 * blocks give what 20 ms frames give); 8 kHz to 8 kHz goes through linear
 * PCM with the G.191 codecs.
 */
function converter(fromName: string, toName: string): Converter {
  const from = FORMATS[fromName];
  const to = FORMATS[toName];
  if (fromName === toName) return { convert: (block) => block, close: () => {} };
  if (from.rateHz !== to.rateHz) {
    if (from.rateHz !== 8000 && to.rateHz !== 8000) {
      // neither side is the phone's: down to 8 kHz, then up
      const first = rateStage(from, FORMATS.pcm8k);
      const second = rateStage(FORMATS.pcm8k, to);
      return { convert: (b) => second.convert(first.convert(b)), close: () => { first.close(); second.close(); } };
    }
    return rateStage(from, to);
  }
  let pcm = new Int16Array(0);
  let bytes = new Uint8Array(0);
  const convert = (block: Uint8Array): Uint8Array => {
    const samples = block.length / from.bytesPerSample;
    if (pcm.length < samples) {
      pcm = new Int16Array(samples);
      bytes = new Uint8Array(samples);
    }
    const linear = decode8k(block, from, pcm.subarray(0, samples));
    if (to.phone === 'ulaw') return pcm16ToUlaw(linear, bytes);
    if (to.phone === 'alaw') return pcm16ToAlaw(linear, bytes);
    return new Uint8Array(linear.buffer, linear.byteOffset, linear.byteLength);
  };
  return { convert, close: () => {} };
}

/** One rate change with 8 kHz on one side: a Transcoder for 16 / 24 kHz (what a call uses), else a Resampler. */
function rateStage(from: Format, to: Format): Converter {
  const phone = (from.rateHz === 8000 ? from : to).phone!;
  const other = from.rateHz === 8000 ? to.rateHz : from.rateHz;
  if (other === 24000 || other === 16000) {
    const transcoder = Transcoder.open({ phone, model: other === 16000 ? 'pcm16k' : 'pcm24k' });
    const convert = from.rateHz === 8000 ? (b: Uint8Array) => transcoder.inbound(b) : (b: Uint8Array) => transcoder.outbound(b);
    return { convert, close: () => transcoder.close() };
  }
  const resampler = Resampler.open({ from: from.rateHz, to: to.rateHz, phone });
  let pcmIn = new Int16Array(0);
  let out16 = new Int16Array(0);
  let out8 = new Uint8Array(0);
  const convert = (block: Uint8Array): Uint8Array => {
    const n = block.length / from.bytesPerSample;
    let input: Int16Array | Uint8Array = block;
    if (from.bytesPerSample === 2) {
      if (pcmIn.length < n) pcmIn = new Int16Array(n);
      new Uint8Array(pcmIn.buffer, 0, 2 * n).set(block); // aligned copy (PCM16LE; hosts are little-endian)
      input = pcmIn;
    }
    const max = resampler.maxOutput(n);
    if (to.bytesPerSample === 1) {
      if (out8.length < max) out8 = new Uint8Array(max);
      return out8.subarray(0, resampler.process(input, n, out8));
    }
    if (out16.length < max) out16 = new Int16Array(max);
    const k = resampler.process(input, n, out16);
    return new Uint8Array(out16.buffer, 0, 2 * k);
  };
  return { convert, close: () => resampler.close() };
}

/** 8 kHz input samples -> int16 in `out` (exactly as long as the block's samples). */
function decode8k(block: Uint8Array, format: Format, out: Int16Array): Int16Array {
  if (format.phone === 'ulaw') return ulawToPcm16(block, out);
  if (format.phone === 'alaw') return alawToPcm16(block, out);
  new Uint8Array(out.buffer, out.byteOffset, out.byteLength).set(block); // PCM16LE (all supported hosts are little-endian)
  return out;
}
