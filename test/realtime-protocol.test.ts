import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  MAX_SERVER_EVENT_CHARS,
  appendAudioEvent,
  audioFormat,
  buildSessionUpdate,
  functionCallOutputEvent,
  parseServerEvent,
  responseCancelEvent,
  responseCreateEvent,
  truncateEvent,
  usageFromResponse,
  userTextEvent,
  type ServerEvent,
  type SessionSettings,
} from '../src/realtime/protocol.js';

const events = readFileSync(new URL('./fixtures/realtime/server-events.jsonl', import.meta.url), 'utf8')
  .split('\n')
  .filter((l) => l.length > 0);

function ok(text: string): ServerEvent {
  const r = parseServerEvent(text);
  if (!r.ok) throw new Error(`expected ok: ${r.error}`);
  return r.event;
}

const settings: SessionSettings = {
  model: 'gpt-realtime',
  instructions: 'Be brief.',
  voice: 'marin',
  format: 'pcm24k',
  transcriptionModel: 'gpt-4o-transcribe',
  vad: { threshold: 0.5, prefixPaddingMs: 300, silenceDurationMs: 500 },
  tools: [
    {
      name: 'check_eligibility',
      description: 'Check coverage',
      parameters: { type: 'object', properties: { member_id: { type: 'string' } }, required: ['member_id'] },
    },
  ],
};

describe('parseServerEvent on recorded events', () => {
  it('recognises every recorded event; the ones callbridge does not use are "unhandled"', () => {
    const types = events.map((e) => ok(e).type);
    expect(types).toEqual([
      'session.created',
      'session.updated',
      'input_audio_buffer.speech_started',
      'input_audio_buffer.speech_stopped',
      'unhandled',
      'unhandled',
      'response.created',
      'response.output_item.added',
      'response.output_audio.delta',
      'conversation.item.input_audio_transcription.completed',
      'response.output_audio.done',
      'response.output_audio_transcript.done',
      'response.output_item.done',
      'response.done',
      'rate_limits.updated',
      'response.created',
      'response.output_item.added',
      'unhandled',
      'response.function_call_arguments.done',
      'response.output_item.done',
      'response.done',
      'error',
    ]);
    expect(ok(events[14]!)).toEqual({
      type: 'rate_limits.updated',
      rate_limits: [{ name: 'tokens', limit: 20000, remaining: 19700, reset_seconds: 0.9 }],
    });
  });

  it('keeps the fields callbridge reads', () => {
    expect(ok(events[2]!)).toEqual({ type: 'input_audio_buffer.speech_started', item_id: 'item_in1', audio_start_ms: 1000 });
    expect(ok(events[3]!)).toEqual({ type: 'input_audio_buffer.speech_stopped', item_id: 'item_in1', audio_end_ms: 2600 });
    expect(ok(events[6]!)).toEqual({ type: 'response.created', response: { id: 'resp_1' } });
    const delta = ok(events[8]!);
    expect(delta.type === 'response.output_audio.delta' && delta.delta).toBe(JSON.parse(events[8]!).delta);
    expect(ok(events[18]!)).toEqual({
      type: 'response.function_call_arguments.done',
      response_id: 'resp_2',
      item_id: 'item_fc1',
      call_id: 'call_abc',
      name: 'check_eligibility',
      arguments: '{"member_id":"ABC123","date_of_birth":"1980-01-02"}',
    });
    expect(ok(events[16]!)).toMatchObject({
      type: 'response.output_item.added',
      response_id: 'resp_2',
      item: { id: 'item_fc1', type: 'function_call', name: 'check_eligibility', call_id: 'call_abc' },
    });
    expect(ok(events[21]!)).toEqual({
      type: 'error',
      error: {
        type: 'invalid_request_error',
        code: 'response_cancel_not_active',
        message: 'Cancellation failed: no active response found.',
        event_id: 'evt_client_9',
      },
    });
  });

  it('reads an assistant transcript delta (GA shape)', () => {
    const text = JSON.stringify({
      type: 'response.output_audio_transcript.delta',
      event_id: 'event_9a',
      response_id: 'resp_1',
      item_id: 'item_out1',
      output_index: 0,
      content_index: 0,
      delta: 'Sure. Can',
    });
    expect(ok(text)).toEqual({ type: 'response.output_audio_transcript.delta', response_id: 'resp_1', item_id: 'item_out1', content_index: 0, delta: 'Sure. Can' });
  });

  it('maps usage, including cached tokens', () => {
    const done = ok(events[13]!);
    if (done.type !== 'response.done') throw new Error('response.done expected');
    expect(done.response.status).toBe('completed');
    expect(usageFromResponse(done.response.usage)).toEqual({
      inputTextTokens: 120,
      inputAudioTokens: 80,
      inputCachedTokens: 64,
      inputCachedAudioTokens: 0,
      outputTextTokens: 20,
      outputAudioTokens: 80,
    });
    expect(usageFromResponse(undefined)).toBe(undefined);
    expect(usageFromResponse({ input_tokens: 3 })).toEqual({
      inputTextTokens: 0,
      inputAudioTokens: 0,
      inputCachedTokens: 0,
      inputCachedAudioTokens: 0,
      outputTextTokens: 0,
      outputAudioTokens: 0,
    });
    expect(
      usageFromResponse({ input_token_details: { audio_tokens: 500, text_tokens: 100, cached_tokens: 300, cached_tokens_details: { audio_tokens: 250, text_tokens: 50 } } }),
    ).toMatchObject({ inputCachedTokens: 300, inputCachedAudioTokens: 250 });
  });

  it('reads why a response stopped: incomplete reason, failed error code, and rate limits', () => {
    const failed = ok(
      JSON.stringify({
        type: 'response.done',
        response: { id: 'r1', status: 'failed', status_details: { type: 'failed', error: { type: 'server_error', code: 'server_error', message: 'x' } } },
      }),
    );
    expect(failed).toMatchObject({ type: 'response.done', response: { id: 'r1', status: 'failed', reason: 'server_error' } });
    const incomplete = ok(JSON.stringify({ type: 'response.done', response: { id: 'r2', status: 'incomplete', status_details: { type: 'incomplete', reason: 'max_output_tokens' } } }));
    expect(incomplete).toMatchObject({ response: { status: 'incomplete', reason: 'max_output_tokens' } });
    const typed = ok(JSON.stringify({ type: 'response.done', response: { id: 'r3', status: 'failed', status_details: { type: 'failed', error: { type: 'rate_limit_exceeded' } } } }));
    expect(typed).toMatchObject({ response: { reason: 'rate_limit_exceeded' } });
    expect(ok(JSON.stringify({ type: 'response.done', response: { id: 'r4', status: 'completed', status_details: null } }))).toMatchObject({ response: { reason: undefined } });
    expect(parseServerEvent(JSON.stringify({ type: 'rate_limits.updated', rate_limits: 'x' }))).toMatchObject({ ok: false });
    expect(parseServerEvent(JSON.stringify({ type: 'rate_limits.updated', rate_limits: [{ name: 'requests', limit: 5, remaining: -1, reset_seconds: 1 }] }))).toMatchObject({ ok: false });
  });

  it('response.done with null usage (cancelled early) has no usage', () => {
    const r = ok('{"type":"response.done","response":{"id":"r","status":"cancelled","usage":null}}');
    expect(r.type === 'response.done' && r.response.usage).toBe(undefined);
    expect(r.type === 'response.done' && r.response.status).toBe('cancelled');
  });
});

