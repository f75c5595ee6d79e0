/**
 * What only the PostgreSQL store has to prove, against the real server:
 * migrations under an advisory lock, one multi-row insert per flush, a
 * database that goes away (black-holed or refusing, through a TCP proxy the
 * test controls) without losing what fits the queue, and instance leases.
 */
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createAdminHandler } from '../src/admin/calls-api.js';
import { silentLogger } from '../src/log.js';
import { PostgresCallStore, PostgresStoreError, type PostgresStoreOptions } from '../src/store/postgres.js';
import { openCallStore } from '../src/store/open.js';
import { createStoreRecorder, streamRecorder } from '../src/store/recorder.js';
import { adminSql, dropSchema, freshSchema, PG_URL, postgresAvailable } from './helpers/postgres.js';
import { endInfo, prices } from './helpers/store.js';
import { startTcpProxy, type TcpProxy } from './helpers/tcp-proxy.js';
import { sleep, until } from './helpers/until.js';

const pgOk = await postgresAvailable();

const sid = (n: number) => `CA${String(n).padStart(32, '0')}`;
const end = (reason = 'caller_hangup') => endInfo(new Date(), reason);
/** The database is given this long to come back or be found away. */
const PG_WAIT = { timeoutMs: 15_000, everyMs: 25 };

/** A logger whose lines the test can read. */
function captureLog(): { log: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { log: pino({ level: 'info' }, sink), lines };
}

let schema: string;
const stores: PostgresCallStore[] = [];
const proxies: TcpProxy[] = [];
beforeEach(() => {
  schema = freshSchema();
});
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  for (const p of proxies.splice(0)) await p.close();
  await dropSchema(schema);
});
const open = async (o: Partial<PostgresStoreOptions> = {}) => {
  const s = await PostgresCallStore.open({ url: PG_URL, schema, prices, log: silentLogger, ...o });
  stores.push(s);
  return s;
};
const query = async <T>(text: string, params: unknown[] = []): Promise<T[]> => {
  const sql = adminSql();
  try {
    return (await sql.unsafe(text.replaceAll('$schema', schema), params as never[])) as unknown as T[];
  } finally {
    await sql.end({ timeout: 2 });
  }
};

describe.skipIf(!pgOk)('PostgresCallStore: migrations', () => {
  it('instances starting at once on a fresh schema migrate it exactly once', async () => {
    const all = await Promise.all([1, 2, 3, 4].map((i) => open({ instanceId: `i${i}` })));
    expect(await query('SELECT version FROM $schema.callbridge_migrations ORDER BY version')).toEqual([{ version: 1 }, { version: 2 }, { version: 3 }, { version: 4 }, { version: 5 }, { version: 6 }]);
    // and every one of them works on it
    all.forEach((s, i) => createStoreRecorder(s, sid(i), {}).started({ callSid: sid(i), streamSid: 'MZ', audioMode: 'transcode', startedAt: new Date() }));
    for (const s of all) await s.flush();
    expect(await all[3]!.list()).toHaveLength(4);
  });

  it('a schema newer than this callbridge is a clear start-up error; so is an unreachable server or a missing store', async () => {
    await open();
    await query('INSERT INTO $schema.callbridge_migrations (version) VALUES (99)');
    await expect(open()).rejects.toThrow(/schema version 99, newer than this callbridge/);
    const refused = PostgresCallStore.open({ url: 'postgres://postgres@127.0.0.1:1/test', prices, log: silentLogger, connectTimeoutMs: 1000 });
    await expect(refused).rejects.toBeInstanceOf(PostgresStoreError);
    await expect(refused).rejects.toMatchObject({ retryable: true });
    await expect(open({ schema: freshSchema(), readOnly: true })).rejects.toThrow(/no callbridge call store/);
    // A reader (the CLI) on a store no server has upgraded yet: a clear error, not a missing column mid-read.
    await query('DELETE FROM $schema.callbridge_migrations WHERE version >= 4');
    await expect(open({ readOnly: true })).rejects.toThrow(/schema version 3, older than this callbridge \(6\)/);
    await expect(open({ schema: 'Robert"); DROP' })).rejects.toThrow(/schema name/);
  });

  it('openCallStore: a postgres URL selects PostgreSQL with a lease; anything else SQLite', async () => {
    const opened = await openCallStore({ databaseUrl: PG_URL, schema, dbPath: '/nonexistent/never-created.db', prices, log: silentLogger, instanceId: 'via-open' });
    expect(opened.kind).toBe('postgres');
    if (opened.kind === 'postgres') stores.push(opened.store);
    expect(await query('SELECT instance_id FROM $schema.instances')).toEqual([{ instance_id: 'via-open' }]);
  });
});

