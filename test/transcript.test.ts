/** Transcript lines cut to what the caller heard (src/call/transcript.ts). */
import { describe, expect, it } from 'vitest';
import { cutWords } from '../src/call/transcript.js';

describe('cutWords', () => {
  it('keeps the heard share of the words', () => {
    expect(cutWords('one two three four', 0.5)).toBe('one two…');
    expect(cutWords('one two three four', 1)).toBe('one two three four');
    expect(cutWords('one two', 0)).toBe('…');
  });
});
