// The bench's regression checker (bench/check.ts): pure results + thresholds
// -> evaluations and regression messages.
import { describe, expect, it } from 'vitest';
import { evaluate, parseThresholds, regressions, type Ratio, type Thresholds } from '../bench/check.js';
import type { Result } from '../bench/types.js';

function result(id: string, medianNs: number, suite = 'dsp'): Result {
  return { id, suite, name: id, group: 'g', per: '20 ms frame', medianNs, samples: 100 };
}

function ratio(id: string, num: string, den: string | number, max: number, suite = 'dsp'): Ratio {
  return { id, suite, num, den, max, why: `why ${id}` };
}

const dsp = new Set(['dsp']);

describe('evaluate', () => {
  const results = [result('a.wasm', 100), result('a.peer', 1000), result('full', 4000)];

  it('passes a ratio under its limit and reports the value', () => {
    const [e] = evaluate(results, [ratio('a', 'a.wasm', 'a.peer', 0.2)], dsp);
    expect(e.ok).toBe(true);
    expect(e.value).toBeCloseTo(0.1, 12);
    expect(e.problem).toBeUndefined();
  });

  it('passes a ratio exactly at its limit', () => {
    expect(evaluate(results, [ratio('a', 'a.wasm', 'a.peer', 0.1)], dsp)[0].ok).toBe(true);
  });

  it('fails a ratio over its limit', () => {
    const [e] = evaluate(results, [ratio('a', 'a.wasm', 'a.peer', 0.05)], dsp);
    expect(e.ok).toBe(false);
    expect(e.value).toBeCloseTo(0.1, 12);
    expect(e.problem).toMatch(/0\.100 > limit 0\.050/);
  });

  it('takes a number of nanoseconds as the denominator (the 1 ms budget)', () => {
    const [under, over] = evaluate(results, [ratio('b1', 'full', 1_000_000, 0.01), ratio('b2', 'full', 1_000_000, 0.001)], dsp);
    expect(under.value).toBeCloseTo(0.004, 12);
    expect(under.ok).toBe(true);
    expect(over.ok).toBe(false);
  });

  it('fails, naming the id, when a result is missing from a suite that ran', () => {
    const [e] = evaluate(results, [ratio('m', 'a.wasm', 'gone.peer', 10)], dsp);
    expect(e.ok).toBe(false);
    expect(e.value).toBeUndefined();
    expect(e.problem).toContain("'gone.peer' is missing");
  });

  it('fails on a zero, negative or non-finite median instead of dividing by it', () => {
    for (const bad of [0, -5, Number.NaN, Number.POSITIVE_INFINITY]) {
      const [e] = evaluate([result('x', 10), result('y', bad)], [ratio('z', 'x', 'y', 100)], dsp);
      expect(e.ok, `median ${bad}`).toBe(false);
      expect(e.problem).toContain("'y' has no valid figure");
    }
  });

  it('takes a zero numerator (a count such as frames lost) but never a zero denominator', () => {
    const rs = [result('lost', 0, 'relay'), result('lost2', 2, 'relay')];
    const relay = new Set(['relay']);
    const [none, some] = evaluate(rs, [ratio('l0', 'lost', 1, 0.5, 'relay'), ratio('l2', 'lost2', 1, 0.5, 'relay')], relay);
    expect(none.ok).toBe(true);
    expect(none.value).toBe(0);
    expect(some.ok).toBe(false);
    expect(some.value).toBe(2);
    const [den0] = evaluate(rs, [ratio('d0', 'lost2', 'lost', 10, 'relay')], relay);
    expect(den0.ok).toBe(false);
    expect(den0.problem).toContain("'lost' has no valid figure");
    const [neg] = evaluate([result('n', -1, 'relay')], [ratio('n', 'n', 1, 10, 'relay')], relay);
    expect(neg.ok).toBe(false);
  });

  it('evaluates a cross-suite ratio (a+b) only when every suite in it ran', () => {
    const rs = [result('relay.cpu', 100, 'relay'), result('dsp.fd', 4)];
    const cross = ratio('x', 'relay.cpu', 'dsp.fd', 10, 'relay+dsp');
    expect(evaluate(rs, [cross], new Set(['relay']))).toEqual([]);
    expect(evaluate(rs, [cross], dsp)).toEqual([]);
    const [e] = evaluate(rs, [cross], new Set(['relay', 'dsp']));
    expect(e.value).toBe(25);
    expect(e.ok).toBe(false);
  });

  it('reads a p99 figure with id#p99, and fails when the result has none', () => {
    const withP99 = { ...result('lat', 50), p99Ns: 2_500_000 };
    const [over] = evaluate([withP99], [ratio('p', 'lat#p99', 2_000_000, 1)], dsp);
    expect(over.ok).toBe(false);
    expect(over.value).toBeCloseTo(1.25, 9);
    const [under] = evaluate([withP99], [ratio('p', 'lat#p99', 4_000_000, 1)], dsp);
    expect(under.ok).toBe(true);
    const [missing] = evaluate([result('lat', 50)], [ratio('p', 'lat#p99', 2_000_000, 1)], dsp);
    expect(missing.ok).toBe(false);
    expect(missing.problem).toContain("'lat#p99' has no valid figure");
  });

  it('floors the denominator at denMin, so a tiny baseline does not make noise a regression', () => {
    const flood = { ...result('flood', 50), p99Ns: 1_200_000 };
    const quiet = { ...result('quiet', 40), p99Ns: 100_000 };
    const floored: Ratio = { ...ratio('f', 'flood#p99', 'quiet#p99', 3), denMin: 500_000 };
    const [e] = evaluate([flood, quiet], [floored], dsp);
    expect(e.value).toBeCloseTo(2.4, 9); // 1.2 ms / max(0.1 ms, 0.5 ms); without the floor 12
    expect(e.ok).toBe(true);
    const [bigBase] = evaluate([{ ...flood, p99Ns: 4_000_000 }, { ...quiet, p99Ns: 1_000_000 }], [floored], dsp);
    expect(bigBase.value).toBeCloseTo(4, 9); // a baseline above the floor is used as it is
    expect(bigBase.ok).toBe(false);
    expect(() => parseThresholds({ checks: [{ ...floored, denMin: -1 }], targets: [] })).toThrow(/bad or missing denMin/);
  });

  it('skips ratios of suites that did not run (e.g. --suite dsp skips relay limits)', () => {
    const es = evaluate(results, [ratio('r', 'relay.p99', 'relay.p50', 3, 'relay'), ratio('a', 'a.wasm', 'a.peer', 1)], dsp);
    expect(es.map((e) => e.ratio.id)).toEqual(['a']);
  });

  it('keeps the order of the thresholds file', () => {
    const es = evaluate(results, [ratio('2', 'a.peer', 'a.wasm', 100), ratio('1', 'a.wasm', 'a.peer', 1)], dsp);
    expect(es.map((e) => e.ratio.id)).toEqual(['2', '1']);
  });
});

