/**
 * The one WAV reader (recorded prompts, the transcode CLI) and the header
 * the CLI writes.
 *
 * Contract:
 * - The RIFF walk is written once (`walkWav`) and driven two ways with the
 *   same answers and the same error texts: `readWav` over bytes in memory
 *   (prompts), `readWavHeader` over an async byte source (the CLI streams
 *   recordings of any length and never holds the audio).
 * - The walk checks the RIFF/WAVE header, reads the `fmt ` chunk
 *   (WAVE_FORMAT_EXTENSIBLE through its sub-format), skips every other chunk
 *   (chunks are padded to even length) and stops at the `data` chunk with
 *   its declared length; 0xFFFFFFFF (a streaming encoder that could not seek
 *   back) means the data runs to the end.
 * - It does not judge the audio: callers check rate, channels and encoding
 *   with `wavFormatProblems`, whose texts they share.
 * - Bad input comes back as `{ ok: false, error }`; nothing here throws.
 */

/** The `fmt ` chunk, as far as callbridge reads it. */
export interface WavFmt {
  /** WAVE_FORMAT_PCM 1, IEEE float 3, _ALAW 6, _MULAW 7 (an EXTENSIBLE file's sub-format). */
  tag: number;
  channels: number;
  rateHz: number;
  bits: number;
}

/** Where the audio starts: `dataBytes` undefined = up to the end of the input. */
export type WavHeader = { ok: true; fmt: WavFmt; dataBytes: number | undefined } | { ok: false; error: string };

/** What the walk needs next from its source: the next `take` bytes (fewer = the input ended), or to pass over `skip` bytes. */
export type WavNeed = { take: number } | { skip: number };

export interface WavWalkOptions {
  /** A longer fmt chunk is refused (`bad WAV`) before it is read; default: no limit. */
  maxFmtBytes?: number;
}

const TAG_NAMES: Record<number, string> = { 1: 'PCM', 3: 'float', 6: 'A-law', 7: 'µ-law' };

/** The text callers print for a format tag. */
export function wavTagName(tag: number): string {
  return TAG_NAMES[tag] ?? `format tag ${tag}`;
}

/** The error for a data chunk longer than what is there. */
export function truncatedDataError(declared: number, present: number): string {
  return `truncated WAV: data chunk declares ${declared} bytes, ${present} present`;
}

/**
 * The RIFF walk, as a step function: it yields what it needs next and is
 * given the bytes taken (anything, ignored, after a skip); it returns the
 * header once it reaches the data chunk, or what is wrong.
 */
export function* walkWav(options: WavWalkOptions = {}): Generator<WavNeed, WavHeader, Uint8Array> {
  const maxFmtBytes = options.maxFmtBytes ?? Infinity;
  const riff = yield { take: 12 };
  if (riff.length < 12 || ascii(riff, 0) !== 'RIFF' || ascii(riff, 8) !== 'WAVE') return { ok: false, error: 'not a WAV file (no RIFF/WAVE header)' };
  let fmt: WavFmt | undefined;
  for (;;) {
    const head = yield { take: 8 };
    if (head.length < 8) return { ok: false, error: fmt ? 'truncated WAV: no data chunk' : 'truncated WAV: no fmt chunk' };
    const id = ascii(head, 0);
    const size = u32(head, 4);
    if (id === 'fmt ') {
      if (size > maxFmtBytes) return { ok: false, error: `bad WAV: fmt chunk of ${size} bytes` };
      const body = yield { take: size + (size & 1) };
      if (size < 16 || body.length < size) return { ok: false, error: 'truncated WAV: short fmt chunk' };
      let tag = u16(body, 0);
      if (tag === 0xfffe && size >= 40) tag = u16(body, 24); // WAVE_FORMAT_EXTENSIBLE sub-format
      fmt = { tag, channels: u16(body, 2), rateHz: u32(body, 4), bits: u16(body, 14) };
    } else if (id === 'data') {
      if (!fmt) return { ok: false, error: 'bad WAV: data chunk before fmt chunk' };
      return { ok: true, fmt, dataBytes: size === 0xffffffff ? undefined : size };
    } else {
      yield { skip: size + (size & 1) }; // a short skip ends in 'truncated' at the next chunk head
    }
  }
}

