/**
 * OpenAI Realtime server events → provider-neutral ModelEvents
 * (call/voice-model.ts): what each parsed server event (realtime/protocol.ts)
 * means to the session that read it. Pure: no socket, no timer, no logging;
 * its only state is the function-call bookkeeping of one session.
 *
 * Contract:
 * - `map` takes every ServerEvent in one exhaustive switch, one small
 *   handler each, and returns a value, never throws:
 *   `session_created` / `session_updated` (the handshake: the session acts
 *   on them itself), `events` (ModelEvents for the call, in order, with
 *   warnings for the session to log first, which never carry the
 *   conversation's words), `server_error` (the ModelEvent to report once the
 *   session is open, and how to refuse the handshake if it is not), or
 *   `unhandled`.
 * - Tool calls: one `tool_call` per call_id, once its name and arguments are
 *   both known, whichever event brings them (`function_call_arguments.done`,
 *   `output_item.added|done`); a call still without a name when its response
 *   is done is dropped with a warning.
 * - A server error refuses the handshake as retryable only when the server
 *   was at fault (`server_error`) or rate-limited; any other refusal will
 *   fail again with the same session.update.
 */
import type { ModelEvent } from '../call/voice-model.js';
import {
  usageFromResponse,
  type AudioDelta,
  type AudioDone,
  type AudioTranscriptDelta,
  type AudioTranscriptDone,
  type FunctionCallArgumentsDone,
  type InputTranscriptCompleted,
  type OutputItemAdded,
  type OutputItemDone,
  type RateLimitsUpdated,
  type ResponseCreated,
  type ResponseDone,
  type ServerError,
  type ServerEvent,
  type SpeechStarted,
  type SpeechStopped,
} from './protocol.js';

/** A log line the session writes (warn level); fields hold ids, codes and statuses, never the conversation's words. */
export interface Warning {
  fields: Record<string, unknown>;
  msg: string;
}

/** What one server event means to the session that read it. */
export type Mapped =
  | { kind: 'session_created' }
  | { kind: 'session_updated' }
  /** ModelEvents for the call, in order; log `warnings` first. */
  | { kind: 'events'; events: ModelEvent[]; warnings: Warning[] }
  /**
   * Once the session is open: log `warning`, then report `event`. During the handshake: the server
   * refused the session; fail the connect with `rejection`.
   */
  | {
      kind: 'server_error';
      event: Extract<ModelEvent, { type: 'error' }>;
      warning: Warning;
      rejection: { message: string; retryable: boolean };
    }
  /** Well-formed, but nothing callbridge acts on. */
  | { kind: 'unhandled'; originalType: string };

interface PendingToolCall {
  responseId: string;
  callId: string;
  arguments: string;
}

const none: Warning[] = [];

function emit(...events: ModelEvent[]): Mapped {
  return { kind: 'events', events, warnings: none };
}

/** Maps the server events of one session, in the order they arrived. */
export class RealtimeEventMapper {
  /** call_id → function name, learned from response.output_item.added|done. */
  private readonly toolNames = new Map<string, string>();
  /** Arguments done before the function's name is known. */
  private readonly pendingTools = new Map<string, PendingToolCall>();
  private readonly emittedTools = new Set<string>();

  map(ev: ServerEvent): Mapped {
    switch (ev.type) {
      case 'session.created': return { kind: 'session_created' };
      case 'session.updated': return { kind: 'session_updated' };
      case 'input_audio_buffer.speech_started': return this.speechStarted(ev);
      case 'input_audio_buffer.speech_stopped': return this.speechStopped(ev);
      case 'response.created': return this.responseCreated(ev);
      case 'response.output_item.added': return this.outputItem(ev);
      case 'response.output_item.done': return this.outputItem(ev);
      case 'response.output_audio.delta': return this.audioDelta(ev);
      case 'response.output_audio.done': return this.audioDone(ev);
      case 'response.output_audio_transcript.delta': return this.assistantTranscriptDelta(ev);
      case 'response.output_audio_transcript.done': return this.assistantTranscript(ev);
      case 'conversation.item.input_audio_transcription.completed': return this.callerTranscript(ev);
      case 'response.function_call_arguments.done': return this.functionCallArgumentsDone(ev);
      case 'response.done': return this.responseDone(ev);
      case 'rate_limits.updated': return this.rateLimits(ev);
      case 'error': return this.serverError(ev);
      case 'unhandled': return { kind: 'unhandled', originalType: ev.originalType };
      default: {
        const never: never = ev;
        return never;
      }
    }
  }

  private speechStarted(ev: SpeechStarted): Mapped {
    return emit({ type: 'speech_started', itemId: ev.item_id, audioStartMs: ev.audio_start_ms });
  }

