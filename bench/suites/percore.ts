/**
 * Calls-per-core suite (issue 21): the most concurrent calls one pinned core
 * carries, per audio mode.
 *
 * Each step is one relay run (measureRelay in ./relay.ts) of N concurrent
 * calls (a greeting, three 0.9 s utterances and their replies: ~14 s),
 * after warm-up calls that are not counted (PercorePlan.warmupCalls), the
 * relay's child process pinned to CPU 0 and the load generator to CPU 1: the
 * simulated callers in worker processes (../loadgen.ts), the model stand-in
 * in its own process (../loadgen-model.ts), and this process, which only
 * runs the step. The suite keeps to a time budget (PercorePlan.budgetMs). The count steps up per mode
 * (capacity = transcode with INBOUND_BATCH_MS=100, passthrough, transcode);
 * a mode stops at its first step that does not pass.
 *
 * A step passes when the relay carried every call within the limits: relay-
 * added p99 ≤ P99_LIMIT_MS each way, 0 frames lost in and out, 0 outbound
 * stalls, every call ended, no protocol violation — AND the load generator
 * kept real time (the run's `realtime` ≥ MIN_GENERATOR_REALTIME). A step
 * where the generator fell behind is "load generator behind": it ends the
 * mode (a higher count only falls further behind) but is not the relay's
 * failure, and the result says the count is a lower bound set by the
 * generator, not by the relay. A step that throws (a relay that died, a
 * caller that could not connect) ends the mode with the error's sentence.
 *
 * The floor relay (../peers/floor-relay.ts: callbridge's edge and model
 * writer with no call logic) is stepped too, in capacity mode ('floor'): the
 * most calls a core carries before any call logic is added, so the capacity
 * target is read against what this edge and machine allow at all.
 *
 * Figures: per mode, the last passing count (unit count, per 'core'; the
 * same as core time per call-second, 1 s ÷ count, for "at least" limits), how
 * the mode stopped, and every step's figures (realtime, relay run-queue wait,
 * p99 each way, frames lost, stalls, CPU per call-second) in `extra` and in
 * the step table under the bench's table.
 */
import { readFileSync } from 'node:fs';
import { isClean, measureRelay, MAX_RELAY_RUNQ, type RunFigures, type RunSpec } from './relay.js';
import { processRunqWaitNs } from '../proc.js';
import { MAX_EARLY_MS } from '../../src/call/inbound.js';
import { loadgenPool } from '../loadgen.js';
import { standInProcess } from '../loadgen-model.js';
import type { Result, RunOptions, Suite } from '../types.js';

/** Relay-added latency limit, each way, p99, ms (issue 21: calls per core). */
export const P99_LIMIT_MS = 5;
/** Least share of caller frames sent on time for a step to count as the relay's (below: "load generator behind"). */
export const MIN_GENERATOR_REALTIME = 0.97;
/**
 * Model session connect time, p99, ms, past which a step measures the model side, not the relay:
 * callbridge holds a caller's audio for MAX_EARLY_MS while its session connects, so a slower
 * connect loses audio whatever the relay does, and a relay that holds more (the floor holds it
 * all) carries calls whose model side was missing for a good part of a ~14 s call, not the step's
 * load. The model stand-in runs on the generator's core, and Node accepts one connection per
 * event-loop turn (libuv ≥ 1.45): when that core is saturated, the relays' connects wait in the
 * stand-in's accept queue (seen at 800 calls: ~480 connections queued for seconds, connects of
 * 5–18 s) while the relays' own loops answer in well under a millisecond.
 */
export const MODEL_CONNECT_P99_LIMIT_MS = MAX_EARLY_MS;
/** Issue 21's target: calls per core in capacity mode (printed as target.percore.cap>=800, not checked). */
export const CAPACITY_TARGET_CALLS = 800;
/** Capacity mode's inbound batch (the relay suite's capacityBatchMs). */
const CAPACITY_BATCH_MS = 100;

/** callbridge's three modes, and 'floor': the floor relay in capacity mode. */
export type PercoreMode = 'capacity' | 'passthrough' | 'transcode' | 'floor';
export const PERCORE_MODES: readonly PercoreMode[] = ['capacity', 'passthrough', 'transcode', 'floor'];