describe('regressions', () => {
  const thresholds: Thresholds = {
    checks: [
      ratio('decode.vs.js', 'd.wasm', 'd.js', 0.8),
      ratio('resample.vs.speex', 'r.wasm', 'r.speex', 0.2),
      ratio('full.budget', 'full', 1_000_000, 0.02),
    ],
    // Targets never fail the run, however badly they are missed.
    targets: [ratio('full.10us', 'full', 1000, 0.000001)],
  };

  it('is empty when every check passes', () => {
    const rs = [result('d.wasm', 120), result('d.js', 280), result('r.wasm', 1400), result('r.speex', 19000), result('full', 3500)];
    expect(regressions(rs, thresholds, dsp)).toEqual([]);
  });

  it('names each regression with its ratio, the limit and why', () => {
    // A lost-SIMD resampler (5x slower) and a per-frame allocation in decode.
    const rs = [result('d.wasm', 260), result('d.js', 280), result('r.wasm', 7000), result('r.speex', 19000), result('full', 3500)];
    const msgs = regressions(rs, thresholds, dsp);
    expect(msgs).toHaveLength(2);
    expect(msgs[0]).toContain('REGRESSION decode.vs.js');
    expect(msgs[0]).toContain('d.wasm / d.js');
    expect(msgs[0]).toContain('limit 0.800');
    expect(msgs[0]).toContain('why decode.vs.js');
    expect(msgs[1]).toContain('REGRESSION resample.vs.speex');
    expect(msgs[1]).toContain('0.368 > limit 0.200');
  });

  it('reports a missing result as a regression rather than passing silently', () => {
    const rs = [result('d.wasm', 120), result('d.js', 280), result('full', 3500)];
    const msgs = regressions(rs, thresholds, dsp);
    expect(msgs).toHaveLength(1);
    expect(msgs[0]).toMatch(/resample\.vs\.speex.*'r\.wasm' is missing/);
  });

  it('checks nothing when no suite with thresholds ran', () => {
    expect(regressions([], thresholds, new Set(['relay']))).toEqual([]);
  });
});

