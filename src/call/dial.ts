/**
 * Dialling a model session with back-off: connect attempts under one rule
 * until one succeeds. Provider-neutral (it sees a ModelProvider, never a
 * socket), so every provider's link dials the same way.
 *
 * Contract:
 * - Attempt 1 at once, attempt k ≥ 2 after a delay drawn uniformly from
 *   [0, min(maxMs, baseMs · 2^(k−2))) ms ("full jitter"). The budget runs
 *   from the dial's start: an attempt whose delay would not end within
 *   `budgetMs` is not made, and one still in flight when the budget runs out
 *   is aborted through its AbortSignal.
 * - A connect error that is not retryable (ModelConnectError.retryable
 *   false: 401, a rejected session.update) ends the attempts at once.
 * - Everything but success rejects with DialGaveUp (attempts made, the
 *   reason — the endpoint's last word where there was one — and whether a
 *   later dial can help); an owner's abort stops at once, reason `aborted`.
 *   A session that connects after the budget or an abort is closed.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../log.js';
import { ModelConnectError, type ModelProvider, type ModelSession, type ModelSessionOptions } from './voice-model.js';

/** Delay before connect attempt `attempt` (1-based) of one dial: 0 for the first, then full jitter (ms). */
export function backoffDelayMs(attempt: number, baseMs: number, maxMs: number, random: () => number): number {
  if (attempt <= 1) return 0;
  const cap = Math.min(maxMs, baseMs * 2 ** Math.min(attempt - 2, 30));
  return Math.floor(random() * cap);
}

export class DialGaveUp extends Error {
  constructor(
    readonly attempts: number,
    readonly reason: string,
    readonly retryable: boolean,
  ) {
    super(reason);
    this.name = 'DialGaveUp';
  }
}

export interface DialParams {
  provider: ModelProvider;
  session: ModelSessionOptions;
  budgetMs: number;
  baseMs: number;
  maxMs: number;
  random: () => number;
  now: () => number;
  /** Aborted by the owner: stop at once, quietly. */
  signal: AbortSignal;
  log: Logger;
}

/** An error's message, or the thrown value as text. */
export function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Connect attempts under the backoff rule until one succeeds, a non-retryable
 * error, the budget, or an abort (all but success reject with DialGaveUp).
 */
export async function dial(p: DialParams): Promise<{ session: ModelSession; attempts: number }> {
  const started = p.now();
  const budget = new AbortController();
  const onOwnerAbort = (): void => budget.abort();
  p.signal.addEventListener('abort', onOwnerAbort, { once: true });
  const deadline = setTimeout(() => budget.abort(), Math.max(0, p.budgetMs));
  let attempts = 0;
  let last = 'no attempt made';
  try {
    for (;;) {
      const delay = backoffDelayMs(attempts + 1, p.baseMs, p.maxMs, p.random);
      if (attempts > 0 && p.now() - started + delay >= p.budgetMs) break;
      if (delay > 0) {
        try {
          await sleep(delay, undefined, { signal: budget.signal });
        } catch {
          break; // aborted by the owner or the budget
        }
      }
      if (budget.signal.aborted) break;
      attempts++;
      try {
        const session = await p.provider.connect(p.session, budget.signal);
        if (budget.signal.aborted) {
          session.close();
          break;
        }
        return { session, attempts };
      } catch (err) {
        if (budget.signal.aborted) {
          // Keep what the endpoint said last: it is the useful part of the reason.
          if (!p.signal.aborted) {
            last = `attempt ${attempts} still connecting when the budget ran out${attempts > 1 ? `; attempt ${attempts - 1}: ${last}` : ''}`;
          }
          break;
        }
        last = errText(err);
        const retryable = err instanceof ModelConnectError ? err.retryable : true;
        p.log.warn({ attempt: attempts, err: last, retryable }, 'model connect attempt failed');
        if (!retryable) throw new DialGaveUp(attempts, last, false);
      }
    }
    const why = p.signal.aborted ? 'aborted' : `gave up after ${p.now() - started} ms (budget ${p.budgetMs} ms): ${last}`;
    throw new DialGaveUp(attempts, why, !p.signal.aborted);
  } finally {
    clearTimeout(deadline);
    p.signal.removeEventListener('abort', onOwnerAbort);
  }
}
