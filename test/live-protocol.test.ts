import { describe, expect, it } from 'vitest';
import {
  APPEND_MAX_CHARS,
  buildSessionStart,
  commentaryAppendEvent,
  functionCallOutputItemEvent,
  inputAudioAppendEvent,
  parseLiveServerEvent,
  thinkingAppendEvent,
} from '../src/live/protocol.js';

const p = (o: unknown) => parseLiveServerEvent(typeof o === 'string' ? o : JSON.stringify(o));

describe('parseLiveServerEvent', () => {
  it('parses the handled events into the union', () => {
    expect(p({ type: 'session.started', event_id: 'e', session: { id: 's' } })).toEqual({ ok: true, event: { type: 'session.started' } });
    expect(p({ type: 'session.output_transcript.delta', delta: 'Hi', start_ms: 10, end_ms: 20, event_id: 'e' })).toEqual({
      ok: true,
      event: { type: 'session.output_transcript.delta', delta: 'Hi', start_ms: 10, end_ms: 20 },
    });
    expect(p({ type: 'session.closed', reason: 'expired', usage: { seconds: 3 } })).toEqual({ ok: true, event: { type: 'session.closed', reason: 'expired', usage: { seconds: 3 } } });
    expect(p({ type: 'error', error: { type: 'invalid_request_error', code: 'bad', message: 'no' } })).toEqual({ ok: true, event: { type: 'error', error: { code: 'bad', message: 'no' } } });
  });

  it('parses nested function calls and response ends; other nested types are tolerated', () => {
    const fc = p({ type: 'response.event', delegation_id: 'd1', event: { type: 'response.output_item.done', item: { type: 'function_call', call_id: 'c1', name: 'f', arguments: '{}' } } });
    expect(fc).toEqual({ ok: true, event: { type: 'response.event', delegation_id: 'd1', event: { kind: 'function_call', callId: 'c1', name: 'f', arguments: '{}' } } });
    const done = p({ type: 'response.event', event: { type: 'response.done', response: { status: 'failed', usage: { input_tokens: 5, output_tokens: 2 }, error: { code: 'server_error' } } } });
    expect(done.ok && done.event.type === 'response.event' && done.event.event).toEqual({ kind: 'response_end', status: 'failed', usage: { inputTokens: 5, outputTokens: 2 }, errorCode: 'server_error', errorMessage: undefined });
    const msg = p({ type: 'response.event', delegation_id: 'd1', event: { type: 'response.output_item.done', item: { type: 'message' } } });
    expect(msg.ok && msg.event.type === 'response.event' && msg.event.event).toEqual({ kind: 'other', type: 'response.output_item.done' });
    const delta = p({ type: 'response.event', event: { type: 'response.output_text.delta', delta: 'x' } });
    expect(delta.ok && delta.event.type === 'response.event' && delta.event.event.kind).toBe('other');
  });

  it('returns unknown types as unhandled and malformed input as an error, never throwing', () => {
    expect(p({ type: 'session.thinking.appended', start_ms: 1 })).toEqual({ ok: true, event: { type: 'unhandled', originalType: 'session.thinking.appended' } });
    for (const bad of ['{', '[]', '{"x":1}', JSON.stringify({ type: 'session.output_audio.delta' }), JSON.stringify({ type: 'session.input_transcript.delta', delta: 'a', start_ms: -1, end_ms: 2 }),
      JSON.stringify({ type: 'response.event', event: { type: 'response.output_item.done', item: { type: 'function_call', name: 'f' } } })]) {
      const r = p(bad);
      expect(r.ok).toBe(false);
    }
  });
});

describe('client events', () => {
  it('builds session.start with format, voice, delegation tools and input', () => {
    const s = JSON.parse(buildSessionStart({ model: 'gpt-live-1.1', instructions: 'Be brief.', voice: 'marin', format: 'ulaw8k', backendModel: 'gpt-5-mini',
      tools: [{ name: 'check', description: 'Check', parameters: { type: 'object' } }], input: [] }));
    expect(s.type).toBe('session.start');
    expect(s.session.audio).toEqual({ format: { type: 'audio/pcmu', rate: 8000 }, output: { voice: 'marin' } });
    expect(s.session.delegation.type).toBe('responses');
    expect(s.session.delegation.responses).toMatchObject({ model: 'gpt-5-mini', parallel_tool_calls: true, tools: [{ type: 'function', name: 'check', description: 'Check', parameters: { type: 'object' } }] });
    const pcm = JSON.parse(buildSessionStart({ model: 'm', instructions: '', voice: 'v', format: 'pcm24k', backendModel: 'b', tools: [], input: [] }));
    expect(pcm.session.audio.format).toEqual({ type: 'audio/pcm', rate: 24000 });
  });

  it('builds the other client events; appends are cut to the 500-token limit', () => {
    expect(JSON.parse(inputAudioAppendEvent('AAA='))).toEqual({ type: 'session.input_audio.append', audio: 'AAA=' });
    expect(JSON.parse(thinkingAppendEvent('1 2 3'))).toEqual({ type: 'session.thinking.append', content: '1 2 3', delegation_id: null });
    expect(JSON.parse(commentaryAppendEvent('x'.repeat(5000))).content).toHaveLength(APPEND_MAX_CHARS);
    expect(JSON.parse(functionCallOutputItemEvent('c1', '{"a":1}'))).toEqual({ type: 'response.item.create', item: { type: 'function_call_output', call_id: 'c1', output: '{"a":1}' } });
  });
});