describe('parseThresholds', () => {
  it('accepts a well-formed file', () => {
    const t = parseThresholds({ checks: [ratio('a', 'x', 'y', 1)], targets: [ratio('b', 'x', 1000, 10)] });
    expect(t.checks).toHaveLength(1);
    expect(t.targets[0].den).toBe(1000);
  });

  it('lists every problem at once', () => {
    const bad = {
      checks: [{ id: 'a', suite: 'dsp', num: 'x', den: 0, max: -1, why: 'w' }, { id: 'a', suite: 'dsp', num: 'x', den: 'y', max: 1, why: 'w' }],
      targets: 'nope',
    };
    let message = '';
    try {
      parseThresholds(bad);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain('checks[0] (a): bad or missing den, max');
    expect(message).toContain("'targets' must be an array");
    expect(message).toContain('bench/thresholds.json');
  });

  it('rejects duplicate ids across checks and targets', () => {
    expect(() => parseThresholds({ checks: [ratio('a', 'x', 'y', 1)], targets: [ratio('a', 'x', 'y', 1)] })).toThrow(/duplicate id 'a'/);
  });

  it('accepts the committed bench/thresholds.json', async () => {
    const { readFileSync } = await import('node:fs');
    const json: unknown = JSON.parse(readFileSync(new URL('../bench/thresholds.json', import.meta.url), 'utf8'));
    const t = parseThresholds(json);
    expect(t.checks.length).toBeGreaterThan(0);
    expect(t.targets.length).toBeGreaterThan(0);
  });

  it("holds issue 21's restated CPU targets: callbridge ÷ floor ≤ 1.15 both modes, capacity ≤ 0.7 × naive tc, each guarded by a check", async () => {
    const { readFileSync } = await import('node:fs');
    const t = parseThresholds(JSON.parse(readFileSync(new URL('../bench/thresholds.json', import.meta.url), 'utf8')));
    const target = (id: string) => t.targets.find((r) => r.id === id);
    const check = (id: string) => t.checks.find((r) => r.id === id);
    for (const m of ['pt', 'tc']) {
      // Read from the two relays measured side by side (bench/suites/relay.ts measurePair: ids …pair).
      expect(target(`target.relay.${m}.cpuVsFloor`)).toMatchObject({ num: `relay.cb.${m}pair.cpu`, den: `relay.floor.${m}pair.cpu`, max: 1.15 });
      const guard = check(`relay.${m}.cpuVsFloor`);
      expect(guard).toMatchObject({ num: `relay.cb.${m}pair.cpu`, den: `relay.floor.${m}pair.cpu` });
      // The check leaves room for CI noise above the target; a check at or under the target would flake.
      expect(guard!.max).toBeGreaterThan(1.15);
    }
    expect(target('target.relay.cap.cpuVsNaive')).toMatchObject({ num: 'relay.cb.cap.cpu', den: 'relay.naive.tc.cpu', max: 0.7 });
    expect(check('relay.cap.cpuVsNaive')!.max).toBeGreaterThan(0.7);
  });
});
