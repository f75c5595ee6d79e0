/**
 * Shutdown drains (issue 9 §2), on the real thing: `callbridge serve` from
 * build/ as a child process (bin/callbridge.js), the model stand-in in this
 * process, and a simulated Twilio caller on loopback. Signals go to the child
 * by its pid.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { defaultPromptPath, loadPrompt } from '../src/call/prompts.js';
import { loadConfig } from '../src/config.js';
import { silentLogger } from '../src/log.js';
import { placeCall, twilioSignature, type CallResult } from '../src/sim/caller.js';
import { startModelStandIn, type ModelStandIn } from '../src/sim/model-server.js';
import { SqliteCallStore } from '../src/store/sqlite.js';
import { ensureBuilt, killServeProcesses, LAUNCHER, ROOT, serveProcess, type ServeProcess } from './helpers/serve.js';
import { postIncoming } from './helpers/webhooks.js';

const TOKEN = 'drain-test-auth-token';
const PUBLIC = 'https://drain.example.test';
const dir = mkdtempSync(join(tmpdir(), 'callbridge-drain-'));
let standIn: ModelStandIn;

beforeAll(async () => {
  ensureBuilt();
  standIn = await startModelStandIn();
}, 180_000);

afterEach(killServeProcesses);
afterAll(async () => {
  await standIn?.close();
  rmSync(dir, { recursive: true, force: true });
});

let n = 0;
/** `callbridge serve` from build/ on a SQLite file of its own, once it says where it listens. */
async function serve(env: Record<string, string> = {}): Promise<ServeProcess & { db: string }> {
  const db = join(dir, `drain${++n}.db`);
  const s = await serveProcess({ PUBLIC_URL: PUBLIC, OPENAI_BASE_URL: standIn.baseUrl, TWILIO_AUTH_TOKEN: TOKEN, CALLBRIDGE_DB: db, ...env });
  return { ...s, db };
}

function call(base: string, opts: Partial<Parameters<typeof placeCall>[0]> = {}): Promise<CallResult> {
  return placeCall({
    baseUrl: base,
    publicUrl: PUBLIC,
    authToken: TOKEN,
    utterances: [{ durationMs: 1200 }, { durationMs: 1100 }],
    ...opts,
  });
}

function recordOf(db: string, callSid: string) {
  const store = new SqliteCallStore({ path: db, prices: loadConfig({}).prices, log: silentLogger, readOnly: true });
  try {
    return store.get(callSid);
  } finally {
    store.close();
  }
}

