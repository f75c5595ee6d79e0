/**
 * The STT → LLM → TTS pipeline behind the voice-model port (issue 19): to the
 * call it looks exactly like a server-VAD Realtime session in µ-law 8 kHz.
 *
 * Contract of a PipelineSession:
 * - `connect` opens the VAD and the STT stream and loads `history` into the
 *   conversation (ConversationItem → LlmMessage); a refused STT rejects with
 *   ModelConnectError (retryable as the SttError says). `ready` is the first
 *   event. Events before the listener are queued (bounded).
 * - Caller audio (base64 µ-law) goes to the STT as is and to the VAD in
 *   pieces of at most MAX_FRAME bytes. No echo handling: playout timing is
 *   unknown here.
 * - Turns: the VAD's onset → `speech_started` {pitem_N}; an answer in
 *   progress is cancelled at once (barge-in: its LLM and TTS streams) and ends
 *   `response_done` cancelled `turn_detected`. The VAD's offset →
 *   `speech_stopped` and `stt.finalize()`; the turn's text is the STT finals
 *   since the onset, closed by the final that ends it (fromFinalize,
 *   speechFinal, utterance_end, or an endpoint already seen) or after
 *   `finalWaitMs` with what there is → `caller_transcript`, and an answer when
 *   the text is not empty. An STT endpoint with text the VAD never saw as a
 *   turn is taken as one (the speech events are emitted for it).
 * - An answer: `response_started` {presp_N}; the LLM gets the system
 *   instructions (+ one-off ones from createResponse) and the conversation;
 *   text deltas → `assistant_transcript_delta` and the answer's TTS stream
 *   (opened on the first delta); TTS audio → `audio` (µ-law; PCM formats go
 *   through one Resampler per stream; whole 20 ms frames, the rest at the
 *   end) under one item id per answer. `turn_stages` (ms after the turn's
 *   speech_stopped) precedes the first audio of an answer to a caller turn;
 *   when that answer only called tools, the next createResponse (its
 *   follow-up, before any new caller speech) answers the turn and carries
 *   the turn's final-transcript and first-token times.
 *   The end: `audio_done` (when there was audio), `assistant_transcript`
 *   {text, words from the TTS alignment}, `response_done` (usage undefined),
 *   then `usage` {pipeline increments, token fields 0}.
 * - Tool calls → `tool_call`; the answer completes after the LLM's done and
 *   its speech. Tool outputs join the conversation; the next createResponse
 *   sends the assistant message with its toolCalls and every tool message.
 * - truncate(itemId, ms) cuts that assistant message to the words heard (TTS
 *   alignment, else proportional to the item's audio bytes).
 * - Failures are never silent: a retryable LLM error is retried (backoff
 *   LLM_BACKOFF_MS ×2, Retry-After honoured up to a bound, LLM_TRIES in all)
 *   while nothing was said or called for the answer, else `response_done`
 *   failed with the error code; a retryable TTS error opens one new stream
 *   for the text not yet spoken (by alignment; all of it without one), else
 *   failed. An STT stream closed under us is reopened quietly (frames while
 *   down are dropped, STT_RECONNECTS per session); if that fails → `closed`
 *   retryable, and the model link redials.
 * - close() closes STT, TTS, LLM and VAD, reports the STT seconds not yet
 *   reported, and nothing is emitted after it. Every timer is cleared.
 */

import { ReachabilityTracker } from '../call/reachability.js';
import {
  ModelConnectError,
  type ConversationItem,
  type ModelEvent,
  type ModelProvider,
  type ModelSession,
  type ModelSessionOptions,
  type TimedText,
  type ToolSpec,
} from '../call/voice-model.js';
import { ZERO_PIPELINE_USAGE, type PipelineUsage } from '../records.js';
import { Resampler } from '../dsp/index.js';
import { SttError, type SpeechToText, type SttConnectOptions, type SttEvent, type SttStream } from './stt.js';
import type { LanguageModel, LlmError, LlmEvent, LlmMessage, LlmStream, LlmToolCall } from './llm.js';
import { TTS_FORMAT_INFO, type TextToSpeech, type TtsAlignment, type TtsError, type TtsEvent, type TtsFormat, type TtsStream } from './tts.js';
import { MAX_FRAME, openCoreVad, type VadEvent, type VadStage, type VadStageOptions } from './vad.js';

