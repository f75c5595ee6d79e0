/**
 * Spoken prompts the relay plays itself (hold, apology, goodbye): loaded once
 * at start-up from a file and handed to the paced playout as µ-law bytes.
 *
 * Contract:
 * - Accepted: a WAV file (recognised by its RIFF/WAVE header, whatever its
 *   name; read by dsp/wav.ts, the CLI's reader) holding 8 kHz mono G.711 µ-law (tag 7, 8-bit) or 16-bit PCM (tag 1,
 *   converted to µ-law with the project's G.191 codec); or a headerless file
 *   named `.ulaw`, `.mulaw`, `.ul` or `.pcmu` taken as raw 8 kHz µ-law.
 *   WAVE_FORMAT_EXTENSIBLE is read through its sub-format.
 * - Anything else — another rate, stereo, A-law, float, a truncated or empty
 *   file, a compressed file under a raw name, longer than MAX_PROMPT_MS —
 *   comes back as `{ ok: false, error }` naming the file and what is wrong,
 *   with the sox command that fixes it where one does. Never throws.
 * - The committed prompts live in assets/prompts/ and are remade by
 *   scripts/make-prompts.sh.
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ULAW_BYTES_PER_MS } from '../dsp/format.js';
import { pcm16ToUlaw } from '../dsp/index.js';
import { isWavBytes, readWav, wavFormatProblems } from '../dsp/wav.js';

/** Longest prompt accepted (ms): a longer file is almost certainly the wrong file. */
export const MAX_PROMPT_MS = 60_000;

export type PromptName = 'hold' | 'apology' | 'goodbye' | 'repeat';

export interface Prompt {
  /** Raw G.711 µ-law, 8 kHz mono. */
  ulaw: Uint8Array;
  durationMs: number;
}

export type PromptResult = { ok: true; prompt: Prompt } | { ok: false; error: string };

const RAW_EXTENSIONS = new Set(['.ulaw', '.mulaw', '.ul', '.pcmu']);
const FIX = 'convert it with: sox IN -t wav -e u-law -b 8 -c 1 -r 8000 OUT.wav';

/** Path of a committed prompt: assets/prompts/NAME.ulaw under the nearest ancestor holding package.json. */
export function defaultPromptPath(name: PromptName): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return join(dir, 'assets', 'prompts', `${name}.ulaw`);
    const parent = dirname(dir);
    if (parent === dir) return join('assets', 'prompts', `${name}.ulaw`);
    dir = parent;
  }
}

/** Read and check one prompt file. */
export function loadPrompt(path: string): PromptResult {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err instanceof Error ? err.message : String(err));
    return { ok: false, error: `prompt ${path}: cannot read (${code})` };
  }
  const r = parsePrompt(bytes, basename(path));
  return r.ok ? r : { ok: false, error: `prompt ${path}: ${r.error}` };
}

/** Check the bytes of a prompt file named `fileName` (for its extension) and return its µ-law audio. */
export function parsePrompt(bytes: Uint8Array, fileName: string): PromptResult {
  if (isWavBytes(bytes)) return wav(bytes);
  if (bytes.length >= 4 && ascii(bytes, 0) === 'RIFF') return { ok: false, error: 'a RIFF file that is not WAVE' };
  const ext = extname(fileName).toLowerCase();
  if (!RAW_EXTENSIONS.has(ext)) {
    return {
      ok: false,
      error: `unknown prompt type '${ext || fileName}': use a WAV (8 kHz mono µ-law or 16-bit PCM) or raw µ-law named .ulaw; ${FIX}`,
    };
  }
  const container = sniffContainer(bytes);
  if (container) return { ok: false, error: `named ${ext} but holds ${container}, not raw µ-law; ${FIX}` };
  return checked(bytes);
}

function checked(ulaw: Uint8Array): PromptResult {
  if (ulaw.length === 0) return { ok: false, error: 'no audio (empty)' };
  const durationMs = ulaw.length / ULAW_BYTES_PER_MS;
  if (durationMs > MAX_PROMPT_MS) return { ok: false, error: `${Math.round(durationMs)} ms long; a prompt may last at most ${MAX_PROMPT_MS} ms` };
  return { ok: true, prompt: { ulaw, durationMs } };
}

function ascii(b: Uint8Array, at: number): string {
  return String.fromCharCode(b[at]!, b[at + 1]!, b[at + 2]!, b[at + 3]!);
}

/** Common compressed or container formats, by magic number. */
function sniffContainer(b: Uint8Array): string | undefined {
  if (b.length < 4) return undefined;
  const head = ascii(b, 0);
  if (head === 'OggS') return 'an Ogg stream';
  if (head === 'fLaC') return 'FLAC';
  // Only tagged MP3: a bare MPEG frame sync (0xFF 0xEx) is also a plausible start of raw µ-law.
  if (head.startsWith('ID3')) return 'MP3';
  if (head === 'FORM') return 'AIFF';
  if (head === '.snd') return 'a Sun .au file';
  return undefined;
}

/** Prompts accept these WAV encodings, 8 kHz mono. */
const PROMPT_WAV = { encodings: [{ tag: 7, bits: 8 }, { tag: 1, bits: 16 }], rateHz: 8000 };

function wav(bytes: Uint8Array): PromptResult {
  const r = readWav(bytes);
  if (!r.ok) return r;
  const problems = wavFormatProblems(r.fmt, PROMPT_WAV);
  if (problems.length) return { ok: false, error: `WAV is ${problems.join('; ')}; ${FIX}` };
  const data = r.data;
  if (r.fmt.tag === 7) return checked(data);
  if (data.length % 2 !== 0) return { ok: false, error: `WAV PCM data ends mid-sample (${data.length} bytes)` };
  const samples = new Int16Array(data.length / 2);
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  for (let i = 0; i < samples.length; i++) samples[i] = dv.getInt16(2 * i, true);
  if (samples.length === 0) return { ok: false, error: 'no audio (empty)' };
  return checked(pcm16ToUlaw(samples));
}
