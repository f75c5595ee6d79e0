/**
 * The conversation of one call as replayable items, built from the
 * ModelEvents and port calls that pass through a model link, and whether the
 * model owes an answer. Provider-neutral and pure: no I/O, no timers. A
 * link over any provider (call/model-link.ts) replays `items()` into a new
 * session after a loss.
 *
 * Contract:
 * - Items come in the order they first appear: caller turns (their
 *   transcript), assistant turns (their transcript — or, for an item lost
 *   before its transcript was done, the words its transcript deltas had
 *   brought so far — cut by `cutWords` to the share of the item's audio the
 *   caller heard when the call truncated it), user texts (DTMF), function
 *   calls and their outputs, items given with `add`.
 * - Known gaps: a caller turn whose transcript had not arrived, and an
 *   assistant item of which no words had arrived, cannot be replayed (their
 *   words were never seen) and are skipped; so is an assistant item of which
 *   the caller heard nothing.
 * - An answer is owed after a finished caller turn, a user text, a tool
 *   output that asks for a response, or a requested response, until a
 *   response started after it completes without a tool call; the caller
 *   speaking again clears it until they finish; a response in progress when
 *   the session is lost stays owed.
 * - Bounded: the most recent MAX_HISTORY_ENTRIES entries, each text cut at
 *   MAX_HISTORY_TEXT_CHARS (plus '…').
 */
import { base64Bytes } from '../dsp/format.js';
import { cutTimed, cutWords } from './transcript.js';
import type { ConversationItem, ModelEvent, TimedText } from './voice-model.js';

type Entry =
  | { kind: 'caller'; itemId: string; text: string | undefined }
  /** `text`: the final transcript; `partial`: the transcript deltas so far (used while `text` is unknown). */
  | { kind: 'assistant'; itemId: string; text: string | undefined; partial: string; audioBytes: number; heardMs: number | undefined; words?: readonly TimedText[] }
  | { kind: 'item'; item: ConversationItem };

/** History bounds: entries kept for replay, and characters kept of any one text (transcript, tool output, …). */
export const MAX_HISTORY_ENTRIES = 400;
export const MAX_HISTORY_TEXT_CHARS = 8000;

function clipText(text: string): string {
  return text.length > MAX_HISTORY_TEXT_CHARS ? `${text.slice(0, MAX_HISTORY_TEXT_CHARS)}…` : text;
}

function clipItem(item: ConversationItem): ConversationItem {
  switch (item.type) {
    case 'user_text':
    case 'assistant_text':
      return item.text.length > MAX_HISTORY_TEXT_CHARS ? { ...item, text: clipText(item.text) } : item;
    case 'function_call':
      return item.arguments.length > MAX_HISTORY_TEXT_CHARS ? { ...item, arguments: clipText(item.arguments) } : item;
    case 'function_call_output':
      return item.output.length > MAX_HISTORY_TEXT_CHARS ? { ...item, output: clipText(item.output) } : item;
    default:
      return item;
  }
}

/**
 * The conversation so far as replayable items, and whether the model owes an
 * answer. Pure bookkeeping: no I/O, no timers. Bounded: the most recent
 * MAX_HISTORY_ENTRIES entries, each text cut at MAX_HISTORY_TEXT_CHARS.
 */
export class ConversationHistory {
  private readonly entries: Entry[] = [];
  private readonly byItem = new Map<string, Entry>();
  private seq = 0;
  /** Whether something awaits an answer, and the sequence number of the latest such thing. */
  private owed = false;
  private owedSeq = 0;
  private readonly responseStartSeq = new Map<string, number>();
  private readonly inProgress = new Set<string>();
  private readonly toolResponses = new Set<string>();
  private rev = 0;

  constructor(private readonly bytesPerMs: number) {}

  /** Changes with anything `items()` would return differently for (a reconnect checks it did not miss one). */
  get revision(): number {
    return this.rev;
  }

  observe(ev: ModelEvent): void {
    switch (ev.type) {
      case 'speech_started':
        this.caller(ev.itemId);
        this.owed = false; // the caller took the floor: nothing is owed until they finish
        return;
      case 'speech_stopped':
        this.caller(ev.itemId);
        this.markOwed();
        return;
      case 'caller_transcript':
        this.caller(ev.itemId).text = clipText(ev.text);
        return;
      case 'response_started':
        this.responseStartSeq.set(ev.responseId, ++this.seq);
        this.inProgress.add(ev.responseId);
        return;
      case 'audio':
        this.assistant(ev.itemId).audioBytes += base64Bytes(ev.audio);
        return;
      case 'assistant_transcript_delta': {
        const e = this.assistant(ev.itemId);
        // Bounded like any text: once clipped (MAX_HISTORY_TEXT_CHARS + '…'), later deltas are dropped.
        if (e.text === undefined && e.partial.length <= MAX_HISTORY_TEXT_CHARS) e.partial = clipText(e.partial + ev.delta);
        return;
      }
      case 'assistant_transcript': {
        const e = this.assistant(ev.itemId);
        e.text = clipText(ev.text);
        e.partial = '';
        if (ev.words?.length) e.words = ev.words;
        return;
      }
      case 'tool_call':
        this.toolResponses.add(ev.responseId);
        this.push({ kind: 'item', item: { type: 'function_call', callId: ev.callId, name: ev.name, arguments: ev.arguments } });
        return;
      case 'response_done': {
        this.inProgress.delete(ev.responseId);
        const started = this.responseStartSeq.get(ev.responseId) ?? 0;
        this.responseStartSeq.delete(ev.responseId);
        const answered = ev.status === 'completed' && !this.toolResponses.has(ev.responseId) && started > this.owedSeq;
        this.toolResponses.delete(ev.responseId);
        if (answered) this.owed = false;
        return;
      }
      default:
        return;
    }
  }

