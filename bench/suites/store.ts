/**
 * store suite: what a call's record costs, SQLite against PostgreSQL, in the
 * same run.
 *
 * - call set-up on the call path: `answered` + `started` (the webhook and the
 *   stream's start) — memory only by contract, so this is what a call pays
 *   before its first audio; and the whole call path of a short call
 *   (set-up, 20 transcript lines, 2 tool calls, usage, `ended`);
 * - flush: writing 100 calls' worth of that to the database, per call, with
 *   the event-loop time it takes (SQLite writes synchronously; PostgreSQL
 *   waits on the server without holding the event loop).
 *
 * PostgreSQL is the local server (TEST_DATABASE_URL or
 * postgres://postgres@127.0.0.1:5432/test) in a schema of its own, dropped
 * after; the suite is skipped, with a message, when it does not answer.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import postgres from 'postgres';
import { loadConfig } from '../../src/config.js';
import { silentLogger } from '../../src/log.js';
import { PostgresCallStore } from '../../src/store/postgres.js';
import { createStoreRecorder } from '../../src/store/recorder.js';
import { SqliteCallStore } from '../../src/store/sqlite.js';
import type { CallStore } from '../../src/store/types.js';
import type { Result, RunOptions, Suite } from '../types.js';

const PG_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const KEY = Buffer.alloc(32, 3);

interface Figures {
  setupNs: number[];
  callPathNs: number[];
  flushWallNs: number[];
  flushLoopNs: number[];
}

function sid(i: number, tag: string): string {
  return `CA${tag}${String(i).padStart(32 - tag.length, '0')}`;
}

/** One short call's writes on the call path; returns [set-up ns, whole call path ns]. */
function oneCall(store: CallStore, callSid: string): [number, number] {
  const t0 = performance.now();
  const rec = createStoreRecorder(store, callSid, { From: '+15550001111', To: '+15550002222' });
  rec.started({ callSid, streamSid: `MZ${callSid.slice(2)}`, audioMode: 'transcode', startedAt: new Date(), model: 'gpt-realtime' });
  const t1 = performance.now();
  for (let k = 0; k < 20; k++) rec.transcript({ atMs: k * 1500, speaker: k % 2 ? 'assistant' : 'caller', text: `line ${k} of a short eligibility call` });
  for (let k = 0; k < 2; k++) {
    rec.toolCall({ callId: `c${k}`, name: 'check_eligibility', args: '{"member_id":"MB123456"}', ok: true, output: '{"status":"eligible"}', record: null, startedAtMs: 5000, durationMs: 20 });
  }
  rec.usage({ inputTextTokens: 400, inputAudioTokens: 700, inputCachedTokens: 200, outputTextTokens: 60, outputAudioTokens: 300 });
  rec.ended({ endedAt: new Date(), reason: 'caller_hangup', relay: { inbound: { p50Ms: 0.02, p99Ms: 0.1 }, outbound: { p50Ms: 0.02, p99Ms: 0.1 } }, protocolErrors: 0 });
  const t2 = performance.now();
  return [(t1 - t0) * 1e6, (t2 - t0) * 1e6];
}

/** Event-loop time of an awaited operation: wall time minus the time the loop was free to run a probe timer. */
async function loopBusyNs(run: () => Promise<unknown> | unknown): Promise<{ wallNs: number; loopNs: number }> {
  let lastTick = performance.now();
  let idle = 0;
  const probe = setInterval(() => {
    const now = performance.now();
    idle += Math.min(now - lastTick, 1.5); // a timer that fired about on time means the loop was free
    lastTick = now;
  }, 1);
  const t0 = performance.now();
  lastTick = t0;
  await run();
  const wall = performance.now() - t0;
  clearInterval(probe);
  return { wallNs: wall * 1e6, loopNs: Math.max(0, wall - idle) * 1e6 };
}

