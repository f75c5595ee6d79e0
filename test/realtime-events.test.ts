/**
 * realtime/events.ts without a socket: parsed server events (recorded, and
 * written here) through RealtimeEventMapper into ModelEvents. The socket's
 * side (handshake, queueing, skipping malformed frames) is
 * realtime-provider.test.ts; the parser's is realtime-protocol.test.ts.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { ModelEvent } from '../src/call/voice-model.js';
import { RealtimeEventMapper, type Mapped } from '../src/realtime/events.js';
import { parseServerEvent } from '../src/realtime/protocol.js';

const fixture = readFileSync(new URL('./fixtures/realtime/server-events.jsonl', import.meta.url), 'utf8')
  .split('\n')
  .filter((l) => l.length > 0);

/** Each server event (JSON text or an object) through one mapper, in order. */
function mapAll(events: readonly (string | object)[], mapper = new RealtimeEventMapper()): Mapped[] {
  return events.map((e) => {
    const r = parseServerEvent(typeof e === 'string' ? e : JSON.stringify(e));
    if (!r.ok) throw new Error(`expected a well-formed event: ${r.error}`);
    return mapper.map(r.event);
  });
}

/** The ModelEvents an open session reports for these results. */
function reported(mapped: readonly Mapped[]): ModelEvent[] {
  return mapped.flatMap((m) => (m.kind === 'events' ? m.events : m.kind === 'server_error' ? [m.event] : []));
}

describe('RealtimeEventMapper on the recorded call', () => {
  it('maps every recorded event: the handshake and unknown events as such, the rest to ModelEvents in order', () => {
    const mapped = mapAll(fixture);
    expect(mapped.map((m) => m.kind)).toEqual([
      'session_created',
      'session_updated',
      'events',
      'events',
      'unhandled',
      'unhandled',
      ...Array(11).fill('events'),
      'unhandled',
      'events',
      'events',
      'events',
      'server_error',
    ]);
    expect(mapped[4]).toEqual({ kind: 'unhandled', originalType: 'input_audio_buffer.committed' });
    const audio = JSON.parse(fixture[8]!).delta;
    expect(reported(mapped)).toEqual([
      { type: 'speech_started', itemId: 'item_in1', audioStartMs: 1000 },
      { type: 'speech_stopped', itemId: 'item_in1', audioEndMs: 2600 },
      { type: 'response_started', responseId: 'resp_1' },
      { type: 'audio', responseId: 'resp_1', itemId: 'item_out1', audio },
      { type: 'caller_transcript', itemId: 'item_in1', text: "I'd like to check my coverage." },
      { type: 'audio_done', responseId: 'resp_1', itemId: 'item_out1' },
      { type: 'assistant_transcript', responseId: 'resp_1', itemId: 'item_out1', text: 'Sure. Can I get the Member ID?' },
      {
        type: 'response_done',
        responseId: 'resp_1',
        status: 'completed',
        usage: { inputTextTokens: 120, inputAudioTokens: 80, inputCachedTokens: 64, inputCachedAudioTokens: 0, outputTextTokens: 20, outputAudioTokens: 80 },
      },
      { type: 'rate_limits', limits: [{ name: 'tokens', remaining: 19700, resetMs: 900 }] },
      { type: 'response_started', responseId: 'resp_2' },
      {
        type: 'tool_call',
        responseId: 'resp_2',
        callId: 'call_abc',
        name: 'check_eligibility',
        arguments: '{"member_id":"ABC123","date_of_birth":"1980-01-02"}',
      },
      {
        type: 'response_done',
        responseId: 'resp_2',
        status: 'completed',
        usage: { inputTextTokens: 40, inputAudioTokens: 0, inputCachedTokens: 0, inputCachedAudioTokens: 0, outputTextTokens: 10, outputAudioTokens: 0 },
      },
      { type: 'error', code: 'response_cancel_not_active', message: 'Cancellation failed: no active response found.' },
    ]);
    // A completed call warns about nothing.
    expect(mapped.flatMap((m) => (m.kind === 'events' ? m.warnings : []))).toEqual([]);
  });

  it('a server error: the ModelEvent once open, a warning with ids and codes, and a refusal of the handshake that will not change', () => {
    const m = mapAll([fixture[21]!])[0]!;
    expect(m).toEqual({
      kind: 'server_error',
      event: { type: 'error', code: 'response_cancel_not_active', message: 'Cancellation failed: no active response found.' },
      warning: { fields: { code: 'response_cancel_not_active', type: 'invalid_request_error', eventId: 'evt_client_9' }, msg: 'model error event' },
      rejection: { message: 'model rejected the session: response_cancel_not_active: Cancellation failed: no active response found.', retryable: false },
    });
  });

  it.each([
    [{ type: 'server_error', message: 'x' }, 'server_error', true],
    [{ type: 'invalid_request_error', code: 'rate_limit_exceeded', message: 'x' }, 'rate_limit_exceeded', true],
    [{ type: 'invalid_request_error', code: 'beta_api_shape_disabled', message: 'x' }, 'beta_api_shape_disabled', false],
  ])('a refused handshake is retryable only when the server was at fault or rate-limited (%j)', (error, code, retryable) => {
    const m = mapAll([{ type: 'error', error }])[0]!;
    expect(m).toMatchObject({ kind: 'server_error', event: { code }, rejection: { retryable } });
  });
});

