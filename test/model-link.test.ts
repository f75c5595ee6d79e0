/**
 * ModelLink on real loopback sockets: the real OpenAI provider against the
 * model stand-in (src/sim/model-server.ts), through the loopback WebSocket
 * proxy (src/sim/ws-proxy.ts, the fuzzer's too), set here to refuse or hold
 * upgrades, kill a connection without a close frame, stop answering pings,
 * and record every client event it forwards (so replayed items are read off
 * the wire).
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  ModelLink,
  newLinkStats,
  type LinkStats,
  type ModelLinkOptions,
} from '../src/call/model-link.js';
import { cutWords } from '../src/call/transcript.js';
import { ModelConnectError, type ModelEvent, type ModelSession } from '../src/call/voice-model.js';
import { silentLogger } from '../src/log.js';
import { OpenAIRealtimeProvider, type OpenAIRealtimeProviderOptions } from '../src/realtime/openai-provider.js';
import { speechLike, ulawEncode } from '../src/sim/audio.js';
import { startModelStandIn, type ModelStandIn } from '../src/sim/model-server.js';
import type { Scenario } from '../src/sim/scenarios.js';
import { WsProxy, type ProxiedPair } from '../src/sim/ws-proxy.js';
import { until } from './helpers/until.js';

// ---------------------------------------------------------------------------
// A WebSocket proxy between the provider and the stand-in

interface ProxyConn extends ProxiedPair {
  /** Client events forwarded to the stand-in, parsed, in order. */
  sent: any[];
  /** Stop answering the client's pings (the connection otherwise stays up). */
  frozen: boolean;
}

/** The shared loopback proxy (sim/ws-proxy.ts) with the knobs these tests turn: refuse, hold, freeze, cut. */
class LinkProxy {
  /** Refuse this many upgrades (HTTP `refuseStatus`), then accept. */
  refuse = 0;
  refuseAll = false;
  refuseStatus = 503;
  /** Leave upgrades unanswered. */
  hold = false;
  private proxy!: WsProxy<ProxyConn>;

  constructor(private readonly upstreamBase: string) {}

  async listening(): Promise<this> {
    this.proxy = await WsProxy.start<ProxyConn>({
      upstreamUrl: (requestUrl) => `${this.upstreamBase}${requestUrl}`,
      connection: (pair) => ({ ...pair, sent: [], frozen: false }),
      admit: () => {
        if (this.refuseAll || this.refuse > 0) {
          if (this.refuse > 0) this.refuse--;
          return { refuse: this.refuseStatus };
        }
        return this.hold ? 'hold' : 'accept';
      },
      fromClient: (c, data) => c.sent.push(JSON.parse(data.toString())),
      answerPing: (c) => !c.frozen,
    });
    return this;
  }

  get conns(): ProxyConn[] {
    return this.proxy.conns;
  }

  /** Upgrade requests seen (= connect attempts). */
  get upgrades(): number {
    return this.proxy.upgrades;
  }

  /** Held upgrade requests whose client went away. */
  get heldAbandoned(): number {
    return this.proxy.heldAbandoned;
  }

  get url(): string {
    return `${this.proxy.origin}/v1/realtime`;
  }

  /** Kill the connection without a close frame (TCP reset from the provider's view). */
  killAbruptly(i: number): void {
    this.conns[i]!.client.terminate();
  }

  close(): Promise<void> {
    return this.proxy.close();
  }
}

// ---------------------------------------------------------------------------
// Fixtures

const SESSION_OPTS = {
  instructions: 'You answer an eligibility line. Be brief.',
  voice: 'marin',
  tools: [{ name: 'check_eligibility', description: 'Check coverage', parameters: { type: 'object' } }],
};

const REPLY_1 = 'Sure thing, I can help with that today. Could you read me the member ID printed on your card please?';
const SCENARIO: Scenario = {
  greeting: 'Hello, this is the clinic line. How can I help?',
  turns: [
    { callerTranscript: 'I would like to check my coverage please.', reply: REPLY_1 },
    {
      callerTranscript: 'It is M B one two three.',
      tool: { name: 'check_eligibility', arguments: { member_id: 'MB123' }, reply: () => 'You are covered on the gold plan.' },
    },
    { callerTranscript: 'Thanks, bye.', reply: 'Goodbye!' },
  ],
  onUserText: () => 'You pressed some keys.',
};

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