export interface PercorePlan {
  /** Concurrent call counts to try, per mode, in rising order. */
  steps: Record<PercoreMode, number[]>;
  /** Caller utterances per call (1: short calls). */
  utterances: number;
  /** Per mode, how many "load generator behind" steps are run once more (a burst of other work on a shared box). */
  retries: number;
  /**
   * Calls through each step's relay before its measured window (RunSpec.warmupCalls, as in the relay
   * suite): a step reads a running relay, whose code is compiled and optimised, not a fresh process
   * taking its first calls, hundreds at once, while V8 compiles the code that serves them.
   */
  warmupCalls: number;
  /**
   * The suite's time budget, ms: a step is not started when the time so far
   * plus the last step's run time would pass it (the mode stops there, said
   * as such). Steps run ~20 s each (a ~14 s call of three turns, the ramp,
   * set-up and teardown).
   */
  budgetMs: number;
}

/**
 * Three utterances a call (a greeting and three turns, ~14 s): per-call set-up
 * (webhook, upgrade, model session) weighs little beside the audio, as in real
 * calls of minutes.
 */
export function plan(quick: boolean): PercorePlan {
  return quick
    ? { utterances: 3, retries: 0, warmupCalls: 30, budgetMs: 180_000, steps: { capacity: [400, 800], passthrough: [400], transcode: [400], floor: [800] } }
    : { utterances: 3, retries: 1, warmupCalls: 30, budgetMs: 450_000, steps: { capacity: [400, 600, 800, 1000, 1200], passthrough: [300, 600, 900, 1200], transcode: [300, 600, 900], floor: [600, 800, 1000, 1200] } };
}

/** Whether a step fits the budget: `elapsedMs` run so far, `lastStepMs` the last step's run time (0 before the first). */
export function fitsBudget(elapsedMs: number, lastStepMs: number, budgetMs: number): boolean {
  return elapsedMs + lastStepMs <= budgetMs;
}

/** How a step came out. */
export type Verdict = 'pass' | 'relay failed' | 'load generator behind' | 'error';

export interface Step {
  mode: PercoreMode;
  calls: number;
  verdict: Verdict;
  /** Why it did not pass (limits exceeded, or the error's sentence). */
  reasons: string[];
  /** Run once more (the generator fell behind): this step's verdict does not decide the mode. */
  retried?: boolean;
  /** The run's figures; undefined when the run threw. */
  figures?: RunFigures;
  /**
   * The load generator over the step, all on CPU 1 (the caller workers of bench/loadgen.ts, the
   * model stand-in's process of bench/loadgen-model.ts, and this process, which only runs the
   * step): CPU ÷ wall time (one core = 1), this process's run-queue wait ÷ wall time, and CPU ms
   * per call-second of each part.
   */
  generator?: {
    cpuShare: number;
    /** CPU 1's busy time not the generator's ÷ wall time: other work on the generator's core (undefined without /proc/stat). */
    otherShare?: number;
    runqShare: number; callersMsPerCallS: number; standInMsPerCallS: number; parentMsPerCallS: number; workers: number; skippedLate: number;
    /** How late the stand-in's event loop ran over the step (warm-up included), ms. */
    standInLoopDelayMs?: { p99: number; max: number };
  };
}

/** Short key of a mode, as in result ids. */
const MODE_KEY: Record<PercoreMode, string> = { capacity: 'cap', passthrough: 'pt', transcode: 'tc', floor: 'floorcap' };

/** Modes that join caller frames into INBOUND_BATCH_MS appends: callbridge's capacity mode and the floor's. */
const batched = (mode: PercoreMode): boolean => mode === 'capacity' || mode === 'floor';

