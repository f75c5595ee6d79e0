/**
 * Retention (src/store/retention.ts) and what it needs of the stores
 * (setRecording, expiredCalls, deleteCalls, the lease), run on both stores:
 * SQLite (a real file) and PostgreSQL (the real local server, a schema per
 * test). Recordings live in a memory RecordingStorage that can be told to
 * refuse deletes. DELETE /calls/:sid goes through the admin handler.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createAdminHandler } from '../src/admin/calls-api.js';
import type { AdminRequest } from '../src/call/ports.js';
import { silentLogger } from '../src/log.js';
import type { RecordingInfo } from '../src/recording/types.js';
import { CallInProgress, createRetention, deleteCall, RecordingDeleteFailed, RETENTION_LEASE, sweepPrefixes } from '../src/store/retention.js';
import type { CallStore } from '../src/store/types.js';
import { MemoryStorage } from './helpers/memory-storage.js';
import { postgresAvailable } from './helpers/postgres.js';
import { postgresKind, sqliteKind, type OpenOptions, type StoreKind } from './helpers/store-kinds.js';
import { ACCOUNT, endInfo } from './helpers/store.js';
import { sleep } from './helpers/until.js';
import { statusCallback } from './helpers/webhooks.js';

const pgOk = await postgresAvailable();
const kinds = [sqliteKind(), ...(pgOk ? [postgresKind()] : [])];

const DAY_MS = 86_400_000;
/** The purgers' clock: retention 30 days puts the cutoff at 2026-11-01T12:00:00Z. */
const NOW = new Date('2026-12-01T12:00:00.000Z');
const CUTOFF = new Date(NOW.getTime() - 30 * DAY_MS);
const at = (msFromCutoff: number) => new Date(CUTOFF.getTime() + msFromCutoff);
const sid = (n: number) => `CA${n.toString(16).padStart(32, '0')}`;
const dayFolder = (d: Date) => d.toISOString().slice(0, 10).replaceAll('-', '/');
const objectOf = (callSid: string, startedAt: Date) => `${dayFolder(startedAt)}/${callSid}.cbrec`;

const recording = (object: string | null, extra: Partial<RecordingInfo> = {}): RecordingInfo => ({
  status: object ? 'complete' : 'opted_out',
  object,
  storage: 'dir',
  keyId: object ? 'k1' : null,
  durationMs: object ? 5000 : 0,
  bytes: object ? 3 : 0,
  ...extra,
});

/** A whole call: header, every kind of entry, a status callback, a transfer decision, four claims, and (unless `recorded: false`) a recording. */
async function addCall(store: CallStore, storage: MemoryStorage, callSid: string, startedAt: Date, o: { recorded?: boolean; end?: boolean } = {}): Promise<string | null> {
  store.answered(callSid, { from: '+15550001111', to: '+15550002222' });
  store.started(callSid, { streamSid: `MZ${callSid.slice(2)}`, audioMode: 'transcode', startedAt });
  store.appendTranscript(callSid, { atMs: 100, speaker: 'caller', text: 'My member ID is MB123456.' });
  store.appendToolCall(callSid, { callId: 'c1', name: 'check_eligibility', args: '{"member_id":"MB123456"}', ok: true, output: '{}', record: null, startedAtMs: 200, durationMs: 5 });
  store.appendTurnLatency(callSid, { turn: 1, latencyMs: 600 });
  store.appendEvent(callSid, { atMs: 300, type: 'response_failed', detail: 'rate_limit_exceeded' });
  store.recordStatus(statusCallback({ CallSid: callSid, AccountSid: ACCOUNT, CallStatus: 'completed', SequenceNumber: '3', CallDuration: '5' }));
  if (o.end !== false) store.ended(callSid, endInfo(new Date(startedAt.getTime() + 5000)));
  let object: string | null = null;
  if (o.recorded !== false) {
    object = objectOf(callSid, startedAt);
    storage.put(object);
    store.setRecording(callSid, recording(object));
  }
  await store.saveTransfer(callSid, { agent: 'front-desk', target: 'billing', requestedBy: 'model', leg: 1, at: startedAt.toISOString() });
  for (const key of [callSid, `${callSid}/2`, `action:${callSid}/1`, `dial:${callSid}/1`]) expect(await store.claim(key, 'i1')).toBe(true);
  await store.flush();
  return object;
}

