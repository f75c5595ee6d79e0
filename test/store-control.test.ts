/**
 * What the call store keeps for call control and outbound calls, on both stores (SQLite: a real file;
 * PostgreSQL: the real local server, a schema per test), without and with a TRANSCRIPT_KEY:
 *   - transfer decisions: saved at once (no flush), the later replacing the earlier, read by any store on the
 *     same storage, in the record, GET /calls/:sid and `calls show`; a store that cannot save rejects;
 *   - outbound calls: `placed` writes the row, `answered` and the stream keep its numbers, agent and direction;
 *     listings show agent and direction;
 *   - the outbound pacer: slots spaced at least the interval, across stores sharing a database;
 *   - claim keys of later streams and action webhooks;
 *   - databases made by the schema before this one open and upgrade in place.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createAdminHandler } from '../src/admin/calls-api.js';
import { formatRecord } from '../src/cli/calls.js';
import type { TransferDecision } from '../src/records.js';
import { PostgresStoreError } from '../src/store/postgres.js';
import { createStoreRecorder, streamRecorder } from '../src/store/recorder.js';
import { openSqlite } from '../src/store/sqlite-driver.js';
import type { CallStore } from '../src/store/types.js';
import { PG_URL, postgresAvailable } from './helpers/postgres.js';
import { postgresKind, sqliteKind, type StoreKind } from './helpers/store-kinds.js';
import { endInfo, SID } from './helpers/store.js';
import { startTcpProxy, type TcpProxy } from './helpers/tcp-proxy.js';

const pgOk = await postgresAvailable();
const KEY = Buffer.alloc(32, 9);
const TOKEN = 'control-admin-token';

const decision = (o: Partial<TransferDecision> = {}): TransferDecision => ({
  agent: 'front-desk',
  target: 'billing',
  requestedBy: 'model',
  leg: 1,
  at: '2026-12-06T10:00:00.000Z',
  ...o,
});

const kinds = [sqliteKind(), ...(pgOk ? [postgresKind()] : [])];
const cases = kinds.flatMap((kind) => [
  { kind, label: `${kind.name}, no key`, key: undefined as Buffer | undefined },
  { kind, label: `${kind.name}, TRANSCRIPT_KEY set`, key: KEY },
]);

describe.each(cases)('call control in the store: $label', ({ kind, key }) => {
  const opened: CallStore[] = [];
  const open = async (o: { identity?: string; readOnly?: boolean } = {}) => {
    const s = await kind.open({ key, shortTimeouts: true, ...o });
    opened.push(s);
    return s;
  };
  beforeEach(() => kind.setup());
  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close();
    await kind.teardown();
  });

  it('saveTransfer is durable when it resolves (no flush), read by another store, replaced by a later one; the record, GET /calls/:sid and `calls show` carry it', async () => {
    const a = await open({ identity: 'a' });
    const b = await open({ identity: 'b' });
    createStoreRecorder(a, SID, { From: '+15551230000', To: '+15559870000' }, { agent: 'front-desk', direction: 'inbound' });
    expect(await b.transfer(SID)).toBeUndefined();
    await a.saveTransfer(SID, decision());
    // Straight on the storage, before any flush of `a`: the decision is there.
    const rows = await kind.raw(`SELECT decision FROM call_transfers WHERE call_sid = '${SID}'`);
    expect(rows).toHaveLength(1);
    expect(await b.transfer(SID)).toEqual(decision());

    await a.saveTransfer(SID, decision({ target: 'nurse-line', requestedBy: 'keypad', leg: 2, at: '2026-12-06T10:05:00.000Z' }));
    expect(await b.transfer(SID)).toEqual(decision({ target: 'nurse-line', requestedBy: 'keypad', leg: 2, at: '2026-12-06T10:05:00.000Z' }));
    expect(await kind.raw(`SELECT decision FROM call_transfers`)).toHaveLength(1);

    streamRecorder(a, SID).ended(endInfo(new Date(), 'transferred'));
    await a.flush();
    const r = (await b.get(SID))!;
    expect(r.transfer).toEqual({ agent: 'front-desk', target: 'nurse-line', requestedBy: 'keypad', leg: 2, at: '2026-12-06T10:05:00.000Z' });
    expect(r).toMatchObject({ agent: 'front-desk', direction: 'inbound', endReason: 'transferred' });
    const api = createAdminHandler(b, TOKEN);
    const res = await api({ method: 'GET', path: `/calls/${SID}`, query: new URLSearchParams(), headers: { authorization: `Bearer ${TOKEN}` } });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ transfer: { target: 'nurse-line', requestedBy: 'keypad', leg: 2 }, agent: 'front-desk', direction: 'inbound' });
    const shown = formatRecord(r);
    expect(shown).toContain('direction inbound   agent front-desk');
    expect(shown).toContain('transfer to nurse-line (agent front-desk), asked by the caller on the keypad on leg 2 at 2026-12-06T10:05:00.000Z');
    // A call without one: null, and `calls show` says nothing about it.
    const other = 'CA0000000000000000000000000000aaaa';
    createStoreRecorder(a, other, {}).ended(endInfo(new Date()));
    await a.flush();
    expect((await b.get(other))!.transfer).toBeNull();
    expect(formatRecord((await b.get(other))!)).not.toContain('transfer');
  });

  it('a decision saved before the call has a row is kept for it; a malformed one is refused, nothing saved', async () => {
    const a = await open({ identity: 'a' });
    await a.saveTransfer(SID, decision({ leg: 3 }));
    expect(await a.get(SID)).toBeUndefined(); // a decision alone makes no call record
    createStoreRecorder(a, SID, {}).ended(endInfo(new Date()));
    expect((await a.get(SID))!.transfer).toEqual(decision({ leg: 3 }));
    const other = 'CA0000000000000000000000000000bbbb';
    for (const bad of [
      decision({ leg: 0 }),
      decision({ leg: 1.5 }),
      decision({ requestedBy: 'someone' as 'model' }),
      decision({ at: 'yesterday' }),
      { ...decision(), target: undefined } as unknown as TransferDecision,
    ]) {
      await expect(a.saveTransfer(other, bad)).rejects.toThrow(/transfer decision/);
    }
    expect(await a.transfer(other)).toBeUndefined();
  });

  it('saveTransfer rejects on a closed store and on a read-only one (never resolves without saving)', async () => {
    const a = await open({ identity: 'a' });
    await a.saveTransfer(SID, decision());
    const reader = await open({ readOnly: true });
    await expect(reader.saveTransfer(SID, decision({ target: 'x' }))).rejects.toThrow(/read-only or closed/);
    expect(await reader.transfer(SID)).toEqual(decision()); // a reader still reads it
    await a.close();
    await expect(a.saveTransfer(SID, decision({ target: 'y' }))).rejects.toThrow(/read-only or closed/);
    expect((await (await open()).transfer(SID))!.target).toBe('billing');
  });

  it('placed → answered → started → ended keeps the numbers, agent and direction the placing wrote; the listing shows agent and direction', async () => {
    const a = await open({ identity: 'a' }); // placed the call (REST)
    const b = await open({ identity: 'b' }); // answered its webhook
    const c = await open({ identity: 'c' }); // carried its stream
    a.placed(SID, { from: '+15550001000', to: '+15550002000', agent: 'reminders' });
    await a.flush();
    expect(await c.get(SID)).toMatchObject({ from: '+15550001000', to: '+15550002000', agent: 'reminders', direction: 'outbound-api', state: 'in_progress', answeredAt: null });
    // The webhook says less, or something else: what the placing wrote stays.
    createStoreRecorder(b, SID, { From: '+15550009999' }, { agent: 'front-desk', direction: 'inbound' });
    await b.flush();
    expect(await c.claim(SID, 'c')).toBe(true);
    const rec = streamRecorder(c, SID);
    const t0 = new Date('2026-12-06T11:00:00.000Z');
    rec.started({ callSid: SID, streamSid: 'MZ7', audioMode: 'passthrough', startedAt: t0 });
    rec.transcript({ atMs: 10, speaker: 'assistant', text: 'Hello, this is a reminder.' });
    rec.ended(endInfo(new Date(t0.getTime() + 20_000), 'agent_hangup'));
    await c.flush();
    const r = (await (await open()).get(SID))!;
    expect(r).toMatchObject({
      from: '+15550001000', to: '+15550002000', agent: 'reminders', direction: 'outbound-api',
      streamSid: 'MZ7', state: 'completed', endReason: 'agent_hangup', durationMs: 20_000,
    });
    expect(r.answeredAt).not.toBeNull();

    const inbound = 'CA0000000000000000000000000000cccc';
    createStoreRecorder(a, inbound, { From: '+15553334444', To: '+15550001000' }, { agent: 'front-desk', direction: 'inbound' });
    await a.flush();
    const list = await (await open()).list();
    expect(list.map((s) => [s.callSid, s.agent, s.direction])).toEqual(
      expect.arrayContaining([[SID, 'reminders', 'outbound-api'], [inbound, 'front-desk', 'inbound']]),
    );
    const api = createAdminHandler(b, TOKEN);
    const res = await api({ method: 'GET', path: '/calls', query: new URLSearchParams(), headers: { authorization: `Bearer ${TOKEN}` } });
    expect((res.body as { calls: unknown[] }).calls).toEqual(
      expect.arrayContaining([expect.objectContaining({ callSid: SID, agent: 'reminders', direction: 'outbound-api' })]),
    );
    if (key) {
      const raw = await kind.rawText();
      for (const n of ['5550001000', '5550002000', '5553334444']) expect(raw).not.toContain(n); // numbers sealed, as for inbound calls
      expect(raw).toContain('reminders'); // names are not personal data: plain
    }
  });

  it('a placed call that never answers is finished by its terminal status callback, with its agent and direction kept', async () => {
    const a = await open({ identity: 'a' });
    a.placed(SID, { from: '+15550001000', to: '+15550002000', agent: 'reminders' });
    await a.flush();
    const { statusCallback } = await import('./helpers/webhooks.js');
    a.recordStatus(statusCallback({ CallSid: SID, AccountSid: 'AC00000000000000000000000000000001', CallStatus: 'busy', SequenceNumber: '2', Direction: 'outbound-api' }));
    await a.flush();
    expect(await (await open()).get(SID)).toMatchObject({ state: 'completed', outcome: 'busy', status: 'busy', agent: 'reminders', direction: 'outbound-api', from: '+15550001000' });
    // A call whose placing never reached the store: its status callbacks tell the direction; a later one does not change it.
    const lost = 'CA0000000000000000000000000000eeee';
    const b = await open({ identity: 'b' });
    b.recordStatus(statusCallback({ CallSid: lost, AccountSid: 'AC00000000000000000000000000000001', CallStatus: 'ringing', SequenceNumber: '1', Direction: 'outbound-api' }));
    await b.flush();
    b.recordStatus(statusCallback({ CallSid: lost, AccountSid: 'AC00000000000000000000000000000001', CallStatus: 'no-answer', SequenceNumber: '2', Direction: 'inbound' }));
    await b.flush();
    expect(await (await open()).get(lost)).toMatchObject({ direction: 'outbound-api', agent: null, state: 'completed', outcome: 'no-answer' });
  });

  it('claim keys of later streams (CA…/2) and action webhooks (action:CA…/1) are their own, each taken once', async () => {
    const a = await open({ identity: 'a' });
    const b = await open({ identity: 'b' });
    const keys = [SID, `${SID}/2`, `${SID}/3`, `action:${SID}/1`, `action:${SID}/2`];
    for (const k of keys) {
      const both = await Promise.all([a.claim(k, 'a'), b.claim(k, 'b')]);
      expect(both.filter(Boolean), k).toHaveLength(1);
    }
    for (const k of keys) expect(await a.claim(k, 'a'), k).toBe(false);
    expect((await kind.raw(`SELECT call_sid FROM call_claims ORDER BY call_sid`)).map((r) => r.call_sid)).toEqual([...keys].sort());
  });

  it('outbound slots: spaced at least the interval (rounded up to whole ms), the first now; a bad interval is refused', async () => {
    const a = await open({ identity: 'a' });
    const before = Date.now();
    const slots = await Promise.all(Array.from({ length: 10 }, () => a.reserveOutboundSlot(250)));
    const sorted = [...slots].sort((x, y) => x - y);
    expect(new Set(slots).size).toBe(10);
    for (let i = 1; i < sorted.length; i++) expect(sorted[i]! - sorted[i - 1]!).toBeGreaterThanOrEqual(250);
    // The first is now (PostgreSQL: the database's clock, the same machine here: allow for its rounding).
    expect(sorted[0]!).toBeGreaterThanOrEqual(before - 50);
    expect(sorted[0]!).toBeLessThan(before + 5_000);
    expect(sorted.at(-1)! - sorted[0]!).toBe(9 * 250); // asked together: no gaps beyond the interval
    const odd = [await a.reserveOutboundSlot(1000 / 3), await a.reserveOutboundSlot(1000 / 3)];
    expect(odd[1]! - odd[0]!).toBe(334);
    expect(odd[0]! - sorted.at(-1)!).toBeGreaterThanOrEqual(250);
    const zero = [await a.reserveOutboundSlot(0), await a.reserveOutboundSlot(0)];
    expect(zero[1]!).toBeGreaterThanOrEqual(zero[0]!);
    for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY]) await expect(a.reserveOutboundSlot(bad)).rejects.toThrow(/interval/);
  });

  it('a database made by the schema before this one opens, upgrades in place and keeps its calls', async () => {
    await makeOldSchema(kind);
    const s = await open({ identity: 'a' });
    const old = (await s.get(SID))!;
    expect(old).toMatchObject({ callSid: SID, from: '+15557776666', state: 'completed', endReason: 'caller_hangup', agent: null, direction: null, transfer: null });
    expect((await s.list()).find((c) => c.callSid === SID)).toMatchObject({ agent: null, direction: null });
    // New writes on the old call and new calls work.
    await s.saveTransfer(SID, decision());
    expect((await s.get(SID))!.transfer).toEqual(decision());
    s.placed('CA0000000000000000000000000000dddd', { from: '+1555', to: '+1666', agent: 'reminders' });
    expect(await s.get('CA0000000000000000000000000000dddd')).toMatchObject({ agent: 'reminders', direction: 'outbound-api' });
    expect(await s.reserveOutboundSlot(100)).toBeGreaterThan(0);
    expect(await s.claim(`action:${SID}/1`, 'a')).toBe(true);
    await s.close();
    // Opening again changes nothing (the upgrade ran once).
    const again = await open({ identity: 'a' });
    expect((await again.get(SID))!.transfer).toEqual(decision());
    if (kind.name === 'sqlite') expect((await kind.raw('SELECT * FROM pragma_user_version'))[0]!.user_version).toBe(7);
    else expect((await kind.raw('SELECT max(version) AS v FROM callbridge_migrations'))[0]!.v).toBe(6);
  });
});

describe.skipIf(!pgOk)('call control across PostgreSQL instances', () => {
  const kind = postgresKind();
  const opened: CallStore[] = [];
  const proxies: TcpProxy[] = [];
  beforeEach(() => kind.setup());
  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close();
    for (const p of proxies.splice(0)) await p.close();
    await kind.teardown();
  });
  const open = async (o: { identity?: string; url?: string } = {}) => {
    const s = await kind.open({ shortTimeouts: true, ...o });
    opened.push(s);
    return s;
  };

  it('two instances (two pools) reserving 20 slots at once get 20 distinct slots, all spaced at least the interval', async () => {
    const a = await open({ identity: 'a' });
    const b = await open({ identity: 'b' });
    const slots = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? a : b).reserveOutboundSlot(100)));
    const sorted = [...slots].sort((x, y) => x - y);
    expect(new Set(slots).size).toBe(20);
    for (let i = 1; i < sorted.length; i++) expect(sorted[i]! - sorted[i - 1]!).toBeGreaterThanOrEqual(100);
    // Continues across instances: the next one, from either, comes after all of them.
    expect(await a.reserveOutboundSlot(100)).toBeGreaterThanOrEqual(sorted.at(-1)! + 100);
  });

  it('the decision one instance saves is what another reads, at once', async () => {
    const a = await open({ identity: 'a' });
    const b = await open({ identity: 'b' });
    a.answered(SID, { from: '+1555', to: '+1666', agent: 'front-desk', direction: 'inbound' });
    await a.saveTransfer(SID, decision());
    expect(await b.transfer(SID)).toEqual(decision());
    await b.saveTransfer(SID, decision({ leg: 2, target: 'nurse-line' }));
    expect(await a.transfer(SID)).toEqual(decision({ leg: 2, target: 'nurse-line' }));
  });

  it('saveTransfer, transfer and reserveOutboundSlot reject (retryable) while the database refuses, and work again when it is back', async () => {
    const proxy = await startTcpProxy({ host: '127.0.0.1', port: Number(new URL(PG_URL).port || 5432) });
    proxies.push(proxy);
    const a = await open({ identity: 'a', url: proxy.url(PG_URL) });
    await a.saveTransfer(SID, decision());
    proxy.setMode('refuse');
    const saved = a.saveTransfer(SID, decision({ target: 'nurse-line' }));
    await expect(saved).rejects.toBeInstanceOf(PostgresStoreError);
    await expect(saved).rejects.toMatchObject({ retryable: true });
    await expect(a.transfer(SID)).rejects.toMatchObject({ retryable: true });
    await expect(a.reserveOutboundSlot(100)).rejects.toMatchObject({ retryable: true });
    proxy.setMode('pass');
    const direct = await open({ identity: 'reader' });
    expect((await direct.transfer(SID))!.target).toBe('billing'); // the refused save left nothing
    let back = false;
    for (let i = 0; i < 100 && !back; i++) {
      back = await a.saveTransfer(SID, decision({ target: 'nurse-line' })).then(() => true, () => false);
      if (!back) await new Promise((r) => setTimeout(r, 50));
    }
    expect(back).toBe(true);
    expect((await direct.transfer(SID))!.target).toBe('nurse-line');
  });
});

/**
 * The storage as the schema before this one left it (SQLite user_version 4, PostgreSQL migrations 1–3, the
 * SQL as those versions wrote it), with one finished call in it.
 */
