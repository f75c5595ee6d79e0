/** Transcript lines cut to what the caller heard (src/call/transcript.ts). */
import { describe, expect, it } from 'vitest';
import { cutTimed, cutWords } from '../src/call/transcript.js';

describe('cutWords', () => {
  it('keeps the heard share of the words', () => {
    expect(cutWords('one two three four', 0.5)).toBe('one two…');
    expect(cutWords('one two three four', 1)).toBe('one two three four');
    expect(cutWords('one two', 0)).toBe('…');
  });
});

describe('cutTimed', () => {
  // Pieces as a provider streams them (leading spaces kept), timed from the start of the item's audio.
  const words = [
    { text: 'Your', startMs: 0, endMs: 200 },
    { text: ' plan', startMs: 200, endMs: 500 },
    { text: ' is', startMs: 500, endMs: 600 },
    { text: ' active', startMs: 600, endMs: 1400 },
  ];
  it('keeps exactly the pieces that ended within what was heard, whatever their share of the text', () => {
    expect(cutTimed(words, 599)).toBe('Your plan…');
    expect(cutTimed(words, 600)).toBe('Your plan is…');
    expect(cutTimed(words, 1399)).toBe('Your plan is…');
  });
  it('all heard: the whole text without an ellipsis; nothing heard: an ellipsis', () => {
    expect(cutTimed(words, 1400)).toBe('Your plan is active');
    expect(cutTimed(words, 5000)).toBe('Your plan is active');
    expect(cutTimed(words, 100)).toBe('…');
  });
});
