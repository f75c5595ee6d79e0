/**
 * Eligibility back ends behind one interface: the built-in mock (default)
 * and an HTTP client for a real eligibility API.
 *
 * HTTP contract: POST {ELIGIBILITY_API_URL} with JSON {"member_id","date_of_birth"}
 * and `Authorization: Bearer {ELIGIBILITY_API_KEY}`; answers 200 with
 * {"status":"eligible"|"inactive"|"not_found"|"dob_mismatch", "plan"?, "coverage_start"?,
 *  "coverage_end"?, "deductible"?, "deductible_met"?, "copays"?: {name: amount}}.
 * Amounts are US dollars. 404 is read as not_found.
 */

export type EligibilityStatus = 'eligible' | 'inactive' | 'not_found' | 'dob_mismatch';

export interface Coverage {
  status: EligibilityStatus;
  plan?: string;
  coverageStart?: string;
  coverageEnd?: string;
  deductible?: number;
  deductibleMet?: number;
  copays?: Record<string, number>;
}

export interface EligibilityBackend {
  readonly name: string;
  lookup(memberId: string, dateOfBirth: string, signal: AbortSignal): Promise<Coverage>;
}

/** A back-end failure; `retryable` says whether trying again can help. */
export class EligibilityError extends Error {
  constructor(message: string, readonly retryable: boolean, readonly code: string) {
    super(message);
    this.name = 'EligibilityError';
  }
}

export interface MockMember {
  memberId: string;
  dateOfBirth: string;
  coverage: Coverage;
}

export const MOCK_MEMBERS: MockMember[] = [
  {
    memberId: 'MB123456', dateOfBirth: '1980-03-05',
    coverage: { status: 'eligible', plan: 'Gold PPO', coverageStart: '2026-01-01', coverageEnd: '2026-12-31', deductible: 1500, deductibleMet: 420, copays: { 'primary care': 25, specialist: 50, 'emergency room': 250 } },
  },
  {
    memberId: 'KT654321', dateOfBirth: '1975-11-22',
    coverage: { status: 'eligible', plan: 'Silver HMO', coverageStart: '2025-07-01', coverageEnd: '2026-06-30', deductible: 3000, deductibleMet: 3000, copays: { 'primary care': 35, specialist: 70, 'emergency room': 400 } },
  },
  {
    memberId: 'AZ000111', dateOfBirth: '1992-07-14',
    coverage: { status: 'eligible', plan: 'Bronze HDHP', coverageStart: '2026-01-01', coverageEnd: '2026-12-31', deductible: 7000, deductibleMet: 150, copays: { 'primary care': 0, specialist: 0, 'emergency room': 0 } },
  },
  {
    memberId: 'QR778899', dateOfBirth: '1961-01-30',
    coverage: { status: 'inactive', plan: 'Gold PPO', coverageStart: '2023-01-01', coverageEnd: '2025-12-31' },
  },
  {
    memberId: 'LM246810', dateOfBirth: '2001-09-09',
    coverage: { status: 'eligible', plan: 'Platinum PPO', coverageStart: '2026-03-01', coverageEnd: '2027-02-28', deductible: 500, deductibleMet: 500, copays: { 'primary care': 10, specialist: 20, 'emergency room': 100 } },
  },
  {
    memberId: 'DN135790', dateOfBirth: '1988-12-01',
    coverage: { status: 'inactive', plan: 'Silver HMO', coverageStart: '2024-01-01', coverageEnd: '2024-12-31' },
  },
];

export interface MockOptions {
  /** Added latency per lookup, ms (demo realism, slow-API tests). */
  delayMs?: number;
  /** Fail every lookup, as an API outage would. */
  failing?: boolean;
}

export class MockEligibilityBackend implements EligibilityBackend {
  readonly name = 'mock';
  constructor(private readonly opts: MockOptions = {}) {}

  async lookup(memberId: string, dateOfBirth: string, signal: AbortSignal): Promise<Coverage> {
    if (this.opts.delayMs) await sleep(this.opts.delayMs, signal);
    if (this.opts.failing) throw new EligibilityError('mock eligibility API is down', true, 'unavailable');
    const m = MOCK_MEMBERS.find((x) => x.memberId === memberId);
    if (!m) return { status: 'not_found' };
    if (m.dateOfBirth !== dateOfBirth) return { status: 'dob_mismatch' };
    return structuredClone(m.coverage);
  }
}

export interface HttpBackendOptions {
  url: string;
  apiKey?: string;
  timeoutMs: number;
  retries: number;
  /** First backoff, ms; doubles each retry, with jitter, capped at maxBackoffMs. */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** Consecutive failed lookups that open the breaker, and how long it stays open. */
  breakerThreshold?: number;
  breakerCooldownMs?: number;
  fetch?: typeof fetch;
}

export class HttpEligibilityBackend implements EligibilityBackend {
  readonly name = 'http';
  private failures = 0;
  private openUntil = 0;
  private trialInFlight = false;
  attempts = 0;

