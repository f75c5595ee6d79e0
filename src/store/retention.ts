/**
 * Retention: call records and recordings older than RETENTION_DAYS go.
 *
 *   - One purger at a time across every process sharing the store: a run
 *     holds the store lease `retention` (acquireLease, on the database's
 *     clock) and renews it before each batch; a run that finds it held ends
 *     at once (`skipped: 'lease_held'`); one that loses it stops.
 *   - Batches of `batch` calls (oldest first, by the listing's start time):
 *     each call's recording object is deleted first, then the rows of the
 *     calls whose recording is gone (a recording that fails to delete keeps
 *     its row for the next run, counted in `recordingFailures`). Between
 *     batches the purger pauses `pauseMs`, so a big purge never holds a
 *     SQLite store (synchronous) or the database long enough to stall calls.
 *   - Then a sweep of orphaned objects: recordings in day folders
 *     (`YYYY/MM/DD/…`) whose whole day lies before the cutoff and whose row
 *     was lost. Day folders are visited by the widest prefixes that hold
 *     only days before the cutoff (the cutoff's month day by day, its year
 *     month by month, then whole years back SWEEP_YEARS).
 *   - A call still 'in_progress' whose start is before the cutoff is an
 *     abandoned row (its process died before the end was written, and no
 *     start-up or lease reaped it): it is purged like any other.
 *   - Each run logs one line with counts only (never SIDs, object names or
 *     content); errors are logged with any CallSid blanked.
 *   - A dry run counts what would go (calls, recordings, orphaned objects)
 *     and deletes nothing.
 *
 * deleteCall removes one call on request (DELETE /calls/:sid): its recording
 * first (a failure rejects and keeps the row), then its rows.
 */
import type { Logger } from '../log.js';
import type { RecordingStorage } from '../recording/types.js';
import type { CallStore } from './types.js';

const DAY_MS = 86_400_000;
/** The lease every purger takes. */
export const RETENTION_LEASE = 'retention';
/** How many years before the cutoff's the orphan sweep looks at (whole `YYYY/` prefixes). */
const SWEEP_YEARS = 10;
/** A dry run counts at most this many calls (its answer says so when it reaches it: `calls` equals it). */
const DRY_RUN_MAX_CALLS = 1_000_000;
/** The first run after start(): within this of it, jittered (or within the interval, when shorter), ms. */
const FIRST_RUN_MAX_MS = 60_000;

export interface RetentionOptions {
  store: CallStore;
  recordings?: RecordingStorage;
  /** Keep this many days; 0 keeps everything (runs are skipped: 'disabled'). */
  days: number;
  /** Names this purger in the lease (e.g. the instance id). */
  holder: string;
  log: Logger;
  /** Calls per batch (default 500). */
  batch?: number;
  /** Pause between batches, ms (default 50): never stall calls. */
  pauseMs?: number;
  now?: () => Date;
  /** How long the lease is held without renewal, ms (default 5 min); renewed before each batch. */
  leaseMs?: number;
}

export interface PurgeResult {
  /** Calls whose rows were removed (dry run: would be). */
  calls: number;
  /** Recording objects of those calls removed (dry run: would be). */
  recordings: number;
  /** Recording objects that could not be removed (their rows were kept for the next run). */
  recordingFailures: number;
  /** Orphaned objects (no row) removed from day folders before the cutoff (dry run: would be). */
  sweptObjects: number;
  skipped?: 'lease_held' | 'disabled';
}

export interface Retention {
  /** Purge everything older than `days` now (or `olderThanMs` when given). dryRun: count only, delete nothing. */
  runOnce(o?: { dryRun?: boolean; olderThanMs?: number }): Promise<PurgeResult>;
  /** Run every intervalMs (first run soon after start, jittered), until stop(); never throws, errors logged. */
  start(intervalMs: number): void;
  /** No more runs; a run in progress stops after its batch. Resolves when it has. */
  stop(): Promise<void>;
}

/** The lease was lost mid-run (another purger took it after it expired here). */
class LeaseLost extends Error {
  constructor() {
    super('retention: the purge lease expired and was taken by another purger; this run stopped');
    this.name = 'LeaseLost';
  }
}

