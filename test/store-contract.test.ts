/**
 * The CallStore contract, run against both stores: SQLite (a real file) and
 * PostgreSQL (the real local server, a schema per test), each without and
 * with a TRANSCRIPT_KEY. Whatever a caller can observe through the interface
 * must be the same on all four.
 */
import { statusCallback } from './helpers/webhooks.js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { estimateCostUsd } from '../src/store/cost.js';
import { createAdminHandler } from '../src/admin/calls-api.js';
import { formatRecord } from '../src/cli/calls.js';
import { DecryptError, keyId, sealV1ForTests } from '../src/store/crypto.js';
import { ENCRYPTED_NUMBER } from '../src/store/rows.js';
import { decodeCursor, encodeCursor } from '../src/store/cursor.js';
import { createStoreRecorder, streamRecorder } from '../src/store/recorder.js';
import type { CallStore, CallSummary, ListPosition } from '../src/store/types.js';
import { adminSql, dropSchema, freshSchema, PG_URL, postgresAvailable } from './helpers/postgres.js';
import { postgresKind, sqliteKind, type OpenOptions } from './helpers/store-kinds.js';
import { ACCOUNT, endInfo, prices, SID } from './helpers/store.js';

const DONE = 'CA00000000000000000000000000000002';

const pgOk = await postgresAvailable();

/** Each store runs the contract without a key and with one: every test's stores use it unless the test names a key (or none). */
const KEY = Buffer.alloc(32, 5);
const cases = [sqliteKind(), ...(pgOk ? [postgresKind()] : [])].flatMap((kind) => [
  { kind, label: `${kind.name}, no key`, key: undefined as Buffer | undefined },
  { kind, label: `${kind.name}, TRANSCRIPT_KEY set`, key: KEY },
]);

