/**
 * One shared pacing clock for every call in the process. Instead of a timer
 * per call, each call with queued audio registers here and is pumped every
 * TICK_MS; the timer runs only while someone is registered. Pacing accuracy
 * comes from the playout's own wall-clock arithmetic, not from the tick, so a
 * late tick sends more frames rather than drifting.
 *
 * The clock also measures how late the event loop runs (`lateness`): each
 * tick's delay past its due time (TICK_MS after the previous tick), in ms.
 * That is the process-wide signal the adaptive playout lead follows
 * (`AdaptiveLead`): one loop serves every call, so one estimator serves them
 * all. Cost: a subtraction and a comparison per tick (not per call or frame),
 * no allocation. A stall while no call has audio queued is not seen (nothing
 * could have been heard as a gap then).
 */
export const TICK_MS = 10;

/** A measured lateness counts at full height for this long after it was seen, ms. */
export const LATENESS_HOLD_MS = 4000;
/** After the hold, the level halves every this many ms (calm for ~4 s more: back within a few ms of 0). */
export const LATENESS_HALF_LIFE_MS = 1000;

/**
 * Recent event-loop lateness, ms: a peak envelope. A lateness at least half
 * the current level sets the level to the larger of the two and restarts the
 * hold (so a repeating stall pattern keeps the level up); the level then
 * stays for LATENESS_HOLD_MS and halves every LATENESS_HALF_LIFE_MS after.
 * Times are on the caller's clock (ms, monotonic); never negative.
 */
export class LoopLateness {
  private peakMs = 0;
  private peakAtMs = 0;

  constructor(
    private readonly holdMs = LATENESS_HOLD_MS,
    private readonly halfLifeMs = LATENESS_HALF_LIFE_MS,
  ) {}

  /** The loop ran `latenessMs` late at `nowMs`. */
  observe(latenessMs: number, nowMs: number): void {
    if (!(latenessMs > 0)) return;
    const level = this.levelMs(nowMs);
    if (latenessMs * 2 < level) return;
    this.peakMs = Math.max(level, latenessMs);
    this.peakAtMs = nowMs;
  }

  /** The current level at `nowMs`, ms. */
  levelMs(nowMs: number): number {
    if (this.peakMs === 0) return 0;
    const decayingMs = nowMs - this.peakAtMs - this.holdMs;
    if (decayingMs <= 0) return this.peakMs;
    const level = this.peakMs * 2 ** (-decayingMs / this.halfLifeMs);
    if (level >= 0.5) return level;
    this.peakMs = 0; // calm: back to exactly 0
    return 0;
  }
}

/**
 * The playout lead of one call, ms, at a time: `minMs` plus the loop's recent
 * lateness, bounded to [minMs, maxMs]. With maxMs <= minMs it is always minMs
 * (a fixed lead). Reading it allocates nothing.
 */
export class AdaptiveLead {
  readonly maxMs: number;
  constructor(
    readonly minMs: number,
    maxMs: number,
    private readonly lateness: LoopLateness,
  ) {
    this.maxMs = Math.max(minMs, maxMs);
  }

  leadMs(nowMs: number): number {
    if (this.maxMs === this.minMs) return this.minMs;
    return Math.min(this.maxMs, this.minMs + this.lateness.levelMs(nowMs));
  }
}

export interface Pumpable {
  /** Send what is due at `nowMs`; return false to be unregistered (nothing left to send). */
  pump(nowMs: number): boolean;
}

/** Where a call registers its playout to be pumped (PacingClock; tests drive a fake). */
export interface PumpScheduler {
  add(p: Pumpable): void;
  delete(p: Pumpable): void;
  /** How late this scheduler's loop runs (absent: unknown, and the playout lead stays fixed). */
  readonly lateness?: LoopLateness;
}

export class PacingClock implements PumpScheduler {
  private readonly members = new Set<Pumpable>();
  private timer: NodeJS.Timeout | undefined;
  /** When the last tick ran (or the timer started), ms on `now`'s clock. */
  private lastTickAtMs = 0;
  readonly lateness: LoopLateness;

  constructor(
    private readonly now: () => number = () => performance.now(),
    lateness: LoopLateness = new LoopLateness(),
  ) {
    this.lateness = lateness;
  }

  add(p: Pumpable): void {
    this.members.add(p);
    if (!this.timer) {
      this.lastTickAtMs = this.now();
      this.timer = setInterval(() => this.tick(), TICK_MS);
    }
  }

  delete(p: Pumpable): void {
    this.members.delete(p);
    if (this.members.size === 0) this.stop();
  }

  get size(): number {
    return this.members.size;
  }

  /** One tick: measure how late it fired, then pump every member. Public so tests can drive it on a manual `now`. */
  tick(): void {
    const now = this.now();
    this.lateness.observe(now - this.lastTickAtMs - TICK_MS, now);
    this.lastTickAtMs = now;
    for (const p of this.members) {
      let keep = false;
      try {
        keep = p.pump(now);
      } catch {
        keep = false; // a failing call must not stop the clock for the others
      }
      if (!keep) this.members.delete(p);
    }
    if (this.members.size === 0) this.stop();
  }

  private stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

export const sharedClock = new PacingClock();
