/**
 * Frame-level timing on top of tinybench.
 *
 * A 20 ms frame costs from ~100 ns to ~100 µs, and a timer read costs tens of
 * ns, so each tinybench iteration runs a task `reps` times (chosen so one
 * iteration lasts ~TARGET_ITERATION_NS) and the figures are divided by reps.
 * All tasks run once per round and rounds interleave the tasks. A task's
 * figure is the LOWEST of its round medians: other processes on a shared
 * 2-core box only ever add time, a real regression slows every round, so the
 * least-disturbed round is the most repeatable estimate of what the code
 * costs. p99 is the median of the round p99s (there the noise is the point).
 */
import { Bench } from 'tinybench';
import type { Result, RunOptions } from './types.js';

export interface FrameTask {
  id: string;
  name: string;
  group: string;
  /** Does one unit of work (one 20 ms frame). Must not allocate unless the measured API does. */
  fn: () => unknown;
  peer?: string;
  ours?: boolean;
  note?: string;
}

const TARGET_ITERATION_NS = 25_000;
const MAX_REPS = 20_000;

/** Calls fn for ~ms milliseconds (JIT warm-up) and returns ns per call. */
function probe(fn: () => unknown, ms: number): number {
  let calls = 0;
  const t0 = process.hrtime.bigint();
  const end = t0 + BigInt(Math.round(ms * 1e6));
  let now = t0;
  while (now < end) {
    for (let i = 0; i < 16; i++) fn();
    calls += 16;
    now = process.hrtime.bigint();
  }
  return Number(now - t0) / calls;
}

/** Percentile q of an ascending array (nearest rank); NaN for an empty one. */
export function pct(sorted: readonly number[], q: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]! : NaN;
}

/** The median; NaN for an empty array. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Sink for results so the JIT cannot drop the work. */
export let blackhole: unknown;

export async function measureFrames(suite: string, per: string, tasks: FrameTask[], opts: RunOptions): Promise<Result[]> {
  const batched = tasks.map((task) => {
    const nsPerCall = probe(task.fn, opts.quick ? 20 : 60);
    const reps = Math.max(1, Math.min(MAX_REPS, Math.ceil(TARGET_ITERATION_NS / nsPerCall)));
    const fn = task.fn;
    const batch = (): void => {
      let last: unknown;
      for (let i = 0; i < reps; i++) last = fn();
      blackhole = last;
    };
    return { task, reps, batch, medians: [] as number[], p99s: [] as number[], samples: 0 };
  });

  for (let round = 0; round < opts.rounds; round++) {
    const bench = new Bench({
      name: `${suite} round ${round + 1}`,
      time: opts.timeMs,
      warmupTime: round === 0 ? opts.warmupMs : Math.min(opts.warmupMs, 10), // JIT is warm after round 1
      timestampProvider: 'hrtimeNow',
      throws: true,
    });
    for (const b of batched) bench.add(b.task.id, b.batch);
    opts.log(`  ${suite}: round ${round + 1}/${opts.rounds}, ${batched.length} tasks x ${opts.timeMs} ms`);
    await bench.run();
    for (const b of batched) {
      const t = bench.getTask(b.task.id);
      const r = t?.result;
      if (!r || !('latency' in r)) throw new Error(`bench task ${b.task.id} produced no statistics (state ${r?.state})`);
      // latency is in ms per iteration of `reps` calls
      b.medians.push((r.latency.p50 * 1e6) / b.reps);
      b.p99s.push((r.latency.p99 * 1e6) / b.reps);
      b.samples += r.latency.samplesCount;
    }
  }

  return batched.map((b) => ({
    id: b.task.id,
    suite,
    name: b.task.name,
    group: b.task.group,
    per,
    medianNs: Math.min(...b.medians),
    p99Ns: median(b.p99s),
    samples: b.samples,
    peer: b.task.peer,
    ours: b.task.ours,
    extra: { repsPerSample: b.reps, roundMediansNs: b.medians.map((x) => Math.round(x * 10) / 10).join(' ') },
    note: b.task.note,
  }));
}
