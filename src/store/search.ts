/**
 * The console's queries, done alike by both call stores (sqlite.ts, postgres.ts): the options of a search checked
 * at the edge (a bad limit or offset is a RangeError whose message says what is allowed), the WHERE and ORDER BY of
 * a search in either dialect, and the buckets of `stats` folded from what the stores read.
 *
 * What each filter means (CallFilter):
 *   - since / until: the listing's start time (started, else answered, else first written), since ≤ t < until;
 *   - outcome: the call's one-word outcome as its summary shows it (the `outcome` column, which a flush sets with
 *     rows.ts OUTCOME_SQL when the call ends, or to Twilio's final status for a call whose stream never started);
 *   - endReason, agent, state: equal to the column;
 *   - tool: the call has a `tool` entry with that label (tool entries are labelled with the tool's name);
 *   - minTurnLatencyMs: the call has a `latency` entry whose latencyMs is above it (latency entries are plain JSON,
 *     never sealed, so the database reads them).
 * Calls written before the entries table (SQLite schema 1) keep tool calls and latencies in their row and match
 * neither `tool` nor `minTurnLatencyMs` (they also show no outcome from their tool calls, like list()).
 *
 * Sorting: by start time, duration (calls without one last, whichever the direction) or cost, then by call SID in
 * the same direction, so equal keys always come in the same order and offset pages neither skip nor repeat a call
 * while the set is unchanged.
 *
 * Stats: buckets of `bucketMs` from `since` up to now (the last one may be partial), at most MAX_STATS_BUCKETS.
 *   - started: calls whose listing start time falls in the bucket;
 *   - ended: calls whose end time falls in it; failed: those of them ended by error, model_unavailable or
 *     model_disconnected (a call whose stream never started has no end time and counts in neither);
 *   - turnP50Ms / turnP95Ms: nearest-rank percentiles of the latencies of the turns heard in the bucket: a turn's
 *     time is its call's stream start plus the turn's first frame sent (TurnLatency.parts.firstFrameMs), or the
 *     call's start for a turn recorded without parts. Turns of calls begun up to STATS_LOOKBACK_MS before `since`
 *     count; at most MAX_STATS_LATENCIES turns are read per call of stats() (the newest calls' first): past that,
 *     older turns are left out of the percentiles. null where a bucket has no turn.
 */
import type { TurnLatency } from '../records.js';
import type { CallFilter, CallSort, CallStats, SearchOptions } from './types.js';

/** A search page holds at most this many calls (and at least one). */
export const MAX_SEARCH_LIMIT = 200;
/** At most this many turn latencies are read for one stats() (bounds its memory and time). */
export const MAX_STATS_LATENCIES = 10_000;
/** At most this many buckets in one stats(). */
export const MAX_STATS_BUCKETS = 1_000;
/** Turns of calls begun this long before the window still count in it, ms. */
export const STATS_LOOKBACK_MS = 2 * 3_600_000;
/** The end reasons counted as failed. */
export const FAILED_END_REASONS = ['error', 'model_unavailable', 'model_disconnected'] as const;

/** The listing's start time of call row `c`, in SQL (both dialects). */
export const START_SQL = 'coalesce(c.started_at, c.answered_at, c.created_at)';

/** The summary columns of a listing (rows.ts SummaryRow), over `calls c`. */
export const SUMMARY_COLUMNS_SQL = `c.call_sid, c.from_number, c.to_number, ${START_SQL} AS started_at, c.duration_ms, c.status, c.state,
  c.outcome, c.end_reason, c.cost_usd, c.agent, c.direction`;

export type Dialect = 'sqlite' | 'postgres';

export interface CheckedSearch {
  sort: CallSort;
  dir: 'asc' | 'desc';
  limit: number;
  offset: number;
}

const SORTS: readonly CallSort[] = ['started', 'duration', 'cost'];

