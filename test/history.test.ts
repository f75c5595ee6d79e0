/** The model link's conversation history is bounded: a long call or hostile model traffic cannot grow it without limit. */
import { describe, expect, it } from 'vitest';
import { ConversationHistory, MAX_HISTORY_ENTRIES, MAX_HISTORY_TEXT_CHARS } from '../src/call/model-link.js';

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
