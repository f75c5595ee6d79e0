// The GPT-Live stand-in (src/sim/live-server.ts) driven by a raw ws client over loopback.
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { speechLike, ulawEncode } from '../src/sim/audio.js';
import { MAX_CHUNK_GAP_MS, liveMessageTokens, liveReplyMs, startLiveStandIn, type LiveStandIn, type LiveStandInOptions } from '../src/sim/live-server.js';
import { eligibilityScenario, parallelEligibilityScenario } from '../src/sim/scenarios.js';

type Fmt = 'pcmu8k' | 'pcm24k';
const WIRE: Record<Fmt, { type: string; rate: number }> = { pcmu8k: { type: 'audio/pcmu', rate: 8000 }, pcm24k: { type: 'audio/pcm', rate: 24000 } };
const BYTES_PER_MS: Record<Fmt, number> = { pcmu8k: 8, pcm24k: 48 };

const TOOLS = [
  {
    type: 'function',
    name: 'check_eligibility',
    description: 'Check a member',
    parameters: { type: 'object', properties: { member_id: { type: 'string' }, date_of_birth: { type: 'string' } } },
  },
];

function startEvent(fmt: Fmt, extra: Record<string, unknown> = {}) {
  return {
    type: 'session.start',
    event_id: 'evt_start',
    session: {
      model: 'gpt-live-1.1',
      instructions: 'You answer an eligibility line.',
      audio: { format: WIRE[fmt], output: { voice: 'marin' } },
      delegation: { type: 'responses', responses: { model: 'gpt-5-mini', instructions: 'Call the tools the task needs.', tools: TOOLS, parallel_tool_calls: true } },
      input: [],
      ...extra,
    },
  };
}

