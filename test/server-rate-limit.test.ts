/** The per-IP token bucket, on a manual clock. */
import { describe, expect, it } from 'vitest';
import { RateLimiter } from '../src/server/rate-limit.js';

describe('RateLimiter', () => {
  it('allows a burst, then refills at the configured rate, per key', () => {
    let now = 0;
    const rl = new RateLimiter(3, 2, () => now);
    expect([rl.allow('a'), rl.allow('a'), rl.allow('a'), rl.allow('a')]).toEqual([true, true, true, false]);
    expect(rl.allow('b')).toBe(true); // other keys have their own bucket
    now += 499; // 0.998 tokens
    expect(rl.allow('a')).toBe(false);
    now += 2; // 1.002 tokens since the last refill point
    expect(rl.allow('a')).toBe(true);
    expect(rl.allow('a')).toBe(false);
    now += 60_000; // refill caps at the burst
    expect([rl.allow('a'), rl.allow('a'), rl.allow('a'), rl.allow('a')]).toEqual([true, true, true, false]);
  });

  it('forgets idle keys so memory stays bounded', () => {
    let now = 0;
    const rl = new RateLimiter(2, 1, () => now);
    for (let i = 0; i < 1000; i++) rl.allow(`10.0.${i >> 8}.${i & 255}`);
    now += 61_000;
    rl.allow('fresh');
    expect((rl as unknown as { buckets: Map<string, unknown> }).buckets.size).toBe(1);
  });
});
