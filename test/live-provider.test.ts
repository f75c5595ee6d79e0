/** LiveProvider against a scripted `ws` peer on 127.0.0.1, written here per case. */
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import { ModelConnectError, type ModelEvent, type ModelSession } from '../src/call/voice-model.js';
import { ReachabilityTracker } from '../src/call/reachability.js';
import { silentLogger } from '../src/log.js';
import { LiveProvider, type LiveProviderOptions } from '../src/live/live-provider.js';
import { until } from './helpers/until.js';

interface Peer {
  wss: WebSocketServer;
  url: string;
  received: any[];
  sock: () => WebSocket;
}

const peers: WebSocketServer[] = [];
const sessions: ModelSession[] = [];
afterEach(async () => {
  for (const s of sessions.splice(0)) s.close();
  for (const w of peers.splice(0)) {
    for (const c of w.clients) c.terminate();
    await new Promise((r) => w.close(r));
  }
});

async function peer(opts: { refuse?: number; onStart?: ((ws: WebSocket, ev: any) => void) | null } = {}): Promise<Peer> {
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    verifyClient: (_i, cb) => (opts.refuse ? cb(false, opts.refuse, 'no') : cb(true)),
  });
  peers.push(wss);
  await new Promise((r) => wss.once('listening', r));
  const received: any[] = [];
  let last: WebSocket | undefined;
  wss.on('connection', (ws) => {
    last = ws;
    ws.on('message', (d) => {
      const ev = JSON.parse(d.toString());
      received.push(ev);
      if (ev.type === 'session.start' && opts.onStart !== null) (opts.onStart ?? ((w) => w.send(JSON.stringify({ type: 'session.started', session: { id: 's1' } }))))(ws, ev);
    });
  });
  const port = (wss.address() as { port: number }).port;
  return { wss, url: `ws://127.0.0.1:${port}/v1/live/sessions`, received, sock: () => last! };
}

function provider(p: Peer, over: Partial<LiveProviderOptions> = {}): LiveProvider {
  return new LiveProvider({ url: p.url, apiKey: 'k', format: 'ulaw8k', connectTimeoutMs: 2000, log: silentLogger, outputPauseMs: 60, callerTurnCloseMs: 200, pingIntervalMs: 0, ...over });
}

const OPTS = { instructions: 'Be brief.', voice: 'marin', tools: [{ name: 'check', description: 'Check', parameters: { type: 'object' } }] };

async function open(p: Peer, over: Partial<LiveProviderOptions> = {}) {
  const s = await provider(p, over).connect(OPTS);
  sessions.push(s);
  const events: ModelEvent[] = [];
  s.onEvent((e) => events.push(e));
  const send = (o: unknown) => p.sock().send(typeof o === 'string' ? o : JSON.stringify(o));
  return { s, events, send, types: () => events.map((e) => e.type) };
}

const audio = (d: string) => ({ type: 'session.output_audio.delta', delta: d });
const out = (delta: string, start: number, end: number) => ({ type: 'session.output_transcript.delta', delta, start_ms: start, end_ms: end, event_id: 'e' });
const inp = (delta: string, start: number, end: number) => ({ type: 'session.input_transcript.delta', delta, start_ms: start, end_ms: end, event_id: 'e' });
const nested = (delegation_id: string, event: unknown) => ({ type: 'response.event', delegation_id, event, event_id: 'e' });

