/**
 * More than one instance (issue 11), on the real thing: two `callbridge serve`
 * processes from build/ (bin/callbridge.js) sharing the real PostgreSQL (a
 * schema of this file's own), a plain load balancer in front (nothing
 * sticky, test/helpers/balancer.ts), the model stand-in in this process and a
 * simulated Twilio caller on loopback. Signals go to the children by pid.
 */
import WebSocket from 'ws';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { placeCall, twilioSignature, type CallResult } from '../src/sim/caller.js';
import { startModelStandIn, type ModelStandIn } from '../src/sim/model-server.js';
import type { CallRecord } from '../src/store/types.js';
import { startBalancer, type Balancer } from './helpers/balancer.js';
import { adminSql, dropSchema, freshSchema, PG_URL, postgresAvailable } from './helpers/postgres.js';
import { ensureBuilt, killServeProcesses, serveProcess, type ServeProcess } from './helpers/serve.js';
import { startTcpProxy, type TcpProxy } from './helpers/tcp-proxy.js';
import { presentToken, type PresentedStream } from './helpers/stream.js';
import { postIncoming } from './helpers/webhooks.js';
import { NO_RECORDING, type CallAgent } from '../src/call/agent.js';
import { linkedProvider } from '../src/call/model-link.js';
import { Relay } from '../src/call/relay.js';
import type { ConversationItem } from '../src/call/voice-model.js';
import { Transcoder } from '../src/dsp/index.js';
import { standInProvider } from './helpers/stand-in-provider.js';
import { silentLogger } from '../src/log.js';
import { startServer, type RunningServer } from '../src/server/app.js';
import { createMetrics } from '../src/server/metrics.js';
import { PostgresCallStore } from '../src/store/postgres.js';
import { ToolRegistry } from '../src/tools/registry.js';
import { edgeSettings, relaySettings } from './helpers/settings.js';
import { prices } from './helpers/store.js';

const pgOk = await postgresAvailable();

const TOKEN = 'multi-instance-test-auth-token';
const PUBLIC = 'https://calls.multi.example.test';
const PUBLIC_WSS = PUBLIC.replace('https', 'wss');
const SECRET = 'multi-instance-test-admission-secret-0123456789';
const ADMIN = 'multi-instance-admin-token';
const LEASE_MS = 1500;
const PREWARM_TTL_MS = 3000;
const schema = freshSchema();
let standIn: ModelStandIn;
const balancers: Balancer[] = [];
const proxies: TcpProxy[] = [];

beforeAll(async () => {
  ensureBuilt();
  const sql = adminSql();
  try {
    await sql.unsafe(`CREATE SCHEMA ${schema}`);
  } finally {
    await sql.end({ timeout: 2 });
  }
  standIn = await startModelStandIn();
}, 180_000);

afterEach(async () => {
  killServeProcesses();
  for (const b of balancers.splice(0)) await b.close();
  for (const p of proxies.splice(0)) await p.close();
});
afterAll(async () => {
  await standIn?.close();
  await dropSchema(schema);
});

type Served = ServeProcess & { id: string };

/** `callbridge serve` from build/ as instance `id` on the shared database, once it says where it listens. */
async function serve(id: string, env: Record<string, string> = {}): Promise<Served> {
  const s = await serveProcess({
    PUBLIC_URL: PUBLIC,
    OPENAI_BASE_URL: standIn.baseUrl,
    TWILIO_AUTH_TOKEN: TOKEN,
    DATABASE_URL: `${PG_URL}?search_path=${schema}`,
    ADMISSION_SECRET: SECRET,
    INSTANCE_ID: id,
    INSTANCE_LEASE_MS: String(LEASE_MS),
    PREWARM_TTL_MS: String(PREWARM_TTL_MS),
    ADMIN_TOKEN: ADMIN,
    ...env,
  });
  return { ...s, id };
}

async function balance(...instances: Served[]): Promise<Balancer> {
  const lb = await startBalancer(new Map(instances.map((s) => [s.id, s.port])));
  balancers.push(lb);
  return lb;
}

function call(base: string, opts: Partial<Parameters<typeof placeCall>[0]> = {}): Promise<CallResult> {
  return placeCall({ baseUrl: base, publicUrl: PUBLIC, authToken: TOKEN, utterances: [{ durationMs: 1200 }, { durationMs: 1100 }], ...opts });
}

