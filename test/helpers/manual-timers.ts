/**
 * Timers moved on by hand, for a CallSession (or anything that takes
 * CallTimers): `advance(ms)` fires what falls due, in order, and lets promise
 * chains settle after each, so timing tests are exact and never wait on real time.
 */
import type { CallTimers, TimerHandle } from '../../src/call/ports.js';

/** The call's timers, moved on by hand: `advance(ms)` fires what falls due, in order, letting promise chains settle after each. */
export class ManualTimers implements CallTimers {
  private atMs = 0;
  private seq = 0;
  private readonly pending = new Map<TimerHandle, { dueMs: number; seq: number; fn: () => void; everyMs?: number }>();
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const h = {};
    this.pending.set(h, { dueMs: this.atMs + Math.max(1, ms), seq: this.seq++, fn });
    return h;
  }
  setInterval(fn: () => void, ms: number): TimerHandle {
    const h = {};
    const everyMs = Math.max(1, ms);
    this.pending.set(h, { dueMs: this.atMs + everyMs, seq: this.seq++, fn, everyMs });
    return h;
  }
  clear(h: TimerHandle | undefined): void {
    if (h) this.pending.delete(h);
  }
  async advance(ms: number): Promise<void> {
    const endMs = this.atMs + ms;
    await flush();
    for (;;) {
      let next: [TimerHandle, { dueMs: number; seq: number; fn: () => void; everyMs?: number }] | undefined;
      for (const e of this.pending) if (e[1].dueMs <= endMs && (!next || e[1].dueMs < next[1].dueMs || (e[1].dueMs === next[1].dueMs && e[1].seq < next[1].seq))) next = e;
      if (!next) break;
      const [h, t] = next;
      this.atMs = t.dueMs;
      if (t.everyMs) this.pending.set(h, { ...t, dueMs: t.dueMs + t.everyMs, seq: this.seq++ });
      else this.pending.delete(h);
      t.fn();
      await flush();
    }
    this.atMs = endMs;
  }
}

/** Let promise chains settle (one macrotask turn; no time passes for the call). */
export const flush = () => new Promise<void>((r) => setImmediate(r));
