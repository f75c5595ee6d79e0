/**
 * The CallStore contract, run against both stores: SQLite (a real file) and
 * PostgreSQL (the real local server, a schema per test). Whatever a caller
 * can observe through the interface must be the same on both.
 */
import { statusCallback } from './helpers/webhooks.js';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../src/log.js';
import { estimateCostUsd } from '../src/store/cost.js';
import { DecryptError } from '../src/store/crypto.js';
import { PostgresCallStore } from '../src/store/postgres.js';
import { createStoreRecorder } from '../src/store/recorder.js';
import { SqliteCallStore } from '../src/store/sqlite.js';
import type { CallStore } from '../src/store/types.js';
import { adminSql, dropSchema, freshSchema, PG_URL, postgresAvailable } from './helpers/postgres.js';
import { ACCOUNT, endInfo, prices, SID } from './helpers/store.js';

const DONE = 'CA00000000000000000000000000000002';

interface Kind {
  name: string;
  setup(): void;
  teardown(): Promise<void>;
  /** A store on the shared storage; `identity` is the process it stands for (same identity = a restart). */
  open(o?: { key?: Buffer; identity?: string }): Promise<CallStore>;
  /** Everything the storage holds, as text: what someone with the disk or the database could read. */
  rawText(): Promise<string>;
}

function sqliteKind(): Kind {
  let dir = '';
  let path = '';
  return {
    name: 'sqlite',
    setup() {
      dir = mkdtempSync(join(tmpdir(), 'callbridge-contract-'));
      path = join(dir, 'calls.db');
    },
    async teardown() {
      rmSync(dir, { recursive: true, force: true });
    },
    async open(o = {}) {
      return new SqliteCallStore({ path, prices, log: silentLogger, transcriptKey: o.key });
    },
    async rawText() {
      const wal = existsSync(`${path}-wal`) ? readFileSync(`${path}-wal`) : Buffer.alloc(0);
      return Buffer.concat([readFileSync(path), wal]).toString('latin1');
    },
  };
}

function postgresKind(): Kind {
  let schema = '';
  let n = 0;
  return {
    name: 'postgres',
    setup() {
      schema = freshSchema();
    },
    async teardown() {
      await dropSchema(schema);
    },
    async open(o = {}) {
      return PostgresCallStore.open({ url: PG_URL, schema, prices, log: silentLogger, transcriptKey: o.key, instanceId: o.identity ?? `reader-${++n}` });
    },
    async rawText() {
      const sql = adminSql();
      try {
        const [r] = await sql.unsafe<{ t: string | null }[]>(
          `SELECT (SELECT string_agg(e::text, '|') FROM ${schema}.call_entries e) || (SELECT string_agg(c::text, '|') FROM ${schema}.calls c) AS t`,
        );
        return r?.t ?? '';
      } finally {
        await sql.end({ timeout: 2 });
      }
    },
  };
}

const pgOk = await postgresAvailable();