  userText(text: string): void {
    this.push({ kind: 'item', item: { type: 'user_text', text } });
    this.markOwed();
  }

  toolResult(callId: string, output: string, respond: boolean): void {
    this.push({ kind: 'item', item: { type: 'function_call_output', callId, output } });
    if (respond) this.markOwed();
  }

  responseRequested(): void {
    this.markOwed();
  }

  /** Items given from outside (e.g. a call seeding history). */
  add(items: readonly ConversationItem[]): void {
    for (const item of items) this.push({ kind: 'item', item });
  }

  /** The caller heard `heardMs` of this assistant item's audio. */
  truncate(itemId: string, heardMs: number): void {
    const e = this.byItem.get(itemId);
    if (e?.kind === 'assistant') e.heardMs = Math.max(0, heardMs);
    this.rev++;
  }

  /** The session is gone: a response in progress never completed, so it is still owed. */
  sessionLost(): void {
    if (this.inProgress.size > 0) this.markOwed();
    this.inProgress.clear();
    this.responseStartSeq.clear();
    this.toolResponses.clear();
  }

  owesAnswer(): boolean {
    return this.owed || this.inProgress.size > 0;
  }

  /** The replayable conversation, in order (see the module contract for what is skipped). */
  items(): ConversationItem[] {
    const out: ConversationItem[] = [];
    for (const e of this.entries) {
      if (e.kind === 'item') out.push(e.item);
      else if (e.kind === 'caller') {
        const text = e.text?.trim();
        if (text) out.push({ type: 'user_text', text });
      } else {
        const text = this.heardText(e);
        if (text) out.push({ type: 'assistant_text', text });
      }
    }
    return out;
  }

  private heardText(e: Extract<Entry, { kind: 'assistant' }>): string | undefined {
    const full = (e.text ?? e.partial).trim();
    if (!full) return undefined;
    if (e.heardMs === undefined) return full;
    if (e.words) return cutTimed(e.words, e.heardMs).replace(/^…$/, '') || undefined;
    const generatedMs = e.audioBytes / this.bytesPerMs;
    const share = generatedMs > 0 ? Math.min(1, e.heardMs / generatedMs) : 0;
    if (share <= 0) return undefined;
    return cutWords(full, share);
  }

  private markOwed(): void {
    this.owed = true;
    this.owedSeq = ++this.seq;
  }

  private push(e: Entry): void {
    if (e.kind === 'item') e.item = clipItem(e.item);
    this.entries.push(e);
    this.rev++;
    // Bounded: a long call (or hostile model traffic) cannot grow the history without limit. The oldest
    // entries go first; a reconnect then replays the most recent MAX_HISTORY_ENTRIES.
    while (this.entries.length > MAX_HISTORY_ENTRIES) {
      const old = this.entries.shift()!;
      if (old.kind !== 'item' && this.byItem.get(old.itemId) === old) this.byItem.delete(old.itemId);
    }
  }

  private caller(itemId: string): Extract<Entry, { kind: 'caller' }> {
    const e = this.byItem.get(itemId);
    if (e?.kind === 'caller') return e;
    const n: Extract<Entry, { kind: 'caller' }> = { kind: 'caller', itemId, text: undefined };
    this.byItem.set(itemId, n);
    this.push(n);
    return n;
  }

  private assistant(itemId: string): Extract<Entry, { kind: 'assistant' }> {
    const e = this.byItem.get(itemId);
    if (e?.kind === 'assistant') return e;
    const n: Extract<Entry, { kind: 'assistant' }> = { kind: 'assistant', itemId, text: undefined, partial: '', audioBytes: 0, heardMs: undefined };
    this.byItem.set(itemId, n);
    this.push(n);
    return n;
  }
}

/**
 * A call's recorded transcript (its record's lines, in order) as items to
 * replay into a new model session: what the caller heard and said so far, for
 * the agent a failed transfer returns to. Caller lines → user texts,
 * assistant lines → assistant texts (an interrupted one is already cut to
 * what was heard), consecutive keypad digits → one user text naming them;
 * tool lines (a name only, no output) and empty lines are left out. Bounded
 * like the history: the most recent MAX_HISTORY_ENTRIES items, each text cut
 * at MAX_HISTORY_TEXT_CHARS. Pure.
 */
export function transcriptToConversation(lines: readonly { speaker: string; text: string }[]): ConversationItem[] {
  const items: ConversationItem[] = [];
  let digits: string[] = [];
  const flushDigits = () => {
    if (digits.length > 0) items.push({ type: 'user_text', text: `(The caller pressed on the keypad: ${digits.join(' ')})` });
    digits = [];
  };
  for (const line of lines) {
    if (line.speaker === 'dtmf') {
      if (line.text !== '') digits.push(line.text);
      continue;
    }
    flushDigits();
    const text = line.text.trim();
    if (text === '') continue;
    if (line.speaker === 'caller') items.push({ type: 'user_text', text: clipText(text) });
    else if (line.speaker === 'assistant') items.push({ type: 'assistant_text', text: clipText(text) });
  }
  flushDigits();
  return items.length > MAX_HISTORY_ENTRIES ? items.slice(items.length - MAX_HISTORY_ENTRIES) : items;
}