describe('LiveProvider connect', () => {
  it('sends session.start (format, voice, delegation tools, fitted history) and resolves on session.started', async () => {
    const p = await peer();
    const reach = new ReachabilityTracker();
    const prov = provider(p, { reachability: reach, backendModel: 'gpt-5-mini' });
    expect(prov.name).toBe('live');
    const s = await prov.connect({ ...OPTS, history: [{ type: 'user_text', text: 'hi' }, ...Array.from({ length: 300 }, (_, i) => ({ type: 'assistant_text' as const, text: `a${i}`.padEnd(400, '.') }))] });
    sessions.push(s);
    const events: ModelEvent[] = [];
    s.onEvent((e) => events.push(e));
    expect(events).toEqual([{ type: 'ready' }]);
    const start = p.received[0];
    expect(start.type).toBe('session.start');
    expect(start.session.model).toBe('gpt-live-1.1');
    expect(start.session.instructions).toBe('Be brief.');
    expect(start.session.audio).toEqual({ format: { type: 'audio/pcmu', rate: 8000 }, output: { voice: 'marin' } });
    expect(start.session.delegation.responses.model).toBe('gpt-5-mini');
    expect(start.session.delegation.responses.tools[0]).toEqual({ type: 'function', name: 'check', description: 'Check', parameters: { type: 'object' } });
    expect(start.session.input.length).toBeLessThanOrEqual(128);
    expect(start.session.input[0].content[0].text).toMatch(/^Earlier in this call/);
    expect(reach.snapshot().reachable).toBe(true);
  });

  it('a 401 refusal is not retryable and counts as a failure; a 503 is retryable', async () => {
    for (const [status, retryable] of [[401, false], [503, true]] as const) {
      const p = await peer({ refuse: status });
      const reach = new ReachabilityTracker();
      const err = await provider(p, { reachability: reach }).connect(OPTS).catch((e) => e);
      expect(err).toBeInstanceOf(ModelConnectError);
      expect(err.retryable).toBe(retryable);
      expect(reach.snapshot().reachable).toBe(false);
    }
  });

  it('an error event instead of session.started refuses the session (not retryable, endpoint reachable)', async () => {
    const p = await peer({ onStart: (ws) => ws.send(JSON.stringify({ type: 'error', error: { type: 'invalid_request_error', code: 'unknown_parameter', message: 'bad' } })) });
    const reach = new ReachabilityTracker();
    const err = await provider(p, { reachability: reach }).connect(OPTS).catch((e) => e);
    expect(err).toBeInstanceOf(ModelConnectError);
    expect(err.retryable).toBe(false);
    expect(reach.snapshot().reachable).toBe(true);
  });

  it('times out (retryable) when session.started never comes; an abort rejects and tells reachability nothing', async () => {
    const p = await peer({ onStart: null });
    const err = await provider(p, { connectTimeoutMs: 150 }).connect(OPTS).catch((e) => e);
    expect(err).toBeInstanceOf(ModelConnectError);
    expect(err.retryable).toBe(true);
    const reach = new ReachabilityTracker();
    const ac = new AbortController();
    const pending = provider(p, { reachability: reach }).connect(OPTS, ac.signal).catch((e) => e);
    await until(() => p.received.length === 2);
    ac.abort();
    const aborted = await pending;
    expect(aborted).toBeInstanceOf(ModelConnectError);
    expect(aborted.message).toMatch(/aborted/);
    expect(reach.snapshot().reachable).toBe(null);
  });
});

