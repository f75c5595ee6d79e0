import { statusCallback } from './helpers/webhooks.js';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createStoreRecorder } from '../src/store/recorder.js';
import { silentLogger } from '../src/log.js';
import { ENCRYPTED_NUMBER, estimateCostUsd, SqliteCallStore } from '../src/store/sqlite.js';
import { DecryptError } from '../src/store/crypto.js';
import { sqliteDriver } from '../src/store/sqlite-driver.js';
import { ACCOUNT, endInfo, prices, SID } from './helpers/store.js';

let dir: string;
let path: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'callbridge-store-'));
  path = join(dir, 'nested', 'calls.db');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const tick = () => new Promise<void>((r) => setImmediate(r));
const open = (key?: Buffer) => new SqliteCallStore({ path, prices, log: silentLogger, transcriptKey: key });

describe('SqliteCallStore', () => {
  it('runs on node:sqlite where this Node has it without a flag (22.13+, 23.4+), on better-sqlite3 elsewhere', () => {
    const [major, minor] = process.versions.node.split('.').map(Number) as [number, number];
    const builtIn = major >= 24 || (major === 22 && minor >= 13) || (major === 23 && minor >= 4);
    const d = sqliteDriver();
    expect(d.name).toBe(builtIn ? 'node:sqlite' : 'better-sqlite3');
    expect(d.sqliteVersion).toMatch(/^3\.\d+\.\d+$/);
  });

  it('records a call through the recorder: answered, started, transcript, tools, latency, usage, ended', async () => {
    const store = open();
    const rec = createStoreRecorder(store, SID, { From: '+15551230000', To: '+15559870000' });
    // The row exists as soon as the call is answered (next event-loop turn), before any stream.
    const other = open();
    await tick();
    expect(other.get(SID)?.from).toBe('+15551230000');
    const t0 = new Date('2026-11-25T08:00:00.000Z');
    rec.started({ callSid: SID, streamSid: 'MZ1', audioMode: 'transcode', startedAt: t0 });
    rec.transcript({ atMs: 500, speaker: 'assistant', text: 'Thanks for calling.' });
    rec.transcript({ atMs: 4000, speaker: 'assistant', text: 'Can I get the Member ID?' });
    // Caller transcription arrives after the reply but was spoken earlier.
    rec.transcript({ atMs: 2000, speaker: 'caller', text: 'Check my coverage.' });
    rec.transcript({ atMs: 2000, speaker: 'dtmf', text: '1' });
    rec.toolCall({ callId: 'c1', name: 'check_eligibility', args: '{"member_id":"MB123456"}', ok: true, output: '{"status":"eligible"}', record: { status: 'eligible' }, startedAtMs: 9000, durationMs: 12 });
    rec.turnLatency({ turn: 1, latencyMs: 640 });
    rec.usage({ inputTextTokens: 100, inputAudioTokens: 1000, inputCachedTokens: 50, outputTextTokens: 20, outputAudioTokens: 2000 });
    rec.usage({ inputTextTokens: 10, inputAudioTokens: 0, inputCachedTokens: 0, outputTextTokens: 0, outputAudioTokens: 0 });
    rec.ended(endInfo(new Date(t0.getTime() + 65_000)));
    store.close();

    const r = other.get(SID)!;
    expect(r.state).toBe('completed');
    expect(r.streamSid).toBe('MZ1');
    expect(r.durationMs).toBe(65_000);
    expect(r.endReason).toBe('caller_hangup');
    expect(r.outcome).toBe('eligibility_checked');
    expect(r.transcript.map((l) => l.atMs)).toEqual([500, 2000, 2000, 4000]);
    expect(r.transcript.map((l) => l.speaker)).toEqual(['assistant', 'caller', 'dtmf', 'assistant']); // stable for equal times
    expect(r.toolCalls).toHaveLength(1);
    expect(r.turnLatencies).toEqual([{ turn: 1, latencyMs: 640 }]);
    expect(r.usage.inputTextTokens).toBe(110);
    expect(r.relay?.inbound.p50Ms).toBe(0.05);
    expect(r.estimatedCostUsd).toBeCloseTo(estimateCostUsd(r.usage, 65_000, prices), 6);
    expect(other.list()[0]!.callSid).toBe(SID);
    other.close();
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
    await new Promise((r) => setTimeout(r, 600));
    expect(reader.get(SID)!.transcript).toHaveLength(1);
    reader.close();
    store.close();
  });

  it('status callbacks: before the row exists, out of order, duplicated; invalid ones ignored', () => {
    const store = open();
    const cb = (seq: number, status: string, extra: Record<string, string> = {}) =>
      store.recordStatus(statusCallback({ CallSid: SID, AccountSid: ACCOUNT, CallStatus: status, SequenceNumber: String(seq), From: '+15550000001', To: '+15550000002', ...extra }));
    cb(2, 'completed', { CallDuration: '42' }); // arrives first: stub row
    expect(store.get(SID)?.status).toBe('completed');
    cb(0, 'ringing');
    cb(1, 'in-progress');
    cb(1, 'in-progress'); // duplicate
    cb(0, 'ringing');
    store.close();
    const r = open().get(SID)!;
    expect(r.statusEvents.map((e) => [e.sequenceNumber, e.status])).toEqual([[0, 'ringing'], [1, 'in-progress'], [2, 'completed']]);
    expect(r.status).toBe('completed');
    expect(r.from).toBe('+15550000001');
    expect(r.durationMs).toBe(42_000);
    expect(open().get('nope')).toBeUndefined();
  });

  it('status callbacks merge into a call the recorder is writing', () => {
    const store = open();
    const rec = createStoreRecorder(store, SID, { From: '+1555', To: '+1666' });
    rec.started({ callSid: SID, streamSid: 'MZ', audioMode: 'transcode', startedAt: new Date() });
    store.recordStatus(statusCallback({ CallSid: SID, AccountSid: ACCOUNT, CallStatus: 'in-progress', SequenceNumber: '1' }));
    rec.transcript({ atMs: 1, speaker: 'caller', text: 'hi' });
    rec.ended(endInfo(new Date()));
    store.recordStatus(statusCallback({ CallSid: SID, AccountSid: ACCOUNT, CallStatus: 'completed', SequenceNumber: '2', CallDuration: '3' }));
    store.close();
    const r = open().get(SID)!;
    expect(r.state).toBe('completed');
    expect(r.transcript).toHaveLength(1);
    expect(r.statusEvents.map((e) => e.status)).toEqual(['in-progress', 'completed']);
  });

  it('an entry arriving after the call ended is still recorded, in order', () => {
    const store = open();
    const rec = createStoreRecorder(store, SID, {});
    rec.started({ callSid: SID, streamSid: 'MZ', audioMode: 'transcode', startedAt: new Date() });
    rec.transcript({ atMs: 3000, speaker: 'assistant', text: 'Goodbye.' });
    rec.ended(endInfo(new Date()));
    rec.transcript({ atMs: 1000, speaker: 'caller', text: 'Thanks, bye.' }); // transcription finished late
    store.flush();
    const reader = open();
    const r = reader.get(SID)!;
    expect(r.state).toBe('completed');
    expect(r.transcript.map((l) => l.text)).toEqual(['Thanks, bye.', 'Goodbye.']);
    reader.close();
    store.close();
  });

  it('markInterrupted marks calls a previous process left in progress', () => {
    const a = open();
    createStoreRecorder(a, SID, {}).started({ callSid: SID, streamSid: 'MZ', audioMode: 'transcode', startedAt: new Date() });
    const done = 'CA00000000000000000000000000000002';
    const r2 = createStoreRecorder(a, done, {});
    r2.ended(endInfo(new Date()));
    a.close();
    const b = open();
    expect(b.markInterrupted()).toBe(1);
    expect(b.get(SID)!.state).toBe('interrupted');
    expect(b.get(done)!.state).toBe('completed');
    expect(b.markInterrupted()).toBe(0);
    b.close();
  });

  it('list: newest first, since and limit', () => {
    const s = open();
    for (let i = 0; i < 5; i++) {
      const sid = `CA${String(i).padStart(32, '0')}`;
      createStoreRecorder(s, sid, {}).started({ callSid: sid, streamSid: 'MZ', audioMode: 'transcode', startedAt: new Date(Date.UTC(2026, 0, 1 + i)) });
    }
    expect(s.list().map((c) => c.callSid.slice(-1))).toEqual(['4', '3', '2', '1', '0']);
    expect(s.list({ limit: 2 })).toHaveLength(2);
    expect(s.list({ since: new Date(Date.UTC(2026, 0, 3)) })).toHaveLength(3);
    s.close();
  });

  it('encrypts transcripts and tool data at rest; wrong or missing key is a clear error', () => {
    const key = Buffer.alloc(32, 7);
    const s = open(key);
    const rec = createStoreRecorder(s, SID, {});
    rec.started({ callSid: SID, streamSid: 'MZ', audioMode: 'transcode', startedAt: new Date() });
    rec.transcript({ atMs: 1, speaker: 'caller', text: 'my secret phrase zebra' });
    rec.toolCall({ callId: 'c', name: 'check_eligibility', args: '{"member_id":"QQ987654"}', ok: true, output: 'x', record: null, startedAtMs: 1, durationMs: 1 });
    rec.ended(endInfo(new Date()));
    s.close();
    const bytes = Buffer.concat([readFileSync(path), existsSync(`${path}-wal`) ? readFileSync(`${path}-wal`) : Buffer.alloc(0)]).toString('latin1');
    expect(bytes).not.toContain('zebra');
    expect(bytes).not.toContain('QQ987654');
    expect(open(key).get(SID)!.transcript[0]!.text).toBe('my secret phrase zebra');
    expect(() => open(Buffer.alloc(32, 8)).get(SID)).toThrow(DecryptError);
    expect(() => open(Buffer.alloc(32, 8)).get(SID)).toThrow(/TRANSCRIPT_KEY/);
    expect(() => open().get(SID)).toThrow(/TRANSCRIPT_KEY/);
  });

  it('encrypts caller and callee numbers at rest; records, listings and older plain rows still read', () => {
    const key = Buffer.alloc(32, 7);
    const rawBytes = () =>
      Buffer.concat([readFileSync(path), existsSync(`${path}-wal`) ? readFileSync(`${path}-wal`) : Buffer.alloc(0)]).toString('latin1');
    // A row written before a key was set: plain numbers.
    const OLD = 'CA00000000000000000000000000000002';
    const plain = open();
    createStoreRecorder(plain, OLD, { From: '+15550001111', To: '+15550002222' }).ended(endInfo(new Date()));
    plain.close();

    const s = open(key);
    const rec = createStoreRecorder(s, SID, { From: '+15557654321', To: '+15551239876' });
    rec.started({ callSid: SID, streamSid: 'MZ', audioMode: 'transcode', startedAt: new Date() });
    s.recordStatus(statusCallback({ CallSid: SID, AccountSid: ACCOUNT, CallStatus: 'in-progress', SequenceNumber: '0', From: '+15557654321', To: '+15551239876' }));
    rec.ended(endInfo(new Date()));
    expect(s.get(SID)).toMatchObject({ from: '+15557654321', to: '+15551239876' });
    expect(s.list().find((c) => c.callSid === SID)).toMatchObject({ from: '+15557654321', to: '+15551239876' });
    expect(s.get(OLD)).toMatchObject({ from: '+15550001111', to: '+15550002222' });
    expect(s.list().find((c) => c.callSid === OLD)).toMatchObject({ from: '+15550001111', to: '+15550002222' });
    s.close();
    const bytes = rawBytes();
    expect(bytes).not.toContain('5557654321');
    expect(bytes).not.toContain('5551239876');

    // Without the key: the listing says the number is encrypted, the record is a clear error,
    // and a late status callback written by that process keeps the sealed numbers intact.
    const keyless = open();
    expect(keyless.list().find((c) => c.callSid === SID)).toMatchObject({ from: ENCRYPTED_NUMBER, to: ENCRYPTED_NUMBER });
    expect(() => keyless.get(SID)).toThrow(DecryptError);
    keyless.recordStatus(statusCallback({ CallSid: SID, AccountSid: ACCOUNT, CallStatus: 'completed', SequenceNumber: '1', CallDuration: '3' }));
    keyless.close();
    expect(rawBytes()).not.toContain('5557654321');
    const again = open(key);
    expect(again.get(SID)).toMatchObject({ from: '+15557654321', to: '+15551239876', status: 'completed' });
    again.close();
  });

  it('estimateCostUsd: tokens at per-million prices plus started telephony minutes', () => {
    const u = { inputTextTokens: 1_000_000, inputAudioTokens: 1_000_000, inputCachedTokens: 500_000, outputTextTokens: 1_000_000, outputAudioTokens: 1_000_000 };
    // text in: 0.5M*4 + 0.5M*0.4 = 2.2; audio in 32; text out 16; audio out 64; 2 minutes * 0.0125
    expect(estimateCostUsd(u, 61_000, prices)).toBeCloseTo(2.2 + 32 + 16 + 64 + 0.025, 6);
    const zero = { inputTextTokens: 0, inputAudioTokens: 0, inputCachedTokens: 0, outputTextTokens: 0, outputAudioTokens: 0 };
    expect(estimateCostUsd(zero, 0, prices)).toBe(0);
  });
});
