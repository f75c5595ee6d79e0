/**
 * Per-key token buckets (key = a client address, see `addressKey`, or a
 * calling number). `burst` requests at once, refilled at `perSecond`.
 *
 * Memory is bounded whatever the traffic: the map holds at most `maxKeys`
 * buckets. It is kept in least-recently-used order (a key moves to the end
 * each time it is charged), so idle buckets are dropped from the front, a few
 * per call (no periodic scan of the whole map on the request path), and when
 * the map is full the least recently used bucket goes. Dropping a bucket
 * forgives that key (it starts again from a full burst), so the cap is sized
 * far above the number of distinct clients a deployment sees in one refill
 * period.
 */
import { isIPv6 } from 'node:net';

/** Buckets kept at most, per limiter (each ~100 bytes: 100k ≈ 10 MB). */
export const MAX_LIMITER_KEYS = 100_000;
/** Idle buckets dropped from the front per call, at most (amortised sweep). */
const SWEEP_PER_CALL = 4;

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  /** A bucket untouched for this long has refilled to `burst`: dropping it changes nothing. */
  private readonly fullAfterMs: number;

  constructor(
    private readonly burst: number,
    private readonly perSecond: number,
    private readonly now: () => number = () => performance.now(),
    private readonly maxKeys: number = MAX_LIMITER_KEYS,
  ) {
    this.fullAfterMs = (burst / perSecond) * 1000;
  }

  /** Charge one token to `key`: true when it had one. */
  allow(key: string): boolean {
    const now = this.now();
    let b = this.buckets.get(key);
    if (b) {
      this.buckets.delete(key); // re-inserted below: the map stays in last-use order
      b.tokens = this.tokensAt(b, now);
    } else {
      b = { tokens: this.burst, at: now };
    }
    b.at = now;
    this.buckets.set(key, b);
    this.sweep(now);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Whether `key` has a token now, without charging it or creating a bucket. */
  has(key: string): boolean {
    const b = this.buckets.get(key);
    return !b || this.tokensAt(b, this.now()) >= 1;
  }

  /** The bucket's tokens at `now`: refilled at `perSecond` since it was last charged, capped at `burst`. */
  private tokensAt(b: Bucket, now: number): number {
    return Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.perSecond);
  }

  get size(): number {
    return this.buckets.size;
  }

  /** Drop full buckets from the least recently used end (a few per call), then any over `maxKeys`. */
  private sweep(now: number): void {
    let n = 0;
    for (const [k, b] of this.buckets) {
      if (n++ >= SWEEP_PER_CALL || now - b.at <= this.fullAfterMs) break;
      this.buckets.delete(k);
    }
    while (this.buckets.size > this.maxKeys) this.buckets.delete(this.buckets.keys().next().value!);
  }
}

/**
 * The rate-limit key of a canonical client address (core.ts canonicalIp):
 * an IPv4 address as it is; an IPv6 address by its /64, the smallest block a
 * site is given (one host can use any address in it); IPv4-mapped IPv6 was
 * already written as IPv4. Anything else is its own key.
 */
export function addressKey(ip: string): string {
  if (!ip.includes(':') || !isIPv6(ip)) return ip;
  const [head = '', tail = ''] = ip.split('::') as [string, string | undefined];
  const left = head ? head.split(':') : [];
  const right = ip.includes('::') ? (tail ? tail.split(':') : []) : [];
  const groups = ip.includes('::') ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right] : left;
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`;
}
