// Resampler quality, judged on signal properties of the real wasm module
// through the same streaming path a call uses (Transcoder), like speexdsp's
// testresample: passband ripple, image/alias rejection, SINAD, group delay,
// 3:1 framing, chunking invariance, agreement with a float64 reference,
// saturation.
import { prng } from './helpers/prng.js';
import { afterAll, describe, expect, it } from 'vitest';
import { Transcoder, loadDsp } from '../src/dsp/index.js';

const PHONE_HZ = 8000;
const MODEL_HZ = 24000;
const FULL_SCALE = 32768;
const MINUS_6_DBFS = FULL_SCALE * 10 ** (-6 / 20);

const open: Transcoder[] = [];
function pcmTranscoder(): Transcoder {
  const t = Transcoder.open({ phone: 'pcm16' });
  open.push(t);
  return t;
}
afterAll(() => open.forEach((t) => t.close()));

// ---- signal helpers -------------------------------------------------------

function bytesOf(x: Int16Array): Uint8Array {
  return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
}

function int16Of(bytes: Uint8Array): Int16Array {
  return new Int16Array(bytes.slice().buffer);
}

/** 8 kHz int16 -> 24 kHz int16 through a fresh transcoder, one call. */
function up(x: Int16Array): Int16Array {
  return int16Of(pcmTranscoder().inbound(bytesOf(x)));
}

/** 24 kHz int16 -> 8 kHz int16 through a fresh transcoder, one call. */
function down(x: Int16Array): Int16Array {
  return int16Of(pcmTranscoder().outbound(bytesOf(x)));
}

/** amp * cos(2π f t + phase), rounded to int16, n samples at `rate`. */
function tone(rate: number, hz: number, amp: number, n: number, phase = 0.3): Int16Array {
  return Int16Array.from({ length: n }, (_, i) => Math.round(amp * Math.cos((2 * Math.PI * hz * i) / rate + phase)));
}

interface Fit { amp: number; phase: number; residualPower: number }

/**
 * Least-squares fit of dc + A cos(2π f t + φ) to x[start .. start+rate), t = index / rate.
 * With a window of exactly 1 s and integer-Hz f the basis is orthogonal, so projections are exact.
 */
function fit(x: Int16Array, rate: number, hz: number, start: number): Fit {
  const n = rate;
  let c = 0;
  let s = 0;
  let dc = 0;
  for (let i = start; i < start + n; i++) {
    const w = (2 * Math.PI * hz * i) / rate;
    c += x[i] * Math.cos(w);
    s += x[i] * Math.sin(w);
    dc += x[i];
  }
  const a = (2 * c) / n;
  const b = (2 * s) / n;
  dc /= n;
  let residual = 0;
  for (let i = start; i < start + n; i++) {
    const w = (2 * Math.PI * hz * i) / rate;
    const e = x[i] - dc - a * Math.cos(w) - b * Math.sin(w);
    residual += e * e;
  }
  return { amp: Math.hypot(a, b), phase: Math.atan2(-b, a), residualPower: residual / n };
}

function db(ratio: number): number {
  return 20 * Math.log10(ratio);
}

function sinadDb(f: Fit): number {
  return 10 * Math.log10((f.amp * f.amp) / 2 / f.residualPower);
}


function randomSignal(n: number, seed: number, amp = 20000): Int16Array {
  const rand = prng(seed);
  // a band-limited-ish random walk mixed with white noise: exercises all frequencies
  let walk = 0;
  return Int16Array.from({ length: n }, () => {
    walk = 0.9 * walk + (rand() - 0.5) * amp * 0.3;
    return Math.max(-32768, Math.min(32767, Math.round(walk + (rand() - 0.5) * amp * 0.5)));
  });
}

// ---- float64 reference of the same filter ---------------------------------

const H = loadDsp().firPrototype(); // unit DC gain, 96 taps

function saturate(v: number): number {
  return Math.max(-32768, Math.min(32767, Math.round(v)));
}

/** y[3n+p] = Σ_j 3 h[3j+p] x[n-j], zero history. */
function refUp(x: Int16Array): Int16Array {
  const y = new Int16Array(3 * x.length);
  for (let n = 0; n < x.length; n++) {
    for (let p = 0; p < 3; p++) {
      let acc = 0;
      for (let j = 0; j < 32 && j <= n; j++) acc += 3 * H[3 * j + p] * x[n - j];
      y[3 * n + p] = saturate(acc);
    }
  }
  return y;
}

/** y[m] = Σ_k h[k] x[3m+2-k], zero history. */
function refDown(x: Int16Array): Int16Array {
  const y = new Int16Array(Math.floor(x.length / 3));
  for (let m = 0; m < y.length; m++) {
    let acc = 0;
    for (let k = 0; k < 96; k++) {
      const i = 3 * m + 2 - k;
      if (i >= 0) acc += H[k] * x[i];
    }
    y[m] = saturate(acc);
  }
  return y;
}

