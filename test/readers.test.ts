/** The ways an operator reads call records: GET /calls over the real server, and `callbridge calls`. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { memoryIO } from './helpers/cli-io.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAdminHandler } from '../src/admin/calls-api.js';
import { createStoreRecorder } from '../src/call/store-recorder.js';
import { main } from '../src/cli/main.js';
import { parseSince } from '../src/cli/calls.js';
import { loadConfig } from '../src/config.js';
import { silentLogger } from '../src/log.js';
import { startServer, type RunningServer } from '../src/server/app.js';
import { SqliteCallStore } from '../src/store/sqlite.js';
import type { VoiceApp } from '../src/call/ports.js';

const dir = mkdtempSync(join(tmpdir(), 'callbridge-readers-'));
const db = join(dir, 'calls.db');
const SID = `CA${'a'.repeat(32)}`;
const TOKEN = 'admin-token-0123456789';
let server: RunningServer;
let store: SqliteCallStore;
let base: string;

beforeAll(async () => {
  const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', CALLBRIDGE_DB: db, ADMIN_TOKEN: TOKEN });
  store = new SqliteCallStore({ path: db, prices: config.prices, log: silentLogger });
  const rec = createStoreRecorder(store, SID, { From: '+15550001', To: '+15550002' });
  rec.started({ callSid: SID, streamSid: 'MZ1', audioMode: 'transcode', startedAt: new Date(Date.now() - 65_000) });
  rec.transcript({ atMs: 200, speaker: 'assistant', text: 'Thanks for calling.' });
  rec.transcript({ atMs: 61_500, speaker: 'caller', text: 'Check my coverage.' });
  rec.toolCall({ callId: 'c1', name: 'check_eligibility', args: '{}', ok: true, output: '{"status":"eligible"}', record: {}, startedAtMs: 62_000, durationMs: 35 });
  rec.turnLatency({ turn: 1, latencyMs: 700 });
  rec.ended({ endedAt: new Date(), reason: 'caller_hangup', relay: { inbound: { p50Ms: 0.04, p99Ms: 0.2 }, outbound: { p50Ms: 0.05, p99Ms: 0.3 } }, protocolErrors: 0 });
  const app: VoiceApp = {
    incoming: () => ({ ok: false, status: 400, message: 'x' }),
    status: () => {},
    openStream: () => null,
    health: () => ({ status: 'ok', version: '0', uptimeSeconds: 0, activeCalls: 0, model: { reachable: null, lastOkAt: null, lastError: null } }),
    admin: createAdminHandler(store, TOKEN),
  };
  server = await startServer({ config, app, log: silentLogger });
  base = `http://127.0.0.1:${server.port}`;
});
afterAll(async () => {
  await server.close();
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

const get = (path: string, token?: string) => fetch(base + path, { headers: token ? { authorization: `Bearer ${token}` } : {} });

describe('GET /calls', () => {
  it('needs the bearer token', async () => {
    expect((await get('/calls')).status).toBe(401);
    expect((await get('/calls', 'wrong-token-0123456789')).status).toBe(401);
    expect((await get(`/calls/${SID}`, 'x')).status).toBe(401);
  });

  it('lists and shows records as JSON', async () => {
    const list = await get('/calls?limit=10', TOKEN);
    expect(list.status).toBe(200);
    expect((await list.json()).calls).toEqual([expect.objectContaining({ callSid: SID, state: 'completed', outcome: 'eligibility_checked' })]);
    const one = await get(`/calls/${SID}`, TOKEN);
    const rec = await one.json();
    expect(rec.transcript.map((t: { text: string }) => t.text)).toEqual(['Thanks for calling.', 'Check my coverage.']);
  });

  it('answers 404 for an unknown call and 400 for a bad query', async () => {
    expect((await get(`/calls/CA${'b'.repeat(32)}`, TOKEN)).status).toBe(404);
    expect((await get('/calls?limit=0', TOKEN)).status).toBe(400);
    expect((await get('/calls?since=yesterday', TOKEN)).status).toBe(400);
  });

  it('is disabled (404) when no ADMIN_TOKEN is configured', async () => {
    const handler = createAdminHandler(store, undefined);
    expect((await handler({ method: 'GET', path: '/calls', query: new URLSearchParams(), headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(404);
  });
});

const io = memoryIO;

describe('callbridge calls', () => {
  it('lists calls in a table and as JSON', async () => {
    store.flush();
    const t = io({ CALLBRIDGE_DB: db });
    expect(await main(['calls', 'list'], t.io)).toBe(0);
    expect(t.out()).toMatch(new RegExp(`${SID}\\s+\\d+\\.\\d s\\s+completed`));
    const j = io({ CALLBRIDGE_DB: db });
    expect(await main(['calls', 'list', '--since', '1h', '--json'], j.io)).toBe(0);
    expect(JSON.parse(j.out())[0].callSid).toBe(SID);
  });

  it('shows one call: transcript with timestamps, tools, latency, usage', async () => {
    const t = io({ CALLBRIDGE_DB: db });
    expect(await main(['calls', 'show', SID], t.io)).toBe(0);
    expect(t.out()).toContain('[00:00] assistant Thanks for calling.');
    expect(t.out()).toContain('[01:01] caller    Check my coverage.');
    expect(t.out()).toMatch(/check_eligibility ok in 35 ms/);
    expect(t.out()).toMatch(/turn latency .* p50 700 ms/);
  });

  it('fails with one line and the right exit code on bad input', async () => {
    const cases: [string[], number, RegExp][] = [
      [['calls', 'show', `CA${'c'.repeat(32)}`], 1, /no call CA/],
      [['calls', 'list', '--since', 'last tuesday'], 2, /--since takes/],
      [['calls', 'frobnicate'], 2, /expected list or show/],
      [['calls', 'show'], 2, /show takes one CallSid/],
    ];
    for (const [argv, code, msg] of cases) {
      const t = io({ CALLBRIDGE_DB: db });
      expect(await main(argv, t.io), argv.join(' ')).toBe(code);
      expect(t.err()).toMatch(msg);
    }
    const missing = io({ CALLBRIDGE_DB: join(dir, 'nope.db') });
    expect(await main(['calls', 'list'], missing.io)).toBe(1);
    expect(missing.err()).toMatch(/no call store/);
  });

  it('parses --since as an age or an ISO time', () => {
    const now = Date.parse('2026-11-25T12:00:00Z');
    expect(parseSince('30m', now)!.toISOString()).toBe('2026-11-25T11:30:00.000Z');
    expect(parseSince('2d', now)!.toISOString()).toBe('2026-11-23T12:00:00.000Z');
    expect(parseSince('2026-11-01T00:00:00Z')!.toISOString()).toBe('2026-11-01T00:00:00.000Z');
    expect(parseSince('soon')).toBeUndefined();
  });
});
