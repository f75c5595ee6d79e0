/**
 * `npm run bench [-- --check] [--quick] [--suite dsp|relay]`
 *
 * Runs the registered suites, prints a table (median ns per unit of work,
 * p99, share of the 1 ms per-frame budget, ratio to the in-run peer), writes
 * bench/results.json, prints the issue's targets as PASS/FAIL, and with
 * --check exits 1 naming every ratio in bench/thresholds.json that regressed.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { describeRatio, evaluate, fmtRatio, parseThresholds, regressions, type Evaluation } from './check.js';
import { suites } from './suites/index.js';
import type { Result, RunOptions, Suite } from './types.js';

/** The per-frame budget every figure is compared to: 1 ms of CPU per 20 ms frame. */
export const BUDGET_NS = 1_000_000;

// build/bench/run.js -> <repo>/bench/
const BENCH_DIR = fileURLToPath(new URL('../../bench/', import.meta.url));

interface Args {
  check: boolean;
  quick: boolean;
  suites: string[];
  help: boolean;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { check: false, quick: false, suites: [], help: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--check') args.check = true;
    else if (a === '--quick') args.quick = true;
    else if (a === '--help' || a === '-h') args.help = true;
    else if (a === '--suite') {
      const v = argv[++i];
      if (!v) throw new Error('--suite needs a name');
      args.suites.push(...v.split(','));
    } else if (a.startsWith('--suite=')) args.suites.push(...a.slice('--suite='.length).split(','));
    else throw new Error(`unknown option '${a}' (try --help)`);
  }
  return args;
}

export function fmtNs(ns: number | undefined): string {
  if (ns === undefined || !Number.isFinite(ns)) return '-';
  if (ns < 1_000) return `${ns.toFixed(0)} ns`;
  if (ns < 1_000_000) return `${(ns / 1000).toFixed(ns < 10_000 ? 2 : 1)} µs`;
  return `${(ns / 1e6).toFixed(2)} ms`;
}

function fmtBudget(ns: number): string {
  const pct = (ns / BUDGET_NS) * 100;
  return pct >= 1 ? `${pct.toFixed(1)} %` : pct >= 0.01 ? `${pct.toFixed(3)} %` : `${pct.toExponential(1)} %`;
}

function fmtPeer(r: Result, byId: Map<string, Result>): string {
  if (!r.peer) return r.ours ? '' : 'baseline';
  const p = byId.get(r.peer);
  if (!p) return `(peer ${r.peer} missing)`;
  const x = r.medianNs / p.medianNs;
  const times = (v: number): string => v.toFixed(v < 2 ? 2 : 1);
  const words = x <= 1 ? `${times(1 / x)}x faster` : `${times(x)}x slower`;
  return `${fmtRatio(x)} (${words} than ${p.name})`;
}

function pad(s: string, n: number, right = false): string {
  const len = [...s].length;
  return len >= n ? s : right ? ' '.repeat(n - len) + s : s + ' '.repeat(n - len);
}

export function table(results: readonly Result[]): string {
  const byId = new Map(results.map((r) => [r.id, r]));
  const rows: string[][] = [];
  const groups: string[] = [];
  for (const r of results) if (!groups.includes(r.group)) groups.push(r.group);
  const header = ['', 'median', 'p99', 'of 1 ms', 'ratio to peer'];
  for (const g of groups) {
    rows.push([`[${g}]`, '', '', '', '']);
    for (const r of results.filter((x) => x.group === g)) {
      if (r.unit === 'count') {
        const n = (v: number | undefined) => (v === undefined ? '-' : v.toFixed(v < 100 ? 1 : 0));
        rows.push([`${r.ours ? '* ' : '  '}${r.name} (per ${r.per})`, n(r.medianNs), n(r.p99Ns), '', fmtPeer(r, byId)]);
        continue;
      }
      rows.push([`${r.ours ? '* ' : '  '}${r.name}`, fmtNs(r.medianNs), fmtNs(r.p99Ns), fmtBudget(r.medianNs), fmtPeer(r, byId)]);
    }
  }
  const widths = header.map((h, c) => Math.max([...h].length, ...rows.filter((row) => !row[0].startsWith('[')).map((row) => [...row[c]].length)));
  const line = (row: string[]): string =>
    row.map((cell, c) => pad(cell, widths[c], c >= 1 && c <= 3)).join('  ').trimEnd();
  const out = [line(header), line(widths.map((w) => '-'.repeat(w)))];
  for (const row of rows) out.push(row[0].startsWith('[') ? row[0] : line(row));
  return out.join('\n');
}

