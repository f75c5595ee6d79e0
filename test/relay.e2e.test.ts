/**
 * The whole relay on loopback, once per edge that loads on this Node (native
 * uWebSockets.js and node:http + ws, or node:http + ws alone): the real wasm
 * transcoder, the real SQLite store, the real OpenAI provider client —
 * against the model stand-in and simulated Twilio callers (src/sim), which
 * speak PROTOCOLS.md independently of our code. The eligibility conversation
 * is in eligibility.e2e, a lost model connection in reconnect.e2e.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { availableEdges, type EdgeKind } from '../src/server/app.js';
import { placeCall } from '../src/sim/caller.js';
import type { Scenario } from '../src/sim/scenarios.js';
import { signTwilioRequest } from '../src/twilio/signature.js';
import { useCallbridge } from './helpers/e2e.js';
import { until, sleep } from './helpers/until.js';
import { postIncoming } from './helpers/webhooks.js';

const AUTH = 'e2e-twilio-auth-token';
const PUBLIC = 'https://relay.e2e.invalid';
const callbridge = useCallbridge('e2e');

/** Every describe below runs once per edge; `edge` is the one its run uses. */
let edge: EdgeKind = 'node';
function describeEdges(name: string, fn: () => void): void {
  describe.each(availableEdges())(`${name} (%s edge)`, (e) => {
    beforeAll(() => void (edge = e));
    fn();
  });
}

async function start(env: Record<string, string> = {}, scenario?: Scenario) {
  const started = await callbridge({ edge, model: { scenario }, env: { PUBLIC_URL: PUBLIC, TWILIO_AUTH_TOKEN: AUTH, ...env } });
  expect(started.app.server.edge.kind).toBe(edge);
  return started;
}

const shortScenario: Scenario = {
  greeting: 'Hello.',
  turns: [
    { callerTranscript: 'first thing', reply: 'Sure, one moment.' },
    { callerTranscript: 'second thing', reply: 'All done.' },
  ],
};

function caller(baseUrl: string, extra: Partial<Parameters<typeof placeCall>[0]> = {}) {
  return placeCall({
    baseUrl,
    publicUrl: PUBLIC,
    authToken: AUTH,
    utterances: [{ durationMs: 900 }, { durationMs: 900 }],
    hangupAfterMs: 800,
    ...extra,
  });
}

describeEdges('a full call', () => describe.each(['transcode', 'passthrough'] as const)('in %s mode', (mode) => {
  it('relays both ways in paced 100 ms chunks, greets first, and leaves a complete record', async () => {
    // The fixed lead, so the bound on what the caller holds below is exact (the adaptive lead has its own tests).
    const { app, model, baseUrl } = await start({ AUDIO_MODE: mode, PLAYOUT_LEAD_MAX_MS: '100' }, shortScenario);
    const result = await caller(baseUrl);
    await app.store.flush();
    const session = model.sessions[0]!;
    expect(session.format).toBe(mode === 'transcode' ? 'pcm24k' : 'ulaw8k');
    expect(session.audioMsReceived).toBeGreaterThan(1500);
    expect(result.protocolViolations).toEqual([]);
    // OUTBOUND_CHUNK_MS = 100: whole 20 ms frames, up to five per message, mostly full ones.
    const sizes = Object.keys(result.frameSizes).map(Number);
    for (const n of sizes) expect(n % 160 === 0 && n <= 800).toBe(true);
    expect(result.frameSizes[800]! * 2).toBeGreaterThan(result.framesReceived);
    expect(result.maxBufferedMs).toBeLessThanOrEqual(100 + 100 + 40); // PLAYOUT_LEAD_MS + a chunk + loopback jitter: never a burst
    expect(result.heardMs).toBeGreaterThan(500);
    expect(result.turnLatenciesMs.length).toBeGreaterThanOrEqual(2);

    const record = (await app.store.get(result.callSid))!;
    expect(record).toBeDefined();
    expect(record.state).toBe('completed');
    expect(record.audioMode).toBe(mode);
    const speakers = record.transcript.map((t) => t.speaker);
    expect(speakers[0]).toBe('assistant'); // the greeting comes first
    expect(record.transcript.filter((t) => t.speaker === 'caller').map((t) => t.text)).toEqual(['first thing', 'second thing']);
    expect(record.turnLatencies.length).toBeGreaterThanOrEqual(2);
    for (const t of record.turnLatencies) expect(t.latencyMs).toBeGreaterThan(0);
    expect(record.usage.outputAudioTokens).toBeGreaterThan(0);
  });
}));

