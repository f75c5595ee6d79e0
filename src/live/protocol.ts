/**
 * OpenAI GPT-Live wire protocol as callbridge uses it: pure parse/build
 * functions, no sockets (the Realtime counterpart is realtime/protocol.ts).
 * Field names follow the `openai` package's `resources/live` types and
 * ../shared/PROTOCOLS.md "OpenAI GPT-Live"; the installed package predates
 * Live, so the shapes are declared here.
 *
 * Contract:
 * - `parseLiveServerEvent` never throws. It validates (zod) only what the
 *   provider reads: the `type` string and, for each handled event, its fields.
 *   A nested Responses event (`response.event`) is parsed too, into
 *   `NestedEvent` (a function call item, a response end, or `other` for every
 *   other nested type). Well-formed events of other types come back as
 *   `{ type: 'unhandled', originalType }`; malformed input is `{ ok: false, error }`.
 * - Builders return the JSON text of one client event. `inputAudioAppendEvent`
 *   is on the hot path and is a template string: callers MUST pass base64.
 * - Text sent with `*.append` is cut to APPEND_MAX_CHARS (Live takes at most
 *   500 tokens per append; counted conservatively at 3 characters a token).
 */
import { z } from 'zod';
import { readTypedObject } from '../realtime/protocol.js';
import type { ModelAudioFormat, ToolSpec } from '../call/voice-model.js';

/** Largest server text frame accepted. */
export const MAX_LIVE_EVENT_CHARS = 8 * 1024 * 1024;
/** Live's limit for one `session.*.append` is 500 tokens; at ≤ 3 characters a token this many characters fit. */
export const APPEND_MAX_CHARS = 1500;

// ---------------------------------------------------------------------------
// Server events

const nonNeg = z.number().finite().nonnegative();
const timed = { delta: z.string(), start_ms: nonNeg, end_ms: nonNeg };

const sessionStarted = z.object({ type: z.literal('session.started') });
const outputAudioDelta = z.object({ type: z.literal('session.output_audio.delta'), delta: z.string() });
const outputTranscriptDelta = z.object({ type: z.literal('session.output_transcript.delta'), ...timed });
const inputTranscriptDelta = z.object({ type: z.literal('session.input_transcript.delta'), ...timed });
const delegationCreated = z.object({
  type: z.literal('session.delegation.created'),
  delegation: z.object({ id: z.string(), target: z.string(), response_id: z.string().nullish() }),
});
const sessionUsage = z.object({ seconds: nonNeg });
const usageUpdated = z.object({ type: z.literal('session.usage.updated'), usage: sessionUsage });
const sessionClosed = z.object({ type: z.literal('session.closed'), reason: z.string(), usage: sessionUsage.nullish() });
const errorEvent = z.object({
  type: z.literal('error'),
  error: z.object({ type: z.string().nullish(), code: z.string().nullish(), message: z.string() }),
});
const responseEvent = z.object({
  type: z.literal('response.event'),
  delegation_id: z.string().nullish(),
  event: z.looseObject({ type: z.string().min(1) }),
});

const functionCallItem = z.object({
  type: z.literal('function_call'),
  call_id: z.string().min(1),
  name: z.string().min(1),
  arguments: z.string(),
});
const nestedOutputItemDone = z.object({ type: z.literal('response.output_item.done'), item: z.looseObject({ type: z.string() }) });
const nestedResponseEnd = z.object({
  type: z.string(),
  response: z.looseObject({
    id: z.string().nullish(),
    status: z.string().nullish(),
    usage: z.looseObject({ input_tokens: nonNeg.nullish(), output_tokens: nonNeg.nullish() }).nullish(),
    error: z.looseObject({ code: z.string().nullish(), message: z.string().nullish() }).nullish(),
  }),
});

/** Nested Responses event types that end a delegated response (the map names `response.done`; the Responses stream names the others). */
const RESPONSE_END_TYPES: ReadonlySet<string> = new Set(['response.done', 'response.completed', 'response.failed', 'response.incomplete']);

/** A nested Responses streaming event as the provider reads it. */
export type NestedEvent =
  | { kind: 'function_call'; callId: string; name: string; arguments: string }
  | {
      kind: 'response_end';
      /** `completed`, `failed`, `incomplete`, …; from the event type when the snapshot has none. */
      status: string;
      usage: { inputTokens: number; outputTokens: number } | undefined;
      errorCode: string | undefined;
      errorMessage: string | undefined;
    }
  | { kind: 'other'; type: string };

