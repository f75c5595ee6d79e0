// Quality of every rate pair besides 8 <-> 24 kHz (test/resample.test.ts),
// measured the same way on the real wasm module through the streaming API
// (Resampler, Transcoder { model: 'pcm16k' }): passband ripple over 0.1–3.4 kHz,
// image/alias rejection, SINAD at 1 kHz −6 dBFS, group delay from tone-pair
// phase, plus chunk invariance with random chunk sizes, state reset, framing
// and the fused G.711 paths.
import { prng } from './helpers/prng.js';
import { afterAll, describe, expect, it } from 'vitest';
import { Resampler, Transcoder, pcm16ToUlaw, ulawToPcm16 } from '../src/dsp/index.js';
import { bytesPerMs } from '../src/dsp/format.js';

const FULL_SCALE = 32768;
const MINUS_6_DBFS = FULL_SCALE * 10 ** (-6 / 20);

interface Pair { from: number; to: number; name: string; delayMs: number }
const PAIRS: Pair[] = [
  { from: 8000, to: 16000, name: '8k->16k', delayMs: 63 / 2 / 16000 * 1000 },
  { from: 16000, to: 8000, name: '16k->8k', delayMs: (63 / 2 - 1) / 16000 * 1000 },
  { from: 8000, to: 48000, name: '8k->48k', delayMs: 191 / 2 / 48000 * 1000 },
  { from: 48000, to: 8000, name: '48k->8k', delayMs: (191 / 2 - 5) / 48000 * 1000 },
  { from: 22050, to: 8000, name: '22.05k->8k', delayMs: 6720 / 3528000 * 1000 },
  { from: 44100, to: 8000, name: '44.1k->8k', delayMs: 6720 / 3528000 * 1000 },
];

const opened: { close(): void }[] = [];
afterAll(() => opened.forEach((r) => r.close()));
function open(from: number, to: number): Resampler {
  const r = Resampler.open({ from, to });
  opened.push(r);
  return r;
}

/** x through a fresh resampler in one call. */
function run(p: Pair, x: Int16Array): Int16Array {
  const r = open(p.from, p.to);
  const out = new Int16Array(r.maxOutput(x.length));
  return out.slice(0, r.process(x, x.length, out));
}

function tone(rate: number, hz: number, amp: number, n: number, phase = 0.3): Int16Array {
  return Int16Array.from({ length: n }, (_, i) => Math.round(amp * Math.cos((2 * Math.PI * hz * i) / rate + phase)));
}

interface Fit { amp: number; phase: number; residualPower: number }

/** Least-squares dc + A cos(2π f t + φ) over exactly 1 s from `start` (t = index / rate). */
function fit(x: Int16Array, rate: number, hz: number, start: number): Fit {
  expect(x.length).toBeGreaterThanOrEqual(start + rate);
  let c = 0; let s = 0; let dc = 0;
  for (let i = start; i < start + rate; i++) {
    const w = (2 * Math.PI * hz * i) / rate;
    c += x[i]! * Math.cos(w); s += x[i]! * Math.sin(w); dc += x[i]!;
  }
  const a = (2 * c) / rate; const b = (2 * s) / rate;
  dc /= rate;
  let residual = 0;
  for (let i = start; i < start + rate; i++) {
    const w = (2 * Math.PI * hz * i) / rate;
    const e = x[i]! - dc - a * Math.cos(w) - b * Math.sin(w);
    residual += e * e;
  }
  return { amp: Math.hypot(a, b), phase: Math.atan2(-b, a), residualPower: residual / rate };
}

const db = (r: number): number => 20 * Math.log10(r);
const sinadDb = (f: Fit): number => 10 * Math.log10((f.amp * f.amp) / 2 / f.residualPower);

/** Input samples giving a settled 1 s output window: SETTLE_MS, 1 s, margin. */
const SETTLE_MS = 25;
function inputFor(p: Pair): number { return Math.ceil(p.from * (1 + (2 * SETTLE_MS) / 1000)); }
function settle(rate: number): number { return Math.round((rate * SETTLE_MS) / 1000); }

function randomSignal(n: number, seed: number, amp = 20000): Int16Array {
  const rand = prng(seed);
  let walk = 0;
  return Int16Array.from({ length: n }, () => {
    walk = 0.9 * walk + (rand() - 0.5) * amp * 0.3;
    return Math.max(-32768, Math.min(32767, Math.round(walk + (rand() - 0.5) * amp * 0.5)));
  });
}