function specFor(mode: PercoreMode, calls: number, p: PercorePlan, callers: RunSpec['callers'], standIn: RunSpec['standIn']): RunSpec {
  const base: RunSpec = {
    relay: mode === 'floor' ? 'floor' : 'callbridge',
    mode: mode === 'passthrough' ? 'passthrough' : 'transcode',
    calls,
    utterances: p.utterances,
    warmupCalls: p.warmupCalls,
    pinned: true,
    callers,
    standIn,
  };
  return batched(mode) ? { ...base, inboundBatchMs: CAPACITY_BATCH_MS } : base;
}

/** The relay's model connect time, p99, ms; undefined when it reported none (a relay that does not time them, or no connect). */
function modelConnectP99(stats: Pick<RunFigures['stats'], 'modelConnect'>): number | undefined {
  const c = stats.modelConnect;
  return c && c.count > 0 ? c.p99Ms : undefined;
}

/**
 * Judges one run against the limits. Pure: the verdict is the relay's only
 * when the generator kept real time and its model side took the relay's
 * sessions within MODEL_CONNECT_P99_LIMIT_MS (p99); otherwise it is "load
 * generator behind" whatever the relay's figures were (they are still reported).
 */
export function judge(
  f: Pick<RunFigures, 'realtime' | 'framesLostIn' | 'framesLostOut' | 'cancelled' | 'violations'> & { stats: Pick<RunFigures['stats'], 'inbound' | 'outbound' | 'callsEnded' | 'modelConnect'> },
  calls: number,
  /**
   * Whether outbound stalls are the relay's. Not for the floor relay: it forwards the model's audio
   * unpaced, so every hiccup of the stand-in (in the generator's process, on CPU 1) reaches the
   * caller as a gap, where a paced relay's lead covers it.
   */
  stallsAreTheRelays = true,
): { verdict: Verdict; reasons: string[] } {
  const reasons: string[] = [];
  if (f.stats.inbound.p99Ms > P99_LIMIT_MS) reasons.push(`relay-added p99 Twilio → model ${f.stats.inbound.p99Ms.toFixed(2)} ms > ${P99_LIMIT_MS} ms`);
  if (f.stats.outbound.p99Ms > P99_LIMIT_MS) reasons.push(`relay-added p99 model → Twilio ${f.stats.outbound.p99Ms.toFixed(2)} ms > ${P99_LIMIT_MS} ms`);
  if (f.framesLostIn > 0) reasons.push(`${f.framesLostIn} inbound frames lost`);
  if (f.framesLostOut > 0) reasons.push(`${f.framesLostOut} outbound frames lost`);
  if (f.cancelled > 0 && stallsAreTheRelays) reasons.push(`${f.cancelled} outbound stalls ≥ 400 ms`);
  if (f.violations > 0) reasons.push(`${f.violations} protocol violations seen by the callers`);
  if (f.stats.callsEnded < calls) reasons.push(`only ${f.stats.callsEnded} of ${calls} calls ended`);
  if (f.realtime < MIN_GENERATOR_REALTIME) {
    return { verdict: 'load generator behind', reasons: [`load generator sent ${(f.realtime * 100).toFixed(1)} % of frames on time (< ${MIN_GENERATOR_REALTIME * 100} %)`, ...reasons] };
  }
  // A step whose model side was too slow to take its sessions says nothing about the relay, passed or failed.
  const connectP99 = modelConnectP99(f.stats);
  if (connectP99 !== undefined && connectP99 > MODEL_CONNECT_P99_LIMIT_MS) {
    const why = `the model stand-in took ${Math.round(connectP99)} ms (p99) to take a session (> ${MODEL_CONNECT_P99_LIMIT_MS} ms, the audio the relay holds while it connects): its core was too busy to accept connections`;
    return { verdict: 'load generator behind', reasons: [why, ...reasons] };
  }
  return { verdict: reasons.length ? 'relay failed' : 'pass', reasons };
}

