/**
 * `callbridge calls list|show` against a real store file: through run() with
 * fake streams, and through the `callbridge` dispatcher while the server's
 * store still holds the file open. GET /calls is in calls-api.test.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createStoreRecorder } from '../src/store/recorder.js';
import { run, parseSince } from '../src/cli/calls.js';
import { main } from '../src/cli/main.js';
import { loadConfig } from '../src/config.js';
import { silentLogger } from '../src/log.js';
import { SqliteCallStore } from '../src/store/sqlite.js';
import { memoryIO } from './helpers/cli-io.js';

const SID = 'CA11111111111111111111111111111111';
const OPEN = 'CA22222222222222222222222222222222';
let dir: string;
let db: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'callbridge-cli-'));
  db = join(dir, 'calls.db');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function seed(key?: Buffer): Promise<void> {
  const store = new SqliteCallStore({ path: db, prices: loadConfig({}).prices, log: silentLogger, transcriptKey: key });
  const t0 = new Date(Date.now() - 10 * 60_000);
  const r = createStoreRecorder(store, SID, { From: '+15551230000', To: '+15559870000' }, { agent: 'front-desk', direction: 'inbound' });
  r.started({ callSid: SID, streamSid: 'MZ1', audioMode: 'transcode', startedAt: t0 });
  r.transcript({ atMs: 400, speaker: 'assistant', text: 'Thanks for calling the eligibility line.' });
  r.transcript({ atMs: 65_000, speaker: 'assistant', text: 'You are covered.' });
  r.transcript({ atMs: 3_000, speaker: 'caller', text: 'Is my plan active?' });
  r.toolCall({ callId: 'c1', name: 'check_eligibility', args: '{}', ok: true, output: '{"status":"eligible"}', record: null, startedAtMs: 60_000, durationMs: 15 });
  for (const [i, ms] of [600, 700, 800, 2000].entries()) r.turnLatency({ turn: i + 1, latencyMs: ms });
  r.usage({ inputTextTokens: 100, inputAudioTokens: 2000, inputCachedTokens: 0, outputTextTokens: 50, outputAudioTokens: 3000 });
  r.ended({ endedAt: new Date(t0.getTime() + 70_000), reason: 'caller_hangup', relay: { inbound: { p50Ms: 0.05, p99Ms: 0.2 }, outbound: { p50Ms: 0.04, p99Ms: 0.1 } }, protocolErrors: 0 });
  await store.saveTransfer(SID, { agent: 'front-desk', target: 'billing', requestedBy: 'keypad', leg: 1, at: '2026-12-06T10:00:00.000Z' });
  const o = createStoreRecorder(store, OPEN, {});
  o.started({ callSid: OPEN, streamSid: 'MZ2', audioMode: 'passthrough', startedAt: new Date(Date.now() - 3 * 86_400_000) });
  store.close();
}

async function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string; err: string }> {
  const t = memoryIO({ CALLBRIDGE_DB: db, ...env });
  const code = await run(args, t.io);
  return { code, out: t.out(), err: t.err() };
}

describe('calls CLI', () => {
  it('list: readable, newest first; --since filters; --limit; --json', async () => {
    await seed();
    const all = await cli(['list']);
    expect(all.code).toBe(0);
    expect(all.out.indexOf(SID)).toBeGreaterThan(0);
    expect(all.out.indexOf(SID)).toBeLessThan(all.out.indexOf(OPEN));
    expect(all.out).toMatch(new RegExp(`${SID}\\s+70\\.0 s\\s+completed`));
    expect(all.out).toMatch(/direction\s+agent\n/);
    expect(all.out).toMatch(new RegExp(`${SID}.*inbound\\s+front-desk\n`));
    expect(all.out).toMatch(new RegExp(`${OPEN}.*\\s-\\s+-\n`));
    const recent = await cli(['list', '--since', '1h']);
    expect(recent.out).toContain(SID);
    expect(recent.out).not.toContain(OPEN);
    const iso = await cli(['list', '--since', new Date(Date.now() - 3600_000).toISOString(), '--json']);
    expect(JSON.parse(iso.out).map((c: { callSid: string }) => c.callSid)).toEqual([SID]);
    const lim = await cli(['list', '--limit', '1', '--json']);
    expect(JSON.parse(lim.out)).toHaveLength(1);
  });

  it('list pages: --limit, then --cursor with what stderr names, until no more', async () => {
    await seed();
    const first = await cli(['list', '--limit', '1', '--json']);
    expect(JSON.parse(first.out).map((c: { callSid: string }) => c.callSid)).toEqual([SID]);
    const cursor = /next page with --cursor (\S+)/.exec(first.err)?.[1];
    expect(cursor).toBeDefined();
    const second = await cli(['list', '--limit', '1', '--cursor', cursor!, '--json']);
    expect(second.code).toBe(0);
    expect(JSON.parse(second.out).map((c: { callSid: string }) => c.callSid)).toEqual([OPEN]);
    expect(second.err).toBe(''); // the last page
    const readable = await cli(['list', '--limit', '1', '--cursor', cursor!]);
    expect(readable.out).toContain(OPEN);
    expect(readable.out).not.toContain(SID);
  });

  it('show: header, transcript in order with [mm:ss], tool calls, latency percentiles, usage', async () => {
    await seed();
    const { code, out } = await cli(['show', SID]);
    expect(code).toBe(0);
    expect(out).toContain('duration 70.0 s');
    expect(out).toContain('from +15551230000 to +15559870000   direction inbound   agent front-desk\n');
    expect(out).toContain('transfer to billing (agent front-desk), asked by the caller on the keypad on leg 1 at 2026-12-06T10:00:00.000Z\n');
    expect(out).toMatch(/outcome eligibility_checked/);
    expect(out).toMatch(/estimated cost \$\d+\.\d{4}/);
    const lines = out.split('\n');
    const t = (s: string) => lines.findIndex((l) => l.includes(s));
    expect(t('[00:00] assistant')).toBeLessThan(t('[00:03] caller'));
    expect(t('[00:03] caller')).toBeLessThan(t('[01:05] assistant'));
    expect(out).toContain('[00:00] assistant Thanks for calling the eligibility line.\n'); // speaker padded to one column
    expect(out).toContain('[00:03] caller    Is my plan active?\n');
    expect(out).toContain('check_eligibility ok in 15 ms');
    expect(out).toMatch(/turn latency .*4 turns, p50 \d+ ms, p95 \d+ ms, max 2\d{3} ms/);
    expect(out).toMatch(/usage: input 2000 audio/);
  });

  it('show --json is the full record', async () => {
    await seed();
    const { code, out } = await cli(['show', SID, '--json']);
    expect(code).toBe(0);
    const r = JSON.parse(out);
    expect(r.callSid).toBe(SID);
    expect(r.transcript.map((l: { atMs: number }) => l.atMs)).toEqual([400, 3000, 65_000]);
  });

  it('does not mark in-progress calls interrupted (only the server does)', async () => {
    await seed();
    await cli(['list']);
    const { out } = await cli(['show', OPEN, '--json']);
    expect(JSON.parse(out).state).toBe('in_progress');
  });

  it('errors: unknown sid → 1, missing store → 1, usage → 2, each saying what is wrong', async () => {
    await seed();
    const cases: [string[], number, RegExp][] = [
      [['show', 'CA99999999999999999999999999999999'], 1, /no call CA9+/],
      [[], 2, /expected list, show, audio, delete or purge/],
      [['frobnicate'], 2, /expected list, show, audio, delete or purge/],
      [['show'], 2, /show takes one CallSid/],
      [['list', '--since', 'yesterday'], 2, /--since takes an ISO time or an age/],
      [['list', '--since', 'last tuesday'], 2, /--since takes .*'last tuesday'/],
      [['list', '--limit', '0'], 2, /--limit/],
      [['list', '--since', '99999999999999d'], 2, /--since takes .*'99999999999999d'/],
      [['list', '--cursor', 'c1.bogus'], 2, /--cursor takes the cursor an earlier `calls list` printed/],
      [['list', '--bogus'], 2, /--bogus/],
    ];
    for (const [argv, code, message] of cases) {
      const r = await cli(argv);
      expect(r.code, argv.join(' ')).toBe(code);
      expect(r.err, argv.join(' ')).toMatch(message);
    }
    const unknown = await cli(['show', 'CA99999999999999999999999999999999']);
    expect(unknown.err.trim().split('\n')).toHaveLength(1);
    const missing = await cli(['list'], { CALLBRIDGE_DB: join(dir, 'none.db') });
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/no call store at .*none\.db/);
  });

  it('encrypted store: readable with the key, a clear one-line error without it', async () => {
    const key = 'ab'.repeat(32);
    await seed(Buffer.from(key, 'hex'));
    const ok = await cli(['show', SID], { TRANSCRIPT_KEY: key });
    expect(ok.code).toBe(0);
    expect(ok.out).toContain('Is my plan active?');
    const bad = await cli(['show', SID]);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/TRANSCRIPT_KEY/);
  });

  it('parseSince: ages and ISO times', () => {
    const now = Date.UTC(2026, 10, 25, 12);
    expect(parseSince('30m', now)?.getTime()).toBe(now - 30 * 60_000);
    expect(parseSince('2d', now)?.getTime()).toBe(now - 2 * 86_400_000);
    expect(parseSince('2026-11-25T00:00:00Z', now)?.toISOString()).toBe('2026-11-25T00:00:00.000Z');
    expect(parseSince('2026-11-01T00:00:00Z')?.toISOString()).toBe('2026-11-01T00:00:00.000Z'); // an ISO time needs no clock
    expect(parseSince('soon', now)).toBeUndefined();
  });

  it('through `callbridge calls`, reads a store the server still holds open (after it flushed)', async () => {
    const store = new SqliteCallStore({ path: db, prices: loadConfig({}).prices, log: silentLogger });
    try {
      const r = createStoreRecorder(store, SID, {});
      r.started({ callSid: SID, streamSid: 'MZ1', audioMode: 'transcode', startedAt: new Date(Date.now() - 5_000) });
      r.transcript({ atMs: 1_200, speaker: 'caller', text: 'Check my coverage.' });
      r.toolCall({ callId: 'c1', name: 'check_eligibility', args: '{}', ok: true, output: '{"status":"eligible"}', record: {}, startedAtMs: 1_500, durationMs: 35 });
      r.turnLatency({ turn: 1, latencyMs: 700 });
      r.ended({ endedAt: new Date(), reason: 'caller_hangup', relay: { inbound: { p50Ms: 0.04, p99Ms: 0.2 }, outbound: { p50Ms: 0.05, p99Ms: 0.3 } }, protocolErrors: 0 });
      store.flush();
      const list = memoryIO({ CALLBRIDGE_DB: db });
      expect(await main(['calls', 'list', '--since', '1h', '--json'], list.io)).toBe(0);
      expect(JSON.parse(list.out())[0].callSid).toBe(SID);
      const show = memoryIO({ CALLBRIDGE_DB: db });
      expect(await main(['calls', 'show', SID], show.io)).toBe(0);
      expect(show.out()).toContain('[00:01] caller    Check my coverage.');
      expect(show.out()).toMatch(/check_eligibility ok in 35 ms/);
      expect(show.out()).toMatch(/turn latency .* p50 700 ms/);
    } finally {
      store.close();
    }
  });
});