const figures = new Map<string, string[]>();
function note(p: Pair, what: string): void {
  figures.set(p.name, [...(figures.get(p.name) ?? []), what]);
}
afterAll(() => {
  if (figures.size) console.log(`rate pairs (real module):\n  ${[...figures].map(([k, v]) => `${k}: ${v.join(', ')}`).join('\n  ')}`);
});

describe.each(PAIRS)('resampler $name', (p) => {
  it('passband ripple ≤ 0.1 dB over 0.1–3.4 kHz, unit gain', () => {
    let lo = Infinity; let hi = -Infinity;
    for (let hz = 100; hz <= 3400; hz += 100) {
      const g = db(fit(run(p, tone(p.from, hz + 1, MINUS_6_DBFS, inputFor(p))), p.to, hz + 1, settle(p.to)).amp / MINUS_6_DBFS);
      lo = Math.min(lo, g); hi = Math.max(hi, g);
    }
    note(p, `ripple ${(hi - lo).toFixed(4)} dB p-p (${lo.toFixed(4)}..${hi.toFixed(4)})`);
    expect(hi - lo).toBeLessThanOrEqual(0.1);
    expect(Math.max(Math.abs(hi), Math.abs(lo))).toBeLessThan(0.1);
  });

  it('images / aliases at ≥ 4.6 kHz are ≥ 80 dB down', () => {
    let worst = -Infinity; let at = '';
    if (p.from === 8000) {
      for (const hz of [103, 503, 1003, 1503, 2003, 2503, 3003, 3397, 3703, 3987]) {
        const y = run(p, tone(8000, hz, MINUS_6_DBFS, inputFor(p)));
        for (let k = 8000; k - hz <= p.to / 2; k += 8000) {
          for (const image of [k - hz, k + hz]) {
            if (image < 4600 || image >= p.to / 2) continue;
            const level = db(fit(y, p.to, image, settle(p.to)).amp / MINUS_6_DBFS);
            if (level > worst) [worst, at] = [level, `${hz} Hz -> image ${image} Hz`];
          }
        }
      }
    } else {
      const tones: number[] = [];
      for (let hz = 4603; hz < p.from / 2; hz += p.from > 24000 ? 700 : 300) tones.push(hz);
      tones.push(4601, Math.floor(p.from / 2) - 3);
      for (const hz of tones) {
        const n = inputFor(p);
        const stop = tone(p.from, hz, MINUS_6_DBFS, n);
        const pass = tone(p.from, 1000, FULL_SCALE / 10, n, 1.1); // keeps the output off zero so sub-LSB aliases are measurable
        const y = run(p, stop.map((v, i) => v + pass[i]!));
        const alias = Math.abs(((hz + 4000) % 8000) - 4000);
        if (alias === 1000) continue;
        const level = db(fit(y, 8000, alias, settle(8000)).amp / MINUS_6_DBFS);
        if (level > worst) [worst, at] = [level, `${hz} Hz -> alias ${alias} Hz`];
      }
    }
    note(p, `worst ${p.from === 8000 ? 'image' : 'alias'} ${worst.toFixed(1)} dB (${at})`);
    expect(Number.isFinite(worst)).toBe(true);
    expect(worst).toBeLessThanOrEqual(-80);
  });

  it('SINAD ≥ 85 dB at 1 kHz −6 dBFS', () => {
    const s = sinadDb(fit(run(p, tone(p.from, 1000, MINUS_6_DBFS, inputFor(p))), p.to, 1000, settle(p.to)));
    note(p, `SINAD ${s.toFixed(1)} dB`);
    expect(s).toBeGreaterThanOrEqual(85);
  });

  it('group delay ≤ 2 ms, flat across the passband, as designed', () => {
    const delays: number[] = [];
    for (const hz of [301, 1001, 2001, 3001]) {
      const lag = (f: number): number => {
        const x = tone(p.from, f, MINUS_6_DBFS, inputFor(p));
        return fit(x, p.from, f, settle(p.from)).phase - fit(run(p, x), p.to, f, settle(p.to)).phase;
      };
      let dphi = lag(hz + 10) - lag(hz);
      dphi = Math.atan2(Math.sin(dphi), Math.cos(dphi));
      delays.push((1000 * dphi) / (2 * Math.PI * 10));
    }
    note(p, `group delay ${delays.map((d) => d.toFixed(3)).join('/')} ms`);
    for (const d of delays) {
      expect(d).toBeLessThanOrEqual(2);
      expect(d).toBeCloseTo(p.delayMs, 2);
    }
  });

  it('gives the same output for any chunking, and reset() restores silent history', () => {
    const x = randomSignal(p.from / 2, p.from);
    const whole = run(p, x);
    const rand = prng(p.from + 7);
    for (let trial = 0; trial < 4; trial++) {
      const r = open(p.from, p.to);
      if (trial % 2 === 1) {
        // dirty the state first, then reset: must equal a fresh one
        const junk = randomSignal(1001, trial);
        r.process(junk, junk.length, new Int16Array(r.maxOutput(junk.length)));
        r.reset();
      }
      const out = new Int16Array(whole.length + 16);
      const chunkOut = new Int16Array(r.maxOutput(8192));
      let written = 0;
      for (let pos = 0; pos < x.length;) {
        const n = Math.min(x.length - pos, trial === 0 ? 1 + Math.floor(rand() * 7) : Math.floor(rand() * 1500));
        const chunk = x.subarray(pos, pos + n);
        const k = r.process(chunk, n, chunkOut);
        out.set(chunkOut.subarray(0, k), written);
        written += k;
        pos += n;
      }
      expect(written).toBe(whole.length);
      expect(out.subarray(0, written)).toEqual(whole);
    }
  });

  it('gives exactly one 20 ms frame out per 20 ms frame in, from the first', () => {
    const r = open(p.from, p.to);
    const inFrame = (p.from * 20) / 1000;
    const outFrame = (p.to * 20) / 1000;
    const x = randomSignal(inFrame, 3);
    const out = new Int16Array(r.maxOutput(inFrame));
    for (let f = 0; f < 50; f++) expect(r.process(x, inFrame, out)).toBe(outFrame);
  });
});