export type LiveServerEvent =
  | { type: 'session.started' }
  | { type: 'session.output_audio.delta'; delta: string }
  | { type: 'session.output_transcript.delta'; delta: string; start_ms: number; end_ms: number }
  | { type: 'session.input_transcript.delta'; delta: string; start_ms: number; end_ms: number }
  | { type: 'session.delegation.created'; delegation: { id: string; target: string; response_id: string | undefined } }
  | { type: 'response.event'; delegation_id: string | undefined; event: NestedEvent }
  | { type: 'session.usage.updated'; usage: { seconds: number } }
  | { type: 'session.closed'; reason: string; usage: { seconds: number } | undefined }
  | { type: 'error'; error: { code: string; message: string } }
  | { type: 'unhandled'; originalType: string };

export type ParseLiveResult = { ok: true; event: LiveServerEvent } | { ok: false; error: string };

function nested(ev: { type: string } & Record<string, unknown>): NestedEvent {
  if (ev.type === 'response.output_item.done') {
    const d = nestedOutputItemDone.parse(ev);
    if (d.item.type !== 'function_call') return { kind: 'other', type: ev.type };
    const f = functionCallItem.parse(d.item);
    return { kind: 'function_call', callId: f.call_id, name: f.name, arguments: f.arguments };
  }
  if (RESPONSE_END_TYPES.has(ev.type)) {
    const r = nestedResponseEnd.parse(ev).response;
    const fromType = ev.type === 'response.done' ? 'completed' : ev.type.slice('response.'.length);
    return {
      kind: 'response_end',
      status: r.status ?? fromType,
      usage: r.usage ? { inputTokens: r.usage.input_tokens ?? 0, outputTokens: r.usage.output_tokens ?? 0 } : undefined,
      errorCode: r.error?.code ?? undefined,
      errorMessage: r.error?.message ?? undefined,
    };
  }
  return { kind: 'other', type: ev.type };
}

function parseHandled(type: string, raw: Record<string, unknown>): LiveServerEvent {
  switch (type) {
    case 'session.started':
      return sessionStarted.parse(raw);
    case 'session.output_audio.delta':
      return outputAudioDelta.parse(raw);
    case 'session.output_transcript.delta':
      return outputTranscriptDelta.parse(raw);
    case 'session.input_transcript.delta':
      return inputTranscriptDelta.parse(raw);
    case 'session.delegation.created': {
      const e = delegationCreated.parse(raw);
      return { type: e.type, delegation: { id: e.delegation.id, target: e.delegation.target, response_id: e.delegation.response_id ?? undefined } };
    }
    case 'response.event': {
      const e = responseEvent.parse(raw);
      return { type: e.type, delegation_id: e.delegation_id ?? undefined, event: nested(e.event) };
    }
    case 'session.usage.updated': {
      const e = usageUpdated.parse(raw);
      return { type: e.type, usage: { seconds: e.usage.seconds } };
    }
    case 'session.closed': {
      const e = sessionClosed.parse(raw);
      return { type: e.type, reason: e.reason, usage: e.usage ? { seconds: e.usage.seconds } : undefined };
    }
    case 'error': {
      const e = errorEvent.parse(raw);
      return { type: e.type, error: { code: e.error.code ?? e.error.type ?? 'unknown', message: e.error.message } };
    }
    default:
      return { type: 'unhandled', originalType: type };
  }
}

/** Parse one server text frame. Never throws. */
export function parseLiveServerEvent(text: string): ParseLiveResult {
  const frame = readTypedObject(text, MAX_LIVE_EVENT_CHARS);
  if (!frame.ok) return frame;
  const { type, raw } = frame;
  try {
    return { ok: true, event: parseHandled(type, raw) };
  } catch (e) {
    if (e instanceof z.ZodError) {
      const issue = e.issues[0];
      return { ok: false, error: `${type.slice(0, 60)}: ${issue ? `${issue.path.join('.')} ${issue.message}` : 'invalid'}` };
    }
    return { ok: false, error: `${type.slice(0, 60)}: invalid event` };
  }
}