/** How many rows of every table the call still has (calls, entries, status events, transfer, claims). */
async function rowsOf(kind: StoreKind, callSid: string): Promise<Record<string, number>> {
  const count = async (sql: string) => Number((await kind.raw(sql))[0]!.n);
  const out: Record<string, number> = {
    calls: await count(`SELECT count(*) AS n FROM calls WHERE call_sid = '${callSid}'`),
    entries: await count(`SELECT count(*) AS n FROM call_entries WHERE call_sid = '${callSid}'`),
    transfers: await count(`SELECT count(*) AS n FROM call_transfers WHERE call_sid = '${callSid}'`),
    claims: await count(`SELECT count(*) AS n FROM call_claims WHERE call_sid IN ('${callSid}', '${callSid}/2', 'action:${callSid}/1', 'dial:${callSid}/1')`),
  };
  if (kind.name === 'postgres') out.statusEvents = await count(`SELECT count(*) AS n FROM call_status_events WHERE call_sid = '${callSid}'`);
  return out;
}

const ALL_ROWS = (kind: StoreKind) => ({ calls: 1, entries: 4, transfers: 1, claims: 4, ...(kind.name === 'postgres' ? { statusEvents: 1 } : {}) });
const NO_ROWS = (kind: StoreKind) => ({ calls: 0, entries: 0, transfers: 0, claims: 0, ...(kind.name === 'postgres' ? { statusEvents: 0 } : {}) });

