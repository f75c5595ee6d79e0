/** The back-off rule of call/dial.ts (pure); dialling itself is tested on the wire in model-link.test.ts. */
import { describe, expect, it } from 'vitest';
import { backoffDelayMs } from '../src/call/dial.js';

describe('backoffDelayMs', () => {
  it('first attempt at once, then full jitter under a doubling, capped bound', () => {
    expect(backoffDelayMs(1, 1000, 8000, () => 0.999)).toBe(0);
    const hi = () => 0.999999;
    expect([2, 3, 4, 5, 6, 7].map((a) => backoffDelayMs(a, 1000, 8000, hi))).toEqual([999, 1999, 3999, 7999, 7999, 7999]);
    expect(backoffDelayMs(5, 1000, 8000, () => 0)).toBe(0);
    expect(backoffDelayMs(3, 1000, 8000, () => 0.5)).toBe(1000);
  });
});
