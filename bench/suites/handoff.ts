/**
 * Cost of handing one 20 ms frame to a piscina worker (decode + upsample
 * there, 960 bytes back) versus doing the work inline. Round trips are timed
 * one at a time with hrtime (a frame is small, so what matters is latency,
 * not throughput); p50 and p99 over all of them.
 */
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { median } from '../measure.js';
import type { Result, RunOptions } from '../types.js';

export async function measureHandoff(opts: RunOptions, frames: readonly Uint8Array[]): Promise<Result[]> {
  const filename = fileURLToPath(new URL('../worker.js', import.meta.url));
  const pool = new Piscina({ filename, minThreads: 1, maxThreads: 1, idleTimeout: 60_000 });
  const rounds = opts.rounds;
  const perRound = opts.quick ? 1000 : 1500;
  try {
    // Warm-up: worker start, module load, JIT on both sides.
    for (let i = 0; i < 500; i++) await pool.run(frames[i % frames.length]);
    const all: number[] = [];
    const roundMedians: number[] = [];
    for (let r = 0; r < rounds; r++) {
      opts.log(`  dsp: piscina round trips, round ${r + 1}/${rounds} (${perRound})`);
      const ns: number[] = [];
      for (let i = 0; i < perRound; i++) {
        const frame = frames[i % frames.length];
        const t0 = process.hrtime.bigint();
        const out = (await pool.run(frame)) as Uint8Array;
        const dt = Number(process.hrtime.bigint() - t0);
        if (out.length !== frame.length * 6) throw new Error(`worker returned ${out.length} bytes for a ${frame.length}-byte frame`);
        ns.push(dt);
      }
      roundMedians.push(median(ns));
      all.push(...ns);
    }
    all.sort((a, b) => a - b);
    return [{
      id: 'dsp.handoff.piscina',
      suite: 'dsp',
      name: 'piscina pool.run round trip (worker decodes + upsamples)',
      group: 'worker hand-off of one inbound frame',
      per: '20 ms frame',
      medianNs: Math.min(...roundMedians), // least-disturbed round, as in measure.ts
      p99Ns: all[Math.min(all.length - 1, Math.floor(all.length * 0.99))],
      samples: all.length,
      peer: 'dsp.inbound.wasm',
      ours: false,
      extra: { roundMediansNs: roundMedians.map((x) => Math.round(x)).join(' ') },
      note: 'timed one at a time; peer = the same work inline',
    }];
  } finally {
    await pool.destroy();
  }
}