describe.each([sqliteKind(), ...(pgOk ? [postgresKind()] : [])])('CallStore contract: $name', (kind) => {
  const opened: CallStore[] = [];
  const open = async (o?: { key?: Buffer; identity?: string }) => {
    const s = await kind.open(o);
    opened.push(s);
    return s;
  };
  beforeEach(() => kind.setup());
  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close();
    await kind.teardown();
  });

  it('records a call through the recorder: answered at once, then started, transcript, tools, latency, events, usage, ended', async () => {
    const store = await open({ identity: 'a' });
    const other = await open();
    const rec = createStoreRecorder(store, SID, { From: '+15551230000', To: '+15559870000' });
    await store.flush();
    expect(await other.get(SID)).toMatchObject({ from: '+15551230000', to: '+15559870000', state: 'in_progress', startedAt: null });
    const t0 = new Date('2026-11-25T08:00:00.000Z');
    rec.started({ callSid: SID, streamSid: 'MZ1', audioMode: 'transcode', startedAt: t0, model: 'gpt-realtime' });
    rec.transcript({ atMs: 500, speaker: 'assistant', text: 'Thanks for calling.' });
    rec.transcript({ atMs: 4000, speaker: 'assistant', text: 'Can I get the Member ID?' });
    rec.transcript({ atMs: 2000, speaker: 'caller', text: 'Check my coverage.' }); // transcription finished after the reply
    rec.transcript({ atMs: 2000, speaker: 'dtmf', text: '1' });
    rec.toolCall({ callId: 'c1', name: 'check_eligibility', args: '{"member_id":"MB123456"}', ok: true, output: '{"status":"eligible"}', record: { status: 'eligible' }, startedAtMs: 9000, durationMs: 12 });
    rec.turnLatency({ turn: 1, latencyMs: 640 });
    rec.turnLatency({ turn: 2, latencyMs: 710 });
    rec.event({ atMs: 7000, type: 'response_failed', detail: 'rate_limit_exceeded' });
    rec.event({ atMs: 3000, type: 'model_reconnected' });
    rec.usage({ inputTextTokens: 100, inputAudioTokens: 1000, inputCachedTokens: 50, outputTextTokens: 20, outputAudioTokens: 2000 });
    rec.usage({ inputTextTokens: 10, inputAudioTokens: 0, inputCachedTokens: 0, outputTextTokens: 0, outputAudioTokens: 0 });
    rec.ended(endInfo(new Date(t0.getTime() + 65_000)));
    await store.close();

    const r = (await other.get(SID))!;
    expect(r).toMatchObject({
      callSid: SID,
      streamSid: 'MZ1',
      from: '+15551230000',
      to: '+15559870000',
      startedAt: '2026-11-25T08:00:00.000Z',
      endedAt: '2026-11-25T08:01:05.000Z',
      durationMs: 65_000,
      state: 'completed',
      endReason: 'caller_hangup',
      outcome: 'eligibility_checked',
      audioMode: 'transcode',
      model: 'gpt-realtime',
      protocolErrors: 0,
      status: null,
      statusEvents: [],
    });
    expect(r.answeredAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(r.transcript.map((l) => [l.atMs, l.speaker])).toEqual([[500, 'assistant'], [2000, 'caller'], [2000, 'dtmf'], [4000, 'assistant']]);
    expect(r.toolCalls).toEqual([{ callId: 'c1', name: 'check_eligibility', args: '{"member_id":"MB123456"}', ok: true, output: '{"status":"eligible"}', record: { status: 'eligible' }, startedAtMs: 9000, durationMs: 12 }]);
    expect(r.turnLatencies).toEqual([{ turn: 1, latencyMs: 640 }, { turn: 2, latencyMs: 710 }]);
    expect(r.events).toEqual([{ atMs: 3000, type: 'model_reconnected' }, { atMs: 7000, type: 'response_failed', detail: 'rate_limit_exceeded' }]);
    expect(r.usage).toMatchObject({ inputTextTokens: 110, inputAudioTokens: 1000, inputCachedTokens: 50, outputTextTokens: 20, outputAudioTokens: 2000 });
    expect(r.relay).toEqual(endInfo(new Date()).relay);
    expect(r.estimatedCostUsd).toBeCloseTo(estimateCostUsd(r.usage, 65_000, prices), 6);
    expect(r.estimatedCostUsd).toBeGreaterThan(0);
    const [summary] = await other.list();
    expect(summary).toEqual({
      callSid: SID, from: '+15551230000', to: '+15559870000', startedAt: '2026-11-25T08:00:00.000Z', durationMs: 65_000,
      status: null, state: 'completed', outcome: 'eligibility_checked', endReason: 'caller_hangup', estimatedCostUsd: r.estimatedCostUsd,
    });
  });

  it('outcome: eligibility checked, failed, not checked, or the call failed', async () => {
    const store = await open({ identity: 'a' });
    const sids = ['1', '2', '3', '4'].map((d) => `CA${d.padStart(32, '0')}`);
    const tool = (ok: boolean) => ({ callId: 'c', name: 'check_eligibility', args: '{}', ok, output: '', record: null, startedAtMs: 1, durationMs: 1 });
    sids.forEach((sid, i) => {
      const rec = createStoreRecorder(store, sid, {});
      rec.started({ callSid: sid, streamSid: 'MZ', audioMode: 'transcode', startedAt: new Date() });
      if (i === 0) rec.toolCall(tool(true));
      if (i === 1) rec.toolCall(tool(false));
      rec.ended(endInfo(new Date(), i === 3 ? 'model_unavailable' : 'caller_hangup'));
    });
    await store.flush();
    const reader = await open();
    const outcomes = [];
    for (const s of sids) outcomes.push((await reader.get(s))!.outcome);
    expect(outcomes).toEqual(['eligibility_checked', 'eligibility_failed', 'no_check', 'failed']);
  });

  it('an entry arriving after the call ended is still recorded, in order', async () => {
    const store = await open({ identity: 'a' });
    const rec = createStoreRecorder(store, SID, {});
    rec.started({ callSid: SID, streamSid: 'MZ', audioMode: 'transcode', startedAt: new Date() });
    rec.transcript({ atMs: 3000, speaker: 'assistant', text: 'Goodbye.' });
    rec.ended(endInfo(new Date()));
    await store.flush();
    rec.transcript({ atMs: 1000, speaker: 'caller', text: 'Thanks, bye.' }); // transcription finished late
    rec.usage({ inputTextTokens: 5, inputAudioTokens: 0, inputCachedTokens: 0, outputTextTokens: 0, outputAudioTokens: 0 });
    await store.flush();
    const reader = await open();
    const r = (await reader.get(SID))!;
    expect(r.state).toBe('completed');
    expect(r.transcript.map((l) => l.text)).toEqual(['Thanks, bye.', 'Goodbye.']);
    expect(r.usage.inputTextTokens).toBe(5);
    expect(r.streamSid).toBe('MZ'); // a late write does not blank what was written before
  });

  it('status callbacks: before the row exists, out of order, duplicated', async () => {
    const store = await open({ identity: 'a' });
    const cb = (seq: number, status: string, extra: Record<string, string> = {}) =>
      store.recordStatus(statusCallback({ CallSid: SID, AccountSid: ACCOUNT, CallStatus: status, SequenceNumber: String(seq), From: '+15550000001', To: '+15550000002', ...extra }));
    cb(2, 'completed', { CallDuration: '42' }); // arrives first
    expect((await store.get(SID))?.status).toBe('completed');
    cb(0, 'ringing');
    cb(1, 'in-progress');
    cb(1, 'in-progress'); // Twilio retried
    cb(0, 'ringing');
    await store.close();
    const reader = await open();
    const r = (await reader.get(SID))!;
    expect(r.statusEvents.map((e) => [e.sequenceNumber, e.status])).toEqual([[0, 'ringing'], [1, 'in-progress'], [2, 'completed']]);
    expect(r.status).toBe('completed');
    expect(r.state).toBe('completed'); // the stream never started: the callback is the whole story
    expect(r.outcome).toBe('completed');
    expect(r.from).toBe('+15550000001');
    expect(r.durationMs).toBe(42_000);
    expect(await reader.get('CA0000000000000000000000000000dead')).toBeUndefined();
  });

  it('status callbacks merge into a call the recorder is writing, and may come through another store', async () => {
    const store = await open({ identity: 'a' });
    const elsewhere = await open({ identity: 'b' }); // Twilio's callback may land on any instance (PostgreSQL) or process
    const rec = createStoreRecorder(store, SID, { From: '+1555', To: '+1666' });
    rec.started({ callSid: SID, streamSid: 'MZ', audioMode: 'transcode', startedAt: new Date() });
    store.recordStatus(statusCallback({ CallSid: SID, AccountSid: ACCOUNT, CallStatus: 'in-progress', SequenceNumber: '1' }));
    rec.transcript({ atMs: 1, speaker: 'caller', text: 'hi' });
    rec.ended(endInfo(new Date()));
    await store.flush();
    elsewhere.recordStatus(statusCallback({ CallSid: SID, AccountSid: ACCOUNT, CallStatus: 'completed', SequenceNumber: '2', CallDuration: '3' }));
    await elsewhere.flush();
    rec.usage({ inputTextTokens: 1, inputAudioTokens: 0, inputCachedTokens: 0, outputTextTokens: 0, outputAudioTokens: 0 }); // the owner writes again
    await store.close();
    const r = (await (await open()).get(SID))!;
    expect(r.state).toBe('completed');
    expect(r.streamSid).toBe('MZ');
    expect(r.from).toBe('+1555');
    expect(r.transcript).toHaveLength(1);
    expect(r.statusEvents.map((e) => e.status)).toEqual(['in-progress', 'completed']);
    expect(r.status).toBe('completed');
  });

  it('list: newest first, since and limit', async () => {
    const s = await open({ identity: 'a' });
    for (let i = 0; i < 5; i++) {
      const sid = `CA${String(i).padStart(32, '0')}`;
      createStoreRecorder(s, sid, {}).started({ callSid: sid, streamSid: 'MZ', audioMode: 'transcode', startedAt: new Date(Date.UTC(2026, 0, 1 + i)) });
    }
    expect((await s.list()).map((c) => c.callSid.slice(-1))).toEqual(['4', '3', '2', '1', '0']);
    expect(await s.list({ limit: 2 })).toHaveLength(2);
    expect((await s.list({ since: new Date(Date.UTC(2026, 0, 3)) })).map((c) => c.startedAt)).toEqual([
      '2026-01-05T00:00:00.000Z', '2026-01-04T00:00:00.000Z', '2026-01-03T00:00:00.000Z',
    ]);
  });

  it('a restarted process marks the calls it left in progress interrupted; finished calls untouched', async () => {
    const a = await open({ identity: 'a' });
    createStoreRecorder(a, SID, {}).started({ callSid: SID, streamSid: 'MZ', audioMode: 'transcode', startedAt: new Date() });
    createStoreRecorder(a, DONE, {}).ended(endInfo(new Date()));
    await a.close();
    const again = await open({ identity: 'a' });
    expect(await again.markInterrupted()).toBe(1);
    expect((await again.get(SID))!.state).toBe('interrupted');
    expect((await again.get(SID))!.endReason).toBe('process_exit');
    expect((await again.get(DONE))!.state).toBe('completed');
    expect(await again.markInterrupted()).toBe(0);
  });

  it('claim: the first claim of a call wins, every later one (any store on the same storage, any instance) loses; calls are independent', async () => {
    const a = await open({ identity: 'a' });
    const b = await open({ identity: 'b' });
    const claims = await Promise.all([a.claim(SID, 'a'), b.claim(SID, 'b'), a.claim(SID, 'a'), b.claim(SID, 'b')]);
    expect(claims.filter((c) => c)).toHaveLength(1);
    expect(await a.claim(SID, 'a')).toBe(false);
    expect(await b.claim(DONE, 'b')).toBe(true);
    expect(await a.claim(DONE, 'a')).toBe(false);
    // Claims are not part of the record: a claimed call with no writes has none.
    expect(await a.get(SID)).toBeUndefined();
  });

  it('markInterrupted leaves calls this process is handling alone', async () => {
    const store = await open({ identity: 'a' });
    createStoreRecorder(store, SID, {}).started({ callSid: SID, streamSid: 'MZ', audioMode: 'transcode', startedAt: new Date() });
    expect(await store.markInterrupted()).toBe(0);
    expect((await store.get(SID))!.state).toBe('in_progress');
  });

  it('encrypts transcripts, tool data and phone numbers at rest; a wrong or missing key is a clear error', async () => {
    const key = Buffer.alloc(32, 7);
    const s = await open({ key, identity: 'a' });
    const rec = createStoreRecorder(s, SID, { From: '+15557770001', To: '+15558880002' });
    rec.started({ callSid: SID, streamSid: 'MZ', audioMode: 'transcode', startedAt: new Date() });
    s.recordStatus(statusCallback({ CallSid: SID, AccountSid: ACCOUNT, CallStatus: 'in-progress', SequenceNumber: '1', From: '+15557770001', To: '+15558880002' }));
    rec.transcript({ atMs: 1, speaker: 'caller', text: 'my secret phrase zebra' });
    rec.toolCall({ callId: 'c', name: 'check_eligibility', args: '{"member_id":"QQ987654"}', ok: true, output: 'x', record: null, startedAtMs: 1, durationMs: 1 });
    rec.ended(endInfo(new Date()));
    await s.close();
    const raw = await kind.rawText();
    expect(raw).toContain('enc1:');
    expect(raw).not.toContain('zebra');
    expect(raw).not.toContain('QQ987654');
    expect(raw).not.toContain('5557770001'); // caller and callee numbers are sealed too
    expect(raw).not.toContain('5558880002');
    const withKey = await open({ key });
    expect((await withKey.get(SID))!.transcript[0]!.text).toBe('my secret phrase zebra');
    expect(await withKey.get(SID)).toMatchObject({ from: '+15557770001', to: '+15558880002' });
    expect((await withKey.list()).find((c) => c.callSid === SID)).toMatchObject({ from: '+15557770001' });
    expect((await (await open()).list()).find((c) => c.callSid === SID)?.from).toBe('(encrypted)');
    const wrong = await open({ key: Buffer.alloc(32, 8) });
    await expect(async () => wrong.get(SID)).rejects.toThrow(DecryptError);
    await expect(async () => wrong.get(SID)).rejects.toThrow(/TRANSCRIPT_KEY/);
    const none = await open();
    await expect(async () => none.get(SID)).rejects.toThrow(/TRANSCRIPT_KEY/);
  });
});
