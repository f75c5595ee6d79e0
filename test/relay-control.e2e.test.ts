/**
 * Call control on the Twilio side (issue 16), end to end on loopback: the
 * real relay and edge (both edges), the real OpenAI provider client against
 * the model stand-in, real media streams; the Twilio steps after the stream
 * (`<Connect action>`, `<Dial action>`, the whisper) are placed by the test
 * as Twilio would, with signed POSTs. The transfer store is a shared map
 * (the call store's in production); the step-by-step tests save the decision
 * the session would have saved. The OutboundApp is a fake: it is
 * another module's, and only its port is under test here. The whole flow
 * runs too: the real session's transfer_call and end_call (stand-in
 * scenarios), a simulated Twilio (src/sim/twilio-call.ts) following every
 * TwiML document the relay answers.
 * Also: the pure transcript → conversation mapping (call/history.ts).
 */
import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { NO_RECORDING, type CallAgent, type CallPolicies, type TransferPolicy } from '../src/call/agent.js';
import { transcriptToConversation, MAX_HISTORY_ENTRIES } from '../src/call/history.js';
import { linkedProvider } from '../src/call/model-link.js';
import type { IncomingOptions, OutboundApp, TransferStore } from '../src/call/ports.js';
import { DIAL_FAILED_GREETING, Relay } from '../src/call/relay.js';
import { Transcoder } from '../src/dsp/index.js';
import { standInProvider } from './helpers/stand-in-provider.js';
import { silentLogger } from '../src/log.js';
import { nullRecorder, type CallRecorder, type TranscriptLine, type TransferDecision } from '../src/records.js';
import { availableEdges, startServer, type EdgeKind } from '../src/server/app.js';
import { createMetrics } from '../src/server/metrics.js';
import { twilioSignature } from '../src/sim/caller.js';
import { startModelStandIn, type ModelStandIn, type ModelStandInOptions } from '../src/sim/model-server.js';
import { DEMO_TRANSFER_TARGET, HANDOFF_SENTENCE, TRANSFER_FAILED_REPLY, transferFailedScenario, transferScenario } from '../src/sim/scenarios.js';
import { simulateCall } from '../src/sim/twilio-call.js';
import { ToolRegistry } from '../src/tools/registry.js';
import type { AmdCallback } from '../src/twilio/webhooks.js';
import type { ModelProvider, ModelSession } from '../src/call/voice-model.js';
import { edgeSettings, relaySettings } from './helpers/settings.js';
import { until } from './helpers/until.js';
import { stopRelaysAfterEach } from './helpers/relay-teardown.js';

const TOKEN = 'relay-control-auth-token';
const PUBLIC = 'https://control.example.test';
const ACCOUNT = `AC${'3'.repeat(32)}`;
const signedUpgrade = { 'x-twilio-signature': twilioSignature(TOKEN, `${PUBLIC.replace('https', 'wss')}/voice/stream`, {}) };
let n = 0;
const newSid = () => `CA${(++n).toString(16).padStart(8, '0')}${Date.now().toString(16).padStart(24, '0')}`;

function policies(transfer: TransferPolicy | undefined): CallPolicies {
  return {
    transfer,
    endCall: { enabled: true, goodbyeWaitMs: 5000 },
    silence: { repromptAfterMs: undefined, reprompt: '', maxReprompts: 0, timeoutMs: 300_000 },
    maxDuration: { maxCallMs: 3_600_000, warnBeforeMs: undefined, warning: '' },
    recording: NO_RECORDING,
  };
}

