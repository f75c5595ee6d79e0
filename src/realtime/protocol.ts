/**
 * OpenAI Realtime (GA interface) wire protocol as callbridge uses it: pure
 * parse/build functions, no sockets. The shapes are the openai package's own
 * types, so a wrong field name in a builder is a compile error.
 *
 * Contract:
 * - `parseServerEvent` never throws. It validates only what callbridge reads:
 *   the `type` string and, for each handled event, the fields the session
 *   uses. Handled events come back as `Pick`s of the openai types; any other
 *   well-formed event comes back as `{ type: 'unhandled', originalType }` so
 *   the caller can skip it; malformed input is `{ ok: false, error }`.
 * - Builders return the JSON text of one client event. `appendAudioEvent` is
 *   on the hot path (~50×/s per call) and is a template string: base64
 *   (`A–Z a–z 0–9 + / =`) needs no JSON escaping, so callers MUST pass base64.
 * - No beta shapes anywhere (no `OpenAI-Beta`, no `session.modalities`,
 *   no `input_audio_format`): the GA server rejects them.
 */
import type {
  ConversationItemCreateEvent,
  ConversationItemInputAudioTranscriptionCompletedEvent,
  ConversationItemTruncateEvent,
  InputAudioBufferAppendEvent,
  InputAudioBufferSpeechStartedEvent,
  InputAudioBufferSpeechStoppedEvent,
  RealtimeAudioFormats,
  RealtimeError,
  RealtimeErrorEvent,
  RealtimeFunctionTool,
  RateLimitsUpdatedEvent,
  RealtimeResponseUsage,
  RealtimeServerEvent,
  RealtimeSessionCreateRequest,
  ResponseAudioDeltaEvent,
  ResponseAudioDoneEvent,
  ResponseAudioTranscriptDeltaEvent,
  ResponseAudioTranscriptDoneEvent,
  ResponseCancelEvent,
  ResponseCreateEvent,
  ResponseCreatedEvent,
  ResponseDoneEvent,
  ResponseFunctionCallArgumentsDoneEvent,
  ResponseOutputItemAddedEvent,
  ResponseOutputItemDoneEvent,
  SessionCreatedEvent,
  SessionUpdateEvent,
  SessionUpdatedEvent,
} from 'openai/resources/realtime/realtime';
import type { ConversationItem, ModelAudioFormat, ResponseStatus, ToolSpec, Usage } from '../call/voice-model.js';

/** Largest server text frame accepted. Audio deltas are typically a few tens of kB. */
export const MAX_SERVER_EVENT_CHARS = 8 * 1024 * 1024;

// ---------------------------------------------------------------------------
// Server events (validated subset)

/** An output item as callbridge reads it: enough to learn a function call's name, call_id and arguments. */
export interface OutputItemInfo {
  id: string | undefined;
  type: string;
  name: string | undefined;
  call_id: string | undefined;
  arguments: string | undefined;
}

export type SessionCreated = Pick<SessionCreatedEvent, 'type'>;
export type SessionUpdated = Pick<SessionUpdatedEvent, 'type'>;
export type SpeechStarted = Pick<InputAudioBufferSpeechStartedEvent, 'type' | 'item_id' | 'audio_start_ms'>;
export type SpeechStopped = Pick<InputAudioBufferSpeechStoppedEvent, 'type' | 'item_id' | 'audio_end_ms'>;
export type ResponseCreated = Pick<ResponseCreatedEvent, 'type'> & { response: { id: string } };
export type OutputItemAdded = Pick<ResponseOutputItemAddedEvent, 'type' | 'response_id'> & { item: OutputItemInfo };
export type OutputItemDone = Pick<ResponseOutputItemDoneEvent, 'type' | 'response_id'> & { item: OutputItemInfo };
export type AudioDelta = Pick<ResponseAudioDeltaEvent, 'type' | 'response_id' | 'item_id' | 'delta'>;
export type AudioDone = Pick<ResponseAudioDoneEvent, 'type' | 'response_id' | 'item_id'>;
/** A piece of the assistant's words for an audio item, sent along with its audio (before `.done`). */
export type AudioTranscriptDelta = Pick<ResponseAudioTranscriptDeltaEvent, 'type' | 'response_id' | 'item_id' | 'content_index' | 'delta'>;
export type AudioTranscriptDone = Pick<ResponseAudioTranscriptDoneEvent, 'type' | 'response_id' | 'item_id' | 'transcript'>;
export type InputTranscriptCompleted = Pick<
  ConversationItemInputAudioTranscriptionCompletedEvent,
  'type' | 'item_id' | 'transcript'