async function measure(open: () => Promise<CallStore>, tag: string, rounds: number, calls: number): Promise<Figures> {
  const f: Figures = { setupNs: [], callPathNs: [], flushWallNs: [], flushLoopNs: [] };
  const store = await open();
  try {
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < calls; i++) {
        const [setup, all] = oneCall(store, sid(r * calls + i, tag));
        f.setupNs.push(setup);
        f.callPathNs.push(all);
      }
      const { wallNs, loopNs } = await loopBusyNs(() => store.flush());
      f.flushWallNs.push(wallNs / calls);
      f.flushLoopNs.push(loopNs / calls);
    }
  } finally {
    await store.close();
  }
  return f;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const p99 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil(xs.length * 0.99) - 1)] ?? NaN;

async function pgAnswers(): Promise<string | undefined> {
  const sql = postgres(PG_URL, { max: 1, connect_timeout: 3, onnotice: () => {} });
  try {
    await sql`select 1`;
    return undefined;
  } catch (err) {
    return `PostgreSQL does not answer at ${PG_URL.replace(/\/\/[^@]*@/, '//')}: ${err instanceof Error ? err.message : String(err)}`;
  } finally {
    await sql.end({ timeout: 1 }).catch(() => {});
  }
}

export const storeSuite: Suite = {
  name: 'store',
  description: 'call records: call-path set-up cost and flush cost per call, SQLite vs PostgreSQL, same run',
  async run(opts: RunOptions): Promise<Result[]> {
    const why = await pgAnswers();
    if (why) {
      opts.log(`store: skipped (${why})`);
      return [];
    }
    const rounds = opts.quick ? 3 : 8;
    const calls = 100;
    const prices = loadConfig({}).prices;
    const dir = mkdtempSync(join(tmpdir(), 'callbridge-bench-store-'));
    const schema = `cbbench_${process.pid}_${randomBytes(3).toString('hex')}`;
    const results: Result[] = [];
    try {
      opts.log('store: SQLite…');
      const lite = await measure(async () => new SqliteCallStore({ path: join(dir, 'b.db'), transcriptKey: KEY, prices, log: silentLogger }), 'L', rounds, calls);
      opts.log('store: PostgreSQL…');
      const pg = await measure(() => PostgresCallStore.open({ url: PG_URL, schema, transcriptKey: KEY, prices, log: silentLogger, instanceId: 'bench' }), 'P', rounds, calls);
      for (const [k, f, name] of [['sqlite', lite, 'SQLite'], ['postgres', pg, 'PostgreSQL']] as const) {
        const peer = k === 'postgres' ? 'sqlite' : undefined;
        results.push(
          { suite: 'store', ours: k === 'postgres', id: `store.${k}.setup`, name: `call set-up on the call path (answered + started), ${name}`, group: 'call records: call path (memory only)', per: 'call', medianNs: median(f.setupNs), p99Ns: p99(f.setupNs), samples: f.setupNs.length, ...(peer ? { peer: `store.${peer}.setup` } : {}) },
          { suite: 'store', ours: k === 'postgres', id: `store.${k}.callPath`, name: `a short call's whole call path (set-up, 20 lines, 2 tools, end), ${name}`, group: 'call records: call path (memory only)', per: 'call', medianNs: median(f.callPathNs), p99Ns: p99(f.callPathNs), samples: f.callPathNs.length, ...(peer ? { peer: `store.${peer}.callPath` } : {}) },
          { suite: 'store', ours: k === 'postgres', id: `store.${k}.flush`, name: `flush, per call (100 calls a flush, sealed), ${name}`, group: 'call records: background flush', per: 'call', medianNs: median(f.flushWallNs), p99Ns: p99(f.flushWallNs), samples: f.flushWallNs.length, ...(peer ? { peer: `store.${peer}.flush` } : {}) },
          { suite: 'store', ours: k === 'postgres', id: `store.${k}.flushLoop`, name: `event-loop time of that flush, per call, ${name}`, group: 'call records: background flush', per: 'call', medianNs: median(f.flushLoopNs), p99Ns: p99(f.flushLoopNs), samples: f.flushLoopNs.length, ...(peer ? { peer: `store.${peer}.flushLoop` } : {}) },
        );
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
      const sql = postgres(PG_URL, { max: 1, onnotice: () => {} });
      await sql.unsafe(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => {});
      await sql.end({ timeout: 2 }).catch(() => {});
    }
    return results;
  },
};
