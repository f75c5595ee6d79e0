/**
 * The console's store queries (searchCalls, callsInProgress, stats; src/store/search.ts) on both stores: SQLite (a
 * real file) and PostgreSQL (the real local server, a schema per test), with a TRANSCRIPT_KEY so numbers are sealed.
 * A handful of calls with known agents, tools, latencies, end reasons and times; every filter alone and combined,
 * every sort both ways, offset pages, ties, calls in progress and stats buckets with exact percentiles.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ToolCallRecord, TurnLatency } from '../src/records.js';
import { percentile } from '../src/store/search.js';
import type { CallFilter, CallStore, CallSummary, SearchOptions } from '../src/store/types.js';
import { postgresAvailable } from './helpers/postgres.js';
import { postgresKind, sqliteKind } from './helpers/store-kinds.js';
import { endInfo } from './helpers/store.js';

const pgOk = await postgresAvailable();
const KEY = Buffer.alloc(32, 7);
const kinds = [sqliteKind(), ...(pgOk ? [postgresKind()] : [])];

const MIN = 60_000;
/** A whole minute an hour ago: the calls' times are minutes after it, so stats buckets of a minute line up. */
const BASE = Math.floor((Date.now() - 60 * MIN) / MIN) * MIN;
const at = (ms: number) => new Date(BASE + ms);

const sid = (n: number) => `CA${String(n).padStart(32, '0')}`;
const [A, B, C, D, E, F, G] = [1, 2, 3, 4, 5, 6, 7].map(sid) as [string, string, string, string, string, string, string];
const NUMBER = (n: number) => `+1555000${String(n).padStart(4, '0')}`;

const tool = (name: string, ok = true): ToolCallRecord => ({ callId: `c-${name}`, name, args: '{}', ok, output: '{}', record: null, startedAtMs: 1000, durationMs: 5 });
/** A turn whose first frame went out `firstFrameMs` after its call's stream started. */
const turn = (n: number, latencyMs: number, firstFrameMs: number): TurnLatency => ({
  turn: n,
  latencyMs,
  parts: { speechStoppedMs: firstFrameMs - latencyMs, firstFrameMs },
});

interface Fixture {
  sid: string;
  agent: string;
  startMs: number;
  tools?: ToolCallRecord[];
  turns?: TurnLatency[];
  /** Ended this long after its start, for this reason; in progress when absent. */
  end?: { afterMs: number; reason: string };
  audioTokens?: number;
}

/**
 * A: clinic, eligibility checked, turns 300 and 500 in minute 1, long and expensive.
 * B: clinic, no tool, ended by an error (failed) in minute 2, a 900 ms turn in minute 1.
 * C: pharmacy, a lookup_order call, model_unavailable (failed) in minute 4, a 1200 ms turn in minute 2.
 * D, E: in progress (pharmacy, clinic), turns in minutes 3 and none.
 * F, G: clinic, the same start and duration (ties), no tool.
 */
const CALLS: Fixture[] = [
  { sid: A, agent: 'clinic', startMs: 0, tools: [tool('check_eligibility')], turns: [turn(1, 300, 70_000), turn(2, 500, 80_000)], end: { afterMs: 90_000, reason: 'caller_hangup' }, audioTokens: 500_000 },
  { sid: B, agent: 'clinic', startMs: 1 * MIN, turns: [turn(1, 900, 10_000)], end: { afterMs: 30_000, reason: 'error' } },
  { sid: C, agent: 'pharmacy', startMs: 2 * MIN, tools: [tool('lookup_order')], turns: [turn(1, 1200, 5_000)], end: { afterMs: 120_000, reason: 'model_unavailable' } },
  { sid: D, agent: 'pharmacy', startMs: 3 * MIN, turns: [turn(1, 100, 1_000)] },
  { sid: E, agent: 'clinic', startMs: 4 * MIN },
  { sid: F, agent: 'clinic', startMs: 5 * MIN, end: { afterMs: 20_000, reason: 'caller_hangup' } },
  { sid: G, agent: 'clinic', startMs: 5 * MIN, end: { afterMs: 20_000, reason: 'caller_hangup' } },
];

