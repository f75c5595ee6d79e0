/**
 * GET /calls and /calls/:sid, the operator's read API: the handler's rules
 * (auth, disabled without a token, 404s, 400s) and the same routes over the
 * real server on loopback. `callbridge calls` is in calls-cli.test.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createAdminHandler } from '../src/admin/calls-api.js';
import type { AdminReader, AdminRequest, VoiceApp } from '../src/call/ports.js';
import { createStoreRecorder } from '../src/store/recorder.js';
import { loadConfig } from '../src/config.js';
import { silentLogger } from '../src/log.js';
import { startServer, type EdgeSettings, type RunningServer } from '../src/server/app.js';
import { edgeSettings } from './helpers/settings.js';
import { SqliteCallStore } from '../src/store/sqlite.js';
import { PostgresStoreError } from '../src/store/postgres.js';

const TOKEN = 'admin-token-0123456789';

describe('the calls API handler', () => {
  const SID = 'CA33333333333333333333333333333333';
  let dir: string;
  let store: SqliteCallStore;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'callbridge-admin-'));
    store = new SqliteCallStore({ path: join(dir, 'c.db'), prices: loadConfig({}).prices, log: silentLogger });
    const r = createStoreRecorder(store, SID, { From: '+1555', To: '+1666' }, { agent: 'front-desk', direction: 'inbound' });
    r.started({ callSid: SID, streamSid: 'MZ', audioMode: 'transcode', startedAt: new Date() });
    r.transcript({ atMs: 5, speaker: 'caller', text: 'hello' });
  });
  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const req = (path: string, query = '', auth: string | null = `Bearer ${TOKEN}`, method = 'GET'): AdminRequest => ({
    method,
    path,
    query: new URLSearchParams(query),
    headers: auth === null ? {} : { authorization: auth },
  });

  it('disabled (404 for everything, even with a bearer token) when ADMIN_TOKEN is unset', async () => {
    const h = createAdminHandler(store, undefined);
    expect((await h(req('/calls'))).status).toBe(404);
    expect((await h(req(`/calls/${SID}`, '', null))).status).toBe(404);
  });

  it('503 (retryable) while the PostgreSQL store cannot reach its database; other store errors are not hidden', async () => {
    const away = { get: async () => { throw new PostgresStoreError('call store: read failed: connect ECONNREFUSED', true); }, listPage: async () => { throw new PostgresStoreError('x', true); } };
    const h = createAdminHandler(away as never, TOKEN);
    const one = await h(req(`/calls/${SID}`));
    expect(one).toMatchObject({ status: 503, body: { retryable: true } });
    expect((await h(req('/calls'))).status).toBe(503);
    const broken = createAdminHandler({ get: async () => { throw new Error('bug'); } } as never, TOKEN);
    await expect(broken(req(`/calls/${SID}`))).rejects.toThrow('bug');
  });

  it('401 without a bearer token or with a wrong one', async () => {
    const h = createAdminHandler(store, TOKEN);
    expect((await h(req('/calls', '', null))).status).toBe(401);
    expect((await h(req('/calls', '', 'Bearer wrong'))).status).toBe(401);
    expect((await h(req('/calls', '', `Basic ${TOKEN}`))).status).toBe(401);
    expect((await h(req('/calls', '', `Bearer ${TOKEN}x`))).status).toBe(401);
    expect((await h(req('/calls', '', 'Bearer '))).status).toBe(401);
    expect((await h(req('/calls', '', `bearer ${TOKEN}`))).status).toBe(200); // the scheme is case-insensitive
  });

  it('GET /calls lists, GET /calls/:sid returns the record (live, mid-call)', async () => {
    const h = createAdminHandler(store, TOKEN);
    const list = await h(req('/calls'));
    expect(list.status).toBe(200);
    expect((list.body as { calls: { callSid: string }[] }).calls.map((c) => c.callSid)).toEqual([SID]);
    expect((list.body as { calls: unknown[] }).calls[0]).toMatchObject({ agent: 'front-desk', direction: 'inbound' });
    const one = await h(req(`/calls/${SID}`));
    expect(one.status).toBe(200);
    expect(one.body).toMatchObject({ callSid: SID, state: 'in_progress', transcript: [{ text: 'hello' }], agent: 'front-desk', direction: 'inbound', transfer: null });
    await store.saveTransfer(SID, { agent: 'front-desk', target: 'billing', requestedBy: 'model', leg: 1, at: '2026-12-06T10:00:00.000Z' });
    expect((await h(req(`/calls/${SID}`))).body).toMatchObject({ transfer: { target: 'billing', requestedBy: 'model', leg: 1 } });
    const since = await h(req('/calls', `since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}&limit=500`));
    expect((since.body as { calls: unknown[] }).calls).toEqual([]);
  });

  it('unknown sid / path → 404; bad query → 400', async () => {
    const h = createAdminHandler(store, TOKEN);
    expect((await h(req('/calls/CA00000000000000000000000000000000'))).status).toBe(404);
    expect((await h(req('/elsewhere'))).status).toBe(404);
    expect((await h(req('/calls', 'since=yesterday'))).status).toBe(400);
    expect((await h(req('/calls', 'since=1'))).status).toBe(400); // Date would read this as the year 2001
    expect((await h(req('/calls/%E0%A4%A'))).status).toBe(400);
    expect((await h(req('/calls', 'since=2h'))).status).toBe(200);
    expect((await h(req('/calls', 'limit=501'))).status).toBe(400);
    expect((await h(req('/calls', 'limit=0'))).status).toBe(400);
    expect((await h(req('/calls', 'limit=abc'))).status).toBe(400);
  });

  it('a since too far back (or forward) for a date is 400, not a 500', async () => {
    const h = createAdminHandler(store, TOKEN);
    for (const since of ['99999999999999999999d', '9999999999m', '1000000d', '0000-01-01', '2026-02-30T99:00:00Z']) {
      const r = await h(req('/calls', `since=${since}`));
      expect(r.status, since).toBe(400);
      expect(r.body, since).toMatchObject({ error: expect.stringMatching(/since must be/) });
    }
    expect((await h(req('/calls', 'since=700000d'))).status).toBe(200); // ~1900 years back: every call
  });

  it('pages past the limit with an opaque cursor: `next`, then `?cursor=`; a cursor not given out is 400', async () => {
    for (let i = 0; i < 4; i++) {
      const sid = `CA${String(i).padStart(32, '7')}`;
      createStoreRecorder(store, sid, {}).started({ callSid: sid, streamSid: 'MZ', audioMode: 'transcode', startedAt: new Date(Date.UTC(2026, 0, 1 + i)) });
    }
    const h = createAdminHandler(store, TOKEN);
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const r = await h(req('/calls', `limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`));
      expect(r.status).toBe(200);
      const body = r.body as { calls: { callSid: string }[]; next: string | null };
      seen.push(...body.calls.map((c) => c.callSid));
      cursor = body.next;
      pages++;
    } while (cursor && pages < 10);
    expect(pages).toBe(3);
    expect(seen).toEqual([SID, ...[3, 2, 1, 0].map((i) => `CA${String(i).padStart(32, '7')}`)]);
    for (const bad of ['nonsense', 'c1.', 'c1.e30', `c1.${Buffer.from('["yesterday","CA1"]').toString('base64url')}`]) {
      const r = await h(req('/calls', `cursor=${encodeURIComponent(bad)}`));
      expect(r.status, bad).toBe(400);
      expect(r.body).toMatchObject({ error: expect.stringMatching(/cursor/) });
    }
  });
});

describe('GET /calls over the real server', () => {
  const SID = `CA${'a'.repeat(32)}`;
  const dir = mkdtempSync(join(tmpdir(), 'callbridge-calls-api-'));
  let server: RunningServer;
  let store: SqliteCallStore;
  let base: string;

  /** The one place this file starts the server: a VoiceApp that only answers the admin routes. */
  async function startAdminServer(settings: EdgeSettings, admin: AdminReader): Promise<RunningServer> {
    const app: VoiceApp = {
      incoming: () => ({ ok: false, status: 400, message: 'x' }),
      status: () => {},
      openStream: () => null,
      health: () => ({ status: 'ok', version: '0', uptimeSeconds: 0, activeCalls: 0, model: { reachable: null, lastOkAt: null, lastError: null } }),
    };
    return startServer({ settings, app, admin, log: silentLogger });
  }

  beforeAll(async () => {
    const db = join(dir, 'calls.db');
    store = new SqliteCallStore({ path: db, prices: loadConfig({}).prices, log: silentLogger });
    const rec = createStoreRecorder(store, SID, { From: '+15550001', To: '+15550002' });
    rec.started({ callSid: SID, streamSid: 'MZ1', audioMode: 'transcode', startedAt: new Date(Date.now() - 65_000) });
    rec.transcript({ atMs: 200, speaker: 'assistant', text: 'Thanks for calling.' });
    rec.transcript({ atMs: 61_500, speaker: 'caller', text: 'Check my coverage.' });
    rec.toolCall({ callId: 'c1', name: 'check_eligibility', args: '{}', ok: true, output: '{"status":"eligible"}', record: {}, startedAtMs: 62_000, durationMs: 35 });
    rec.turnLatency({ turn: 1, latencyMs: 700 });
    rec.ended({ endedAt: new Date(), reason: 'caller_hangup', relay: { inbound: { p50Ms: 0.04, p99Ms: 0.2 }, outbound: { p50Ms: 0.05, p99Ms: 0.3 } }, protocolErrors: 0 });
    server = await startAdminServer(edgeSettings({ port: 0, host: '127.0.0.1', adminToken: TOKEN }), createAdminHandler(store, TOKEN));
    base = `http://127.0.0.1:${server.port}`;
  });
  afterAll(async () => {
    await server?.close();
    store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const get = (path: string, token?: string) => fetch(base + path, { headers: token ? { authorization: `Bearer ${token}` } : {} });

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
    expect((await get('/calls?since=99999999999999d', TOKEN)).status).toBe(400);
    expect((await get('/calls?cursor=c1.xyz', TOKEN)).status).toBe(400);
  });

  it('the last page says so: next is null', async () => {
    expect(await (await get('/calls?limit=10', TOKEN)).json()).toMatchObject({ next: null });
  });
});