describeEdges('barge-in', () => {
  it('clears the caller\'s playback at once and truncates at what the caller heard', async () => {
    const long: Scenario = {
      greeting: 'Hello.',
      turns: [
        { callerTranscript: 'tell me everything', reply: 'This is a long answer that goes on and on for several seconds so that the caller has time to interrupt it in the middle.' },
        { callerTranscript: 'stop', reply: 'Okay.' },
      ],
    };
    const { model, baseUrl } = await start({}, long);
    const result = await caller(baseUrl, { utterances: [{ durationMs: 900 }, { durationMs: 900, bargeInAfterMs: 1200 }] });
    expect(result.clears.length).toBeGreaterThanOrEqual(1);
    const barge = result.bargeIns[0]!;
    expect(barge.clearAtMs).toBeDefined();
    // clear follows the model's VAD speech_started, which needs some speech first: well under a second
    expect(barge.clearAtMs! - barge.speechStartMs).toBeLessThan(800);
    const session = model.sessions[0]!;
    expect(session.truncates).toHaveLength(1);
    // What the caller heard of the reply: every run of playback after the greeting up to the clear
    // (a loaded machine can starve the caller's player for a moment, which splits a run).
    const clearAt = result.clears[0]!.atMs;
    const heard = result.playback.slice(1).filter((r) => r.startMs < clearAt).reduce((ms, r) => ms + (r.endMs - r.startMs), 0);
    // truncate = last echoed mark + time since (100 ms chunks): within a frame or two of what was played
    expect(session.truncates[0]!.audio_end_ms).toBeLessThanOrEqual(heard + 40);
    expect(session.truncates[0]!.audio_end_ms).toBeGreaterThanOrEqual(heard - 40);
    expect(session.errorsSent).toEqual([]);
  });
});

describeEdges('DTMF and signatures', () => {
  it('sends keypad digits to the model as text', async () => {
    const { model, baseUrl } = await start({}, shortScenario);
    await caller(baseUrl, { utterances: [{ durationMs: 900 }], dtmf: [{ afterUtterance: 0, digits: '12#' }] });
    expect(model.sessions[0]!.userTexts.join(' ')).toContain('12#');
  });

  it('refuses a call whose webhook signature is wrong and opens no model session', async () => {
    const { model, baseUrl } = await start({}, shortScenario);
    await expect(caller(baseUrl, { authToken: 'not-the-token' })).rejects.toThrow(/403/);
    expect(model.sessions).toHaveLength(0);
  });
});