describe.each(cases)('CallStore contract: $label', ({ kind, key: defaultKey }) => {
  const opened: CallStore[] = [];
  const open = async (o: OpenOptions = {}) => {
    const s = await kind.open('key' in o ? o : { ...o, key: defaultKey });
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
      agent: null, direction: null,
    });
  });

  it('outcome: eligibility checked, failed, not checked, or the call failed; checks flushed earlier count with those in the final flush', async () => {
    const store = await open({ identity: 'a' });
    const sids = ['1', '2', '3', '4', '5'].map((d) => `CA${d.padStart(32, '0')}`);
    const tool = (ok: boolean) => ({ callId: 'c', name: 'check_eligibility', args: '{}', ok, output: '', record: null, startedAtMs: 1, durationMs: 1 });
    const recs = sids.map((sid) => {
      const rec = createStoreRecorder(store, sid, {});
      rec.started({ callSid: sid, streamSid: 'MZ', audioMode: 'transcode', startedAt: new Date() });
      return rec;
    });
    recs[0]!.toolCall(tool(false)); // written before the end…
    recs[4]!.toolCall(tool(false));
    await store.flush();
    recs[0]!.toolCall(tool(true)); // …and in the same flush as the end
    recs[1]!.toolCall(tool(false));
    recs.forEach((rec, i) => rec.ended(endInfo(new Date(), i === 3 ? 'model_unavailable' : 'caller_hangup')));
    await store.flush();
    const reader = await open();
    const outcomes = [];
    for (const s of sids) outcomes.push((await reader.get(s))!.outcome);
    expect(outcomes).toEqual(['eligibility_checked', 'eligibility_failed', 'no_check', 'failed', 'eligibility_failed']);
  });

  it('an entry arriving after the call ended is still recorded, in order', async () => {
    const store = await open({ identity: 'a' });
    const rec = createStoreRecorder(store, SID, {});
    rec.started({ callSid: SID, streamSid: 'MZ', audioMode: 'transcode', startedAt: new Date() });
    rec.transcript({ atMs: 3000, speaker: 'assistant', text: 'Goodbye.' });
    rec.ended(endInfo(new Date()));
    rec.transcript({ atMs: 2000, speaker: 'caller', text: 'Bye.' }); // finished late: written with the end
    await store.flush();
    rec.transcript({ atMs: 1000, speaker: 'caller', text: 'Thanks, bye.' }); // transcription finished late, after the end was written
    rec.usage({ inputTextTokens: 5, inputAudioTokens: 0, inputCachedTokens: 0, outputTextTokens: 0, outputAudioTokens: 0 });
    await store.flush();
    const reader = await open();
    const r = (await reader.get(SID))!;
    expect(r.state).toBe('completed');
    expect(r.transcript.map((l) => l.text)).toEqual(['Thanks, bye.', 'Bye.', 'Goodbye.']);
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
    expect(raw).toContain(`enc2:${keyId(key)}:`);
    expect(raw).not.toContain('enc1:');
    expect(raw).not.toContain('zebra');
    expect(raw).not.toContain('QQ987654');
    expect(raw).not.toContain('5557770001'); // caller and callee numbers are sealed too
    expect(raw).not.toContain('5558880002');
    const withKey = await open({ key });
    expect((await withKey.get(SID))!.transcript[0]!.text).toBe('my secret phrase zebra');
    expect(await withKey.get(SID)).toMatchObject({ from: '+15557770001', to: '+15558880002' });
    expect((await withKey.list()).find((c) => c.callSid === SID)).toMatchObject({ from: '+15557770001' });
    expect((await (await open({ key: undefined })).list()).find((c) => c.callSid === SID)?.from).toBe('(encrypted)');
    const wrong = await open({ key: Buffer.alloc(32, 8) });
    await expect(async () => wrong.get(SID)).rejects.toThrow(DecryptError);
    await expect(async () => wrong.get(SID)).rejects.toThrow(/TRANSCRIPT_KEY/);
    const none = await open({ key: undefined });
    await expect(async () => none.get(SID)).rejects.toThrow(/TRANSCRIPT_KEY/);
  });

  it('caller and callee numbers: sealed at rest; records and listings read them, and rows written before a key was set; a late status callback without the key keeps them sealed', async () => {
    const key = Buffer.alloc(32, 7);
    // A row written before a key was set: plain numbers.
    const plain = await open({ key: undefined, identity: 'a' });
    createStoreRecorder(plain, DONE, { From: '+15550001111', To: '+15550002222' }).ended(endInfo(new Date()));
    await plain.close();

    const s = await open({ key, identity: 'a' });
    const rec = createStoreRecorder(s, SID, { From: '+15557654321', To: '+15551239876' });
    rec.started({ callSid: SID, streamSid: 'MZ', audioMode: 'transcode', startedAt: new Date() });
    s.recordStatus(statusCallback({ CallSid: SID, AccountSid: ACCOUNT, CallStatus: 'in-progress', SequenceNumber: '0', From: '+15557654321', To: '+15551239876' }));
    rec.ended(endInfo(new Date()));
    expect(await s.get(SID)).toMatchObject({ from: '+15557654321', to: '+15551239876' });
    expect((await s.list()).find((c) => c.callSid === SID)).toMatchObject({ from: '+15557654321', to: '+15551239876' });
    expect(await s.get(DONE)).toMatchObject({ from: '+15550001111', to: '+15550002222' });
    expect((await s.list()).find((c) => c.callSid === DONE)).toMatchObject({ from: '+15550001111', to: '+15550002222' });
    await s.close();
    const raw = await kind.rawText();
    expect(raw).not.toContain('5557654321');
    expect(raw).not.toContain('5551239876');

    // Without the key: the listing says the number is encrypted, the record is a clear error,
    // and a late status callback written by that process keeps the sealed numbers intact.
    const keyless = await open({ key: undefined, identity: 'b' });
    expect((await keyless.list()).find((c) => c.callSid === SID)).toMatchObject({ from: ENCRYPTED_NUMBER, to: ENCRYPTED_NUMBER });
    await expect(async () => keyless.get(SID)).rejects.toThrow(DecryptError);
    keyless.recordStatus(statusCallback({ CallSid: SID, AccountSid: ACCOUNT, CallStatus: 'completed', SequenceNumber: '1', CallDuration: '3' }));
    await keyless.close();
    expect(await kind.rawText()).not.toContain('5557654321');
    const again = await open({ key });
    expect(await again.get(SID)).toMatchObject({ from: '+15557654321', to: '+15551239876', status: 'completed' });
  });

  it('every entry kind — transcript, tool call, latency, usage, each call event — reads back through the store, GET /calls/:sid and `calls show`', async () => {
    const store = await open({ identity: 'a' });
    const rec = createStoreRecorder(store, SID, { From: '+15551230000', To: '+15559870000' });
    rec.started({ callSid: SID, streamSid: 'MZ1', audioMode: 'transcode', startedAt: new Date('2026-11-25T08:00:00.000Z'), model: 'gpt-realtime' });
    rec.transcript({ atMs: 500, speaker: 'assistant', text: 'Thanks for calling.' });
    rec.transcript({ atMs: 1500, speaker: 'caller', text: 'Am I covered?', interrupted: false });
    rec.transcript({ atMs: 1600, speaker: 'dtmf', text: '4' });
    rec.transcript({ atMs: 1700, speaker: 'tool', text: 'check_eligibility' });
    rec.transcript({ atMs: 1800, speaker: 'assistant', text: 'One mo', interrupted: true });
    rec.toolCall({ callId: 'c1', name: 'check_eligibility', args: '{"member_id":"MB123456"}', ok: false, output: 'timeout', record: null, startedAtMs: 2000, durationMs: 3000 });
    rec.turnLatency({ turn: 1, latencyMs: 640 });
    rec.usage({ inputTextTokens: 1, inputAudioTokens: 2, inputCachedTokens: 0, inputCachedAudioTokens: 0, outputTextTokens: 3, outputAudioTokens: 4 });
    const events = [
      { atMs: 2500, type: 'response_failed', detail: 'server_error (rate_limit_exceeded) → retry' },
      { atMs: 3000, type: 'model_reconnected', detail: 'closed 1006; 2 attempt(s); gap 1200 ms' },
      { atMs: 9000, type: 'model_unavailable', detail: 'reconnect budget spent; 5 attempt(s)' },
    ];
    for (const e of events) rec.event(e);
    rec.ended(endInfo(new Date('2026-11-25T08:00:10.000Z'), 'model_unavailable'));
    await store.close();

    const reader = await open();
    const r = (await reader.get(SID))!;
    expect(r.transcript).toEqual([
      { atMs: 500, speaker: 'assistant', text: 'Thanks for calling.' },
      { atMs: 1500, speaker: 'caller', text: 'Am I covered?', interrupted: false },
      { atMs: 1600, speaker: 'dtmf', text: '4' },
      { atMs: 1700, speaker: 'tool', text: 'check_eligibility' },
      { atMs: 1800, speaker: 'assistant', text: 'One mo', interrupted: true },
    ]);
    expect(r.toolCalls).toEqual([{ callId: 'c1', name: 'check_eligibility', args: '{"member_id":"MB123456"}', ok: false, output: 'timeout', record: null, startedAtMs: 2000, durationMs: 3000 }]);
    expect(r.turnLatencies).toEqual([{ turn: 1, latencyMs: 640 }]);
    expect(r.usage).toEqual({ inputTextTokens: 1, inputAudioTokens: 2, inputCachedTokens: 0, inputCachedAudioTokens: 0, outputTextTokens: 3, outputAudioTokens: 4 });
    expect(r.events).toEqual(events);
    expect(r).toMatchObject({ from: '+15551230000', to: '+15559870000', outcome: 'failed', endReason: 'model_unavailable' });

    const api = createAdminHandler(reader, 'contract-admin-token');
    const res = await api({ method: 'GET', path: `/calls/${SID}`, query: new URLSearchParams(), headers: { authorization: 'Bearer contract-admin-token' } });
    expect(res.status).toBe(200);
    expect(JSON.parse(JSON.stringify(res.body))).toEqual(JSON.parse(JSON.stringify(r)));
    const shown = formatRecord(r);
    expect(shown).toContain('[00:02] response_failed: server_error');
    expect(shown).toContain('[00:09] model_unavailable');
    if (defaultKey) {
      const raw = await kind.rawText();
      for (const secret of ['rate_limit_exceeded', 'Am I covered', 'MB123456', '5551230000']) expect(raw).not.toContain(secret);
    }
  });

  it("a stale header from the store that answered the webhook never undoes the call another store carried; it only adds the webhook's numbers", async () => {
    const a = await open({ identity: 'a' }); // answered the webhook
    const b = await open({ identity: 'b' }); // took the stream
    a.answered(SID, { from: '+15550000001', to: '+15550000002' });
    await a.flush();
    expect(await b.claim(SID, 'b')).toBe(true);
    const rec = streamRecorder(b, SID);
    const t0 = new Date('2026-11-25T09:00:00.000Z');
    rec.started({ callSid: SID, streamSid: 'MZ9', audioMode: 'transcode', startedAt: t0 });
    rec.transcript({ atMs: 10, speaker: 'caller', text: 'hello' });
    rec.usage({ inputTextTokens: 7, inputAudioTokens: 0, inputCachedTokens: 0, outputTextTokens: 0, outputAudioTokens: 0 });
    rec.ended(endInfo(new Date(t0.getTime() + 30_000)));
    await b.flush();
    // Twilio retries the webhook to A: A's copy of the header is the one it answered with (no stream, in progress).
    a.answered(SID, { from: '+15550000001', to: '+15550000002' });
    await a.flush();
    const r = (await (await open()).get(SID))!;
    expect(r).toMatchObject({
      state: 'completed', streamSid: 'MZ9', startedAt: t0.toISOString(), endedAt: '2026-11-25T09:00:30.000Z', durationMs: 30_000,
      endReason: 'caller_hangup', from: '+15550000001', to: '+15550000002',
    });
    expect(r.usage.inputTextTokens).toBe(7);
    expect(r.answeredAt).not.toBeNull();
    expect(r.transcript).toHaveLength(1);
  });

  it('list pages: a cursor walks every call once, in order, ties included, while newer calls arrive', async () => {
    const s = await open({ identity: 'a' });
    const sidN = (n: number) => `CA${String(n).padStart(32, '0')}`;
    const start = (n: number, at: Date) => createStoreRecorder(s, sidN(n), {}).started({ callSid: sidN(n), streamSid: 'MZ', audioMode: 'transcode', startedAt: at });
    // 7 calls; 1–4 began at the same ms (ties are ordered by call SID).
    const tie = new Date(Date.UTC(2026, 0, 2));
    for (let n = 1; n <= 4; n++) start(n, tie);
    start(5, new Date(Date.UTC(2026, 0, 1)));
    start(6, new Date(Date.UTC(2026, 0, 3)));
    start(7, new Date(Date.UTC(2025, 11, 31)));
    const everything = (await s.list()).map((c) => c.callSid);
    expect(everything).toEqual([6, 4, 3, 2, 1, 5, 7].map(sidN));

    const seen: string[] = [];
    let after: ListPosition | undefined;
    let pages = 0;
    for (;;) {
      const page = await s.listPage({ limit: 2, after, since: new Date(Date.UTC(2025, 0, 1)) });
      seen.push(...page.calls.map((c: CallSummary) => c.callSid));
      pages++;
      // Calls arriving meanwhile — newer ones, and one at the very time of the tie — never shift the pages.
      if (pages === 1) start(8, new Date(Date.UTC(2026, 0, 4)));
      if (pages === 2) start(9, tie);
      if (!page.next) break;
      after = page.next;
      expect(pages).toBeLessThan(10);
    }
    // 9 sorts above every tied SID, so it lands before the cursor (already passed): seen on the next walk, not this one.
    expect(seen).toEqual(everything);
    expect(pages).toBe(4);
    expect((await s.listPage({ limit: 100 })).next).toBeNull();
    expect((await s.list()).map((c) => c.callSid)).toEqual([8, 6, 9, 4, 3, 2, 1, 5, 7].map(sidN));
    // since still bounds a paged listing
    const recent = await s.listPage({ limit: 1, since: tie });
    expect(recent.calls.map((c) => c.callSid)).toEqual([sidN(8)]);
    const rest = await s.listPage({ limit: 10, since: tie, after: recent.next! });
    expect(rest.calls.map((c) => c.callSid)).toEqual([6, 9, 4, 3, 2, 1].map(sidN));
    expect(rest.next).toBeNull();
  });

  it("a page's cursor survives its round trip (the order of calls first written, not yet answered, is the database's own clock)", async () => {
    const s = await open({ identity: 'a' });
    // Late entries of calls never answered here: their place is when their row was first written.
    for (let i = 0; i < 5; i++) s.appendTurnLatency(`CB${String(i).padStart(32, '0')}`, { turn: 1, latencyMs: 1 });
    await s.flush();
    const seen: string[] = [];
    let after: ListPosition | undefined;
    for (let pages = 0; pages < 10; pages++) {
      const page = await s.listPage({ limit: 2, after });
      seen.push(...page.calls.map((c) => c.callSid));
      if (!page.next) break;
      after = decodeCursor(encodeCursor(page.next)); // as a client hands it back
    }
    expect(seen.sort()).toEqual(Array.from({ length: 5 }, (_, i) => `CB${String(i).padStart(32, '0')}`));
  });

  it('rotation: values sealed with an old key read with it as TRANSCRIPT_KEY_OLD; enc1 values too; without it, an error naming the setting', async () => {
    const k1 = Buffer.alloc(32, 1);
    const k2 = Buffer.alloc(32, 2);
    const before = await open({ key: k1, identity: 'a' });
    const rec = createStoreRecorder(before, SID, { From: '+15551110000', To: '+15552220000' });
    rec.started({ callSid: SID, streamSid: 'MZ', audioMode: 'transcode', startedAt: new Date() });
    rec.transcript({ atMs: 1, speaker: 'caller', text: 'before rotation' });
    rec.event({ atMs: 2, type: 'response_failed', detail: 'x' });
    await before.close();
    // A row written by a callbridge from before enc2 (no key id, no associated data).
    await kind.raw(`INSERT INTO call_entries (${kind.name === 'postgres' ? 'uid, ' : ''}call_sid, kind, at_ms, label, ok, data)
      VALUES (${kind.name === 'postgres' ? "'00000000-0000-4000-8000-000000000001', " : ''}'${SID}', 'transcript', 0, NULL, NULL,
      '${sealV1ForTests(JSON.stringify({ atMs: 0, speaker: 'assistant', text: 'from enc1 days' }), k1)}')`);

    const after = await open({ key: k2, oldKeys: [k1], identity: 'a' });
    const rec2 = streamRecorder(after, SID);
    rec2.transcript({ atMs: 3, speaker: 'assistant', text: 'after rotation' });
    rec2.ended(endInfo(new Date()));
    await after.flush();
    const r = (await after.get(SID))!;
    expect(r.transcript.map((l) => l.text)).toEqual(['from enc1 days', 'before rotation', 'after rotation']);
    expect(r.events).toEqual([{ atMs: 2, type: 'response_failed', detail: 'x' }]);
    expect(r).toMatchObject({ from: '+15551110000', to: '+15552220000' });
    const raw = await kind.rawText();
    expect(raw).toContain(`enc2:${keyId(k2)}:`); // new values: the new key
    expect(raw).toContain(`enc2:${keyId(k1)}:`); // old ones stay as they were
    // The header this store rewrote holds its numbers under the new key now.
    const [row] = await kind.raw(`SELECT from_number FROM calls WHERE call_sid = '${SID}'`);
    expect(String(row!.from_number)).toMatch(new RegExp(`^enc2:${keyId(k2)}:`));
    // Only the new key: what the old one sealed is a clear error naming the setting to use.
    const newOnly = await open({ key: k2 });
    await expect(async () => newOnly.get(SID)).rejects.toThrow(DecryptError);
    await expect(async () => newOnly.get(SID)).rejects.toThrow(/TRANSCRIPT_KEY_OLD/);
  });

  it('a sealed value moved to another call (or another field) is an error, never shown as that call\'s data', async () => {
    const other = 'CA0000000000000000000000000000beef';
    const s = await open({ key: KEY, identity: 'a' });
    for (const [sid, from, text] of [[SID, '+15550000001', 'first caller secret'], [other, '+15550000002', 'second caller secret']] as const) {
      const rec = createStoreRecorder(s, sid, { From: from, To: '+15559999999' });
      rec.started({ callSid: sid, streamSid: 'MZ', audioMode: 'transcode', startedAt: new Date() });
      rec.transcript({ atMs: 1, speaker: 'caller', text });
      rec.ended(endInfo(new Date()));
    }
    await s.close();
    const reader = await open({ key: KEY });
    const api = createAdminHandler(reader, 'contract-admin-token');
    const ask = (sid: string) => api({ method: 'GET', path: `/calls/${sid}`, query: new URLSearchParams(), headers: { authorization: 'Bearer contract-admin-token' } });
    expect((await reader.get(SID))!.transcript[0]!.text).toBe('first caller secret');

    // Swap the two calls' transcript lines on the storage.
    const lines = await kind.raw(`SELECT call_sid, data FROM call_entries WHERE kind = 'transcript' ORDER BY call_sid`);
    for (const l of lines) await kind.raw(`UPDATE call_entries SET data = '${lines.find((x) => x.call_sid !== l.call_sid)!.data}' WHERE call_sid = '${l.call_sid}' AND kind = 'transcript'`);
    await expect(async () => reader.get(SID)).rejects.toThrow(DecryptError);
    await expect(async () => reader.get(SID)).rejects.toThrow(/does not belong to call/);
    const res = await ask(SID);
    expect(res.status).toBe(500);
    expect(JSON.stringify(res.body)).not.toContain('second caller secret');
    for (const l of lines) await kind.raw(`UPDATE call_entries SET data = '${l.data}' WHERE call_sid = '${l.call_sid}' AND kind = 'transcript'`);
    expect((await reader.get(SID))!.transcript[0]!.text).toBe('first caller secret');

    // Swap a number between the rows, then between the fields of one row.
    const nums = await kind.raw(`SELECT call_sid, from_number, to_number FROM calls ORDER BY call_sid`);
    await kind.raw(`UPDATE calls SET from_number = '${nums[1]!.from_number}' WHERE call_sid = '${nums[0]!.call_sid}'`);
    await expect(async () => reader.get(String(nums[0]!.call_sid))).rejects.toThrow(/does not belong to call/);
    expect((await reader.list()).find((c) => c.callSid === nums[0]!.call_sid)?.from).toBe('(encrypted)');
    await kind.raw(`UPDATE calls SET from_number = '${nums[0]!.to_number}' WHERE call_sid = '${nums[0]!.call_sid}'`);
    await expect(async () => reader.get(String(nums[0]!.call_sid))).rejects.toThrow(/does not belong to call .* \(from\)/);
  });
});

describe('estimateCostUsd', () => {
  it('tokens at per-million prices plus started telephony minutes', () => {
    const u = { inputTextTokens: 1_000_000, inputAudioTokens: 1_000_000, inputCachedTokens: 500_000, outputTextTokens: 1_000_000, outputAudioTokens: 1_000_000 };
    // text in: 0.5M*4 + 0.5M*0.4 = 2.2; audio in 32; text out 16; audio out 64; 2 minutes * 0.0125
    expect(estimateCostUsd(u, 61_000, prices)).toBeCloseTo(2.2 + 32 + 16 + 64 + 0.025, 6);
    const zero = { inputTextTokens: 0, inputAudioTokens: 0, inputCachedTokens: 0, outputTextTokens: 0, outputAudioTokens: 0 };
    expect(estimateCostUsd(zero, 0, prices)).toBe(0);
  });
});
