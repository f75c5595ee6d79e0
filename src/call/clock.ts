/**
 * One shared pacing clock for every call in the process. Instead of a timer
 * per call, each call with queued audio registers here and is pumped every
 * TICK_MS; the timer runs only while someone is registered. Pacing accuracy
 * comes from the playout's own wall-clock arithmetic, not from the tick, so a
 * late tick sends more frames rather than drifting.
 */
export const TICK_MS = 10;

export interface Pumpable {
  /** Send what is due at `nowMs`; return false to be unregistered (nothing left to send). */
  pump(nowMs: number): boolean;
}

/** Where a call registers its playout to be pumped (PacingClock; tests drive a fake). */
export interface PumpScheduler {
  add(p: Pumpable): void;
  delete(p: Pumpable): void;
}

export class PacingClock implements PumpScheduler {
  private readonly members = new Set<Pumpable>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly now: () => number = () => performance.now()) {}

  add(p: Pumpable): void {
    this.members.add(p);
    if (!this.timer) this.timer = setInterval(() => this.tick(), TICK_MS);
  }

  delete(p: Pumpable): void {
    this.members.delete(p);
    if (this.members.size === 0) this.stop();
  }

  get size(): number {
    return this.members.size;
  }

  private tick(): void {
    const now = this.now();
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