const front: CallAgent = {
  name: 'front',
  instructions: 'You are the front desk.',
  greeting: 'Greet the caller.',
  voice: 'marin',
  tools: new ToolRegistry(),
  policies: policies({
    targets: [
      { name: 'billing', description: 'bills', to: { number: '+15550100123' }, whisper: 'Caller about a bill & "refund"' },
      { name: 'desk', description: 'the desk', to: { sip: 'sip:desk@pbx.example.test' }, whisper: undefined },
      { name: DEMO_TRANSFER_TARGET, description: 'member services', to: { number: '+15550100200' }, whisper: 'A member needs help.' },
    ],
    defaultTarget: 'billing',
    keypadDigit: '0',
    dialTimeoutS: 25,
    onFailure: { action: 'agent' },
    handoffWaitMs: 5000,
  }),
};
const sales: CallAgent = {
  name: 'sales',
  instructions: 'You sell things.',
  greeting: 'Say hello.',
  voice: 'cedar',
  tools: new ToolRegistry(),
  policies: policies({
    targets: [{ name: 'closer', description: 'closes deals', to: { number: '+15550100777' }, whisper: undefined }],
    defaultTarget: 'closer',
    keypadDigit: undefined,
    dialTimeoutS: 15,
    onFailure: { action: 'message', message: 'Nobody can take your call <right now> & we will call back.' },
    handoffWaitMs: 5000,
  }),
};

interface Bench {
  base: string;
  port: number;
  relay: Relay;
  model: ModelStandIn;
  transfers: TransferStore;
  lines: Map<string, TranscriptLine[]>;
  events: { callSid: string; type: string; detail?: string }[];
  answered: { callSid: string; agent: string }[];
  amd: AmdCallback[];
  placed: { authorization: string | undefined; body: string }[];
  /** Instructions of every response the call layer asked for, per model session in connect order. */
  responses: string[][];
}

/** The provider, with each session's createResponse instructions noted (the stand-in does not keep them). */
function noting(inner: ModelProvider, responses: string[][]): ModelProvider {
  return {
    name: inner.name,
    connect: async (opts, signal) => {
      const m = await inner.connect(opts, signal);
      const mine: string[] = [];
      responses.push(mine);
      const w: ModelSession = {
        get format() {
          return m.format;
        },
        onEvent: (l) => m.onEvent(l),
        appendAudio: (b) => m.appendAudio(b),
        sendUserText: (t) => m.sendUserText(t),
        createResponse: (i) => {
          mine.push(i ?? '');
          m.createResponse(i);
        },
        cancelResponse: () => m.cancelResponse(),
        truncate: (id, ms) => m.truncate(id, ms),
        sendToolResult: (id, o, r) => m.sendToolResult(id, o, r),
        close: () => m.close(),
      };
      return w;
    },
  };
}

const running = stopRelaysAfterEach();

async function start(edge: EdgeKind, opts: { audioMode?: 'transcode' | 'passthrough'; outbound?: boolean; model?: ModelStandInOptions } = {}): Promise<Bench> {
  const audioMode = opts.audioMode ?? 'transcode';
  const model = await startModelStandIn({ audioSpeedup: 8, responseDelayMs: 50, transcriptDelayMs: 50, ...opts.model });
  const realtime = standInProvider(model.baseUrl, audioMode === 'passthrough' ? 'ulaw8k' : 'pcm24k');
  const lines = new Map<string, TranscriptLine[]>();
  const events: Bench['events'] = [];
  const answered: Bench['answered'] = [];
  const recorderOf = (callSid: string): CallRecorder => ({
    ...nullRecorder,
    transcript: (l) => void (lines.get(callSid) ?? lines.set(callSid, []).get(callSid)!).push(l),
    event: (e) => void events.push({ callSid, type: e.type, detail: e.detail }),
  });
  const kept = new Map<string, TransferDecision>();
  const transfers: TransferStore = {
    saveTransfer: async (sid, d) => void kept.set(sid, d),
    transfer: async (sid) => {
      if (sid === FAILING) throw new Error('store down');
      return kept.get(sid);
    },
  };
  const amd: AmdCallback[] = [];
  const placed: Bench['placed'] = [];
  const outbound: OutboundApp = {
    placeCall: async (req) => {
      placed.push(req);
      return { status: 201, body: { callSid: 'CA-placed' } };
    },
    amd: async (cb) => void amd.push(cb),
    openCallToken: (t): IncomingOptions | null => (t === 'good-token' ? { agent: 'sales', context: { member: 'M-1234', reason: 'renewal\nplease' } } : t === 'ghost' ? { agent: 'ghost' } : null),
  };
  const responses: string[][] = [];
  const relay = new Relay({
    settings: relaySettings({ signed: true, audioMode }),
    log: silentLogger,
    provider: noting(linkedProvider(realtime, { log: silentLogger }), responses),
    agents: new Map([['front', front], ['sales', sales]]),
    defaultAgent: 'front',
    transfers,
    history: async (callSid) => transcriptToConversation(lines.get(callSid) ?? []),
    openTranscoder: () => Transcoder.open(),
    recorderFor: (call, info) => {
      answered.push({ callSid: call.callSid, agent: info.agent });
      return recorderOf(call.callSid);
    },
    recorderForStream: recorderOf,
    metrics: createMetrics({ processMetrics: false }).call,
  });
  const server = await startServer({
    settings: edgeSettings({ port: 0, host: '127.0.0.1', publicUrl: PUBLIC, twilioAuthToken: TOKEN }),
    app: relay,
    log: silentLogger,
    metrics: createMetrics({ processMetrics: false }),
    edge,
    ...(opts.outbound ? { outbound } : {}),
  });
  running.push({ server, relay, model });
  return { base: `http://127.0.0.1:${server.port}`, port: server.port, relay, model, transfers, lines, events, answered, amd, placed, responses };
}

