// The Realtime stand-in (src/sim/model-server.ts) driven by hand over loopback,
// plus the openai package's own OpenAIRealtimeWS client against it over wss.
import { once } from 'node:events';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import OpenAI from 'openai';
import { OpenAIRealtimeWS } from 'openai/realtime/ws';
import { speechLike, ulawEncode } from '../src/sim/audio.js';
import { makeSelfSignedCert } from '../src/sim/tls.js';
import { WAITING_REPLY, startModelStandIn, type ModelStandIn } from '../src/sim/model-server.js';
import { failingTurn, parallelEligibilityScenario, parallelToolsTurn, scenarioOf, type Scenario } from '../src/sim/scenarios.js';
import { sleep } from './helpers/until.js';

const GA_SESSION = (format: Record<string, unknown>) => ({
  type: 'session.update',
  session: {
    type: 'realtime',
    model: 'gpt-realtime',
    output_modalities: ['audio'],
    audio: {
      input: {
        format,
        turn_detection: { type: 'server_vad', threshold: 0.5, prefix_padding_ms: 300, silence_duration_ms: 400, create_response: true, interrupt_response: true },
      },
      output: { format, voice: 'marin' },
    },
  },
});

class Client {
  readonly events: any[] = [];
  /** Arrival time of each event (performance.now() ms). */
  private readonly arrivals = new WeakMap<object, number>();
  private waiters: { pred: (e: any) => boolean; resolve: (e: any) => void }[] = [];
  constructor(readonly ws: WebSocket) {
    ws.on('message', (d) => {
      const e = JSON.parse(d.toString());
      this.arrivals.set(e, performance.now());
      this.events.push(e);
      this.waiters = this.waiters.filter((w) => (w.pred(e) ? (w.resolve(e), false) : true));
    });
  }
  static async open(url: string, headers: Record<string, string> = { Authorization: 'Bearer sk-test' }): Promise<Client> {
    const ws = new WebSocket(url, { headers });
    const c = new Client(ws);
    await new Promise((res, rej) => {
      ws.once('open', res);
      ws.once('error', rej);
    });
    return c;
  }
  send(ev: unknown) {
    this.ws.send(JSON.stringify(ev));
  }
  next(type: string | ((e: any) => boolean), timeoutMs = 4000): Promise<any> {
    const pred = typeof type === 'string' ? (e: any) => e.type === type : type;
    const seen = this.events.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out waiting for ${String(type)}; got ${this.events.map((e) => e.type).join(',')}`)), timeoutMs);
      this.waiters.push({ pred, resolve: (e) => (clearTimeout(t), resolve(e)) });
    });
  }
  /** Waits for an event that arrives after the events seen so far. */
  nextNew(type: string, timeoutMs = 4000): Promise<any> {
    const n = this.events.length;
    return this.next((e) => e.type === type && this.events.indexOf(e) >= n, timeoutMs);
  }
  types() {
    return this.events.map((e) => e.type);
  }
  at(e: object): number {
    return this.arrivals.get(e) ?? Number.NaN;
  }
  all(type: string): any[] {
    return this.events.filter((e) => e.type === type);
  }
  close() {
    this.ws.close();
  }
}

/** Sends `ms` of audio (PCM24k or µ-law) in 20 ms appends, as fast as possible. */
function appendAudio(c: Client, pcmOrUlaw: Buffer, bytesPer20ms: number) {
  for (let off = 0; off < pcmOrUlaw.length; off += bytesPer20ms) {
    c.send({ type: 'input_audio_buffer.append', audio: pcmOrUlaw.subarray(off, off + bytesPer20ms).toString('base64') });
  }
}
const pcm24 = (pcm: Int16Array) => Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength);
const utterance24k = (speechMs: number, silenceMs: number) =>
  Buffer.concat([pcm24(speechLike(speechMs, 24000, 3)), Buffer.alloc(silenceMs * 48)]);
const utteranceUlaw = (speechMs: number, silenceMs: number) =>
  Buffer.concat([Buffer.from(ulawEncode(speechLike(speechMs, 8000, 3))), Buffer.alloc(silenceMs * 8, 0xff)]);

let server: ModelStandIn | undefined;
const clients: Client[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await server?.close();
  server = undefined;
});
async function open(opts: Parameters<typeof startModelStandIn>[0] = {}) {
  server = await startModelStandIn({ audioSpeedup: 20, responseDelayMs: 10, transcriptDelayMs: 50, ...opts });
  const c = await Client.open(`${server.url}?model=gpt-realtime`);
  clients.push(c);
  await c.next('session.created');
  return c;
}

describe('model stand-in: handshake', () => {
  it('answers on /v1/realtime with an httpBaseUrl the openai package can use', async () => {
    server = await startModelStandIn();
    expect(server.url).toBe(`ws://127.0.0.1:${server.port}/v1/realtime`);
    expect(server.httpBaseUrl).toBe(`http://127.0.0.1:${server.port}/v1`);
  });

  it('sends session.created first, then answers a GA session.update and records the format', async () => {
    const c = await open();
    expect(c.events[0].type).toBe('session.created');
    c.send(GA_SESSION({ type: 'audio/pcmu' }));
    const upd = await c.next('session.updated');
    expect(upd.session.type).toBe('realtime');
    expect(upd.session.audio.input.format).toEqual({ type: 'audio/pcmu' });
    expect(server!.sessions[0]!.format).toBe('ulaw8k');
    for (const e of c.events) expect(typeof e.event_id).toBe('string');
  });

  it('recordSessions keeps the first sessions only, and scenarioFor still counts every session', async () => {
    const asked: number[] = [];
    server = await startModelStandIn({ recordSessions: 1, scenarioFor: (i) => (asked.push(i), undefined) });
    for (let i = 0; i < 3; i++) {
      const c = await Client.open(`${server.url}?model=gpt-realtime`);
      clients.push(c);
      await c.next('session.created');
    }
    expect(asked).toEqual([0, 1, 2]);
    expect(server.sessions).toHaveLength(1);
  });

  it('rejects a beta-shaped session.update (no session.type) and a bad PCM rate', async () => {
    const c = await open();
    c.send({ type: 'session.update', session: { modalities: ['audio'], input_audio_format: 'pcm16' } });
    const err = await c.next('error');
    expect(err.error.param).toBe('session.type');
    c.send({ type: 'session.update', session: { type: 'realtime', audio: { input: { format: { type: 'audio/pcm', rate: 16000 } } } } });
    const err2 = await c.next((e) => e.type === 'error' && e !== err);
    expect(err2.error.param).toBe('session.audio.input.format');
    expect(c.types()).not.toContain('session.updated');
  });

  it('accepts session.reasoning.effort minimal…xhigh and rejects other values', async () => {
    const c = await open();
    c.send({ type: 'session.update', session: { type: 'realtime', reasoning: { effort: 'xhigh' } } });
    expect((await c.next('session.updated')).session.reasoning).toEqual({ effort: 'xhigh' });
    c.send({ type: 'session.update', session: { type: 'realtime', reasoning: { effort: 'maximal' } } });
    const err = await c.next('error');
    expect(err.error).toMatchObject({ code: 'invalid_value', param: 'session.reasoning.effort' });
    expect(server!.sessions[0]!.sessionUpdate.reasoning).toEqual({ effort: 'xhigh' });
  });

  it('refuses the upgrade without a bearer token (401)', async () => {
    const logged: string[] = [];
    server = await startModelStandIn({ log: (_f, msg) => logged.push(msg) });
    const ws = new WebSocket(`${server.url}?model=gpt-realtime`);
    const status = await new Promise<number>((resolve, reject) => {
      ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.once('open', () => reject(new Error('opened without auth')));
      ws.once('error', () => {});
    });
    expect(status).toBe(401);
    expect(server.sessions).toHaveLength(0);
    expect(logged.join()).toMatch(/401/);
  });

  it('a client that resets the connection once it has read a refused upgrade is no error in the stand-in’s process', async () => {
    server = await startModelStandIn();
    server.refuseAll(true, 503);
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown) => uncaught.push(err);
    process.prependListener('uncaughtException', onUncaught);
    try {
      for (let i = 0; i < 5; i++) {
        const sock = connect(server.port, '127.0.0.1');
        sock.on('error', () => {});
        await once(sock, 'connect');
        sock.write(
          'GET /v1/realtime?model=gpt-realtime HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
            'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer sk-test\r\n\r\n',
        );
        const [reply] = (await once(sock, 'data')) as [Buffer];
        expect(reply.toString('latin1')).toMatch(/^HTTP\/1\.1 503 /);
        sock.resetAndDestroy(); // RST, not FIN: the stand-in's socket is still open for reading
      }
      await sleep(200);
      expect(uncaught).toEqual([]);
      expect(server.refused).toHaveLength(5);
    } finally {
      process.off('uncaughtException', onUncaught);
    }
  });

  it('rejects an OpenAI-Beta header with beta_api_shape_disabled and closes', async () => {
    server = await startModelStandIn();
    const c = await Client.open(`${server.url}?model=gpt-realtime`, { Authorization: 'Bearer sk-test', 'OpenAI-Beta': 'realtime=v1' });
    const closed = new Promise<number>((r) => c.ws.once('close', (code) => r(code)));
    const err = await c.next('error');
    expect(err.error.code).toBe('beta_api_shape_disabled');
    expect(await closed).toBe(1008);
    expect(c.types()).not.toContain('session.created');
  });
});

