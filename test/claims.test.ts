/**
 * Admission when the call store cannot answer (issue 22 item 5): a stream's
 * token is single use on this instance whatever the store says. The local
 * claim is consulted first, so a second stream presenting the same token (or
 * a fresh token minted by a replayed signed webhook) is refused `replayed`
 * while the store is down, and the admissions made without the store are
 * counted. The real relay and edge, the real OpenAI provider client against
 * the model stand-in, signed requests on loopback; only the store's claim is
 * a function (down: it rejects; or one that would say yes every time). Then
 * the same on the whole product with PostgreSQL behind a proxy that refuses.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Relay } from '../src/call/relay.js';
import { linkedProvider } from '../src/call/model-link.js';
import { Transcoder } from '../src/dsp/index.js';
import { standInProvider } from './helpers/stand-in-provider.js';
import { silentLogger } from '../src/log.js';
import { startServer } from '../src/server/app.js';
import { createMetrics } from '../src/server/metrics.js';
import { twilioSignature } from '../src/sim/caller.js';
import { startModelStandIn } from '../src/sim/model-server.js';
import { createDefaultTools } from '../src/tools/eligibility.js';
import { useCallbridge } from './helpers/e2e.js';
import { dropSchema, freshSchema, PG_URL, postgresAvailable, adminSql } from './helpers/postgres.js';
import { edgeSettings, relaySettings } from './helpers/settings.js';
import { presentToken } from './helpers/stream.js';
import { startTcpProxy, type TcpProxy } from './helpers/tcp-proxy.js';
import { postIncoming } from './helpers/webhooks.js';
import { stopRelaysAfterEach } from './helpers/relay-teardown.js';

const TOKEN = 'claims-test-auth-token';
const PUBLIC = 'https://claims.example.test';
const signedUpgrade = { 'x-twilio-signature': twilioSignature(TOKEN, `${PUBLIC.replace('https', 'wss')}/voice/stream`, {}) };
const sid = (i: number) => `CA${i.toString(16).padStart(32, '0')}`;

/** The token in the TwiML of a signed /voice/incoming for `callSid` (a replay of the same webhook mints a fresh one). */
async function tokenFor(base: string, callSid: string): Promise<string> {
  const res = await postIncoming(base, { publicUrl: PUBLIC, authToken: TOKEN }, callSid);
  expect(res.status).toBe(200);
  const token = /<Parameter name="token" value="([^"]+)"/.exec(await res.text())?.[1];
  expect(token).toBeTruthy();
  return token!;
}

const running = stopRelaysAfterEach();

async function start(claim: (callSid: string) => Promise<boolean>) {
  const model = await startModelStandIn({ audioSpeedup: 8, responseDelayMs: 50 });
  const realtime = standInProvider(model.baseUrl, 'pcm24k');
  const metrics = createMetrics({ processMetrics: false });
  let withoutStore = 0;
  const relay = new Relay({
    settings: relaySettings({ signed: true }),
    log: silentLogger,
    provider: linkedProvider(realtime, { log: silentLogger }),
    tools: createDefaultTools({ apiUrl: undefined, apiKey: undefined, timeoutMs: 3000, retries: 2 }, silentLogger),
    openTranscoder: () => Transcoder.open(),
    claim,
    admittedWithoutStore: () => withoutStore++,
    metrics: metrics.call,
  });
  const server = await startServer({ settings: edgeSettings({ port: 0, host: '127.0.0.1', publicUrl: PUBLIC, twilioAuthToken: TOKEN }), app: relay, log: silentLogger, metrics, edge: 'node' });
  running.push({ server, relay, model });
  const base = `http://127.0.0.1:${server.port}`;
  const stream = (callSid: string, token: string) => presentToken(`ws://127.0.0.1:${server.port}/voice/stream`, signedUpgrade, callSid, token);
  const refusedReplayed = async () => /reason="replayed"\} (\d+)/.exec(await metrics.registry.getSingleMetricAsString('callbridge_stream_starts_refused_total'))?.[1];
  return { base, stream, relay, withoutStore: () => withoutStore, refusedReplayed };
}