async function recordFrom(s: Served, callSid: string): Promise<CallRecord> {
  const res = await fetch(`${s.base}/calls/${callSid}`, { headers: { authorization: `Bearer ${ADMIN}` } });
  expect(res.status).toBe(200);
  return (await res.json()) as CallRecord;
}

/**
 * The record once its carrying instance has written the call's end (it writes on the next turn of its
 * event loop, not before the caller hears the close). Just after the database comes back, a read may
 * get 503 (the store is reconnecting): that is asked again until the deadline.
 */
async function endedRecord(s: Served, callSid: string): Promise<CallRecord> {
  const until = Date.now() + 10_000;
  for (;;) {
    const res = await fetch(`${s.base}/calls/${callSid}`, { headers: { authorization: `Bearer ${ADMIN}` } });
    if (res.status === 503 && Date.now() < until) {
      await sleep(100);
      continue;
    }
    expect(res.status).toBe(200);
    const r = (await res.json()) as CallRecord;
    if (r.state !== 'in_progress' || Date.now() > until) return r;
    await sleep(50);
  }
}

/** callbridge_prewarm_total by result, from an instance's /metrics. */
async function prewarms(s: Served): Promise<{ hit: number; miss: number }> {
  const text = await (await fetch(`${s.base}/metrics`)).text();
  const value = (result: string) => Number(new RegExp(`^callbridge_prewarm_total\\{result="${result}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
  return { hit: value('hit'), miss: value('miss') };
}

/** A signed /voice/incoming for `callSid` on `base`; returns the token in its TwiML. */
async function answer(base: string, callSid: string): Promise<string> {
  const res = await postIncoming(base, { publicUrl: PUBLIC, authToken: TOKEN }, callSid);
  const twiml = await res.text();
  const token = /<Parameter name="token" value="([^"]+)"/.exec(twiml)?.[1];
  if (res.status !== 200 || !token) throw new Error(`no token in the answer (${res.status}): ${twiml}`);
  return token;
}

/** A raw, signed Media Stream that sends `start` with `token` (and silence after), signed over `signedUrl`. */
function startOn(base: string, callSid: string, token: string, signedUrl = `${PUBLIC_WSS}/voice/stream`): PresentedStream {
  const headers = { host: new URL(signedUrl).host, 'x-twilio-signature': twilioSignature(TOKEN, signedUrl, {}) };
  return presentToken(`${base.replace('http', 'ws')}/voice/stream`, headers, callSid, token);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let sidN = 0;
const newSid = () => `CA${String(Date.now()).padStart(16, '0')}${String(++sidN).padStart(16, '0')}`;

describe.skipIf(!pgOk)('two callbridge instances on one PostgreSQL, behind a balancer with nothing sticky', () => {
  it('webhook on A, stream on B: admitted, the call completes, the record is read from A; A\'s unused pre-warm expires without touching it', async () => {
    const [a, b] = await Promise.all([serve('a1'), serve('b1')]);
    const lb = await balance(a, b);
    lb.pick = (kind) => (kind === 'http' ? 'a1' : 'b1');
    const result = await call(lb.base);
    expect(lb.routed.map((r) => `${r.kind}:${r.to}`)).toEqual(['http:a1', 'upgrade:b1']);
    expect(result.turnLatenciesMs).toHaveLength(2); // both turns answered: a whole call on B
    expect(result.protocolViolations).toEqual([]);
    expect(await prewarms(b)).toEqual({ hit: 0, miss: 1 });
    expect(await prewarms(a)).toEqual({ hit: 0, miss: 0 });
    // Past A's pre-warm TTL: A closed its unused session, and the record is still B's completed call.
    await sleep(Math.max(0, PREWARM_TTL_MS + 500 - result.durationMs));
    const health = (await (await fetch(`${a.base}/voice/health`)).json()) as Record<string, unknown>;
    expect(health).toMatchObject({ instanceId: 'a1', activeCalls: 0, pendingCalls: 0, store: { kind: 'postgres', reachable: true } });
    const record = await recordFrom(a, result.callSid);
    expect(record).toMatchObject({ state: 'completed', endReason: 'caller_hangup', from: '+15550100001', streamSid: result.streamSid });
    expect(record.turnLatencies.length).toBeGreaterThanOrEqual(2);
    expect(record.transcript.some((l) => l.speaker === 'assistant')).toBe(true);
    expect(await recordFrom(b, result.callSid)).toEqual(record); // any instance answers the same
    expect(a.output()).not.toMatch(/"level":(50|60)/);
    expect(b.output()).not.toMatch(/"level":(50|60)/);
  }, 60_000);

  it('a token is good for one stream: presented again on either instance, during the call or after, it is refused (1008)', async () => {
    const [a, b] = await Promise.all([serve('a2'), serve('b2')]);
    const sid = newSid();
    const token = await answer(a.base, sid);
    const first = startOn(b.base, sid, token);
    await sleep(800);
    expect(first.code()).toBeNull(); // admitted on B, and streaming
    const [againA, againB] = [startOn(a.base, sid, token), startOn(b.base, sid, token)];
    expect(await againA.closed).toBe(1008);
    expect(await againB.closed).toBe(1008);
    expect(first.code()).toBeNull(); // the call itself is undisturbed
    first.close();
    expect(await first.closed).toBe(1000);
    expect(await startOn(a.base, sid, token).closed).toBe(1008);
    // A token for another call, or a forged one, never gets that far.
    expect(await startOn(b.base, newSid(), token).closed).toBe(1008);
    expect(await prewarms(b)).toEqual({ hit: 0, miss: 1 });
    expect(await prewarms(a)).toEqual({ hit: 0, miss: 0 });
    const record = await endedRecord(a, sid);
    // The refused streams (ended `unauthorized` on their instances) wrote nothing into it: it is the first stream's record.
    expect(record).toMatchObject({ state: 'completed', endReason: 'stream_closed', from: '+15550107777' });
    await sleep(500);
    expect(await recordFrom(a, sid)).toMatchObject({ endReason: 'stream_closed' });
  }, 60_000);

  it('webhook and stream on the same instance use its pre-warmed session (a hit in /metrics)', async () => {
    const [a, b] = await Promise.all([serve('a3'), serve('b3')]);
    const lb = await balance(a, b);
    lb.pick = () => 'a3';
    const result = await call(lb.base);
    expect(result.turnLatenciesMs).toHaveLength(2);
    expect(await prewarms(a)).toEqual({ hit: 1, miss: 0 });
    expect(await prewarms(b)).toEqual({ hit: 0, miss: 0 });
    expect(await endedRecord(b, result.callSid)).toMatchObject({ state: 'completed', endReason: 'caller_hangup' });
  }, 60_000);

  it('STREAM_URL_TEMPLATE names the answering instance: the balancer routes the stream to it on the path prefix (a hit), signature and all', async () => {
    const template = { STREAM_URL_TEMPLATE: '{publicUrl}/i/{instance}/voice/stream' };
    const [a, b] = await Promise.all([serve('a4', template), serve('b4', template)]);
    const lb = await balance(a, b);
    lb.pick = () => 'b4'; // webhooks to B; a stream without a prefix would go there too
    const result = await call(lb.base);
    expect(result.twiml).toContain(`url="${PUBLIC_WSS}/i/b4/voice/stream"`);
    expect(lb.routed.map((r) => `${r.kind}:${r.to}:${r.path}`)).toEqual(['http:b4:/voice/incoming', 'upgrade:b4:/voice/stream']);
    expect(result.turnLatenciesMs).toHaveLength(2);
    expect(await prewarms(b)).toEqual({ hit: 1, miss: 0 });
    // Round robin sends the next webhook to A: its TwiML names A, and A gets the stream.
    lb.pick = () => 'a4';
    const second = await call(lb.base, { utterances: [{ durationMs: 800 }] });
    expect(second.twiml).toContain(`url="${PUBLIC_WSS}/i/a4/voice/stream"`);
    expect(await prewarms(a)).toEqual({ hit: 1, miss: 0 });
  }, 60_000);

  it('a host-per-instance template: a stream for A that the balancer sends to B (A gone) is admitted there on A\'s URL and token; a forged Host is not enough', async () => {
    const template = { STREAM_URL_TEMPLATE: 'wss://{instance}.calls.multi.example.test/voice/stream' };
    const [a, b] = await Promise.all([serve('a8', template), serve('b8', template)]);
    const sid = newSid();
    const token = await answer(a.base, sid);
    const aUrl = 'wss://a8.calls.multi.example.test/voice/stream';
    const onB = startOn(b.base, sid, token, aUrl);
    await sleep(800);
    expect(onB.code()).toBeNull(); // admitted on B: a miss there
    expect(await prewarms(b)).toEqual({ hit: 0, miss: 1 });
    onB.close();
    await onB.closed;
    // Host names A but the signature is over another URL: refused at the upgrade.
    const forged = new WebSocket(`${b.base.replace('http', 'ws')}/voice/stream`, {
      headers: { host: 'a8.calls.multi.example.test', 'x-twilio-signature': twilioSignature(TOKEN, 'wss://elsewhere.example.test/voice/stream', {}) },
    });
    const status = await new Promise<number>((resolve) => {
      forged.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      forged.once('open', () => resolve(101));
      forged.on('error', () => {});
    });
    expect(status).toBe(403);
  }, 60_000);

  it('kill -9 of B mid-call: A marks that call interrupted within the lease; B\'s finished calls are untouched', async () => {
    const [a, b] = await Promise.all([serve('a5'), serve('b5')]);
    const lb = await balance(a, b);
    lb.pick = (kind) => (kind === 'http' ? 'a5' : 'b5');
    const finished = await call(lb.base, { utterances: [{ durationMs: 800 }] });
    expect(await endedRecord(a, finished.callSid)).toMatchObject({ state: 'completed', endReason: 'caller_hangup' });
    const callSid = newSid();
    const live = call(lb.base, { callSid, utterances: Array.from({ length: 12 }, () => ({ durationMs: 1500 })), maxCallMs: 120_000 });
    await sleep(2000); // streaming on B, its header written
    expect(await recordFrom(a, callSid)).toMatchObject({ state: 'in_progress', streamSid: expect.stringMatching(/^MZ/) });
    b.child.kill('SIGKILL');
    const killedAt = Date.now();
    const result = await live; // the caller's line drops with B
    expect(result.closeCode).not.toBe(1000);
    let record: CallRecord;
    for (;;) {
      record = await recordFrom(a, result.callSid);
      if (record.state !== 'in_progress' || Date.now() - killedAt > 4 * LEASE_MS) break;
      await sleep(50);
    }
    const afterMs = Date.now() - killedAt;
    expect(record).toMatchObject({ state: 'interrupted', endReason: 'instance_lost' });
    expect(afterMs).toBeLessThanOrEqual(LEASE_MS + 500); // within the lease (plus this loop's poll and read)
    console.log(`kill -9 → interrupted after ${afterMs} ms (INSTANCE_LEASE_MS ${LEASE_MS})`);
    expect(await recordFrom(a, finished.callSid)).toMatchObject({ state: 'completed', endReason: 'caller_hangup' });
  }, 60_000);

  it('a restart of A while B carries a call leaves that call alone; it completes on B', async () => {
    const [a, b] = await Promise.all([serve('a6', { DRAIN_GRACE_MS: '0' }), serve('b6')]);
    const lb = await balance(a, b);
    lb.pick = (kind) => (kind === 'http' ? 'a6' : 'b6');
    const callSid = newSid();
    const live = call(lb.base, { callSid, utterances: Array.from({ length: 4 }, () => ({ durationMs: 1200 })), maxCallMs: 120_000 });
    await sleep(1200);
    // A drains (its unused pre-warm for this call lasts until PREWARM_TTL_MS: closed out only if A could claim the call) and exits.
    a.child.kill('SIGTERM');
    expect(await a.exit, a.output()).toBe(0);
    const a2 = await serve('a6'); // the same instance, restarted: it marks its own leftovers, never B's call
    expect(await recordFrom(a2, callSid)).toMatchObject({ state: 'in_progress', endReason: null });
    const result = await live;
    expect(result.turnLatenciesMs).toHaveLength(4); // the call went on as normal
    const record = await endedRecord(a2, result.callSid);
    expect(record).toMatchObject({ state: 'completed', endReason: 'caller_hangup', from: '+15550100001' });
    expect(a2.output()).not.toMatch(/marked interrupted/);
  }, 60_000);

  it('a second `serve` with the INSTANCE_ID of a live one is refused (clear error, non-zero exit) and leaves its calls alone; after a clean stop the name is free at once', async () => {
    const a = await serve('d9');
    const callSid = newSid();
    const token = await answer(a.base, callSid);
    const live = startOn(a.base, callSid, token);
    await sleep(800); // streaming on A, its header written
    await expect(serve('d9')).rejects.toThrow(/serve exited 1[\s\S]*INSTANCE_ID d9 is in use: another live process holds its lease/);
    expect(live.code()).toBeNull(); // the call on A goes on
    expect(await recordFrom(a, callSid)).toMatchObject({ state: 'in_progress', endReason: null });
    live.close();
    expect(await live.closed).toBe(1000);
    a.child.kill('SIGTERM');
    expect(await a.exit, a.output()).toBe(0);
    const again = await serve('d9'); // released cleanly: no wait, no refusal
    expect(await endedRecord(again, callSid)).toMatchObject({ state: 'completed' });
  }, 60_000);

  it('the database unreachable: a new call is admitted on its token alone, calls in progress go on, and both records are complete once it is back', async () => {
    const proxy = await startTcpProxy({ host: '127.0.0.1', port: Number(new URL(PG_URL).port || 5432) });
    proxies.push(proxy);
    const db = new URL(proxy.url(PG_URL));
    db.searchParams.set('search_path', schema);
    const a = await serve('a7', { DATABASE_URL: db.toString() });
    const long = call(a.base, { utterances: Array.from({ length: 4 }, () => ({ durationMs: 1200 })), maxCallMs: 120_000 });
    await sleep(1000);
    proxy.setMode('refuse'); // the database goes away mid-call
    const during = await call(a.base); // its claim cannot be made: admitted on the token
    expect(during.turnLatenciesMs).toHaveLength(2);
    expect(during.protocolViolations).toEqual([]);
    const health = (await (await fetch(`${a.base}/voice/health`)).json()) as { status: string; store: { reachable: boolean; lastError: string | null } };
    expect(health.status).toBe('ok'); // a database outage does not take the instance out of rotation
    expect(health.store.reachable).toBe(false);
    proxy.setMode('pass');
    const first = await long;
    expect(first.turnLatenciesMs).toHaveLength(4);
    expect(first.protocolViolations).toEqual([]);
    for (const r of [first, during]) {
      const record = await endedRecord(a, r.callSid);
      expect(record).toMatchObject({ state: 'completed', endReason: 'caller_hangup', from: '+15550100001' });
      expect(record.turnLatencies).toHaveLength(r.turnLatenciesMs.length);
    }
    expect(a.output()).toMatch(/cannot claim the call: admitting the stream on its token alone/);
  }, 90_000);
});

/**
 * Call control across instances (issue 16), in this process: two relays and
 * edges, each claiming through its own PostgresCallStore on one schema (the
 * real single-use claim, across instances) and keeping transfer decisions
 * in it (saved through A's store, read through B's); one history shared.
 */
describe.skipIf(!pgOk)('call control across instances', () => {
  const agent: CallAgent = {
    name: 'front',
    instructions: 'You are the front desk.',
    greeting: 'Greet the caller.',
    voice: 'marin',
    tools: new ToolRegistry(),
    policies: {
      transfer: {
        targets: [{ name: 'billing', description: 'bills', to: { number: '+15550100123' }, whisper: undefined }],
        defaultTarget: 'billing',
        keypadDigit: undefined,
        dialTimeoutS: 20,
        onFailure: { action: 'agent' },
        handoffWaitMs: 5000,
      },
      endCall: { enabled: false, goodbyeWaitMs: 5000 },
      silence: { repromptAfterMs: undefined, reprompt: '', maxReprompts: 0, timeoutMs: 300_000 },
      maxDuration: { maxCallMs: 3_600_000, warnBeforeMs: undefined, warning: '' },
      recording: NO_RECORDING,
    },
  };
  const secret = Buffer.from(SECRET);
  const history: ConversationItem[] = [{ type: 'user_text', text: 'My bill is wrong.' }, { type: 'assistant_text', text: 'Let me connect you to billing.' }];
  const up: { relay: Relay; server: RunningServer; store: PostgresCallStore }[] = [];
  afterEach(async () => {
    for (const u of up.splice(0)) {
      u.relay.shutdown();
      await u.relay.settled();
      await u.server.close();
      await u.store.close();
    }
  });

  async function instance(id: string): Promise<{ base: string; port: number; store: PostgresCallStore }> {
    const store = await PostgresCallStore.open({ url: PG_URL, schema, prices, log: silentLogger, instanceId: id });
    const realtime = standInProvider(standIn.baseUrl, 'pcm24k');
    const relay = new Relay({
      settings: relaySettings({ signed: true, admissionSecret: secret }),
      log: silentLogger,
      provider: linkedProvider(realtime, { log: silentLogger }),
      agents: new Map([['front', agent]]),
      defaultAgent: 'front',
      transfers: store,
      history: async () => history,
      openTranscoder: () => Transcoder.open(),
      claim: (key) => store.claim(key, id),
      metrics: createMetrics({ processMetrics: false }).call,
    });
    const server = await startServer({
      settings: edgeSettings({ port: 0, host: '127.0.0.1', publicUrl: PUBLIC, twilioAuthToken: TOKEN }),
      app: relay,
      log: silentLogger,
      metrics: createMetrics({ processMetrics: false }),
      edge: 'node',
    });
    up.push({ relay, server, store });
    return { base: `http://127.0.0.1:${server.port}`, port: server.port, store };
  }

  const form = (callSid: string, extra: Record<string, string> = {}) => ({
    CallSid: callSid, AccountSid: `AC${'3'.repeat(32)}`, From: '+15550107777', To: '+15550100999', CallStatus: 'in-progress', ...extra,
  });
  const signedPost = (base: string, pathAndQuery: string, f: Record<string, string>) =>
    fetch(`${base}${pathAndQuery}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': twilioSignature(TOKEN, `${PUBLIC}${pathAndQuery}`, f) },
      body: new URLSearchParams(f).toString(),
    });

  it('a decision saved while instance A served the call is answered by B\'s /voice/action; the action replayed to A is refused; leg 2 answered by B streams into A with the history', async () => {
    const a = await instance('ctl-a');
    const b = await instance('ctl-b');
    const callSid = `CA${'c0ffee'.padEnd(32, '1')}`;
    const answered = await postIncoming(a.base, { publicUrl: PUBLIC, authToken: TOKEN }, callSid);
    expect(await answered.text()).toContain('/voice/action?leg=1');
    await a.store.saveTransfer(callSid, { agent: 'front', target: 'billing', requestedBy: 'model', leg: 1, at: new Date().toISOString() });

    const onB = await signedPost(b.base, '/voice/action?leg=1', form(callSid));
    expect(onB.status).toBe(200);
    expect(await onB.text()).toContain('<Number>+15550100123</Number>');
    const replayOnA = await signedPost(a.base, '/voice/action?leg=1', form(callSid));
    expect(replayOnA.status).toBe(403); // claimed once across instances (PostgreSQL)

    const sessionsBefore = standIn.sessions.length;
    const failed = await signedPost(b.base, '/voice/dial-action?leg=1', form(callSid, { DialCallStatus: 'no-answer' }));
    const twiml = await failed.text();
    const token = /<Parameter name="token" value="([^"]+)"/.exec(twiml)?.[1];
    expect(token).toMatch(/^v2\.2\./);
    // Leg 2's stream lands on A (not sticky): A opens its own session (a miss) and replays the history into it.
    const s = presentToken(`ws://127.0.0.1:${a.port}/voice/stream`, { 'x-twilio-signature': twilioSignature(TOKEN, `${PUBLIC_WSS}/voice/stream`, {}) }, callSid, token!);
    await s.firstMedia;
    const opened = standIn.sessions.slice(sessionsBefore);
    expect(opened.length).toBe(2); // B's pre-warm and A's own
    const onA = opened.find((x) => x.items.length > 0)!;
    expect(onA.items.map((i) => i.text)).toEqual(['My bill is wrong.', 'Let me connect you to billing.']);
    // The same leg's token on B is refused: leg 2 was claimed by A's stream.
    const again = presentToken(`ws://127.0.0.1:${b.port}/voice/stream`, { 'x-twilio-signature': twilioSignature(TOKEN, `${PUBLIC_WSS}/voice/stream`, {}) }, callSid, token!);
    expect(await again.closed).toBe(1008);
    s.close();
    await s.closed;
  }, 60_000);
});