/** The last passing count of a mode and how the mode stopped. */
export function summarize(steps: Step[]): { calls: number; stoppedBy: string } {
  let calls = 0;
  for (const s of steps) {
    if (s.retried) continue;
    if (s.verdict !== 'pass') {
      const at = `at ${s.calls} calls`;
      const starved = s.generator !== undefined && (s.generator.runqShare > MAX_RELAY_RUNQ || (s.generator.otherShare ?? 0) > MAX_RELAY_RUNQ);
      const stoppedBy =
        s.verdict === 'load generator behind'
          ? `load generator behind ${at}${starved ? ', starved by other work on its core' : ''} (a lower bound set by the generator, not by the relay)`
          : s.verdict === 'error'
            ? `error ${at}: ${s.reasons.join('; ')}`
            : `relay failed ${at}: ${s.reasons.join('; ')}`;
      return { calls, stoppedBy };
    }
    calls = s.calls;
  }
  return { calls, stoppedBy: steps.length ? 'every step passed (the most tried is a lower bound)' : 'no step run' };
}

let lastSteps: Step[] = [];

const cpuMsPerCallSecond = (f: RunFigures): number => f.cpuUs / 1000 / f.callSeconds;

/** Busy (non-idle, non-iowait) time of CPU `n` since boot, ms (/proc/stat, USER_HZ = 100 assumed); undefined if unreadable. */
export function cpuBusyMs(n: number, stat?: string): number | undefined {
  try {
    const line = (stat ?? readFileSync('/proc/stat', 'utf8')).split('\n').find((l) => l.startsWith(`cpu${n} `));
    if (!line) return undefined;
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    const busy = f.reduce((a, v, i) => (i === 3 || i === 4 || i >= 8 ? a : a + v), 0);
    return busy * 10;
  } catch {
    return undefined;
  }
}

const generatorMsPerCallS = (g: NonNullable<Step['generator']>): number => g.callersMsPerCallS + g.standInMsPerCallS + g.parentMsPerCallS;

function stepLabel(s: Step): string {
  const f = s.figures;
  if (!f) return `${s.calls}: error`;
  const g = s.generator
    ? `, generator CPU ${(s.generator.cpuShare * 100).toFixed(0)} % of its core (callers ${s.generator.callersMsPerCallS.toFixed(2)} + stand-in ${s.generator.standInMsPerCallS.toFixed(2)} + bench ${s.generator.parentMsPerCallS.toFixed(2)} ms per call-second = ${(generatorMsPerCallS(s.generator) / cpuMsPerCallSecond(f)).toFixed(2)}× the relay's ${cpuMsPerCallSecond(f).toFixed(2)}; ${s.generator.workers} workers, ${s.generator.skippedLate} frames skipped late), run-queue wait ${(s.generator.runqShare * 100).toFixed(0)} %${s.generator.otherShare !== undefined ? `, other work on CPU 1 ${(s.generator.otherShare * 100).toFixed(0)} %` : ''}`
    : '';
  const connectP99 = modelConnectP99(f.stats);
  const connect = connectP99 !== undefined ? `, model connect p99 ${Math.round(connectP99)} ms` : '';
  const standInLate = s.generator?.standInLoopDelayMs ? `, stand-in loop late p99 ${Math.round(s.generator.standInLoopDelayMs.p99)} ms` : '';
  return `${s.calls}: ${s.verdict} (realtime ${f.realtime.toFixed(3)}${g}${standInLate}${connect}, p99 in/out ${f.stats.inbound.p99Ms.toFixed(2)}/${f.stats.outbound.p99Ms.toFixed(2)} ms, lost ${f.framesLostIn}/${f.framesLostOut}, stalls ${f.cancelled})`;
}