>;
/** `name` is in the GA event; older servers may omit it, so it is optional here. */
export type FunctionCallArgumentsDone = Pick<
  ResponseFunctionCallArgumentsDoneEvent,
  'type' | 'response_id' | 'item_id' | 'call_id' | 'arguments'
> & { name: string | undefined };
export type ResponseDone = Pick<ResponseDoneEvent, 'type'> & {
  response: {
    id: string;
    status: ResponseStatus;
    usage: RealtimeResponseUsage | undefined;
    status_details: unknown;
    /** `status_details.reason` of an incomplete/cancelled response, or `status_details.error.code` (else `.type`) of a failed one. */
    reason: string | undefined;
  };
};
/** One limit of `rate_limits.updated`, as read: `reset_seconds` until `remaining` is back to `limit`. */
export interface RateLimitInfo {
  name: string;
  limit: number;
  remaining: number;
  reset_seconds: number;
}
export type RateLimitsUpdated = Pick<RateLimitsUpdatedEvent, 'type'> & { rate_limits: RateLimitInfo[] };
export type ServerError = Pick<RealtimeErrorEvent, 'type'> & {
  error: Pick<RealtimeError, 'type' | 'message'> & { code: string | undefined; event_id: string | undefined };
};
/** A well-formed event callbridge does not act on (conversation.item.added, …). */
export interface UnhandledServerEvent {
  type: 'unhandled';
  originalType: string;
}

export type HandledServerEvent =
  | SessionCreated
  | SessionUpdated
  | SpeechStarted
  | SpeechStopped
  | ResponseCreated
  | OutputItemAdded
  | OutputItemDone
  | AudioDelta
  | AudioDone
  | AudioTranscriptDelta
  | AudioTranscriptDone
  | InputTranscriptCompleted
  | FunctionCallArgumentsDone
  | ResponseDone
  | RateLimitsUpdated
  | ServerError;

export type ServerEvent = HandledServerEvent | UnhandledServerEvent;

export type ParseServerResult = { ok: true; event: ServerEvent } | { ok: false; error: string };

// Every handled type must be a real server event type of the openai package.
type _AllHandledAreReal = HandledServerEvent['type'] extends RealtimeServerEvent['type'] ? true : never;
const _allHandledAreReal: _AllHandledAreReal = true;
void _allHandledAreReal;

type Obj = Record<string, unknown>;
class Invalid extends Error {}

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
function obj(o: Obj, key: string): Obj {
  const v = o[key];
  if (!isObj(v)) throw new Invalid(`${key}: expected an object`);
  return v;
}
function str(o: Obj, key: string): string {
  const v = o[key];
  if (typeof v !== 'string') throw new Invalid(`${key}: expected a string`);
  return v;
}
function optStr(o: Obj, key: string): string | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new Invalid(`${key}: expected a string`);
  return v;
}
function ms(o: Obj, key: string): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new Invalid(`${key}: expected a non-negative number`);
  return v;
}

/** A count or duration that may be absent (0), but not of the wrong type or negative. */
function num(o: Obj, key: string): number {
  const v = o[key];
  if (v === undefined || v === null) return 0;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new Invalid(`${key}: expected a non-negative number`);
  return v;
}

/** Why a response stopped: `status_details.reason`, or the failure's error code (else its type). Never throws. */
function endReason(details: unknown): string | undefined {
  if (!isObj(details)) return undefined;
  if (typeof details.reason === 'string') return details.reason.slice(0, 64);
  const err = details.error;
  if (isObj(err)) {
    if (typeof err.code === 'string') return err.code.slice(0, 64);
    if (typeof err.type === 'string') return err.type.slice(0, 64);
  }
  return undefined;
}