describe.skipIf(!pgOk)('PostgresCallStore: writes', () => {
  it('the call path sends nothing; a flush writes all queued entries in one multi-row INSERT, in one transaction', async () => {
    const sent: string[] = [];
    const s = await open({ instanceId: 'a', onQuery: (q) => sent.push(q) });
    await s.flush();
    sent.length = 0;
    for (let c = 0; c < 3; c++) {
      const rec = createStoreRecorder(s, sid(c), { From: '+15550000001' });
      rec.started({ callSid: sid(c), streamSid: 'MZ', audioMode: 'transcode', startedAt: new Date() });
      for (let i = 0; i < 100; i++) rec.transcript({ atMs: i * 10, speaker: i % 2 ? 'caller' : 'assistant', text: `line ${i}` });
    }
    expect(sent).toEqual([]); // nothing left this process yet
    await s.flush();
    const inserts = sent.filter((q) => /INSERT INTO call_entries/.test(q));
    expect(inserts).toHaveLength(1);
    expect(sent.filter((q) => /INSERT INTO calls AS c/.test(q))).toHaveLength(1); // the three headers: one upsert
    const [row] = await query<{ n: string; tx: string }>('SELECT count(*) AS n, count(DISTINCT xmin::text) AS tx FROM $schema.call_entries');
    expect(row).toEqual({ n: '300', tx: '1' });
    expect((await s.get(sid(1)))!.transcript.map((l) => l.text).slice(0, 3)).toEqual(['line 0', 'line 1', 'line 2']);
  });

  it('a black-holed database stalls nothing: records wait in memory, failures are logged, writing resumes and the record is complete', async () => {
    const proxy = await startTcpProxy({ host: '127.0.0.1', port: Number(new URL(PG_URL).port || 5432) });
    proxies.push(proxy);
    const { log, lines } = captureLog();
    const s = await open({ url: proxy.url(PG_URL), instanceId: 'a', log, flushMs: 50, writeTimeoutMs: 300, connectTimeoutMs: 1000 });
    const rec = createStoreRecorder(s, sid(1), { From: '+15550000001' });
    rec.started({ callSid: sid(1), streamSid: 'MZ', audioMode: 'transcode', startedAt: new Date() });
    await s.flush();
    proxy.setMode('blackhole');
    for (let i = 0; i < 40; i++) {
      rec.transcript({ atMs: i * 100, speaker: 'caller', text: `said ${i}` });
      rec.turnLatency({ turn: i, latencyMs: 500 + i });
      await sleep(20); // the flush timer keeps trying meanwhile
    }
    rec.ended(end());
    await until(() => !s.stats().reachable, { ...PG_WAIT, what: 'a failed flush' });
    const during = await query<{ n: string }>('SELECT count(*) AS n FROM $schema.call_entries');
    expect(Number(during[0]!.n)).toBeLessThan(80);
    expect(s.stats().queued).toBeGreaterThan(0);
    expect(lines.some((l) => /PostgreSQL write failed/.test(String(l.msg)))).toBe(true);
    // A reader is told, as a retryable error, instead of hanging.
    await expect(s.get(sid(1))).rejects.toMatchObject({ name: 'PostgresStoreError', retryable: true });
    proxy.setMode('pass');
    await until(() => s.stats().reachable && s.stats().queued === 0, { ...PG_WAIT, what: 'the queue drained' });
    const reader = await open({ instanceId: 'reader' });
    const r = (await reader.get(sid(1)))!;
    expect(r.state).toBe('completed');
    expect(r.transcript.map((l) => l.text)).toEqual(Array.from({ length: 40 }, (_, i) => `said ${i}`)); // all, once each
    expect(r.turnLatencies).toHaveLength(40);
    expect(s.stats().dropped).toBe(0);
    expect(lines.some((l) => /writable again/.test(String(l.msg)))).toBe(true);
  });

  it('a refusing database: the queue is bounded, what does not fit is counted and logged, the rest is written on return', async () => {
    const proxy = await startTcpProxy({ host: '127.0.0.1', port: Number(new URL(PG_URL).port || 5432) });
    proxies.push(proxy);
    const { log, lines } = captureLog();
    const s = await open({ url: proxy.url(PG_URL), instanceId: 'a', log, flushMs: 50, maxQueued: 50, writeTimeoutMs: 500 });
    const rec = createStoreRecorder(s, sid(1), {});
    rec.started({ callSid: sid(1), streamSid: 'MZ', audioMode: 'transcode', startedAt: new Date() });
    await s.flush();
    proxy.setMode('refuse');
    for (let i = 0; i < 80; i++) rec.transcript({ atMs: i, speaker: 'assistant', text: `t${i}` });
    rec.ended(end());
    expect(s.stats()).toMatchObject({ queued: 50, dropped: 30 });
    await until(() => !s.stats().reachable, { ...PG_WAIT, what: 'a failed flush' });
    expect(lines.find((l) => /write failed/.test(String(l.msg)))).toMatchObject({ queued: 50, dropped: 30 });
    proxy.setMode('pass');
    await until(() => s.stats().reachable && s.stats().queued === 0, { ...PG_WAIT, what: 'the queue drained' });
    const r = (await s.get(sid(1)))!;
    expect(r.state).toBe('completed');
    expect(r.transcript.map((l) => l.text)).toEqual(Array.from({ length: 50 }, (_, i) => `t${i}`));
    expect(lines.find((l) => /writable again/.test(String(l.msg)))).toMatchObject({ dropped: 30 });
  });
});

