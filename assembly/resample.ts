// Factor-3 polyphase FIR resampler, 8 kHz <-> 24 kHz, built on the 96-tap
// linear-phase prototype in fir96.ts (32 taps a phase, f32x4 inner loops).
//
// Contract: state lives in caller-owned per-channel areas (UP_STATE_BYTES /
// DOWN_STATE_BYTES each); zeroed state = silence history, so the first call
// already yields full output. Output is identical whatever the input
// chunking. Samples are int16 in, float32 math, rounded to nearest and
// saturated to int16 out. Group delay (linear phase): up 47.5 samples at
// 24 kHz (1.979 ms); down 45.5 (1.896 ms), since output m is taken as soon as
// input 3m+2 arrives; the round trip is exactly 31 samples at 8 kHz (3.875 ms).
import { FIR_PROTOTYPE, FIR_TAPS } from './fir96';
import { alawDecode, alawEncode, ulawDecode, ulawEncode } from './g711';

export const enum Codec { Pcm16 = 0, Ulaw = 1, Alaw = 2 }

const PHASES: i32 = 3;
const PHASE_TAPS: i32 = 32; // FIR_TAPS / PHASES
/** 8 kHz input samples an upsampler remembers between calls. */
const UP_HISTORY: i32 = PHASE_TAPS - 1;
/** 24 kHz samples a downsampler remembers beyond the up-to-2 not yet consumed. */
const DOWN_HISTORY: i32 = FIR_TAPS - PHASES;

/** Per-channel state sizes in bytes (16-aligned). */
export const UP_STATE_BYTES: i32 = 32 * 4; // history f32[31]
export const DOWN_STATE_BYTES: i32 = 96 * 4; // history+pending f32[93 + 0..2]

/** Largest input per call: 8 kHz samples up, 24 kHz samples down. */
export const MAX_UP_IN: i32 = 4096;
export const MAX_DOWN_IN: i32 = 12288;

/** Upsampler phase p, reversed: UP_COEFS[p][k] = 3 * h[3 * (31 - k) + p] (gain 3 restores level). */
const UP_COEFS: usize = memory.data(PHASES * PHASE_TAPS * 4, 16);
/** Downsampler taps reversed: DOWN_COEFS[k] = h[95 - k]. */
const DOWN_COEFS: usize = memory.data(FIR_TAPS * 4, 16);
/** Scratch: channel history followed by the new input, as f32. */
const WORK: usize = memory.data((DOWN_HISTORY + 2 + MAX_DOWN_IN + 4) * 4, 16);

export function initResampler(): void {
  for (let p = 0; p < PHASES; p++) {
    for (let k = 0; k < PHASE_TAPS; k++) {
      const h = load<f64>(FIR_PROTOTYPE + (<usize>(PHASES * (PHASE_TAPS - 1 - k) + p) << 3));
      store<f32>(UP_COEFS + (<usize>(p * PHASE_TAPS + k) << 2), <f32>(3.0 * h));
    }
  }
  for (let k = 0; k < FIR_TAPS; k++) {
    store<f32>(DOWN_COEFS + (<usize>k << 2), <f32>load<f64>(FIR_PROTOTYPE + (<usize>(FIR_TAPS - 1 - k) << 3)));
  }
}

@inline function toInt16(v: f32): i32 {
  return <i32>min<f32>(max<f32>(nearest<f32>(v), -32768.0), 32767.0);
}

@inline function sumLanes(acc: v128): f32 {
  return f32x4.extract_lane(acc, 0) + f32x4.extract_lane(acc, 1)
    + (f32x4.extract_lane(acc, 2) + f32x4.extract_lane(acc, 3));
}

/** dot(window[0..31], coefs[0..31]) */
@inline function dot32(w: usize, c: usize): f32 {
  let a = f32x4.mul(v128.load(w), v128.load(c));
  let b = f32x4.mul(v128.load(w, 16), v128.load(c, 16));
  a = f32x4.add(a, f32x4.mul(v128.load(w, 32), v128.load(c, 32)));
  b = f32x4.add(b, f32x4.mul(v128.load(w, 48), v128.load(c, 48)));
  a = f32x4.add(a, f32x4.mul(v128.load(w, 64), v128.load(c, 64)));
  b = f32x4.add(b, f32x4.mul(v128.load(w, 80), v128.load(c, 80)));
  a = f32x4.add(a, f32x4.mul(v128.load(w, 96), v128.load(c, 96)));
  b = f32x4.add(b, f32x4.mul(v128.load(w, 112), v128.load(c, 112)));
  return sumLanes(f32x4.add(a, b));
}