const RESPONSE_STATUSES: ReadonlySet<string> = new Set<ResponseStatus>(['completed', 'cancelled', 'failed', 'incomplete']);

function outputItem(o: Obj): OutputItemInfo {
  const item = obj(o, 'item');
  return {
    id: optStr(item, 'id'),
    type: str(item, 'type'),
    name: optStr(item, 'name'),
    call_id: optStr(item, 'call_id'),
    arguments: optStr(item, 'arguments'),
  };
}

function usageOf(r: Obj): RealtimeResponseUsage | undefined {
  const u = r.usage;
  if (u === undefined || u === null) return undefined;
  if (!isObj(u)) throw new Invalid('response.usage: expected an object');
  // Token counts are read defensively by usageFromResponse; keep the object as sent.
  return u as RealtimeResponseUsage;
}

function parseHandled(type: string, o: Obj): ServerEvent {
  switch (type) {
    case 'session.created':
    case 'session.updated':
      // Only the arrival matters; the effective session is not read.
      return { type };
    case 'input_audio_buffer.speech_started':
      return { type, item_id: str(o, 'item_id'), audio_start_ms: ms(o, 'audio_start_ms') };
    case 'input_audio_buffer.speech_stopped':
      return { type, item_id: str(o, 'item_id'), audio_end_ms: ms(o, 'audio_end_ms') };
    case 'response.created':
      return { type, response: { id: str(obj(o, 'response'), 'id') } };
    case 'response.output_item.added':
    case 'response.output_item.done':
      return { type, response_id: str(o, 'response_id'), item: outputItem(o) };
    case 'response.output_audio.delta':
      return { type, response_id: str(o, 'response_id'), item_id: str(o, 'item_id'), delta: str(o, 'delta') };
    case 'response.output_audio.done':
      return { type, response_id: str(o, 'response_id'), item_id: str(o, 'item_id') };
    case 'response.output_audio_transcript.delta':
      return {
        type,
        response_id: str(o, 'response_id'),
        item_id: str(o, 'item_id'),
        content_index: num(o, 'content_index'),
        delta: str(o, 'delta'),
      };
    case 'response.output_audio_transcript.done':
      return { type, response_id: str(o, 'response_id'), item_id: str(o, 'item_id'), transcript: str(o, 'transcript') };
    case 'conversation.item.input_audio_transcription.completed':
      return { type, item_id: str(o, 'item_id'), transcript: str(o, 'transcript') };
    case 'response.function_call_arguments.done':
      return {
        type,
        response_id: str(o, 'response_id'),
        item_id: str(o, 'item_id'),
        call_id: str(o, 'call_id'),
        arguments: str(o, 'arguments'),
        name: optStr(o, 'name'),
      };
    case 'response.done': {
      const r = obj(o, 'response');
      const status = str(r, 'status');
      if (!RESPONSE_STATUSES.has(status)) throw new Invalid(`response.status: unexpected ${status.slice(0, 20)}`);
      return {
        type,
        response: { id: str(r, 'id'), status: status as ResponseStatus, usage: usageOf(r), status_details: r.status_details, reason: endReason(r.status_details) },
      };
    }
    case 'rate_limits.updated': {
      const list = o.rate_limits;
      if (!Array.isArray(list)) throw new Invalid('rate_limits: expected an array');
      const rate_limits: RateLimitInfo[] = [];
      for (const l of list) {
        if (!isObj(l)) throw new Invalid('rate_limits[]: expected an object');
        rate_limits.push({ name: optStr(l, 'name') ?? 'unknown', limit: num(l, 'limit'), remaining: num(l, 'remaining'), reset_seconds: num(l, 'reset_seconds') });
      }
      return { type, rate_limits };
    }
    case 'error': {
      const e = obj(o, 'error');
      return {
        type,
        error: { type: str(e, 'type'), message: str(e, 'message'), code: optStr(e, 'code'), event_id: optStr(e, 'event_id') },
      };
    }
    default:
      return { type: 'unhandled', originalType: type };
  }
}

