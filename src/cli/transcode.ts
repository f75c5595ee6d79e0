/**
 * `callbridge transcode --from FMT --to FMT [IN] [OUT]`
 *
 * Converts a recording through the same per-call Transcoder a call uses, in
 * 20 ms frames. Formats: ulaw8k, alaw8k, pcm8k, pcm24k (raw PCM is
 * little-endian s16 mono). A path ending in .wav is read or written as WAV
 * (PCM tag 1, A-law 6, µ-law 7); '-' or a missing path means stdin/stdout.
 *
 * Output is what a call would hear: 3 samples per 8 kHz sample up, one per
 * 3 down (a trailing 1-2 samples at 24 kHz are not emitted), the resampler's
 * 1.9-2 ms delay is not removed and its tail is not flushed.
 * Errors: one line on stderr; exit 2 for usage, 1 for unreadable or bad input.
 */
import { readFile, writeFile } from 'node:fs/promises';
import type { CliIO } from './main.js';
import { Transcoder, alawToPcm16, pcm16ToAlaw, pcm16ToUlaw, ulawToPcm16 } from '../dsp/index.js';

const FRAME_MS = 20;

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
  pcm24k: { rateHz: 24000, bytesPerSample: 2, wavTag: 1 },
};

const USAGE = 'usage: callbridge transcode --from FMT --to FMT [IN] [OUT]  (FMT: ulaw8k, alaw8k, pcm8k, pcm24k; .wav by extension; - = stdin/stdout)';

class UsageError extends Error {}
class InputError extends Error {}

export async function run(args: string[], io: CliIO): Promise<number> {
  try {
    const opts = parseArgs(args);
    if (opts.help) {
      io.stdout.write(`${USAGE}\n`);
      return 0;
    }
    const raw = await readInput(opts.input, io);
    const audio = isWav(opts.input) ? parseWav(raw, opts.from, opts.fromName) : checkRaw(raw, opts.from, opts.fromName);
    const out = convert(audio, opts.fromName, opts.toName);
    const bytes = isWav(opts.output) ? withWavHeader(out, FORMATS[opts.toName]) : out;
    await writeOutput(opts.output, bytes, io);
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
  const dash = (p: string | undefined): string | undefined => (p === '-' ? undefined : p);
  return { help, fromName, toName, from: FORMATS[fromName], input: dash(paths[0]), output: dash(paths[1]) };
}

function isWav(path: string | undefined): boolean {
  return path !== undefined && path.toLowerCase().endsWith('.wav');
}

async function readInput(path: string | undefined, io: CliIO): Promise<Uint8Array> {
  if (path === undefined) {
    const chunks: Buffer[] = [];
    for await (const chunk of io.stdin) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
    return Buffer.concat(chunks);
  }
  try {
    return await readFile(path);
  } catch (err) {
    throw new InputError(`cannot read ${path}: ${ioReason(err)}`);
  }
}

async function writeOutput(path: string | undefined, bytes: Uint8Array, io: CliIO): Promise<void> {
  if (path === undefined) {
    await new Promise<void>((resolve, reject) => io.stdout.write(bytes, (err) => (err ? reject(err) : resolve())));
    return;
  }
  try {
    await writeFile(path, bytes);
  } catch (err) {
    throw new InputError(`cannot write ${path}: ${ioReason(err)}`);
  }
}

function ioReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  const reasons: Record<string, string> = {
    ENOENT: 'no such file or directory',
    EACCES: 'permission denied',
    EISDIR: 'is a directory',
  };
  return (code && reasons[code]) ?? (err instanceof Error ? err.message : String(err));
}

function checkRaw(bytes: Uint8Array, format: Format, name: string): Uint8Array {
  if (bytes.length % format.bytesPerSample !== 0) {
    throw new InputError(`${name} input ends mid-sample (${bytes.length} bytes is not a whole number of samples)`);
  }
  return bytes;
}

/** The audio bytes of a WAV file, after checking it holds `format` (mono, same rate and encoding) and is complete. */
export function parseWav(bytes: Uint8Array, format: Format, name: string): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tag = (at: number): string => String.fromCharCode(...bytes.subarray(at, at + 4));
  if (bytes.length < 12 || tag(0) !== 'RIFF' || tag(8) !== 'WAVE') throw new InputError('not a WAV file (no RIFF/WAVE header)');
  let fmt: { tag: number; channels: number; rateHz: number; bits: number } | undefined;
  for (let at = 12; ;) {
    if (at + 8 > bytes.length) throw new InputError(fmt ? 'truncated WAV: no data chunk' : 'truncated WAV: no fmt chunk');
    const id = tag(at);
    const size = view.getUint32(at + 4, true);
    const body = at + 8;
    if (id === 'fmt ') {
      if (size < 16 || body + size > bytes.length) throw new InputError('truncated WAV: short fmt chunk');
      let wavTag = view.getUint16(body, true);
      if (wavTag === 0xfffe && size >= 40) wavTag = view.getUint16(body + 24, true); // WAVE_FORMAT_EXTENSIBLE sub-format
      fmt = { tag: wavTag, channels: view.getUint16(body + 2, true), rateHz: view.getUint32(body + 4, true), bits: view.getUint16(body + 14, true) };
    } else if (id === 'data') {
      if (!fmt) throw new InputError('bad WAV: data chunk before fmt chunk');
      checkWavFormat(fmt, format, name);
      // 0xFFFFFFFF: written by a streaming encoder that could not seek back; the data runs to the end
      const length = size === 0xffffffff ? bytes.length - body : size;
      if (body + length > bytes.length) {
        throw new InputError(`truncated WAV: data chunk declares ${length} bytes, ${bytes.length - body} present`);
      }
      return checkRaw(bytes.subarray(body, body + length), format, name);
    }
    at = body + size + (size & 1); // chunks are padded to even length
  }
}

