// The Realtime stand-in (src/sim/model-server.ts) driven by hand over loopback,
// plus the openai package's own OpenAIRealtimeWS client against it over wss.
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import OpenAI from 'openai';
import { OpenAIRealtimeWS } from 'openai/realtime/ws';
import { speechLike, ulawEncode } from '../src/sim/audio.js';
import { makeSelfSignedCert } from '../src/sim/tls.js';
import { startModelStandIn, type ModelStandIn, type Scenario } from '../src/sim/model-server.js';

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
  private waiters: { pred: (e: any) => boolean; resolve: (e: any) => void }[] = [];
  constructor(readonly ws: WebSocket) {
    ws.on('message', (d) => {
      const e = JSON.parse(d.toString());
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
    await new Promise((r) => setTimeout(r, 300));
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
