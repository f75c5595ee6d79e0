// Factor-3 polyphase FIR resampler, 8 kHz <-> 24 kHz, built on the 96-tap
// linear-phase prototype in fir96.ts (32 taps a phase).
//
// Contract: state lives in caller-owned per-channel areas (UP_STATE_BYTES /
// DOWN_STATE_BYTES each); zeroed state = silence history, so the first call
// already yields full output. Output is identical whatever the input
// chunking: every output sample is computed by the same sequence of f32
// operations wherever it falls in a block. Samples are int16 in, float32
// math, rounded to nearest and saturated to int16 out (within 1 LSB of a
// float64 evaluation of the same filter). Group delay (linear phase): up 47.5
// samples at 24 kHz (1.979 ms); down 45.5 (1.896 ms), since output m is taken
// as soon as input 3m+2 arrives; the round trip is exactly 31 samples at 8 kHz.
//
// Speed: outputs are computed 8 at a time per phase, one f32x4 lane per
// output sample (taps broadcast, inputs loaded contiguously), with six
// independent accumulators; no horizontal sums. Writers may therefore store
// up to 7 samples past the requested count: destinations need OUT_SLACK_BYTES.
import { FIR_PROTOTYPE, FIR_TAPS } from './fir96';
import { alawEncode, alawDecode, ulawDecode, ulawEncode } from './g711';

export const enum Codec { Pcm16 = 0, Ulaw = 1, Alaw = 2 }

const PHASES: i32 = 3;
const PHASE_TAPS: i32 = 32; // FIR_TAPS / PHASES
/** Per-phase history kept between calls, in samples of that phase. */
const HISTORY: i32 = PHASE_TAPS - 1;
/** Outputs computed per step (per phase for up). */
const GROUP: i32 = 8;

/** Per-channel state sizes in bytes (16-aligned). */
export const UP_STATE_BYTES: i32 = 32 * 4; // f32[31] last 8 kHz inputs
export const DOWN_STATE_BYTES: i32 = 96 * 4; // f32[3][31] per-phase history, f32[2] pending inputs
/** Bytes a destination must have beyond its nominal output. */
export const OUT_SLACK_BYTES: i32 = 3 * GROUP * 2;

/** Largest input per call: 8 kHz samples up, 24 kHz samples down. */
export const MAX_UP_IN: i32 = 4096;
export const MAX_DOWN_IN: i32 = 12288;
const MAX_DOWN_OUT: i32 = (MAX_DOWN_IN + 2) / 3;

/** UP_TAPS[p][j] = 3 h[3j + p]: phase p of the interpolator (gain 3 restores level). */
const UP_TAPS: usize = memory.data(PHASES * PHASE_TAPS * 4, 16);
/** DOWN_TAPS[r][j] = h[3j + r]. */
const DOWN_TAPS: usize = memory.data(FIR_TAPS * 4, 16);

/** Up scratch: 31 history + input (+ a group of slack), f32. */
const UP_WORK: usize = memory.data((HISTORY + MAX_UP_IN + GROUP) * 4, 16);
/** Down scratch: the linear input stream (pending + new), then its three phases with history. */
const DOWN_LINEAR: usize = memory.data((MAX_DOWN_IN + 2 + 16) * 4, 16);
const PHASE_STRIDE: usize = <usize>(HISTORY + 1 + MAX_DOWN_OUT + GROUP + 4) << 2; // bytes, multiple of 16
/** Phase q's history starts at DOWN_PHASES + q * PHASE_STRIDE; 4 bytes in, so its new samples are 16-aligned. */
const DOWN_PHASES: usize = memory.data(<i32>PHASE_STRIDE * PHASES, 16) + 4;

export function initResampler(): void {
  for (let r = 0; r < PHASES; r++) {
    for (let j = 0; j < PHASE_TAPS; j++) {
      const h = load<f64>(FIR_PROTOTYPE + (<usize>(PHASES * j + r) << 3));
      store<f32>(UP_TAPS + (<usize>(r * PHASE_TAPS + j) << 2), <f32>(3.0 * h));
      store<f32>(DOWN_TAPS + (<usize>(r * PHASE_TAPS + j) << 2), <f32>h);
    }
  }
}

/** Rounds to nearest and saturates two f32x4 to one i16x8. */
@inline function toInt16x8(a: v128, b: v128): v128 {
  return i16x8.narrow_i32x4_s(
    i32x4.trunc_sat_f32x4_s(f32x4.nearest(a)),
    i32x4.trunc_sat_f32x4_s(f32x4.nearest(b)),
  );
}

