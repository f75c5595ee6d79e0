/**
 * The audio vocabulary every module shares: frame length, bytes per ms, the
 * energy of µ-law audio and the decoded length of base64, defined once.
 *
 * - Phone side (Twilio Media Streams): G.711 µ-law, 8 kHz mono, one byte per
 *   sample, in FRAME_MS frames of FRAME_BYTES.
 * - Model side: PCM16LE 24 kHz mono ('pcm24k', 48 bytes per ms), PCM16LE 16 kHz
 *   mono ('pcm16k', 32 bytes per ms) or the phone's own µ-law ('ulaw8k', 8 bytes per ms).
 * Pure functions and constants: no wasm, no I/O, no allocation per call.
 */

/** One Twilio media frame, ms. */
export const FRAME_MS = 20;
/** µ-law 8 kHz: one byte per sample, 8 samples per ms. */
export const ULAW_BYTES_PER_MS = 8;
/** One Twilio media frame of µ-law, bytes. */
export const FRAME_BYTES = FRAME_MS * ULAW_BYTES_PER_MS;
/** PCM16LE 24 kHz: two bytes per sample, 24 samples per ms. */
export const PCM24K_BYTES_PER_MS = 48;
/** PCM16LE 16 kHz: two bytes per sample, 16 samples per ms. */
export const PCM16K_BYTES_PER_MS = 32;
/** The µ-law code of silence (zero amplitude). */
export const ULAW_SILENCE = 0xff;

/** Audio formats a model speaks (call/voice-model.ts ModelAudioFormat) and the transcoder serves. */
export type AudioFormat = 'pcm24k' | 'pcm16k' | 'ulaw8k';

/** Bytes of audio per ms in each format (µ-law 8 kHz; PCM16 16 or 24 kHz). */
export function bytesPerMs(format: AudioFormat): number {
  switch (format) {
    case 'ulaw8k': return ULAW_BYTES_PER_MS;
    case 'pcm16k': return PCM16K_BYTES_PER_MS;
    case 'pcm24k': return PCM24K_BYTES_PER_MS;
  }
}

/** Decoded length of a base64 string (bytes), without decoding it. */
export function base64Bytes(b64: string): number {
  const n = b64.length;
  if (n === 0) return 0;
  const pad = b64.endsWith('==') ? 2 : b64.endsWith('=') ? 1 : 0;
  return Math.floor((n * 3) / 4) - pad;
}

/** Mean square (full scale = 1) of each µ-law code's sample: energy without decoding. */
const ULAW_SQUARE = (() => {
  const t = new Float64Array(256);
  for (let code = 0; code < 256; code++) {
    const u = ~code & 0xff;
    const exponent = (u >> 4) & 0x07;
    const mantissa = u & 0x0f;
    const magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    const s = magnitude / 32768;
    t[code] = s * s;
  }
  return t;
})();

/** Energy of µ-law bytes [start, end), as a mean square (full scale = 1); 0 for none. */
export function ulawMeanSquare(ulaw: Uint8Array, start = 0, end = ulaw.length): number {
  let sum = 0;
  for (let i = start; i < end; i++) sum += ULAW_SQUARE[ulaw[i]!]!;
  return end > start ? sum / (end - start) : 0;
}

/** A level in dBFS as a mean square (full scale = 1), to compare with ulawMeanSquare. */
export function dbfsToMeanSquare(dbfs: number): number {
  return 10 ** (dbfs / 10);
}
