// Every other rate pair: 8 -> 16 / 48 kHz (integer polyphase interpolators)
// and 16 / 48 / 22.05 / 44.1 kHz -> 8 kHz (one rational polyphase decimator,
// L/M = 1/2, 1/6, 160/441, 80/441), beside the 8 <-> 24 kHz pair in resample.ts.
//
// Contract (as resample.ts): state lives in the caller's per-channel areas,
// the same UP_STATE_BYTES / DOWN_STATE_BYTES areas a slot has for 8 <-> 24
// (a slot serves one pair at a time; reset it before switching pairs);
// zeroed state = silence history; output identical whatever the input
// chunking (each output sample is the same sequence of f32 operations
// wherever it falls); int16 in (or G.711 bytes up), f32 math, rounded to
// nearest and saturated to int16 (or G.711 bytes down). Nothing allocates.
//
// Up by L (2 or 6): y[L n + p] = Σ_j L h[L j + p] x[n - j], 32 taps a phase,
// history = the last 31 inputs as f32 (same layout as resample.ts upsample).
// Group delay (T - 1) / 2 samples at L x 8 kHz: 1.969 ms (16k), 1.990 ms (48k).
//
// Down by L/M: output m uses n0 = floor(m M / L) + OFFSET and phase
// p = m M mod L: y[m] = Σ_j L h[p + j L] x[n0 - j], J taps a phase (a multiple
// of 16, zero-padded). OFFSET = M - 1 for integer pairs (output m is taken
// when input M m + M - 1 arrives, like resample.ts), 0 for rational ones.
// State: the last J - 1 inputs as int16 in the down area, and in the pending
// word (need << 16 | p): inputs still to come before the next output
// (biased by -OFFSET so zero state is the start), and its phase.
// Group delay: (T - 1) / 2 / (L fs_in) - OFFSET / fs_in: 1.906 ms (16k),
// 1.885 ms (48k), 1.905 ms (22.05k, 44.1k).
import { FIR64_PROTOTYPE, FIR64_TAPS } from './fir64';
import { FIR192_PROTOTYPE, FIR192_TAPS } from './fir192';
import { FIR13441_HALF, FIR13441_TAPS } from './fir13441';
import { alawDecode, alawEncode, ulawDecode, ulawEncode } from './g711';
import { Codec } from './resample';

const UP_TAPS_PER_PHASE: i32 = 32;
const UP_HISTORY: i32 = UP_TAPS_PER_PHASE - 1;

/** Largest input per call, in input samples, for every pair in this file. */
export const MAX_PAIR_IN: i32 = 12288;
/** Output samples a call may produce at most (the I/O area holds 12288 int16). */
export const MAX_PAIR_OUT: i32 = 12288;

/** Pair ids: the non-8 kHz rate in Hz. */
export const RATE_16K: i32 = 16000;
export const RATE_48K: i32 = 48000;
export const RATE_22K: i32 = 22050;
export const RATE_44K: i32 = 44100;

// ---- up (interpolators) -----------------------------------------------------

/** UP16[p][j] = 2 h64[2j + p]; UP48[p][j] = 6 h192[6j + p]. */
const UP16: usize = memory.data(2 * UP_TAPS_PER_PHASE * 4, 16);
const UP48: usize = memory.data(6 * UP_TAPS_PER_PHASE * 4, 16);
/** f32 scratch: 31 history + input + one group of slack. */
const UP_WORK: usize = memory.data((UP_HISTORY + MAX_PAIR_IN + 16) * 4, 16);

// ---- down (rational decimator) ----------------------------------------------

/** Per pair: L, M, taps per phase (J, multiple of 16), offset, reversed per-phase taps R[p][i] = L h[p + (J-1-i) L]. */
const D16_J: i32 = 64;
const D48_J: i32 = 192;
const D22_J: i32 = 96; // ceil(13441 / 160) = 85, padded
const D44_J: i32 = 176; // ceil(13441 / 80) = 169, padded
const D16: usize = memory.data(D16_J * 4, 16);
const D48: usize = memory.data(D48_J * 4, 16);
const D22: usize = memory.data(160 * D22_J * 4, 16);
const D44: usize = memory.data(80 * D44_J * 4, 16);
/** f32 scratch: up to 175 history + input + slack. */
const DOWN_WORK: usize = memory.data((D44_J + MAX_PAIR_IN + 16) * 4, 16);