export function createRetention(opts: RetentionOptions): Retention {
  const batch = opts.batch ?? 500;
  const pauseMs = opts.pauseMs ?? 50;
  const leaseMs = opts.leaseMs ?? 5 * 60_000;
  const now = opts.now ?? (() => new Date());
  if (!Number.isInteger(batch) || batch < 1) throw new RangeError(`retention: batch must be a whole number ≥ 1 (got ${batch})`);
  if (!Number.isFinite(pauseMs) || pauseMs < 0) throw new RangeError(`retention: pauseMs must be ≥ 0 (got ${pauseMs})`);
  if (!Number.isFinite(leaseMs) || leaseMs < 1) throw new RangeError(`retention: leaseMs must be ≥ 1 (got ${leaseMs})`);
  if (!Number.isFinite(opts.days) || opts.days < 0) throw new RangeError(`retention: days must be ≥ 0 (got ${opts.days})`);

  const { store, recordings, log, holder } = opts;
  let stopping = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> | undefined;
  /** Recording objects of purged calls that no configured storage could delete (logged once per purger). */
  let unreachableObjects = 0;

  const renew = async (): Promise<void> => {
    if (!(await store.acquireLease(RETENTION_LEASE, holder, leaseMs))) throw new LeaseLost();
  };

  /** Delete a batch's recordings: the calls whose recording is gone (or never was), and the failures. */
  const deleteRecordings = async (calls: { callSid: string; recordingObject: string | null }[], r: PurgeResult, failed: Set<string>): Promise<string[]> => {
    const gone: string[] = [];
    for (const c of calls) {
      if (c.recordingObject === null) {
        gone.push(c.callSid);
        continue;
      }
      if (!recordings) {
        // No recording storage here: the object stays where it was kept and its row goes (the orphan sweep finds it once that storage is configured again).
        if (++unreachableObjects === 1) log.warn({}, 'retention: calls with recordings are purged while no recording storage is configured; their objects stay until a run with the storage sweeps them');
        gone.push(c.callSid);
        continue;
      }
      try {
        await recordings.delete(c.recordingObject);
        r.recordings++;
        gone.push(c.callSid);
      } catch (err) {
        r.recordingFailures++;
        failed.add(c.recordingObject);
        if (r.recordingFailures === 1) log.warn({ err: scrub(err), storage: recordings.where }, 'retention: a recording could not be deleted; its call is kept for the next run');
      }
    }
    return gone;
  };

  const purge = async (cutoff: Date, r: PurgeResult): Promise<void> => {
    const failed = new Set<string>();
    /** Calls kept this run (their recording failed): skipped by the next batches' queries, which return them first. */
    const kept = new Set<string>();
    for (;;) {
      if (stopping) return;
      await renew();
      const calls = (await store.expiredCalls(cutoff, batch + kept.size)).filter((c) => !kept.has(c.callSid));
      if (calls.length === 0) break;
      const gone = await deleteRecordings(calls, r, failed);
      const goneSet = new Set(gone);
      for (const c of calls) if (!goneSet.has(c.callSid)) kept.add(c.callSid);
      if (gone.length === 0) {
        log.warn({ recordingFailures: r.recordingFailures }, 'retention: no recording of a whole batch could be deleted; the run stops here (the storage may be away)');
        return;
      }
      r.calls += await store.deleteCalls(gone);
      if (calls.length < batch) break;
      if (pauseMs > 0) await sleep(pauseMs);
    }
    if (recordings && !stopping) await sweep(recordings, cutoff, r, failed);
  };

  /** Orphaned objects in day folders wholly before the cutoff; `skip`: names not to count (dry run: the calls' own; a run: the failures). */
  const sweep = async (storage: RecordingStorage, cutoff: Date, r: PurgeResult, skip: Set<string>, dryRun = false): Promise<void> => {
    const pending: string[] = [];
    const drain = async () => {
      await renew();
      for (const name of pending.splice(0)) {
        try {
          await storage.delete(name);
          r.sweptObjects++;
        } catch (err) {
          r.recordingFailures++;
          if (r.recordingFailures === 1) log.warn({ err: scrub(err), storage: storage.where }, 'retention: an orphaned recording could not be deleted; the next run tries again');
        }
      }
      if (pauseMs > 0) await sleep(pauseMs);
    };
    for (const prefix of sweepPrefixes(cutoff)) {
      for await (const name of storage.list(prefix)) {
        if (stopping) return;
        if (skip.has(name) || !beforeDay(name, cutoff)) continue;
        if (dryRun) r.sweptObjects++;
        else if (pending.push(name) >= batch) await drain();
      }
    }
    if (pending.length > 0) await drain();
  };

  const dryRun = async (cutoff: Date, r: PurgeResult): Promise<void> => {
    const calls = await store.expiredCalls(cutoff, DRY_RUN_MAX_CALLS);
    r.calls = calls.length;
    const objects = new Set<string>();
    for (const c of calls) if (c.recordingObject !== null) objects.add(c.recordingObject);
    if (recordings) {
      r.recordings = objects.size;
      await sweep(recordings, cutoff, r, objects, true);
    }
  };

  const runOnce = async (o: { dryRun?: boolean; olderThanMs?: number } = {}): Promise<PurgeResult> => {
    const r: PurgeResult = { calls: 0, recordings: 0, recordingFailures: 0, sweptObjects: 0 };
    if (o.olderThanMs !== undefined && (!Number.isFinite(o.olderThanMs) || o.olderThanMs < 0)) {
      throw new RangeError(`retention: olderThanMs must be ≥ 0 (got ${o.olderThanMs})`);
    }
    if (o.olderThanMs === undefined && opts.days === 0) return { ...r, skipped: 'disabled' };
    const cutoff = new Date(now().getTime() - (o.olderThanMs ?? opts.days * DAY_MS));
    const started = Date.now();
    let leased: boolean;
    try {
      leased = await store.acquireLease(RETENTION_LEASE, holder, leaseMs);
    } catch (err) {
      log.error({ err: scrub(err), dryRun: o.dryRun === true }, 'retention: the purge lease could not be asked for; this run skipped');
      throw err;
    }
    if (!leased) {
      log.info({ dryRun: o.dryRun === true }, 'retention: another purger holds the lease; this run skipped');
      return { ...r, skipped: 'lease_held' };
    }
    try {
      if (o.dryRun) await dryRun(cutoff, r);
      else await purge(cutoff, r);
    } catch (err) {
      if (err instanceof LeaseLost) {
        log.warn({ ...r }, err.message);
        return r;
      }
      log.error({ err: scrub(err), ...r, dryRun: o.dryRun === true }, 'retention: run stopped before it finished');
      throw err;
    } finally {
      await Promise.resolve(store.releaseLease(RETENTION_LEASE, holder)).catch(() => {});
    }
    log.info(
      { ...r, dryRun: o.dryRun === true, ms: Date.now() - started },
      o.dryRun ? 'retention: dry run counted what would be purged' : 'retention: purged calls and recordings past the retention time',
    );
    return r;
  };

  const schedule = (delayMs: number, intervalMs: number): void => {
    timer = setTimeout(() => {
      timer = undefined;
      if (stopping) return;
      const run = runOnce().catch(() => {}); // logged by runOnce
      running = run;
      void run.finally(() => {
        if (running === run) running = undefined;
        // The next run: the interval, give or take a tenth (instances started together drift apart).
        if (!stopping) schedule(intervalMs * (0.9 + Math.random() * 0.2), intervalMs);
      });
    }, delayMs);
    timer.unref();
  };

  return {
    runOnce,
    start(intervalMs: number) {
      if (!Number.isFinite(intervalMs) || intervalMs < 1) throw new RangeError(`retention: the interval must be ≥ 1 ms (got ${intervalMs})`);
      if (timer || running) return;
      stopping = false;
      schedule(Math.random() * Math.min(intervalMs, FIRST_RUN_MAX_MS), intervalMs);
    },
    async stop() {
      stopping = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
      await running;
    },
  };
}