describe('RealtimeEventMapper: tool calls and transcripts', () => {
  it('takes a tool name from output_item.added when arguments.done has none, and from output_item.done alone', () => {
    const mapped = mapAll([
      // (1) name only on the added item
      { type: 'response.output_item.added', response_id: 'r1', item: { id: 'f1', type: 'function_call', name: 'tool_a', call_id: 'c1', arguments: '' } },
      { type: 'response.function_call_arguments.done', response_id: 'r1', item_id: 'f1', call_id: 'c1', arguments: '{"a":1}' },
      // (2) arguments before any name; the done item names it
      { type: 'response.function_call_arguments.done', response_id: 'r1', item_id: 'f2', call_id: 'c2', arguments: '{"b":2}' },
      { type: 'response.output_item.done', response_id: 'r1', item: { id: 'f2', type: 'function_call', name: 'tool_b', call_id: 'c2', arguments: '{"b":2}' } },
      // (3) only the done item
      { type: 'response.output_item.done', response_id: 'r1', item: { id: 'f3', type: 'function_call', name: 'tool_c', call_id: 'c3', arguments: '{}' } },
      // (1 again) a repeated done item for an emitted call does not emit twice
      { type: 'response.output_item.done', response_id: 'r1', item: { id: 'f1', type: 'function_call', name: 'tool_a', call_id: 'c1', arguments: '{"a":1}' } },
      // (4) never named: dropped at response.done
      { type: 'response.function_call_arguments.done', response_id: 'r1', item_id: 'f4', call_id: 'c4', arguments: '{}' },
      { type: 'response.done', response: { id: 'r1', status: 'completed', usage: null } },
    ]);
    const events = reported(mapped);
    expect(events.filter((e) => e.type === 'tool_call')).toEqual([
      { type: 'tool_call', responseId: 'r1', callId: 'c1', name: 'tool_a', arguments: '{"a":1}' },
      { type: 'tool_call', responseId: 'r1', callId: 'c2', name: 'tool_b', arguments: '{"b":2}' },
      { type: 'tool_call', responseId: 'r1', callId: 'c3', name: 'tool_c', arguments: '{}' },
    ]);
    expect(events.at(-1)).toEqual({ type: 'response_done', responseId: 'r1', status: 'completed', usage: undefined });
    expect(mapped.at(-1)).toMatchObject({ kind: 'events', warnings: [{ fields: { callId: 'c4' }, msg: 'function call without a name dropped' }] });
  });

  it('maps assistant transcript deltas, in order, before the final transcript', () => {
    const ids = { event_id: 'e', response_id: 'r1', item_id: 'a1', output_index: 0, content_index: 0 };
    const events = reported(
      mapAll([
        { type: 'response.output_audio_transcript.delta', ...ids, delta: 'Sure. ' },
        { type: 'response.output_audio_transcript.delta', ...ids, delta: 'Can I' },
        { type: 'response.output_audio_transcript.done', ...ids, transcript: 'Sure. Can I help?' },
      ]),
    );
    expect(events).toEqual([
      { type: 'assistant_transcript_delta', responseId: 'r1', itemId: 'a1', delta: 'Sure. ' },
      { type: 'assistant_transcript_delta', responseId: 'r1', itemId: 'a1', delta: 'Can I' },
      { type: 'assistant_transcript', responseId: 'r1', itemId: 'a1', text: 'Sure. Can I help?' },
    ]);
  });

  it('a response that did not complete keeps its reason and warns with its status', () => {
    const [m] = mapAll([
      { type: 'response.done', response: { id: 'r2', status: 'incomplete', status_details: { type: 'incomplete', reason: 'max_output_tokens' } } },
    ]);
    expect(m).toEqual({
      kind: 'events',
      events: [{ type: 'response_done', responseId: 'r2', status: 'incomplete', reason: 'max_output_tokens', usage: undefined }],
      warnings: [
        {
          fields: { responseId: 'r2', status: 'incomplete', details: { type: 'incomplete', reason: 'max_output_tokens' } },
          msg: 'model response did not complete',
        },
      ],
    });
  });
});