interface Rig {
  model: ModelStandIn;
  proxy: LinkProxy;
  provider: OpenAIRealtimeProvider;
  stats: LinkStats;
  linkOpts: ModelLinkOptions;
}

async function rig(
  over: { provider?: Partial<OpenAIRealtimeProviderOptions>; link?: Partial<ModelLinkOptions>; audioSpeedup?: number } = {},
): Promise<Rig> {
  const model = await startModelStandIn({ scenario: SCENARIO, audioSpeedup: over.audioSpeedup ?? 20, transcriptDelayMs: 10, responseDelayMs: 10 });
  cleanups.push(() => model.close());
  const proxy = await new LinkProxy(`ws://127.0.0.1:${model.port}`).listening();
  cleanups.push(() => proxy.close());
  const provider = new OpenAIRealtimeProvider({
    url: proxy.url,
    model: 'gpt-realtime',
    apiKey: 'sk-test-link',
    connectTimeoutMs: 2000,
    format: 'ulaw8k',
    transcriptionModel: 'gpt-4o-transcribe',
    vad: { threshold: 0.5, prefixPaddingMs: 300, silenceDurationMs: 500 },
    log: silentLogger,
    ...over.provider,
  });
  const stats = newLinkStats();
  const linkOpts: ModelLinkOptions = {
    log: silentLogger,
    stats,
    backoffBaseMs: 20,
    backoffMaxMs: 100,
    reconnectBudgetMs: 5000,
    openBudgetMs: 2000,
    ...over.link,
  };
  return { model, proxy, provider, stats, linkOpts };
}

async function openLink(r: Rig): Promise<ModelLink> {
  const link = await ModelLink.open(r.provider, SESSION_OPTS, r.linkOpts);
  cleanups.push(() => link.close());
  return link;
}

