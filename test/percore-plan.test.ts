import { describe, expect, it } from 'vitest';
import { base64Bytes, clientFrame, clientTextFrame, mediaText, phaseOffsetMs, readServerFrame, schedule, TICK_MS } from '../bench/loadgen.js';
import { cpuBusyMs, fitsBudget, judge, MIN_GENERATOR_REALTIME, MODEL_CONNECT_P99_LIMIT_MS, P99_LIMIT_MS, plan, summarize } from '../bench/suites/percore.js';

describe('load generator schedule', () => {
  it('spreads calls over workers, the ramp and the tick phases', () => {
    const s = schedule(800, 4);
    expect(s.workers).toBe(4);
    expect(s.rampMs).toBe(1600);
    const perWorker = [0, 1, 2, 3].map((w) => s.slots.filter((x) => x.worker === w).length);
    expect(perWorker).toEqual([200, 200, 200, 200]);
    // Every (worker, phase) slot carries the same share of the calls: no 20 ms burst.
    const perSlot = new Map<string, number>();
    for (const x of s.slots) perSlot.set(`${x.worker}/${x.phase}`, (perSlot.get(`${x.worker}/${x.phase}`) ?? 0) + 1);
    expect(perSlot.size).toBe(16);
    expect(new Set(perSlot.values())).toEqual(new Set([50]));
    const starts = s.slots.map((x) => x.startMs);
    expect(starts[0]).toBe(0);
    expect(Math.max(...starts)).toBeLessThan(1600);
    expect(starts).toEqual([...starts].sort((a, b) => a - b));
  });
  it('gives every (worker, phase) its own offset inside one frame period', () => {
    const offs = [];
    for (let w = 0; w < 3; w++) for (let p = 0; p < 4; p++) offs.push(phaseOffsetMs(w, p, 3, 4));
    expect(new Set(offs).size).toBe(12);
    expect(Math.min(...offs)).toBe(0);
    expect(Math.max(...offs)).toBeLessThan(TICK_MS);
  });
});

describe('load generator framing', () => {
  it('writes masked client text frames a server reads back (zero mask key)', () => {
    for (const len of [5, 125, 126, 300, 70_000]) {
      const text = 'x'.repeat(len);
      const f = clientTextFrame(text);
      const r = readServerFrame(f, 0)!;
      expect(r.opcode).toBe(1);
      expect(r.fin).toBe(true);
      expect(r.payload.toString('latin1')).toBe(text);
      expect(r.next).toBe(f.length);
      // A partial frame is not read.
      expect(readServerFrame(f.subarray(0, f.length - 1), 0)).toBeUndefined();
    }
  });
  it('reads several unmasked server frames from one buffer', () => {
    const a = Buffer.from([0x81, 3, 0x61, 0x62, 0x63]);
    const close = Buffer.from([0x88, 2, 0x03, 0xe8]);
    const both = Buffer.concat([a, close]);
    const r1 = readServerFrame(both, 0)!;
    expect(r1.payload.toString()).toBe('abc');
    const r2 = readServerFrame(both, r1.next)!;
    expect(r2.opcode).toBe(8);
    expect(r2.payload.readUInt16BE(0)).toBe(1000);
    expect(clientFrame(0x8, r2.payload)[0]).toBe(0x88);
  });
  it('writes media as Twilio does (event first) and counts base64 bytes without decoding', () => {
    const b64 = Buffer.alloc(160, 0xff).toString('base64');
    const m = JSON.parse(mediaText('MZ1', 3, 2, 40, b64));
    expect(mediaText('MZ1', 3, 2, 40, b64).startsWith('{"event":"media"')).toBe(true);
    expect(m).toEqual({ event: 'media', sequenceNumber: '3', streamSid: 'MZ1', media: { track: 'inbound', chunk: '2', timestamp: '40', payload: b64 } });
    for (const n of [160, 161, 162, 4800]) expect(base64Bytes(Buffer.alloc(n).toString('base64'))).toBe(n);
  });
});