/** A whole WAV file in memory: its format and a view of its audio (checked to be all there). */
export function readWav(bytes: Uint8Array, options?: WavWalkOptions): { ok: true; fmt: WavFmt; data: Uint8Array } | { ok: false; error: string } {
  const walk = walkWav(options);
  let at = 0;
  let step = walk.next();
  while (!step.done) {
    const need = step.value;
    const n = Math.min('take' in need ? need.take : need.skip, bytes.length - at);
    const part = bytes.subarray(at, at + n);
    at += n;
    step = walk.next(part);
  }
  const header = step.value;
  if (!header.ok) return header;
  const present = bytes.length - at;
  const length = header.dataBytes ?? present;
  if (length > present) return { ok: false, error: truncatedDataError(length, present) };
  return { ok: true, fmt: header.fmt, data: bytes.subarray(at, at + length) };
}

/** An async byte source: `take` gives up to n bytes (fewer only at the end), `skip` passes over up to n. */
export interface WavSource {
  take(n: number): Promise<Uint8Array>;
  skip(n: number): Promise<number>;
}

const NOTHING = new Uint8Array(0);

/** The header of a WAV file read from a stream, leaving the source at the first byte of audio. */
export async function readWavHeader(source: WavSource, options?: WavWalkOptions): Promise<WavHeader> {
  const walk = walkWav(options);
  let step = walk.next();
  while (!step.done) {
    const need = step.value;
    if ('take' in need) step = walk.next(await source.take(need.take));
    else {
      await source.skip(need.skip);
      step = walk.next(NOTHING);
    }
  }
  return step.value;
}

/**
 * What is wrong with `fmt` for a caller that accepts `encodings` at `rateHz`,
 * mono: one text per problem, none when it fits.
 */
export function wavFormatProblems(fmt: WavFmt, want: { encodings: { tag: number; bits: number }[]; rateHz: number }): string[] {
  const problems: string[] = [];
  if (!want.encodings.some((e) => e.tag === fmt.tag && e.bits === fmt.bits)) {
    problems.push(`${wavTagName(fmt.tag)} ${fmt.bits}-bit, not ${want.encodings.map((e) => `${wavTagName(e.tag)} ${e.bits}-bit`).join(' or ')}`);
  }
  if (fmt.rateHz !== want.rateHz) problems.push(`${fmt.rateHz} Hz, not ${want.rateHz} Hz`);
  if (fmt.channels !== 1) problems.push(`${fmt.channels} channels, not mono`);
  return problems;
}

/**
 * The header of a mono WAV file holding `audioBytes` of audio (the audio and
 * its pad byte, when odd, follow it); G.711 gets the fmt extension size and
 * fact chunk non-PCM WAVs carry.
 */
export function wavFileHeader(format: { wavTag: number; rateHz: number; bytesPerSample: 1 | 2 }, audioBytes: number): Uint8Array {
  const pcm = format.wavTag === 1;
  const fmtSize = pcm ? 16 : 18;
  const factSize = pcm ? 0 : 12;
  const out = new Uint8Array(12 + 8 + fmtSize + factSize + 8);
  const view = new DataView(out.buffer);
  const put = (at: number, s: string): void => {
    for (let i = 0; i < 4; i++) out[at + i] = s.charCodeAt(i);
  };
  put(0, 'RIFF');
  view.setUint32(4, out.length + audioBytes + (audioBytes & 1) - 8, true);
  put(8, 'WAVE');
  put(12, 'fmt ');
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
    put(at + 2, 'fact');
    view.setUint32(at + 6, 4, true);
    view.setUint32(at + 10, audioBytes / format.bytesPerSample, true);
    at += 14;
  }
  put(at, 'data');
  view.setUint32(at + 4, audioBytes, true);
  return out;
}

/** True when `bytes` start with a RIFF/WAVE header. */
export function isWavBytes(bytes: Uint8Array): boolean {
  return bytes.length >= 12 && ascii(bytes, 0) === 'RIFF' && ascii(bytes, 8) === 'WAVE';
}

function ascii(b: Uint8Array, at: number): string {
  return String.fromCharCode(b[at]!, b[at + 1]!, b[at + 2]!, b[at + 3]!);
}

function u16(b: Uint8Array, at: number): number {
  return b[at]! | (b[at + 1]! << 8);
}

function u32(b: Uint8Array, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
}
