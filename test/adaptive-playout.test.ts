/**
 * The adaptive playout lead (clock.ts LoopLateness / AdaptiveLead, read by
 * playout.ts at each pump), on manual clocks: every time here is a number we
 * set, never the wall clock. What is checked: lateness raises the lead up to
 * its bound and calm brings it back; a repeating stall pattern keeps it up so
 * the caller hears fewer gaps than with the fixed lead; a clear still drops
 * everything however far ahead we were; max = min is exactly the fixed lead.
 */
import { describe, expect, it } from 'vitest';
import { AdaptiveLead, LATENESS_HALF_LIFE_MS, LATENESS_HOLD_MS, LoopLateness, PacingClock, TICK_MS, type Pumpable } from '../src/call/clock.js';
import { Playout, type PlayoutLead } from '../src/call/playout.js';
import { Outbound } from '../src/call/outbound.js';

const FRAME = 160;
const bytes = (n: number, fill = 1) => new Uint8Array(n).fill(fill);

describe('LoopLateness', () => {
  it('takes the peak, holds it, then halves every half-life down to 0', () => {
    const l = new LoopLateness();
    expect(l.levelMs(0)).toBe(0);
    l.observe(300, 1000);
    expect(l.levelMs(1000)).toBe(300);
    expect(l.levelMs(1000 + LATENESS_HOLD_MS)).toBe(300);
    expect(l.levelMs(1000 + LATENESS_HOLD_MS + LATENESS_HALF_LIFE_MS)).toBeCloseTo(150, 6);
    expect(l.levelMs(1000 + LATENESS_HOLD_MS + 2 * LATENESS_HALF_LIFE_MS)).toBeCloseTo(75, 6);
    expect(l.levelMs(1000 + LATENESS_HOLD_MS + 20 * LATENESS_HALF_LIFE_MS)).toBe(0);
  });

  it('a smaller lateness of the same pattern (≥ half the level) restarts the hold; noise does not', () => {
    const l = new LoopLateness();
    l.observe(400, 0);
    l.observe(5, LATENESS_HOLD_MS - 1); // timer noise: not part of the pattern
    expect(l.levelMs(LATENESS_HOLD_MS + LATENESS_HALF_LIFE_MS)).toBeCloseTo(200, 6);
    const m = new LoopLateness();
    m.observe(400, 0);
    m.observe(250, 2000); // the next stall of the pattern
    expect(m.levelMs(2000 + LATENESS_HOLD_MS)).toBe(400);
  });

  it('ignores ticks that were on time or early', () => {
    const l = new LoopLateness();
    l.observe(0, 10);
    l.observe(-3, 20);
    l.observe(Number.NaN, 30);
    expect(l.levelMs(30)).toBe(0);
  });
});

describe('AdaptiveLead', () => {
  it('grows with lateness, bounded by max, and shrinks back to min when calm', () => {
    const l = new LoopLateness();
    const lead = new AdaptiveLead(100, 500, l);
    expect(lead.leadMs(0)).toBe(100);
    l.observe(150, 0);
    expect(lead.leadMs(0)).toBe(250);
    l.observe(2000, 10);
    expect(lead.leadMs(10)).toBe(500); // bounded
    const calm = 10 + LATENESS_HOLD_MS + 30 * LATENESS_HALF_LIFE_MS;
    expect(lead.leadMs(calm)).toBe(100);
  });

  it('with max = min (or below) it is the fixed lead whatever the loop does', () => {
    const l = new LoopLateness();
    l.observe(1000, 0);
    expect(new AdaptiveLead(100, 100, l).leadMs(0)).toBe(100);
    expect(new AdaptiveLead(100, 50, l).leadMs(0)).toBe(100);
  });
});

describe('PacingClock lateness', () => {
  it('measures each tick past its due time (TICK_MS after the last)', () => {
    let t = 0;
    const clock = new PacingClock(() => t);
    const member: Pumpable = { pump: () => true };
    clock.add(member); // the timer starts: the first tick is due at TICK_MS
    try {
      t = TICK_MS + 1;
      clock.tick();
      expect(clock.lateness.levelMs(t)).toBe(1);
      t += TICK_MS + 250; // a 250 ms stall
      clock.tick();
      expect(clock.lateness.levelMs(t)).toBe(250);
    } finally {
      clock.delete(member); // stops the timer
    }
    expect(clock.size).toBe(0);
  });
});

/**
 * Plays `audioMs` of one item through a Playout pumped every TICK_MS on a
 * manual clock whose loop stalls `stallMs` every `everyMs` (from `firstAtMs`),
 * the lateness fed to `lateness` as PacingClock does. Returns the gaps the
 * caller heard: each chunk that starts playing after what was sent before it
 * ended (its `playAtMs` is past the previous end), as ms.
 */
function playThroughStalls(lead: number | PlayoutLead, lateness: LoopLateness, audioMs: number, stall: { firstAtMs: number; everyMs: number; stallMs: number }) {
  const gapsMs: number[] = [];
  let endMs: number | undefined;
  const p = new Playout(
    {
      sendChunk: (_b, start, end, _m, playAtMs) => {
        if (endMs !== undefined && playAtMs > endMs) gapsMs.push(playAtMs - endMs);
        endMs = playAtMs + (end - start) / 8;
        return true;
      },
      sendClear: () => {},
    },
    lead,
    () => {},
    20,
  );
  p.enqueue('r', 'i', bytes((audioMs / 20) * FRAME));
  p.finishItem('i');
  let last = 0;
  let nextStall = stall.firstAtMs;
  for (let t = 0; p.queuedBytes > 0; t += TICK_MS) {
    if (t >= nextStall) {
      t += stall.stallMs; // the loop was busy: this tick fires late
      nextStall += stall.everyMs;
    }
    lateness.observe(t - last - TICK_MS, t);
    last = t;
    p.pump(t);
  }
  return gapsMs;
}