  constructor(private readonly o: HttpBackendOptions) {}

  get breakerOpen(): boolean {
    return Date.now() < this.openUntil;
  }

  async lookup(memberId: string, dateOfBirth: string, signal: AbortSignal): Promise<Coverage> {
    const threshold = this.o.breakerThreshold ?? 5;
    const tripped = this.failures >= threshold;
    if (tripped && (this.breakerOpen || this.trialInFlight)) {
      throw new EligibilityError('eligibility API circuit breaker is open', true, 'breaker_open');
    }
    // Half-open after the cooldown: one trial lookup goes through (others are
    // refused meanwhile); its result closes or re-opens the breaker.
    if (tripped) this.trialInFlight = true;
    try {
      const result = await this.withRetries(memberId, dateOfBirth, signal);
      this.failures = 0;
      return result;
    } catch (err) {
      if (!(err instanceof EligibilityError) || err.code !== 'aborted') {
        this.failures++;
        if (this.failures >= threshold) this.openUntil = Date.now() + (this.o.breakerCooldownMs ?? 30_000);
      }
      throw err;
    } finally {
      if (tripped) this.trialInFlight = false;
    }
  }

  private async withRetries(memberId: string, dateOfBirth: string, signal: AbortSignal): Promise<Coverage> {
    let backoff = this.o.backoffMs ?? 200;
    const cap = this.o.maxBackoffMs ?? 2000;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.once(memberId, dateOfBirth, signal);
      } catch (err) {
        const e = err instanceof EligibilityError ? err : new EligibilityError(String(err), true, 'network');
        if (!e.retryable || attempt >= this.o.retries || signal.aborted) throw e;
        const wait = Math.min(cap, (e as EligibilityError & { retryAfterMs?: number }).retryAfterMs ?? backoff * (0.5 + Math.random()));
        await sleep(wait, signal);
        backoff *= 2;
      }
    }
  }

  private async once(memberId: string, dateOfBirth: string, signal: AbortSignal): Promise<Coverage> {
    this.attempts++;
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
    if (this.o.apiKey) headers.authorization = `Bearer ${this.o.apiKey}`;
    let res: Response;
    const deadline = AbortSignal.timeout(this.o.timeoutMs);
    try {
      res = await (this.o.fetch ?? fetch)(this.o.url, {
        method: 'POST',
        headers,
        body: JSON.stringify({ member_id: memberId, date_of_birth: dateOfBirth }),
        signal: AbortSignal.any([signal, deadline]),
      });
    } catch (err) {
      if (signal.aborted) throw new EligibilityError('lookup cancelled', false, 'aborted');
      const timeout = err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError');
      throw new EligibilityError(timeout ? `eligibility API timed out after ${this.o.timeoutMs} ms` : 'eligibility API unreachable', true, timeout ? 'timeout' : 'network');
    }
    if (res.status === 404) {
      await res.body?.cancel();
      return { status: 'not_found' };
    }
    if (res.status === 429 || res.status >= 500) {
      await res.body?.cancel();
      const e = new EligibilityError(`eligibility API answered ${res.status}`, true, `http_${res.status}`) as EligibilityError & { retryAfterMs?: number };
      const ra = retryAfterMs(res.headers.get('retry-after'));
      if (ra !== undefined) e.retryAfterMs = ra;
      throw e;
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw new EligibilityError(`eligibility API answered ${res.status}`, false, `http_${res.status}`);
    }
    let body: any;
    try {
      body = await res.json(); // the body is read under the same deadline
    } catch {
      if (signal.aborted) throw new EligibilityError('lookup cancelled', false, 'aborted');
      if (deadline.aborted) throw new EligibilityError(`eligibility API timed out after ${this.o.timeoutMs} ms`, true, 'timeout');
      throw new EligibilityError('eligibility API answered malformed JSON', false, 'bad_response');
    }
    const status = body?.status;
    if (!['eligible', 'inactive', 'not_found', 'dob_mismatch'].includes(status)) {
      throw new EligibilityError('eligibility API answered without a valid status', false, 'bad_response');
    }
    const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
    const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
    const copays: Record<string, number> = {};
    if (body.copays && typeof body.copays === 'object') for (const [k, v] of Object.entries(body.copays)) if (typeof v === 'number') copays[k] = v;
    return {
      status,
      plan: str(body.plan),
      coverageStart: str(body.coverage_start),
      coverageEnd: str(body.coverage_end),
      deductible: num(body.deductible),
      deductibleMet: num(body.deductible_met),
      copays: Object.keys(copays).length ? copays : undefined,
    };
  }
}

/** Retry-After as delay-seconds or an HTTP date, in ms from now; undefined when absent or unreadable. */
export function retryAfterMs(value: string | null, now = Date.now()): number | undefined {
  if (value === null || value.trim() === '') return undefined;
  if (/^\s*\d+(\.\d+)?\s*$/.test(value)) return Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new EligibilityError('lookup cancelled', false, 'aborted'));
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(new EligibilityError('lookup cancelled', false, 'aborted'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