describe('model stand-in: a VAD turn', () => {
  for (const [name, fmt, audio, per20] of [
    ['PCM16 24 kHz', { type: 'audio/pcm', rate: 24000 }, () => utterance24k(1000, 700), 960],
    ['µ-law 8 kHz', { type: 'audio/pcmu' }, () => utteranceUlaw(1000, 700), 160],
  ] as const) {
    it(`detects speech in ${name} and answers with real audio in that format`, async () => {
      const c = await open();
      c.send(GA_SESSION(fmt));
      await c.next('session.updated');
      appendAudio(c, audio(), per20);
      const started = await c.next('input_audio_buffer.speech_started');
      const stopped = await c.next('input_audio_buffer.speech_stopped');
      expect(stopped.item_id).toBe(started.item_id);
      expect(started.audio_start_ms).toBe(0); // speech from 0 ms, prefix padding clamps at 0
      expect(stopped.audio_end_ms).toBeGreaterThanOrEqual(900);
      expect(stopped.audio_end_ms).toBeLessThanOrEqual(1100);
      const done = await c.next('response.done');
      expect(done.response.status).toBe('completed');
      const u = done.response.usage;
      expect(u.input_tokens).toBeGreaterThan(0);
      expect(u.output_tokens).toBeGreaterThan(0);
      expect(Object.keys(u.input_token_details).sort()).toEqual(['audio_tokens', 'cached_tokens', 'text_tokens']);
      expect(Object.keys(u.output_token_details).sort()).toEqual(['audio_tokens', 'text_tokens']);
      const deltas = c.events.filter((e) => e.type === 'response.output_audio.delta');
      expect(deltas.length).toBeGreaterThan(2);
      const sizes = deltas.map((e) => Buffer.from(e.delta, 'base64').length);
      expect(sizes.some((n) => n % 2 === 1)).toBe(true); // odd byte counts, like the real server
      const bytes = Buffer.concat(deltas.map((e) => Buffer.from(e.delta, 'base64')));
      // Real audio, not silence: RMS well above the floor.
      const pcm =
        fmt.type === 'audio/pcmu'
          ? Array.from(bytes, (b) => (b === 0xff || b === 0x7f ? 0 : 1))
          : Array.from(new Int16Array(bytes.buffer, bytes.byteOffset, bytes.length >> 1));
      expect(pcm.filter((v) => v !== 0).length).toBeGreaterThan(pcm.length / 2);
      const transcript = await c.next('response.output_audio_transcript.done');
      expect(transcript.transcript).toBe('Sure. Can I get the Member ID?');
      const order = c.types();
      for (const [a, b] of [
        ['input_audio_buffer.speech_started', 'input_audio_buffer.speech_stopped'],
        ['input_audio_buffer.speech_stopped', 'input_audio_buffer.committed'],
        ['response.created', 'response.output_item.added'],
        ['response.output_item.added', 'response.output_audio.delta'],
        ['response.output_audio.done', 'response.output_item.done'],
        ['response.output_item.done', 'response.done'],
      ]) expect(order.indexOf(a!)).toBeLessThan(order.indexOf(b!));
      const tr = await c.next('conversation.item.input_audio_transcription.completed');
      expect(tr.item_id).toBe(started.item_id);
      expect(tr.transcript).toBe("Hi, I'd like to check my coverage.");
    });
  }

  it('can deliver the caller transcript after the response (configurable delay)', async () => {
    const c = await open({ transcriptDelayMs: 600 });
    c.send(GA_SESSION({ type: 'audio/pcmu' }));
    appendAudio(c, utteranceUlaw(600, 600), 160);
    await c.next('conversation.item.input_audio_transcription.completed');
    const t = c.types();
    expect(t.indexOf('response.done')).toBeGreaterThanOrEqual(0);
    expect(t.indexOf('response.done')).toBeLessThan(t.indexOf('conversation.item.input_audio_transcription.completed'));
  });

  it('streams audio faster than real time', async () => {
    const c = await open({ audioSpeedup: 4 });
    c.send(GA_SESSION({ type: 'audio/pcmu' }));
    c.send({ type: 'response.create' });
    const t0 = performance.now();
    await c.next('response.done');
    const wallMs = performance.now() - t0;
    const audioMs = server!.sessions[0]!.responses[0]!.audioMsSent;
    expect(audioMs).toBeGreaterThan(1000);
    expect(wallMs).toBeLessThan(audioMs / 2);
  });

  it('barge-in: speech during a response cancels it and its audio stops', async () => {
    const c = await open({ audioSpeedup: 1 });
    c.send(GA_SESSION({ type: 'audio/pcmu' }));
    c.send({ type: 'response.create' }); // the greeting, ~4 s of audio in real time
    await c.next('response.output_audio.delta');
    appendAudio(c, utteranceUlaw(300, 0), 160);
    const done = await c.next('response.done');
    expect(done.response.status).toBe('cancelled');
    const n = c.events.filter((e) => e.type === 'response.output_audio.delta').length;
    await sleep(300);
    expect(c.events.filter((e) => e.type === 'response.output_audio.delta').length).toBe(n);
    expect(server!.sessions[0]!.responses[0]!.status).toBe('cancelled');
  });
});