describe('Playout with the adaptive lead', () => {
  const pattern = { firstAtMs: 1000, everyMs: 2000, stallMs: 300 };

  it('a repeating stall pattern: one gap (the first stall), where the fixed lead has one per stall', () => {
    const fixedL = new LoopLateness();
    const fixed = playThroughStalls(100, fixedL, 20_000, pattern);
    const adaptiveL = new LoopLateness();
    const adaptive = playThroughStalls(new AdaptiveLead(100, 500, adaptiveL), adaptiveL, 20_000, pattern);
    expect(fixed.length).toBeGreaterThanOrEqual(8); // every 300 ms stall outlasts a 100 ms lead
    for (const g of fixed) expect(g).toBeCloseTo(200, 6);
    expect(adaptive).toHaveLength(1); // only the stall that taught it
    expect(adaptive[0]).toBeCloseTo(200, 6);
  });

  it('bounded: a stall longer than the max lead is still a gap, of the excess only', () => {
    const l = new LoopLateness();
    const gaps = playThroughStalls(new AdaptiveLead(100, 300, l), l, 10_000, { firstAtMs: 1000, everyMs: 2000, stallMs: 500 });
    expect(gaps.length).toBeGreaterThan(1);
    for (const g of gaps.slice(1)) expect(g).toBeCloseTo(200, 6); // 500 ms stall − 300 ms lead
  });

  it('with max = min the playout sends exactly what the fixed lead sends', () => {
    const l1 = new LoopLateness();
    const l2 = new LoopLateness();
    const a = playThroughStalls(100, l1, 10_000, pattern);
    const b = playThroughStalls(new AdaptiveLead(100, 100, l2), l2, 10_000, pattern);
    expect(b).toEqual(a);
  });

  it('a clear drops everything queued and sent however large the lead grew', () => {
    const l = new LoopLateness();
    const clears: number[] = [];
    let sentFrames = 0;
    const p = new Playout(
      { sendChunk: (_b, s, e) => ((sentFrames += (e - s) / FRAME), true), sendClear: () => clears.push(1) },
      new AdaptiveLead(100, 500, l),
      () => {},
      20,
    );
    p.enqueue('r', 'i', bytes(160 * 200)); // 4 s
    l.observe(400, 0);
    p.pump(0);
    expect(sentFrames).toBe(25); // 500 ms ahead
    const cut = p.interrupt(10);
    expect(clears).toHaveLength(1);
    expect(cut).toMatchObject({ itemId: 'i', sentMs: 500, audioEndMs: 0 });
    expect(p.queuedBytes).toBe(0);
    expect(p.speaking).toBe(false);
    expect(p.pump(20)).toBe(false); // nothing left to send
    expect(sentFrames).toBe(25);
  });

  it('a lead that shrinks sends nothing until the audio ahead falls below it', () => {
    const l = new LoopLateness(100, 100);
    let sentFrames = 0;
    const p = new Playout({ sendChunk: (_b, s, e) => ((sentFrames += (e - s) / FRAME), true), sendClear: () => {} }, new AdaptiveLead(100, 500, l), () => {}, 20);
    p.enqueue('r', 'i', bytes(160 * 500));
    l.observe(400, 0);
    p.pump(0); // 500 ms ahead
    expect(sentFrames).toBe(25);
    p.pump(2000); // calm again (lead back to ~100): the caller ran dry at 500 ms, refill only the lead
    expect(sentFrames).toBe(30);
  });
});

describe('Outbound passes the adaptive lead through', () => {
  function outbound(leadMaxMs: number | undefined, lateness: LoopLateness | undefined) {
    const sent: Record<string, any>[] = [];
    const members = new Set<Pumpable>();
    const out = new Outbound({
      socket: { send: (t) => (sent.push(JSON.parse(t)), true), bufferedAmount: () => 0, cork: (fn) => fn(), close: () => {} },
      clock: { add: (p) => void members.add(p), delete: (p) => void members.delete(p), lateness },
      leadMs: 100,
      leadMaxMs,
      chunkMs: 20,
      now: () => 0,
      sinceStart: () => 0,
      onChunk: () => {},
      onLine: () => {},
      truncate: () => {},
    });
    out.start('MZ1', undefined);
    out.setLive(true);
    return { out, media: () => sent.filter((m) => m.event === 'media').length };
  }
  const audio = Buffer.alloc(160 * 100, 1).toString('base64');

  it('grows to leadMaxMs while the clock reports lateness', () => {
    const l = new LoopLateness();
    l.observe(1000, 0);
    const h = outbound(300, l);
    h.out.audio('r', 'i', audio);
    expect(h.media()).toBe(15); // 300 ms ahead
  });

  it('stays at leadMs with leadMaxMs = leadMs, none given, or a clock that does not measure lateness', () => {
    const l = new LoopLateness();
    l.observe(1000, 0);
    for (const h of [outbound(100, l), outbound(undefined, l), outbound(500, undefined)]) {
      h.out.audio('r', 'i', audio);
      expect(h.media()).toBe(5);
    }
  });
});
