/**
 * A TCP proxy that delays every chunk it forwards, to simulate a network leg
 * (the kernel here has no netem qdisc). One listening port forwards every
 * connection to one target (host:port), each direction on its own.
 *
 * Contract:
 * - Bytes are forwarded unchanged and IN ORDER per connection direction: a
 *   chunk read at time t is written at max(t + delayMs + jitter, the time the
 *   previous chunk of that direction was written), jitter uniform in
 *   [-jitterMs, +jitterMs] from a seeded PRNG (mulberry32). Jitter therefore
 *   never reorders a connection's bytes; with jitterMs = 0 no chunk leaves
 *   before delayMs has passed.
 * - An end (FIN) is forwarded in order after the last chunk, with the same
 *   delay (half-open sockets: each direction ends on its own); a side that
 *   closes without an end (error, reset) destroys the other side at once.
 * - Its own timing error is measured: for every chunk, actual write time −
 *   scheduled write time (ms, ≥ 0: a timer never fires early, a late one is
 *   the proxy's error, which a run must print beside what it measures).
 *   `stats()` gives p50/p99/max of it and the number of chunks, and the
 *   delay actually applied (p50/p95 and a random sample, to combine legs).
 * - Backpressure: when a write returns false the reading side is paused
 *   until the writing side drains.
 *
 * Times are performance.now() ms. Nothing here throws into the event loop:
 * socket errors end the connection pair.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

export interface DelayLegOptions {
  /** Where connections go. */
  targetHost?: string;
  targetPort: number;
  /** One-way delay of each direction, ms. */
  delayMs: number;
  /** Uniform jitter ±jitterMs around delayMs (never reordering), ms. Default 0. */
  jitterMs?: number;
  /** PRNG seed of the jitter (same seed, same jitter sequence). Default 1. */
  seed?: number;
  /** Listen port (default 0 = any free one) and host (default 127.0.0.1). */
  port?: number;
  host?: string;
}

export interface ProxyTimingStats {
  /** Chunks forwarded (both directions, all connections). */
  chunks: number;
  /** Actual − scheduled forward time, ms. */
  errP50Ms: number;
  errP99Ms: number;
  errMaxMs: number;
  /** Delay applied to each chunk (scheduled − read time: delay + jitter + any wait behind an earlier chunk), ms. */
  appliedP50Ms: number;
  appliedP95Ms: number;
  /** Up to APPLIED_SAMPLE applied delays drawn at random from all chunks, for combining legs (ms). */
  appliedSample: number[];
  /** Connections accepted. */
  connections: number;
}

export interface DelayProxy {
  port: number;
  stats(): ProxyTimingStats;
  /** Forget the timing samples so far (e.g. after a warm-up). */
  resetStats(): void;
  /** Stop listening and destroy every open connection pair. */
  close(): Promise<void>;
}

/** mulberry32: numbers in [0, 1). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** At most this many timing samples are kept (a run's p99 does not need more); later ones replace random older ones. */
const MAX_SAMPLES = 500_000;
/** Applied delays handed out by stats() (a random subset). */
const APPLIED_SAMPLE = 4000;

/** Percentile q of an ascending array (nearest rank); NaN when empty. */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]! : NaN;
}

/** One direction of one connection: a FIFO of chunks with their scheduled write times, one timer for its head. */
class DelayedPipe {
  private queue: { at: number; readAt: number; chunk: Buffer | null }[] = [];
  private timer: NodeJS.Timeout | null = null;
  private lastAt = 0;
  private ended = false;

  constructor(
    private readonly from: Socket,
    private readonly to: Socket,
    private readonly delayOf: () => number,
    private readonly record: (errMs: number, appliedMs: number) => void,
  ) {
    from.on('data', (chunk: Buffer) => this.push(chunk));
    from.on('end', () => this.push(null));
  }

  /** A chunk (or null = end) read now: scheduled no earlier than the previous one. */
  private push(chunk: Buffer | null): void {
    if (this.ended) return;
    if (chunk === null) this.ended = true;
    const readAt = performance.now();
    const at = Math.max(readAt + this.delayOf(), this.lastAt);
    this.lastAt = at;
    this.queue.push({ at, readAt, chunk });
    if (this.queue.length === 1) this.arm();
  }