/** Rejected by deleteCall when the call is still in progress: its recording and rows are still being written. */
export class CallInProgress extends Error {
  constructor() {
    super('the call is still in progress; delete it once it has ended');
    this.name = 'CallInProgress';
  }
}

/** Rejected by deleteCall when the call's recording could not be deleted (the call was kept). */
export class RecordingDeleteFailed extends Error {
  constructor(cause: unknown, readonly noStorage = false) {
    super(noStorage ? 'the call has a recording but no recording storage is configured: the call was kept' : `the call's recording could not be deleted (the call was kept): ${scrub(cause)}`, { cause });
    this.name = 'RecordingDeleteFailed';
  }
}

/**
 * Delete one call on request: its recording first (a failure rejects with
 * RecordingDeleteFailed and keeps the row), then its rows. Resolves false
 * when there is no such call; rejects CallInProgress for a call in progress,
 * and as the store does when it cannot answer.
 */
export async function deleteCall(store: CallStore, recordings: RecordingStorage | undefined, callSid: string): Promise<boolean> {
  const record = await store.get(callSid);
  if (!record) return false;
  if (record.state === 'in_progress') throw new CallInProgress();
  const object = record.recording?.object ?? null;
  if (object !== null) {
    if (!recordings) throw new RecordingDeleteFailed(undefined, true);
    try {
      await recordings.delete(object);
    } catch (err) {
      throw new RecordingDeleteFailed(err);
    }
  }
  await store.deleteCalls([callSid]);
  return true;
}

/**
 * The prefixes that hold only day folders wholly before the cutoff's day:
 * the cutoff's month's earlier days, its year's earlier months, then
 * earlier years (SWEEP_YEARS back). All UTC.
 */
export function sweepPrefixes(cutoff: Date): string[] {
  const y = cutoff.getUTCFullYear();
  const m = cutoff.getUTCMonth() + 1;
  const d = cutoff.getUTCDate();
  const out: string[] = [];
  for (let day = 1; day < d; day++) out.push(`${pad(y, 4)}/${pad(m, 2)}/${pad(day, 2)}/`);
  for (let month = 1; month < m; month++) out.push(`${pad(y, 4)}/${pad(month, 2)}/`);
  for (let year = y - 1; year >= Math.max(0, y - SWEEP_YEARS); year--) out.push(`${pad(year, 4)}/`);
  return out;
}

/** Is `name` a day-folder object (`YYYY/MM/DD/<file>`) whose whole day lies before the cutoff? */
function beforeDay(name: string, cutoff: Date): boolean {
  const m = /^(\d{4})\/(\d{2})\/(\d{2})\/[^/]+$/.exec(name);
  if (!m) return false;
  const dayEnd = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])) + DAY_MS;
  return Number.isFinite(dayEnd) && dayEnd <= cutoff.getTime();
}

const pad = (n: number, width: number) => String(n).padStart(width, '0');

/** An error's message with any CallSid blanked (object names hold them): logs carry counts, never SIDs. */
function scrub(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.replace(/CA[0-9a-fA-F]{32}/g, 'CA…');
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