/** µ-law 8 kHz: bytes per ms, and one 20 ms frame. */
const ULAW_BYTES_PER_MS = 8;
const FRAME_BYTES = 160;
/** LLM attempts per answer, first backoff (doubles), largest Retry-After honoured. */
const LLM_TRIES = 3;
const LLM_BACKOFF_MS = 250;
const LLM_MAX_RETRY_AFTER_MS = 4000;
/** STT reopenings per session before the session closes (retryable). */
const STT_RECONNECTS = 3;
/** Bounds: events queued before a listener, conversation messages, assistant items kept for truncate. */
const MAX_QUEUED_EVENTS = 1000;
const MAX_MESSAGES = 400;
const MAX_ITEMS = 32;

export interface PipelineTimings {
  /** After speech_stopped, longest wait for the STT's closing final (ms, default 1000). */
  finalWaitMs?: number;
  /** First LLM retry backoff (ms, default 250; doubles). */
  llmBackoffMs?: number;
}

export interface PipelineProviderOptions {
  stt: SpeechToText;
  llm: LanguageModel;
  tts: TextToSpeech;
  ttsFormat: TtsFormat;
  /** The turn detector (default the audio core's). */
  openVad?: (o: VadStageOptions) => Promise<VadStage>;
  sttOptions?: SttConnectOptions;
  maxOutputTokens?: number;
  timings?: PipelineTimings;
  /** Told each connect's outcome (the STT stream is what a connect opens), as the other providers tell theirs: /voice/health reads it. */
  reachability?: ReachabilityTracker;
}

export class PipelineProvider implements ModelProvider {
  readonly name = 'pipeline';
  readonly reachability: ReachabilityTracker;

  constructor(private readonly opts: PipelineProviderOptions) {
    this.reachability = opts.reachability ?? new ReachabilityTracker();
  }

  async connect(opts: ModelSessionOptions, signal?: AbortSignal): Promise<ModelSession> {
    const session = new PipelineSession(this.opts, opts);
    try {
      await session.open(signal);
    } catch (err) {
      if (!signal?.aborted) this.reachability.fail(err);
      throw err;
    }
    this.reachability.ok();
    return session;
  }
}

/** Chat Completions messages for replayed conversation items (consecutive calls share one assistant message). */
export function historyMessages(items: readonly ConversationItem[]): LlmMessage[] {
  const out: LlmMessage[] = [];
  for (const it of items) {
    const last = out[out.length - 1];
    switch (it.type) {
      case 'user_text':
        out.push({ role: 'user', content: it.text });
        break;
      case 'assistant_text':
        out.push({ role: 'assistant', content: it.text });
        break;
      case 'function_call': {
        const call: LlmToolCall = { callId: it.callId, name: it.name, arguments: it.arguments };
        if (last?.role === 'assistant') out[out.length - 1] = { ...last, toolCalls: [...(last.toolCalls ?? []), call] };
        else out.push({ role: 'assistant', content: '', toolCalls: [call] });
        break;
      }
      case 'function_call_output':
        out.push({ role: 'tool', callId: it.callId, content: it.output });
        break;
    }
  }
  return out;
}

/**
 * Words of the spoken text with their spans, from per-character timings (ms of the item's audio). Each
 * piece keeps the whitespace after it, so the pieces joined are the text (TimedText's contract: a cut
 * joins the pieces heard); a span covers the word's characters only.
 */
export function wordsFromChars(chars: readonly CharTime[]): TimedText[] {
  const words: TimedText[] = [];
  let cur: TimedText | undefined;
  let ended = false;
  for (const c of chars) {
    if (/\s/.test(c.ch)) {
      if (cur) cur.text += c.ch;
      ended = true;
      continue;
    }
    if (!cur || ended) {
      cur = { text: '', startMs: c.startMs, endMs: c.endMs };
      words.push(cur);
      ended = false;
    }
    cur.text += c.ch;
    cur.endMs = Math.max(cur.endMs, c.endMs);
  }
  return words;
}