@inline function h13441(k: i32): f64 {
  if (k >= FIR13441_TAPS) return 0;
  const half = (FIR13441_TAPS + 1) >> 1;
  const i = k < half ? k : FIR13441_TAPS - 1 - k;
  return <f64>load<f32>(FIR13441_HALF + (<usize>i << 2));
}

function fillUp(dst: usize, proto: usize, l: i32): void {
  for (let p = 0; p < l; p++) {
    for (let j = 0; j < UP_TAPS_PER_PHASE; j++) {
      const h = load<f64>(proto + (<usize>(l * j + p) << 3));
      store<f32>(dst + (<usize>(p * UP_TAPS_PER_PHASE + j) << 2), <f32>(<f64>l * h));
    }
  }
}

function fillDown(dst: usize, l: i32, j: i32, taps: i32, proto: usize): void {
  for (let p = 0; p < l; p++) {
    for (let i = 0; i < j; i++) {
      const k = p + (j - 1 - i) * l;
      let h: f64 = 0;
      if (k < taps) h = proto != 0 ? load<f64>(proto + (<usize>k << 3)) : h13441(k);
      store<f32>(dst + (<usize>(p * j + i) << 2), <f32>(<f64>l * h));
    }
  }
}

export function initPairs(): void {
  fillUp(UP16, FIR64_PROTOTYPE, 2);
  fillUp(UP48, FIR192_PROTOTYPE, 6);
  fillDown(D16, 1, D16_J, FIR64_TAPS, FIR64_PROTOTYPE);
  fillDown(D48, 1, D48_J, FIR192_TAPS, FIR192_PROTOTYPE);
  fillDown(D22, 160, D22_J, FIR13441_TAPS, 0);
  fillDown(D44, 80, D44_J, FIR13441_TAPS, 0);
}

/** Up factor for a rate (0: not an up pair here). */
export function upFactor(rate: i32): i32 {
  return rate == RATE_16K ? 2 : rate == RATE_48K ? 6 : 0;
}

/** Largest input (8 kHz samples) per up call for a rate. */
export function maxUpPairIn(rate: i32): i32 {
  const l = upFactor(rate);
  return l == 0 ? 0 : MAX_PAIR_OUT / l;
}

@inline function acc(a: v128, x: v128, tap: usize): v128 {
  return f32x4.add(a, f32x4.mul(x, v128.load32_splat(tap)));
}

@inline function storeLanes(dst: usize, y: v128, l: i32, p: i32, left: i32): void {
  // y lanes k = inputs i + k; output index l (i + k) + p, relative to dst at input i
  const step = <usize>l << 1;
  const at = dst + (<usize>p << 1);
  store<i16>(at, i16x8.extract_lane_s(y, 0));
  if (left > 1) store<i16>(at + step, i16x8.extract_lane_s(y, 1));
  if (left > 2) store<i16>(at + 2 * step, i16x8.extract_lane_s(y, 2));
  if (left > 3) store<i16>(at + 3 * step, i16x8.extract_lane_s(y, 3));
  if (left > 4) store<i16>(at + 4 * step, i16x8.extract_lane_s(y, 4));
  if (left > 5) store<i16>(at + 5 * step, i16x8.extract_lane_s(y, 5));
  if (left > 6) store<i16>(at + 6 * step, i16x8.extract_lane_s(y, 6));
  if (left > 7) store<i16>(at + 7 * step, i16x8.extract_lane_s(y, 7));
}

@inline function round16(a: v128, b: v128): v128 {
  return i16x8.narrow_i32x4_s(
    i32x4.trunc_sat_f32x4_s(f32x4.nearest(a)),
    i32x4.trunc_sat_f32x4_s(f32x4.nearest(b)),
  );
}

/**
 * 8 kHz -> 16 or 48 kHz. Reads n (0..maxUpPairIn(rate)) samples at src in
 * `codec`, writes exactly L n int16 at dst. Returns L n, or -1 for an unknown rate.
 */
