/**
 * The shared audio vocabulary (src/dsp/format.ts): the figures every module
 * uses for frames, bytes per ms, base64 lengths and µ-law energy.
 */
import { describe, expect, it } from 'vitest';
import { FRAME_BYTES, FRAME_MS, ULAW_SILENCE, base64Bytes, bytesPerMs, dbfsToMeanSquare, ulawMeanSquare } from '../src/dsp/format.js';
import { pcm16ToUlaw } from '../src/dsp/index.js';

describe('dsp/format', () => {
  it('a Twilio frame is 20 ms of µ-law 8 kHz: 160 bytes; the model side is 48 bytes per ms', () => {
    expect(FRAME_MS).toBe(20);
    expect(FRAME_BYTES).toBe(160);
    expect(bytesPerMs('ulaw8k')).toBe(8);
    expect(bytesPerMs('pcm24k')).toBe(48);
  });

  it('base64Bytes is the decoded length, for every padding', () => {
    for (let n = 0; n < 40; n++) {
      const b64 = Buffer.alloc(n, 7).toString('base64');
      expect(base64Bytes(b64)).toBe(n);
    }
  });

  it('ulawMeanSquare: silence is 0, a full-scale square wave is 1 (to within µ-law), a range is averaged', () => {
    expect(ulawMeanSquare(new Uint8Array(160).fill(ULAW_SILENCE))).toBe(0);
    expect(ulawMeanSquare(new Uint8Array(0))).toBe(0);
    const loud = pcm16ToUlaw(Int16Array.from({ length: 160 }, (_, i) => (i % 2 ? 32767 : -32768)));
    expect(ulawMeanSquare(loud)).toBeGreaterThan(0.95);
    expect(ulawMeanSquare(loud)).toBeLessThanOrEqual(1);
    const half = new Uint8Array(160).fill(ULAW_SILENCE);
    half.set(loud.subarray(0, 80));
    expect(ulawMeanSquare(half)).toBeCloseTo(ulawMeanSquare(loud) / 2, 12);
    expect(ulawMeanSquare(half, 80, 160)).toBe(0);
  });

  it('dbfsToMeanSquare: 0 dBFS is full scale, −20 dBFS a hundredth', () => {
    expect(dbfsToMeanSquare(0)).toBe(1);
    expect(dbfsToMeanSquare(-20)).toBeCloseTo(0.01, 15);
  });
});