function collect(link: ModelLink): ModelEvent[] {
  const out: ModelEvent[] = [];
  link.onEvent((e) => out.push(e));
  return out;
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

function ofType<T extends ModelEvent['type']>(evs: ModelEvent[], type: T): Extract<ModelEvent, { type: T }>[] {
  return evs.filter((e): e is Extract<ModelEvent, { type: T }> => e.type === type);
}

/** One caller turn for the stand-in's VAD: speech then enough silence to end it, as 20 ms µ-law appends. */
function speak(link: ModelLink, speechMs = 800, silenceMs = 700, seed = 3): void {
  const audio = Buffer.concat([Buffer.from(ulawEncode(speechLike(speechMs, 8000, seed))), Buffer.alloc(silenceMs * 8, 0xff)]);
  for (let off = 0; off < audio.length; off += 160) link.appendAudio(audio.subarray(off, off + 160).toString('base64'));
}

/** A 20 ms µ-law append whose bytes all equal `tag` (so the wire shows which append it was). */
function tagged(tag: number): string {
  return Buffer.alloc(160, tag).toString('base64');
}

function appendsOf(sent: any[]): string[] {
  return sent.filter((e) => e.type === 'input_audio_buffer.append').map((e) => e.audio as string);
}

function itemsOf(sent: any[]): any[] {
  return sent.filter((e) => e.type === 'conversation.item.create').map((e) => e.item);
}

// ---------------------------------------------------------------------------
// Pure parts


// ---------------------------------------------------------------------------
// On the wire

describe('ModelLink reconnects', () => {
  it('a drop with close code 1011: link_lost at once, the first attempt at once on a fresh socket, same session.update', async () => {
    const r = await rig();
    const link = await openLink(r);
    const evs = collect(link);
    await until(() => evs.some((e) => e.type === 'ready'), { timeoutMs: 2000, what: 'ready' });
    r.model.sessions[0]!.dropSocket(1011);
    await until(() => ofType(evs, 'link_restored').length === 1, { what: 'link_restored' });
    const lost = ofType(evs, 'link_lost');
    expect(lost).toHaveLength(1);
    expect(lost[0]!.cause).toContain('1011');
    const restored = ofType(evs, 'link_restored')[0]!;
    expect(restored.attempts).toBe(1);
    expect(restored.unansweredTurn).toBe(false);
    expect(evs.map((e) => e.type)).toEqual(['ready', 'link_lost', 'link_restored']);
    expect(r.proxy.conns).toHaveLength(2);
    expect(r.proxy.conns[1]!.sent[0]).toEqual(r.proxy.conns[0]!.sent[0]);
    expect(r.proxy.conns[1]!.sent[0].type).toBe('session.update');
    expect(r.stats).toEqual({ drops: 1, reconnects: 1, giveUps: 0 });
    // The restored session works: a greeting request reaches the new socket and is answered.
    link.createResponse();
    await until(() => ofType(evs, 'response_done').length === 1, { what: 'response on the new session' });
    expect(r.model.sessions[1]!.responses).toHaveLength(1);
    console.log(`[model-link] drop 1011 → restored in ${restored.gapMs} ms`);
  });

  it('an abrupt drop (no close frame) takes the same path', async () => {
    const r = await rig();
    const link = await openLink(r);
    const evs = collect(link);
    r.proxy.killAbruptly(0);
    await until(() => ofType(evs, 'link_restored').length === 1, { what: 'link_restored' });
    expect(ofType(evs, 'link_lost')[0]!.cause).toMatch(/1006/);
    expect(ofType(evs, 'link_restored')[0]!.attempts).toBe(1);
    expect(r.stats.drops).toBe(1);
    console.log(`[model-link] abrupt drop → restored in ${ofType(evs, 'link_restored')[0]!.gapMs} ms`);
  });

  it('a missed pong is a loss; a healthy socket keeps answering pings and stays up', async () => {
    const r = await rig({ provider: { pingIntervalMs: 40, pongTimeoutMs: 120 } });
    const link = await openLink(r);
    const evs = collect(link);
    await delay(300); // several pings answered: no loss
    expect(ofType(evs, 'link_lost')).toHaveLength(0);
    r.proxy.conns[0]!.frozen = true;
    await until(() => ofType(evs, 'link_restored').length === 1, { what: 'link_restored' });
    expect(ofType(evs, 'link_lost')[0]!.cause).toMatch(/pong/);
    await delay(300);
    expect(ofType(evs, 'link_lost')).toHaveLength(1); // the new socket answers its pings
    expect(r.proxy.conns).toHaveLength(2);
  });

  it('refused 3 times, then accepted: restored after 4 attempts with backoff between them', async () => {
    const r = await rig();
    const link = await openLink(r);
    const evs = collect(link);
    r.proxy.refuse = 3;
    r.model.sessions[0]!.dropSocket(1011);
    await until(() => ofType(evs, 'link_restored').length === 1, { what: 'link_restored' });
    expect(ofType(evs, 'link_restored')[0]!.attempts).toBe(4);
    expect(r.proxy.upgrades).toBe(5);
    expect(r.stats).toEqual({ drops: 1, reconnects: 1, giveUps: 0 });
  });

  // The budget is generous for a loaded machine: the first refusal may take a while, and it must still be followed by more attempts.
  it('refused for ever: link_failed once the budget is spent, then nothing more', async () => {
    const budgetMs = 1500;
    const r = await rig({ link: { reconnectBudgetMs: budgetMs } });
    const link = await openLink(r);
    const evs = collect(link);
    r.proxy.refuseAll = true;
    const t0 = Date.now();
    r.model.sessions[0]!.dropSocket(1011);
    await until(() => ofType(evs, 'link_failed').length === 1, { what: 'link_failed' });
    const elapsed = Date.now() - t0;
    const failed = ofType(evs, 'link_failed')[0]!;
    expect(failed.attempts).toBeGreaterThanOrEqual(2);
    expect(failed.reason).toMatch(/503/); // what the endpoint said, even when the budget ran out during an attempt
    // It kept trying until no further attempt fitted in the budget (the last wait is at most backoffMaxMs).
    expect(elapsed).toBeGreaterThanOrEqual(budgetMs - 100 - 10);
    expect(r.stats).toEqual({ drops: 1, reconnects: 0, giveUps: 1 });
    link.appendAudio(tagged(1));
    link.createResponse();
    await delay(250);
    // Nothing more was dialled: the endpoint saw the open (upgrade 1) and the attempts, all but an attempt still
    // connecting when the budget ran out, which was aborted and may or may not have reached it.
    const inFlightAtBudget = /still connecting/.test(failed.reason);
    expect(r.proxy.upgrades - 1).toBeLessThanOrEqual(failed.attempts);
    expect(r.proxy.upgrades - 1).toBeGreaterThanOrEqual(failed.attempts - (inFlightAtBudget ? 1 : 0));
    expect(evs.map((e) => e.type)).toEqual(['ready', 'link_lost', 'link_failed']);
  });

  it('a refusal that will not change (401) gives up at once', async () => {
    const r = await rig();
    const link = await openLink(r);
    const evs = collect(link);
    r.proxy.refuseAll = true;
    r.proxy.refuseStatus = 401;
    r.model.sessions[0]!.dropSocket(1011);
    await until(() => ofType(evs, 'link_failed').length === 1, { what: 'link_failed' });
    expect(ofType(evs, 'link_failed')[0]!.attempts).toBe(1);
    expect(r.proxy.upgrades).toBe(2);
  });

  it('close during a held connect aborts it; close during backoff stops the attempts; no event after close', async () => {
    const r = await rig({ link: { backoffBaseMs: 150, backoffMaxMs: 150 } });
    const a = await openLink(r);
    const evsA = collect(a);
    r.proxy.hold = true;
    r.model.sessions[0]!.dropSocket(1011);
    await until(() => r.proxy.upgrades === 2, { what: 'the held attempt' });
    a.close();
    // Sooner than the provider's own 2 s connect timeout: the abort did it.
    await until(() => r.proxy.heldAbandoned === 1, { timeoutMs: 1000, what: 'the held connect to be aborted' });
    r.proxy.hold = false;

    const b = await openLink(r);
    const evsB = collect(b);
    r.proxy.refuseAll = true;
    r.model.sessions[1]!.dropSocket(1011);
    await until(() => r.proxy.upgrades === 5, { what: 'two refused attempts' }); // b's open was upgrade 3
    b.close();
    const upgrades = r.proxy.upgrades;
    await delay(500); // > 3 backoff periods
    expect(r.proxy.upgrades).toBe(upgrades);
    expect(evsA.map((e) => e.type)).toEqual(['ready', 'link_lost']);
    expect(evsB.map((e) => e.type)).toEqual(['ready', 'link_lost']);
    expect(r.stats).toEqual({ drops: 2, reconnects: 0, giveUps: 0 });
  });

  it('close: usage the session reports as it closes still reaches the call; nothing else does', async () => {
    const usage = { inputTextTokens: 0, inputAudioTokens: 0, inputCachedTokens: 0, outputTextTokens: 0, outputAudioTokens: 0, activeAudioSeconds: 1.5 };
    let listener: ((ev: ModelEvent) => void) | undefined;
    const session: ModelSession = {
      format: 'ulaw8k',
      onEvent: (l) => void (listener = l),
      appendAudio() {},
      sendUserText() {},
      createResponse() {},
      cancelResponse() {},
      truncate() {},
      sendToolResult() {},
      close() {
        listener?.({ type: 'usage', usage });
        listener?.({ type: 'error', code: 'late', message: 'after close' });
      },
    };
    const link = await ModelLink.open({ name: 'closing', connect: async () => session }, SESSION_OPTS, { log: silentLogger });
    const evs = collect(link);
    link.close();
    listener?.({ type: 'usage', usage }); // after close: dropped
    expect(evs).toEqual([{ type: 'usage', usage }]);
  });

  it('closing from the link_lost handler dials nothing; closing from link_restored closes the new session', async () => {
    const r = await rig();
    const a = await openLink(r);
    const evsA: ModelEvent[] = [];
    a.onEvent((e) => {
      evsA.push(e);
      if (e.type === 'link_lost') a.close();
    });
    r.model.sessions[0]!.dropSocket(1011);
    await until(() => evsA.length === 2, { timeoutMs: 2000, what: 'link_lost' });
    await delay(100);
    expect(r.proxy.upgrades).toBe(1);

    const b = await openLink(r);
    const evsB: ModelEvent[] = [];
    b.onEvent((e) => {
      evsB.push(e);
      if (e.type === 'link_restored') b.close();
    });
    r.model.sessions[1]!.dropSocket(1011);
    await until(() => r.model.sessions.length === 3 && r.model.sessions[2]!.closed, { timeoutMs: 2000, what: 'the new session to be closed' });
    expect(evsB.map((e) => e.type)).toEqual(['ready', 'link_lost', 'link_restored']);
  });

  // The greeting lasts ~3 s of audio; at half speed the drop after its first words comes long before its transcript is done.
  it.each([
    { heard: 'all so far (no truncate)', heardShare: undefined },
    { heard: 'half of it (the call truncates on link_lost)', heardShare: 0.5 },
  ])('a drop mid-greeting, before its transcript is done: restored with unansweredTurn, the words said so far replayed, $heard', async ({ heardShare }) => {
    const r = await rig({ audioSpeedup: 2 });
    const link = await openLink(r);
    const evs: ModelEvent[] = [];
    let generatedMs = 0;
    link.onEvent((e) => {
      evs.push(e);
      if (e.type === 'audio') generatedMs += Buffer.from(e.audio, 'base64').length / 8;
      // As CallSession does: cut playback at the loss and tell the link what was heard.
      if (e.type === 'link_lost' && heardShare !== undefined) link.truncate(ofType(evs, 'audio')[0]!.itemId, generatedMs * heardShare);
    });
    link.createResponse();
    await until(() => ofType(evs, 'assistant_transcript_delta').length >= 2, { timeoutMs: 3000, what: 'the first words of the greeting' });
    r.model.sessions[0]!.dropSocket(1011);
    await until(() => ofType(evs, 'link_restored').length === 1, { what: 'link_restored' });
    expect(ofType(evs, 'link_restored')[0]!.unansweredTurn).toBe(true);
    const beforeLoss = evs.slice(0, evs.findIndex((e) => e.type === 'link_lost'));
    expect(ofType(beforeLoss, 'assistant_transcript')).toEqual([]); // the transcript never came: only its deltas
    const soFar = ofType(beforeLoss, 'assistant_transcript_delta')
      .map((e) => e.delta)
      .join('')
      .trim();
    expect(SCENARIO.greeting.startsWith(soFar)).toBe(true);
    expect(soFar.split(' ').length).toBeLessThan(SCENARIO.greeting.split(' ').length);
    const expected = heardShare === undefined ? soFar : cutWords(soFar, heardShare);
    if (heardShare !== undefined) expect(expected.endsWith('…')).toBe(true);
    expect(link.conversation()).toEqual([{ type: 'assistant_text', text: expected }]);
    await until(() => itemsOf(r.proxy.conns[1]?.sent ?? []).length === 1, { timeoutMs: 2000, what: 'the replayed item through the proxy' });
    expect(itemsOf(r.proxy.conns[1]!.sent)).toEqual([
      { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: expected }] },
    ]);
  });

  it('pre-warmed: a session lost before anyone listens reconnects too, and the events wait in order', async () => {
    const r = await rig();
    const link = await openLink(r);
    r.model.sessions[0]!.dropSocket(1011);
    await until(() => r.stats.reconnects === 1, { what: 'the reconnect' });
    const evs = collect(link);
    expect(evs.map((e) => e.type)).toEqual(['ready', 'link_lost', 'link_restored']);
  });

  it('open is aborted by its signal (the relay dropping a pre-warm): rejects, and the pending connect is cut', async () => {
    const r = await rig();
    r.proxy.hold = true;
    const ac = new AbortController();
    const opening = ModelLink.open(r.provider, SESSION_OPTS, r.linkOpts, ac.signal).then(
      () => undefined,
      (e: unknown) => e,
    );
    await until(() => r.proxy.upgrades === 1, { timeoutMs: 2000, what: 'the held attempt' });
    ac.abort();
    const err = await opening;
    expect(err).toBeInstanceOf(ModelConnectError);
    expect((err as ModelConnectError).retryable).toBe(false);
    await until(() => r.proxy.heldAbandoned === 1, { timeoutMs: 1000, what: 'the held connect to be aborted' });
    await delay(100);
    expect(r.proxy.upgrades).toBe(1);
  });

  it('open retries a refused first connect under the same rule, and rejects once its budget is spent', async () => {
    const r = await rig({ link: { openBudgetMs: 300 } });
    r.proxy.refuse = 2;
    const link = await openLink(r);
    expect(r.proxy.upgrades).toBe(3);
    expect(link.format).toBe('ulaw8k');
    r.proxy.refuseAll = true;
    const err = await ModelLink.open(r.provider, SESSION_OPTS, r.linkOpts).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ModelConnectError);
    expect((err as ModelConnectError).retryable).toBe(true);
    expect((err as Error).message).toMatch(/attempt/);
  });
});