describeEdges('robustness', () => {
  it('malformed Twilio traffic is counted and harms neither the server nor another call', async () => {
    const { app, baseUrl } = await start({}, shortScenario);
    const good = caller(baseUrl, { utterances: [{ durationMs: 900 }] });
    const url = `ws://127.0.0.1:${app.port}/voice/stream`;
    const sig = signTwilioRequest(AUTH, `${PUBLIC.replace('https', 'wss')}/voice/stream`, {});
    const ws = new WebSocket(url, { headers: { 'x-twilio-signature': sig } });
    await new Promise((r) => ws.once('open', r));
    const closed = new Promise<number>((r) => ws.once('close', (c) => r(c)));
    ws.send('{not json');
    ws.send(Buffer.from([0, 1, 2]));
    ws.send(JSON.stringify({ event: 'media', sequenceNumber: '1', streamSid: 'MZ' + '1'.repeat(32), media: { track: 'inbound', chunk: '1', timestamp: '0', payload: 'AAAA' } }));
    ws.send(JSON.stringify({ event: 'start', sequenceNumber: '1', streamSid: 'MZ' + '1'.repeat(32), start: { accountSid: 'AC' + '1'.repeat(32), streamSid: 'MZ' + '1'.repeat(32), callSid: 'CA' + 'f'.repeat(32), tracks: ['inbound'], customParameters: { token: 'forged' }, mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 } } }));
    expect(await closed).toBe(1008); // forged token: refused
    const big = new WebSocket(url, { headers: { 'x-twilio-signature': sig } });
    await new Promise((r) => big.once('open', r));
    const bigClosed = new Promise<number>((r) => big.once('close', (c) => r(c)));
    big.send('x'.repeat(200 * 1024));
    expect([1006, 1009]).toContain(await bigClosed); // uWS drops a socket that sends an oversize frame
    const result = await good;
    expect(result.protocolViolations).toEqual([]);
    expect(result.heardMs).toBeGreaterThan(0);
    const metrics = await app.server.metrics.registry.getSingleMetricAsString('callbridge_twilio_protocol_errors_total');
    expect(metrics).toMatch(/reason="malformed"} [1-9]/);
    expect(metrics).toMatch(/reason="binary_frame"} [1-9]/);
    expect(metrics).toMatch(/reason="before_start"} [1-9]/);
  });

  it('at the concurrent-call cap, a new call is rejected busy and opens no model session', async () => {
    const { model, baseUrl } = await start({ MAX_CONCURRENT_CALLS: '1' }, shortScenario);
    const post = (n: string) => postIncoming(baseUrl, { publicUrl: PUBLIC, authToken: AUTH }, `CA${n.repeat(32)}`);
    expect(await (await post('1')).text()).toMatch(/<Connect action="[^"]*\/voice\/action\?leg=1" method="POST"><Stream/);
    const busy = await post('2');
    expect(busy.status).toBe(200);
    expect(await busy.text()).toBe('<?xml version="1.0" encoding="UTF-8"?><Response><Reject reason="busy"/></Response>');
    await sleep(100);
    expect(model.sessions).toHaveLength(1); // only the admitted call pre-warmed a session
  });

  it('a call whose media stream never arrives is still recorded, and its pre-warmed model session closed', async () => {
    const { app, model, baseUrl } = await start({ PREWARM_TTL_MS: '1000' }, shortScenario);
    const callSid = `CA${'e'.repeat(32)}`;
    const res = await postIncoming(baseUrl, { publicUrl: PUBLIC, authToken: AUTH }, callSid, { From: '+15550007777', To: '+15550008888' });
    expect(res.status).toBe(200);
    expect((await app.store.get(callSid))).toMatchObject({ state: 'in_progress', from: '+15550007777' });
    await until(async () => (await app.store.get(callSid))?.state === 'completed', { timeoutMs: 5000, everyMs: 50, what: 'the record to complete' });
    expect((await app.store.get(callSid))).toMatchObject({ state: 'completed', endReason: 'no_stream' });
    await sleep(100);
    expect(model.sessions[0]!.closed).toBe(true);
  });

  it('keeps 50 concurrent calls apart', async () => {
    const { app, model, baseUrl } = await start({}, { greeting: 'Hi.', turns: [], onUserText: (t) => `You pressed ${t.replace(/\D/g, '')}.` });
    const digits = Array.from({ length: 50 }, (_, i) => String(1000 + i));
    const results = await Promise.all(
      digits.map((d, i) => caller(baseUrl, { from: `+1555020${String(i).padStart(4, '0')}`, utterances: [{ durationMs: 300, pauseMs: 200 }], dtmf: [{ afterUtterance: 0, digits: `${d}#` }], hangupAfterMs: 1500, maxCallMs: 30_000 })),
    );
    await app.store.flush();
    expect(model.sessions).toHaveLength(50);
    for (const [i, r] of results.entries()) {
      expect(r.protocolViolations).toEqual([]);
      const record = (await app.store.get(r.callSid))!;
      const said = record.transcript.filter((t) => t.speaker === 'assistant').map((t) => t.text).join(' ');
      expect(said).toContain(`You pressed ${digits[i]}`);
      for (const other of [digits[(i + 1) % 50], digits[(i + 7) % 50]]) expect(said).not.toContain(`You pressed ${other}`);
    }
    for (const s of model.sessions) expect(s.userTexts.length).toBe(1);
  }, 90_000);
});