describe.each(kinds)('retention on $name', (kind) => {
  const opened: CallStore[] = [];
  let n = 0;
  const open = async (o: OpenOptions = {}) => {
    const s = await kind.open({ identity: `i${++n}`, ...o });
    opened.push(s);
    return s;
  };
  let storage: MemoryStorage;
  const retention = (store: CallStore, o: Partial<Parameters<typeof createRetention>[0]> = {}) =>
    createRetention({ store, recordings: storage, days: 30, holder: 'h1', log: silentLogger, pauseMs: 0, now: () => NOW, ...o });

  beforeEach(() => {
    kind.setup();
    storage = new MemoryStorage();
  });
  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close();
    await kind.teardown();
  });

  it('setRecording round trip: kept plain in the row, read back by get (another store too), replaced by a later one, kept when the call ends after it', async () => {
    const store = await open();
    const s = sid(1);
    store.started(s, { streamSid: 'MZ1', audioMode: 'transcode', startedAt: at(0) });
    expect((await store.get(s))!.recording).toBeNull();
    const first = recording('2026/11/01/x.cbrec', { status: 'incomplete', reason: 'storage too slow' });
    store.setRecording(s, first);
    await store.flush();
    expect((await store.get(s))!.recording).toEqual(first);
    const second = recording(objectOf(s, at(0)));
    store.setRecording(s, second);
    store.ended(s, endInfo(at(5000)));
    await store.flush();
    const other = await open();
    expect((await other.get(s))!.recording).toEqual(second);
    expect((await other.get(s))!.state).toBe('completed');
    expect(await kind.raw(`SELECT recording_object FROM calls WHERE call_sid = '${s}'`)).toEqual([{ recording_object: second.object }]);
    // An opted-out call: a recording without an object.
    store.setRecording(s, recording(null));
    await store.flush();
    expect((await other.get(s))!.recording).toEqual(recording(null));
    expect(await kind.raw(`SELECT recording_object FROM calls WHERE call_sid = '${s}'`)).toEqual([{ recording_object: null }]);
  });

  it('purges exactly the calls begun before the cutoff, with every row kept for them and their recordings; one just inside stays', async () => {
    const store = await open();
    const old = [sid(1), sid(2), sid(3)];
    const objects: (string | null)[] = [];
    objects.push(await addCall(store, storage, old[0]!, at(-40 * DAY_MS)));
    objects.push(await addCall(store, storage, old[1]!, at(-1000)));
    objects.push(await addCall(store, storage, old[2]!, at(-1), { recorded: false }));
    const inside = sid(4);
    const insideObject = await addCall(store, storage, inside, at(1));
    // An abandoned row (its process died mid-call) begun before the cutoff goes too.
    const abandoned = sid(5);
    await addCall(store, storage, abandoned, at(-2 * DAY_MS), { end: false, recorded: false });

    const r = await retention(store).runOnce();
    expect(r).toEqual({ calls: 4, recordings: 2, recordingFailures: 0, sweptObjects: 0 });
    for (const s of [...old, abandoned]) expect(await rowsOf(kind, s)).toEqual(NO_ROWS(kind));
    expect(await rowsOf(kind, inside)).toEqual(ALL_ROWS(kind));
    expect([...storage.objects.keys()]).toEqual([insideObject]);
    expect(storage.deleted.sort()).toEqual(objects.filter((o) => o !== null).sort());
    expect(await store.get(old[0]!)).toBeUndefined();
    expect((await store.list()).map((c) => c.callSid)).toEqual([inside]);
    // Nothing left to do.
    expect(await retention(store).runOnce()).toEqual({ calls: 0, recordings: 0, recordingFailures: 0, sweptObjects: 0 });
  });

  it('a recording that fails to delete keeps its call (all its rows) for the next run, which takes it', async () => {
    const store = await open();
    const a = sid(1);
    const b = sid(2);
    const objA = (await addCall(store, storage, a, at(-3 * DAY_MS)))!;
    await addCall(store, storage, b, at(-2 * DAY_MS));
    storage.failDelete.add(objA);
    expect(await retention(store).runOnce()).toEqual({ calls: 1, recordings: 1, recordingFailures: 1, sweptObjects: 0 });
    expect(await rowsOf(kind, a)).toEqual(ALL_ROWS(kind));
    expect(await rowsOf(kind, b)).toEqual(NO_ROWS(kind));
    expect(storage.objects.has(objA)).toBe(true);
    // Its day folder lies before the cutoff, but the sweep leaves a name that failed in this run alone.
    expect(storage.deleted.filter((x) => x === objA)).toHaveLength(1);
    storage.failDelete.clear();
    expect(await retention(store).runOnce()).toEqual({ calls: 1, recordings: 1, recordingFailures: 0, sweptObjects: 0 });
    expect(await rowsOf(kind, a)).toEqual(NO_ROWS(kind));
    expect(storage.objects.size).toBe(0);
  });

  it('a dry run counts what would go (calls, recordings, orphans) and deletes nothing', async () => {
    const store = await open();
    for (let i = 1; i <= 4; i++) await addCall(store, storage, sid(i), at(-i * DAY_MS), { recorded: i % 2 === 0 });
    await addCall(store, storage, sid(9), at(DAY_MS));
    storage.put('2026/10/02/CAffffffffffffffffffffffffffffffff.cbrec'); // an orphan before the cutoff
    const objectsBefore = [...storage.objects.keys()].sort();
    const r = await retention(store).runOnce({ dryRun: true });
    expect(r).toEqual({ calls: 4, recordings: 2, recordingFailures: 0, sweptObjects: 1 });
    expect(storage.deleted).toEqual([]);
    expect([...storage.objects.keys()].sort()).toEqual(objectsBefore);
    for (let i = 1; i <= 4; i++) expect(await rowsOf(kind, sid(i))).toEqual(ALL_ROWS(kind));
    // The real run then does what the dry run said.
    expect(await retention(store).runOnce()).toEqual({ calls: 4, recordings: 2, recordingFailures: 0, sweptObjects: 1 });
  });

  it('works in batches: batch=3 over 10 calls deletes 3, 3, 3, 1, oldest first', async () => {
    const store = await open();
    for (let i = 1; i <= 10; i++) await addCall(store, storage, sid(i), at(-i * 60_000), { recorded: i % 3 !== 0 });
    const batches: string[][] = [];
    const watched = new Proxy(store, {
      get(t, p) {
        if (p === 'deleteCalls') return (sids: readonly string[]) => (batches.push([...sids]), t.deleteCalls(sids));
        const v = Reflect.get(t, p) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
      },
    });
    const r = await retention(watched, { batch: 3 }).runOnce();
    expect(r).toEqual({ calls: 10, recordings: 7, recordingFailures: 0, sweptObjects: 0 });
    expect(batches.map((b) => b.length)).toEqual([3, 3, 3, 1]);
    expect(batches.flat()).toEqual([10, 9, 8, 7, 6, 5, 4, 3, 2, 1].map(sid));
    expect(storage.objects.size).toBe(0);
  });

  it('two purgers on the same storage at once: the lease lets one run, the other is skipped (lease_held); nothing is deleted twice', async () => {
    const a = await open();
    const b = await open();
    for (let i = 1; i <= 10; i++) await addCall(a, storage, sid(i), at(-i * 60_000));
    const [ra, rb] = await Promise.all([retention(a, { holder: 'a', batch: 3 }).runOnce(), retention(b, { holder: 'b', batch: 3 }).runOnce()]);
    const results = [ra, rb];
    expect(results.filter((r) => r.skipped === 'lease_held')).toHaveLength(1);
    const ran = results.find((r) => r.skipped === undefined)!;
    expect(ran).toEqual({ calls: 10, recordings: 10, recordingFailures: 0, sweptObjects: 0 });
    expect(new Set(storage.deleted).size).toBe(storage.deleted.length);
    expect(storage.deleted).toHaveLength(10);
    expect(Number((await kind.raw('SELECT count(*) AS n FROM calls'))[0]!.n)).toBe(0);
    // The lease was given back: the other purger runs now (nothing left).
    expect(await retention(b, { holder: 'b' }).runOnce()).toEqual({ calls: 0, recordings: 0, recordingFailures: 0, sweptObjects: 0 });
  });

  it('a lease is one holder\'s until it expires (on the database clock): then another takes over', async () => {
    const a = await open();
    const b = await open();
    await addCall(a, storage, sid(1), at(-DAY_MS));
    // A purger that died holding the lease.
    expect(await a.acquireLease(RETENTION_LEASE, 'dead', 400)).toBe(true);
    expect(await a.acquireLease(RETENTION_LEASE, 'dead', 400)).toBe(true); // its own: renewed
    expect(await b.acquireLease(RETENTION_LEASE, 'b', 400)).toBe(false);
    await b.releaseLease(RETENTION_LEASE, 'b'); // not b's: nothing happens
    expect(await retention(b, { holder: 'b' }).runOnce()).toEqual({ calls: 0, recordings: 0, recordingFailures: 0, sweptObjects: 0, skipped: 'lease_held' });
    expect(await rowsOf(kind, sid(1))).toEqual(ALL_ROWS(kind));
    await sleep(500);
    expect(await retention(b, { holder: 'b' }).runOnce()).toEqual({ calls: 1, recordings: 1, recordingFailures: 0, sweptObjects: 0 });
    // Released at the end of the run: anyone may take it.
    expect(await a.acquireLease(RETENTION_LEASE, 'a', 60_000)).toBe(true);
    await a.releaseLease(RETENTION_LEASE, 'a');
    expect(await b.acquireLease(RETENTION_LEASE, 'b', 60_000)).toBe(true);
  });

  it('sweeps orphaned objects of day folders wholly before the cutoff, and nothing else', async () => {
    const store = await open();
    const kept = await addCall(store, storage, sid(1), at(DAY_MS));
    const orphans = ['2026/10/31/CA0000000000000000000000000000000a.cbrec', '2025/03/09/CA0000000000000000000000000000000b-2.cbrec', '2026/01/15/CA0000000000000000000000000000000c.cbrec'];
    const stay = [
      '2026/11/01/CA0000000000000000000000000000000d.cbrec', // the cutoff's own day (it ends after the cutoff)
      '2026/11/20/CA0000000000000000000000000000000e.cbrec',
      'elsewhere/CA0000000000000000000000000000000f.cbrec', // not a day folder
      '2026/10/31/nested/CA00000000000000000000000000000010.cbrec',
    ];
    for (const o of [...orphans, ...stay]) storage.put(o);
    expect(await retention(store).runOnce()).toEqual({ calls: 0, recordings: 0, recordingFailures: 0, sweptObjects: 3 });
    expect([...storage.objects.keys()].sort()).toEqual([kept!, ...stay].sort());
  });

  it('deleteCall: the recording, then every row; false for no such call; a failing recording delete rejects and keeps the call; a call in progress is refused', async () => {
    const store = await open();
    const a = sid(1);
    const objA = (await addCall(store, storage, a, at(DAY_MS)))!;
    expect(await deleteCall(store, storage, sid(99))).toBe(false);
    storage.failDelete.add(objA);
    await expect(deleteCall(store, storage, a)).rejects.toBeInstanceOf(RecordingDeleteFailed);
    expect(await rowsOf(kind, a)).toEqual(ALL_ROWS(kind));
    await expect(deleteCall(store, undefined, a)).rejects.toThrow(/no recording storage is configured/);
    storage.failDelete.clear();
    expect(await deleteCall(store, storage, a)).toBe(true);
    expect(await rowsOf(kind, a)).toEqual(NO_ROWS(kind));
    expect(storage.objects.has(objA)).toBe(false);
    expect(await store.get(a)).toBeUndefined();

    const live = sid(2);
    store.started(live, { streamSid: 'MZ2', audioMode: 'transcode', startedAt: new Date() });
    await expect(deleteCall(store, storage, live)).rejects.toBeInstanceOf(CallInProgress);
    expect((await store.get(live))!.state).toBe('in_progress');
  });

  it('a call this process still buffers is not written back after its rows are deleted', async () => {
    const store = await open();
    const s = sid(1);
    store.started(s, { streamSid: 'MZ1', audioMode: 'transcode', startedAt: at(-DAY_MS) });
    await store.flush();
    store.appendTranscript(s, { atMs: 1, speaker: 'caller', text: 'queued, not yet written' });
    store.addUsage(s, { inputTextTokens: 1, inputAudioTokens: 0, inputCachedTokens: 0, outputTextTokens: 0, outputAudioTokens: 0 });
    expect(await store.deleteCalls([s])).toBe(1);
    await store.flush();
    expect(await rowsOf(kind, s)).toMatchObject({ calls: 0, entries: 0 });
  });

  it('DELETE /calls/:sid: 401 without the token, 404 for an unknown call, 200 then GET 404; 405 for DELETE /calls', async () => {
    const store = await open();
    const s = sid(1);
    const obj = (await addCall(store, storage, s, at(0)))!;
    const token = 'admin-token-0123456789';
    const h = createAdminHandler(store, token, { recordings: storage });
    const req = (method: string, path: string, auth: string | null = `Bearer ${token}`): AdminRequest => ({
      method,
      path,
      query: new URLSearchParams(),
      headers: auth === null ? {} : { authorization: auth },
    });
    expect((await h(req('DELETE', `/calls/${s}`, null))).status).toBe(401);
    expect((await h(req('DELETE', `/calls/${s}`, 'Bearer wrong'))).status).toBe(401);
    expect(await h(req('DELETE', `/calls/${sid(77)}`))).toEqual({ status: 404, body: { error: 'no such call' } });
    expect((await h(req('DELETE', '/calls'))).status).toBe(405);
    expect((await h(req('PUT', `/calls/${s}`))).status).toBe(405);
    expect((await h(req('GET', `/calls/${s}`))).status).toBe(200);
    storage.failDelete.add(obj);
    expect(await h(req('DELETE', `/calls/${s}`))).toMatchObject({ status: 503, body: { retryable: true } });
    expect((await h(req('GET', `/calls/${s}`))).status).toBe(200);
    storage.failDelete.clear();
    expect(await h(req('DELETE', `/calls/${s}`))).toEqual({ status: 200, body: { deleted: s } });
    expect((await h(req('GET', `/calls/${s}`))).status).toBe(404);
    expect(storage.objects.size).toBe(0);
  });
});

