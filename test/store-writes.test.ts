/**
 * What only the SQLite store has to prove (the CallStore contract, for both
 * stores, is store-contract.test.ts): nothing on the call path, only what is
 * new on each flush, the flush timer, failed flushes retried, old (schema 1)
 * files still readable, finished calls let go from memory, and the driver.
 */
import { statusCallback } from './helpers/webhooks.js';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../src/log.js';
import { sealV1ForTests } from '../src/store/crypto.js';
import { createStoreRecorder } from '../src/store/recorder.js';
import { FLUSH_MS, SqliteCallStore } from '../src/store/sqlite.js';
import { openSqlite, sqliteDriver } from '../src/store/sqlite-driver.js';
import { sleep } from './helpers/until.js';
import { ACCOUNT, endInfo, prices, SID } from './helpers/store.js';

const end = (reason = 'caller_hangup') => endInfo(new Date(), reason);
const OTHER = 'CA000000000000000000000000000000ff';
const tick = () => new Promise<void>((r) => setImmediate(r));
const liveCount = (s: SqliteCallStore) => (s as unknown as { live: Map<string, unknown> }).live.size;

let dir: string;
let path: string;
const opened: SqliteCallStore[] = [];
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'callbridge-store-w-'));
  path = join(dir, 'calls.db');
});
afterEach(() => {
  vi.useRealTimers();
  for (const s of opened.splice(0)) s.close();
  rmSync(dir, { recursive: true, force: true });
});
const open = (opts: { key?: Buffer; log?: pino.Logger } = {}) => {
  const s = new SqliteCallStore({ path, prices, log: opts.log ?? silentLogger, transcriptKey: opts.key });
  opened.push(s);
  return s;
};

