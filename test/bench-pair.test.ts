import { describe, expect, it } from 'vitest';
import { pairGate, runsForFigures } from '../bench/suites/relay.js';

/** Whether `p` has settled after the pending microtasks and one macrotask ran. */
async function settled(p: Promise<unknown>): Promise<'resolved' | 'rejected' | 'pending'> {
  let state: 'resolved' | 'rejected' | 'pending' = 'pending';
  p.then(
    () => (state = 'resolved'),
    () => (state = 'rejected'),
  );
  await new Promise((r) => setImmediate(r));
  return state;
}

describe('pairGate (bench/suites/relay.ts measurePair: two relays measured side by side)', () => {
  it('holds the first run at the gate until the second arrives, then opens for both', async () => {
    const g = pairGate();
    const first = g.gate();
    expect(await settled(first)).toBe('pending');
    const second = g.gate();
    expect(await settled(first)).toBe('resolved');
    expect(await settled(second)).toBe('resolved');
  });

  it('releases a run waiting at the gate when its partner failed, with the reason', async () => {
    const g = pairGate();
    const waiting = g.gate();
    g.fail(new Error('the other run of the pair failed (floor passthrough)'));
    await expect(waiting).rejects.toThrow('the other run of the pair failed');
  });

  it('turns away a run that reaches the gate after its partner failed', async () => {
    const g = pairGate();
    g.fail(new Error('partner failed'));
    await expect(g.gate()).rejects.toThrow('partner failed');
  });
});

describe('runsForFigures (which runs of a configuration its figures come from)', () => {
  const run = (realtime: number, relayRunqShare: number, paired: boolean) => ({ realtime, relayRunqShare, spec: paired ? { gate: () => Promise.resolve() } : {} });

  it('keeps only the clean runs of a configuration measured alone, when it has one', () => {
    const clean = run(1, 0.05, false);
    const starved = run(1, 0.4, false);
    expect(runsForFigures([starved, clean])).toEqual([clean]);
    expect(runsForFigures([starved])).toEqual([starved]);
  });

  it('keeps every run of a side-by-side configuration, clean or not, so both relays of a pair read the same seconds', () => {
    const runs = [run(1, 0.05, true), run(1, 0.25, true)];
    expect(runsForFigures(runs)).toEqual(runs);
  });
});
