/**
 * A circuit breaker for one back end, on an injected clock (ms).
 *
 * Contract:
 * - closed: every call is admitted; `threshold` consecutive failures open it.
 * - open: nothing is admitted until `cooldownMs` have passed since it opened.
 * - half-open (after the cool-down): exactly one trial call is admitted,
 *   others are refused while it runs; its success closes the breaker, its
 *   failure opens it for another cool-down.
 * - `release()` ends an admitted call that says nothing about the back end
 *   (cancelled by the caller): the count is unchanged, a trial slot is freed.
 */

export interface BreakerOptions {
  /** Consecutive failures that open it. */
  threshold: number;
  /** How long it stays open before a trial, ms. */
  cooldownMs: number;
  now: () => number;
}

export type BreakerState = 'closed' | 'open' | 'half_open';

export const DEFAULT_BREAKER_THRESHOLD = 5;
export const DEFAULT_BREAKER_COOLDOWN_MS = 30_000;

export class CircuitBreaker {
  private failures = 0;
  private openedAtMs = 0;
  private trialInFlight = false;

  constructor(private readonly o: BreakerOptions) {}

  get state(): BreakerState {
    if (this.failures < this.o.threshold) return 'closed';
    return this.o.now() - this.openedAtMs < this.o.cooldownMs ? 'open' : 'half_open';
  }

  /** May a call go through now? A true answer must be followed by exactly one success(), failure() or release(). */
  admit(): boolean {
    const s = this.state;
    if (s === 'closed') return true;
    if (s === 'open' || this.trialInFlight) return false;
    this.trialInFlight = true;
    return true;
  }

  success(): void {
    this.failures = 0;
    this.trialInFlight = false;
  }

  failure(): void {
    this.failures++;
    this.trialInFlight = false;
    if (this.failures >= this.o.threshold) this.openedAtMs = this.o.now();
  }

  release(): void {
    this.trialInFlight = false;
  }
}