@inline function mac(acc: v128, x: v128, tapPtr: usize): v128 {
  return f32x4.add(acc, f32x4.mul(x, v128.load32_splat(tapPtr)));
}

/** Converts n input samples (int16 or G.711 bytes) into f32 at dst. */
@inline function loadInput(src: usize, n: i32, codec: Codec, dst: usize): void {
  if (codec == Codec.Ulaw) {
    for (let i = 0; i < n; i++) store<f32>(dst + (<usize>i << 2), <f32>ulawDecode(load<u8>(src + <usize>i)));
  } else if (codec == Codec.Alaw) {
    for (let i = 0; i < n; i++) store<f32>(dst + (<usize>i << 2), <f32>alawDecode(load<u8>(src + <usize>i)));
  } else {
    // 8 at a time: may read up to 7 samples past src + n and write 7 floats past dst + n
    for (let i = 0; i < n; i += 8) {
      const v = v128.load(src + (<usize>i << 1));
      const out = dst + (<usize>i << 2);
      v128.store(out, f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(v)));
      v128.store(out, f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(v)), 16);
    }
  }
}

/**
 * 8 kHz -> 24 kHz. Reads n (0..MAX_UP_IN) samples at src in `codec`, writes
 * exactly 3n int16 samples at dst (plus up to OUT_SLACK_BYTES of scratch).
 */
export function upsample(state: usize, src: usize, n: i32, codec: Codec, dst: usize): void {
  const history = <usize>HISTORY << 2;
  memory.copy(UP_WORK, state, history);
  loadInput(src, n, codec, UP_WORK + history);
  for (let i = 0; i < n; i += GROUP) {
    // lanes: inputs i..i+7; accumulators per phase p, low (a) and high (b) half
    let a0 = f32x4.splat(0); let a1 = a0; let a2 = a0;
    let b0 = a0; let b1 = a0; let b2 = a0;
    for (let j = 0; j < PHASE_TAPS; j++) {
      const x = UP_WORK + (<usize>(HISTORY + i - j) << 2); // x[i - j ..]
      const xa = v128.load(x);
      const xb = v128.load(x, 16);
      const tap = UP_TAPS + (<usize>j << 2);
      a0 = mac(a0, xa, tap); b0 = mac(b0, xb, tap);
      a1 = mac(a1, xa, tap + 128); b1 = mac(b1, xb, tap + 128);
      a2 = mac(a2, xa, tap + 256); b2 = mac(b2, xb, tap + 256);
    }
    const out = dst + <usize>(i * 6);
    storeInterleaved(out, toInt16x8(a0, a1), toInt16x8(a2, a2));
    storeInterleaved(out + 24, toInt16x8(b0, b1), toInt16x8(b2, b2));
  }
  memory.copy(state, UP_WORK + (<usize>n << 2), history);
}

/** Writes 12 int16 as p0 p1 p2 per input, from A = [p0 x4, p1 x4] and B = [p2 x4, ...]. */
@inline function storeInterleaved(out: usize, a: v128, b: v128): void {
  v128.store(out, v128.shuffle<i16>(a, b, 0, 4, 8, 1, 5, 9, 2, 6));
  v128.store64_lane(out, v128.shuffle<i16>(a, b, 10, 3, 7, 11, 0, 0, 0, 0), 0, 16);
}

/**
 * 24 kHz -> 8 kHz. Reads n (0..MAX_DOWN_IN) int16 samples at src, writes
 * floor((pending + n) / 3) samples at dst in `codec` (int16 or G.711 bytes;
 * plus up to OUT_SLACK_BYTES of scratch), where pending (0..2, in
 * *pendingPtr) are samples carried from earlier calls. Returns the number written.
 */