/** Converts n input samples (int16 or G.711 bytes) into f32 at dst. */
@inline function loadInput(src: usize, n: i32, codec: Codec, dst: usize): void {
  if (codec == Codec.Ulaw) {
    for (let i = 0; i < n; i++) store<f32>(dst + (<usize>i << 2), <f32>ulawDecode(load<u8>(src + <usize>i)));
  } else if (codec == Codec.Alaw) {
    for (let i = 0; i < n; i++) store<f32>(dst + (<usize>i << 2), <f32>alawDecode(load<u8>(src + <usize>i)));
  } else {
    for (let i = 0; i < n; i++) store<f32>(dst + (<usize>i << 2), <f32>load<i16>(src + (<usize>i << 1)));
  }
}

/**
 * 8 kHz -> 24 kHz. Reads n (0..MAX_UP_IN) samples at src in `codec`, writes
 * exactly 3n int16 samples at dst.
 */
export function upsample(state: usize, src: usize, n: i32, codec: Codec, dst: usize): void {
  memory.copy(WORK, state, <usize>UP_HISTORY << 2);
  loadInput(src, n, codec, WORK + (<usize>UP_HISTORY << 2));
  const c0 = UP_COEFS;
  const c1 = UP_COEFS + (<usize>PHASE_TAPS << 2);
  const c2 = UP_COEFS + (<usize>(2 * PHASE_TAPS) << 2);
  for (let i = 0; i < n; i++) {
    const w = WORK + (<usize>i << 2);
    const out = dst + <usize>(i * 6);
    store<i16>(out, toInt16(dot32(w, c0)));
    store<i16>(out, toInt16(dot32(w, c1)), 2);
    store<i16>(out, toInt16(dot32(w, c2)), 4);
  }
  memory.copy(state, WORK + (<usize>n << 2), <usize>UP_HISTORY << 2);
}

/**
 * 24 kHz -> 8 kHz. Reads n (0..MAX_DOWN_IN) int16 samples at src, writes
 * floor((pending + n) / 3) samples at dst in `codec` (int16 or G.711 bytes),
 * where pending (0..2, in *pendingPtr) are samples carried from earlier calls.
 * Returns the number written.
 */
export function downsample(state: usize, pendingPtr: usize, src: usize, n: i32, codec: Codec, dst: usize): i32 {
  const pending = load<i32>(pendingPtr);
  const kept = DOWN_HISTORY + pending;
  memory.copy(WORK, state, <usize>kept << 2);
  loadInput(src, n, Codec.Pcm16, WORK + (<usize>kept << 2));
  const total = pending + n;
  const outputs = total / 3;
  for (let m = 0; m < outputs; m++) {
    const w = WORK + (<usize>(3 * m) << 2);
    const c = DOWN_COEFS;
    let a = f32x4.mul(v128.load(w), v128.load(c));
    let b = f32x4.mul(v128.load(w, 16), v128.load(c, 16));
    for (let k: usize = 32; k < <usize>(FIR_TAPS * 4); k += 32) {
      a = f32x4.add(a, f32x4.mul(v128.load(w + k), v128.load(c + k)));
      b = f32x4.add(b, f32x4.mul(v128.load(w + k, 16), v128.load(c + k, 16)));
    }
    const y = toInt16(sumLanes(f32x4.add(a, b)));
    if (codec == Codec.Ulaw) store<u8>(dst + <usize>m, ulawEncode(y));
    else if (codec == Codec.Alaw) store<u8>(dst + <usize>m, alawEncode(y));
    else store<i16>(dst + (<usize>m << 1), y);
  }
  const nextPending = total - 3 * outputs;
  memory.copy(state, WORK + (<usize>(3 * outputs) << 2), <usize>(DOWN_HISTORY + nextPending) << 2);
  store<i32>(pendingPtr, nextPending);
  return outputs;
}
