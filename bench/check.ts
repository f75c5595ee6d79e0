/**
 * Regression check: ratios between results of one run against the limits in
 * bench/thresholds.json. Pure functions; bench/run.ts does the I/O.
 *
 * A ratio is num / den where each side is a result id (its medianNs) or a
 * plain number of nanoseconds (1_000_000 = the 1 ms per-frame budget).
 * Ratios, not absolute times, because CI machines are noisy: both sides of
 * a ratio are measured in the same process minutes apart. A ratio may set
 * `denMin` (ns): the denominator is then at least that, so a tiny baseline
 * (e.g. a p99 of 0.1 ms) does not turn harmless noise into a large ratio.
 */
import type { Result } from './types.js';

export interface Ratio {
  /** Stable name, printed in messages. */
  id: string;
  /** Suite whose results this ratio reads ('a+b' for several); skipped unless all of them ran. */
  suite: string;
  num: string;
  den: string | number;
  /** Fails when num/den > max. */
  max: number;
  /** Floor of the denominator, ns: num / max(den, denMin). */
  denMin?: number;
  /** What the limit protects and why this value. */
  why: string;
}

export interface Thresholds {
  /** Fail `--check` (exit 1) when exceeded. */
  checks: Ratio[];
  /** Targets from the issue: printed PASS/FAIL, never fail the run on their own. */
  targets: Ratio[];
}

export interface Evaluation {
  ratio: Ratio;
  /** num/den, or undefined when it could not be computed (see `problem`). */
  value?: number;
  ok: boolean;
  /** Why it failed: over the limit, or a missing/invalid figure. */
  problem?: string;
}

/**
 * A side is a number of ns, a result id (its median), or `id#p99` (its 99th
 * percentile). A numerator may be 0 (e.g. frames lost); a denominator must be > 0.
 */
function figure(side: string | number, byId: Map<string, Result>, zeroOk = false): { ns?: number; problem?: string } {
  if (typeof side === 'number') return { ns: side };
  const [id, stat] = side.split('#') as [string, string | undefined];
  const r = byId.get(id);
  if (!r) return { problem: `result '${id}' is missing from this run` };
  const ns = stat === 'p99' ? r.p99Ns : stat === undefined ? r.medianNs : NaN;
  if (ns === undefined || !Number.isFinite(ns) || ns < 0 || (ns === 0 && !zeroOk)) return { problem: `result '${side}' has no valid figure (${ns})` };
  return { ns };
}

/** Evaluates every ratio whose suite ran. */
export function evaluate(results: readonly Result[], ratios: readonly Ratio[], suitesRun: ReadonlySet<string>): Evaluation[] {
  const byId = new Map(results.map((r) => [r.id, r]));
  const out: Evaluation[] = [];
  for (const ratio of ratios) {
    // 'relay+dsp': a ratio across suites is evaluated only when all of them ran.
    if (!ratio.suite.split('+').every((name) => suitesRun.has(name))) continue;
    const num = figure(ratio.num, byId, true);
    const den = figure(ratio.den, byId);
    const problem = num.problem ?? den.problem;
    if (problem !== undefined || num.ns === undefined || den.ns === undefined) {
      out.push({ ratio, ok: false, problem });
      continue;
    }
    const value = num.ns / Math.max(den.ns, ratio.denMin ?? 0);
    const ok = value <= ratio.max;
    out.push({ ratio, value, ok, problem: ok ? undefined : `${fmtRatio(value)} > limit ${fmtRatio(ratio.max)}` });
  }
  return out;
}

/** The failed checks as one message each; empty when the run passes. */
export function regressions(results: readonly Result[], thresholds: Thresholds, suitesRun: ReadonlySet<string>): string[] {
  return evaluate(results, thresholds.checks, suitesRun)
    .filter((e) => !e.ok)
    .map((e) => `REGRESSION ${e.ratio.id}: ${describeRatio(e.ratio)} = ${e.problem} (${e.ratio.why})`);
}

export function describeRatio(r: Ratio): string {
  const den = typeof r.den === 'number' ? `${r.den} ns` : r.den;
  return `${r.num} / ${r.denMin !== undefined ? `max(${den}, ${r.denMin} ns)` : den}`;
}

export function fmtRatio(x: number): string {
  if (x === 0) return '0';
  if (x >= 100) return x.toFixed(0);
  if (x >= 10) return x.toFixed(1);
  if (x >= 0.01) return x.toFixed(3);
  return x.toExponential(2);
}

/** Validates parsed thresholds.json; throws listing every problem. */
export function parseThresholds(json: unknown): Thresholds {
  const problems: string[] = [];
  const obj = (json ?? {}) as Record<string, unknown>;
  const list = (key: 'checks' | 'targets'): Ratio[] => {
    const v = obj[key];
    if (!Array.isArray(v)) {
      problems.push(`'${key}' must be an array`);
      return [];
    }
    return v.filter((item: unknown, i: number) => {
      const r = item as Partial<Ratio>;
      const where = `${key}[${i}]${typeof r?.id === 'string' ? ` (${r.id})` : ''}`;
      const bad: string[] = [];
      if (typeof r?.id !== 'string') bad.push('id');
      if (typeof r?.suite !== 'string') bad.push('suite');
      if (typeof r?.num !== 'string') bad.push('num');
      if (typeof r?.den !== 'string' && !(typeof r?.den === 'number' && r.den > 0)) bad.push('den');
      if (typeof r?.max !== 'number' || !(r.max > 0)) bad.push('max');
      if (typeof r?.why !== 'string') bad.push('why');
      if (r?.denMin !== undefined && !(typeof r.denMin === 'number' && r.denMin > 0)) bad.push('denMin');
      if (bad.length) problems.push(`${where}: bad or missing ${bad.join(', ')}`);
      return bad.length === 0;
    }) as Ratio[];
  };
  const checks = list('checks');
  const targets = list('targets');
  const seen = new Set<string>();
  for (const r of [...checks, ...targets]) {
    if (seen.has(r.id)) problems.push(`duplicate id '${r.id}'`);
    seen.add(r.id);
  }
  if (problems.length) throw new Error(`bench/thresholds.json: ${problems.join('; ')}`);
  return { checks, targets };
}