/** A signed upgrade to /voice/stream: the close code and reason it gets. */
function streamClose(base: string): Promise<[number, string]> {
  const ws = new WebSocket(`${base.replace('http', 'ws')}/voice/stream`, {
    headers: { 'x-twilio-signature': twilioSignature(TOKEN, `${PUBLIC.replace('https', 'wss')}/voice/stream`, {}) },
  });
  return new Promise((resolve, reject) => {
    ws.once('close', (code, reason) => resolve([code, reason.toString()]));
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    ws.once('error', () => {});
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('callbridge serve drains on SIGTERM', () => {
  it('DRAIN_GRACE_MS=0: health 503 draining, new webhooks 503 and new streams 1001 at once; the live call completes; exit 0; record complete', async () => {
    const s = await serve({ DRAIN_GRACE_MS: '0' });
    expect((await fetch(`${s.base}/voice/health`)).status).toBe(200);
    const live = call(s.base);
    await sleep(1500); // the call is streaming
    s.child.kill('SIGTERM');
    await sleep(200);

    const health = await fetch(`${s.base}/voice/health`);
    expect(health.status).toBe(503);
    expect(await health.json()).toMatchObject({ status: 'draining', activeCalls: 1, signed: true });
    const refused = await postIncoming(s.base, { publicUrl: PUBLIC, authToken: TOKEN }, `CA${'4'.repeat(32)}`);
    expect(refused.status).toBe(503);
    expect(await streamClose(s.base)).toEqual([1001, 'server shutting down']);

    const result = await live;
    expect(result.turnLatenciesMs).toHaveLength(2); // both turns answered: the call went on as normal
    expect(result.protocolViolations).toEqual([]);
    expect(await s.exit, s.output()).toBe(0);
    const record = recordOf(s.db, result.callSid);
    expect(record).toMatchObject({ state: 'completed', endReason: 'caller_hangup' });
    expect(record!.turnLatencies.length).toBeGreaterThanOrEqual(2);
  }, 60_000);

  it('at DRAIN_TIMEOUT_MS the caller hears the goodbye and the call ends `shutdown`; exit 0', async () => {
    const s = await serve({ DRAIN_TIMEOUT_MS: '1000' });
    // A caller who would go on for a long while.
    const live = call(s.base, { utterances: Array.from({ length: 12 }, () => ({ durationMs: 1500 })), recordHeard: true, maxCallMs: 120_000 });
    await sleep(1500);
    s.child.kill('SIGTERM');
    const result = await live;
    expect(await s.exit, s.output()).toBe(0);
    expect(result.closeCode).toBe(1000);
    expect(result.turnLatenciesMs.length).toBeLessThan(12);
    const goodbye = loadPrompt(defaultPromptPath('goodbye'));
    if (!goodbye.ok) throw new Error(goodbye.error);
    const heard = Buffer.concat(result.heard!.map((h) => h.bytes));
    // The goodbye went out as recorded (its first half at least was played before the line closed).
    expect(heard.indexOf(Buffer.from(goodbye.prompt.ulaw.subarray(0, goodbye.prompt.ulaw.length >> 1)))).toBeGreaterThanOrEqual(0);
    expect(recordOf(s.db, result.callSid)).toMatchObject({ endReason: 'shutdown' });
  }, 60_000);

  it('during the grace, health is 503 draining at once while new calls are still answered and their streams let in; after it, 503', async () => {
    // The answered call's unused pre-warm (PREWARM_TTL_MS) and the call in progress keep the drain going past the grace.
    const s = await serve({ DRAIN_GRACE_MS: '3000', PREWARM_TTL_MS: '10000' });
    const signing = { publicUrl: PUBLIC, authToken: TOKEN };
    s.child.kill('SIGTERM');
    // Health says draining as soon as the signal is handled: the balancer can start noticing.
    let health = await fetch(`${s.base}/voice/health`);
    while (health.status === 200) {
      await sleep(20);
      health = await fetch(`${s.base}/voice/health`);
    }
    const drainingSeen = Date.now();
    expect(health.status).toBe(503);
    expect(await health.json()).toMatchObject({ status: 'draining' });
    // Webhooks the balancer still sends meanwhile are answered as usual, not refused.
    const during = await postIncoming(s.base, signing, `CA${'5'.repeat(32)}`);
    expect(during.status).toBe(200);
    expect(await during.text()).toContain('<Stream');
    // Webhook and stream within the grace: a normal call, going on past the grace.
    const inGrace = call(s.base, { utterances: Array.from({ length: 4 }, () => ({ durationMs: 1200 })), maxCallMs: 120_000 });
    const left = 3000 + 500 - (Date.now() - drainingSeen);
    if (left > 0) await sleep(left);
    const after = await postIncoming(s.base, signing, `CA${'6'.repeat(32)}`);
    expect(after.status).toBe(503);
    expect((await fetch(`${s.base}/voice/health`)).status).toBe(503);
    const result = await inGrace;
    expect(result.turnLatenciesMs).toHaveLength(4);
    expect(result.protocolViolations).toEqual([]);
    expect(await s.exit, s.output()).toBe(0);
    expect(s.output()).toMatch(/new calls still taken for 3000 ms/);
    expect(recordOf(s.db, result.callSid)).toMatchObject({ state: 'completed', endReason: 'caller_hangup' });
  }, 60_000);

  it('a second SIGTERM ends every call at once (records written); exit 0', async () => {
    const s = await serve();
    const calls = [call(s.base, { utterances: Array.from({ length: 12 }, () => ({ durationMs: 1500 })), maxCallMs: 120_000 }), call(s.base, { utterances: Array.from({ length: 12 }, () => ({ durationMs: 1500 })), maxCallMs: 120_000 })];
    await sleep(1500);
    s.child.kill('SIGTERM');
    await sleep(300);
    expect((await fetch(`${s.base}/voice/health`)).status).toBe(503);
    s.child.kill('SIGTERM');
    const results = await Promise.all(calls);
    expect(await s.exit, s.output()).toBe(0);
    for (const r of results) {
      expect(r.turnLatenciesMs.length).toBeLessThan(3); // cut short, not drained to its end
      expect(recordOf(s.db, r.callSid)).toMatchObject({ state: 'completed', endReason: 'shutdown' });
    }
  }, 60_000);
});

describe('callbridge serve is signed by default', () => {
  it('refuses to start without TWILIO_AUTH_TOKEN (exit 2, says how to fix it)', async () => {
    const r = spawnSync(process.execPath, [LAUNCHER, 'serve'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, PORT: '0', HOST: '127.0.0.1', OPENAI_BASE_URL: standIn.baseUrl, OPENAI_API_KEY: 'k', CALLBRIDGE_DB: join(dir, 'unsigned.db') },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/TWILIO_AUTH_TOKEN: not set.*ALLOW_UNSIGNED=true/);
    // Listed with the other configuration problems, all at once.
    const both = spawnSync(process.execPath, [LAUNCHER, 'serve'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, PORT: 'x', OPENAI_API_KEY: 'k' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(both.status).toBe(2);
    expect(both.stderr).toMatch(/PORT[\s\S]*TWILIO_AUTH_TOKEN: not set/);
  }, 40_000);

  it('with ALLOW_UNSIGNED=true it starts, says UNSIGNED, and health carries "signed": false', async () => {
    const s = await serve({ TWILIO_AUTH_TOKEN: '', ALLOW_UNSIGNED: 'true', DRAIN_GRACE_MS: '0' });
    expect(s.output()).toMatch(/UNSIGNED/);
    const health = await fetch(`${s.base}/voice/health`);
    expect(await health.json()).toMatchObject({ status: 'ok', signed: false });
    s.child.kill('SIGTERM');
    expect(await s.exit).toBe(0);
  }, 40_000);
});
