/**
 * Whether the model endpoint answers, for /voice/health: provider-neutral.
 * A provider reports each connect's outcome to a ReachabilityTracker; the
 * ReachabilityProber re-runs a connect in the background while the last one
 * failed. Nothing here knows a socket or a vendor: OpenAI Realtime, GPT-Live
 * or a pipeline share the same tracker and prober (main.ts wires them).
 *
 * Contract:
 * - `snapshot()` is call/ports.ts ModelHealth less `probing` (main.ts adds
 *   the prober's); times are ISO 8601. A failure is the current state for
 *   `failureTtlMs`; after that `reachable` is null and `stale` is true.
 * - The prober runs only while the most recent outcome is a failure: one
 *   probe at a time, each `intervalMs` after the failure or the previous
 *   probe's end, until a connect or probe succeeds. Timers are unref'd;
 *   `stop()` clears them and aborts a probe in flight.
 */
import type { Logger } from '../log.js';

/** Shape read by /voice/health (call/ports.ts ModelHealth, less `probing`); times are ISO 8601. */
export interface ReachabilitySnapshot {
  /** Outcome of the most recent connect; null before the first, and once a failure is older than `failureTtlMs` (stale). */
  reachable: boolean | null;
  lastOkAt: string | null;
  lastFailAt: string | null;
  lastError: string | null;
  /** The most recent connect attempt's end (ok or failed). */
  checkedAt: string | null;
  consecutiveFailures: number;
  /** The most recent connect failed longer than `failureTtlMs` ago: it no longer says how the endpoint is. */
  stale: boolean;
}

/**
 * Whether the model endpoint was reachable recently: updated on every connect
 * attempt (calls, reconnects, probes), read by /voice/health. A failure counts
 * as the current state for `failureTtlMs`; after that `reachable` is null (stale).
 * `watch` tells one listener (ReachabilityProber) after every outcome.
 */
export class ReachabilityTracker {
  private lastOkAtMs: number | null = null;
  private lastFailAtMs: number | null = null;
  private lastError: string | null = null;
  private failures = 0;
  private last: boolean | null = null;
  private listener: (() => void) | undefined;

  constructor(
    private readonly now: () => number = Date.now,
    private readonly failureTtlMs = Infinity,
  ) {}

  ok(): void {
    this.lastOkAtMs = this.now();
    this.failures = 0;
    this.last = true;
    this.listener?.();
  }

  fail(err: unknown): void {
    this.lastFailAtMs = this.now();
    this.lastError = err instanceof Error ? err.message : String(err);
    this.failures++;
    this.last = false;
    this.listener?.();
  }

  /** The most recent connect failed (however long ago): reachability is in doubt until one succeeds. */
  get inDoubt(): boolean {
    return this.last === false;
  }

  /** Call `fn` after every outcome (one listener; a second call replaces it; undefined removes it). */
  watch(fn: (() => void) | undefined): void {
    this.listener = fn;
  }

  snapshot(): ReachabilitySnapshot {
    const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());
    const stale = this.last === false && this.now() - this.lastFailAtMs! > this.failureTtlMs;
    const checked = this.last === null ? null : this.last ? this.lastOkAtMs : this.lastFailAtMs;
    return {
      reachable: stale ? null : this.last,
      lastOkAt: iso(this.lastOkAtMs),
      lastFailAt: iso(this.lastFailAtMs),
      lastError: this.lastError,
      checkedAt: iso(checked),
      consecutiveFailures: this.failures,
      stale,
    };
  }
}

/** setTimeout/clearTimeout as the prober uses them (tests inject their own clock). */
export interface ProbeTimers {
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

const realTimers: ProbeTimers = {
  set: (fn, ms) => setTimeout(fn, ms).unref(),
  clear: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface ReachabilityProberOptions {
  tracker: ReachabilityTracker;
  /**
   * One probe of the endpoint along the path a call takes (the provider's
   * connect, closed once open). Its outcome reaches the tracker through the
   * provider; what it resolves or rejects with is ignored. It must settle on
   * its own (the provider's connect timeout) and stop when `signal` aborts.
   */
  probe(signal: AbortSignal): Promise<unknown>;
  /** Between the failure that raised the doubt (or the previous probe's end) and the next probe (ms); 0 = never probe. */
  intervalMs: number;
  log?: Logger;
  timers?: ProbeTimers;
}

/**
 * Background probes of the model endpoint while its reachability is in
 * doubt: once a connect fails, a probe runs every `intervalMs` (measured from
 * the end of the previous one; never two at once) until a connect or probe
 * succeeds. Without it, an instance that places no call after a model outage
 * would report the outage forever. Timers are unref'd; `stop()` clears them
 * and aborts a probe in flight.
 */
export class ReachabilityProber {
  private timer: unknown;
  private inFlight: AbortController | undefined;
  private stopped = true;
  private readonly timers: ProbeTimers;

  constructor(private readonly opts: ReachabilityProberOptions) {
    this.timers = opts.timers ?? realTimers;
  }

  start(): void {
    if (this.opts.intervalMs <= 0 || !this.stopped) return;
    this.stopped = false;
    this.opts.tracker.watch(() => this.update());
    this.update();
  }

  stop(): void {
    this.stopped = true;
    this.opts.tracker.watch(undefined);
    this.cancelTimer();
    this.inFlight?.abort();
    this.inFlight = undefined;
  }

  /** A probe is scheduled or running. */
  get probing(): boolean {
    return this.timer !== undefined || this.inFlight !== undefined;
  }

  /** After every outcome: schedule a probe while in doubt, drop the scheduled one once reachable. */
  private update(): void {
    if (this.stopped) return;
    if (!this.opts.tracker.inDoubt) return this.cancelTimer();
    if (this.timer === undefined && this.inFlight === undefined) this.timer = this.timers.set(() => this.run(), this.opts.intervalMs);
  }

  private cancelTimer(): void {
    if (this.timer === undefined) return;
    this.timers.clear(this.timer);
    this.timer = undefined;
  }

  private run(): void {
    this.timer = undefined;
    if (this.stopped || !this.opts.tracker.inDoubt) return;
    const abort = new AbortController();
    this.inFlight = abort;
    let probe: Promise<unknown>;
    try {
      probe = this.opts.probe(abort.signal);
    } catch (err) {
      probe = Promise.reject(err);
    }
    probe
      .then(
        () => this.opts.log?.info('model endpoint probe: reachable again'),
        (err: unknown) => this.opts.log?.debug({ err: err instanceof Error ? err.message : String(err) }, 'model endpoint probe failed'),
      )
      .finally(() => {
        if (this.inFlight !== abort) return; // stopped meanwhile
        this.inFlight = undefined;
        this.update();
      });
  }
}