describe('LiveProvider session', () => {
  it('carries audio both ways and synthesises a response: started, audio, transcript deltas, audio_done, timed transcript, done after the pause', async () => {
    const p = await peer();
    const { s, events, send, types } = await open(p);
    s.appendAudio('AAAA');
    await until(() => p.received.length === 2);
    expect(p.received[1]).toEqual({ type: 'session.input_audio.append', audio: 'AAAA' });
    send(out('Hello', 5000, 5200));
    send(audio('b1'));
    send(out(' there', 5200, 5600));
    send(audio('b2'));
    await until(() => types().includes('response_done'));
    expect(types()).toEqual(['ready', 'response_started', 'assistant_transcript_delta', 'audio', 'assistant_transcript_delta', 'audio', 'audio_done', 'assistant_transcript', 'response_done']);
    const rid = (events[1] as any).responseId;
    expect(rid).toMatch(/^lresp_/);
    expect(events[3]).toEqual({ type: 'audio', responseId: rid, itemId: expect.stringMatching(/^litem_1\./), audio: 'b1' });
    expect(events[7]).toEqual({ type: 'assistant_transcript', responseId: rid, itemId: expect.stringMatching(/^litem_1\./), text: 'Hello there', words: [{ text: 'Hello', startMs: 0, endMs: 200 }, { text: ' there', startMs: 200, endMs: 600 }] });
    expect(events[8]).toEqual({ type: 'response_done', responseId: rid, status: 'completed', usage: undefined });
  });

  it('a caller turn: speech_started on the first input delta, closed (speech_stopped, caller_transcript) by the next response or after the silence', async () => {
    const p = await peer();
    const { events, send, types } = await open(p);
    send(inp('I need', 1000, 1400));
    send(inp(' help', 1400, 1800));
    await until(() => types().includes('speech_started'));
    send(audio('a'));
    await until(() => types().includes('response_done'));
    expect(types().slice(1, 5)).toEqual(['speech_started', 'speech_stopped', 'caller_transcript', 'response_started']);
    expect(events[1]).toEqual({ type: 'speech_started', itemId: expect.stringMatching(/^lin_1\./), audioStartMs: 1000 });
    expect(events[2]).toEqual({ type: 'speech_stopped', itemId: expect.stringMatching(/^lin_1\./), audioEndMs: 1800 });
    expect(events[3]).toEqual({ type: 'caller_transcript', itemId: expect.stringMatching(/^lin_1\./), text: 'I need help' });
    send(inp('hello?', 3000, 3300));
    await until(() => types().filter((t) => t === 'caller_transcript').length === 2);
    expect(events.at(-2)).toEqual({ type: 'speech_stopped', itemId: expect.stringMatching(/^lin_2\./), audioEndMs: 3300 });
  });

  it('the model yields: response cancelled (turn_detected) and speech_started at once; the rest of its audio is dropped', async () => {
    const p = await peer();
    const { events, send, types } = await open(p);
    send(audio('a1'));
    await until(() => types().includes('audio'));
    send(inp('wait', 2000, 2300));
    send(audio('late'));
    await until(() => types().includes('speech_started'));
    const done = events.find((e) => e.type === 'response_done');
    expect(done).toMatchObject({ status: 'cancelled', reason: 'turn_detected' });
    expect(types().indexOf('response_done')).toBeLessThan(types().indexOf('speech_started'));
    await new Promise((r) => setTimeout(r, 150)); // past the output pause
    expect(events.filter((e) => e.type === 'audio').map((e) => (e as any).audio)).toEqual(['a1']);
    send(audio('next'));
    await until(() => events.filter((e) => e.type === 'response_started').length === 2);
    expect(events.filter((e) => e.type === 'audio').map((e) => (e as any).audio)).toEqual(['a1', 'next']);
  });

  it('cancelResponse ends the response cancelled and drops its later audio; truncate sends nothing', async () => {
    const p = await peer();
    const { s, events, send, types } = await open(p);
    send(audio('a1'));
    await until(() => types().includes('audio'));
    s.truncate((events.find((e) => e.type === 'audio') as { itemId: string }).itemId, 100);
    s.cancelResponse();
    expect(events.find((e) => e.type === 'response_done')).toMatchObject({ status: 'cancelled' });
    send(audio('a2'));
    await new Promise((r) => setTimeout(r, 30));
    expect(events.filter((e) => e.type === 'audio')).toHaveLength(1);
    expect(p.received.map((e) => e.type)).toEqual(['session.start']);
  });

  it('delegation: two parallel function calls → two tool_calls under a response the call saw; outputs → response.item.create; createResponse → response.create, else commentary', async () => {
    const p = await peer();
    const { s, events, send, types } = await open(p);
    s.createResponse('Greet the caller.');
    await until(() => p.received.length === 2);
    expect(p.received[1]).toEqual({ type: 'session.commentary.append', content: 'Greet the caller.', delegation_id: null });
    send({ type: 'session.delegation.created', delegation: { id: 'd1', target: 'responses', response_id: 'r1', type: 'delegation' }, offset_ms: 10 });
    send(nested('d1', { type: 'response.output_item.added', item: { type: 'function_call' } }));
    send(nested('d1', { type: 'response.output_item.done', item: { type: 'function_call', call_id: 'c1', name: 'check', arguments: '{"a":1}' } }));
    send(nested('d1', { type: 'response.output_item.done', item: { type: 'function_call', call_id: 'c2', name: 'check', arguments: '{"a":2}' } }));
    send(nested('d1', { type: 'response.done', response: { status: 'completed', usage: { input_tokens: 100, output_tokens: 20 } } }));
    await until(() => types().includes('response_done'));
    const started = events.filter((e) => e.type === 'response_started').map((e) => (e as any).responseId);
    const calls = events.filter((e) => e.type === 'tool_call') as Extract<ModelEvent, { type: 'tool_call' }>[];
    expect(calls.map((c) => [c.callId, c.arguments])).toEqual([['c1', '{"a":1}'], ['c2', '{"a":2}']]);
    for (const c of calls) expect(started).toContain(c.responseId);
    expect(events.find((e) => e.type === 'usage')).toMatchObject({ usage: { inputTextTokens: 100, outputTextTokens: 20 } });
    expect(types().indexOf('response_done')).toBeGreaterThan(types().lastIndexOf('tool_call'));
    s.sendToolResult('c1', '{"ok":1}', false);
    s.createResponse(); // c2 still open: not a continuation
    s.sendToolResult('c2', '{"ok":2}', true);
    s.createResponse();
    await until(() => p.received.length === 6);
    expect(p.received.slice(2)).toEqual([
      { type: 'response.item.create', item: { type: 'function_call_output', call_id: 'c1', output: '{"ok":1}' } },
      { type: 'session.commentary.append', content: 'Answer the caller now.', delegation_id: null },
      { type: 'response.item.create', item: { type: 'function_call_output', call_id: 'c2', output: '{"ok":2}' } },
      { type: 'response.create' },
    ]);
  });

  it('a tool call while the model speaks is reported under the speaking response; a failed delegated response is an error', async () => {
    const p = await peer();
    const { events, send, types } = await open(p);
    send(audio('a'));
    send(nested('d2', { type: 'response.output_item.done', item: { type: 'function_call', call_id: 'c9', name: 'check', arguments: '{}' } }));
    send(nested('d2', { type: 'response.done', response: { status: 'failed', error: { code: 'server_error', message: 'boom' } } }));
    await until(() => types().includes('response_done'));
    const rid = (events.find((e) => e.type === 'response_started') as any).responseId;
    expect(events.find((e) => e.type === 'tool_call')).toMatchObject({ responseId: rid, callId: 'c9' });
    expect(events.find((e) => e.type === 'error')).toEqual({ type: 'error', code: 'server_error', message: 'boom' });
  });

  it('sendUserText → session.thinking.append; usage (cumulative) → increments; error event → error; malformed and unknown events tolerated', async () => {
    const p = await peer();
    const { s, events, send, types } = await open(p);
    s.sendUserText('The caller pressed 1 2 3');
    send('{not json');
    send({ type: 'session.output_audio.delta' });
    send({ type: 'transport.dtmf', digit: '1' });
    send({ type: 'session.usage.updated', usage: { seconds: 2.5 } });
    send({ type: 'session.usage.updated', usage: { seconds: 2.5 } });
    send({ type: 'session.usage.updated', usage: { seconds: 4 } });
    send({ type: 'error', error: { type: 'invalid_request_error', code: 'unknown_parameter', message: 'bad' } });
    await until(() => types().includes('error'));
    expect(events.filter((e) => e.type === 'usage').map((e) => (e as any).usage.activeAudioSeconds)).toEqual([2.5, 1.5]);
    expect(events.find((e) => e.type === 'usage')).toMatchObject({ usage: { inputTextTokens: 0, outputAudioTokens: 0 } });
    expect(events.at(-1)).toEqual({ type: 'error', code: 'unknown_parameter', message: 'bad' });
    await until(() => p.received.length === 2);
    expect(p.received[1]).toEqual({ type: 'session.thinking.append', content: 'The caller pressed 1 2 3', delegation_id: null });
    expect((s as any).counters.malformed).toBe(2);
  });

  it('session.closed → final usage increment, then closed retryable only for connection_lost; a socket gone without it → closed retryable', async () => {
    for (const [reason, retryable] of [['connection_lost', true], ['expired', false]] as const) {
      const p = await peer();
      const { events, send, types } = await open(p);
      send({ type: 'session.usage.updated', usage: { seconds: 1 } });
      send({ type: 'session.closed', reason, usage: { seconds: 3 } });
      await until(() => types().includes('closed'));
      expect(events.filter((e) => e.type === 'usage').map((e) => (e as any).usage.activeAudioSeconds)).toEqual([1, 2]);
      expect(events.at(-1)).toEqual({ type: 'closed', reason, retryable });
      await new Promise((r) => setTimeout(r, 30));
      expect(types().filter((t) => t === 'closed')).toHaveLength(1);
    }
    const p = await peer();
    const { types, events } = await open(p);
    p.sock().terminate();
    await until(() => types().includes('closed'));
    expect(events.at(-1)).toMatchObject({ type: 'closed', retryable: true });
  });

  it('close() sends session.close and reports nothing more', async () => {
    const p = await peer();
    const { s, types } = await open(p);
    let peerClosed = false;
    p.sock().on('close', () => (peerClosed = true));
    s.close();
    await until(() => p.received.some((e) => e.type === 'session.close'));
    p.sock().send(JSON.stringify({ type: 'session.closed', reason: 'close_requested' }));
    await until(() => peerClosed);
    expect(types()).toEqual(['ready']);
  });
});