/** A CallSid whose transfer store lookup throws. */
const FAILING = `CA${'f'.repeat(32)}`;

function callForm(callSid: string, extra: Record<string, string> = {}): Record<string, string> {
  return { CallSid: callSid, AccountSid: ACCOUNT, From: '+15550107777', To: '+15550100999', CallStatus: 'in-progress', Direction: 'inbound', ...extra };
}

/** POST a form to `pathAndQuery`, signed as Twilio signs it (over PUBLIC_URL + path + query) unless `signed` is false. */
function post(b: Bench, pathAndQuery: string, form: Record<string, string>, signed = true): Promise<Response> {
  return fetch(`${b.base}${pathAndQuery}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      ...(signed ? { 'x-twilio-signature': twilioSignature(TOKEN, `${PUBLIC}${pathAndQuery}`, form) } : {}),
    },
    body: new URLSearchParams(form).toString(),
  });
}

/** The stream URL and parameters of a stream TwiML. */
function streamOf(twiml: string): { url: string; action: string | undefined; parameters: Record<string, string> } {
  const url = /<Stream url="([^"]+)"/.exec(twiml)?.[1];
  expect(url, twiml).toBeTruthy();
  const parameters: Record<string, string> = {};
  for (const m of twiml.matchAll(/<Parameter name="([^"]+)" value="([^"]*)"\/>/g)) parameters[m[1]!] = m[2]!;
  return { url: url!, action: /<Connect action="([^"]+)"/.exec(twiml)?.[1]?.replaceAll('&amp;', '&'), parameters };
}

/** A Media Stream as Twilio opens it: signed upgrade, `connected`, `start` with the TwiML's parameters, then silence every 20 ms; marks echoed. */
function openStream(b: Bench, callSid: string, parameters: Record<string, string>) {
  const streamSid = `MZ${callSid.slice(2)}`;
  const ws = new WebSocket(`ws://127.0.0.1:${b.port}/voice/stream`, { headers: signedUpgrade });
  let media: NodeJS.Timeout | undefined;
  let seq = 1;
  const closed = new Promise<number>((resolve) => ws.once('close', (c) => (clearInterval(media), resolve(c))));
  const firstMedia = new Promise<void>((resolve) => ws.on('message', (d) => JSON.parse(String(d)).event === 'media' && resolve()));
  // Marks come back once played, as Twilio sends them (the assistant's line is written once it was heard).
  ws.on('message', (d) => {
    const m = JSON.parse(String(d));
    if (m.event === 'mark' && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ event: 'mark', sequenceNumber: String(++seq), streamSid, mark: m.mark }));
  });
  ws.on('error', () => {});
  ws.once('open', () => {
    ws.send(JSON.stringify({ event: 'connected', protocol: 'Call', version: '1.0.0' }));
    const start = { accountSid: ACCOUNT, streamSid, callSid, tracks: ['inbound'], customParameters: parameters, mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 } };
    ws.send(JSON.stringify({ event: 'start', sequenceNumber: '1', streamSid, start }));
    const silence = Buffer.alloc(160, 0xff).toString('base64');
    media = setInterval(() => {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ event: 'media', sequenceNumber: String(++seq), streamSid, media: { track: 'inbound', chunk: String(seq), timestamp: String(seq * 20), payload: silence } }));
    }, 20);
  });
  return { closed, firstMedia, close: () => ws.close(1000) };
}