describe('parseServerEvent rejects malformed input as a value', () => {
  it.each([
    ['empty', ''],
    ['bad JSON', '{"type":'],
    ['null', 'null'],
    ['array', '[]'],
    ['no type', '{"event_id":"e"}'],
    ['type not string', '{"type":1}'],
    ['empty type', '{"type":""}'],
    ['speech_started without item_id', '{"type":"input_audio_buffer.speech_started","audio_start_ms":1}'],
    ['speech_started ms as string', '{"type":"input_audio_buffer.speech_started","item_id":"i","audio_start_ms":"1"}'],
    ['speech_stopped negative ms', '{"type":"input_audio_buffer.speech_stopped","item_id":"i","audio_end_ms":-5}'],
    ['response.created without id', '{"type":"response.created","response":{}}'],
    ['audio delta without delta', '{"type":"response.output_audio.delta","response_id":"r","item_id":"i"}'],
    ['audio delta number', '{"type":"response.output_audio.delta","response_id":"r","item_id":"i","delta":5}'],
    ['audio done without item', '{"type":"response.output_audio.done","response_id":"r"}'],
    ['transcript delta without delta', '{"type":"response.output_audio_transcript.delta","response_id":"r","item_id":"i","content_index":0}'],
    ['transcript delta without item', '{"type":"response.output_audio_transcript.delta","response_id":"r","content_index":0,"delta":"a"}'],
    ['transcript delta index as string', '{"type":"response.output_audio_transcript.delta","response_id":"r","item_id":"i","content_index":"0","delta":"a"}'],
    ['transcript done without text', '{"type":"response.output_audio_transcript.done","response_id":"r","item_id":"i"}'],
    ['input transcript null', '{"type":"conversation.item.input_audio_transcription.completed","item_id":"i","transcript":null}'],
    ['args done without call_id', '{"type":"response.function_call_arguments.done","response_id":"r","item_id":"i","arguments":"{}"}'],
    ['args done name not string', '{"type":"response.function_call_arguments.done","response_id":"r","item_id":"i","call_id":"c","arguments":"{}","name":3}'],
    ['output item without item', '{"type":"response.output_item.added","response_id":"r"}'],
    ['output item without type', '{"type":"response.output_item.done","response_id":"r","item":{"id":"x"}}'],
    ['response.done unknown status', '{"type":"response.done","response":{"id":"r","status":"in_progress"}}'],
    ['response.done usage not object', '{"type":"response.done","response":{"id":"r","status":"completed","usage":7}}'],
    ['error without error', '{"type":"error"}'],
    ['error without message', '{"type":"error","error":{"type":"x"}}'],
  ])('%s', (_n, text) => {
    const r = parseServerEvent(text);
    expect(r.ok).toBe(false);
  });

  it('huge input is refused without parsing; deep nesting does not throw', () => {
    const big = `{"type":"response.output_audio.delta","response_id":"r","item_id":"i","delta":"${'A'.repeat(MAX_SERVER_EVENT_CHARS)}"}`;
    const r = parseServerEvent(big);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(/too large/);
    expect(() => parseServerEvent('['.repeat(200_000))).not.toThrow();
    expect(parseServerEvent(undefined as unknown as string).ok).toBe(false);
  });
});