function record(store: CallStore): void {
  CALLS.forEach((c, i) => {
    store.answered(c.sid, { from: NUMBER(i), to: '+15559990000', agent: c.agent, direction: 'inbound' });
    store.started(c.sid, { streamSid: `MZ${i}`, audioMode: 'transcode', startedAt: at(c.startMs), model: 'gpt-realtime' });
    for (const t of c.tools ?? []) store.appendToolCall(c.sid, t);
    for (const t of c.turns ?? []) store.appendTurnLatency(c.sid, t);
    if (c.audioTokens) store.addUsage(c.sid, { inputTextTokens: 0, inputAudioTokens: c.audioTokens, inputCachedTokens: 0, outputTextTokens: 0, outputAudioTokens: 0 });
    if (c.end) store.ended(c.sid, endInfo(at(c.startMs + c.end.afterMs), c.end.reason));
  });
}

const sids = (calls: CallSummary[]) => calls.map((c) => c.callSid);
const startOf = (s: string) => CALLS.find((c) => c.sid === s)!.startMs;

describe.each(kinds)('console queries: $name', (kind) => {
  const opened: CallStore[] = [];
  let store: CallStore;
  const search = async (f: CallFilter, o: SearchOptions = {}) => await store.searchCalls(f, { limit: 200, ...o });
  beforeEach(async () => {
    kind.setup();
    store = await kind.open({ key: KEY, identity: 'console' });
    opened.push(store);
    record(store);
  });
  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close();
    await kind.teardown();
  });

  it('reads this process\'s buffered writes (it flushes first, like list) and opens sealed numbers', async () => {
    const page = await store.searchCalls({});
    expect(page.hasMore).toBe(false);
    expect(page.calls).toHaveLength(7);
    const a = page.calls.find((c) => c.callSid === A)!;
    expect(a).toMatchObject({ from: NUMBER(0), to: '+15559990000', agent: 'clinic', state: 'completed', outcome: 'eligibility_checked', durationMs: 90_000 });
    expect(a.startedAt).toBe(at(0).toISOString());
    // The numbers were sealed on disk, and another store with the key opens them too.
    expect(await kind.rawText()).not.toContain(NUMBER(0));
    const reader = await kind.open({ key: KEY });
    opened.push(reader);
    const again = await reader.searchCalls({ agent: 'pharmacy' });
    expect(again.calls.map((c) => c.from).sort()).toEqual([NUMBER(2), NUMBER(3)]);
  });

  it('filters on each field alone', async () => {
    expect(sids((await search({ since: at(1 * MIN), until: at(3 * MIN) })).calls)).toEqual([C, B]);
    expect(sids((await search({ since: at(5 * MIN) })).calls)).toEqual([G, F]);
    expect(sids((await search({ until: at(1 * MIN) })).calls)).toEqual([A]);
    expect(sids((await search({ outcome: 'failed' })).calls)).toEqual([C, B]);
    expect(sids((await search({ outcome: 'eligibility_checked' })).calls)).toEqual([A]);
    expect(sids((await search({ outcome: 'no_check' })).calls)).toEqual([G, F]);
    expect(sids((await search({ endReason: 'error' })).calls)).toEqual([B]);
    expect(sids((await search({ agent: 'pharmacy' })).calls)).toEqual([D, C]);
    expect(sids((await search({ tool: 'check_eligibility' })).calls)).toEqual([A]);
    expect(sids((await search({ tool: 'lookup_order' })).calls)).toEqual([C]);
    expect(sids((await search({ tool: 'no_such_tool' })).calls)).toEqual([]);
    expect(sids((await search({ minTurnLatencyMs: 800 })).calls)).toEqual([C, B]);
    expect(sids((await search({ minTurnLatencyMs: 499 })).calls)).toEqual([C, B, A]);
    expect(sids((await search({ minTurnLatencyMs: 1200 })).calls)).toEqual([]); // above it, not at it
    expect(sids((await search({ minTurnLatencyMs: 0 })).calls)).toEqual([D, C, B, A]);
    expect(sids((await search({ state: 'in_progress' })).calls)).toEqual([E, D]);
    expect(sids((await search({ state: 'completed' })).calls)).toEqual([G, F, C, B, A]);
  });

  it('holds every filter given at once', async () => {
    expect(sids((await search({ agent: 'clinic', outcome: 'failed' })).calls)).toEqual([B]);
    expect(sids((await search({ agent: 'pharmacy', state: 'completed', minTurnLatencyMs: 800 })).calls)).toEqual([C]);
    expect(sids((await search({ agent: 'clinic', minTurnLatencyMs: 200, since: at(1) })).calls)).toEqual([B]);
    expect(sids((await search({ tool: 'lookup_order', endReason: 'model_unavailable', until: at(2 * MIN + 1), since: at(2 * MIN) })).calls)).toEqual([C]);
    expect(sids((await search({ tool: 'lookup_order', agent: 'clinic' })).calls)).toEqual([]);
  });

  it('sorts by start time, duration and cost both ways, ties by call SID in the same direction', async () => {
    const byStart = [...CALLS].sort((x, y) => x.startMs - y.startMs || (x.sid < y.sid ? -1 : 1)).map((c) => c.sid);
    expect(sids((await search({})).calls)).toEqual([...byStart].reverse());
    expect(sids((await search({}, { sort: 'started', dir: 'asc' })).calls)).toEqual(byStart);
    expect(byStart.slice(-2)).toEqual([F, G]); // the tie, in SID order

    // Duration: C 120 s, A 90 s, B 30 s, F = G 20 s; calls in progress (no duration) last both ways.
    expect(sids((await search({}, { sort: 'duration', dir: 'desc' })).calls)).toEqual([C, A, B, G, F, E, D]);
    expect(sids((await search({}, { sort: 'duration', dir: 'asc' })).calls)).toEqual([F, G, B, A, C, D, E]);

    const all = (await search({})).calls;
    const byCost = [...all].sort((x, y) => x.estimatedCostUsd - y.estimatedCostUsd || (x.callSid < y.callSid ? -1 : 1));
    expect(byCost.at(-1)!.callSid).toBe(A); // the one with half a million audio tokens
    expect(sids((await search({}, { sort: 'cost', dir: 'asc' })).calls)).toEqual(sids(byCost));
    expect(sids((await search({}, { sort: 'cost', dir: 'desc' })).calls)).toEqual(sids(byCost).reverse());
  });

  it('pages by limit and offset: hasMore until the last page, every call once, the same pages again', async () => {
    const whole = sids((await search({}, { sort: 'duration', dir: 'desc' })).calls);
    const pages: string[][] = [];
    const more: boolean[] = [];
    for (let offset = 0; offset < 8; offset += 2) {
      const p = await store.searchCalls({}, { sort: 'duration', dir: 'desc', limit: 2, offset });
      pages.push(sids(p.calls));
      more.push(p.hasMore);
    }
    expect(pages.flat()).toEqual(whole);
    expect(more).toEqual([true, true, true, false]);
    expect(pages.at(-1)).toHaveLength(1);
    const exact = await store.searchCalls({}, { limit: 7 });
    expect(exact.hasMore).toBe(false);
    expect(await store.searchCalls({}, { offset: 50 })).toEqual({ calls: [], hasMore: false });
    // Ties land the same way on every read: the F/G pair split across two pages.
    for (let i = 0; i < 3; i++) {
      expect(sids((await store.searchCalls({}, { sort: 'started', dir: 'asc', limit: 6 })).calls).at(-1)).toBe(F);
      expect(sids((await store.searchCalls({}, { sort: 'started', dir: 'asc', limit: 6, offset: 6 })).calls)).toEqual([G]);
    }
  });

  it('takes a limit of 1 to 200 only, and rejects other options with a clear error', async () => {
    const call = (o: SearchOptions) => Promise.resolve().then(() => store.searchCalls({}, o));
    for (const limit of [0, 201, 1.5, -1, Number.NaN]) {
      await expect(call({ limit })).rejects.toThrow(/limit must be a whole number from 1 to 200/);
    }
    await expect(call({ offset: -1 })).rejects.toThrow(/offset/);
    await expect(call({ sort: 'name' as never })).rejects.toThrow(/sorts by started, duration or cost/);
    await expect(call({ dir: 'up' as never })).rejects.toThrow(/asc or desc/);
    expect((await store.searchCalls({}, { limit: 200 })).calls).toHaveLength(7);
    expect((await store.searchCalls({}, { limit: 1 })).calls).toHaveLength(1);
    await expect(Promise.resolve().then(() => store.callsInProgress(0))).rejects.toThrow(/callsInProgress needs a whole limit from 1 to 200/);
  });

  it('lists calls in progress, newest first, at most the limit', async () => {
    expect(sids(await store.callsInProgress(10))).toEqual([E, D]);
    expect(sids(await store.callsInProgress(1))).toEqual([E]);
    const [e] = await store.callsInProgress(1);
    expect(e).toMatchObject({ from: NUMBER(4), state: 'in_progress', agent: 'clinic', durationMs: null });
    store.ended(E, endInfo(at(4 * MIN + 1000), 'caller_hangup'));
    expect(sids(await store.callsInProgress(10))).toEqual([D]);
  });

  it('counts calls started, ended and failed per bucket, with exact turn percentiles', async () => {
    const s = await store.stats(at(0), MIN);
    expect(s.bucketMs).toBe(MIN);
    expect(s.inProgress).toBe(2);
    expect(s.buckets.length).toBeGreaterThanOrEqual(60);
    expect(s.buckets[0]!.t).toBe(at(0).toISOString());
    expect(s.buckets[3]!.t).toBe(at(3 * MIN).toISOString());
    const col = (k: 'started' | 'ended' | 'failed') => s.buckets.slice(0, 8).map((b) => b[k]);
    expect(col('started')).toEqual([1, 1, 1, 1, 1, 2, 0, 0]);
    // A ends at 1:30, B at 1:30, C at 4:00 (failed), F and G at 5:20; B and C failed.
    expect(col('ended')).toEqual([0, 2, 0, 0, 1, 2, 0, 0]);
    expect(col('failed')).toEqual([0, 1, 0, 0, 1, 0, 0, 0]);
    const p = s.buckets.slice(0, 8).map((b) => [b.turnP50Ms, b.turnP95Ms]);
    // Minute 1: A's 300 (1:10) and 500 (1:20), B's 900 (1:10); minute 2: C's 1200; minute 3: D's 100.
    expect(p).toEqual([[null, null], [500, 900], [1200, 1200], [100, 100], [null, null], [null, null], [null, null], [null, null]]);
    expect(s.buckets.slice(8).every((b) => b.started === 0 && b.ended === 0 && b.turnP50Ms === null)).toBe(true);
  });

  it('gives p50 and p95 by nearest rank over ten turns in one bucket, counting a call begun before the window', async () => {
    const H = sid(99);
    store.answered(H, { from: '+15550000099', agent: 'clinic' });
    store.started(H, { streamSid: 'MZ99', audioMode: 'transcode', startedAt: at(10 * MIN - 5_000) });
    // Ten turns, 100 … 1000 ms, shuffled, all heard in minute 10 (the call began 5 s before it).
    for (const [i, ms] of [700, 100, 1000, 400, 300, 900, 200, 600, 800, 500].entries()) store.appendTurnLatency(H, turn(i + 1, ms, 6_000 + i * 1000));
    const s = await store.stats(at(10 * MIN), MIN);
    expect(s.buckets[0]).toMatchObject({ started: 0, turnP50Ms: 500, turnP95Ms: 1000 });
    expect(s.inProgress).toBe(3);
  });

  it('rejects a bad bucket size or a window of too many buckets', async () => {
    const call = (since: Date, ms: number) => Promise.resolve().then(() => store.stats(since, ms));
    await expect(call(at(0), 0)).rejects.toThrow(/bucket size/);
    await expect(call(at(0), 1.5)).rejects.toThrow(/bucket size/);
    await expect(call(new Date(Date.now() - 86_400_000), 1000)).rejects.toThrow(/at most 1000 buckets/);
    await expect(call(new Date(Number.NaN), MIN)).rejects.toThrow(/valid Date/);
  });
});

describe('percentile (nearest rank)', () => {
  it('picks the smallest value with at least p % at or below it', () => {
    const ten = [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000];
    expect(percentile(ten, 50)).toBe(500);
    expect(percentile(ten, 95)).toBe(1000);
    expect(percentile(ten, 90)).toBe(900);
    expect(percentile([42], 50)).toBe(42);
    expect(percentile([1, 2], 50)).toBe(1);
    expect(percentile([1, 2], 95)).toBe(2);
  });
});