const decision = (over: Partial<TransferDecision> = {}): TransferDecision => ({ agent: 'front', target: 'billing', requestedBy: 'model', leg: 1, at: new Date().toISOString(), ...over });

describe('transcriptToConversation', () => {
  it('caller and assistant lines become user and assistant texts, keypad digits one text, tool and empty lines are left out', () => {
    const items = transcriptToConversation([
      { speaker: 'assistant', text: 'Hello, how can I help?' },
      { speaker: 'caller', text: 'My bill is wrong.' },
      { speaker: 'dtmf', text: '1' },
      { speaker: 'dtmf', text: '2' },
      { speaker: 'tool', text: 'lookup called' },
      { speaker: 'caller', text: '   ' },
      { speaker: 'assistant', text: 'Let me connect you' },
    ]);
    expect(items).toEqual([
      { type: 'assistant_text', text: 'Hello, how can I help?' },
      { type: 'user_text', text: 'My bill is wrong.' },
      { type: 'user_text', text: '(The caller pressed on the keypad: 1 2)' },
      { type: 'assistant_text', text: 'Let me connect you' },
    ]);
  });
  it('keeps the most recent MAX_HISTORY_ENTRIES items', () => {
    const many = Array.from({ length: MAX_HISTORY_ENTRIES + 5 }, (_, i) => ({ speaker: 'caller', text: `line ${i}` }));
    const items = transcriptToConversation(many);
    expect(items).toHaveLength(MAX_HISTORY_ENTRIES);
    expect(items[0]).toEqual({ type: 'user_text', text: 'line 5' });
  });
});