describe('SqliteCallStore writes', () => {
  it('the call path only queues: nothing reaches the file until the next event-loop turn or timer', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] }); // the flush timer fires only when told
    const store = open();
    const raw = openSqlite(path, { readOnly: true });
    const rows = () => (raw.prepare('SELECT count(*) AS n FROM calls').get() as { n: number }).n;
    const entries = () => (raw.prepare('SELECT count(*) AS n FROM call_entries').get() as { n: number }).n;
    store.answered(SID, { from: '+15550000001' });
    store.started(SID, { streamSid: 'MZ', audioMode: 'transcode', startedAt: new Date() });
    store.appendTranscript(SID, { atMs: 5, speaker: 'caller', text: 'hi' });
    expect(rows()).toBe(0);
    await tick();
    expect(rows()).toBe(1); // start: written on the next turn
    expect(entries()).toBe(1); // queued entries ride along with any flush
    store.appendTranscript(SID, { atMs: 9, speaker: 'assistant', text: 'hello' });
    await tick();
    expect(entries()).toBe(1); // a transcript line alone waits for the timer
    vi.advanceTimersByTime(FLUSH_MS);
    expect(entries()).toBe(2);
    raw.close();
  });

  it('flushes mid-call entries on its timer (another connection sees them)', async () => {
    const store = open();
    const rec = createStoreRecorder(store, SID, {});
    rec.started({ callSid: SID, streamSid: 'MZ1', audioMode: 'passthrough', startedAt: new Date() });
    await tick();
    rec.transcript({ atMs: 10, speaker: 'caller', text: 'hello' });
    const reader = open();
    await tick();
    expect(reader.get(SID)!.transcript).toHaveLength(0); // waits for the timer, not the next turn
    await sleep(600);
    expect(reader.get(SID)!.transcript).toHaveLength(1);
  });

  it('a flush writes only what is new: the header row is not rewritten for a transcript line', () => {
    const store = open();
    store.started(SID, { streamSid: 'MZ', audioMode: 'transcode', startedAt: new Date() });
    for (let i = 0; i < 500; i++) store.appendTranscript(SID, { atMs: i * 100, speaker: i % 2 ? 'caller' : 'assistant', text: `line ${i}` });
    store.flush();
    const raw = openSqlite(path, { readOnly: true });
    const header = () => raw.prepare('SELECT updated_at, transcript FROM calls WHERE call_sid = ?').get(SID) as { updated_at: string; transcript: string };
    const before = header();
    store.appendTranscript(SID, { atMs: 60_000, speaker: 'caller', text: 'one more' });
    store.flush();
    expect(header()).toEqual(before); // untouched, and no transcript blob in the row
    expect(before.transcript).toBe('[]');
    expect((raw.prepare('SELECT count(*) AS n FROM call_entries WHERE call_sid = ?').get(SID) as { n: number }).n).toBe(501);
    raw.close();
    expect(store.get(SID)!.transcript).toHaveLength(501);
  });

  it('a failed flush keeps its work and the next one writes it', () => {
    const lines: string[] = [];
    const log = pino({ level: 'error' }, { write: (s: string) => lines.push(s) });
    const store = open({ log });
    store.started(SID, { streamSid: 'MZ', audioMode: 'transcode', startedAt: new Date() });
    store.flush();
    const admin = openSqlite(path);
    admin.exec("CREATE TRIGGER refuse BEFORE INSERT ON call_entries BEGIN SELECT RAISE(ABORT, 'disk is full'); END;");
    store.appendTranscript(SID, { atMs: 1, speaker: 'caller', text: 'kept through a failure' });
    store.addUsage(SID, { inputTextTokens: 1, inputAudioTokens: 2, inputCachedTokens: 0, outputTextTokens: 3, outputAudioTokens: 4 });
    expect(() => store.flush()).not.toThrow();
    expect(lines.join('')).toMatch(/flush failed/);
    expect(lines.join('')).not.toContain('kept through a failure');
    admin.exec('DROP TRIGGER refuse');
    admin.close();
    store.flush();
    const r = open().get(SID)!;
    expect(r.transcript.map((l) => l.text)).toEqual(['kept through a failure']);
    expect(r.usage.outputAudioTokens).toBe(4);
  });

  it('only calls in progress stay in memory', async () => {
    const store = open();
    const cb = (sid: string, seq: number, status: string) =>
      store.recordStatus(statusCallback({ CallSid: sid, AccountSid: ACCOUNT, CallStatus: status, SequenceNumber: String(seq) }));
    store.answered(SID, {});
    store.started(SID, { streamSid: 'MZ', audioMode: 'transcode', startedAt: new Date() });
    cb(OTHER, 0, 'ringing'); // a call this process never answered
    await tick();
    expect(liveCount(store)).toBe(1);
    store.ended(SID, end());
    cb(SID, 3, 'completed');
    await tick();
    expect(liveCount(store)).toBe(0);
    cb(SID, 3, 'completed'); // a retried callback of a finished call
    store.appendTranscript(SID, { atMs: 1, speaker: 'caller', text: 'late' });
    store.flush();
    expect(liveCount(store)).toBe(0);
    expect(store.get(SID)!.transcript).toHaveLength(1);
    expect(store.get(OTHER)!.status).toBe('ringing');
  });

  it('reads and extends a schema-1 file (lists kept in the row, sealed)', () => {
    const key = Buffer.alloc(32, 3);
    const v1 = openSqlite(path);
    v1.exec(`CREATE TABLE calls (
      call_sid TEXT PRIMARY KEY, stream_sid TEXT, from_number TEXT, to_number TEXT, started_at TEXT, answered_at TEXT,
      ended_at TEXT, duration_ms INTEGER, status TEXT, status_events TEXT NOT NULL DEFAULT '[]', end_reason TEXT,
      outcome TEXT, audio_mode TEXT, state TEXT NOT NULL DEFAULT 'in_progress', transcript TEXT NOT NULL DEFAULT '[]',
      tool_calls TEXT NOT NULL DEFAULT '[]', turn_latencies TEXT NOT NULL DEFAULT '[]', relay TEXT,
      protocol_errors INTEGER NOT NULL DEFAULT 0, usage TEXT NOT NULL DEFAULT '{}', cost_usd REAL NOT NULL DEFAULT 0,
      created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
      CREATE INDEX calls_by_time ON calls (coalesce(started_at, answered_at, created_at) DESC);
      CREATE INDEX calls_in_progress ON calls (state) WHERE state = 'in_progress';
      PRAGMA user_version = 1;`);
    v1.prepare(`INSERT INTO calls (call_sid, started_at, state, transcript, tool_calls, turn_latencies, created_at, updated_at)
                VALUES (?, '2026-11-01T10:00:00.000Z', 'completed', ?, ?, ?, 'x', 'x')`).run(
      SID,
      sealV1ForTests(JSON.stringify([{ atMs: 10, speaker: 'assistant', text: 'old greeting' }]), key),
      sealV1ForTests(JSON.stringify([{ callId: 'c', name: 'check_eligibility', args: '{}', ok: true, output: 'o', record: null, startedAtMs: 20, durationMs: 3 }]), key),
      JSON.stringify([{ turn: 1, latencyMs: 800 }]),
    );
    v1.close();
    const store = open({ key });
    store.appendTranscript(SID, { atMs: 30, speaker: 'caller', text: 'late line' });
    const r = store.get(SID)!;
    expect(r.transcript.map((l) => l.text)).toEqual(['old greeting', 'late line']);
    expect(r.toolCalls).toHaveLength(1);
    expect(r.turnLatencies).toEqual([{ turn: 1, latencyMs: 800 }]);
    const raw = openSqlite(path, { readOnly: true });
    expect(raw.pragma('user_version')).toBe(7);
    raw.close();
  });
});