describe('model stand-in: client events', () => {
  it('greets on response.create, records a DTMF user message and answers it', async () => {
    const c = await open();
    c.send(GA_SESSION({ type: 'audio/pcmu' }));
    c.send({ type: 'response.create', response: { instructions: 'Greet the caller.' } });
    expect((await c.next('response.output_audio_transcript.done')).transcript).toMatch(/eligibility line/);
    await c.next('response.done');
    const next = c.nextNew('response.output_audio_transcript.done');
    c.send({ type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'DTMF 4 2' }] } });
    c.send({ type: 'response.create' });
    expect((await next).transcript).toBe('You pressed 42.');
    expect(server!.sessions[0]!.userTexts).toEqual(['DTMF 4 2']);
  });

  it('response.cancel with nothing active → response_cancel_not_active; while active → cancelled', async () => {
    const c = await open({ audioSpeedup: 1 });
    c.send({ type: 'response.cancel', event_id: 'evt_x' });
    const err = await c.next('error');
    expect(err.error).toMatchObject({ code: 'response_cancel_not_active', event_id: 'evt_x' });
    expect(err.error.type).toBe('invalid_request_error');
    c.send({ type: 'response.create' });
    await c.next('response.output_audio.delta');
    c.send({ type: 'response.cancel' });
    expect((await c.next('response.done')).response.status).toBe('cancelled');
  });

  it('truncate within the audio sent → truncated; beyond it or unknown item → error', async () => {
    const c = await open();
    c.send(GA_SESSION({ type: 'audio/pcmu' }));
    c.send({ type: 'response.create' });
    const done = await c.next('response.done');
    const item = server!.sessions[0]!.responses[0]!;
    const itemId = c.events.find((e) => e.type === 'response.output_audio.delta').item_id;
    expect(itemId).toBe(item.itemId);
    expect(done.response.status).toBe('completed');
    c.send({ type: 'conversation.item.truncate', item_id: itemId, content_index: 0, audio_end_ms: 500 });
    const t = await c.next('conversation.item.truncated');
    expect(t).toMatchObject({ item_id: itemId, audio_end_ms: 500 });
    c.send({ type: 'conversation.item.truncate', item_id: itemId, content_index: 0, audio_end_ms: Math.ceil(item.audioMsSent) + 1000 });
    const e1 = await c.next('error');
    expect(e1.error.param).toBe('audio_end_ms');
    c.send({ type: 'conversation.item.truncate', item_id: 'item_nope', content_index: 0, audio_end_ms: 0 });
    const e2 = await c.next((e) => e.type === 'error' && e !== e1);
    expect(e2.error.code).toBe('item_truncate_invalid_item_id');
    expect(server!.sessions[0]!.truncates).toEqual([{ item_id: itemId, audio_end_ms: 500 }]);
  });

  it('runs the scripted tool call and speaks a reply built from the output', async () => {
    const scenario: Scenario = {
      greeting: 'Hello.',
      turns: [
        {
          callerTranscript: 'My ID is M B 1 2 3.',
          tool: { name: 'check_eligibility', arguments: { member_id: 'MB123', date_of_birth: '1980-03-05' }, reply: (o) => `Result: ${JSON.parse(o).status}.` },
        },
      ],
    };
    const c = await open({ scenario });
    c.send(GA_SESSION({ type: 'audio/pcmu' }));
    appendAudio(c, utteranceUlaw(600, 600), 160);
    const args = await c.next('response.function_call_arguments.done');
    expect(args.name).toBe('check_eligibility');
    expect(JSON.parse(args.arguments)).toEqual({ member_id: 'MB123', date_of_birth: '1980-03-05' });
    const deltas = c.events.filter((e) => e.type === 'response.function_call_arguments.delta').map((e) => e.delta).join('');
    expect(deltas).toBe(args.arguments);
    const added = c.events.find((e) => e.type === 'response.output_item.added');
    expect(added.item).toMatchObject({ type: 'function_call', call_id: args.call_id, name: 'check_eligibility' });
    await c.next('response.done');
    c.send({ type: 'conversation.item.create', item: { type: 'function_call_output', call_id: args.call_id, output: '{"status":"eligible"}' } });
    c.send({ type: 'response.create' });
    const said = await c.next('response.output_audio_transcript.done');
    expect(said.transcript).toBe('Result: eligible.');
    expect(server!.sessions[0]!.toolOutputs).toMatchObject([{ call_id: args.call_id, output: '{"status":"eligible"}' }]);
  });

  it('a manual commit under 100 ms → input_audio_buffer_commit_empty; with enough audio → committed', async () => {
    const c = await open();
    c.send({ type: 'session.update', session: { type: 'realtime', audio: { input: { format: { type: 'audio/pcmu' }, turn_detection: null } } } });
    await c.next('session.updated');
    c.send({ type: 'input_audio_buffer.append', audio: Buffer.alloc(400, 0xff).toString('base64') }); // 50 ms
    c.send({ type: 'input_audio_buffer.commit' });
    expect((await c.next('error')).error.code).toBe('input_audio_buffer_commit_empty');
    c.send({ type: 'input_audio_buffer.append', audio: Buffer.alloc(800, 0xff).toString('base64') }); // +100 ms
    c.send({ type: 'input_audio_buffer.commit' });
    await c.next('input_audio_buffer.committed');
  });

  it('answers unknown client events with an error and stays open', async () => {
    const c = await open();
    c.send({ type: 'session.frobnicate' });
    expect((await c.next('error')).error.param).toBe('type');
    c.send(GA_SESSION({ type: 'audio/pcmu' }));
    await c.next('session.updated');
  });
});