export const percoreSuite: Suite = {
  name: 'percore',
  description: `calls per core: the most concurrent calls the relay pinned to CPU 0 carries (load generator on CPU 1) with relay-added p99 ≤ ${P99_LIMIT_MS} ms and no frame lost, per mode (capacity, passthrough, transcode), and the floor relay's in capacity mode`,
  async run(opts: RunOptions): Promise<Result[]> {
    const p = plan(opts.quick);
    const steps: Step[] = [];
    const results: Result[] = [];
    const suiteT0 = performance.now();
    let lastStepMs = 0;
    for (const mode of PERCORE_MODES) {
      const modeSteps: Step[] = [];
      let retries = p.retries;
      let outOfTime: number | undefined;
      for (let i = 0; i < p.steps[mode].length; i++) {
        const calls = p.steps[mode][i]!;
        if (!fitsBudget(performance.now() - suiteT0, lastStepMs, p.budgetMs)) {
          outOfTime = calls;
          opts.log(`percore: ${mode} ${calls}: not run (the suite's ${p.budgetMs / 1000} s budget)`);
          break;
        }
        let step: Step;
        const t0 = performance.now();
        try {
          // The generator's own load: a generator at ~100 % of its core fell behind by itself; one
          // with a large run-queue wait was starved by other work on the box.
          const cpu0 = process.cpuUsage();
          const runq0 = processRunqWaitNs(process.pid);
          const core0 = cpuBusyMs(1);
          // The callers run in worker processes and the model stand-in in its own, all pinned with this one to CPU 1.
          const pool = loadgenPool({ cpu: '1' });
          const standIn = standInProcess({ cpu: '1' });
          const figures = await measureRelay(specFor(mode, calls, p, pool, standIn), opts.log);
          const wallMs = performance.now() - t0;
          const cpu = process.cpuUsage(cpu0);
          const runq1 = processRunqWaitNs(process.pid);
          const ownMs = (cpu.user + cpu.system) / 1000;
          const workersMs = (pool.last?.workersCpuUs ?? 0) / 1000;
          const standInMs = (standIn.last?.cpuUs ?? 0) / 1000;
          const core1 = cpuBusyMs(1);
          const generator = {
            otherShare: core0 !== undefined && core1 !== undefined ? Math.max(0, core1 - core0 - ownMs - workersMs - standInMs) / wallMs : undefined,
            cpuShare: (ownMs + workersMs + standInMs) / wallMs,
            runqShare: runq0 !== undefined && runq1 !== undefined ? (runq1 - runq0) / 1e6 / wallMs : 0,
            callersMsPerCallS: workersMs / figures.callSeconds,
            standInMsPerCallS: standInMs / figures.callSeconds,
            parentMsPerCallS: ownMs / figures.callSeconds,
            workers: pool.last?.workers ?? 0,
            skippedLate: pool.last?.framesSkippedLate ?? 0,
            standInLoopDelayMs: standIn.last?.loopDelayMs,
          };
          step = { mode, calls, figures, generator, ...judge(figures, calls, mode !== 'floor') };
        } catch (e) {
          step = { mode, calls, verdict: 'error', reasons: [e instanceof Error ? e.message : String(e)] };
        }
        lastStepMs = performance.now() - t0;
        modeSteps.push(step);
        opts.log(`percore: ${mode} ${stepLabel(step)}${step.reasons.length ? `: ${step.reasons.join('; ')}` : ''}`);
        if (step.verdict === 'load generator behind' && retries > 0) {
          // Other work on a shared box comes in bursts: one more try before the generator's limit is taken as found.
          retries--;
          step.retried = true;
          opts.log(`percore: ${mode} ${calls}: once more`);
          i--;
          continue;
        }
        if (step.verdict !== 'pass') break;
      }
      steps.push(...modeSteps);
      const summary = summarize(modeSteps);
      const { calls } = summary;
      const stoppedBy =
        outOfTime === undefined || !modeSteps.every((s) => s.verdict === 'pass' || s.retried)
          ? summary.stoppedBy
          : modeSteps.length === 0
            ? `not run (the suite's time budget)`
            : `every step run passed; ${outOfTime} calls not run (the suite's time budget): a lower bound`;
      const last = modeSteps.filter((s) => s.verdict === 'pass').at(-1)?.figures;
      // The same figure as core time per call-second (1 s of one core ÷ the calls it carried), so that
      // thresholds.json, whose ratios are "at most", can say "at least N calls": ≤ 1e9/N ns. No
      // passing step: no such result (a missing result fails a check, naming it).
      if (calls > 0) results.push({
        suite: 'percore',
        ours: true,
        id: `percore.${MODE_KEY[mode]}.corePerCall`,
        name: `core time per call-second at the most calls one core carried, ${mode} (1 s ÷ ${calls})`,
        group: `calls per core (relay pinned to CPU 0, load generator on CPU 1; p99 ≤ ${P99_LIMIT_MS} ms each way, 0 frames lost)`,
        per: 'call-second',
        medianNs: 1e9 / calls,
        samples: modeSteps.length,
      });
      results.push({
        suite: 'percore',
        ours: true,
        id: `percore.${MODE_KEY[mode]}.calls`,
        name: `calls per core, ${mode === 'floor' ? `the floor relay (no call logic), capacity` : mode}${batched(mode) ? ` (transcode, INBOUND_BATCH_MS=${CAPACITY_BATCH_MS})` : ''}: last passing step (how it stopped: below the table)`,
        group: `calls per core (relay pinned to CPU 0, load generator on CPU 1; p99 ≤ ${P99_LIMIT_MS} ms each way, 0 frames lost)`,
        per: 'core',
        unit: 'count',
        medianNs: calls,
        samples: modeSteps.length,
        note: stoppedBy,
        extra: {
          stoppedBy,
          steps: modeSteps.map(stepLabel).join('; '),
          ...(last
            ? {
                inP99Ms: Number(last.stats.inbound.p99Ms.toFixed(3)),
                outP99Ms: Number(last.stats.outbound.p99Ms.toFixed(3)),
                cpuMsPerCallSecond: Number(cpuMsPerCallSecond(last).toFixed(3)),
                realtime: Number(last.realtime.toFixed(3)),
              }
            : {}),
        },
      });
    }
    lastSteps = steps;
    return results;
  },
  conclusions(results: Result[]): string[] {
    if (!lastSteps.length) return [];
    const by = new Map(results.map((r) => [r.id, r]));
    const lines: string[] = [];
    const summary = PERCORE_MODES
      .map((m) => {
        const r = by.get(`percore.${MODE_KEY[m]}.calls`);
        return r ? `${m} ${r.medianNs} (${r.extra?.stoppedBy ?? ''})` : undefined;
      })
      .filter((s) => s !== undefined);
    lines.push(`percore: calls per core (relay on CPU 0, load generator on CPU 1, p99 ≤ ${P99_LIMIT_MS} ms each way, 0 lost, generator realtime ≥ ${MIN_GENERATOR_REALTIME}): ${summary.join('; ')}`);
    const floor = by.get('percore.floorcap.calls');
    const cap = by.get('percore.cap.calls');
    if (floor && cap) {
      const target = CAPACITY_TARGET_CALLS;
      // The step that decided the floor's count (as summarize reads it): its verdict, not its sentence.
      const floorStop = lastSteps.find((s) => s.mode === 'floor' && !s.retried && s.verdict !== 'pass');
      const capStop = lastSteps.find((s) => s.mode === 'capacity' && !s.retried && s.verdict !== 'pass');
      let reach: string;
      if (floor.medianNs >= target && cap.medianNs < target && capStop?.verdict === 'load generator behind') {
        reach = `the floor carries the ${target}-call target; callbridge's count is a lower bound: at ${capStop.calls} calls the load generator fell behind (${capStop.reasons[0] ?? ''}), so that step says nothing about callbridge`;
      } else if (floor.medianNs >= target) {
        reach = `the floor carries the ${target}-call target, so what callbridge misses of it is its call logic's`;
      } else if (floorStop?.verdict === 'relay failed') {
        reach = `the floor itself failed below the ${target}-call target: on this machine no call layer on this edge and model writer reaches it`;
      } else {
        reach = `the floor's count is a lower bound (${String(floor.extra?.stoppedBy ?? '')})`;
      }
      lines.push(`percore: capacity mode, calls per core: callbridge ${cap.medianNs}, the floor relay ${floor.medianNs} (no call logic, same steps): ${reach}`);
    }
    const hdr = ['mode', 'calls', 'verdict', 'realtime', 'gen CPU/other CPU1', 'gen ÷ relay', 'relay runq', 'model connect p99 ms', 'stand-in late p99 ms', 'in p50/p99 ms', 'out p50/p99 ms', 'lost in/out', 'stalls', 'CPU ms/call-s', 'relay CPU share'];
    const rows = lastSteps.map((s): string[] => {
      const f = s.figures;
      if (!f) return [s.mode, String(s.calls), s.verdict, ...hdr.slice(3).map(() => '-')];
      // Share of one core the relay used over the run (CPU time ÷ wall time of the calls).
      const coreShare = f.cpuUs / 1000 / f.wallMs;
      return [
        s.mode,
        String(s.calls),
        `${s.verdict}${s.retried ? ' (retried)' : ''}`,
        f.realtime.toFixed(3),
        s.generator ? `${(s.generator.cpuShare * 100).toFixed(0)} %/${s.generator.otherShare !== undefined ? (s.generator.otherShare * 100).toFixed(0) : '?'} %` : '-',
        s.generator ? `${(generatorMsPerCallS(s.generator) / cpuMsPerCallSecond(f)).toFixed(2)}×` : '-',
        `${f.relayRunqShare.toFixed(2)}${f.relayRunqShare > MAX_RELAY_RUNQ ? '!' : ''}`,
        modelConnectP99(f.stats)?.toFixed(0) ?? '-',
        s.generator?.standInLoopDelayMs ? String(Math.round(s.generator.standInLoopDelayMs.p99)) : '-',
        `${f.stats.inbound.p50Ms.toFixed(2)}/${f.stats.inbound.p99Ms.toFixed(2)}`,
        `${f.stats.outbound.p50Ms.toFixed(2)}/${f.stats.outbound.p99Ms.toFixed(2)}`,
        `${f.framesLostIn}/${f.framesLostOut}`,
        String(f.cancelled),
        cpuMsPerCallSecond(f).toFixed(2),
        `${(coreShare * 100).toFixed(0)} %`,
      ];
    });
    const w = hdr.map((h, c) => Math.max([...h].length, ...rows.map((r) => [...r[c]!].length)));
    const fmt = (r: string[]) => r.map((cell, c) => (c <= 2 ? cell.padEnd(w[c]!) : cell.padStart(w[c]!))).join('  ');
    lines.push(fmt(hdr), ...rows.map(fmt));
    // What the relay's CPU alone allows: one core (1000 ms a second) ÷ its CPU per call-second at the
    // mode's highest step run, whatever that step's verdict. An estimate, not a measured count (latency
    // and the generator are not in it); a disturbed step reads CPU per call-second low or high.
    const estimate = PERCORE_MODES
      .map((m) => {
        const f = lastSteps.filter((s) => s.mode === m && s.figures).at(-1);
        return f?.figures ? `${m} ~${Math.floor(1000 / cpuMsPerCallSecond(f.figures))} (${cpuMsPerCallSecond(f.figures).toFixed(2)} ms per call-second at ${f.calls} calls)` : undefined;
      })
      .filter((x) => x !== undefined);
    if (estimate.length) lines.push(`percore: calls one core's CPU allows (estimate: 1000 ms ÷ relay CPU per call-second at the highest step run): ${estimate.join('; ')}`);
    const behind = lastSteps.filter((s) => s.verdict === 'load generator behind' && !s.retried);
    if (behind.length) {
      lines.push(
        `percore: the load generator (one core) fell behind real time at ${behind
          .map((s) => `${s.mode} ${s.calls}${s.generator ? ` (its CPU ${(s.generator.cpuShare * 100).toFixed(0)} % of a core, run-queue wait ${(s.generator.runqShare * 100).toFixed(0)} %)` : ''}`)
          .join(', ')}: those counts say nothing about the relay: that mode's figure is a lower bound of the relay's, set by the generator (or by other work on the box, when its run-queue wait is high)`,
      );
    }
    const disturbed = lastSteps.filter((s) => s.figures && !isClean(s.figures) && s.figures.relayRunqShare > MAX_RELAY_RUNQ);
    if (disturbed.length) {
      lines.push(
        `percore: ! the relay waited for CPU 0 more than ${MAX_RELAY_RUNQ * 100} % of the time at ${disturbed.map((s) => `${s.mode} ${s.calls}`).join(', ')} (other work on its core, or its own threads)`,
      );
    }
    return lines;
  },
};