function maxAbsDiff(a: Int16Array, b: Int16Array): number {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

/** |H(f)| in dB and phase of a 24 kHz impulse response normalised to unit DC gain. */
function response(h: Float64Array, hz: number): number {
  let re = 0;
  let im = 0;
  for (let k = 0; k < h.length; k++) {
    re += h[k] * Math.cos((2 * Math.PI * hz * k) / MODEL_HZ);
    im -= h[k] * Math.sin((2 * Math.PI * hz * k) / MODEL_HZ);
  }
  return db(Math.hypot(re, im));
}

const report: string[] = [];
afterAll(() => {
  if (report.length) console.log(`resampler quality (real module):\n  ${report.join('\n  ')}`);
});

// ---- tests -----------------------------------------------------------------

describe('resampler: frequency response from the impulse response through the streaming path', () => {
  const IMPULSE = 10000;

  function upImpulseResponse(): Float64Array {
    const x = new Int16Array(64);
    x[10] = IMPULSE;
    const y = up(x);
    return Float64Array.from(y.subarray(30, 30 + 96), (v) => v / (3 * IMPULSE));
  }

  function downImpulseResponse(): Float64Array {
    // one impulse per decimation phase, each through a fresh channel, interleaved back
    const h = new Float64Array(96);
    for (let offset = 0; offset < 3; offset++) {
      const x = new Int16Array(3 * 64);
      x[30 + offset] = IMPULSE;
      const y = down(x);
      for (let m = 0; m < y.length; m++) {
        const k = 3 * m + 2 - (30 + offset);
        if (k >= 0 && k < 96) h[k] = y[m] / IMPULSE;
        else expect(y[m]).toBe(0); // nothing outside the 96 taps
      }
    }
    return h;
  }

  for (const [name, measure] of [['up', upImpulseResponse], ['down', downImpulseResponse]] as const) {
    it(`${name}: passband ripple ≤ 0.1 dB over 0.1–3.4 kHz, linear phase`, () => {
      const h = measure();
      let lo = Infinity;
      let hi = -Infinity;
      for (let hz = 100; hz <= 3400; hz += 10) {
        const g = response(h, hz);
        lo = Math.min(lo, g);
        hi = Math.max(hi, g);
      }
      report.push(`${name}: passband ripple ${(hi - lo).toFixed(4)} dB p-p (gain ${lo.toFixed(4)}..${hi.toFixed(4)} dB)`);
      expect(hi - lo).toBeLessThanOrEqual(0.1);
      expect(Math.abs(hi)).toBeLessThan(0.1);
      // symmetric taps (within one output LSB) = linear phase, centre 47.5 samples at 24 kHz
      const lsb = name === 'up' ? 1 / (3 * IMPULSE) : 1 / IMPULSE;
      for (let k = 0; k < 48; k++) expect(Math.abs(h[k] - h[95 - k])).toBeLessThanOrEqual(lsb + 1e-12);
      // and it is the designed filter, to output precision
      for (let k = 0; k < 96; k++) expect(Math.abs(h[k] - H[k])).toBeLessThanOrEqual(lsb / 2 + 1e-6);
    });
  }
});

describe('resampler: rejection measured with tones', () => {
  const SETTLE = 400; // output samples skipped before the 1 s analysis window

  it('up: images at 4.6–12 kHz are ≥ 80 dB below the tone', () => {
    let worst = -Infinity;
    let worstAt = '';
    const tones = [...Array.from({ length: 34 }, (_, k) => 100 * k + 103), 3397, 3501, 3703, 3901, 3987];
    for (const hz of tones) {
      const y = up(tone(PHONE_HZ, hz, MINUS_6_DBFS, PHONE_HZ + 200));
      for (const image of [PHONE_HZ - hz, PHONE_HZ + hz]) {
        if (image < 4600 || image > 12000) continue;
        const level = db(fit(y, MODEL_HZ, image, SETTLE).amp / MINUS_6_DBFS);
        expect(level).not.toBeNaN();
        if (level > worst) [worst, worstAt] = [level, `${hz} Hz -> image ${image} Hz`];
      }
    }
    report.push(`up: worst image ${worst.toFixed(1)} dB (${worstAt})`);
    expect(Number.isFinite(worst)).toBe(true);
    expect(worst).toBeLessThanOrEqual(-80);
  });

  it('down: tones at 4.6–12 kHz alias ≥ 80 dB down', () => {
    let worst = -Infinity;
    let worstAt = '';
    for (const hz of [...Array.from({ length: 37 }, (_, k) => 4603 + 200 * k), 11997]) {
      // plus an in-band 1 kHz companion at −20 dBFS, so the output is not all-zero
      // and the alias (a fraction of an LSB) is measurable below the rounding
      const stop = tone(MODEL_HZ, hz, MINUS_6_DBFS, MODEL_HZ + 3 * SETTLE);
      const pass = tone(MODEL_HZ, 1000, FULL_SCALE / 10, stop.length, 1.1);
      const x = stop.map((v, i) => v + pass[i]);
      const alias = Math.abs(((hz + 4000) % 8000) - 4000);
      const y = down(x);
      const level = db(fit(y, PHONE_HZ, alias, Math.ceil(SETTLE / 3)).amp / MINUS_6_DBFS);
      expect(level).not.toBeNaN();
      if (level > worst) [worst, worstAt] = [level, `${hz} Hz -> alias ${alias} Hz`];
    }
    report.push(`down: worst alias ${worst.toFixed(1)} dB (${worstAt})`);
    expect(Number.isFinite(worst)).toBe(true);
    expect(worst).toBeLessThanOrEqual(-80);
  });
});

describe('resampler: SINAD and group delay, 1 kHz at −6 dBFS', () => {
  const x8 = tone(PHONE_HZ, 1000, MINUS_6_DBFS, PHONE_HZ + 400);
  const x24 = tone(MODEL_HZ, 1000, MINUS_6_DBFS, MODEL_HZ + 1200);

  it('up: SINAD ≥ 85 dB', () => {
    const s = sinadDb(fit(up(x8), MODEL_HZ, 1000, 600));
    report.push(`up: SINAD ${s.toFixed(1)} dB`);
    expect(s).toBeGreaterThanOrEqual(85);
  });

  it('down: SINAD ≥ 85 dB', () => {
    const s = sinadDb(fit(down(x24), PHONE_HZ, 1000, 200));
    report.push(`down: SINAD ${s.toFixed(1)} dB`);
    expect(s).toBeGreaterThanOrEqual(85);
  });

  it('up then down: SINAD ≥ 85 dB', () => {
    const s = sinadDb(fit(down(up(x8)), PHONE_HZ, 1000, 200));
    report.push(`up->down: SINAD ${s.toFixed(1)} dB`);
    expect(s).toBeGreaterThanOrEqual(85);
  });

  it('group delay ≤ 2 ms each way and flat across the passband', () => {
    // τ = −dφ/dω from tone pairs 10 Hz apart (phases measured on a shared time axis)
    const delays: Record<string, number[]> = { up: [], down: [] };
    for (const hz of [301, 1001, 2001, 3001]) {
      for (const dir of ['up', 'down'] as const) {
        const phaseLag = (f: number): number => {
          if (dir === 'up') {
            const x = tone(PHONE_HZ, f, MINUS_6_DBFS, PHONE_HZ + 400);
            return fit(x, PHONE_HZ, f, 200).phase - fit(up(x), MODEL_HZ, f, 600).phase;
          }
          const x = tone(MODEL_HZ, f, MINUS_6_DBFS, MODEL_HZ + 1200);
          return fit(x, MODEL_HZ, f, 600).phase - fit(down(x), PHONE_HZ, f, 200).phase;
        };
        let dphi = phaseLag(hz + 10) - phaseLag(hz);
        dphi = Math.atan2(Math.sin(dphi), Math.cos(dphi));
        delays[dir].push((1000 * dphi) / (2 * Math.PI * 10));
      }
    }
    report.push(`group delay ms: up ${delays.up.map((d) => d.toFixed(3)).join(' ')}, down ${delays.down.map((d) => d.toFixed(3)).join(' ')}`);
    for (const d of [...delays.up, ...delays.down]) expect(d).toBeLessThanOrEqual(2);
    // up: (96 − 1) / 2 samples at 24 kHz; down: 2 fewer, as output m is taken when input 3m+2 arrives
    for (const d of delays.up) expect(d).toBeCloseTo(47.5 / 24, 2);
    for (const d of delays.down) expect(d).toBeCloseTo(45.5 / 24, 2);
  });
});

describe('resampler: exactness', () => {
  it('matches a float64 reference of the same filter within 1 LSB', () => {
    const x8 = randomSignal(20000, 1);
    const x24 = randomSignal(60000, 2);
    const upDiff = maxAbsDiff(up(x8), refUp(x8));
    const downDiff = maxAbsDiff(down(x24), refDown(x24));
    report.push(`max |module − float64 reference|: up ${upDiff} LSB, down ${downDiff} LSB`);
    expect(upDiff).toBeLessThanOrEqual(1);
    expect(downDiff).toBeLessThanOrEqual(1);
  });

  it('saturates full-scale input instead of wrapping', () => {
    // a full-scale 8 kHz square wave rings past ±32767 after filtering
    const square8 = Int16Array.from({ length: 4000 }, (_, i) => ((i >> 4) & 1 ? -32768 : 32767));
    const square24 = Int16Array.from({ length: 12000 }, (_, i) => ((i >> 5) & 1 ? -32768 : 32767));
    for (const [got, want] of [[up(square8), refUp(square8)], [down(square24), refDown(square24)]]) {
      expect(want.includes(32767) && want.includes(-32768)).toBe(true); // the reference does clip
      expect(maxAbsDiff(got, want)).toBeLessThanOrEqual(1);
      expect(got.includes(32767) && got.includes(-32768)).toBe(true);
    }
  });

  it('gives exactly 3:1 on every 20 ms frame from the first, with no start-up shortfall', () => {
    const t = Transcoder.open();
    open.push(t);
    const ulaw = new Uint8Array(160).fill(0x55);
    const pcm = bytesOf(randomSignal(480, 3));
    for (let frame = 0; frame < 50; frame++) {
      expect(t.inbound(ulaw).length).toBe(960);
      expect(t.outbound(pcm).length).toBe(160);
    }
  });
});