describe('model stand-in over TLS with the openai package client', () => {
  it('OpenAIRealtimeWS completes session.update and one turn over wss with a self-signed cert', async () => {
    const { cert, key } = makeSelfSignedCert();
    server = await startModelStandIn({ tls: { cert, key }, audioSpeedup: 20, responseDelayMs: 10, transcriptDelayMs: 20 });
    expect(server.url.startsWith('wss://')).toBe(true);
    const client = new OpenAI({ apiKey: 'sk-test', baseURL: server.httpBaseUrl });
    const rt = new OpenAIRealtimeWS({ model: 'gpt-realtime', options: { ca: cert } }, client);
    const seen: string[] = [];
    const wait = (type: string) =>
      new Promise<any>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`timeout waiting for ${type}; saw ${seen.join(',')}`)), 5000);
        rt.on(type as any, (e: any) => (clearTimeout(t), resolve(e)));
      });
    rt.on('event', (e) => seen.push(e.type));
    rt.on('error', (e) => seen.push(`ERR ${e.message}`));
    const created = wait('session.created');
    await new Promise<void>((res, rej) => {
      rt.socket.once('open', () => res());
      rt.socket.once('error', rej);
    });
    await created;
    const updated = wait('session.updated');
    rt.send(GA_SESSION({ type: 'audio/pcmu' }) as any);
    await updated;
    const done = wait('response.done');
    const u = utteranceUlaw(800, 600);
    for (let off = 0; off < u.length; off += 160) rt.send({ type: 'input_audio_buffer.append', audio: u.subarray(off, off + 160).toString('base64') });
    const resp = await done;
    expect(resp.response.status).toBe('completed');
    expect(seen).toContain('response.output_audio.delta');
    expect(server.sessions[0]!.format).toBe('ulaw8k');
    rt.close();
  });
});

