/**
 * Latency histogram with fixed memory: log-linear buckets (8 per power of
 * two) from 1 µs to ~70 s, so a call can record 50 samples/s for hours
 * without growing. Percentiles are accurate to one bucket (≤ 9% relative).
 * Values are recorded in ms (fractions allowed) and reported in ms.
 */
const SUB_BUCKETS = 8;
const MIN_US = 1;
const OCTAVES = 27; // 2^26 µs ≈ 67 s
const MAX_US = 2 ** OCTAVES;

export class LatencyHistogram {
  private readonly counts = new Uint32Array(OCTAVES * SUB_BUCKETS + 1);
  count = 0;
  sumMs = 0;
  maxMs = 0;
  minMs = Infinity;

  record(ms: number): void {
    if (!(ms >= 0)) return; // NaN and negatives (clock steps) are not latencies
    this.count++;
    this.sumMs += ms;
    if (ms > this.maxMs) this.maxMs = ms;
    if (ms < this.minMs) this.minMs = ms;
    this.counts[bucketOf(ms * 1000)]++;
  }

  /** q in [0, 1]; the upper edge of the bucket holding that rank, clamped to the observed max. */
  percentile(q: number): number {
    if (this.count === 0) return NaN;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return Math.min(upperEdgeUs(i) / 1000, this.maxMs);
    }
    return this.maxMs;
  }

  /** Samples at or below `ms`, to one bucket's accuracy (a bucket counts if its upper edge is ≤ ms). */
  countAtMost(ms: number): number {
    const us = ms * 1000;
    let n = 0;
    for (let i = 0; i < this.counts.length; i++) {
      if (upperEdgeUs(i) > us * 1.0000001) break;
      n += this.counts[i]!;
    }
    return n;
  }

  merge(other: LatencyHistogram): void {
    for (let i = 0; i < this.counts.length; i++) this.counts[i]! += other.counts[i]!;
    this.count += other.count;
    this.sumMs += other.sumMs;
    this.maxMs = Math.max(this.maxMs, other.maxMs);
    this.minMs = Math.min(this.minMs, other.minMs);
  }

  summary(): LatencySummary {
    return {
      count: this.count,
      p50Ms: round3(this.percentile(0.5)),
      p99Ms: round3(this.percentile(0.99)),
      maxMs: round3(this.count ? this.maxMs : NaN),
      meanMs: round3(this.count ? this.sumMs / this.count : NaN),
    };
  }
}

export interface LatencySummary {
  count: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  meanMs: number;
}

/** Bucket of a sample in µs (exported for tests). Per recorded sample (50 a second per call each way): integer ops only, no log2/pow. */
export function bucketOf(us: number): number {
  if (us < MIN_US) return 0;
  if (us >= MAX_US) return OCTAVES * SUB_BUCKETS;
  const octave = 31 - Math.clz32(us); // floor(log2(us)) for 1 ≤ us < 2^31
  const base = 1 << octave;
  const sub = Math.min(SUB_BUCKETS - 1, Math.floor(((us - base) / base) * SUB_BUCKETS));
  return octave * SUB_BUCKETS + sub + 1;
}

function upperEdgeUs(bucket: number): number {
  if (bucket === 0) return MIN_US;
  const octave = Math.floor((bucket - 1) / SUB_BUCKETS);
  const sub = (bucket - 1) % SUB_BUCKETS;
  return 2 ** octave * (1 + (sub + 1) / SUB_BUCKETS);
}

function round3(x: number): number {
  return Number.isFinite(x) ? Math.round(x * 1000) / 1000 : x;
}
