/**
 * The pipeline bench's own-share arithmetic (bench/suites/pipeline.ts):
 * the LLM stand-in's schedule up to the first speakable text, Deepgram's
 * wait from its session record, and total − waits.
 */
import { describe, expect, it } from 'vitest';
import { deepgramWaitMs, llmFirstSpeakableMs, llmPieces, ownShareMs } from '../bench/suites/pipeline.js';

describe('llmFirstSpeakableMs', () => {
  it('splits text as the LLM stand-in streams it: a word with its space, or punctuation', () => {
    expect(llmPieces('You are covered. Anything else?')).toEqual(['You', ' are', ' covered', '.', ' Anything', ' else', '?']);
  });

  it('is the chunk after which the first sentence can be cut (its following space)', () => {
    // "You are covered." is cut once " Anything" (piece 4) arrives: 4 chunks after the first.
    expect(llmFirstSpeakableMs('You are covered. Anything else?', 400, 10)).toBe(440);
  });

  it('waits for the end of the stream (finish and usage chunks) when nothing can be cut earlier', () => {
    // 9 pieces, then finish and usage: the last write is 10 chunks after the first.
    expect(llmFirstSpeakableMs('Sure, can I get the member ID?', 400, 10)).toBe(500);
  });
});

describe('deepgramWaitMs', () => {
  const session = {
    texts: [
      { at: 1000, message: { type: 'KeepAlive' } },
      { at: 2000, message: { type: 'Finalize' } },
      { at: 5000, message: { type: 'Finalize' } },
    ],
    sent: [
      { at: 1990, message: { type: 'Results', is_final: true } },
      { at: 2100, message: { type: 'Results', is_final: false } },
      { at: 2150, message: { type: 'Results', is_final: true, speech_final: true } },
      { at: 5001, message: { type: 'Results', is_final: true, from_finalize: true } },
    ],
  };

  it('runs from the Finalize nearest speech_stopped to the next final the stand-in sent', () => {
    expect(deepgramWaitMs(session, 2003, 400, 60)).toBe(150);
    expect(deepgramWaitMs(session, 4990, 400, 60)).toBe(1);
  });

  it('is at most the stage it falls in', () => {
    expect(deepgramWaitMs(session, 2003, 120, 60)).toBe(120);
  });

  it('is 0 when no Finalize is near the turn (closed on an endpoint final already in)', () => {
    expect(deepgramWaitMs(session, 3500, 400, 60)).toBe(0);
  });
});

describe('ownShareMs', () => {
  it('is the total less every vendor wait, never below 0', () => {
    expect(ownShareMs(744, [150, 490, 75])).toBe(29);
    expect(ownShareMs(700, [150, 490, 75])).toBe(0);
  });
});
