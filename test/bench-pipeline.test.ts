/**
 * The pipeline bench's own-share arithmetic (bench/suites/pipeline.ts):
 * the LLM stand-in's schedule up to the first speakable text, Deepgram's
 * wait from its session record, and total − waits.
 */
import { describe, expect, it } from 'vitest';
import { deepgramWaitMs, llmFirstSpeakableWrite, llmPieces, llmWaitMs, ownShareMs, ttsWaitMs } from '../bench/suites/pipeline.js';

describe('the LLM wait', () => {
  it('splits text as the LLM stand-in streams it: a word with its space, or punctuation', () => {
    expect(llmPieces('You are covered. Anything else?')).toEqual(['You', ' are', ' covered', '.', ' Anything', ' else', '?']);
  });

  it('is the write after which the first sentence can be cut (its following space), timed by the stand-in', () => {
    // "You are covered." is cut once " Anything" (piece 4, write 4) arrives.
    expect(llmFirstSpeakableWrite('You are covered. Anything else?')).toBe(4);
    const sentAtMs = [1400, 1411, 1422, 1433, 1445, 1456, 1467, 1478, 1489];
    expect(llmWaitMs({ atMs: 1000, sentAtMs, answer: { text: 'You are covered. Anything else?', calls: [] } })).toBe(445);
  });

  it('waits for the stream\'s last write when nothing can be cut earlier', () => {
    expect(llmFirstSpeakableWrite('Sure, can I get the member ID?')).toBeUndefined();
    expect(llmWaitMs({ atMs: 1000, sentAtMs: [1400, 1410, 1500], answer: { text: 'Sure, can I get the member ID?', calls: [] } })).toBe(500);
    expect(llmWaitMs({ atMs: 1000, sentAtMs: [], answer: undefined })).toBeUndefined();
  });
});

describe('the TTS wait', () => {
  it('runs from the first text that is not blank to the first audio frame', () => {
    const messages = [{ text: ' ', at: 5 }, { text: 'Hello there. ', at: 10 }, { text: 'More.', at: 30 }];
    expect(ttsWaitMs({ messages, generations: [{ text: 'Hello there. ', bytes: 8000, triggeredAt: 12, firstFrameAt: 87 }] })).toBe(77);
    expect(ttsWaitMs({ messages, generations: [{ text: 'x', bytes: 0, triggeredAt: 12 }] })).toBeUndefined();
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