export function upPair(state: usize, rate: i32, src: usize, n: i32, codec: Codec, dst: usize): i32 {
  const l = upFactor(rate);
  if (l == 0) return -1;
  const taps = l == 2 ? UP16 : UP48;
  const history = <usize>UP_HISTORY << 2;
  memory.copy(UP_WORK, state, history);
  const w = UP_WORK + history;
  if (codec == Codec.Ulaw) {
    for (let i = 0; i < n; i++) store<f32>(w + (<usize>i << 2), <f32>ulawDecode(load<u8>(src + <usize>i)));
  } else if (codec == Codec.Alaw) {
    for (let i = 0; i < n; i++) store<f32>(w + (<usize>i << 2), <f32>alawDecode(load<u8>(src + <usize>i)));
  } else {
    for (let i = 0; i < n; i++) store<f32>(w + (<usize>i << 2), <f32>load<i16>(src + (<usize>i << 1)));
  }
  const phaseBytes = <usize>UP_TAPS_PER_PHASE << 2;
  for (let i = 0; i < n; i += 8) {
    const left = n - i;
    const out = dst + (<usize>(i * l) << 1);
    for (let p = 0; p < l; p += 2) {
      let a0 = f32x4.splat(0); let b0 = a0; let a1 = a0; let b1 = a0;
      const t0 = taps + <usize>p * phaseBytes;
      for (let j = 0; j < UP_TAPS_PER_PHASE; j++) {
        const x = UP_WORK + (<usize>(UP_HISTORY + i - j) << 2);
        const xa = v128.load(x);
        const xb = v128.load(x, 16);
        const tap = t0 + (<usize>j << 2);
        a0 = acc(a0, xa, tap); b0 = acc(b0, xb, tap);
        a1 = acc(a1, xa, tap + phaseBytes); b1 = acc(b1, xb, tap + phaseBytes);
      }
      storeLanes(out, round16(a0, b0), l, p, left);
      storeLanes(out, round16(a1, b1), l, p + 1, left);
    }
  }
  memory.copy(state, UP_WORK + (<usize>n << 2), history);
  return l * n;
}

// ---- down -------------------------------------------------------------------

@inline function dot(x: usize, c: usize, j: i32): f32 {
  let a0 = f32x4.splat(0); let a1 = a0; let a2 = a0; let a3 = a0;
  for (let i = 0; i < j; i += 16) {
    const o = <usize>i << 2;
    a0 = f32x4.add(a0, f32x4.mul(v128.load(x + o), v128.load(c + o)));
    a1 = f32x4.add(a1, f32x4.mul(v128.load(x + o, 16), v128.load(c + o, 16)));
    a2 = f32x4.add(a2, f32x4.mul(v128.load(x + o, 32), v128.load(c + o, 32)));
    a3 = f32x4.add(a3, f32x4.mul(v128.load(x + o, 48), v128.load(c + o, 48)));
  }
  const s = f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3));
  return (f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1)) + (f32x4.extract_lane(s, 2) + f32x4.extract_lane(s, 3));
}

/** Two outputs of an integer pair (same taps, windows `step` bytes apart), each summed exactly as dot() sums it. */
@inline function dot2(x: usize, step: usize, c: usize, j: i32, second: usize): f32 {
  let a0 = f32x4.splat(0); let a1 = a0; let a2 = a0; let a3 = a0;
  let b0 = a0; let b1 = a0; let b2 = a0; let b3 = a0;
  const y = x + step;
  for (let i = 0; i < j; i += 16) {
    const o = <usize>i << 2;
    const c0 = v128.load(c + o); const c1 = v128.load(c + o, 16);
    const c2 = v128.load(c + o, 32); const c3 = v128.load(c + o, 48);
    a0 = f32x4.add(a0, f32x4.mul(v128.load(x + o), c0));
    b0 = f32x4.add(b0, f32x4.mul(v128.load(y + o), c0));
    a1 = f32x4.add(a1, f32x4.mul(v128.load(x + o, 16), c1));
    b1 = f32x4.add(b1, f32x4.mul(v128.load(y + o, 16), c1));
    a2 = f32x4.add(a2, f32x4.mul(v128.load(x + o, 32), c2));
    b2 = f32x4.add(b2, f32x4.mul(v128.load(y + o, 32), c2));
    a3 = f32x4.add(a3, f32x4.mul(v128.load(x + o, 48), c3));
    b3 = f32x4.add(b3, f32x4.mul(v128.load(y + o, 48), c3));
  }
  const s = f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3));
  const t = f32x4.add(f32x4.add(b0, b1), f32x4.add(b2, b3));
  store<f32>(second, (f32x4.extract_lane(t, 0) + f32x4.extract_lane(t, 1)) + (f32x4.extract_lane(t, 2) + f32x4.extract_lane(t, 3)));
  return (f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1)) + (f32x4.extract_lane(s, 2) + f32x4.extract_lane(s, 3));
}

