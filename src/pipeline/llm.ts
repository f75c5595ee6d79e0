/**
 * The language-model stage of the STT → LLM → TTS pipeline (issue 19): a
 * provider-neutral port. The pipeline session keeps the conversation and
 * asks for one streamed completion per answer; the stage turns the vendor's
 * stream into text deltas and whole tool calls.
 *
 * Contract of an LlmStream (every provider keeps it):
 * - Events arrive in stream order: any number of `text_delta`, then the
 *   `tool_call`s the model made (each whole: its arguments are complete JSON
 *   text as the model wrote them), then exactly one terminal event, `done` or
 *   `error`. `first_token` is not an event: the caller times the first
 *   `text_delta` or `tool_call` itself.
 * - `error` ends the stream (nothing after it); `retryable` says whether the
 *   same request may succeed if sent again (429, 5xx, a dropped connection,
 *   a timeout before the first token), `retryAfterMs` the server's hint.
 *   Text already delivered before a mid-stream error stays delivered.
 * - `cancel()` (barge-in) aborts the HTTP request at once; nothing is
 *   emitted after it returns. Calls after a terminal event are ignored.
 * - `done.usage` is what the vendor billed for the request (0s when it gave
 *   none, with `reported: false`).
 * - No timers or sockets remain after the terminal event or `cancel()`.
 */

import type { ToolSpec } from '../tools/spec.js';

/** One whole function call the model asked for. */
export interface LlmToolCall {
  callId: string;
  name: string;
  /** JSON text, as the model wrote it (may be invalid: the tool runner checks it). */
  arguments: string;
}

/** The conversation as the stage sends it, in order (Chat Completions roles). */
export type LlmMessage =
  | { role: 'system'; content: string }
  | { role: 'user'; content: string }
  | { role: 'assistant'; content: string; toolCalls?: readonly LlmToolCall[] }
  | { role: 'tool'; callId: string; content: string };

export interface LlmRequest {
  messages: readonly LlmMessage[];
  tools: readonly ToolSpec[];
  /** Provider default when absent. */
  maxOutputTokens?: number;
  temperature?: number;
}

export interface LlmUsage {
  inputTokens: number;
  /** Of inputTokens, served from the vendor's prompt cache. */
  cachedInputTokens: number;
  outputTokens: number;
  /** False when the vendor sent no usage (the counts are then 0). */
  reported: boolean;
}

export type LlmFinishReason = 'stop' | 'tool_calls' | 'length' | 'content_filter';

export type LlmEvent =
  | { type: 'text_delta'; delta: string }
  | { type: 'tool_call'; call: LlmToolCall }
  | { type: 'done'; finishReason: LlmFinishReason; usage: LlmUsage }
  | { type: 'error'; error: LlmError };

export interface LlmStream {
  /** Adds a listener; returns a function that removes it. Events before the first listener are queued. */
  onEvent(listener: (ev: LlmEvent) => void): () => void;
  cancel(): void;
}

/** Streams completions from one model. */
export interface LanguageModel {
  readonly name: string;
  /** The model asked for (priced from the one price table). */
  readonly model: string;
  /** Starts the request at once; failures arrive as an `error` event, never as a throw. */
  stream(req: LlmRequest, signal?: AbortSignal): LlmStream;
}

export class LlmError extends Error {
  constructor(
    message: string,
    /** Sending the same request again may succeed. */
    readonly retryable: boolean,
    /** HTTP status, or `timeout`, `aborted`, `network`, `bad_response`. */
    readonly code: number | string,
    /** The server's Retry-After (or reset header), ms, when it gave one. */
    readonly retryAfterMs?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'LlmError';
  }
}