/**
 * The framing every JSON wire protocol here shares (Realtime, GPT-Live, Deepgram): a text frame of
 * at most `maxChars`, holding one JSON object with a non-empty string `type`. Never throws.
 */
export function readTypedObject(text: string, maxChars: number, what = 'event'): { ok: true; type: string; raw: Obj } | { ok: false; error: string } {
  if (typeof text !== 'string') return { ok: false, error: 'not a text frame' };
  if (text.length > maxChars) return { ok: false, error: `${what} too large (${text.length} chars)` };
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return { ok: false, error: 'invalid JSON' };
  }
  if (!isObj(raw)) return { ok: false, error: 'not a JSON object' };
  const type = raw.type;
  if (typeof type !== 'string' || type.length === 0) return { ok: false, error: 'missing type' };
  return { ok: true, type, raw };
}

/** Parse one server text frame. Never throws. */
export function parseServerEvent(text: string): ParseServerResult {
  const frame = readTypedObject(text, MAX_SERVER_EVENT_CHARS);
  if (!frame.ok) return frame;
  const { type, raw } = frame;
  try {
    return { ok: true, event: parseHandled(type, raw) };
  } catch (e) {
    if (e instanceof Invalid) return { ok: false, error: `${type.slice(0, 60)}: ${e.message}` };
    return { ok: false, error: 'invalid event' };
  }
}

function count(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : 0;
}

/** Map a response's usage report to the provider-neutral Usage (missing counts are 0). */
export function usageFromResponse(u: RealtimeResponseUsage | undefined): Usage | undefined {
  if (u === undefined) return undefined;
  const inp = isObj(u.input_token_details) ? u.input_token_details : undefined;
  const out = isObj(u.output_token_details) ? u.output_token_details : undefined;
  const cached = isObj(inp?.cached_tokens_details) ? (inp.cached_tokens_details as Record<string, unknown>) : undefined;
  return {
    inputTextTokens: count(inp?.text_tokens),
    inputAudioTokens: count(inp?.audio_tokens),
    inputCachedTokens: count(inp?.cached_tokens),
    inputCachedAudioTokens: count(cached?.audio_tokens),
    outputTextTokens: count(out?.text_tokens),
    outputAudioTokens: count(out?.audio_tokens),
  };
}

// ---------------------------------------------------------------------------
// Client events

export interface VadSettings {
  /** 0..1 activation threshold. */
  threshold: number;
  prefixPaddingMs: number;
  silenceDurationMs: number;
}

export interface SessionSettings {
  model: string;
  instructions: string;
  voice: string;
  format: ModelAudioFormat;
  /** Input transcription model; empty string = no caller transcription. */
  transcriptionModel: string;
  vad: VadSettings;
  tools: ToolSpec[];
  /** Reasoning effort for models that reason (gpt-realtime-2 and later); undefined = the model's default. */
  reasoningEffort?: ReasoningEffort;
}

export const REASONING_EFFORTS = ['minimal', 'low', 'medium', 'high', 'xhigh'] as const;
export type ReasoningEffort = (typeof REASONING_EFFORTS)[number];

/** The GA audio format object for a ModelAudioFormat. */
export function audioFormat(format: ModelAudioFormat): RealtimeAudioFormats {
  switch (format) {
    case 'pcm24k': return { type: 'audio/pcm', rate: 24000 };
    case 'ulaw8k': return { type: 'audio/pcmu' };
  }
}

function functionTool(t: ToolSpec): RealtimeFunctionTool {
  return { type: 'function', name: t.name, description: t.description, parameters: t.parameters };
}