describe.each(availableEdges())('%s edge', (edge) => {
  describe.each(['transcode', 'passthrough'] as const)('%s', (audioMode) => {
    it('a transfer that is not reached returns to the agent on leg 2: its session gets the conversation so far and its stream is admitted', async () => {
      const b = await start(edge, { audioMode });
      const callSid = newSid();
      const res = await post(b, '/voice/incoming', callForm(callSid, { CallStatus: 'ringing' }));
      expect(res.status).toBe(200);
      const leg1 = streamOf(await res.text());
      expect(leg1.action).toBe(`${PUBLIC}/voice/action?leg=1`);
      expect(b.answered).toEqual([{ callSid, agent: 'front' }]);
      const s1 = openStream(b, callSid, leg1.parameters);
      await s1.firstMedia;
      await until(() => (b.lines.get(callSid) ?? []).some((l) => l.speaker === 'assistant'), { what: 'the greeting in the transcript', timeoutMs: 20_000 });
      const heard = b.lines.get(callSid)!.find((l) => l.speaker === 'assistant')!.text;
      // What the session does on transfer_call: save the decision, then close the stream.
      await b.transfers.saveTransfer(callSid, decision());
      s1.close();
      await s1.closed;

      const action = await post(b, '/voice/action?leg=1', callForm(callSid));
      expect(action.status).toBe(200);
      const dial = await action.text();
      expect(dial).toContain(`<Dial action="${PUBLIC}/voice/dial-action?leg=1" method="POST" timeout="25">`);
      expect(dial).toMatch(/<Number url="[^"]*\/voice\/whisper\?target=billing&amp;agent=front" method="POST">\+15550100123<\/Number>/);
      expect(b.events).toContainEqual(expect.objectContaining({ callSid, type: 'transfer_dialled' }));

      const sessionsBefore = b.model.sessions.length;
      const failed = await post(b, '/voice/dial-action?leg=1', callForm(callSid, { DialCallStatus: 'busy' }));
      expect(failed.status).toBe(200);
      const leg2 = streamOf(await failed.text());
      expect(leg2.action).toBe(`${PUBLIC}/voice/action?leg=2`);
      expect(leg2.parameters.token).toMatch(/^v2\.2\./);
      expect(b.events).toContainEqual({ callSid, type: 'transfer_failed', detail: 'busy leg=1' });
      // The leg-2 session was pre-warmed with the conversation so far replayed into it.
      await until(() => b.model.sessions.length > sessionsBefore && b.model.sessions.at(-1)!.items.length > 0, { what: 'the replayed history' });
      const replayed = b.model.sessions.at(-1)!.items;
      expect(replayed.map((i) => [i.role, i.text])).toContainEqual(['assistant', heard]);
      expect(b.model.sessions.at(-1)!.sessionUpdate.instructions).toContain('You are the front desk.');

      const s2 = openStream(b, callSid, leg2.parameters);
      await s2.firstMedia; // admitted: the agent speaks (the failed-dial greeting)
      expect(b.model.sessions.length).toBe(sessionsBefore + 1); // the pre-warm was taken over, no other session
      // Each leg's session connect was timed, dial to ready (the bench's calls-per-core verdict reads it).
      expect(b.relay.modelConnect.count).toBe(2);
      expect(b.relay.modelConnect.minMs).toBeGreaterThan(0);
      expect(b.relay.modelConnect.maxMs).toBeLessThan(20_000);
      expect(b.responses[0]![0]).toBe('Greet the caller.');
      expect(b.responses.at(-1)![0]).toBe(DIAL_FAILED_GREETING);
      const again = openStream(b, callSid, leg2.parameters);
      expect(await again.closed).toBe(1008); // leg 2's token is single use too
      // a leg-1 token cannot open leg 2's slot, nor leg 1 again
      const old = openStream(b, callSid, leg1.parameters);
      expect(await old.closed).toBe(1008);
      s2.close();
      await s2.closed;
    });
  });

  describe('the whole flow: the real session decides, a simulated Twilio follows the TwiML', () => {
    const scenarios = { scenarioFor: (i: number) => (i === 0 ? transferScenario : transferFailedScenario) };

    it('transfer_call → stream closed after the handoff sentence → <Dial> → busy → back to the agent on leg 2 with the conversation → end_call → <Hangup/>', async () => {
      const b = await start(edge, { model: scenarios });
      const call = await simulateCall({
        baseUrl: b.base,
        publicUrl: PUBLIC,
        authToken: TOKEN,
        from: '+15550107777',
        to: '+15550100999',
        legs: [{ utterances: [{ durationMs: 1600 }], hangupAfterMs: 10_000 }, { utterances: [{ durationMs: 1100 }], hangupAfterMs: 10_000 }],
        dial: () => ({ status: 'busy' }),
      });
      expect(call.error).toBeUndefined();
      expect(call.steps.map((x) => x.verb)).toEqual(['Connect', 'Dial', 'Connect', 'Hangup']);
      expect(call.ended).toBe('hangup');
      expect(call.dials).toEqual([expect.objectContaining({ target: expect.objectContaining({ kind: 'number', address: '+15550100200' }), status: 'busy', whisper: [] })]);
      expect(call.webhooks.map((w) => [w.kind, w.status])).toEqual([['incoming', 200], ['action', 200], ['dial-action', 200], ['action', 200]]);
      const types = b.events.filter((e) => e.callSid === call.callSid).map((e) => e.type);
      expect(types).toEqual(expect.arrayContaining(['transfer_requested', 'transfer_dialled', 'transfer_failed']));
      // leg 2's session: the conversation so far replayed (the handoff sentence the caller heard), and it spoke first
      const second = b.model.sessions[1]!;
      expect(second.items.map((i) => i.text)).toContain(HANDOFF_SENTENCE);
      expect(b.responses[1]![0]).toBe(DIAL_FAILED_GREETING);
      // both streams were closed by the relay (transferred, then agent_hangup), cleanly
      expect(call.legs.map((l) => [l.endedBy, l.protocolViolations])).toEqual([['server', []], ['server', []]]);
      expect(b.lines.get(call.callSid)!.filter((l) => l.speaker === 'assistant').map((l) => l.text)).toEqual(expect.arrayContaining([HANDOFF_SENTENCE, TRANSFER_FAILED_REPLY]));
    });

    it('the person answers: the whisper is fetched for them, the call ends after the dial', async () => {
      const b = await start(edge, { model: scenarios });
      const call = await simulateCall({
        baseUrl: b.base,
        publicUrl: PUBLIC,
        authToken: TOKEN,
        from: '+15550107777',
        to: '+15550100999',
        legs: [{ utterances: [{ durationMs: 1600 }], hangupAfterMs: 10_000 }],
        dial: () => ({ status: 'completed', durationS: 30 }),
      });
      expect(call.error).toBeUndefined();
      expect(call.steps.map((x) => x.verb)).toEqual(['Connect', 'Dial', 'Hangup']);
      expect(call.dials[0]).toMatchObject({ status: 'completed', whisper: ['A member needs help.'] });
      expect(b.events).toContainEqual(expect.objectContaining({ callSid: call.callSid, type: 'transfer_connected' }));
      expect(b.model.sessions).toHaveLength(1);
    });
  });

  it('<Connect action>: no decision, an unknown call, another leg\'s decision, a store error → <Hangup/>; a replay → 403; unsigned → 403', async () => {
    const b = await start(edge);
    const hangup = /<Response><Hangup\/><\/Response>/;
    const noDecision = newSid();
    let r = await post(b, '/voice/action?leg=1', callForm(noDecision));
    expect([r.status, await r.text()]).toEqual([200, expect.stringMatching(hangup)]);
    r = await post(b, '/voice/action?leg=1', callForm(noDecision));
    expect(r.status).toBe(403); // the same leg's action again
    r = await post(b, '/voice/action?leg=1', callForm(FAILING));
    expect([r.status, await r.text()]).toEqual([200, expect.stringMatching(hangup)]);
    const otherLeg = newSid();
    await b.transfers.saveTransfer(otherLeg, decision({ leg: 2 }));
    r = await post(b, '/voice/action?leg=1', callForm(otherLeg));
    expect(await r.text()).toMatch(hangup);
    const unsigned = newSid();
    await b.transfers.saveTransfer(unsigned, decision());
    r = await post(b, '/voice/action?leg=1', callForm(unsigned), false);
    expect(r.status).toBe(403);
    // signed over another leg than the one posted: forged
    r = await fetch(`${b.base}/voice/action?leg=2`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': twilioSignature(TOKEN, `${PUBLIC}/voice/action?leg=1`, callForm(unsigned)) },
      body: new URLSearchParams(callForm(unsigned)).toString(),
    });
    expect(r.status).toBe(403);
    // the genuine one still dials (the forged ones did not use up its claim)
    r = await post(b, '/voice/action?leg=1', callForm(unsigned));
    expect(await r.text()).toContain('<Dial');
  });

  it('a decision naming a target, or an agent, not in the files → <Hangup/>, never a <Dial>', async () => {
    const b = await start(edge);
    const a = newSid();
    await b.transfers.saveTransfer(a, decision({ target: 'ceo' }));
    let r = await post(b, '/voice/action?leg=1', callForm(a));
    let body = await r.text();
    expect(body).not.toContain('<Dial');
    expect(body).toContain('<Hangup/>');
    const c = newSid();
    await b.transfers.saveTransfer(c, decision({ agent: 'ghost' }));
    r = await post(b, '/voice/action?leg=1', callForm(c));
    body = await r.text();
    expect(body).not.toContain('<Dial');
    // a target of another agent is not this decision's agent's
    const d = newSid();
    await b.transfers.saveTransfer(d, decision({ agent: 'sales', target: 'billing' }));
    r = await post(b, '/voice/action?leg=1', callForm(d));
    expect(await r.text()).not.toContain('<Dial');
  });

  it('a SIP target: <Sip> without a whisper url', async () => {
    const b = await start(edge);
    const a = newSid();
    await b.transfers.saveTransfer(a, decision({ target: 'desk' }));
    const body = await (await post(b, '/voice/action?leg=1', callForm(a))).text();
    expect(body).toContain('<Sip>sip:desk@pbx.example.test</Sip>');
  });

  it('<Dial action>: reached → <Hangup/> (transfer_connected); not reached with on_failure message → <Say> then <Hangup/>; replay → 403', async () => {
    const b = await start(edge);
    const reached = newSid();
    await b.transfers.saveTransfer(reached, decision());
    let r = await post(b, '/voice/dial-action?leg=1', callForm(reached, { DialCallStatus: 'completed', DialCallDuration: '42' }));
    expect(await r.text()).toMatch(/<Response><Hangup\/><\/Response>/);
    expect(b.events).toContainEqual(expect.objectContaining({ callSid: reached, type: 'transfer_connected' }));
    r = await post(b, '/voice/dial-action?leg=1', callForm(reached, { DialCallStatus: 'completed', DialCallDuration: '42' }));
    expect(r.status).toBe(403);

    const msg = newSid();
    await b.transfers.saveTransfer(msg, decision({ agent: 'sales', target: 'closer' }));
    r = await post(b, '/voice/dial-action?leg=1', callForm(msg, { DialCallStatus: 'no-answer' }));
    const body = await r.text();
    expect(body).toContain('<Say>Nobody can take your call &lt;right now&gt; &amp; we will call back.</Say><Hangup/>');
    expect(body).not.toContain('<Stream');
    expect(b.events).toContainEqual({ callSid: msg, type: 'transfer_failed', detail: 'no-answer leg=1' });

    // no decision at all: hang up
    r = await post(b, '/voice/dial-action?leg=1', callForm(newSid(), { DialCallStatus: 'busy' }));
    expect(await r.text()).toMatch(/<Hangup\/>/);
  });

  it('bad legs and bad bodies → 400; whisper: the target\'s <Say>, an empty <Response/> when none', async () => {
    const b = await start(edge);
    for (const q of ['', '?leg=0', '?leg=21', '?leg=x', '?leg=1.5']) {
      const r = await post(b, `/voice/action${q}`, callForm(newSid()));
      expect(r.status, q).toBe(400);
    }
    let r = await post(b, '/voice/dial-action?leg=1', callForm(newSid())); // no DialCallStatus
    expect(r.status).toBe(400);
    r = await post(b, '/voice/whisper?target=billing&agent=front', callForm(newSid()));
    expect(r.status).toBe(200);
    expect(await r.text()).toContain('<Say>Caller about a bill &amp; "refund"</Say>');
    r = await post(b, '/voice/whisper?target=desk&agent=front', callForm(newSid()));
    expect(await r.text()).toMatch(/<Response\/>/);
    r = await post(b, '/voice/whisper?target=billing', callForm(newSid()));
    expect(r.status).toBe(400);
    r = await post(b, '/voice/whisper?target=billing&agent=front', callForm(newSid()), false);
    expect(r.status).toBe(403);
  });

  it('without an OutboundApp: /voice/amd and POST /calls → 404, /voice/incoming?o= → 403', async () => {
    const b = await start(edge);
    let r = await post(b, '/voice/amd', { CallSid: newSid(), AccountSid: ACCOUNT, AnsweredBy: 'human' });
    expect(r.status).toBe(404);
    r = await fetch(`${b.base}/calls`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
    expect(r.status).toBe(404);
    r = await post(b, '/voice/incoming?o=good-token', callForm(newSid(), { CallStatus: 'ringing' }));
    expect(r.status).toBe(403);
  });

  it('with an OutboundApp: the o token names the agent and its context (in the instructions), a bad one → 403; AMD and POST /calls reach it', async () => {
    const b = await start(edge, { outbound: true });
    const callSid = newSid();
    let r = await post(b, '/voice/incoming?o=good-token', callForm(callSid, { CallStatus: 'in-progress', Direction: 'outbound-api' }));
    expect(r.status).toBe(200);
    const s = streamOf(await r.text());
    expect(s.parameters.agent).toBe('sales');
    expect(b.answered).toEqual([{ callSid, agent: 'sales' }]);
    await until(() => b.model.sessions.length === 1 && b.model.sessions[0]!.sessionUpdate !== undefined, { what: 'the pre-warmed session' });
    const session = b.model.sessions[0]!.sessionUpdate;
    expect(session.instructions).toBe('You sell things.\n\nAbout this call:\nmember: M-1234\nreason: renewal please');
    expect(session.tools.map((t: { name: string }) => t.name).sort()).toEqual(['end_call', 'transfer_call']);
    const stream = openStream(b, callSid, s.parameters);
    await stream.firstMedia; // admitted with the agent's name beside its token
    const forged = openStream(b, callSid, { ...s.parameters, agent: 'front' });
    expect(await forged.closed).toBe(1008);
    stream.close();

    r = await post(b, '/voice/incoming?o=forged', callForm(newSid(), { CallStatus: 'ringing' }));
    expect(r.status).toBe(403);
    r = await post(b, '/voice/incoming?o=ghost', callForm(newSid(), { CallStatus: 'ringing' }));
    expect(await r.text()).toContain('<Reject reason="busy"/>'); // an agent not loaded here
    r = await post(b, '/voice/incoming?o=good-token', callForm(newSid(), { CallStatus: 'ringing' }), false);
    expect(r.status).toBe(403);

    const amdSid = newSid();
    r = await post(b, '/voice/amd', { CallSid: amdSid, AccountSid: ACCOUNT, AnsweredBy: 'machine_end_beep', MachineDetectionDuration: '2100' });
    expect(r.status).toBe(204);
    expect(b.amd).toEqual([expect.objectContaining({ callSid: amdSid, answeredBy: 'machine_end_beep', messageEnded: true, detectionMs: 2100 })]);
    r = await post(b, '/voice/amd', { CallSid: amdSid, AccountSid: ACCOUNT, AnsweredBy: 'robot' });
    expect(r.status).toBe(400);
    r = await post(b, '/voice/amd', { CallSid: amdSid, AccountSid: ACCOUNT, AnsweredBy: 'human' }, false);
    expect(r.status).toBe(403);
    expect(b.amd).toHaveLength(1);

    r = await fetch(`${b.base}/calls`, { method: 'POST', body: '{"to":"+15550100888"}', headers: { 'content-type': 'application/json', authorization: 'Bearer abc' } });
    expect(r.status).toBe(201);
    expect(r.headers.get('cache-control')).toBe('no-store');
    expect(await r.json()).toEqual({ callSid: 'CA-placed' });
    expect(b.placed).toEqual([{ authorization: 'Bearer abc', body: '{"to":"+15550100888"}' }]);
    r = await fetch(`${b.base}/calls`, { method: 'POST', body: 'x'.repeat(9000), headers: { 'content-type': 'application/json' } });
    expect(r.status).toBe(413);
    expect(b.placed).toHaveLength(1);
  });
});
