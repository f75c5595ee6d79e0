/**
 * A call's earlier conversation fitted to what GPT-Live takes at start
 * (`session.start` `input`): text-only messages, at most 128 of them and
 * 8,192 tokens in all. Pure.
 *
 * Contract:
 * - user_text → user message, assistant_text → assistant message; a
 *   function_call and its function_call_output fold into one developer
 *   message "Tool <name>(<args>) returned: <output>" at the call's place (a
 *   call without an output says "(no result)"; an output without its call is
 *   "Tool result: <output>"). Empty texts are left out.
 * - Tokens are counted conservatively: ceil(chars / 3) + 4 per message.
 * - When everything fits, the messages are returned as they are. Otherwise the
 *   MOST RECENT messages that fit are kept, in order, after one developer
 *   message "Earlier in this call (not shown): N messages — <up to
 *   SUMMARY_CHARS of the left-out text, most recent first>". That line counts
 *   toward both limits.
 * - One message longer than MAX_MESSAGE_CHARS keeps only its end (what was
 *   said last), so a single huge text cannot empty the history.
 */
import type { ConversationItem } from '../call/voice-model.js';
import { initialMessage, type InitialMessage } from './protocol.js';

export interface HistoryLimits {
  maxMessages: number;
  maxTokens: number;
}

export const LIVE_HISTORY_LIMITS: HistoryLimits = { maxMessages: 128, maxTokens: 8192 };
/** Characters of left-out text quoted in the summary line. */
export const SUMMARY_CHARS = 300;
/** Longest text one history message keeps (~2,000 tokens). */
export const MAX_MESSAGE_CHARS = 6000;

type Role = 'developer' | 'user' | 'assistant';
interface Msg {
  role: Role;
  text: string;
}

/** Conservative token count of one message: ceil(chars/3) + 4. */
export function messageTokens(text: string): number {
  return Math.ceil(text.length / 3) + 4;
}

export function messageText(m: InitialMessage): string {
  return m.content[0].text;
}

function keepEnd(text: string): string {
  return text.length <= MAX_MESSAGE_CHARS ? text : `…${text.slice(text.length - (MAX_MESSAGE_CHARS - 1))}`;
}

/** ConversationItems → messages, tool calls folded with their outputs. */
export function historyMessages(items: readonly ConversationItem[]): Msg[] {
  const outputs = new Map<string, string>();
  const calls = new Set<string>();
  for (const it of items) {
    if (it.type === 'function_call_output') outputs.set(it.callId, it.output);
    if (it.type === 'function_call') calls.add(it.callId);
  }
  const out: Msg[] = [];
  const push = (role: Role, text: string): void => {
    if (text.trim().length > 0) out.push({ role, text: keepEnd(text) });
  };
  for (const it of items) {
    switch (it.type) {
      case 'user_text':
        push('user', it.text);
        break;
      case 'assistant_text':
        push('assistant', it.text);
        break;
      case 'function_call':
        push('developer', `Tool ${it.name}(${it.arguments}) returned: ${outputs.get(it.callId) ?? '(no result)'}`);
        break;
      case 'function_call_output':
        if (!calls.has(it.callId)) push('developer', `Tool result: ${it.output}`);
        break;
      default: {
        const never: never = it;
        void never;
      }
    }
  }
  return out;
}

function summaryLine(left: readonly Msg[]): string {
  let quoted = '';
  for (let i = left.length - 1; i >= 0 && quoted.length < SUMMARY_CHARS; i--) {
    const m = left[i]!;
    quoted += `${quoted ? ' | ' : ''}${m.role}: ${m.text.replace(/\s+/g, ' ')}`;
  }
  if (quoted.length > SUMMARY_CHARS) quoted = `${quoted.slice(0, SUMMARY_CHARS - 1)}…`;
  return `Earlier in this call (not shown): ${left.length} messages — ${quoted}`;
}

/** The start history for Live: the conversation fitted to `limits` (see the file comment). */
export function fitHistory(items: readonly ConversationItem[], limits: HistoryLimits = LIVE_HISTORY_LIMITS): InitialMessage[] {
  const msgs = historyMessages(items);
  const total = msgs.reduce((n, m) => n + messageTokens(m.text), 0);
  if (msgs.length <= limits.maxMessages && total <= limits.maxTokens) return msgs.map((m) => initialMessage(m.role, m.text));

  // Room for the summary line at its longest: the prefix with the largest count, the quote and its ellipsis.
  const reserve = messageTokens(`Earlier in this call (not shown): ${msgs.length} messages — `) + Math.ceil((SUMMARY_CHARS + 1) / 3);
  let tokens = reserve;
  let first = msgs.length;
  while (first > 0 && msgs.length - first + 1 < limits.maxMessages) {
    const t = messageTokens(msgs[first - 1]!.text);
    if (tokens + t > limits.maxTokens) break;
    tokens += t;
    first--;
  }
  const summary = summaryLine(msgs.slice(0, first));
  return [initialMessage('developer', summary), ...msgs.slice(first).map((m) => initialMessage(m.role, m.text))];
}