describe('the local claim is consulted first', () => {
  it('store down (its claim rejects): the first stream is admitted and counted; the same token again, or a replayed webhook\'s fresh token, is refused `replayed`', async () => {
    const t = await start(() => Promise.reject(new Error('call store: claim failed: ECONNREFUSED')));
    const callSid = sid(1);
    const token = await tokenFor(t.base, callSid);
    const first = t.stream(callSid, token);
    await first.firstMedia; // admitted on its token: the model's greeting comes back
    expect(t.withoutStore()).toBe(1);

    const again = t.stream(callSid, token);
    expect(await again.closed).toBe(1008);
    const replayedToken = await tokenFor(t.base, callSid); // a captured signed webhook, posted again
    expect(replayedToken).not.toBe(token);
    const replayed = t.stream(callSid, replayedToken);
    expect(await replayed.closed).toBe(1008);
    expect(await t.refusedReplayed()).toBe('2');
    expect(t.withoutStore()).toBe(1); // only the admission counts
    expect(first.code()).toBe(null); // the genuine call goes on
    expect(t.relay.activeCalls).toBe(1);
    first.close();
  }, 30_000);

  it('a store that would say yes again (or a slow one) does not get asked: a call claimed here is refused here', async () => {
    const asked: string[] = [];
    const t = await start(async (callSid) => {
      asked.push(callSid);
      await new Promise((r) => setTimeout(r, 200)); // a round trip: the second stream comes while the first claim is pending
      return true;
    });
    const callSid = sid(2);
    const token = await tokenFor(t.base, callSid);
    const first = t.stream(callSid, token);
    const second = t.stream(callSid, token);
    const [one, two] = await Promise.race([
      Promise.all([first.firstMedia.then(() => 'media'), second.closed]),
      Promise.all([first.closed, second.firstMedia.then(() => 'media')]),
    ]);
    expect([one, two].sort()).toEqual([1008, 'media'].sort()); // exactly one admitted
    expect(asked).toEqual([callSid]);
    expect(t.withoutStore()).toBe(0);
    first.close();
    second.close();
  }, 30_000);
});

const pgOk = await postgresAvailable();

describe.skipIf(!pgOk)('on the whole product, PostgreSQL unreachable', () => {
  const callbridge = useCallbridge('claims');
  const proxies: TcpProxy[] = [];
  const schemas: string[] = [];
  afterEach(async () => {
    for (const p of proxies.splice(0)) await p.close();
    for (const s of schemas.splice(0)) await dropSchema(s);
  });

  it('a replayed token is refused while the database is down; callbridge_admissions_without_store_total counts the admission', async () => {
    const schema = freshSchema();
    schemas.push(schema);
    const sql = adminSql();
    try {
      await sql.unsafe(`CREATE SCHEMA ${schema}`);
    } finally {
      await sql.end({ timeout: 2 });
    }
    const proxy = await startTcpProxy({ host: '127.0.0.1', port: Number(new URL(PG_URL).port || 5432) });
    proxies.push(proxy);
    const db = new URL(proxy.url(PG_URL));
    db.searchParams.set('search_path', schema);
    const { app, baseUrl } = await callbridge({
      env: { PUBLIC_URL: PUBLIC, TWILIO_AUTH_TOKEN: TOKEN, DATABASE_URL: db.toString(), ADMISSION_SECRET: 'claims-test-admission-secret-0123456789abcdef', INSTANCE_ID: 'c1' },
    });
    const callSid = sid(3);
    const token = await tokenFor(baseUrl, callSid);
    proxy.setMode('refuse'); // the database goes away
    const ws = `ws://127.0.0.1:${app.port}/voice/stream`;
    const first = presentToken(ws, signedUpgrade, callSid, token);
    await first.firstMedia;
    const again = presentToken(ws, signedUpgrade, callSid, token);
    expect(await again.closed).toBe(1008);
    const metrics = await (await fetch(`${baseUrl}/metrics`)).text();
    expect(metrics).toMatch(/^callbridge_admissions_without_store_total 1$/m);
    expect(metrics).toMatch(/^callbridge_stream_starts_refused_total\{reason="replayed"\} 1$/m);
    expect(first.code()).toBe(null);
    first.close();
    await first.closed;
    proxy.setMode('pass');
  }, 60_000);
});
