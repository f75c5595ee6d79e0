/**
 * Admission guards (issue 9 §3) on the real relay and server, once per edge
 * that loads here: streams that never `start` are closed (1008) and free their
 * slot; pre-warmed sessions are capped (MAX_PENDING_CALLS) and closed at
 * expiry. Real sockets on loopback, the model stand-in as the model.
 */
import WebSocket from 'ws';
import { describe, expect, it } from 'vitest';
import { mintAdmissionToken } from '../src/call/admission-token.js';
import type { Callbridge } from '../src/main.js';
import { availableEdges } from '../src/server/app.js';
import { placeCall, twilioSignature } from '../src/sim/caller.js';
import { useCallbridge } from './helpers/e2e.js';
import { presentToken } from './helpers/stream.js';
import { until } from './helpers/until.js';
import { postIncoming } from './helpers/webhooks.js';

const TOKEN = 'admission-test-token';
const PUBLIC = 'https://admission.example.test';
const callbridge = useCallbridge('admission');

async function start(edge: 'uws' | 'node', env: Record<string, string>) {
  const { app, model } = await callbridge({ edge, env: { PUBLIC_URL: PUBLIC, TWILIO_AUTH_TOKEN: TOKEN, ...env } });
  return { app, model, base: `http://127.0.0.1:${app.port}`, ws: `ws://127.0.0.1:${app.port}/voice/stream` };
}

const signedUpgrade = { 'x-twilio-signature': twilioSignature(TOKEN, `${PUBLIC.replace('https', 'wss')}/voice/stream`, {}) };

/** A signed upgrade that then says nothing (or `send` once): resolves with the close code and reason, and when it closed. */
function silentStream(url: string, send?: string): Promise<{ code: number; reason: string; openMs: number; closedMs: number }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers: signedUpgrade });
    let openMs = NaN;
    ws.once('open', () => {
      openMs = performance.now();
      if (send) ws.send(send);
    });
    ws.once('close', (code, reason) => resolve({ code, reason: reason.toString(), openMs, closedMs: performance.now() }));
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    ws.once('error', () => {});
  });
}

/** A signed stream whose `start` presents `token` for `callSid`, then sends silence. */
const startStream = (url: string, callSid: string, token: string) => presentToken(url, signedUpgrade, callSid, token);

/** `callbridge_stream_starts_refused_total` by reason, as scraped. */
async function startsRefused(app: Callbridge): Promise<Record<string, number>> {
  const text = await app.server.metrics.registry.getSingleMetricAsString('callbridge_stream_starts_refused_total');
  return Object.fromEntries([...text.matchAll(/\{reason="(\w+)"\} (\d+)/g)].map((m) => [m[1]!, Number(m[2])]));
}

async function incoming(base: string, callSid: string, from: string): Promise<string> {
  const res = await postIncoming(base, { publicUrl: PUBLIC, authToken: TOKEN }, callSid, { From: from });
  expect(res.status).toBe(200);
  return res.text();
}

const sid = (i: number) => `CA${i.toString(16).padStart(32, '0')}`;