describe.skipIf(!pgOk)('PostgresCallStore: instance leases', () => {
  const LEASE_MS = 2400;

  it("a live instance's calls are never reaped; once its heartbeat stops, another marks its in-progress calls interrupted within the lease", async () => {
    const a = await open({ instanceId: 'A' });
    const b = await open({ instanceId: 'B' });
    await a.startLeases({ leaseMs: LEASE_MS });
    await b.startLeases({ leaseMs: LEASE_MS });
    createStoreRecorder(a, sid(1), {}).started({ callSid: sid(1), streamSid: 'MZ1', audioMode: 'transcode', startedAt: new Date() });
    const done = createStoreRecorder(a, sid(2), {});
    done.started({ callSid: sid(2), streamSid: 'MZ2', audioMode: 'transcode', startedAt: new Date() });
    done.ended(end());
    createStoreRecorder(b, sid(3), {}).started({ callSid: sid(3), streamSid: 'MZ3', audioMode: 'transcode', startedAt: new Date() });
    await a.flush();
    await b.flush();
    await sleep(LEASE_MS * 1.5); // both alive, past a lease's validity: A's heartbeats keep it, B reaps every LEASE_MS/6 and finds nothing
    expect((await b.get(sid(1)))!.state).toBe('in_progress');

    a.stopLeases(); // A dies: no more heartbeats
    await until(async () => (await b.get(sid(1)))!.state === 'interrupted', { ...PG_WAIT, timeoutMs: LEASE_MS * 10, what: "A's call interrupted" });
    // Measured on the database's clock, from A's last heartbeat to the reaping write.
    const [t] = await query<{ ms: number }>(
      `SELECT (extract(epoch FROM c.updated_at - i.heartbeat_at) * 1000)::float8 AS ms FROM $schema.calls c, $schema.instances i WHERE c.call_sid = $1 AND i.instance_id = 'A'`,
      [sid(1)],
    );
    expect(t!.ms).toBeLessThanOrEqual(LEASE_MS);
    expect((await b.get(sid(1)))!.endReason).toBe('instance_lost');
    expect((await b.get(sid(2)))).toMatchObject({ state: 'completed', endReason: 'caller_hangup' }); // finished calls untouched
    expect((await b.get(sid(3)))!.state).toBe('in_progress'); // its own call too
  });

  it('a restarting instance (after kill -9: it waits out its old lease) marks only its own earlier calls; another live instance keeps its calls', async () => {
    const a = await open({ instanceId: 'A' });
    const b = await open({ instanceId: 'B' });
    await a.startLeases({ leaseMs: LEASE_MS });
    await b.startLeases({ leaseMs: LEASE_MS });
    createStoreRecorder(a, sid(1), {}).started({ callSid: sid(1), streamSid: 'MZ1', audioMode: 'transcode', startedAt: new Date() });
    createStoreRecorder(b, sid(3), {}).started({ callSid: sid(3), streamSid: 'MZ3', audioMode: 'transcode', startedAt: new Date() });
    await a.flush();
    await b.flush();
    a.stopLeases(); // A is killed and comes straight back under the same name, before its lease expires
    const a2 = await open({ instanceId: 'A' });
    // It cannot tell its dead self from a live twin: it waits until the old lease expires unrenewed, then takes it.
    await a2.startLeases({ leaseMs: LEASE_MS });
    const [lease] = await query<{ live: boolean }>("SELECT expires_at > now() AS live FROM $schema.instances WHERE instance_id = 'A'");
    expect(lease).toEqual({ live: true });
    // Its earlier call is interrupted: by B's reaper once the old lease expired, else by A's own start-up.
    await a2.markInterrupted();
    expect((await a2.get(sid(1)))).toMatchObject({ state: 'interrupted', endReason: expect.stringMatching(/^(instance_lost|process_exit)$/) });
    expect((await a2.get(sid(3)))!.state).toBe('in_progress');
    await sleep(LEASE_MS); // and B's heartbeat keeps it so
    expect((await a2.get(sid(3)))!.state).toBe('in_progress');
  });

  it('a second live process with the same INSTANCE_ID is refused at start, having touched nothing; a clean restart takes the lease at once', async () => {
    const a = await open({ instanceId: 'A' });
    const b = await open({ instanceId: 'B' });
    await a.startLeases({ leaseMs: LEASE_MS });
    await b.startLeases({ leaseMs: LEASE_MS });
    createStoreRecorder(a, sid(1), {}).started({ callSid: sid(1), streamSid: 'MZ1', audioMode: 'transcode', startedAt: new Date() });
    await a.flush();
    // The duplicate, started as `serve` starts it: refused before it could mark A's live call interrupted.
    const dup = openCallStore({ databaseUrl: PG_URL, schema, dbPath: '/nonexistent/never-created.db', prices, log: silentLogger, instanceId: 'A', leaseMs: LEASE_MS });
    await expect(dup).rejects.toThrow(/INSTANCE_ID A is in use: another live process holds its lease/);
    await expect(dup).rejects.toMatchObject({ name: 'PostgresStoreError', retryable: false });
    // Its close released nothing: A's lease holds, B reaps nothing, A's call goes on.
    const [lease] = await query<{ live: boolean }>("SELECT expires_at > now() AS live FROM $schema.instances WHERE instance_id = 'A'");
    expect(lease).toEqual({ live: true });
    await sleep(LEASE_MS);
    expect(await b.reapExpired()).toBe(0);
    expect((await b.get(sid(1)))!.state).toBe('in_progress');
    // A stops cleanly (lease released): A again starts at once and marks its own leftovers
    // (B stops reaping first: its beat would otherwise race A's restart for them).
    b.stopLeases();
    await a.close();
    const again = await open({ instanceId: 'A' });
    await again.startLeases({ leaseMs: 600_000 }); // a lease this long would be waited on for minutes if it were still held
    expect(await again.markInterrupted()).toBe(1);
    expect((await again.get(sid(1)))!.state).toBe('interrupted');
  });

  it('close releases the lease: calls left in progress are reaped at once by a live instance', async () => {
    const a = await open({ instanceId: 'A' });
    const b = await open({ instanceId: 'B' });
    await a.startLeases({ leaseMs: 60_000 });
    await b.startLeases({ leaseMs: 60_000 });
    createStoreRecorder(a, sid(1), {}).started({ callSid: sid(1), streamSid: 'MZ1', audioMode: 'transcode', startedAt: new Date() });
    await a.close();
    expect(await b.reapExpired()).toBe(1);
    expect((await b.get(sid(1)))!.state).toBe('interrupted');
    // Its lease row is kept for a while, then forgotten once nothing of it is in progress.
    expect(await query('SELECT instance_id FROM $schema.instances ORDER BY 1')).toEqual([{ instance_id: 'A' }, { instance_id: 'B' }]);
    await query("UPDATE $schema.instances SET expires_at = now() - interval '2 hours' WHERE instance_id = 'A'");
    expect(await b.reapExpired()).toBe(0);
    expect(await query('SELECT instance_id FROM $schema.instances')).toEqual([{ instance_id: 'B' }]);
  });
});

