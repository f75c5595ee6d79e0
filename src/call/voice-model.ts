/**
 * The model side of a call, as the CallSession sees it: one small,
 * provider-neutral port. OpenAI Realtime (src/realtime/) implements it first;
 * a GPT-Live provider or an STT→LLM→TTS pipeline slots in beside it by
 * implementing the same interface, and reuses instead of rewriting the
 * reconnects (call/model-link.ts with call/history.ts and call/dial.ts) and
 * the reachability record that /voice/health reads (call/reachability.ts,
 * told each connect's outcome). Nothing here knows sockets or JSON.
 *
 * Audio formats are named by what travels: `pcm24k` = PCM16 little-endian
 * mono 24 kHz, `ulaw8k` = G.711 µ-law 8 kHz. Audio crosses this port as
 * base64 strings, because that is what both Twilio and OpenAI put on the wire:
 * the relay never decodes audio it does not have to transform.
 */

import type { Usage } from '../records.js';
import type { ToolSpec } from '../tools/spec.js';

export type { Usage, ToolSpec };

export type ModelAudioFormat = 'pcm24k' | 'ulaw8k';


/** A piece of an item's text and where it is spoken, ms from the start of the item's audio. */
export interface TimedText {
  text: string;
  startMs: number;
  endMs: number;
}

export type ResponseStatus = 'completed' | 'cancelled' | 'failed' | 'incomplete';

/** Events a model session reports to its call. One discriminated union. */
export type ModelEvent =
  | { type: 'ready' }
  /** Caller started speaking (server VAD). `audioStartMs`: position in the input audio stream. */
  | { type: 'speech_started'; itemId: string; audioStartMs: number }
  | { type: 'speech_stopped'; itemId: string; audioEndMs: number }
  | { type: 'response_started'; responseId: string }
  /** A piece of the assistant's voice, base64 in the session's output format. */
  | { type: 'audio'; responseId: string; itemId: string; audio: string }
  | { type: 'audio_done'; responseId: string; itemId: string }
  /**
   * More of the assistant's words for an output item, as its audio is generated (appended in
   * order; the text so far). `assistant_transcript` later gives the item's final text.
   */
  | { type: 'assistant_transcript_delta'; responseId: string; itemId: string; delta: string }
  /**
   * The assistant's words for an output item (final text of that item). `words`, when the
   * provider times its text (GPT-Live's output transcript deltas): each piece's span in ms from
   * the start of that item's audio, in order; a cut keeps exactly the pieces heard.
   */
  | { type: 'assistant_transcript'; responseId: string; itemId: string; text: string; words?: readonly TimedText[] }
  /**
   * Billed usage since the last report, for providers that bill apart from responses
   * (GPT-Live: active audio seconds). Realtime reports its tokens on `response_done`.
   */
  | { type: 'usage'; usage: Usage }
  /**
   * A pipeline provider's stages for the turn a response answers, each as ms after that turn's
   * `speech_stopped` (the local end of turn): the STT's final transcript, the LLM's first token,
   * the TTS's first audio. Sent once per answered turn, before the response's first `audio`.
   */
  | { type: 'turn_stages'; responseId: string; finalTranscriptMs?: number; firstTokenMs?: number; firstTtsAudioMs?: number }
  /** The caller's words for an input item; may arrive after the reply to it. */
  | { type: 'caller_transcript'; itemId: string; text: string }
  | { type: 'tool_call'; responseId: string; callId: string; name: string; arguments: string }
  /**
   * A response ended. `reason`: why an `incomplete` one stopped (`turn_detected`,
   * `max_output_tokens`, …) or a `failed` one's error code (`server_error`, …).
   */
  | { type: 'response_done'; responseId: string; status: ResponseStatus; reason?: string; usage: Usage | undefined }
  /** The provider's rate limits now; `resetMs` until `remaining` is restored. */
  | { type: 'rate_limits'; limits: { name: string; remaining: number; resetMs: number }[] }
  /** A recoverable provider error: the session stays open. */
  | { type: 'error'; code: string; message: string }
  /** The session is gone (socket closed, fatal error). `retryable`: a reconnect may help. */
  | { type: 'closed'; reason: string; retryable: boolean }
  // Reported by a reconnecting link (call/model-link.ts); a link never reports `closed`.
  /** The model connection was lost; the link is reconnecting. Reported at once. */
  | { type: 'link_lost'; cause: string }
  /**
   * A new connection is configured and the conversation replayed into it. `attempts`: connects tried;
   * `gapMs`: loss → restored; `unansweredTurn`: the model owed an answer when the link was lost
   * (a finished caller turn, a user text or tool output, or a response in progress or requested) —
   * the call decides whether to ask for one.
   */
  | { type: 'link_restored'; attempts: number; gapMs: number; unansweredTurn: boolean }
  /** The link gave up (reconnect budget spent or the endpoint refused for good). Terminal. */
  | { type: 'link_failed'; attempts: number; reason: string };

/**
 * A conversation item replayed into a new session, in conversation order. Assistant turns are
 * text (what the caller heard): a provider cannot take assistant audio back.
 */
export type ConversationItem =
  | { type: 'user_text'; text: string }
  | { type: 'assistant_text'; text: string }
  | { type: 'function_call'; callId: string; name: string; arguments: string }
  | { type: 'function_call_output'; callId: string; output: string };

export interface ModelSessionOptions {
  instructions: string;
  voice: string;
  tools: ToolSpec[];
  /**
   * Earlier conversation to load before the session takes audio (a reconnect, a later leg of a
   * call), in order. A provider that takes history only at start (GPT-Live) fits it to its limits
   * itself; one that takes items later (Realtime) adds them once configured. `connect` resolves
   * after the history is in.
   */
  history?: readonly ConversationItem[];
}


export interface ModelSession {
  /** Format the session expects in appendAudio and produces in 'audio' events. */
  readonly format: ModelAudioFormat;
  /** Subscribe to events (one listener; set before connect resolves or events queue until set). */
  onEvent(listener: (ev: ModelEvent) => void): void;
  /** Caller audio, base64 in `format`. Fire-and-forget. */
  appendAudio(base64: string): void;
  /** A caller-side text message (e.g. DTMF digits), added to the conversation. */
  sendUserText(text: string): void;
  /**
   * Ask the model to respond now, optionally with one-off instructions (greeting, hold prompts).
   * After tool results, this continues the response that called the tools.
   */
  createResponse(instructions?: string): void;
  cancelResponse(): void;
  /**
   * Cut an assistant item to what the caller heard (ms of that item's audio). A provider whose
   * model decides interruptions itself (GPT-Live) has nothing to send: it keeps the cut for its
   * own account of the conversation.
   */
  truncate(itemId: string, audioEndMs: number): void;
  /** Return a tool call's result; `respond` asks for a new response afterwards. */
  sendToolResult(callId: string, output: string, respond: boolean): void;
  close(): void;
}

/** Opens model sessions; one per call. Connect errors reject with ModelConnectError. */
export interface ModelProvider {
  readonly name: string;
  connect(opts: ModelSessionOptions, signal?: AbortSignal): Promise<ModelSession>;
}

export class ModelConnectError extends Error {
  constructor(message: string, readonly retryable: boolean, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ModelConnectError';
  }
}