describe('percore verdicts', () => {
  const ok = {
    realtime: 1,
    stats: { callsEnded: 10, inbound: { p99Ms: 1 }, outbound: { p99Ms: 1 } },
    framesLostIn: 0,
    framesLostOut: 0,
    cancelled: 0,
    violations: 0,
  } as unknown as Parameters<typeof judge>[0];
  it('passes a clean run and blames a late generator, not the relay', () => {
    expect(judge(ok, 10).verdict).toBe('pass');
    const late = { ...ok, realtime: MIN_GENERATOR_REALTIME - 0.01, stats: { ...ok.stats, inbound: { p99Ms: P99_LIMIT_MS + 1 } } } as typeof ok;
    expect(judge(late, 10).verdict).toBe('load generator behind');
    const slow = { ...ok, stats: { ...ok.stats, inbound: { p99Ms: P99_LIMIT_MS + 1 } } } as typeof ok;
    expect(judge(slow, 10).verdict).toBe('relay failed');
  });
  it("counts outbound stalls against a paced relay, not against the floor relay's unpaced forwarding", () => {
    const stalled = { ...ok, cancelled: 3 } as typeof ok;
    expect(judge(stalled, 10)).toEqual({ verdict: 'relay failed', reasons: ['3 outbound stalls ≥ 400 ms'] });
    expect(judge(stalled, 10, false)).toEqual({ verdict: 'pass', reasons: [] });
    // Lost frames are the floor's all the same.
    expect(judge({ ...stalled, framesLostIn: 2 } as typeof ok, 10, false).verdict).toBe('relay failed');
  });
  it("blames a step on the model side when its sessions connected slower than callbridge's hold", () => {
    const connect = (p99Ms: number) => ({ count: 800, p50Ms: 100, p99Ms, maxMs: p99Ms, meanMs: 200 });
    const lost = { ...ok, framesLostIn: 5000, stats: { ...ok.stats, modelConnect: connect(MODEL_CONNECT_P99_LIMIT_MS + 1) } } as typeof ok;
    const v = judge(lost, 10);
    expect(v.verdict).toBe('load generator behind');
    expect(v.reasons[0]).toMatch(/model stand-in took 3001 ms \(p99\) to take a session/);
    expect(v.reasons).toContain('5000 inbound frames lost');
    // The same losses with sessions taken in time are the relay's.
    expect(judge({ ...lost, stats: { ...lost.stats, modelConnect: connect(MODEL_CONNECT_P99_LIMIT_MS) } } as typeof ok, 10).verdict).toBe('relay failed');
    // So is a step that lost nothing (the floor holds all the audio while it connects): its calls ran without their model for seconds.
    expect(judge({ ...ok, stats: { ...ok.stats, modelConnect: connect(9000) } } as typeof ok, 10, false).verdict).toBe('load generator behind');
    expect(judge({ ...ok, stats: { ...ok.stats, modelConnect: connect(MODEL_CONNECT_P99_LIMIT_MS) } } as typeof ok, 10).verdict).toBe('pass');
    // A relay that reports no connect times: its losses stay its own.
    expect(judge({ ...lost, stats: ok.stats } as typeof ok, 10, false).verdict).toBe('relay failed');
  });
  it('takes the last passing step and says how the mode stopped', () => {
    const s = summarize([
      { mode: 'capacity', calls: 100, verdict: 'pass', reasons: [] },
      { mode: 'capacity', calls: 400, verdict: 'load generator behind', reasons: [], retried: true },
      { mode: 'capacity', calls: 400, verdict: 'load generator behind', reasons: [] },
    ]);
    expect(s.calls).toBe(100);
    expect(s.stoppedBy).toMatch(/load generator behind at 400/);
  });
});

describe('percore plan and budget', () => {
  it('runs calls of three turns, steps rising, within the time budgets', () => {
    for (const quick of [true, false]) {
      const p = plan(quick);
      expect(p.utterances).toBe(3);
      for (const steps of Object.values(p.steps)) expect(steps).toEqual([...steps].sort((a, b) => a - b));
      expect(p.budgetMs).toBeLessThanOrEqual(quick ? 180_000 : 450_000);
      // Each step's relay is warmed up first, as the relay suite's CPU runs are.
      expect(p.warmupCalls).toBeGreaterThan(0);
      // The floor relay is stepped to the capacity target at least, so the target is read against it.
      expect(Math.max(...p.steps.floor)).toBeGreaterThanOrEqual(800);
    }
  });
  it('starts a step only when the last step’s run time still fits', () => {
    expect(fitsBudget(0, 0, 1000)).toBe(true);
    expect(fitsBudget(700, 300, 1000)).toBe(true);
    expect(fitsBudget(701, 300, 1000)).toBe(false);
  });
  it('reads one CPU’s busy time from /proc/stat (idle and iowait left out, guest not counted twice)', () => {
    const stat = 'cpu  9 9 9 9 9 9 9 9 9 9\ncpu0 1 1 1 1 1 1 1 1 1 1\ncpu1 10 2 3 1000 50 4 5 6 7 8\n';
    // user 10 + nice 2 + system 3 + irq 4 + softirq 5 + steal 6 = 30 ticks of 10 ms.
    expect(cpuBusyMs(1, stat)).toBe(300);
    expect(cpuBusyMs(7, stat)).toBeUndefined();
  });
});