// ---------------------------------------------------------------------------
// The 2026 shapes (gpt-realtime-2 and later): several items per response,
// parallel calls, failed responses, rate limits, connection faults.

const CALLS = [
  { name: 'check_eligibility', arguments: { member_id: 'MB123456', date_of_birth: '1980-03-05' } },
  { name: 'check_eligibility', arguments: { member_id: 'KT654321', date_of_birth: '1975-11-22' } },
];
const bothStatuses = (outs: string[]) => `Both: ${outs.map((o) => JSON.parse(o).status).join(' and ')}.`;
const output = (call_id: string, out: string) => ({ type: 'conversation.item.create', item: { type: 'function_call_output', call_id, output: out } });

/** Opens a µ-law session on `scenario` and speaks one caller turn into the VAD. */
async function speakTurn(scenario: Scenario, opts: Parameters<typeof startModelStandIn>[0] = {}) {
  const c = await open({ scenario, ...opts });
  c.send(GA_SESSION({ type: 'audio/pcmu' }));
  await c.next('session.updated');
  appendAudio(c, utteranceUlaw(600, 600), 160);
  return c;
}

describe('model stand-in: preambles and several items per response', () => {
  it('a preamble at output_index 0, then two calls at 1 and 2 whose arguments stream gapMs apart, then response.done', async () => {
    const scenario = scenarioOf([parallelToolsTurn(CALLS, bothStatuses, { preamble: 'Let me check both of those for you.', gapMs: 150 })]);
    const c = await speakTurn(scenario);
    const done = await c.next('response.done');
    expect(done.response.status).toBe('completed');
    const added = c.all('response.output_item.added');
    expect(added.map((e) => [e.output_index, e.item.type])).toEqual([
      [0, 'message'],
      [1, 'function_call'],
      [2, 'function_call'],
    ]);
    const ids = added.map((e) => e.item.id);
    expect(new Set(ids).size).toBe(3);
    expect(done.response.output.map((i: any) => i.id)).toEqual(ids);
    // The preamble is a spoken item of its own.
    const audio = c.all('response.output_audio.delta');
    expect(audio.length).toBeGreaterThan(0);
    for (const a of audio) expect([a.item_id, a.output_index]).toEqual([ids[0], 0]);
    expect(c.all('response.output_audio_transcript.done').map((e) => e.transcript)).toEqual(['Let me check both of those for you.']);
    // Items follow one another; response.done comes after the last call.
    const t = c.events;
    const idx = (pred: (e: any) => boolean) => t.findIndex(pred);
    expect(idx((e) => e.type === 'response.output_item.done' && e.output_index === 0)).toBeLessThan(
      idx((e) => e.type === 'response.output_item.added' && e.output_index === 1),
    );
    const lastItemDone = t.findLastIndex((e) => e.type === 'response.output_item.done');
    expect(t[lastItemDone].output_index).toBe(2);
    expect(idx((e) => e.type === 'response.done')).toBeGreaterThan(lastItemDone);
    // Each call's arguments come in several deltas that add up to .done.
    const argsDone = c.all('response.function_call_arguments.done');
    expect(argsDone.map((e) => e.output_index)).toEqual([1, 2]);
    for (const [i, a] of argsDone.entries()) {
      const deltas = c.all('response.function_call_arguments.delta').filter((d) => d.call_id === a.call_id);
      expect(deltas.length).toBeGreaterThanOrEqual(2);
      expect(deltas.map((d) => d.delta).join('')).toBe(a.arguments);
      expect(JSON.parse(a.arguments)).toEqual(CALLS[i]!.arguments);
      expect(a.name).toBe('check_eligibility');
    }
    expect(argsDone[0].call_id).not.toBe(argsDone[1].call_id);
    // The second call starts gapMs after the first is complete (arrival times; timers never fire early).
    const firstDone = t.find((e) => e.type === 'response.output_item.done' && e.output_index === 1);
    const secondFirstDelta = t.find((e) => e.type === 'response.function_call_arguments.delta' && e.call_id === argsDone[1].call_id);
    expect(c.at(secondFirstDelta) - c.at(firstDone)).toBeGreaterThanOrEqual(140);
    const rec = server!.sessions[0]!;
    expect(rec.toolCalls.map((x) => [x.call_id, x.responseId])).toEqual(argsDone.map((a) => [a.call_id, done.response.id]));
  });

  it('several spoken message items in one response: distinct ids, played one after another, each truncatable', async () => {
    const c = await speakTurn(scenarioOf([{ callerTranscript: 'Tell me.', replies: ['First part.', 'And here is the second part.'] }]));
    const done = await c.next('response.done');
    const added = c.all('response.output_item.added');
    expect(added.map((e) => [e.output_index, e.item.type, e.item.role])).toEqual([
      [0, 'message', 'assistant'],
      [1, 'message', 'assistant'],
    ]);
    const [a, b] = added.map((e) => e.item.id);
    expect(a).not.toBe(b);
    const types = c.events.map((e) => `${e.type}:${e.item_id ?? e.item?.id ?? ''}`);
    expect(types.lastIndexOf(`response.output_audio.delta:${a}`)).toBeLessThan(types.indexOf(`response.output_audio.delta:${b}`));
    expect(c.all('response.output_audio_transcript.done').map((e) => [e.item_id, e.transcript])).toEqual([
      [a, 'First part.'],
      [b, 'And here is the second part.'],
    ]);
    expect(done.response.output.map((i: any) => i.content[0].transcript)).toEqual(['First part.', 'And here is the second part.']);
    c.send({ type: 'conversation.item.truncate', item_id: b, content_index: 0, audio_end_ms: 200 });
    expect(await c.next('conversation.item.truncated')).toMatchObject({ item_id: b, audio_end_ms: 200 });
    const resp = server!.sessions[0]!.responses[0]!;
    expect(resp.items.map((i) => i.id)).toEqual([a, b]);
    expect(resp.audioMsSent).toBeCloseTo(resp.items[0]!.audioMsSent + resp.items[1]!.audioMsSent, 6);
  });

  it('barge-in during a preamble cancels the response before any call is issued', async () => {
    const scenario = scenarioOf([
      parallelToolsTurn(CALLS, bothStatuses, { preamble: 'Let me check both of those for you, this will take a moment while I look them up.' }),
      { callerTranscript: 'Wait.', reply: 'Sure.' },
    ]);
    const c = await speakTurn(scenario, { audioSpeedup: 1 });
    await c.next('response.output_audio.delta');
    appendAudio(c, utteranceUlaw(300, 0), 160);
    const done = await c.next('response.done');
    expect(done.response.status).toBe('cancelled');
    expect(done.response.status_details).toEqual({ type: 'cancelled', reason: 'turn_detected' });
    expect(c.all('response.output_item.added').map((e) => e.item.type)).toEqual(['message']);
    expect(server!.sessions[0]!.toolCalls).toEqual([]);
  });
});