describe('session.update (GA shape)', () => {
  it('pcm24k: audio/pcm at 24000 both ways, server VAD that answers and interrupts, tools, no beta fields', () => {
    const ev = JSON.parse(buildSessionUpdate(settings));
    expect(ev).toEqual({
      type: 'session.update',
      session: {
        type: 'realtime',
        model: 'gpt-realtime',
        instructions: 'Be brief.',
        output_modalities: ['audio'],
        audio: {
          input: {
            format: { type: 'audio/pcm', rate: 24000 },
            transcription: { model: 'gpt-4o-transcribe' },
            turn_detection: {
              type: 'server_vad',
              threshold: 0.5,
              prefix_padding_ms: 300,
              silence_duration_ms: 500,
              create_response: true,
              interrupt_response: true,
            },
          },
          output: { format: { type: 'audio/pcm', rate: 24000 }, voice: 'marin' },
        },
        tools: [
          {
            type: 'function',
            name: 'check_eligibility',
            description: 'Check coverage',
            parameters: { type: 'object', properties: { member_id: { type: 'string' } }, required: ['member_id'] },
          },
        ],
        tool_choice: 'auto',
      },
    });
  });

  it('ulaw8k: audio/pcmu both ways without a rate', () => {
    const ev = JSON.parse(buildSessionUpdate({ ...settings, format: 'ulaw8k' }));
    expect(ev.session.audio.input.format).toEqual({ type: 'audio/pcmu' });
    expect(ev.session.audio.output.format).toEqual({ type: 'audio/pcmu' });
    expect(audioFormat('ulaw8k')).toEqual({ type: 'audio/pcmu' });
  });

  it('carries none of the retired beta fields', () => {
    const text = buildSessionUpdate(settings);
    for (const beta of ['"modalities"', 'input_audio_format', 'output_audio_format', 'input_audio_transcription', '"voice":"marin","instructions"']) {
      expect(text).not.toContain(beta);
    }
    expect(JSON.parse(text).session.voice).toBe(undefined);
  });

  it('no transcription model → no transcription block; VAD numbers come from settings', () => {
    const ev = JSON.parse(
      buildSessionUpdate({ ...settings, transcriptionModel: '', vad: { threshold: 0.8, prefixPaddingMs: 100, silenceDurationMs: 900 } }),
    );
    expect(ev.session.audio.input.transcription).toBe(undefined);
    expect(ev.session.audio.input.turn_detection).toMatchObject({ threshold: 0.8, prefix_padding_ms: 100, silence_duration_ms: 900 });
  });
});

describe('client event builders', () => {
  it('input_audio_buffer.append is exact and carries the base64 verbatim', () => {
    const b64 = Buffer.from([1, 2, 3, 254, 255]).toString('base64');
    expect(appendAudioEvent(b64)).toBe(`{"type":"input_audio_buffer.append","audio":"${b64}"}`);
    expect(JSON.parse(appendAudioEvent(b64))).toEqual({ type: 'input_audio_buffer.append', audio: b64 });
  });

  it('user text and function_call_output items', () => {
    expect(JSON.parse(userTextEvent('DTMF "1"\n'))).toEqual({
      type: 'conversation.item.create',
      item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'DTMF "1"\n' }] },
    });
    expect(JSON.parse(functionCallOutputEvent('call_abc', '{"eligible":true}'))).toEqual({
      type: 'conversation.item.create',
      item: { type: 'function_call_output', call_id: 'call_abc', output: '{"eligible":true}' },
    });
  });

  it('response.create with and without instructions; response.cancel', () => {
    expect(JSON.parse(responseCreateEvent())).toEqual({ type: 'response.create' });
    expect(JSON.parse(responseCreateEvent('Greet the caller.'))).toEqual({
      type: 'response.create',
      response: { instructions: 'Greet the caller.' },
    });
    expect(JSON.parse(responseCancelEvent())).toEqual({ type: 'response.cancel' });
  });

  it('conversation.item.truncate at content 0, whole non-negative ms', () => {
    expect(JSON.parse(truncateEvent('item_out1', 1234.9))).toEqual({
      type: 'conversation.item.truncate',
      item_id: 'item_out1',
      content_index: 0,
      audio_end_ms: 1234,
    });
    expect(JSON.parse(truncateEvent('i', -3)).audio_end_ms).toBe(0);
  });
});