describe.each(availableEdges())('%s edge', (edge) => {
  it('closes a stream that sends no start within START_TIMEOUT_MS with 1008, and one whose start is invalid', async () => {
    const { app, ws } = await start(edge, { START_TIMEOUT_MS: '300' });
    const [silent, bad] = await Promise.all([silentStream(ws), silentStream(ws, '{"event":"start","start":{}}')]);
    for (const r of [silent, bad]) {
      expect([r.code, r.reason]).toEqual([1008, 'no start in time']);
      expect(r.closedMs - r.openMs).toBeGreaterThanOrEqual(250); // not before the timeout
    }
    expect(app.relay.activeCalls).toBe(0);
  });

  it('counts every refused start by reason: a forged token, an expired one, one presented twice, no start in time', async () => {
    const secret = 'admission-test-secret-of-32-characters-or-more';
    const { app, base, ws } = await start(edge, { START_TIMEOUT_MS: '400', ADMISSION_SECRET: secret });
    expect(await startsRefused(app)).toEqual({ token: 0, expired: 0, replayed: 0, timeout: 0 });
    // A token for another call (or none that parses) and a genuine one past its expiry.
    const other = mintAdmissionToken(Buffer.from(secret), sid(302), Date.now() + 60_000);
    expect(await startStream(ws, sid(301), other).closed).toBe(1008);
    expect(await startStream(ws, sid(301), 'forged').closed).toBe(1008);
    expect(await startStream(ws, sid(303), mintAdmissionToken(Buffer.from(secret), sid(303), Date.now() - 1000)).closed).toBe(1008);
    // A genuine token is good once: the second stream to present it is refused while the first goes on.
    const callSid = sid(304);
    const token = /<Parameter name="token" value="([^"]+)"/.exec(await incoming(base, callSid, '+15550203040'))?.[1] ?? '';
    const first = startStream(ws, callSid, token);
    await first.firstMedia;
    expect(await startStream(ws, callSid, token).closed).toBe(1008);
    // Nothing at all within START_TIMEOUT_MS.
    expect((await silentStream(ws)).code).toBe(1008);
    expect(await startsRefused(app)).toEqual({ token: 2, expired: 1, replayed: 1, timeout: 1 });
    first.close();
    expect(await first.closed).toBe(1000);
    await until(() => app.relay.activeCalls === 0, { timeoutMs: 2000 });
    expect(await startsRefused(app)).toEqual({ token: 2, expired: 1, replayed: 1, timeout: 1 }); // an admitted call that ends is no refusal
  }, 20_000);

  it('1,000 silent sockets hold at most MAX_CONCURRENT_CALLS, and only until START_TIMEOUT_MS; then a real call gets through', async () => {
    const { app, ws, base } = await start(edge, { START_TIMEOUT_MS: '500', MAX_CONCURRENT_CALLS: '20' });
    let most = 0;
    const sampler = setInterval(() => (most = Math.max(most, app.relay.activeCalls)), 5);
    const closes = await Promise.all(Array.from({ length: 1000 }, () => silentStream(ws)));
    clearInterval(sampler);
    const held = closes.filter((c) => c.code === 1008);
    // Each socket either held a slot and lost it at the start timeout, or was refused as busy (1013).
    expect(closes.filter((c) => c.code !== 1008 && c.code !== 1013)).toEqual([]);
    expect(held.length).toBeGreaterThanOrEqual(20);
    expect(closes.filter((c) => c.code === 1013).length).toBeGreaterThan(0);
    expect(most).toBeLessThanOrEqual(20);
    for (const c of held) {
      expect(c.reason).toBe('no start in time');
      expect(c.closedMs - c.openMs).toBeLessThan(5000); // freed at the timeout, not held until the idle timeout (60 s)
    }
    await until(() => app.relay.activeCalls === 0, { timeoutMs: 2000 });
    const call = await placeCall({ baseUrl: base, publicUrl: PUBLIC, authToken: TOKEN, utterances: [{ durationMs: 800 }] });
    expect(call.turnLatenciesMs).toHaveLength(1);
    expect(app.store.get(call.callSid)).toMatchObject({ endReason: 'caller_hangup' });
  }, 60_000);

  it('while draining, a call answered just before the drain still brings its stream in; a stranger\'s stream gets 1001', async () => {
    const { app, base, ws } = await start(edge, {});
    const callSid = sid(77);
    const twiml = await incoming(base, callSid, '+15550207777');
    const token = /<Parameter name="token" value="([^"]+)"/.exec(twiml)?.[1];
    expect(token).toBeTruthy();
    const drained = app.relay.drain(60_000);
    expect((await fetch(`${base}/voice/health`)).status).toBe(503);
    // Its stream arrives after the signal: admitted, the model answers (the greeting's audio comes back).
    const streamSid = `MZ${'7'.repeat(32)}`;
    const sock = new WebSocket(ws, { headers: signedUpgrade });
    await new Promise((r) => sock.once('open', r));
    const firstMedia = new Promise<void>((resolve) => sock.on('message', (d) => JSON.parse(String(d)).event === 'media' && resolve()));
    const startBody = { accountSid: `AC${'5'.repeat(32)}`, streamSid, callSid, tracks: ['inbound'], customParameters: { token }, mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 } };
    sock.send(JSON.stringify({ event: 'start', sequenceNumber: '1', streamSid, start: startBody }));
    await firstMedia;
    expect(app.relay.activeCalls).toBe(1);
    // Nothing else is waiting for its stream now: another upgrade is told the server is going away.
    expect(await silentStream(ws)).toMatchObject({ code: 1001, reason: 'server shutting down' });
    sock.send(JSON.stringify({ event: 'stop', sequenceNumber: '2', streamSid, stop: { accountSid: startBody.accountSid, callSid } }));
    sock.close();
    await drained; // the last call ended: the drain is over before its deadline
    app.store.flush();
    expect(app.store.get(callSid)).toMatchObject({ endReason: 'caller_hangup' });
  }, 20_000);

  it('caps pre-warmed sessions at MAX_PENDING_CALLS (busy TwiML over it) and closes them at PREWARM_TTL_MS', async () => {
    const { app, model, base } = await start(edge, { MAX_PENDING_CALLS: '3', PREWARM_TTL_MS: '1000' });
    for (let i = 1; i <= 3; i++) expect(await incoming(base, sid(i), `+1555020000${i}`)).toContain('<Stream');
    const over = await incoming(base, sid(4), '+15550200004');
    expect(over).not.toContain('<Stream');
    expect(over).toContain('<Reject');
    expect(app.relay.pendingCalls).toBe(3);
    await until(() => model.sessions.length === 3, { timeoutMs: 3000 });
    // Expiry: the pre-warmed sessions are closed, their slots free, and the records say why.
    await until(() => app.relay.pendingCalls === 0 && model.sessions.every((s) => s.closed), { timeoutMs: 3000 });
    app.store.flush();
    expect(app.store.get(sid(1))).toMatchObject({ endReason: 'no_stream' });
    expect(await incoming(base, sid(5), '+15550200005')).toContain('<Stream');
  }, 20_000);
});