class Client {
  readonly events: any[] = [];
  readonly arrivals: number[] = [];
  closeCode: number | undefined;
  private waiters: { pred: (e: any) => boolean; resolve: (e: any) => void }[] = [];
  readonly closed: Promise<number>;
  constructor(readonly ws: WebSocket) {
    ws.on('message', (d) => {
      const e = JSON.parse(d.toString());
      this.events.push(e);
      this.arrivals.push(performance.now());
      this.waiters = this.waiters.filter((w) => (w.pred(e) ? (w.resolve(e), false) : true));
    });
    this.closed = new Promise((res) => ws.on('close', (code) => res((this.closeCode = code))));
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
  static async started(url: string, fmt: Fmt): Promise<Client> {
    const c = await Client.open(url);
    c.send(startEvent(fmt));
    await c.next('session.started');
    return c;
  }
  send(ev: unknown) {
    this.ws.send(JSON.stringify(ev));
  }
  next(type: string | ((e: any) => boolean), timeoutMs = 8000): Promise<any> {
    const pred = typeof type === 'string' ? (e: any) => e.type === type : type;
    const seen = this.events.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out waiting for ${String(type)}; got ${this.events.map((e) => e.type).join(',')}`)), timeoutMs);
      this.waiters.push({ pred, resolve: (e) => (clearTimeout(t), resolve(e)) });
    });
  }
  all(type: string): any[] {
    return this.events.filter((e) => e.type === type);
  }
  /** Text of the output transcript deltas from index `from` of events. */
  outText(from = 0): string {
    return this.events.slice(from).filter((e) => e.type === 'session.output_transcript.delta').map((e) => e.delta).join('');
  }
  inText(): string {
    return this.all('session.input_transcript.delta').map((e) => e.delta).join('');
  }
  /** Sends `ms` of caller speech then `silenceMs` of silence, in 20 ms appends. */
  speak(fmt: Fmt, ms: number, silenceMs = 700, seed = 2) {
    const rate = fmt === 'pcmu8k' ? 8000 : 24000;
    const pcm = speechLike(ms, rate, seed);
    const speech = fmt === 'pcmu8k' ? Buffer.from(ulawEncode(pcm)) : Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength);
    const silence = Buffer.alloc(silenceMs * BYTES_PER_MS[fmt], fmt === 'pcmu8k' ? 0xff : 0);
    const all = Buffer.concat([speech, silence]);
    const frame = 20 * BYTES_PER_MS[fmt];
    for (let off = 0; off < all.length; off += frame) this.send({ type: 'session.input_audio.append', audio: all.subarray(off, off + frame).toString('base64') });
  }
}

/** Waits until output has paused for `quietMs` after some output arrived from index `from`. */
async function utteranceAfter(c: Client, from: number, quietMs = 250): Promise<void> {
  await c.next((e) => e.type === 'session.output_audio.delta' && c.events.indexOf(e) >= from);
  for (;;) {
    const last = c.arrivals[c.events.length - 1]!;
    const lastAudio = [...c.events.keys()].filter((i) => i >= from && c.events[i].type === 'session.output_audio.delta').pop()!;
    if (performance.now() - c.arrivals[lastAudio]! >= quietMs && performance.now() - last >= 0) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Output audio bytes and transcript deltas received from event index `from` to `to`. */
function output(c: Client, from: number, to = c.events.length) {
  const evs = c.events.slice(from, to);
  const bytes = evs.filter((e) => e.type === 'session.output_audio.delta').reduce((n, e) => n + Buffer.from(e.delta, 'base64').length, 0);
  const words = evs.filter((e) => e.type === 'session.output_transcript.delta');
  return { bytes, words, text: words.map((w) => w.delta).join('') };
}

let standIn: LiveStandIn | undefined;
const clients: Client[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.ws.terminate();
  await standIn?.close();
  standIn = undefined;
});
async function start(opts: LiveStandInOptions = {}) {
  standIn = await startLiveStandIn(opts);
  return standIn;
}
async function open(fmt?: Fmt): Promise<Client> {
  const c = fmt ? await Client.started(standIn!.url, fmt) : await Client.open(standIn!.url);
  clients.push(c);
  return c;
}

describe('live stand-in: session start', () => {
  it('answers session.start with the resolved session', async () => {
    const s = await start();
    const c = await open();
    c.send(startEvent('pcmu8k', { input: [{ role: 'user', content: [{ type: 'input_text', text: 'Hello' }] }] }));
    const ev = await c.next('session.started');
    expect(ev.client_event_id).toBe('evt_start');
    expect(ev.session).toMatchObject({ model: 'gpt-live-1.1', status: 'active', audio: { format: { type: 'audio/pcmu', rate: 8000 } }, instructions: 'You answer an eligibility line.' });
    expect(ev.session.id).toMatch(/^sess_/);
    expect(ev.session.expires_at).toBeGreaterThan(Date.now() / 1000);
    expect(ev.session.delegation.responses.tools[0].name).toBe('check_eligibility');
    expect(ev.session.input).toHaveLength(1);
    expect(s.sessions[0]!.format).toBe('pcmu8k');
    expect(s.sessions[0]!.start.model).toBe('gpt-live-1.1');
  });

  it('refuses an upgrade without a bearer token (401) and N upgrades on request', async () => {
    const s = await start();
    const status = (headers: Record<string, string>) =>
      new Promise<number>((resolve) => {
        const ws = new WebSocket(s.url, { headers });
        ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        ws.on('open', () => (ws.close(), resolve(101)));
        ws.on('error', () => {});
      });
    expect(await status({})).toBe(401);
    s.refuseNextConnections(2, 503);
    expect(await status({ Authorization: 'Bearer sk' })).toBe(503);
    expect(await status({ Authorization: 'Bearer sk' })).toBe(503);
    expect(await status({ Authorization: 'Bearer sk' })).toBe(101);
    expect(s.refused.map((r) => r.status)).toEqual([503, 503]);
  });

  it('refuses any first event other than session.start with an error and a close', async () => {
    await start();
    const c = await open();
    c.send({ type: 'session.commentary.append', content: 'Hi', delegation_id: null });
    expect((await c.next('error')).error.code).toBe('session_not_started');
    expect(await c.closed).toBe(1008);
  });

  it.each([
    ['pcma', { audio: { format: { type: 'audio/pcma', rate: 8000 } } }, 'invalid_value'],
    ['no delegation', { delegation: null }, 'invalid_value'],
    ['non-function tool', { delegation: { type: 'responses', responses: { model: 'gpt-5-mini', tools: [{ type: 'web_search' }] } } }, 'invalid_value'],
    ['no model', { model: '' }, 'missing_required_parameter'],
  ])('refuses a session with %s', async (_name, extra, code) => {
    await start();
    const c = await open();
    c.send(startEvent('pcm24k', extra));
    expect((await c.next('error')).error.code).toBe(code);
    expect(await c.closed).toBe(1008);
  });

  it('holds the history limits: 128 messages and 8,192 tokens by ceil(chars/3)+4', async () => {
    await start();
    const msg = (text: string, i: number) => ({ role: i % 2 ? 'assistant' : 'user', content: [{ type: 'input_text', text }] });
    const ok = await open();
    ok.send(startEvent('pcm24k', { input: Array.from({ length: 128 }, (_, i) => msg('Fine.', i)) }));
    await ok.next('session.started');

    const tooMany = await open();
    tooMany.send(startEvent('pcm24k', { input: Array.from({ length: 129 }, (_, i) => msg('Fine.', i)) }));
    expect((await tooMany.next('error')).error.code).toBe('history_too_long');

    // 8 messages of 3,060 chars: 8 × 1,024 = 8,192 tokens fits; one more char does not.
    const text = 'x'.repeat(3060);
    expect(liveMessageTokens(text) * 8).toBe(8192);
    const fits = await open();
    fits.send(startEvent('pcm24k', { input: Array.from({ length: 8 }, (_, i) => msg(text, i)) }));
    await fits.next('session.started');
    const over = await open();
    over.send(startEvent('pcm24k', { input: Array.from({ length: 8 }, (_, i) => msg(i === 0 ? `${text}y` : text, i)) }));
    expect((await over.next('error')).error.code).toBe('history_too_long');
    expect(await over.closed).toBe(1008);
  });
});

describe.each(['pcmu8k', 'pcm24k'] as const)('live stand-in speaking (%s)', (fmt) => {
  it('greets on the first commentary, with word timings that span the audio', async () => {
    const s = await start();
    const c = await open(fmt);
    c.send({ type: 'session.commentary.append', content: 'Greet the caller.', delegation_id: null, event_id: 'c1' });
    const ack = await c.next('session.commentary.appended');
    expect(ack.client_event_id).toBe('c1');
    expect(ack.end_ms).toBeGreaterThanOrEqual(ack.start_ms);
    await utteranceAfter(c, 0);
    const out = output(c, 0);
    const greeting = eligibilityScenario.greeting;
    expect(out.text).toBe(greeting);
    expect(out.bytes).toBe(liveReplyMs(greeting) * BYTES_PER_MS[fmt]);
    const first = out.words[0]!;
    const last = out.words.at(-1)!;
    expect(last.end_ms - first.start_ms).toBe(out.bytes / BYTES_PER_MS[fmt]);
    for (let i = 1; i < out.words.length; i++) expect(out.words[i].start_ms).toBe(out.words[i - 1].end_ms);
    // Each chunk covers at most MAX_CHUNK_GAP_MS × speedup of audio, so deltas are sent at most that far apart.
    for (const send of s.sessions[0]!.audioSends) expect(send.bytes).toBeLessThanOrEqual(MAX_CHUNK_GAP_MS * 4 * BYTES_PER_MS[fmt]);
    expect(s.sessions[0]!.spoken[0]).toMatchObject({ text: greeting, yielded: false });
  });

  it('transcribes a caller turn as it is spoken and answers it with the scenario reply', async () => {
    const s = await start();
    const c = await open(fmt);
    c.speak(fmt, 1500);
    await utteranceAfter(c, 0);
    expect(c.inText()).toBe(eligibilityScenario.turns[0]!.callerTranscript);
    const ins = c.all('session.input_transcript.delta');
    expect(ins[0].start_ms).toBeLessThan(100);
    expect(ins.at(-1).end_ms).toBeGreaterThan(1200);
    const reply = eligibilityScenario.turns[0]!.reply!;
    const out = output(c, 0);
    expect(out.text).toBe(reply);
    expect(out.words.at(-1).end_ms - out.words[0].start_ms).toBe(liveReplyMs(reply));
    // The answer sits after the caller's speech on the session timeline.
    expect(out.words[0].start_ms).toBeGreaterThanOrEqual(ins.at(-1).end_ms);
    expect(s.sessions[0]!.audioMsReceived).toBe(2200);
    expect(s.sessions[0]!.inputBytes).toBe(2200 * BYTES_PER_MS[fmt]);
  });

  it('delegates two parallel calls, refuses an early or unknown answer, then speaks the reply built from the outputs', async () => {
    const s = await start({ scenario: parallelEligibilityScenario });
    const c = await open(fmt);
    c.speak(fmt, 2000);
    const created = await c.next('session.delegation.created');
    expect(created.delegation).toMatchObject({ type: 'delegation', target: 'responses' });
    expect(typeof created.offset_ms).toBe('number');
    const done = await c.next((e) => e.type === 'response.event' && e.event.type === 'response.done');
    // The preamble was spoken before the delegation.
    const createdAt = c.events.indexOf(created);
    expect(output(c, 0, createdAt).text).toBe(parallelEligibilityScenario.turns[0]!.preamble);
    const nested = c.all('response.event');
    expect(nested.every((e) => e.delegation_id === created.delegation.id)).toBe(true);
    expect(nested[0].event).toMatchObject({ type: 'response.created', response: { id: created.delegation.response_id } });
    const calls = nested.filter((e) => e.event.type === 'response.output_item.done').map((e) => e.event.item);
    expect(calls).toHaveLength(2);
    for (const item of calls) expect(item).toMatchObject({ type: 'function_call', name: 'check_eligibility', status: 'completed' });
    expect(JSON.parse(calls[1].arguments).member_id).toBe('K T 6 5 4 3 2 1');
    const deltas = nested.filter((e) => e.event.type === 'response.function_call_arguments.delta' && e.event.item_id === calls[0].id).map((e) => e.event.delta);
    expect(deltas.join('')).toBe(calls[0].arguments);
    expect(done.event.response).toMatchObject({ status: 'completed', usage: { input_tokens: expect.any(Number), output_tokens: expect.any(Number) } });
    expect(done.event.response.output).toHaveLength(2);

    const outputs = ['{"status":"active","plan":"Gold"}', '{"status":"inactive"}'];
    c.send({ type: 'response.item.create', item: { type: 'function_call_output', call_id: calls[0].call_id, output: outputs[0] } });
    c.send({ type: 'response.create', event_id: 'rc1' });
    const early = await c.next('error');
    expect(early.error).toMatchObject({ code: 'tool_outputs_missing', client_event_id: 'rc1' });
    c.send({ type: 'response.item.create', item: { type: 'function_call_output', call_id: 'call_nope', output: '{}' } });
    await c.next((e) => e.type === 'error' && e.error.code === 'unknown_call_id');
    c.send({ type: 'response.item.create', item: { type: 'function_call_output', call_id: calls[1].call_id, output: outputs[1] } });
    const mark = c.events.length;
    c.send({ type: 'response.create' });
    const msg = await c.next((e) => e.type === 'response.event' && e.event.type === 'response.output_item.done' && e.event.item.type === 'message');
    const expected = parallelEligibilityScenario.turns[0]!.followUp!(outputs) as string;
    expect(msg.event.item.content[0].text).toBe(expected);
    await utteranceAfter(c, c.events.indexOf(msg));
    expect(output(c, mark).text).toBe(expected);
    const rec = s.sessions[0]!.delegations[0]!;
    expect(rec.responseCreates.map((r) => r.missing)).toEqual([1, 0]);
    expect(rec.outputs[calls[1].call_id]).toBe(outputs[1]);
    // A second response.create for the same round is refused.
    c.send({ type: 'response.create' });
    await c.next((e) => e.type === 'error' && e.error.code === 'no_response_waiting');
  });

  it('yields to a caller who speaks over it: output stops, then the input transcript follows', async () => {
    const s = await start({ audioSpeedup: 1, yieldMs: 80 });
    const c = await open(fmt);
    c.send({ type: 'session.commentary.append', content: 'Greet the caller.', delegation_id: null });
    await c.next('session.output_audio.delta');
    await new Promise((r) => setTimeout(r, 300));
    c.speak(fmt, 1200, 0);
    const firstIn = await c.next('session.input_transcript.delta');
    const iIn = c.events.indexOf(firstIn);
    const rec = s.sessions[0]!;
    expect(rec.yields).toHaveLength(1);
    const y = rec.yields[0]!;
    expect(y.at - y.onsetAt).toBeGreaterThanOrEqual(79);
    // Nothing was sent after the yield; the input delta came after the last output audio.
    expect(rec.audioSends.filter((a) => a.at > y.at)).toHaveLength(0);
    const lastOut = [...c.events.keys()].filter((i) => c.events[i].type === 'session.output_audio.delta').pop()!;
    expect(lastOut).toBeLessThan(iIn);
    expect(rec.spoken[0]).toMatchObject({ yielded: true });
    expect(rec.spoken[0]!.audioMs).toBeLessThan(rec.spoken[0]!.fullMs);
    // What the caller was sent after its onset: the output of yieldMs at 1× speed (one chunk or two).
    const afterOnset = rec.audioSends.filter((a) => a.at >= y.onsetAt).reduce((n, a) => n + a.bytes, 0) / BYTES_PER_MS[fmt];
    expect(afterOnset).toBeLessThanOrEqual(2 * MAX_CHUNK_GAP_MS);
    // The caller's turn is then answered.
    c.speak(fmt, 0, 700);
    await c.next((e) => e.type === 'session.output_transcript.delta' && c.events.indexOf(e) > iIn);
  });
});

describe('live stand-in: usage, faults, close', () => {
  it('reports cumulative usage and the final usage in session.closed', async () => {
    const s = await start({ usageEveryMs: 50 });
    const c = await open('pcmu8k');
    c.speak('pcmu8k', 1000, 1000);
    await new Promise((r) => setTimeout(r, 300));
    const usage = c.all('session.usage.updated').map((e) => e.usage.seconds);
    expect(usage.length).toBeGreaterThan(1);
    for (let i = 1; i < usage.length; i++) expect(usage[i]).toBeGreaterThanOrEqual(usage[i - 1]);
    expect(usage.at(-1)).toBe(2);
    c.send({ type: 'session.close', event_id: 'bye' });
    const closed = await c.next('session.closed');
    expect(closed).toMatchObject({ reason: 'close_requested', usage: { seconds: 2 }, session: { status: 'active' }, client_event_id: 'bye' });
    expect(await c.closed).toBe(1000);
    expect(s.sessions[0]!.closedReason).toBe('close_requested');
  });

  it('sends a scripted error mid-answer and keeps speaking', async () => {
    await start({ faults: [{ turn: 0, kind: 'error', afterMs: 300 }] });
    const c = await open('pcm24k');
    c.speak('pcm24k', 1500);
    const err = await c.next('error');
    expect(err.error.code).toBe('server_error');
    await utteranceAfter(c, 0);
    expect(output(c, 0).text).toBe(eligibilityScenario.turns[0]!.reply);
  });

  it('drops the socket mid-answer without a close frame', async () => {
    const s = await start({ faults: [{ turn: 0, kind: 'drop_abrupt', afterMs: 200 }] });
    const c = await open('pcmu8k');
    c.speak('pcmu8k', 1500);
    expect(await c.closed).toBe(1006);
    expect(s.sessions[0]!.spoken[0]!.audioMs).toBeLessThan(s.sessions[0]!.spoken[0]!.fullMs);
    expect(c.all('session.closed')).toHaveLength(0);
  });

  it('ends a session as connection_lost', async () => {
    await start({ faults: [{ turn: 0, kind: 'connection_lost' }] });
    const c = await open('pcmu8k');
    c.speak('pcmu8k', 1500);
    const closed = await c.next('session.closed');
    expect(closed.reason).toBe('connection_lost');
    expect(closed.usage.seconds).toBeGreaterThan(0);
    expect(await c.closed).toBe(1011);
  });

  it('records thinking and answers keypad text on the next commentary', async () => {
    const s = await start();
    const c = await open('pcmu8k');
    c.send({ type: 'session.commentary.append', content: 'Greet the caller.', delegation_id: null });
    await utteranceAfter(c, 0);
    c.send({ type: 'session.thinking.append', content: 'The caller pressed these keys: 4 2', delegation_id: null });
    await c.next('session.thinking.appended');
    const mark = c.events.length;
    c.send({ type: 'session.commentary.append', content: 'Answer the caller now.', delegation_id: null });
    await utteranceAfter(c, mark);
    expect(output(c, mark).text).toBe('You pressed 42.');
    expect(s.sessions[0]!.thinking).toEqual(['The caller pressed these keys: 4 2']);
    expect(s.sessions[0]!.events.map((e) => e.type)).toContain('session.thinking.append');
  });
});