function checkWavFormat(fmt: { tag: number; channels: number; rateHz: number; bits: number }, want: Format, name: string): void {
  const names: Record<number, string> = { 1: 'PCM', 6: 'A-law', 7: 'µ-law' };
  const bits = want.bytesPerSample * 8;
  const problems: string[] = [];
  if (fmt.tag !== want.wavTag || fmt.bits !== bits) problems.push(`${names[fmt.tag] ?? `format tag ${fmt.tag}`} ${fmt.bits}-bit, not ${names[want.wavTag]} ${bits}-bit`);
  if (fmt.rateHz !== want.rateHz) problems.push(`${fmt.rateHz} Hz, not ${want.rateHz} Hz`);
  if (fmt.channels !== 1) problems.push(`${fmt.channels} channels, not mono`);
  if (problems.length) throw new InputError(`WAV does not match --from ${name}: ${problems.join('; ')}`);
}

/** A WAV file around `audio`; G.711 gets the fmt extension size and fact chunk non-PCM WAVs carry. */
export function withWavHeader(audio: Uint8Array, format: Format): Uint8Array {
  const pcm = format.wavTag === 1;
  const fmtSize = pcm ? 16 : 18;
  const factSize = pcm ? 0 : 12;
  const header = 12 + 8 + fmtSize + factSize + 8;
  const out = new Uint8Array(header + audio.length + (audio.length & 1));
  const view = new DataView(out.buffer);
  const ascii = (at: number, s: string): void => {
    for (let i = 0; i < 4; i++) out[at + i] = s.charCodeAt(i);
  };
  ascii(0, 'RIFF');
  view.setUint32(4, out.length - 8, true);
  ascii(8, 'WAVE');
  ascii(12, 'fmt ');
  view.setUint32(16, fmtSize, true);
  view.setUint16(20, format.wavTag, true);
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, format.rateHz, true);
  view.setUint32(28, format.rateHz * format.bytesPerSample, true); // bytes per second
  view.setUint16(32, format.bytesPerSample, true); // block align
  view.setUint16(34, format.bytesPerSample * 8, true);
  let at = 36;
  if (!pcm) {
    view.setUint16(at, 0, true); // cbSize
    ascii(at + 2, 'fact');
    view.setUint32(at + 6, 4, true);
    view.setUint32(at + 10, audio.length / format.bytesPerSample, true);
    at += 14;
  }
  ascii(at, 'data');
  view.setUint32(at + 4, audio.length, true);
  out.set(audio, at + 8);
  return out;
}

/** Runs the conversion in 20 ms frames of the input format. */
function convert(audio: Uint8Array, fromName: string, toName: string): Uint8Array {
  const from = FORMATS[fromName];
  const to = FORMATS[toName];
  if (fromName === toName) return audio;
  const frameBytes = (from.rateHz * FRAME_MS / 1000) * from.bytesPerSample;
  const parts: Uint8Array[] = [];
  const frames = (step: (frame: Uint8Array) => Uint8Array): Uint8Array => {
    for (let at = 0; at < audio.length; at += frameBytes) parts.push(step(audio.subarray(at, at + frameBytes)).slice());
    return Buffer.concat(parts);
  };

  if (from.rateHz !== to.rateHz) {
    const phone = (from.rateHz === 8000 ? from : to).phone!;
    const transcoder = Transcoder.open({ phone });
    try {
      return from.rateHz === 8000 ? frames((f) => transcoder.inbound(f)) : frames((f) => transcoder.outbound(f));
    } finally {
      transcoder.close();
    }
  }
  // 8 kHz to 8 kHz: through linear PCM, G.191 codecs
  return frames((f) => encode8k(decode8k(f, from), to));
}

function decode8k(frame: Uint8Array, format: Format): Int16Array {
  if (format.phone === 'ulaw') return ulawToPcm16(frame);
  if (format.phone === 'alaw') return alawToPcm16(frame);
  const copy = new Uint8Array(frame.length); // not frame.slice(): on a Buffer that is a view of the whole file
  copy.set(frame);
  return new Int16Array(copy.buffer); // PCM16LE (all supported hosts are little-endian)
}

function encode8k(pcm: Int16Array, format: Format): Uint8Array {
  if (format.phone === 'ulaw') return pcm16ToUlaw(pcm);
  if (format.phone === 'alaw') return pcm16ToAlaw(pcm);
  return new Uint8Array(pcm.buffer, pcm.byteOffset, pcm.byteLength);
}