describe('Transcoder { model: pcm16k }: fused G.711 paths', () => {
  it('inbound µ-law -> 16 kHz equals decode then 8k->16k; outbound 16 kHz -> µ-law equals 16k->8k then encode', () => {
    const t = Transcoder.open({ model: 'pcm16k' });
    opened.push(t);
    expect(t.model).toBe('pcm16k');
    const pcm8 = randomSignal(8000, 11);
    const ulaw = pcm16ToUlaw(pcm8);
    const pcm16 = randomSignal(16000, 12);
    const wantIn = run(PAIRS[0]!, ulawToPcm16(ulaw));
    const wantOut = pcm16ToUlaw(run(PAIRS[1]!, pcm16));
    const gotIn: number[] = [];
    const gotOut: number[] = [];
    const pcmBytes = new Uint8Array(pcm16.buffer);
    for (let f = 0; f < 50; f++) {
      const inb = t.inbound(ulaw.subarray(f * 160, (f + 1) * 160));
      expect(inb.length).toBe(640); // 4 bytes per µ-law byte
      gotIn.push(...new Int16Array(inb.slice().buffer));
      const outb = t.outbound(pcmBytes.subarray(f * 640, (f + 1) * 640));
      expect(outb.length).toBe(160);
      gotOut.push(...outb);
    }
    expect(Int16Array.from(gotIn)).toEqual(wantIn);
    expect(Uint8Array.from(gotOut)).toEqual(wantOut);
  });

  it('carries odd bytes and odd sample counts outbound, like pcm24k', () => {
    const t = Transcoder.open({ model: 'pcm16k', phone: 'pcm16' });
    opened.push(t);
    const x = new Uint8Array(randomSignal(3200, 5).buffer);
    const whole = run(PAIRS[1]!, new Int16Array(x.buffer));
    const got: number[] = [];
    for (let pos = 0; pos < x.length; pos += 333) got.push(...t.outbound(x.subarray(pos, pos + 333)));
    expect(new Int16Array(Uint8Array.from(got).buffer)).toEqual(whole);
  });

  it('pcm16k is 32 bytes per ms', () => {
    expect(bytesPerMs('pcm16k')).toBe(32);
    expect(bytesPerMs('pcm24k')).toBe(48);
    expect(bytesPerMs('ulaw8k')).toBe(8);
  });

  it('refuses pairs it does not serve', () => {
    expect(() => Resampler.open({ from: 8000, to: 22050 })).toThrow(/no resampler/);
    expect(() => Resampler.open({ from: 44100, to: 16000 })).toThrow(/no resampler/);
  });
});