describe('model stand-in: one response.create per answered tool round', () => {
  it('a tool finished while the response is in progress: a create then is refused and recorded; the follow-up needs every output', async () => {
    const c = await speakTurn(scenarioOf([parallelToolsTurn(CALLS, bothStatuses, { gapMs: 300 })]));
    const a1 = await c.next('response.function_call_arguments.done');
    c.send(output(a1.call_id, '{"status":"eligible"}'));
    c.send({ type: 'response.create' });
    const err = await c.next('error');
    expect(err.error.code).toBe('conversation_already_has_active_response');
    expect(c.all('response.done')).toHaveLength(0); // the second call was still to come
    await c.next('response.done');
    const a2 = c.all('response.function_call_arguments.done')[1];
    const said = c.nextNew('response.output_audio_transcript.done');
    c.send(output(a2.call_id, '{"status":"inactive"}'));
    c.send({ type: 'response.create' });
    expect((await said).transcript).toBe('Both: eligible and inactive.');
    const rec = server!.sessions[0]!;
    // pendingOutputs counts calls issued so far: the second had not been issued at the first create.
    expect(rec.responseCreates.map((r) => [r.active, r.pendingOutputs])).toEqual([
      [true, 0],
      [false, 0],
    ]);
    expect(rec.toolOutputs.map((o) => o.call_id)).toEqual([a1.call_id, a2.call_id]);
    const lastOutputAt = Math.max(...rec.toolOutputs.map((o) => o.at));
    expect(rec.responseCreates.filter((r) => r.at >= lastOutputAt)).toHaveLength(1);
  });

  it('a response.create before every output is in is answered without the results, and recorded', async () => {
    const c = await speakTurn(scenarioOf([parallelToolsTurn(CALLS, bothStatuses, { gapMs: 50 })]));
    await c.next('response.done');
    const [a1, a2] = c.all('response.function_call_arguments.done');
    let said = c.nextNew('response.output_audio_transcript.done');
    c.send(output(a1.call_id, '{"status":"eligible"}'));
    c.send({ type: 'response.create' });
    expect((await said).transcript).toBe(WAITING_REPLY);
    await c.nextNew('response.done');
    said = c.nextNew('response.output_audio_transcript.done');
    c.send(output(a2.call_id, '{"status":"eligible"}'));
    c.send({ type: 'response.create' });
    expect((await said).transcript).toBe('Both: eligible and eligible.');
    const rec = server!.sessions[0]!;
    expect(rec.responseCreates.map((r) => [r.active, r.pendingOutputs])).toEqual([
      [false, 1],
      [false, 0],
    ]);
    // The round is answered once: another create is an ordinary response
    // (here the greeting, which this session never had).
    await c.nextNew('response.done');
    said = c.nextNew('response.output_audio_transcript.done');
    c.send({ type: 'response.create' });
    expect((await said).transcript).toBe('Hello.');
  });

  it('parallelEligibilityScenario: greeting, preamble + two check_eligibility calls 150 ms apart, a follow-up about both', async () => {
    const c = await open({ scenario: parallelEligibilityScenario });
    c.send(GA_SESSION({ type: 'audio/pcmu' }));
    c.send({ type: 'response.create' });
    expect((await c.next('response.output_audio_transcript.done')).transcript).toMatch(/eligibility line/);
    await c.next('response.done');
    const turnDone = c.nextNew('response.done');
    appendAudio(c, utteranceUlaw(800, 600), 160);
    await turnDone;
    expect(c.all('response.output_audio_transcript.done')[1].transcript).toBe('Let me check both of those for you.');
    const calls = c.all('response.function_call_arguments.done');
    expect(calls.map((a) => JSON.parse(a.arguments).member_id)).toEqual(['M B 1 2 3 4 5 6', 'K T 6 5 4 3 2 1']);
    const firstDone = c.events.find((e) => e.type === 'response.output_item.done' && e.item.call_id === calls[0].call_id);
    const secondDelta = c.events.find((e) => e.type === 'response.function_call_arguments.delta' && e.call_id === calls[1].call_id);
    expect(c.at(secondDelta) - c.at(firstDone)).toBeGreaterThanOrEqual(140);
    const said = c.nextNew('response.output_audio_transcript.done');
    c.send(output(calls[0].call_id, '{"status":"eligible","plan":"Gold PPO"}'));
    c.send(output(calls[1].call_id, '{"status":"eligible","plan":"Silver HMO"}'));
    c.send({ type: 'response.create' });
    expect((await said).transcript).toBe('The first member is eligible on the Gold PPO plan. The second member is eligible on the Silver HMO plan. Anything else?');
  });
});

