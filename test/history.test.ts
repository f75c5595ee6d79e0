/**
 * ConversationHistory (call/history.ts), pure: what a link would replay, whether an answer is owed, and
 * the bounds (a long call or hostile model traffic cannot grow it without limit).
 */
import { describe, expect, it } from 'vitest';
import { ConversationHistory, MAX_HISTORY_ENTRIES, MAX_HISTORY_TEXT_CHARS } from '../src/call/history.js';

describe('ConversationHistory bounds', () => {
  it('keeps the most recent entries, in order, and cuts long texts', () => {
    const h = new ConversationHistory(8);
    for (let i = 0; i < MAX_HISTORY_ENTRIES + 50; i++) h.userText(`digits ${i}`);
    const items = h.items();
    expect(items).toHaveLength(MAX_HISTORY_ENTRIES);
    expect(items[0]).toEqual({ type: 'user_text', text: 'digits 50' });
    expect(items.at(-1)).toEqual({ type: 'user_text', text: `digits ${MAX_HISTORY_ENTRIES + 49}` });
    h.toolResult('c1', 'x'.repeat(MAX_HISTORY_TEXT_CHARS * 10), false);
    h.observe({ type: 'caller_transcript', itemId: 'it1', text: 'y'.repeat(MAX_HISTORY_TEXT_CHARS * 3) });
    const last = h.items().slice(-2);
    expect(last[0]).toMatchObject({ type: 'function_call_output', callId: 'c1' });
    expect((last[0] as { output: string }).output.length).toBe(MAX_HISTORY_TEXT_CHARS + 1);
    expect((last[1] as { text: string }).text.length).toBe(MAX_HISTORY_TEXT_CHARS + 1);
  });

  it('an entry dropped from the front no longer takes updates; a later item with its id starts afresh', () => {
    const h = new ConversationHistory(8);
    h.observe({ type: 'caller_transcript', itemId: 'old', text: 'first words' });
    for (let i = 0; i < MAX_HISTORY_ENTRIES; i++) h.userText(`t${i}`);
    h.observe({ type: 'caller_transcript', itemId: 'old', text: 'late transcript' });
    const items = h.items();
    expect(items).toHaveLength(MAX_HISTORY_ENTRIES);
    expect(items.at(-1)).toEqual({ type: 'user_text', text: 'late transcript' });
    expect(items.some((i) => 'text' in i && i.text === 'first words')).toBe(false);
  });
});

describe('ConversationHistory replay and owed answers', () => {
  it('owes an answer after a finished caller turn until a later response completes; a tool call is not an answer', () => {
    const h = new ConversationHistory(8);
    expect(h.owesAnswer()).toBe(false);
    h.observe({ type: 'speech_started', itemId: 'u1', audioStartMs: 0 });
    expect(h.owesAnswer()).toBe(false);
    h.observe({ type: 'speech_stopped', itemId: 'u1', audioEndMs: 900 });
    expect(h.owesAnswer()).toBe(true);
    h.observe({ type: 'response_started', responseId: 'r1' });
    h.observe({ type: 'tool_call', responseId: 'r1', callId: 'c1', name: 'f', arguments: '{}' });
    h.observe({ type: 'response_done', responseId: 'r1', status: 'completed', usage: undefined });
    expect(h.owesAnswer()).toBe(true);
    h.toolResult('c1', '{"ok":true}', true);
    h.observe({ type: 'response_started', responseId: 'r2' });
    expect(h.owesAnswer()).toBe(true);
    h.observe({ type: 'response_done', responseId: 'r2', status: 'completed', usage: undefined });
    expect(h.owesAnswer()).toBe(false);
    // A response in progress when the session is lost is still owed.
    h.responseRequested();
    h.observe({ type: 'response_started', responseId: 'r3' });
    h.sessionLost();
    expect(h.owesAnswer()).toBe(true);
  });

  it('a failed response leaves the turn unanswered; the caller speaking again clears it until they finish', () => {
    const h = new ConversationHistory(8);
    h.observe({ type: 'speech_stopped', itemId: 'u1', audioEndMs: 900 });
    h.observe({ type: 'response_started', responseId: 'r1' });
    h.observe({ type: 'response_done', responseId: 'r1', status: 'failed', usage: undefined });
    expect(h.owesAnswer()).toBe(true);
    h.observe({ type: 'speech_started', itemId: 'u2', audioStartMs: 1000 });
    expect(h.owesAnswer()).toBe(false);
  });

  it('assistant text is cut to the share of its audio the caller heard; unheard or untranscribed items are skipped', () => {
    const h = new ConversationHistory(8);
    const text = 'one two three four five six seven eight nine ten';
    h.observe({ type: 'audio', responseId: 'r1', itemId: 'a1', audio: Buffer.alloc(8000).toString('base64') }); // 1000 ms
    h.observe({ type: 'assistant_transcript', responseId: 'r1', itemId: 'a1', text });
    h.truncate('a1', 300);
    h.observe({ type: 'audio', responseId: 'r2', itemId: 'a2', audio: Buffer.alloc(800).toString('base64') });
    h.observe({ type: 'assistant_transcript', responseId: 'r2', itemId: 'a2', text: 'never heard' });
    h.truncate('a2', 0);
    h.observe({ type: 'audio', responseId: 'r3', itemId: 'a3', audio: Buffer.alloc(800).toString('base64') });
    h.observe({ type: 'speech_started', itemId: 'u1', audioStartMs: 0 });
    h.observe({ type: 'speech_stopped', itemId: 'u1', audioEndMs: 500 });
    expect(h.items()).toEqual([{ type: 'assistant_text', text: 'one two three…' }]);
  });

  it('an assistant item without its final transcript replays the words its deltas brought, cut to what was heard; the final text wins', () => {
    const h = new ConversationHistory(8);
    const say = (itemId: string, ms: number, delta: string) => {
      h.observe({ type: 'audio', responseId: 'r1', itemId, audio: Buffer.alloc(ms * 8).toString('base64') });
      h.observe({ type: 'assistant_transcript_delta', responseId: 'r1', itemId, delta });
    };
    say('a1', 250, 'one two ');
    say('a1', 250, 'three four ');
    expect(h.items()).toEqual([{ type: 'assistant_text', text: 'one two three four' }]);
    h.truncate('a1', 250); // half of the audio so far
    expect(h.items()).toEqual([{ type: 'assistant_text', text: 'one two…' }]);
    // The final transcript replaces the deltas; deltas after it change nothing.
    h.observe({ type: 'assistant_transcript', responseId: 'r1', itemId: 'a1', text: 'One, two, three, four.' });
    h.observe({ type: 'assistant_transcript_delta', responseId: 'r1', itemId: 'a1', delta: 'five ' });
    expect(h.items()).toEqual([{ type: 'assistant_text', text: 'One, two,…' }]);
    // Bounded: deltas stop adding once the text reaches MAX_HISTORY_TEXT_CHARS.
    const chunk = 'word '.repeat(1000);
    for (let i = 0; i < 20; i++) say('a2', 10, chunk);
    const long = h.items()[1]!;
    expect(long.type === 'assistant_text' && long.text.length).toBe(MAX_HISTORY_TEXT_CHARS + 1);
  });
});