describe.skipIf(!pgOk)('PostgresCallStore: readers', () => {
  it('GET /calls and /calls/:sid answer from an instance that did not carry the call, mid-call and after', async () => {
    const a = await open({ instanceId: 'A' });
    const b = await open({ instanceId: 'B' });
    const rec = createStoreRecorder(a, sid(7), { From: '+15550000007' });
    rec.started({ callSid: sid(7), streamSid: 'MZ7', audioMode: 'transcode', startedAt: new Date() });
    rec.transcript({ atMs: 5, speaker: 'caller', text: 'hello' });
    await a.flush();
    const h = createAdminHandler(b, 'tok');
    const ask = (path: string, query = '') => h({ method: 'GET', path, query: new URLSearchParams(query), headers: { authorization: 'Bearer tok' } });
    expect(await ask(`/calls/${sid(7)}`)).toMatchObject({ status: 200, body: { state: 'in_progress', transcript: [{ text: 'hello' }] } });
    rec.ended(end());
    await a.flush();
    expect(await ask('/calls', 'limit=5')).toMatchObject({ status: 200, body: { calls: [{ callSid: sid(7), state: 'completed', outcome: 'no_check' }] } });
    expect(await ask(`/calls/${sid(8)}`)).toMatchObject({ status: 404 });
  });

  it("a delayed flush from the webhook's instance after the stream's instance completed the call does not reset it", async () => {
    const proxy = await startTcpProxy({ host: '127.0.0.1', port: Number(new URL(PG_URL).port || 5432) });
    proxies.push(proxy);
    const a = await open({ url: proxy.url(PG_URL), instanceId: 'A', flushMs: 50, writeTimeoutMs: 300, connectTimeoutMs: 1000 });
    const b = await open({ instanceId: 'B' });
    a.answered(sid(5), { from: '+15550000005', to: '+15550000006' });
    await a.flush();
    proxy.setMode('blackhole');
    a.answered(sid(5), { from: '+15550000005', to: '+15550000006' }); // Twilio retried the webhook; A's write of it is held up
    await until(() => !a.stats().reachable, { ...PG_WAIT, what: 'a failed flush on A' });
    expect(await b.claim(sid(5), 'B')).toBe(true);
    const rec = streamRecorder(b, sid(5));
    rec.started({ callSid: sid(5), streamSid: 'MZ5', audioMode: 'transcode', startedAt: new Date() });
    rec.usage({ inputTextTokens: 9, inputAudioTokens: 0, inputCachedTokens: 0, outputTextTokens: 0, outputAudioTokens: 0 });
    rec.ended(end());
    await b.flush();
    proxy.setMode('pass'); // A's retried flush lands now
    await until(async () => {
      await a.flush();
      return a.stats().reachable;
    }, { ...PG_WAIT, what: "A's retry written" });
    const [row] = await query<{ instance_id: string; state: string; started_at: Date | null; ended_at: Date | null }>(
      'SELECT instance_id, state, started_at, ended_at FROM $schema.calls WHERE call_sid = $1',
      [sid(5)],
    );
    expect(row).toMatchObject({ instance_id: 'B', state: 'completed' });
    expect(row!.started_at).not.toBeNull();
    expect(row!.ended_at).not.toBeNull();
    const r = (await b.get(sid(5)))!;
    expect(r).toMatchObject({ state: 'completed', streamSid: 'MZ5', from: '+15550000005', to: '+15550000006', endReason: 'caller_hangup' });
    expect(r.usage.inputTextTokens).toBe(9);
  });

  it('webhook on one instance, stream on another: one record, owned by the instance that carries the stream', async () => {
    const a = await open({ instanceId: 'A' });
    const b = await open({ instanceId: 'B' });
    await a.startLeases({ leaseMs: 60_000 });
    await b.startLeases({ leaseMs: 60_000 });
    a.answered(sid(9), { from: '+15550000009', to: '+15550000010' });
    await a.flush();
    const rec = createStoreRecorder(b, sid(9), {}); // B gets the stream; it never saw the webhook's From/To
    rec.started({ callSid: sid(9), streamSid: 'MZ9', audioMode: 'transcode', startedAt: new Date() });
    rec.transcript({ atMs: 5, speaker: 'caller', text: 'hi' });
    await b.flush();
    expect(await query('SELECT instance_id FROM $schema.calls WHERE call_sid = $1', [sid(9)])).toEqual([{ instance_id: 'B' }]);
    await a.close(); // A goes away: the call is B's, so nobody reaps it
    expect(await b.reapExpired()).toBe(0);
    rec.ended(end());
    const r = (await b.get(sid(9)))!;
    expect(r).toMatchObject({ from: '+15550000009', to: '+15550000010', streamSid: 'MZ9', state: 'completed', transcript: [{ text: 'hi' }] });
    expect(r.answeredAt).not.toBeNull();
  });
});
