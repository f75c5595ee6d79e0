/** GET /calls and /calls/:sid: auth, disabled when no token, 404s, 400s. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createAdminHandler } from '../src/admin/calls-api.js';
import type { AdminRequest } from '../src/call/ports.js';
import { createStoreRecorder } from '../src/call/store-recorder.js';
import { loadConfig } from '../src/config.js';
import { silentLogger } from '../src/log.js';
import { SqliteCallStore } from '../src/store/sqlite.js';

const TOKEN = 'admin-token-0123456789';
const SID = 'CA33333333333333333333333333333333';
let dir: string;
let store: SqliteCallStore;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'callbridge-admin-'));
  store = new SqliteCallStore({ path: join(dir, 'c.db'), prices: loadConfig({}).prices, log: silentLogger });
  const r = createStoreRecorder(store, SID, { From: '+1555', To: '+1666' });
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

describe('admin calls API', () => {
  it('disabled (404 for everything) when ADMIN_TOKEN is unset', async () => {
    const h = createAdminHandler(store, undefined);
    expect((await h(req('/calls'))).status).toBe(404);
    expect((await h(req(`/calls/${SID}`, '', null))).status).toBe(404);
  });

  it('401 without a bearer token or with a wrong one', async () => {
    const h = createAdminHandler(store, TOKEN);
    expect((await h(req('/calls', '', null))).status).toBe(401);
    expect((await h(req('/calls', '', 'Bearer wrong'))).status).toBe(401);
    expect((await h(req('/calls', '', `Basic ${TOKEN}`))).status).toBe(401);
    expect((await h(req('/calls', '', `Bearer ${TOKEN}x`))).status).toBe(401);
    expect((await h(req('/calls', '', `Basic ${TOKEN}`))).status).toBe(401);
    expect((await h(req('/calls', '', 'Bearer '))).status).toBe(401);
    expect((await h(req('/calls', '', `bearer ${TOKEN}`))).status).toBe(200); // the scheme is case-insensitive
  });

  it('GET /calls lists, GET /calls/:sid returns the record (live, mid-call)', async () => {
    const h = createAdminHandler(store, TOKEN);
    const list = await h(req('/calls'));
    expect(list.status).toBe(200);
    expect((list.body as { calls: { callSid: string }[] }).calls.map((c) => c.callSid)).toEqual([SID]);
    const one = await h(req(`/calls/${SID}`));
    expect(one.status).toBe(200);
    expect(one.body).toMatchObject({ callSid: SID, state: 'in_progress', transcript: [{ text: 'hello' }] });
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
});
