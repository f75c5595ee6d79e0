/**
 * Shutdown drains (issue 9 §2), on the real thing: `callbridge serve` from
 * build/ as a child process (bin/callbridge.js), the model stand-in in this
 * process, and a simulated Twilio caller on loopback. Signals go to the child
 * by its pid.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
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

const ROOT = join(import.meta.dirname, '..');
const TOKEN = 'drain-test-auth-token';
const PUBLIC = 'https://drain.example.test';
const dir = mkdtempSync(join(tmpdir(), 'callbridge-drain-'));
let standIn: ModelStandIn;
const children: ChildProcess[] = [];

/** Newest mtime of the .ts files under `d`. */
function newestSource(d: string): number {
  let newest = 0;
  for (const name of readdirSync(d, { withFileTypes: true })) {
    const p = join(d, name.name);
    if (name.isDirectory()) newest = Math.max(newest, newestSource(p));
    else if (name.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

beforeAll(async () => {
  // The launcher runs compiled code: build it when it is missing or older than the sources.
  let stale = true;
  try {
    stale = statSync(join(ROOT, 'build/src/cli/serve.js')).mtimeMs < newestSource(join(ROOT, 'src'));
  } catch {
    /* not built */
  }
  if (stale) spawnSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: ROOT, stdio: 'ignore' });
  try {
    statSync(join(ROOT, 'build/dsp.wasm'));
  } catch {
    spawnSync('npm', ['run', 'build:wasm'], { cwd: ROOT, stdio: 'ignore' });
  }
  standIn = await startModelStandIn();
}, 180_000);

afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});
afterAll(async () => {
  await standIn?.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Served {
  child: ChildProcess;
  base: string;
  db: string;
  exit: Promise<number | null>;
  output: () => string;
}

let n = 0;
/** `callbridge serve` from build/, once it says where it listens. */
async function serve(env: Record<string, string> = {}): Promise<Served> {
  const db = join(dir, `drain${++n}.db`);
  const child = spawn(process.execPath, [join(ROOT, 'bin/callbridge.js'), 'serve'], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH,
      PORT: '0',
      HOST: '127.0.0.1',
      PUBLIC_URL: PUBLIC,
      OPENAI_BASE_URL: standIn.baseUrl,
      OPENAI_API_KEY: 'test-key',
      TWILIO_AUTH_TOKEN: TOKEN,
      CALLBRIDGE_DB: db,
      LOG_LEVEL: 'warn',
      VAD_SILENCE_DURATION_MS: '300',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const port = await new Promise<number>((resolve, reject) => {
    const check = () => {
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(out);
      if (m) return resolve(Number(m[1]));
      if (child.exitCode !== null) return reject(new Error(`serve exited ${child.exitCode}: ${out}`));
      setTimeout(check, 20);
    };
    check();
  });
  return { child, base: `http://127.0.0.1:${port}`, db, exit, output: () => out };
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

async function signedIncoming(base: string, callSid: string): Promise<Response> {
  const form = { CallSid: callSid, AccountSid: `AC${'3'.repeat(32)}`, From: '+15550107777', To: '+15550100999', CallStatus: 'ringing', Direction: 'inbound' };
  return fetch(`${base}/voice/incoming`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': twilioSignature(TOKEN, `${PUBLIC}/voice/incoming`, form) },
    body: new URLSearchParams(form).toString(),
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('callbridge serve drains on SIGTERM', () => {
  it('health 503 draining, new webhooks 503 and new streams 1001 at once; the live call completes; exit 0; record complete', async () => {
    const s = await serve();
    expect((await fetch(`${s.base}/voice/health`)).status).toBe(200);
    const live = call(s.base);
    await sleep(1500); // the call is streaming
    s.child.kill('SIGTERM');
    await sleep(200);

    const health = await fetch(`${s.base}/voice/health`);
    expect(health.status).toBe(503);
    expect(await health.json()).toMatchObject({ status: 'draining', activeCalls: 1, signed: true });
    const refused = await signedIncoming(s.base, `CA${'4'.repeat(32)}`);
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
    const r = spawnSync(process.execPath, [join(ROOT, 'bin/callbridge.js'), 'serve'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, PORT: '0', HOST: '127.0.0.1', OPENAI_BASE_URL: standIn.baseUrl, OPENAI_API_KEY: 'k', CALLBRIDGE_DB: join(dir, 'unsigned.db') },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/TWILIO_AUTH_TOKEN: not set.*ALLOW_UNSIGNED=true/);
    // Listed with the other configuration problems, all at once.
    const both = spawnSync(process.execPath, [join(ROOT, 'bin/callbridge.js'), 'serve'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, PORT: 'x', OPENAI_API_KEY: 'k' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(both.status).toBe(2);
    expect(both.stderr).toMatch(/PORT[\s\S]*TWILIO_AUTH_TOKEN: not set/);
  }, 40_000);

  it('with ALLOW_UNSIGNED=true it starts, says UNSIGNED, and health carries "signed": false', async () => {
    const s = await serve({ TWILIO_AUTH_TOKEN: '', ALLOW_UNSIGNED: 'true' });
    expect(s.output()).toMatch(/UNSIGNED/);
    const health = await fetch(`${s.base}/voice/health`);
    expect(await health.json()).toMatchObject({ status: 'ok', signed: false });
    s.child.kill('SIGTERM');
    expect(await s.exit).toBe(0);
  }, 40_000);
});