describe('ModelLink replays the conversation and carries audio across the gap', () => {
  it('replays caller turns, heard-only assistant text, tool call and output, and DTMF text, in order', async () => {
    const r = await rig();
    const link = await openLink(r);
    const evs = collect(link);
    const done = () => ofType(evs, 'response_done').length;

    // Greeting, heard in full.
    link.createResponse();
    await until(() => done() === 1 && ofType(evs, 'assistant_transcript').length === 1, { what: 'greeting' });

    // Turn 1; the caller barges in after hearing 40 % of the reply.
    speak(link);
    await until(() => done() === 2 && ofType(evs, 'caller_transcript').length === 1, { what: 'turn 1' });
    const reply1 = ofType(evs, 'assistant_transcript')[1]!;
    expect(reply1.text).toBe(REPLY_1);
    const reply1Ms = ofType(evs, 'audio')
      .filter((e) => e.itemId === reply1.itemId)
      .reduce((n, e) => n + Buffer.from(e.audio, 'base64').length / 8, 0);
    const heardMs = Math.floor(reply1Ms * 0.4);
    link.truncate(reply1.itemId, heardMs);
    await until(() => r.model.sessions[0]!.truncates.length === 1, { timeoutMs: 2000, what: 'truncate' });

    // Turn 2: a tool call, its result, the spoken answer.
    speak(link, 800, 700, 5);
    await until(() => ofType(evs, 'tool_call').length === 1, { what: 'tool call' });
    const call = ofType(evs, 'tool_call')[0]!;
    link.sendToolResult(call.callId, '{"status":"active","plan":"gold"}', true);
    await until(() => done() === 4 && ofType(evs, 'caller_transcript').length === 2, { what: 'tool answer' });

    // DTMF as text, not yet answered when the socket drops.
    link.sendUserText('The caller pressed these keys on the phone keypad: 123');
    await until(() => r.model.sessions[0]!.userTexts.length === 1, { timeoutMs: 2000, what: 'user text' });
    r.model.sessions[0]!.dropSocket(1011);
    await until(() => ofType(evs, 'link_restored').length === 1, { what: 'link_restored' });
    expect(ofType(evs, 'link_restored')[0]!.unansweredTurn).toBe(true);

    // The proxy records what it forwards a moment after the link wrote it: wait for all eight items.
    await until(() => itemsOf(r.proxy.conns[1]?.sent ?? []).length >= 8, { timeoutMs: 3000, what: 'items through the proxy' });
    const sent = r.proxy.conns[1]!.sent;
    expect(sent[0].type).toBe('session.update');
    const items = itemsOf(sent);
    expect(items).toEqual([
      { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: SCENARIO.greeting }] },
      { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'I would like to check my coverage please.' }] },
      { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: cutWords(REPLY_1, heardMs / reply1Ms) }] },
      { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'It is M B one two three.' }] },
      { type: 'function_call', call_id: call.callId, name: 'check_eligibility', arguments: '{"member_id":"MB123"}' },
      { type: 'function_call_output', call_id: call.callId, output: '{"status":"active","plan":"gold"}' },
      { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'You are covered on the gold plan.' }] },
      { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'The caller pressed these keys on the phone keypad: 123' }] },
    ]);
    // The heard share really cut words: fewer than the whole reply, more than none.
    const cut = items[2].content[0].text as string;
    expect(cut.endsWith('…')).toBe(true);
    expect(cut.split(' ').length).toBeLessThan(REPLY_1.split(' ').length);
    // Nothing else went out with the replay (no response.create: the call decides), and the stand-in took every item.
    expect(sent.slice(1).every((e: any) => e.type === 'conversation.item.create')).toBe(true);
    await until(() => r.model.sessions[1]!.events.filter((e) => e.type === 'conversation.item.create').length === 8, { timeoutMs: 2000, what: 'items' });
    expect(r.model.sessions[1]!.errorsSent).toEqual([]);

    // Carry on: the call asks for the answer; the old item ids are not truncated on the new socket.
    link.truncate(reply1.itemId, 10);
    link.createResponse();
    await until(() => done() === 5, { what: 'answer on the new session' });
    expect(r.model.sessions[1]!.truncates).toEqual([]);
    expect(r.model.sessions[1]!.errorsSent).toEqual([]);
  });

  it.each([
    { format: 'ulaw8k' as const, keepMs: undefined, keptChunks: 25 },
    { format: 'pcm24k' as const, keepMs: 200, keptChunks: 10 },
  ])('gap audio ($format, keep $keepMs ms): only the most recent go out, after the replay; every later append arrives', async ({ format, keepMs, keptChunks }) => {
    const r = await rig({ provider: { format }, link: { backoffBaseMs: 60, backoffMaxMs: 60, gapAudioKeepMs: keepMs } });
    const chunkBytes = 20 * (format === 'ulaw8k' ? 8 : 48);
    const chunk = (t: number) => Buffer.alloc(chunkBytes, t).toString('base64');
    const link = await openLink(r);
    const evs: ModelEvent[] = [];
    let tag = 0;
    link.onEvent((e) => {
      evs.push(e);
      // 1 s of caller audio arrives during the gap, tagged 1..50.
      if (e.type === 'link_lost') for (let i = 0; i < 50; i++) link.appendAudio(chunk(++tag));
      // From the moment the link is restored, audio is live: tagged 101..110.
      if (e.type === 'link_restored') for (let i = 0; i < 10; i++) link.appendAudio(chunk(101 + i));
    });
    link.sendUserText('The caller pressed these keys on the phone keypad: 9');
    link.appendAudio(chunk(200)); // before the drop: the old socket
    r.proxy.refuse = 2; // a gap with backoff in it
    r.model.sessions[0]!.dropSocket(1011);
    await until(() => ofType(evs, 'link_restored').length === 1, { what: 'link_restored' });
    await until(() => appendsOf(r.proxy.conns[1]?.sent ?? []).length === keptChunks + 10, { timeoutMs: 2000, what: 'appends on the new socket' });
    const sent = r.proxy.conns[1]!.sent;
    const tags = appendsOf(sent).map((a) => Buffer.from(a, 'base64')[0]);
    expect(tags).toEqual([
      ...Array.from({ length: keptChunks }, (_, i) => 51 - keptChunks + i),
      ...Array.from({ length: 10 }, (_, i) => 101 + i),
    ]);
    // Order on the wire: session.update, the replayed item, the kept audio, live audio.
    expect(sent.map((e: any) => e.type).slice(0, 3)).toEqual(['session.update', 'conversation.item.create', 'input_audio_buffer.append']);
    expect(appendsOf(r.proxy.conns[0]!.sent).map((a) => Buffer.from(a, 'base64')[0])).toEqual([200]);
    await until(() => Math.round(r.model.sessions[1]!.audioMsReceived) === 20 * (keptChunks + 10), { timeoutMs: 2000, what: 'the stand-in to count the audio' });
    // Live again: later appends go straight to the new socket.
    link.appendAudio(chunk(111));
    await until(() => appendsOf(sent).length === keptChunks + 11, { timeoutMs: 2000, what: 'a later append' });
  });
});