async function makeOldSchema(kind: StoreKind): Promise<void> {
  if (kind.name === 'sqlite') {
    await kind.raw('SELECT 1'); // creates the file
    const db = openSqlite(await sqlitePath(kind));
    db.exec(`CREATE TABLE calls (
       call_sid TEXT PRIMARY KEY, stream_sid TEXT, from_number TEXT, to_number TEXT, started_at TEXT, answered_at TEXT,
       ended_at TEXT, duration_ms INTEGER, status TEXT, status_events TEXT NOT NULL DEFAULT '[]', end_reason TEXT,
       outcome TEXT, audio_mode TEXT, state TEXT NOT NULL DEFAULT 'in_progress', transcript TEXT NOT NULL DEFAULT '[]',
       tool_calls TEXT NOT NULL DEFAULT '[]', turn_latencies TEXT NOT NULL DEFAULT '[]', relay TEXT,
       protocol_errors INTEGER NOT NULL DEFAULT 0, usage TEXT NOT NULL DEFAULT '{}', cost_usd REAL NOT NULL DEFAULT 0,
       created_at TEXT NOT NULL, updated_at TEXT NOT NULL, model TEXT);
     CREATE INDEX calls_by_time ON calls (coalesce(started_at, answered_at, created_at) DESC);
     CREATE INDEX calls_in_progress ON calls (state) WHERE state = 'in_progress';
     CREATE TABLE call_entries (
       id INTEGER PRIMARY KEY, call_sid TEXT NOT NULL,
       kind TEXT NOT NULL CHECK (kind IN ('transcript', 'tool', 'latency', 'event')),
       at_ms REAL NOT NULL, label TEXT, ok INTEGER, data TEXT NOT NULL);
     CREATE INDEX call_entries_by_call ON call_entries (call_sid, kind, at_ms, id);
     CREATE TABLE call_claims (call_sid TEXT PRIMARY KEY, instance_id TEXT NOT NULL, claimed_at TEXT NOT NULL);
     INSERT INTO calls (call_sid, from_number, started_at, ended_at, duration_ms, end_reason, state, created_at, updated_at)
       VALUES ('${SID}', '+15557776666', '2026-11-01T10:00:00.000Z', '2026-11-01T10:01:00.000Z', 60000, 'caller_hangup', 'completed', 'x', 'x');
     INSERT INTO call_claims VALUES ('${SID}', 'old', '2026-11-01T10:00:00.000Z');
     PRAGMA user_version = 4;`);
    db.close();
    return;
  }
  await kind.raw(`SELECT 1`);
  const statements = [
    `CREATE TABLE callbridge_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`,
    `CREATE TABLE calls (
       call_sid text PRIMARY KEY, stream_sid text, from_number text, to_number text, started_at timestamptz,
       answered_at timestamptz, ended_at timestamptz, duration_ms double precision, status text, end_reason text,
       outcome text, audio_mode text, model text,
       state text NOT NULL DEFAULT 'in_progress' CHECK (state IN ('in_progress', 'completed', 'interrupted')),
       relay text, protocol_errors integer NOT NULL DEFAULT 0, usage text NOT NULL DEFAULT '{}',
       cost_usd double precision NOT NULL DEFAULT 0, instance_id text, owner_rev bigint,
       created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now())`,
    `CREATE INDEX calls_by_time ON calls ((coalesce(started_at, answered_at, created_at)) DESC)`,
    `CREATE INDEX calls_in_progress ON calls (instance_id) WHERE state = 'in_progress'`,
    `CREATE TABLE call_entries (
       id bigserial PRIMARY KEY, uid uuid NOT NULL UNIQUE, call_sid text NOT NULL,
       kind text NOT NULL CHECK (kind IN ('transcript', 'tool', 'latency', 'event')),
       at_ms double precision NOT NULL, label text, ok boolean, data text NOT NULL)`,
    `CREATE INDEX call_entries_by_call ON call_entries (call_sid, kind, at_ms, id)`,
    `CREATE TABLE call_status_events (
       id bigserial PRIMARY KEY, call_sid text NOT NULL, sequence_number integer, status text NOT NULL,
       "timestamp" timestamptz, call_duration_s integer, received_at timestamptz NOT NULL)`,
    `CREATE UNIQUE INDEX call_status_once ON call_status_events (call_sid, sequence_number)`,
    `CREATE TABLE instances (
       instance_id text PRIMARY KEY, started_at timestamptz NOT NULL, heartbeat_at timestamptz NOT NULL,
       expires_at timestamptz NOT NULL, token text)`,
    `CREATE TABLE call_claims (call_sid text PRIMARY KEY, instance_id text NOT NULL, claimed_at timestamptz NOT NULL DEFAULT now())`,
    `INSERT INTO callbridge_migrations (version) VALUES (1), (2), (3)`,
    `INSERT INTO calls (call_sid, from_number, started_at, ended_at, duration_ms, end_reason, state, instance_id)
       VALUES ('${SID}', '+15557776666', '2026-11-01T10:00:00Z', '2026-11-01T10:01:00Z', 60000, 'caller_hangup', 'completed', 'old')`,
  ];
  await kind.raw(`CREATE SCHEMA IF NOT EXISTS ${await pgSchema(kind)}`);
  for (const st of statements) await kind.raw(st);
}

/** The SQLite file the kind uses (read back from the database it opens). */
async function sqlitePath(kind: StoreKind): Promise<string> {
  const [row] = await kind.raw(`SELECT file FROM pragma_database_list WHERE name = 'main'`);
  return String(row!.file);
}

/** The PostgreSQL schema the kind uses (its connection's search_path). */
async function pgSchema(kind: StoreKind): Promise<string> {
  const [row] = await kind.raw(`SELECT current_setting('search_path') AS p`);
  return String(row!.p).split(',')[0]!.trim();
}
