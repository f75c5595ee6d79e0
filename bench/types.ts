/**
 * The bench's plug-in seam. A suite is a module under bench/suites/ that
 * measures something and returns flat Results; bench/run.ts prints them,
 * writes bench/results.json and checks ratios between them.
 *
 * Units: every time is in nanoseconds; `medianNs` is per unit of work named
 * by `per` (for the DSP suite: one 20 ms frame).
 */

export interface RunOptions {
  /** Short time budget (CI smoke, local iteration); figures are noisier. */
  quick: boolean;
  /** Measured time per task per round, ms. */
  timeMs: number;
  /** Warm-up time per task, ms. */
  warmupMs: number;
  /** Rounds over all tasks; a task's figure is the lowest of its round medians (see measure.ts). */
  rounds: number;
  /** Progress lines go here (stderr), never into the table. */
  log: (line: string) => void;
}

export interface Result {
  /** Stable key used by thresholds.json, e.g. 'dsp.decode.wasm'. */
  id: string;
  /** Suite that produced it ('dsp', 'relay', …). */
  suite: string;
  /** Human label for the table. */
  name: string;
  /** Table section, e.g. 'µ-law decode'. Rows of one group print together. */
  group: string;
  /** What one unit of work is, e.g. '20 ms frame' or 'call-second'. */
  per: string;
  /** 'count' when medianNs holds a plain count per `per` (messages, syscalls, frames), not ns. Default ns. */
  unit?: 'ns' | 'count';
  /** Median ns per unit of work (of the least-disturbed round); a plain count when unit is 'count'. */
  medianNs: number;
  /** 99th percentile ns per unit (of per-sample figures; see `note`). */
  p99Ns?: number;
  /** Samples behind the figure (tinybench iterations or timed round trips). */
  samples: number;
  /** Id of the result doing the same work to compare against (the in-run baseline). */
  peer?: string;
  /** True for the rows being benchmarked (ours), false/undefined for baselines. */
  ours?: boolean;
  /** Extra figures a suite wants in results.json (e.g. CPU per call-second). */
  extra?: Record<string, number | string>;
  note?: string;
}

export interface Suite {
  name: string;
  /** One line for --help. */
  description: string;
  run(opts: RunOptions): Promise<Result[]>;
  /** Lines printed under the table (conclusions drawn from the results). */
  conclusions?(results: Result[]): string[];
}