export function downsample(state: usize, pendingPtr: usize, src: usize, n: i32, codec: Codec, dst: usize): i32 {
  const pending = load<i32>(pendingPtr);
  const total = pending + n;
  const outputs = total / 3;
  const history = <usize>HISTORY << 2;
  // linear stream s = pending ++ input
  memory.copy(DOWN_LINEAR, state + 3 * history, <usize>pending << 2);
  loadInput(src, n, Codec.Pcm16, DOWN_LINEAR + (<usize>pending << 2));
  // phase q holds s[3t + q], after its history
  // (4 outputs a step: may write up to 3 values past each phase's end, into its slack)
  const d0 = DOWN_PHASES + history;
  const d1 = d0 + PHASE_STRIDE;
  const d2 = d1 + PHASE_STRIDE;
  for (let q = 0; q < PHASES; q++) memory.copy(DOWN_PHASES + <usize>q * PHASE_STRIDE, state + <usize>q * history, history);
  for (let t = 0; t < outputs; t += 4) {
    const s = DOWN_LINEAR + (<usize>(3 * t) << 2);
    const v0 = v128.load(s); // s0 s1 s2 s3
    const v1 = v128.load(s, 16); // s4 .. s7
    const v2 = v128.load(s, 32); // s8 .. s11
    const at = <usize>t << 2;
    v128.store(d0 + at, v128.shuffle<f32>(v128.shuffle<f32>(v0, v1, 0, 3, 6, 7), v2, 0, 1, 2, 5));
    v128.store(d1 + at, v128.shuffle<f32>(v128.shuffle<f32>(v0, v1, 1, 4, 7, 7), v2, 0, 1, 2, 6));
    v128.store(d2 + at, v128.shuffle<f32>(v128.shuffle<f32>(v0, v1, 2, 5, 5, 5), v2, 0, 1, 4, 7));
  }
  // y[m] = Σ_r Σ_j h[3j + r] s[3(m - j) + 2 - r]
  const p2 = DOWN_PHASES;
  const p1 = DOWN_PHASES + PHASE_STRIDE;
  const p0 = DOWN_PHASES + 2 * PHASE_STRIDE;
  for (let m = 0; m < outputs; m += GROUP) {
    let a0 = f32x4.splat(0); let a1 = a0; let a2 = a0;
    let b0 = a0; let b1 = a0; let b2 = a0;
    for (let j = 0; j < PHASE_TAPS; j++) {
      const at = <usize>(HISTORY + m - j) << 2;
      const tap = DOWN_TAPS + (<usize>j << 2);
      a0 = mac(a0, v128.load(p0 + at), tap); b0 = mac(b0, v128.load(p0 + at, 16), tap);
      a1 = mac(a1, v128.load(p1 + at), tap + 128); b1 = mac(b1, v128.load(p1 + at, 16), tap + 128);
      a2 = mac(a2, v128.load(p2 + at), tap + 256); b2 = mac(b2, v128.load(p2 + at, 16), tap + 256);
    }
    const y = toInt16x8(f32x4.add(f32x4.add(a0, a1), a2), f32x4.add(f32x4.add(b0, b1), b2));
    if (codec == Codec.Pcm16) v128.store(dst + (<usize>m << 1), y);
    else if (codec == Codec.Ulaw) storeUlaw8(dst + <usize>m, y);
    else storeAlaw8(dst + <usize>m, y);
  }
  // keep each phase's last 31 and the 0..2 samples not yet consumed
  for (let q = 0; q < PHASES; q++) {
    memory.copy(state + <usize>q * history, DOWN_PHASES + <usize>q * PHASE_STRIDE + (<usize>outputs << 2), history);
  }
  const nextPending = total - 3 * outputs;
  memory.copy(state + 3 * history, DOWN_LINEAR + (<usize>(3 * outputs) << 2), <usize>nextPending << 2);
  store<i32>(pendingPtr, nextPending);
  return outputs;
}

@inline function storeUlaw8(out: usize, y: v128): void {
  store<u8>(out, ulawEncode(i16x8.extract_lane_s(y, 0)), 0);
  store<u8>(out, ulawEncode(i16x8.extract_lane_s(y, 1)), 1);
  store<u8>(out, ulawEncode(i16x8.extract_lane_s(y, 2)), 2);
  store<u8>(out, ulawEncode(i16x8.extract_lane_s(y, 3)), 3);
  store<u8>(out, ulawEncode(i16x8.extract_lane_s(y, 4)), 4);
  store<u8>(out, ulawEncode(i16x8.extract_lane_s(y, 5)), 5);
  store<u8>(out, ulawEncode(i16x8.extract_lane_s(y, 6)), 6);
  store<u8>(out, ulawEncode(i16x8.extract_lane_s(y, 7)), 7);
}

@inline function storeAlaw8(out: usize, y: v128): void {
  store<u8>(out, alawEncode(i16x8.extract_lane_s(y, 0)), 0);
  store<u8>(out, alawEncode(i16x8.extract_lane_s(y, 1)), 1);
  store<u8>(out, alawEncode(i16x8.extract_lane_s(y, 2)), 2);
  store<u8>(out, alawEncode(i16x8.extract_lane_s(y, 3)), 3);
  store<u8>(out, alawEncode(i16x8.extract_lane_s(y, 4)), 4);
  store<u8>(out, alawEncode(i16x8.extract_lane_s(y, 5)), 5);
  store<u8>(out, alawEncode(i16x8.extract_lane_s(y, 6)), 6);
  store<u8>(out, alawEncode(i16x8.extract_lane_s(y, 7)), 7);
}
