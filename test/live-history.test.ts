import { describe, expect, it } from 'vitest';
import type { ConversationItem } from '../src/call/voice-model.js';
import { fitHistory, messageText, messageTokens } from '../src/live/history.js';

function longCall(turns: number): ConversationItem[] {
  const items: ConversationItem[] = [];
  for (let i = 0; i < turns; i++) {
    items.push({ type: 'user_text', text: `caller turn ${i} `.padEnd(200 + (i % 7) * 40, 'x') });
    items.push({ type: 'assistant_text', text: `assistant turn ${i} `.padEnd(300, 'y') });
    if (i % 10 === 0) {
      items.push({ type: 'function_call', callId: `c${i}`, name: 'lookup', arguments: `{"n":${i}}` });
      items.push({ type: 'function_call_output', callId: `c${i}`, output: `{"ok":${i}}` });
    }
  }
  return items;
}

describe('fitHistory', () => {
  it('leaves a short history unchanged, tool calls folded into one developer message', () => {
    const out = fitHistory([
      { type: 'user_text', text: 'hi' },
      { type: 'function_call', callId: 'a', name: 'check', arguments: '{"x":1}' },
      { type: 'function_call_output', callId: 'a', output: 'yes' },
      { type: 'assistant_text', text: 'hello' },
    ]);
    expect(out).toEqual([
      { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'hi' }] },
      { type: 'message', role: 'developer', content: [{ type: 'input_text', text: 'Tool check({"x":1}) returned: yes' }] },
      { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'hello' }] },
    ]);
  });

  it('fits a long call (300+ items) within 128 messages and 8,192 tokens, most recent turns kept in order, with the summary first', () => {
    const items = longCall(170);
    expect(items.length).toBeGreaterThan(300);
    const out = fitHistory(items);
    expect(out.length).toBeLessThanOrEqual(128);
    const tokens = out.reduce((n, m) => n + messageTokens(messageText(m)), 0);
    expect(tokens).toBeLessThanOrEqual(8192);
    expect(tokens).toBeGreaterThan(8192 - 200); // filled, not trimmed to nothing
    const first = messageText(out[0]!);
    expect(out[0]!.role).toBe('developer');
    expect(first).toMatch(/^Earlier in this call \(not shown\): \d+ messages — /);
    const total = 170 * 2 + 17;
    const shown = Number(/: (\d+) messages/.exec(first)![1]);
    expect(shown + out.length - 1).toBe(total);
    // The last message is the last assistant turn; kept turns are consecutive and in order.
    expect(messageText(out.at(-1)!)).toMatch(/^assistant turn 169 /);
    const turnNums = out.slice(1).filter((m) => m.role === 'user').map((m) => Number(/caller turn (\d+)/.exec(messageText(m))![1]));
    for (let i = 1; i < turnNums.length; i++) expect(turnNums[i]).toBe(turnNums[i - 1]! + 1);
    expect(out.some((m) => m.role === 'developer' && messageText(m).startsWith('Tool lookup({"n":160}) returned: {"ok":160}'))).toBe(true);
  });

  it('keeps at most 128 messages when many short ones fit the tokens', () => {
    const items: ConversationItem[] = Array.from({ length: 400 }, (_, i) => ({ type: 'user_text' as const, text: `m${i}` }));
    const out = fitHistory(items);
    expect(out).toHaveLength(128);
    expect(messageText(out[0]!)).toContain('273 messages');
    expect(messageText(out[1]!)).toBe('m273');
    expect(messageText(out.at(-1)!)).toBe('m399');
  });

  it('a single huge message keeps its end', () => {
    const out = fitHistory([{ type: 'user_text', text: 'a'.repeat(50_000) + 'END' }]);
    expect(out).toHaveLength(1);
    expect(messageText(out[0]!).endsWith('END')).toBe(true);
    expect(messageTokens(messageText(out[0]!))).toBeLessThanOrEqual(8192);
  });
});