/** The search's options with their defaults; RangeError for a limit outside 1–200, a negative offset, an unknown sort. */
export function checkSearch(opts: SearchOptions = {}): CheckedSearch {
  const { sort = 'started', dir = 'desc', limit = 50, offset = 0 } = opts;
  if (!SORTS.includes(sort)) throw new RangeError(`call store: a search sorts by started, duration or cost (got ${String(sort)})`);
  if (dir !== 'asc' && dir !== 'desc') throw new RangeError(`call store: a search's direction is asc or desc (got ${String(dir)})`);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_SEARCH_LIMIT) {
    throw new RangeError(`call store: a search's limit must be a whole number from 1 to ${MAX_SEARCH_LIMIT} (got ${String(limit)})`);
  }
  if (!Number.isInteger(offset) || offset < 0) throw new RangeError(`call store: a search's offset must be a whole number ≥ 0 (got ${String(offset)})`);
  return { sort, dir, limit, offset };
}

/** callsInProgress' limit: 1–200, like a search page. */
export function checkInProgressLimit(limit: number): number {
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_SEARCH_LIMIT) {
    throw new RangeError(`call store: callsInProgress needs a whole limit from 1 to ${MAX_SEARCH_LIMIT} (got ${String(limit)})`);
  }
  return limit;
}

/**
 * The WHERE clause (without the keyword; `1 = 1` when nothing is given) of a search over `calls c`. `param` adds a
 * value and returns its placeholder; `time` turns a Date into the value the dialect compares start times with.
 */
export function searchWhere(filter: CallFilter, dialect: Dialect, param: (v: unknown) => string): string {
  const time = (d: Date): unknown => (dialect === 'sqlite' ? d.toISOString() : d);
  const parts: string[] = [];
  if (filter.since) parts.push(`${START_SQL} >= ${param(time(checkDate(filter.since, 'since')))}`);
  if (filter.until) parts.push(`${START_SQL} < ${param(time(checkDate(filter.until, 'until')))}`);
  if (filter.outcome !== undefined) parts.push(`c.outcome = ${param(filter.outcome)}`);
  if (filter.endReason !== undefined) parts.push(`c.end_reason = ${param(filter.endReason)}`);
  if (filter.agent !== undefined) parts.push(`c.agent = ${param(filter.agent)}`);
  if (filter.state !== undefined) parts.push(`c.state = ${param(filter.state)}`);
  if (filter.tool !== undefined) {
    parts.push(`EXISTS (SELECT 1 FROM call_entries e WHERE e.call_sid = c.call_sid AND e.kind = 'tool' AND e.label = ${param(filter.tool)})`);
  }
  if (filter.minTurnLatencyMs !== undefined) {
    const min = filter.minTurnLatencyMs;
    if (typeof min !== 'number' || !Number.isFinite(min)) throw new RangeError(`call store: minTurnLatencyMs must be a finite number (got ${String(min)})`);
    const latency = dialect === 'sqlite' ? `json_extract(e.data, '$.latencyMs')` : `(e.data::jsonb ->> 'latencyMs')::float8`;
    parts.push(`EXISTS (SELECT 1 FROM call_entries e WHERE e.call_sid = c.call_sid AND e.kind = 'latency' AND ${latency} > ${param(min)})`);
  }
  return parts.length > 0 ? parts.join(' AND ') : '1 = 1';
}

/** The ORDER BY clause (without the keywords) of a search. */
export function searchOrder(s: CheckedSearch): string {
  const dir = s.dir === 'asc' ? 'ASC' : 'DESC';
  const key = s.sort === 'started' ? START_SQL : s.sort === 'duration' ? 'c.duration_ms' : 'c.cost_usd';
  const nulls = s.sort === 'duration' ? ' NULLS LAST' : '';
  return `${key} ${dir}${nulls}, c.call_sid ${dir}`;
}

function checkDate(d: Date, name: string): Date {
  if (!(d instanceof Date) || Number.isNaN(d.getTime())) throw new RangeError(`call store: the filter's ${name} must be a valid Date`);
  return d;
}