describe('SQLite driver (the one this Node runs)', () => {
  it('runs on node:sqlite where this Node has it without a flag (22.13+, 23.4+), on better-sqlite3 elsewhere', () => {
    const [major, minor] = process.versions.node.split('.').map(Number) as [number, number];
    const builtIn = major >= 24 || (major === 22 && minor >= 13) || (major === 23 && minor >= 4);
    const d = sqliteDriver();
    expect(d.name).toBe(builtIn ? 'node:sqlite' : 'better-sqlite3');
    expect(d.sqliteVersion).toMatch(/^3\.\d+\.\d+$/);
  });

  it('binds positional and named parameters, and reads pragmas with or without a result row', () => {
    const db = openSqlite(path);
    expect(db.pragma('journal_mode = WAL')).toBe('wal');
    expect(db.pragma('synchronous = NORMAL')).toBeUndefined(); // yields no row
    expect(db.pragma('synchronous')).toBe(1);
    db.exec('CREATE TABLE t (a INTEGER, b TEXT, c BLOB)');
    expect(db.prepare('INSERT INTO t VALUES (?, ?, ?)').run(1, 'one', null).changes).toBe(1);
    db.prepare('INSERT INTO t VALUES (@a, @b, @c)').run({ a: 2, b: 'two', c: Buffer.from([7]) });
    expect(db.prepare('SELECT a, b FROM t WHERE a = ?').get(2)).toEqual({ a: 2, b: 'two' });
    expect(db.prepare('SELECT a FROM t WHERE a = ?').get(3)).toBeUndefined();
    expect(db.prepare('SELECT b FROM t ORDER BY a').all()).toEqual([{ b: 'one' }, { b: 'two' }]);
    db.close();
  });

  it('a transaction is all or nothing: a throw inside rolls back what it wrote, and the error comes out', () => {
    const db = openSqlite(path);
    db.exec('CREATE TABLE t (a INTEGER PRIMARY KEY)');
    db.transaction(() => db.prepare('INSERT INTO t VALUES (?)').run(1));
    const insert = db.prepare('INSERT INTO t VALUES (?)');
    expect(() =>
      db.transaction(() => {
        insert.run(2);
        insert.run(1); // duplicate key
      }),
    ).toThrow(/UNIQUE/);
    expect(db.prepare('SELECT a FROM t').all()).toEqual([{ a: 1 }]);
    db.transaction(() => insert.run(3)); // the connection is usable again
    expect(db.prepare('SELECT count(*) AS n FROM t').get()).toEqual({ n: 2 });
    db.close();
  });

  it('fileMustExist and readOnly refuse to create a missing file', () => {
    const missing = join(dir, 'missing.db');
    expect(() => openSqlite(missing, { fileMustExist: true })).toThrow(/unable to open database file/);
    expect(() => openSqlite(missing, { readOnly: true })).toThrow(/unable to open database file/);
    expect(existsSync(missing)).toBe(false);
  });
});