/** The `session.update` event object (GA shape, PROTOCOLS.md). */
export function sessionUpdateEvent(s: SessionSettings): SessionUpdateEvent & { session: RealtimeSessionCreateRequest } {
  const format = audioFormat(s.format);
  const session: RealtimeSessionCreateRequest = {
    type: 'realtime',
    model: s.model,
    instructions: s.instructions,
    output_modalities: ['audio'],
    audio: {
      input: {
        format,
        ...(s.transcriptionModel ? { transcription: { model: s.transcriptionModel } } : {}),
        turn_detection: {
          type: 'server_vad',
          threshold: s.vad.threshold,
          prefix_padding_ms: s.vad.prefixPaddingMs,
          silence_duration_ms: s.vad.silenceDurationMs,
          create_response: true,
          interrupt_response: true,
        },
      },
      output: { format, voice: s.voice },
    },
    tools: s.tools.map(functionTool),
    tool_choice: 'auto',
  };
  // `session.reasoning` (gpt-realtime-2+) is newer than the openai package's session type.
  const withReasoning = s.reasoningEffort ? Object.assign(session, { reasoning: { effort: s.reasoningEffort } }) : session;
  return { type: 'session.update', session: withReasoning };
}

/** JSON text of `session.update`. */
export function buildSessionUpdate(s: SessionSettings): string {
  return JSON.stringify(sessionUpdateEvent(s));
}

/** `input_audio_buffer.append`, hot path. `audioB64` MUST be base64 (inserted unescaped). */
export function appendAudioEvent(audioB64: string): string {
  return `{"type":"input_audio_buffer.append","audio":"${audioB64}"}`;
}
// The template above must stay this shape:
const _appendShape: InputAudioBufferAppendEvent = { type: 'input_audio_buffer.append', audio: '' };
void _appendShape;

/** A caller-side text message (e.g. DTMF digits) added to the conversation. */
export function userTextEvent(text: string): string {
  const ev: ConversationItemCreateEvent = {
    type: 'conversation.item.create',
    item: { type: 'message', role: 'user', content: [{ type: 'input_text', text }] },
  };
  return JSON.stringify(ev);
}

/** A tool call's result; follow with `responseCreateEvent()` to have the model speak it. */
export function functionCallOutputEvent(callId: string, output: string): string {
  const ev: ConversationItemCreateEvent = {
    type: 'conversation.item.create',
    item: { type: 'function_call_output', call_id: callId, output },
  };
  return JSON.stringify(ev);
}

/**
 * `conversation.item.create` for one replayed item (GA shapes): user text as `input_text`, assistant
 * text as `output_text` (the server does not take assistant audio back), a function call with its
 * `call_id`, `name` and `arguments`, and its output.
 */
export function replayItemEvent(item: ConversationItem): string {
  let ev: ConversationItemCreateEvent;
  switch (item.type) {
    case 'user_text':
      ev = { type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: item.text }] } };
      break;
    case 'assistant_text':
      ev = { type: 'conversation.item.create', item: { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: item.text }] } };
      break;
    case 'function_call':
      ev = {
        type: 'conversation.item.create',
        item: { type: 'function_call', call_id: item.callId, name: item.name, arguments: item.arguments },
      };
      break;
    case 'function_call_output':
      ev = { type: 'conversation.item.create', item: { type: 'function_call_output', call_id: item.callId, output: item.output } };
      break;
  }
  return JSON.stringify(ev);
}

/** `response.create`, with one-off instructions for this response only if given. */
export function responseCreateEvent(instructions?: string): string {
  const ev: ResponseCreateEvent =
    instructions === undefined ? { type: 'response.create' } : { type: 'response.create', response: { instructions } };
  return JSON.stringify(ev);
}

export function responseCancelEvent(): string {
  const ev: ResponseCancelEvent = { type: 'response.cancel' };
  return JSON.stringify(ev);
}

/** Cut an assistant item to what the caller heard. `audioEndMs` ≤ the item's audio already sent (else a server error). */
export function truncateEvent(itemId: string, audioEndMs: number): string {
  const ev: ConversationItemTruncateEvent = {
    type: 'conversation.item.truncate',
    item_id: itemId,
    content_index: 0,
    audio_end_ms: Math.max(0, Math.floor(audioEndMs)),
  };
  return JSON.stringify(ev);
}