describe('model stand-in: failed responses and rate limits', () => {
  it('a turn fails twice with server_error (no audio), then a response.create gets the answer', async () => {
    const c = await speakTurn(scenarioOf([failingTurn('Here you are.', 2)]));
    const d1 = await c.next('response.done');
    expect(d1.response.status).toBe('failed');
    expect(d1.response.status_details).toEqual({
      type: 'failed',
      error: { type: 'server_error', code: 'server_error', message: expect.stringMatching(/error/) },
    });
    expect(d1.response.output).toEqual([]);
    expect(c.all('response.output_audio.delta')).toHaveLength(0);
    expect(c.events[c.events.indexOf(d1) + 1]?.type).toBe('rate_limits.updated');
    let next = c.nextNew('response.done');
    c.send({ type: 'response.create' });
    expect((await next).response.status).toBe('failed');
    next = c.nextNew('response.done');
    c.send({ type: 'response.create' });
    expect((await next).response.status).toBe('completed');
    expect(c.all('response.output_audio_transcript.done').map((e) => e.transcript)).toEqual(['Here you are.']);
    const rec = server!.sessions[0]!;
    expect(rec.responses.map((r) => [r.status, r.createdBy])).toEqual([
      ['failed', 'vad'],
      ['failed', 'client'],
      ['completed', 'client'],
    ]);
  });

  it('an incomplete response with partial audio, then the full answer', async () => {
    const text = 'This answer will be cut off well before it is finished.';
    const c = await speakTurn(scenarioOf([failingTurn(text, 1, { status: 'incomplete', reason: 'content_filter', partialAudioMs: 500 })]));
    const d1 = await c.next('response.done');
    expect(d1.response.status).toBe('incomplete');
    expect(d1.response.status_details).toEqual({ type: 'incomplete', reason: 'content_filter' });
    expect(d1.response.output.map((i: any) => i.status)).toEqual(['incomplete']);
    const bytes = (es: any[]) => es.reduce((n, e) => n + Buffer.from(e.delta, 'base64').length, 0);
    expect(bytes(c.all('response.output_audio.delta'))).toBe(500 * 8);
    const partial = c.all('response.output_audio_transcript.done')[0].transcript;
    expect(text.startsWith(partial)).toBe(true);
    expect(partial.length).toBeLessThan(text.length);
    const next = c.nextNew('response.done');
    c.send({ type: 'response.create' });
    const d2 = await next;
    expect(d2.response.status).toBe('completed');
    expect(c.all('response.output_audio_transcript.done')[1].transcript).toBe(text);
    expect(bytes(c.all('response.output_audio.delta').filter((e) => e.response_id === d2.response.id))).toBeGreaterThan(500 * 8);
  });

  it('followUpFail: the follow-up to a tool round fails, the outputs stay in, and the next create speaks it', async () => {
    const turn = { ...parallelToolsTurn(CALLS, bothStatuses, { gapMs: 20 }), followUpFail: { times: 1, status: 'failed' as const, error: { type: 'server_error' } } };
    const c = await speakTurn(scenarioOf([turn]));
    await c.next('response.done');
    const [a1, a2] = c.all('response.function_call_arguments.done');
    let next = c.nextNew('response.done');
    c.send(output(a1.call_id, '{"status":"eligible"}'));
    c.send(output(a2.call_id, '{"status":"inactive"}'));
    c.send({ type: 'response.create' });
    expect((await next).response.status).toBe('failed');
    next = c.nextNew('response.done');
    c.send({ type: 'response.create' });
    expect((await next).response.status).toBe('completed');
    expect(c.all('response.output_audio_transcript.done').map((e) => e.transcript)).toEqual(['Both: eligible and inactive.']);
    expect(server!.sessions[0]!.responseCreates.map((r) => r.pendingOutputs)).toEqual([0, 0]);
  });

  it('rate_limits.updated after each response start and end; an exhausted limit fails early retries until reset_seconds', async () => {
    const c = await speakTurn(scenarioOf([failingTurn('Go ahead.', 1, { error: { type: 'rate_limit_exceeded' }, resetSeconds: 0.4 })]));
    const d1 = await c.next('response.done');
    expect(d1.response.status_details.error).toMatchObject({ type: 'rate_limit_exceeded', code: 'rate_limit_exceeded' });
    const created = c.events.findIndex((e) => e.type === 'response.created');
    const atStart = c.events[created + 1];
    expect(atStart.type).toBe('rate_limits.updated');
    expect(atStart.rate_limits.map((r: any) => r.name)).toEqual(['requests', 'tokens']);
    for (const r of atStart.rate_limits) {
      expect(Object.keys(r).sort()).toEqual(['limit', 'name', 'remaining', 'reset_seconds']);
      expect(r.remaining).toBeGreaterThan(0);
    }
    const afterDone = c.events[c.events.indexOf(d1) + 1];
    expect(afterDone.type).toBe('rate_limits.updated');
    const requests = afterDone.rate_limits.find((r: any) => r.name === 'requests');
    expect(requests.remaining).toBe(0);
    expect(requests.reset_seconds).toBeGreaterThan(0.3);
    expect(requests.reset_seconds).toBeLessThanOrEqual(0.4);
    // Too early: fails again, and does not use up the scripted failure.
    let next = c.nextNew('response.done');
    c.send({ type: 'response.create' });
    const d2 = await next;
    expect(d2.response.status).toBe('failed');
    expect(d2.response.status_details.error.code).toBe('rate_limit_exceeded');
    await sleep(Math.max(0, c.at(afterDone) + 450 - performance.now()));
    next = c.nextNew('response.done');
    c.send({ type: 'response.create' });
    expect((await next).response.status).toBe('completed');
    expect(c.all('response.output_audio_transcript.done').map((e) => e.transcript)).toEqual(['Go ahead.']);
    const last = c.events[c.events.length - 1].type === 'rate_limits.updated' ? c.events[c.events.length - 1] : await c.nextNew('rate_limits.updated');
    expect(last.rate_limits.every((r: any) => r.remaining > 0)).toBe(true);
  });

  it('exhaustRateLimit: every response fails with rate_limit_exceeded until the reset, whatever asked for it', async () => {
    const c = await open();
    c.send(GA_SESSION({ type: 'audio/pcmu' }));
    server!.exhaustRateLimit(0.3, 'tokens');
    const t0 = performance.now();
    c.send({ type: 'response.create' });
    const d1 = await c.next('response.done');
    expect(d1.response.status).toBe('failed');
    expect(d1.response.status_details.error.message).toMatch(/tokens/);
    const rl = c.events[c.events.indexOf(d1) + 1];
    expect(rl.rate_limits.find((r: any) => r.name === 'tokens').remaining).toBe(0);
    await sleep(Math.max(0, t0 + 350 - performance.now()));
    const next = c.nextNew('response.done');
    c.send({ type: 'response.create' });
    expect((await next).response.status).toBe('completed');
    expect(c.all('response.output_audio_transcript.done')[0].transcript).toMatch(/eligibility line/);
  });
});

