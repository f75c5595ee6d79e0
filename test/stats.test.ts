/** The per-call latency histogram (src/call/stats.ts): log-linear buckets, percentiles within one bucket. */
import { describe, expect, it } from 'vitest';
import { LatencyHistogram, bucketOf } from '../src/call/stats.js';

describe('LatencyHistogram', () => {
  it('gives percentiles within one bucket of the exact value', () => {
    const h = new LatencyHistogram();
    const xs: number[] = [];
    for (let i = 1; i <= 10_000; i++) xs.push((i % 997) * 0.013 + 0.002);
    for (const x of xs) h.record(x);
    xs.sort((a, b) => a - b);
    for (const q of [0.5, 0.9, 0.99]) {
      const exact = xs[Math.ceil(q * xs.length) - 1]!;
      expect(h.percentile(q)).toBeGreaterThanOrEqual(exact);
      expect(h.percentile(q)).toBeLessThanOrEqual(exact * 1.13 + 0.001);
    }
    expect(h.count).toBe(10_000);
    expect(h.percentile(1)).toBeCloseTo(Math.max(...xs), 9);
  });

  it('puts each sample in the log-linear bucket: 8 per power of two from 1 µs, one overflow bucket', () => {
    // Reference: octave = floor(log2(us)), sub = floor((us - 2^octave) / 2^octave * 8), bucket = 1 + octave * 8 + sub.
    const ref = (us: number): number => {
      if (us < 1) return 0;
      const octave = Math.floor(Math.log2(us));
      if (octave >= 27) return 27 * 8;
      return octave * 8 + Math.min(7, Math.floor(((us - 2 ** octave) / 2 ** octave) * 8)) + 1;
    };
    expect(bucketOf(0.5)).toBe(0);
    expect(bucketOf(1)).toBe(1);
    expect(bucketOf(2)).toBe(9);
    expect(bucketOf(3)).toBe(13); // octave 1, half way: sub 4
    expect(bucketOf(2 ** 26 * 1.99)).toBe(26 * 8 + 8);
    expect(bucketOf(2 ** 27)).toBe(27 * 8);
    expect(bucketOf(1e12)).toBe(27 * 8);
    for (let us = 1; us < 2 ** 27; us = us * 1.37 + 0.29) expect(bucketOf(us)).toBe(ref(us));
  });

  it('ignores NaN and negative samples and reports NaN when empty', () => {
    const h = new LatencyHistogram();
    expect(h.percentile(0.5)).toBeNaN();
    h.record(NaN);
    h.record(-1);
    expect(h.count).toBe(0);
  });
});
