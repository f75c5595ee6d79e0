/**
 * Starves the event loop of the process that loads it, on a fixed pattern,
 * for the stall suite (bench/suites/stall.ts): loaded into the relay child
 * with `NODE_OPTIONS=--import <this file>`, so no product file knows of it.
 *
 * Pattern (environment, all ms): every STALL_EVERY_MS the loop busy-waits
 * for a length drawn uniformly from [STALL_MIN_MS, STALL_MAX_MS] by a seeded
 * generator (STALL_SEED), so two runs with the same settings stall the same
 * lengths in the same order. The first stall comes STALL_EVERY_MS after load.
 * The timer is unref'd: it never keeps the process alive.
 *
 * On load it prints one line on stdout, `stall-injector: every N ms, A-B ms`,
 * which the suite requires (proof the stalls were on). Bad settings print
 * why on stderr and inject nothing (the suite then finds no line and fails).
 */
import { Rng } from '../src/sim/fuzz.js';

function setting(name: string, fallback: number): number | string {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const v = Number(raw);
  return Number.isInteger(v) && v >= 0 ? v : `${name} must be a whole number of ms (got '${raw}')`;
}

const every = setting('STALL_EVERY_MS', 2000);
const min = setting('STALL_MIN_MS', 150);
const max = setting('STALL_MAX_MS', 400);
const seed = setting('STALL_SEED', 21);
const problems = [every, min, max, seed].filter((v): v is string => typeof v === 'string');
if (problems.length === 0 && !((every as number) > 0 && (min as number) <= (max as number))) {
  problems.push('STALL_EVERY_MS must be > 0 and STALL_MIN_MS <= STALL_MAX_MS');
}

if (problems.length > 0) {
  process.stderr.write(`stall-injector: not injecting: ${problems.join('; ')}\n`);
} else {
  const rng = new Rng(seed as number);
  const [lo, hi] = [min as number, max as number];
  setInterval(() => {
    const until = performance.now() + lo + rng.next() * (hi - lo);
    while (performance.now() < until) {
      // busy: the loop runs nothing else, as under a CPU-starved or blocked process
    }
  }, every as number).unref();
  process.stdout.write(`stall-injector: every ${every} ms, ${lo}-${hi} ms\n`);
}