  private arm(): void {
    const head = this.queue[0];
    if (!head || this.timer) return;
    this.timer = setTimeout(() => this.flush(), Math.max(0, head.at - performance.now()));
  }

  /** Writes every chunk whose time has come, in order. */
  private flush(): void {
    this.timer = null;
    const now = performance.now();
    while (this.queue.length && this.queue[0]!.at <= now + 0.5) {
      const { at, readAt, chunk } = this.queue.shift()!;
      if (this.to.destroyed) return this.drop();
      this.record(Math.max(0, performance.now() - at), at - readAt);
      if (chunk === null) {
        this.to.end();
        continue;
      }
      if (!this.to.write(chunk) && !this.from.isPaused()) {
        this.from.pause();
        this.to.once('drain', () => this.from.resume());
      }
    }
    this.arm();
  }

  drop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.queue = [];
  }
}

/** Start one delayed leg: a listening port forwarding to `targetPort` with the delay on both directions. */
export async function startDelayProxy(opts: DelayLegOptions): Promise<DelayProxy> {
  const jitterMs = opts.jitterMs ?? 0;
  if (!(opts.delayMs >= 0) || !(jitterMs >= 0)) throw new Error(`delay proxy: delayMs and jitterMs must be ≥ 0 (got ${opts.delayMs}, ${jitterMs})`);
  const rand = prng(opts.seed ?? 1);
  const delayOf = () => Math.max(0, opts.delayMs + (jitterMs ? (2 * rand() - 1) * jitterMs : 0));
  // Reservoirs (uniform random subsets of every chunk's figures); their own PRNG so the jitter sequence stays the seed's.
  const pick = prng((opts.seed ?? 1) ^ 0x5bd1e995);
  let samples: number[] = [];
  let applied: number[] = [];
  let seen = 0;
  let connections = 0;
  const record = (errMs: number, appliedMs: number) => {
    seen++;
    if (samples.length < MAX_SAMPLES) {
      samples.push(errMs);
      applied.push(appliedMs);
    } else {
      const i = Math.floor(pick() * seen);
      if (i < MAX_SAMPLES) {
        samples[i] = errMs;
        applied[i] = appliedMs;
      }
    }
  };
  const open = new Set<Socket>();
  const server: Server = createServer({ noDelay: true, allowHalfOpen: true }, (client) => {
    connections++;
    const upstream = connect({ host: opts.targetHost ?? '127.0.0.1', port: opts.targetPort, noDelay: true, allowHalfOpen: true });
    open.add(client);
    open.add(upstream);
    const up = new DelayedPipe(client, upstream, delayOf, record);
    const down = new DelayedPipe(upstream, client, delayOf, record);
    const fail = () => {
      up.drop();
      down.drop();
      client.destroy();
      upstream.destroy();
    };
    client.on('error', fail);
    upstream.on('error', fail);
    // A side that closes without having sent its end (reset, destroyed) takes the other side with it at once.
    client.on('close', () => {
      open.delete(client);
      if (!client.readableEnded) fail();
    });
    upstream.on('close', () => {
      open.delete(upstream);
      if (!upstream.readableEnded) fail();
    });
  });
  server.on('error', () => {}); // a listen error rejects below; later ones (none expected) must not crash the bench
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    stats() {
      const sorted = Float64Array.from(samples).sort();
      const appliedSorted = Float64Array.from(applied).sort();
      const appliedSample: number[] = [];
      for (let i = 0; i < Math.min(APPLIED_SAMPLE, applied.length); i++) appliedSample.push(applied[Math.floor(pick() * applied.length)]!);
      return {
        chunks: seen,
        appliedP50Ms: percentile(appliedSorted, 0.5),
        appliedP95Ms: percentile(appliedSorted, 0.95),
        appliedSample,
        errP50Ms: percentile(sorted, 0.5),
        errP99Ms: percentile(sorted, 0.99),
        errMaxMs: sorted.length ? sorted[sorted.length - 1]! : NaN,
        connections,
      };
    },
    resetStats() {
      samples = [];
      applied = [];
      seen = 0;
    },
    close() {
      for (const s of open) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