/** The window of a stats(): how many buckets from `since` to `nowMs`; RangeError for a bad bucket size or too many buckets. */
export function statsWindow(since: Date, bucketMs: number, nowMs: number): { sinceMs: number; count: number } {
  if (!(since instanceof Date) || Number.isNaN(since.getTime())) throw new RangeError('call store: stats needs a valid Date to start from');
  if (!Number.isInteger(bucketMs) || bucketMs < 1) throw new RangeError(`call store: stats needs a whole bucket size ≥ 1 ms (got ${String(bucketMs)})`);
  const sinceMs = since.getTime();
  const count = Math.max(1, Math.ceil((nowMs - sinceMs) / bucketMs));
  if (count > MAX_STATS_BUCKETS) {
    throw new RangeError(`call store: stats gives at most ${MAX_STATS_BUCKETS} buckets (${count} asked: make the buckets larger or the window shorter)`);
  }
  return { sinceMs, count };
}

/** A turn as stats() reads it: its call's start time (epoch ms) and the latency entry's JSON. */
export interface LatencyRow {
  callStartMs: number;
  data: string;
}

/** Nearest rank: the smallest value with at least p % of the values at or below it. `sorted` ascending, not empty. */
export function percentile(sorted: readonly number[], p: number): number {
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1]!;
}

/**
 * The stats' buckets from what a store counted per bucket index (started; ended and failed) and the turns it
 * read (at most MAX_STATS_LATENCIES). Indexes outside 0…count-1 are ignored.
 */
export function foldStats(
  window: { sinceMs: number; count: number },
  bucketMs: number,
  started: Iterable<{ b: number; n: number }>,
  ended: Iterable<{ b: number; n: number; failed: number }>,
  latencies: readonly LatencyRow[],
  inProgress: number,
): CallStats {
  const buckets: CallStats['buckets'] = [];
  const turns: number[][] = [];
  for (let i = 0; i < window.count; i++) {
    buckets.push({ t: new Date(window.sinceMs + i * bucketMs).toISOString(), started: 0, ended: 0, failed: 0, turnP50Ms: null, turnP95Ms: null });
    turns.push([]);
  }
  const at = (b: number) => (Number.isInteger(b) && b >= 0 && b < window.count ? buckets[b] : undefined);
  for (const r of started) {
    const k = at(Number(r.b));
    if (k) k.started += Number(r.n);
  }
  for (const r of ended) {
    const k = at(Number(r.b));
    if (k) {
      k.ended += Number(r.n);
      k.failed += Number(r.failed);
    }
  }
  for (const r of latencies.slice(0, MAX_STATS_LATENCIES)) {
    const t = turnOf(r.data);
    if (!t) continue;
    const b = Math.floor((r.callStartMs + (t.parts?.firstFrameMs ?? 0) - window.sinceMs) / bucketMs);
    if (b >= 0 && b < window.count) turns[b]!.push(t.latencyMs);
  }
  turns.forEach((list, i) => {
    if (list.length === 0) return;
    list.sort((a, b) => a - b);
    buckets[i]!.turnP50Ms = percentile(list, 50);
    buckets[i]!.turnP95Ms = percentile(list, 95);
  });
  return { bucketMs, buckets, inProgress: Number(inProgress) };
}

/** A latency entry's JSON as a turn, or null when it is not one (a row no stats should fail on). */
function turnOf(data: string): TurnLatency | null {
  try {
    const v = JSON.parse(data) as Partial<TurnLatency> | null;
    if (!v || typeof v.latencyMs !== 'number' || !Number.isFinite(v.latencyMs)) return null;
    const first = v.parts?.firstFrameMs;
    return { turn: Number(v.turn), latencyMs: v.latencyMs, parts: typeof first === 'number' && Number.isFinite(first) ? (v.parts as TurnLatency['parts']) : undefined };
  } catch {
    return null;
  }
}