/** Scratch for dot2's second sum. */
const SECOND: usize = memory.data(16, 16);

@inline function emit(dst: usize, k: i32, y: i32, codec: Codec): void {
  if (codec == Codec.Pcm16) store<i16>(dst + (<usize>k << 1), <i16>y);
  else if (codec == Codec.Ulaw) store<u8>(dst + <usize>k, ulawEncode(y));
  else store<u8>(dst + <usize>k, alawEncode(y));
}

@inline function sat16(v: f32): i32 {
  const r = <i32>nearest<f32>(max<f32>(-32768.0, min<f32>(32767.0, v)));
  return r;
}

/**
 * 16 / 48 / 22.05 / 44.1 kHz -> 8 kHz. Reads n (0..MAX_PAIR_IN) int16 at src,
 * writes the outputs due at dst in `codec` (int16 or G.711 bytes) and returns
 * their count, or -1 for an unknown rate. `pendingPtr` holds the pair's
 * position word (0 in a fresh state).
 */
export function downPair(state: usize, pendingPtr: usize, rate: i32, src: usize, n: i32, codec: Codec, dst: usize): i32 {
  let l: i32; let m: i32; let j: i32; let offset: i32; let taps: usize;
  if (rate == RATE_16K) { l = 1; m = 2; j = D16_J; offset = 1; taps = D16; }
  else if (rate == RATE_48K) { l = 1; m = 6; j = D48_J; offset = 5; taps = D48; }
  else if (rate == RATE_22K) { l = 160; m = 441; j = D22_J; offset = 0; taps = D22; }
  else if (rate == RATE_44K) { l = 80; m = 441; j = D44_J; offset = 0; taps = D44; }
  else return -1;
  const hist = j - 1;
  const word = load<i32>(pendingPtr);
  let need = (word >> 16) + offset; // index (in this call's input) of the next output's newest sample
  let p = word & 0xffff;
  // linear f32 stream: hist older inputs, then the new ones
  for (let i = 0; i < hist; i++) store<f32>(DOWN_WORK + (<usize>i << 2), <f32>load<i16>(state + (<usize>i << 1)));
  const w = DOWN_WORK + (<usize>hist << 2);
  // 8 at a time: may read up to 7 samples past src + n (still I/O memory) and write 7 floats into the slack
  for (let i = 0; i < n; i += 8) {
    const v = v128.load(src + (<usize>i << 1));
    const o = w + (<usize>i << 2);
    v128.store(o, f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(v)));
    v128.store(o, f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(v)), 16);
  }
  const phaseBytes = <usize>j << 2;
  let outputs = 0;
  while (l == 1 && need + m < n) {
    // integer pairs: two outputs at a time sharing the tap loads (same sums as below)
    const y0 = sat16(dot2(DOWN_WORK + (<usize>need << 2), <usize>m << 2, taps, j, SECOND));
    emit(dst, outputs, y0, codec);
    emit(dst, outputs + 1, sat16(load<f32>(SECOND)), codec);
    outputs += 2;
    need += 2 * m;
  }
  while (need < n) {
    // window = stream[need - j + 1 .. need] = DOWN_WORK[need .. need + j - 1] (hist = j - 1)
    emit(dst, outputs, sat16(dot(DOWN_WORK + (<usize>need << 2), taps + <usize>p * phaseBytes, j)), codec);
    outputs++;
    if (l == 1) {
      need += m;
    } else {
      p += m;
      while (p >= l) { p -= l; need++; }
    }
  }
  // keep the last hist inputs of the stream
  const keepFrom = DOWN_WORK + (<usize>n << 2);
  for (let i = 0; i < hist; i++) store<i16>(state + (<usize>i << 1), <i16><i32>load<f32>(keepFrom + (<usize>i << 2)));
  store<i32>(pendingPtr, ((need - n - offset) << 16) | p);
  return outputs;
}

/** Largest output count a down call of n inputs can give. */
export function maxDownPairOut(rate: i32, n: i32): i32 {
  if (rate == RATE_16K) return n / 2 + 1;
  if (rate == RATE_48K) return n / 6 + 1;
  if (rate == RATE_22K || rate == RATE_44K) return <i32>((<i64>n * 160) / 441) + 1;
  return 0;
}