describe('model stand-in: connection faults and replayed items', () => {
  /** Tries one upgrade: the HTTP status of a refusal, or 101 when it opens. */
  function tryOpen(url: string): Promise<number> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`${url}?model=gpt-realtime`, { headers: { Authorization: 'Bearer sk-test' } });
      ws.once('unexpected-response', (_req, res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
        ws.terminate();
      });
      ws.once('open', () => {
        resolve(101);
        ws.close();
      });
      ws.once('error', (e) => reject(e));
    });
  }

  it('refuseNextConnections(n) refuses n upgrades, then accepts; refuseAll refuses until turned off', async () => {
    server = await startModelStandIn();
    server.refuseNextConnections(2);
    expect(await tryOpen(server.url)).toBe(503);
    expect(await tryOpen(server.url)).toBe(503);
    expect(await tryOpen(server.url)).toBe(101);
    expect(server.sessions).toHaveLength(1);
    server.refuseAll(true, 429);
    expect(await tryOpen(server.url)).toBe(429);
    expect(await tryOpen(server.url)).toBe(429);
    server.refuseAll(false);
    expect(await tryOpen(server.url)).toBe(101);
    expect(server.refused.map((r) => r.status)).toEqual([503, 503, 429, 429]);
    expect(server.sessions).toHaveLength(2);
  });

  it('dropSocketAbruptly destroys the socket without a close frame (1006); dropSocket sends its code', async () => {
    const c = await open();
    const closed = new Promise<number>((r) => c.ws.once('close', (code) => r(code)));
    server!.sessions[0]!.dropSocketAbruptly();
    expect(await closed).toBe(1006);
    const c2 = await Client.open(`${server!.url}?model=gpt-realtime`);
    clients.push(c2);
    const closed2 = new Promise<number>((r) => c2.ws.once('close', (code) => r(code)));
    server!.sessions[1]!.dropSocket(4001);
    expect(await closed2).toBe(4001);
    await vi.waitFor(() => expect(server!.sessions.map((s) => s.closed)).toEqual([true, true]));
  });

  it('records every conversation.item.create item: types, roles, text, call_ids', async () => {
    const c = await open();
    const items = [
      { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'I want to check my coverage.' }] },
      { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Sure, what is the member ID?' }] },
      { type: 'function_call', call_id: 'call_old1', name: 'check_eligibility', arguments: '{"member_id":"MB123456"}' },
      { type: 'function_call_output', call_id: 'call_old1', output: '{"status":"eligible"}' },
    ];
    for (const item of items) c.send({ type: 'conversation.item.create', item });
    await c.next((e) => e.type === 'conversation.item.done' && e.item.type === 'function_call_output');
    const rec = server!.sessions[0]!;
    expect(rec.items.map((i) => [i.type, i.role, i.text, i.call_id])).toEqual([
      ['message', 'user', 'I want to check my coverage.', undefined],
      ['message', 'assistant', 'Sure, what is the member ID?', undefined],
      ['function_call', undefined, undefined, 'call_old1'],
      ['function_call_output', undefined, undefined, 'call_old1'],
    ]);
    expect(rec.items[2]).toMatchObject({ name: 'check_eligibility', arguments: '{"member_id":"MB123456"}' });
    expect(rec.items[3]!.output).toBe('{"status":"eligible"}');
    expect(rec.items[0]!.raw).toEqual(items[0]);
    expect(c.all('error')).toEqual([]);
  });
});