describe('retention without a store (options, scheduling, prefixes)', () => {
  it('days = 0 is disabled (nothing asked of the store), unless an age is given', async () => {
    const calls: string[] = [];
    const store = new Proxy({} as CallStore, {
      get: (_t, p) => async () => {
        calls.push(String(p));
        return p === 'acquireLease' ? true : p === 'expiredCalls' ? [] : undefined;
      },
    });
    const r = createRetention({ store, days: 0, holder: 'h', log: silentLogger });
    expect(await r.runOnce()).toEqual({ calls: 0, recordings: 0, recordingFailures: 0, sweptObjects: 0, skipped: 'disabled' });
    expect(calls).toEqual([]);
    expect(await r.runOnce({ olderThanMs: 1000 })).toEqual({ calls: 0, recordings: 0, recordingFailures: 0, sweptObjects: 0 });
    expect(calls).toEqual(['acquireLease', 'acquireLease', 'expiredCalls', 'releaseLease']);
    await expect(r.runOnce({ olderThanMs: -1 })).rejects.toThrow(RangeError);
    expect(() => createRetention({ store, days: 30, holder: 'h', log: silentLogger, batch: 0 })).toThrow(RangeError);
  });

  it('start() runs soon and again every interval; stop() ends it; a failing run is logged, never thrown', async () => {
    let runs = 0;
    let leaseFailed = false;
    const store = new Proxy({} as CallStore, {
      get: (_t, p) => async () => {
        if (p === 'acquireLease') {
          if (runs === 1 && !leaseFailed) {
            leaseFailed = true;
            throw new Error('database away');
          }
          return true;
        }
        if (p === 'expiredCalls') {
          runs++;
          if (runs === 1) throw new Error('database away');
          return [];
        }
        return undefined;
      },
    });
    const errors: unknown[] = [];
    const log = { ...silentLogger, info: () => {}, warn: () => {}, error: (o: unknown) => errors.push(o) } as unknown as typeof silentLogger;
    const r = createRetention({ store, days: 30, holder: 'h', log, pauseMs: 0 });
    r.start(20);
    for (let i = 0; i < 200 && runs < 3; i++) await sleep(10);
    await r.stop();
    const after = runs;
    expect(after).toBeGreaterThanOrEqual(3);
    expect(errors).toHaveLength(2); // the failed query, then the lease that could not be asked for
    expect(leaseFailed).toBe(true);
    await sleep(60);
    expect(runs).toBe(after);
  });

  it('sweep prefixes cover every day before the cutoff\'s day, by the widest prefixes, and no later day', () => {
    const p = sweepPrefixes(new Date('2026-03-03T10:00:00Z'));
    expect(p.slice(0, 4)).toEqual(['2026/03/01/', '2026/03/02/', '2026/01/', '2026/02/']);
    expect(p).toContain('2025/');
    expect(p).toContain('2016/');
    expect(p.some((x) => x.startsWith('2026/03/03') || x === '2026/')).toBe(false);
  });
});