/** `a` then `b`, in new memory. */
function joined(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

interface CharTime {
  ch: string;
  startMs: number;
  endMs: number;
}

/** A caller turn from onset to its closing final. */
interface Turn {
  itemId: string;
  texts: string[];
  /** The STT reported an endpoint since the last words. */
  endpointed: boolean;
  /** performance.now() of speech_stopped; undefined while the caller speaks. */
  stoppedAt?: number;
  finalTimer?: NodeJS.Timeout;
}

/** What an answer's audio said, kept for truncate. */
interface Item {
  message: { role: 'assistant'; content: string; toolCalls?: readonly LlmToolCall[] };
  text: string;
  chars: CharTime[];
  audioBytes: number;
}

interface Answer {
  responseId: string;
  itemId: string;
  instructions: string | undefined;
  /** Set for an answer to a caller turn: performance.now() of its speech_stopped, and its stage times. */
  turnStoppedAt?: number;
  finalTranscriptMs?: number;
  firstTokenMs?: number;
  stagesSent: boolean;
  llm?: LlmStream;
  llmTries: number;
  llmDone: boolean;
  retryTimer?: NodeJS.Timeout;
  text: string;
  toolCalls: LlmToolCall[];
  /**
   * Outputs of this answer's calls that came back while it still runs (its spoken part still
   * playing): they join the conversation right after the assistant message that made the calls.
   */
  earlyOutputs: LlmMessage[];
  tts?: TtsStream;
  ttsOpening: boolean;
  ttsRetried: boolean;
  /** Text given to the current TTS stream (a retried stream gets the rest from here). */
  ttsFrom: number;
  resampler?: Resampler;
  /** µ-law not yet emitted (less than one frame). */
  carry: Uint8Array;
  audioBytes: number;
  /** Audio ms emitted when the current TTS stream started (its alignment's origin). */
  streamBaseMs: number;
  chars: CharTime[];
  usage: PipelineUsage;
}


export class PipelineSession implements ModelSession {
  readonly format = 'ulaw8k' as const;
  private listener: ((ev: ModelEvent) => void) | undefined;
  private queued: ModelEvent[] = [];
  private closed = false;
  private vad: VadStage | undefined;
  private stt: SttStream | undefined;
  private sttOff: (() => void) | undefined;
  private sttReconnects = 0;
  /** STT seconds of streams already closed, and the total reported so far. */
  private sttSecondsDone = 0;
  private sttSecondsReported = 0;
  private readonly abort = new AbortController();
  private conversation: LlmMessage[] = [];
  private readonly items = new Map<string, Item>();
  private turn: Turn | undefined;
  /** STT words heard while the VAD saw no turn. */
  private strayTexts: string[] = [];
  private answer: Answer | undefined;
  /** A caller turn answered so far only by tool calls: its stage times, for the follow-up that speaks. */
  private toolTurn: Pick<Answer, 'turnStoppedAt' | 'finalTranscriptMs' | 'firstTokenMs'> | undefined;
  private nextItem = 1;
  private nextResponse = 1;
  private readonly finalWaitMs: number;
  private readonly llmBackoffMs: number;

  constructor(
    private readonly p: PipelineProviderOptions,
    private readonly o: ModelSessionOptions,
  ) {
    this.finalWaitMs = p.timings?.finalWaitMs ?? 1000;
    this.llmBackoffMs = p.timings?.llmBackoffMs ?? LLM_BACKOFF_MS;
  }

  /** Opens the VAD and the STT, loads the history, emits `ready`. */
  async open(signal?: AbortSignal): Promise<void> {
    const openVad = this.p.openVad ?? openCoreVad;
    this.vad = await openVad({ onEvent: (ev) => this.onVad(ev), ...(signal ? { signal } : {}) });
    try {
      this.attachStt(await this.p.stt.connect(this.p.sttOptions ?? {}, signal));
    } catch (err) {
      this.vad.close();
      this.vad = undefined;
      const retryable = err instanceof SttError ? err.retryable : true;
      throw new ModelConnectError(`pipeline STT refused: ${err instanceof Error ? err.message : String(err)}`, retryable, { cause: err });
    }
    this.conversation = historyMessages(this.o.history ?? []);
    this.emit({ type: 'ready' });
  }

  onEvent(listener: (ev: ModelEvent) => void): void {
    this.listener = listener;
    for (const ev of this.queued.splice(0)) listener(ev);
  }

  appendAudio(base64: string): void {
    if (this.closed) return;
    const bytes = Buffer.from(base64, 'base64');
    if (bytes.length === 0) return;
    this.stt?.send(bytes);
    for (let off = 0; off < bytes.length && this.vad; off += MAX_FRAME) this.vad.push(bytes.subarray(off, off + MAX_FRAME));
  }

  sendUserText(text: string): void {
    this.remember({ role: 'user', content: text });
  }

  createResponse(instructions?: string): void {
    if (this.closed) return;
    if (this.answer) {
      this.emit({ type: 'error', code: 'conversation_already_has_active_response', message: 'a response is already in progress' });
      return;
    }
    const turn = this.toolTurn;
    this.toolTurn = undefined;
    this.startAnswer(instructions, undefined, turn);
  }

  cancelResponse(): void {
    if (this.answer) this.finishAnswer(this.answer, 'cancelled', 'client_cancelled');
  }

  truncate(itemId: string, audioEndMs: number): void {
    const item = this.items.get(itemId);
    if (!item) return;
    let cut: string;
    if (item.chars.length > 0) {
      cut = wordsFromChars(item.chars)
        .filter((w) => w.startMs < audioEndMs)
        .map((w) => w.text)
        .join('');
    } else {
      const share = item.audioBytes > 0 ? Math.min(1, (audioEndMs * ULAW_BYTES_PER_MS) / item.audioBytes) : 0;
      const chars = Math.floor(item.text.length * share);
      const ws = item.text.slice(0, chars + 1).search(/\s\S*$/);
      cut = share >= 1 ? item.text : item.text.slice(0, ws >= 0 ? ws : 0);
    }
    item.message.content = cut.trim();
  }

  sendToolResult(callId: string, output: string, respond: boolean): void {
    // The call's answer may still be speaking its preamble: its message (with the calls) is not in yet.
    const a = this.answer;
    if (a && a.toolCalls.some((c) => c.callId === callId)) a.earlyOutputs.push({ role: 'tool', callId, content: output });
    else this.remember({ role: 'tool', callId, content: output });
    if (respond) this.createResponse();
  }

  close(): void {
    if (this.closed) return;
    if (this.answer) this.stopAnswer(this.answer);
    this.answer = undefined;
    if (this.turn?.finalTimer) clearTimeout(this.turn.finalTimer);
    this.turn = undefined;
    const stt = this.usageIncrement();
    if (stt.sttAudioSeconds > 0) this.emitUsage(stt);
    this.closed = true;
    this.abort.abort();
    this.sttOff?.();
    void this.stt?.close();
    this.stt = undefined;
    this.vad?.close();
    this.vad = undefined;
    this.queued = [];
  }

  // ── events out ────────────────────────────────────────────────────────

  private emit(ev: ModelEvent): void {
    if (this.closed) return;
    if (this.listener) this.listener(ev);
    else if (this.queued.length < MAX_QUEUED_EVENTS) this.queued.push(ev);
  }

  private emitUsage(pipeline: PipelineUsage): void {
    this.emit({
      type: 'usage',
      usage: { inputTextTokens: 0, inputAudioTokens: 0, inputCachedTokens: 0, outputTextTokens: 0, outputAudioTokens: 0, pipeline },
    });
  }

  /** The STT seconds not yet reported, as a usage increment. */
  private usageIncrement(): PipelineUsage {
    const total = this.sttSecondsDone + (this.stt?.usage().audioSeconds ?? 0);
    const u = { ...ZERO_PIPELINE_USAGE };
    u.sttAudioSeconds = total - this.sttSecondsReported;
    this.sttSecondsReported = total;
    return u;
  }

  /** Appends to the conversation, dropping the oldest messages past the bound (up to a user message). */
  private remember(m: LlmMessage): void {
    this.conversation.push(m);
    if (this.conversation.length <= MAX_MESSAGES) return;
    let drop = this.conversation.length - MAX_MESSAGES;
    while (drop < this.conversation.length && this.conversation[drop]!.role !== 'user') drop++;
    this.conversation.splice(0, drop);
  }

  // ── VAD and STT: turns ────────────────────────────────────────────────

  private onVad(ev: VadEvent): void {
    if (this.closed) return;
    switch (ev.type) {
      case 'onset':
        return this.handleOnset(ev.atMs);
      case 'offset':
        return this.handleOffset(ev.atMs);
      case 'error':
        return this.emit({ type: 'error', code: `vad_${ev.error.code}`, message: ev.error.message });
    }
  }

  private handleOnset(atMs: number): void {
    if (this.turn?.stoppedAt !== undefined) this.closeTurn(this.turn, false);
    if (this.turn) return;
    const itemId = `pitem_${this.nextItem++}`;
    this.turn = { itemId, texts: this.strayTexts.splice(0), endpointed: false };
    this.toolTurn = undefined;
    this.emit({ type: 'speech_started', itemId, audioStartMs: atMs });
    if (this.answer) this.finishAnswer(this.answer, 'cancelled', 'turn_detected');
  }

  private handleOffset(atMs: number): void {
    const turn = this.turn;
    if (!turn || turn.stoppedAt !== undefined) return;
    this.stopTurn(turn, atMs);
    if (turn.endpointed && turn.texts.length > 0) return this.closeTurn(turn, true);
    this.stt?.finalize();
    turn.finalTimer = setTimeout(() => this.closeTurn(turn, true), this.finalWaitMs);
  }

  private stopTurn(turn: Turn, atMs: number): void {
    turn.stoppedAt = performance.now();
    this.emit({ type: 'speech_stopped', itemId: turn.itemId, audioEndMs: atMs });
  }

  /** The turn's text is in: `caller_transcript`, then an answer when it has words and `answer` holds. */
  private closeTurn(turn: Turn, answer: boolean): void {
    if (this.turn !== turn) return;
    if (turn.finalTimer) clearTimeout(turn.finalTimer);
    this.turn = undefined;
    const text = turn.texts.join(' ').replace(/\s+/g, ' ').trim();
    this.emit({ type: 'caller_transcript', itemId: turn.itemId, text });
    if (!text) return;
    this.remember({ role: 'user', content: text });
    if (answer && !this.answer) this.startAnswer(undefined, turn.stoppedAt);
  }

  private attachStt(stream: SttStream): void {
    this.stt = stream;
    this.sttOff = stream.onEvent((ev) => this.onStt(stream, ev));
  }

  private onStt(stream: SttStream, ev: SttEvent): void {
    if (this.closed || stream !== this.stt) return;
    switch (ev.type) {
      case 'speech_started':
        return;
      case 'interim':
        if (this.turn && ev.text.trim()) this.turn.endpointed = false;
        return;
      case 'final':
        return this.handleFinal(ev.text, ev.speechFinal || ev.fromFinalize, ev.startS, ev.startS + ev.durationS);
      case 'utterance_end':
        return this.handleFinal('', true, ev.lastWordEndS, ev.lastWordEndS);
      case 'error':
        return;
      case 'closed':
        return void this.handleSttClosed(stream);
    }
  }

  private handleFinal(text: string, endpoint: boolean, startS: number, endS: number): void {
    const words = text.trim();
    const turn = this.turn;
    if (!turn) {
      if (words) this.strayTexts.push(words);
      if (this.strayTexts.length > 0 && endpoint) this.strayTurn(startS, endS);
      return;
    }
    if (words) turn.texts.push(words);
    if (endpoint) turn.endpointed = true;
    if (endpoint && turn.stoppedAt !== undefined) this.closeTurn(turn, true);
  }

  /** The STT ended an utterance the VAD did not hear: it is the turn. */
  private strayTurn(startS: number, endS: number): void {
    const itemId = `pitem_${this.nextItem++}`;
    const turn: Turn = { itemId, texts: this.strayTexts.splice(0), endpointed: true };
    this.turn = turn;
    this.toolTurn = undefined;
    this.emit({ type: 'speech_started', itemId, audioStartMs: Math.round(startS * 1000) });
    if (this.answer) this.finishAnswer(this.answer, 'cancelled', 'turn_detected');
    this.stopTurn(turn, Math.round(endS * 1000));
    this.closeTurn(turn, true);
  }

  private async handleSttClosed(stream: SttStream): Promise<void> {
    this.sttOff?.();
    this.sttSecondsDone += stream.usage().audioSeconds;
    this.stt = undefined;
    if (this.sttReconnects < STT_RECONNECTS) {
      this.sttReconnects++;
      try {
        const next = await this.p.stt.connect(this.p.sttOptions ?? {}, this.abort.signal);
        if (this.closed) return void next.close();
        return this.attachStt(next);
      } catch (err) {
        if (this.closed) return;
        return this.fail(`STT reconnect failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    this.fail('STT stream closed too often');
  }

  /** The session cannot go on: `closed` retryable (the link redials), then everything stops. */
  private fail(reason: string): void {
    this.emit({ type: 'closed', reason, retryable: true });
    this.close();
  }

  // ── answers: LLM ──────────────────────────────────────────────────────

  /** `toolTurn`: the stage times of the caller turn whose tool round this answer follows up. */
  private startAnswer(instructions: string | undefined, turnStoppedAt: number | undefined, toolTurn?: PipelineSession['toolTurn']): void {
    const a: Answer = {
      responseId: `presp_${this.nextResponse++}`,
      itemId: `pitem_${this.nextItem++}`,
      instructions,
      stagesSent: false,
      llmTries: 0,
      llmDone: false,
      text: '',
      toolCalls: [],
      earlyOutputs: [],
      ttsOpening: false,
      ttsRetried: false,
      ttsFrom: 0,
      carry: new Uint8Array(0),
      audioBytes: 0,
      streamBaseMs: 0,
      chars: [],
      usage: { ...ZERO_PIPELINE_USAGE },
    };
    if (turnStoppedAt !== undefined) {
      a.turnStoppedAt = turnStoppedAt;
      a.finalTranscriptMs = Math.round(performance.now() - turnStoppedAt);
    } else if (toolTurn) {
      Object.assign(a, toolTurn);
    }
    this.answer = a;
    this.emit({ type: 'response_started', responseId: a.responseId });
    this.requestLlm(a);
  }

  private requestLlm(a: Answer): void {
    a.llmTries++;
    const system = a.instructions ? `${this.o.instructions}\n\n${a.instructions}` : this.o.instructions;
    const tools: readonly ToolSpec[] = this.o.tools;
    const req = {
      messages: [{ role: 'system' as const, content: system }, ...this.conversation],
      tools,
      ...(this.p.maxOutputTokens !== undefined ? { maxOutputTokens: this.p.maxOutputTokens } : {}),
    };
    const llm = this.p.llm.stream(req, this.abort.signal);
    a.llm = llm;
    llm.onEvent((ev) => {
      if (this.answer === a && a.llm === llm) this.onLlm(a, ev);
    });
  }

  private onLlm(a: Answer, ev: LlmEvent): void {
    switch (ev.type) {
      case 'text_delta':
        return this.handleDelta(a, ev.delta);
      case 'tool_call':
        this.markFirstToken(a);
        a.toolCalls.push(ev.call);
        return this.emit({ type: 'tool_call', responseId: a.responseId, callId: ev.call.callId, name: ev.call.name, arguments: ev.call.arguments });
      case 'done':
        a.llmDone = true;
        a.llm = undefined;
        a.usage.llmInputTokens += ev.usage.inputTokens;
        a.usage.llmCachedInputTokens += ev.usage.cachedInputTokens;
        a.usage.llmOutputTokens += ev.usage.outputTokens;
        if (a.tts) a.tts.end();
        else if (!a.ttsOpening) this.finishAnswer(a, 'completed');
        return;
      case 'error':
        a.llm = undefined;
        return this.handleLlmError(a, ev.error);
    }
  }

  private markFirstToken(a: Answer): void {
    if (a.turnStoppedAt !== undefined && a.firstTokenMs === undefined) a.firstTokenMs = Math.round(performance.now() - a.turnStoppedAt);
  }

  private handleDelta(a: Answer, delta: string): void {
    if (!delta) return;
    this.markFirstToken(a);
    a.text += delta;
    this.emit({ type: 'assistant_transcript_delta', responseId: a.responseId, itemId: a.itemId, delta });
    if (a.tts) a.tts.push(delta);
    else if (!a.ttsOpening) void this.openTts(a);
  }

  private handleLlmError(a: Answer, err: LlmError): void {
    const untouched = a.text === '' && a.toolCalls.length === 0;
    if (!err.retryable || !untouched || a.llmTries >= LLM_TRIES) return this.finishAnswer(a, 'failed', String(err.code));
    const backoffMs = this.llmBackoffMs * 2 ** (a.llmTries - 1);
    const waitMs = Math.max(backoffMs, Math.min(err.retryAfterMs ?? 0, LLM_MAX_RETRY_AFTER_MS));
    a.retryTimer = setTimeout(() => {
      a.retryTimer = undefined;
      if (this.answer === a) this.requestLlm(a);
    }, waitMs);
  }

  // ── answers: TTS ──────────────────────────────────────────────────────

  /** Opens the answer's TTS stream and gives it the text from `ttsFrom` (and the end, when the LLM is done). */
  private async openTts(a: Answer): Promise<void> {
    a.ttsOpening = true;
    let tts: TtsStream;
    try {
      tts = await this.p.tts.open({ format: this.p.ttsFormat, voice: this.o.voice }, this.abort.signal);
    } catch (err) {
      a.ttsOpening = false;
      if (this.answer === a) this.handleTtsError(a, err as TtsError);
      return;
    }
    a.ttsOpening = false;
    if (this.answer !== a) return tts.cancel();
    a.tts = tts;
    a.streamBaseMs = a.audioBytes / ULAW_BYTES_PER_MS;
    a.resampler?.close();
    const rateHz = TTS_FORMAT_INFO[this.p.ttsFormat].rateHz;
    try {
      a.resampler = rateHz === 8000 ? undefined : Resampler.open({ from: rateHz, to: 8000, phone: 'ulaw' });
    } catch (err) {
      tts.cancel();
      return this.finishAnswer(a, 'failed', `dsp_${(err as { code?: string }).code ?? 'error'}`);
    }
    tts.onEvent((ev) => {
      if (this.answer === a && a.tts === tts) this.onTts(a, tts, ev);
    });
    const rest = a.text.slice(a.ttsFrom);
    if (rest) tts.push(rest);
    if (a.llmDone) tts.end();
  }

  private onTts(a: Answer, tts: TtsStream, ev: TtsEvent): void {
    switch (ev.type) {
      case 'audio':
        return this.handleTtsAudio(a, ev.audio);
      case 'alignment':
        return this.handleAlignment(a, ev.alignment);
      case 'done':
        a.usage.ttsCharacters += ev.usage.characters;
        a.tts = undefined;
        if (a.llmDone) this.finishAnswer(a, 'completed');
        return;
      case 'error':
        a.usage.ttsCharacters += tts.usage.characters;
        a.tts = undefined;
        return this.handleTtsError(a, ev.error);
    }
  }

  private handleTtsError(a: Answer, err: TtsError): void {
    if (!err.retryable || a.ttsRetried) {
      this.finishAnswer(a, 'failed', err.code ?? 'tts_error');
      return;
    }
    a.ttsRetried = true;
    a.ttsFrom = this.spokenChars(a);
    void this.openTts(a);
  }

  /** Characters of the answer's text already heard in its audio (by alignment; 0 without one). */
  private spokenChars(a: Answer): number {
    const emittedMs = a.audioBytes / ULAW_BYTES_PER_MS;
    const heard = a.chars.filter((c) => c.startMs < emittedMs);
    return a.ttsFrom + heard.filter((c) => c.startMs >= a.streamBaseMs).length;
  }

  private handleAlignment(a: Answer, al: TtsAlignment): void {
    for (let i = 0; i < al.chars.length; i++) {
      const startMs = a.streamBaseMs + (al.charStartMs[i] ?? 0);
      a.chars.push({ ch: al.chars[i]!, startMs, endMs: startMs + (al.charDurationMs[i] ?? 0) });
    }
  }

  private handleTtsAudio(a: Answer, audio: Uint8Array): void {
    let ulaw: Uint8Array;
    if (a.resampler) {
      const pcm = new Int16Array(audio.buffer.slice(audio.byteOffset, audio.byteOffset + (audio.length & ~1)));
      const out = new Uint8Array(a.resampler.maxOutput(pcm.length));
      ulaw = out.subarray(0, a.resampler.process(pcm, pcm.length, out));
    } else {
      ulaw = audio;
    }
    const all = a.carry.length === 0 ? ulaw : joined(a.carry, ulaw);
    const whole = all.length - (all.length % FRAME_BYTES);
    a.carry = all.slice(whole);
    if (whole > 0) this.emitAudio(a, all.subarray(0, whole));
  }

  private emitAudio(a: Answer, ulaw: Uint8Array): void {
    if (!a.stagesSent && a.turnStoppedAt !== undefined) {
      a.stagesSent = true;
      this.emit({
        type: 'turn_stages',
        responseId: a.responseId,
        ...(a.finalTranscriptMs !== undefined ? { finalTranscriptMs: a.finalTranscriptMs } : {}),
        ...(a.firstTokenMs !== undefined ? { firstTokenMs: a.firstTokenMs } : {}),
        firstTtsAudioMs: Math.round(performance.now() - a.turnStoppedAt),
      });
    }
    a.audioBytes += ulaw.length;
    this.emit({ type: 'audio', responseId: a.responseId, itemId: a.itemId, audio: Buffer.from(ulaw.buffer, ulaw.byteOffset, ulaw.length).toString('base64') });
  }

  // ── answers: the end ──────────────────────────────────────────────────

  /** Cancels what still runs of an answer (LLM, retry timer, TTS, resampler); emits nothing. */
  private stopAnswer(a: Answer): void {
    if (a.retryTimer) clearTimeout(a.retryTimer);
    a.retryTimer = undefined;
    a.llm?.cancel();
    a.llm = undefined;
    if (a.tts) a.usage.ttsCharacters += a.tts.usage.characters;
    a.tts?.cancel();
    a.tts = undefined;
    a.resampler?.close();
    a.resampler = undefined;
  }

  private finishAnswer(a: Answer, status: 'completed' | 'cancelled' | 'failed', reason?: string): void {
    if (this.answer !== a) return;
    this.answer = undefined;
    this.stopAnswer(a);
    if (status === 'completed' && a.carry.length > 0) this.emitAudio(a, a.carry);
    if (a.audioBytes > 0) this.emit({ type: 'audio_done', responseId: a.responseId, itemId: a.itemId });
    if (a.text) {
      const words = wordsFromChars(a.chars);
      this.emit({ type: 'assistant_transcript', responseId: a.responseId, itemId: a.itemId, text: a.text, ...(words.length ? { words } : {}) });
    }
    if (a.text || a.toolCalls.length > 0) this.keepItem(a);
    if (status === 'completed' && a.toolCalls.length > 0 && !a.stagesSent && a.turnStoppedAt !== undefined) {
      this.toolTurn = { turnStoppedAt: a.turnStoppedAt, finalTranscriptMs: a.finalTranscriptMs, firstTokenMs: a.firstTokenMs };
    }
    this.emit({ type: 'response_done', responseId: a.responseId, status, ...(reason !== undefined ? { reason } : {}), usage: undefined });
    const u = this.usageIncrement();
    this.emitUsage({ ...a.usage, sttAudioSeconds: u.sttAudioSeconds });
  }

  /** The answer joins the conversation (with its tool calls) and is kept for truncate. */
  private keepItem(a: Answer): void {
    const message: Item['message'] = { role: 'assistant', content: a.text, ...(a.toolCalls.length ? { toolCalls: a.toolCalls } : {}) };
    this.remember(message);
    for (const m of a.earlyOutputs.splice(0)) this.remember(m);
    this.items.set(a.itemId, { message, text: a.text, chars: a.chars, audioBytes: a.audioBytes });
    if (this.items.size > MAX_ITEMS) this.items.delete(this.items.keys().next().value!);
  }
}