// ---------------------------------------------------------------------------
// Client events

export type LiveAudioFormat = { type: 'audio/pcmu'; rate: 8000 } | { type: 'audio/pcm'; rate: 24000 };

export function liveAudioFormat(format: ModelAudioFormat): LiveAudioFormat {
  switch (format) {
    case 'ulaw8k':
      return { type: 'audio/pcmu', rate: 8000 };
    case 'pcm24k':
      return { type: 'audio/pcm', rate: 24000 };
    default: {
      const never: never = format;
      throw new Error(`unknown audio format ${String(never)}`);
    }
  }
}

/** A start-history message (Live's InitialItem): one text part. */
export type InitialMessage =
  | { type: 'message'; role: 'developer' | 'user'; content: [{ type: 'input_text'; text: string }] }
  | { type: 'message'; role: 'assistant'; content: [{ type: 'output_text'; text: string }] };

export function initialMessage(role: 'developer' | 'user' | 'assistant', text: string): InitialMessage {
  return role === 'assistant'
    ? { type: 'message', role, content: [{ type: 'output_text', text }] }
    : { type: 'message', role, content: [{ type: 'input_text', text }] };
}

/** The instructions of the delegated Responses model: it runs the tools, the Live model speaks. */
export const DELEGATION_INSTRUCTIONS = 'Call the tools the task needs; answer with the facts.';

export interface LiveSessionSettings {
  model: string;
  instructions: string;
  voice: string;
  format: ModelAudioFormat;
  /** The Responses model the Live model delegates tool work to. */
  backendModel: string;
  tools: readonly ToolSpec[];
  /** Already fitted to Live's start-history limits (live/history.ts). */
  input: readonly InitialMessage[];
}

export interface SessionStartEvent {
  type: 'session.start';
  session: {
    model: string;
    instructions: string;
    audio: { format: LiveAudioFormat; output: { voice: string } };
    delegation: {
      type: 'responses';
      responses: {
        model: string;
        instructions: string;
        tools: { type: 'function'; name: string; description: string; parameters: Record<string, unknown> }[];
        parallel_tool_calls: boolean;
      };
    };
    input: InitialMessage[];
  };
}

export function sessionStartEvent(s: LiveSessionSettings): SessionStartEvent {
  return {
    type: 'session.start',
    session: {
      model: s.model,
      instructions: s.instructions,
      audio: { format: liveAudioFormat(s.format), output: { voice: s.voice } },
      delegation: {
        type: 'responses',
        responses: {
          model: s.backendModel,
          instructions: DELEGATION_INSTRUCTIONS,
          tools: s.tools.map((t) => ({ type: 'function', name: t.name, description: t.description, parameters: t.parameters })),
          parallel_tool_calls: true,
        },
      },
      input: [...s.input],
    },
  };
}

export function buildSessionStart(s: LiveSessionSettings): string {
  return JSON.stringify(sessionStartEvent(s));
}

/** `session.input_audio.append`; `audioB64` MUST be base64 (no JSON escaping is done). */
export function inputAudioAppendEvent(audioB64: string): string {
  return `{"type":"session.input_audio.append","audio":"${audioB64}"}`;
}

function cutAppend(text: string): string {
  return text.length <= APPEND_MAX_CHARS ? text : text.slice(0, APPEND_MAX_CHARS);
}

/** Silent context for the model (DTMF digits, tool-side notices): `session.thinking.append`. */
export function thinkingAppendEvent(text: string): string {
  return JSON.stringify({ type: 'session.thinking.append', content: cutAppend(text), delegation_id: null });
}

/** Context the model speaks (the greeting, "say this" prompts): `session.commentary.append`. */
export function commentaryAppendEvent(text: string): string {
  return JSON.stringify({ type: 'session.commentary.append', content: cutAppend(text), delegation_id: null });
}

/** A tool's result for the delegated Responses model. */
export function functionCallOutputItemEvent(callId: string, output: string): string {
  return JSON.stringify({ type: 'response.item.create', item: { type: 'function_call_output', call_id: callId, output } });
}

/** Continue a delegated response whose tool calls are answered. */
export function responseCreateEvent(): string {
  return '{"type":"response.create"}';
}

export function sessionCloseEvent(): string {
  return '{"type":"session.close"}';
}