  private speechStopped(ev: SpeechStopped): Mapped {
    return emit({ type: 'speech_stopped', itemId: ev.item_id, audioEndMs: ev.audio_end_ms });
  }

  private responseCreated(ev: ResponseCreated): Mapped {
    return emit({ type: 'response_started', responseId: ev.response.id });
  }

  /** Learn function names by call_id; a tool call whose arguments finished before its name was known goes out now. */
  private outputItem(ev: OutputItemAdded | OutputItemDone): Mapped {
    const item = ev.item;
    if (item.type !== 'function_call' || item.call_id === undefined) return emit();
    if (item.name !== undefined) this.toolNames.set(item.call_id, item.name);
    if (this.emittedTools.has(item.call_id) || item.name === undefined) return emit();
    const pending = this.pendingTools.get(item.call_id);
    if (pending) {
      this.pendingTools.delete(item.call_id);
      return emit(this.toolCall(pending.responseId, item.call_id, item.name, pending.arguments));
    }
    if (ev.type === 'response.output_item.done' && item.arguments !== undefined) {
      // The item is complete even if no arguments.done was seen.
      return emit(this.toolCall(ev.response_id, item.call_id, item.name, item.arguments));
    }
    return emit();
  }

  private functionCallArgumentsDone(ev: FunctionCallArgumentsDone): Mapped {
    if (this.emittedTools.has(ev.call_id)) return emit();
    const name = ev.name ?? this.toolNames.get(ev.call_id);
    if (name === undefined) {
      this.pendingTools.set(ev.call_id, { responseId: ev.response_id, callId: ev.call_id, arguments: ev.arguments });
      return emit();
    }
    return emit(this.toolCall(ev.response_id, ev.call_id, name, ev.arguments));
  }

  private toolCall(responseId: string, callId: string, name: string, args: string): ModelEvent {
    this.emittedTools.add(callId);
    return { type: 'tool_call', responseId, callId, name, arguments: args };
  }

  private audioDelta(ev: AudioDelta): Mapped {
    return emit({ type: 'audio', responseId: ev.response_id, itemId: ev.item_id, audio: ev.delta });
  }

  private audioDone(ev: AudioDone): Mapped {
    return emit({ type: 'audio_done', responseId: ev.response_id, itemId: ev.item_id });
  }

  private assistantTranscriptDelta(ev: AudioTranscriptDelta): Mapped {
    return emit({ type: 'assistant_transcript_delta', responseId: ev.response_id, itemId: ev.item_id, delta: ev.delta });
  }

  private assistantTranscript(ev: AudioTranscriptDone): Mapped {
    return emit({ type: 'assistant_transcript', responseId: ev.response_id, itemId: ev.item_id, text: ev.transcript });
  }

  private callerTranscript(ev: InputTranscriptCompleted): Mapped {
    return emit({ type: 'caller_transcript', itemId: ev.item_id, text: ev.transcript });
  }

  private responseDone(ev: ResponseDone): Mapped {
    const warnings: Warning[] = [];
    if (ev.response.status === 'failed' || ev.response.status === 'incomplete') {
      warnings.push({ fields: { responseId: ev.response.id, status: ev.response.status, details: ev.response.status_details }, msg: 'model response did not complete' });
    }
    for (const [callId, p] of this.pendingTools) {
      if (p.responseId !== ev.response.id) continue;
      this.pendingTools.delete(callId);
      warnings.push({ fields: { callId }, msg: 'function call without a name dropped' });
    }
    const done: ModelEvent = {
      type: 'response_done',
      responseId: ev.response.id,
      status: ev.response.status,
      ...(ev.response.reason !== undefined ? { reason: ev.response.reason } : {}),
      usage: usageFromResponse(ev.response.usage),
    };
    return { kind: 'events', events: [done], warnings };
  }

  private rateLimits(ev: RateLimitsUpdated): Mapped {
    return emit({
      type: 'rate_limits',
      limits: ev.rate_limits.map((l) => ({ name: l.name, remaining: l.remaining, resetMs: Math.round(l.reset_seconds * 1000) })),
    });
  }

  private serverError(ev: ServerError): Mapped {
    const code = ev.error.code ?? ev.error.type;
    return {
      kind: 'server_error',
      event: { type: 'error', code, message: ev.error.message },
      warning: { fields: { code, type: ev.error.type, eventId: ev.error.event_id }, msg: 'model error event' },
      rejection: {
        message: `model rejected the session: ${code}: ${ev.error.message}`,
        // Retrying the same session.update will not help, unless the server itself was at fault.
        retryable: ev.error.type === 'server_error' || /rate_limit/.test(code),
      },
    };
  }
}