function evaluationLine(e: Evaluation, kind: 'target' | 'check'): string {
  const status = e.ok ? 'PASS' : 'FAIL';
  const value = e.value === undefined ? e.problem : `${fmtRatio(e.value)} (limit ${fmtRatio(e.ratio.max)})`;
  return `  ${status}  ${pad(e.ratio.id, 28)} ${describeRatio(e.ratio)} = ${value}${kind === 'target' ? `  — ${e.ratio.why}` : ''}`;
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  if (args.help) {
    console.log('usage: npm run bench [-- [--check] [--quick] [--suite NAME[,NAME]]]\nsuites:');
    for (const s of suites) console.log(`  ${s.name}: ${s.description}`);
    return 0;
  }
  const unknown = args.suites.filter((n) => !suites.some((s) => s.name === n));
  if (unknown.length) throw new Error(`unknown suite(s) ${unknown.join(', ')}; known: ${suites.map((s) => s.name).join(', ')}`);
  const selected: Suite[] = args.suites.length ? suites.filter((s) => args.suites.includes(s.name)) : suites;
  const thresholds = parseThresholds(JSON.parse(readFileSync(`${BENCH_DIR}thresholds.json`, 'utf8')));

  const opts: RunOptions = {
    quick: args.quick,
    // Many short rounds beat a few long ones on a shared box: each task gets
    // more chances at a quiet window (see measure.ts).
    timeMs: args.quick ? 60 : 120,
    warmupMs: args.quick ? 30 : 50,
    rounds: args.quick ? 3 : 8,
    log: (line) => process.stderr.write(`${line}\n`),
  };
  const cpus = os.cpus();
  const env = `node ${process.version}, ${cpus.length} x ${cpus[0]?.model.trim() ?? 'cpu'}, ${os.platform()}/${os.arch()}`;
  console.log(`callbridge bench — ${env}${args.quick ? ' — QUICK (noisier)' : ''}`);
  if (args.quick && args.check) console.log('note: --check with --quick compares noisier figures than CI does (CI runs the full bench)');

  const started = Date.now();
  const results: Result[] = [];
  const conclusions: string[] = [];
  // A suite that returns nothing skipped itself (it said why: e.g. sox not installed): its ratios are not evaluated.
  const suitesRun = new Set<string>();
  for (const suite of selected) {
    opts.log(`suite ${suite.name}…`);
    const rs = await suite.run(opts);
    results.push(...rs);
    if (rs.length > 0) suitesRun.add(suite.name);
    conclusions.push(...(suite.conclusions?.(rs) ?? []));
  }

  console.log(`\nMedian per 20 ms frame (* = callbridge; ratio to peer < 1 means faster than the peer)\n`);
  console.log(table(results));
  const targets = evaluate(results, thresholds.targets, suitesRun);
  const checks = evaluate(results, thresholds.checks, suitesRun);
  if (targets.length) {
    console.log('\nTargets (issues 2, 8 and 21; printed, never fail the run):');
    for (const e of targets) console.log(evaluationLine(e, 'target'));
  }
  if (conclusions.length) console.log(`\n${conclusions.join('\n')}`);
  console.log(`\nRegression checks (bench/thresholds.json${args.check ? '' : '; informational without --check'}):`);
  for (const e of checks) console.log(evaluationLine(e, 'check'));

  const file = `${BENCH_DIR}results.json`;
  writeFileSync(file, `${JSON.stringify({
    date: new Date().toISOString(),
    env,
    node: process.version,
    cpus: cpus.length,
    options: { quick: args.quick, suites: [...suitesRun], timeMs: opts.timeMs, rounds: opts.rounds },
    elapsedMs: Date.now() - started,
    budgetNs: BUDGET_NS,
    results,
    targets: targets.map((e) => ({ id: e.ratio.id, value: e.value, max: e.ratio.max, ok: e.ok, problem: e.problem })),
    checks: checks.map((e) => ({ id: e.ratio.id, value: e.value, max: e.ratio.max, ok: e.ok, problem: e.problem })),
  }, null, 2)}\n`);
  console.log(`\nresults: ${file} (${((Date.now() - started) / 1000).toFixed(0)} s)`);

  if (args.check) {
    const failed = regressions(results, thresholds, suitesRun);
    if (failed.length) {
      console.error(`\nbench --check FAILED: ${failed.length} regression(s)`);
      for (const f of failed) console.error(`  ${f}`);
      return 1;
    }
    console.log(`bench --check passed (${checks.length} ratios within limits)`);
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`bench: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(2);
  },
);
