// Voice activity detector for the caller's side of a call (issue 19): one
// stateful detector per slot, fed 8 kHz frames (20 ms = 160 samples), with the
// far end (what we play to the caller) as an optional reference so that our
// own voice leaking back is not taken for the caller.
//
// Per frame: a 2nd-order high-pass (Butterworth, 200 Hz) removes hum and DC;
// E = frame energy in dBFS. Speech margin = E - max(floor + SNR_DB, echo gate,
// ABS_MIN_DB), where `floor` follows the background (drops at once, rises
// RISE_DB per frame) and the echo gate is the loudest reference frame of the
// last REF_FRAMES (covers up to 80 ms of echo delay) minus ERL_DB. A frame is
// speech when the margin is > 0; probability = logistic(margin / 3 dB).
// Onset is decided after ONSET_FRAMES speech frames in a row (hangover against
// clicks and bursts), or after 2 whose margins add up to FAST_ONSET_DB; offset
// after OFFSET_FRAMES non-speech frames in a row.
//
// All state is static (VAD_SLOTS slots of VAD_STATE_BYTES); nothing allocates.
import { ulawDecodeBlock } from './g711';

export const VAD_SLOTS: i32 = 4096;
/** Largest frame (samples) per call: 60 ms. */
export const VAD_MAX_IN: i32 = 480;

const SNR_DB: f32 = 9.0;
const ABS_MIN_DB: f32 = -55.0;
const RISE_DB: f32 = 0.15;
const ERL_DB: f32 = 18.0;
const REF_FRAMES: i32 = 5;
const ONSET_FRAMES: i32 = 3;
const OFFSET_FRAMES: i32 = 15;
/** Fast onset: 2 speech frames in a row whose margins add up to this much. */
const FAST_ONSET_DB: f32 = 16.0;
const SILENT_DB: f32 = -100.0;

// Slot state layout (bytes).
const S_HX1: usize = 0;
const S_HX2: usize = 4;
const S_HY1: usize = 8;
const S_HY2: usize = 12;
const S_FLOOR: usize = 16;
const S_REF: usize = 20; // f32[REF_FRAMES]: reference energy (dBFS) per frame, a ring
const S_REF_IDX: usize = 40;
const S_SPEECH_RUN: usize = 44;
const S_QUIET_RUN: usize = 48;
const S_ACTIVE: usize = 52;
const S_FRAMES: usize = 56;
const S_PROB: usize = 60;
// Reference high-pass state.
const S_RX1: usize = 64;
const S_RX2: usize = 68;
const S_RY1: usize = 72;
const S_RY2: usize = 76;
const S_LAST_MARGIN: usize = 80;
export const VAD_STATE_BYTES: i32 = 96;

/** Decision bits returned by vadFrame. */
export const VAD_SPEECH: i32 = 1; // this frame is speech
export const VAD_ACTIVE: i32 = 2; // inside a speech segment (after onset, before offset)
export const VAD_ONSET: i32 = 4; // onset decided at the end of this frame
export const VAD_OFFSET: i32 = 8; // offset decided at the end of this frame

const STATE: usize = memory.data(VAD_SLOTS * VAD_STATE_BYTES, 16);
const SCRATCH: usize = memory.data(VAD_MAX_IN * 2, 16);
const VAD_OPEN: usize = memory.data(VAD_SLOTS, 16);
/** Stack of free VAD slot numbers; the top vadFree entries are free. */
const VAD_FREE: usize = memory.data(VAD_SLOTS * 4, 16);
let vadFree: i32 = 0;

export function vadIsOpen(slot: i32): bool {
  return <u32>slot < <u32>VAD_SLOTS && load<u8>(VAD_OPEN + <usize>slot) != 0;
}

/** A fresh detector's slot, or -1 when all VAD_SLOTS are open. */
export function vadAcquire(): i32 {
  if (vadFree == 0) return -1;
  const slot = load<i32>(VAD_FREE + (<usize>(--vadFree) << 2));
  store<u8>(VAD_OPEN + <usize>slot, 1);
  vadReset(slot);
  return slot;
}

/** Frees an open slot; false if it was not open. */
export function vadRelease(slot: i32): bool {
  if (!vadIsOpen(slot)) return false;
  store<u8>(VAD_OPEN + <usize>slot, 0);
  store<i32>(VAD_FREE + (<usize>(vadFree++) << 2), slot);
  return true;
}

export function vadOpenCount(): i32 { return VAD_SLOTS - vadFree; }

// High-pass biquad at 200 Hz, fs 8 kHz, Q = 1/sqrt(2) (RBJ cookbook), a0 normalised.
let hb0: f32 = 0;
let hb1: f32 = 0;
let hb2: f32 = 0;
let ha1: f32 = 0;
let ha2: f32 = 0;

export function initVad(): void {
  const w0 = 2.0 * Math.PI * 200.0 / 8000.0;
  const alpha = Math.sin(w0) / (2.0 * Math.SQRT1_2);
  const c = Math.cos(w0);
  const a0 = 1.0 + alpha;
  hb0 = <f32>((1.0 + c) / 2.0 / a0);
  hb1 = <f32>(-(1.0 + c) / a0);
  hb2 = hb0;
  ha1 = <f32>(-2.0 * c / a0);
  ha2 = <f32>((1.0 - alpha) / a0);
  for (let s = VAD_SLOTS - 1; s >= 0; s--) store<i32>(VAD_FREE + (<usize>(vadFree++) << 2), s);
}

@inline function slotBase(slot: i32): usize { return STATE + <usize>slot * VAD_STATE_BYTES; }

export function vadReset(slot: i32): void {
  const s = slotBase(slot);
  memory.fill(s, 0, VAD_STATE_BYTES);
  for (let i = 0; i < REF_FRAMES; i++) store<f32>(s + S_REF + (<usize>i << 2), SILENT_DB);
}

/** High-passes n int16 at src through the biquad whose state is at st; returns the energy in dBFS. */
function hpEnergy(st: usize, src: usize, n: i32): f32 {
  let x1 = load<f32>(st), x2 = load<f32>(st + 4), y1 = load<f32>(st + 8), y2 = load<f32>(st + 12);
  let acc: f64 = 0;
  for (let i = 0; i < n; i++) {
    const x = <f32>load<i16>(src + (<usize>i << 1));
    const y = hb0 * x + hb1 * x1 + hb2 * x2 - ha1 * y1 - ha2 * y2;
    x2 = x1; x1 = x; y2 = y1; y1 = y;
    acc += <f64>y * <f64>y;
  }
  // Flush denormals-to-be after long silence.
  if (Mathf.abs(y1) < 1e-6) y1 = 0;
  if (Mathf.abs(y2) < 1e-6) y2 = 0;
  store<f32>(st, x1); store<f32>(st + 4, x2); store<f32>(st + 8, y1); store<f32>(st + 12, y2);
  if (n == 0) return SILENT_DB;
  return <f32>(10.0 * Math.log10(acc / <f64>n / (32768.0 * 32768.0) + 1e-10));
}

/** Pointer to n int16 of input: src itself (codec 0) or the decoded µ-law (codec 1). */
function pcmOf(src: usize, n: i32, codec: i32): usize {
  if (codec == 0) return src;
  ulawDecodeBlock(src, SCRATCH, n);
  return SCRATCH;
}

/**
 * One caller frame (n samples at src, codec 0 int16 / 1 µ-law) -> decision bits
 * (VAD_SPEECH | VAD_ACTIVE | VAD_ONSET | VAD_OFFSET). The caller checks slot, n, codec.
 */
export function vadFrame(slot: i32, src: usize, n: i32, codec: i32): i32 {
  const s = slotBase(slot);
  const e = hpEnergy(s + S_HX1, pcmOf(src, n, codec), n);
  const frames = load<i32>(s + S_FRAMES);
  let floor = load<f32>(s + S_FLOOR);
  if (frames == 0) floor = e;
  let gate: f32 = SILENT_DB;
  for (let i = 0; i < REF_FRAMES; i++) gate = Mathf.max(gate, load<f32>(s + S_REF + (<usize>i << 2)));
  gate -= ERL_DB;
  const threshold = Mathf.max(Mathf.max(floor + SNR_DB, gate), ABS_MIN_DB);
  const margin = e - threshold;
  store<f32>(s + S_PROB, 1.0 / (1.0 + Mathf.exp(-margin / 3.0)));
  // Background follower: down at once, up slowly (never above this frame).
  floor = e < floor ? e : Mathf.min(floor + RISE_DB, e);
  store<f32>(s + S_FLOOR, floor);
  store<i32>(s + S_FRAMES, frames + 1);
  // The reference ring advances once per caller frame; a frame with no reference played is silence.
  const idx = (load<i32>(s + S_REF_IDX) + 1) % REF_FRAMES;
  store<i32>(s + S_REF_IDX, idx);
  store<f32>(s + S_REF + (<usize>idx << 2), SILENT_DB);

  const speech = margin > 0;
  let speechRun = load<i32>(s + S_SPEECH_RUN);
  let quietRun = load<i32>(s + S_QUIET_RUN);
  let active = load<i32>(s + S_ACTIVE);
  let bits: i32 = speech ? VAD_SPEECH : 0;
  if (speech) { speechRun++; quietRun = 0; } else { quietRun++; speechRun = 0; }
  const lastMargin = load<f32>(s + S_LAST_MARGIN);
  store<f32>(s + S_LAST_MARGIN, margin);
  const fast = speechRun >= 2 && lastMargin + margin >= FAST_ONSET_DB;
  if (active == 0 && (speechRun >= ONSET_FRAMES || fast)) { active = 1; bits |= VAD_ONSET; }
  else if (active != 0 && quietRun >= OFFSET_FRAMES) { active = 0; bits |= VAD_OFFSET; }
  if (active != 0) bits |= VAD_ACTIVE;
  store<i32>(s + S_SPEECH_RUN, speechRun);
  store<i32>(s + S_QUIET_RUN, quietRun);
  store<i32>(s + S_ACTIVE, active);
  return bits;
}

/**
 * The far end as it was played to the caller (n samples at src): its energy
 * raises the echo gate for the next REF_FRAMES caller frames. Call it before
 * the caller frame of the same 20 ms. Several calls in one frame keep the loudest.
 */
export function vadReference(slot: i32, src: usize, n: i32, codec: i32): void {
  const s = slotBase(slot);
  const e = hpEnergy(s + S_RX1, pcmOf(src, n, codec), n);
  const at = s + S_REF + (<usize>load<i32>(s + S_REF_IDX) << 2);
  store<f32>(at, Mathf.max(load<f32>(at), e));
}

/** Speech probability of the slot's last frame, 0..1. */
export function vadProb(slot: i32): f32 { return load<f32>(slotBase(slot) + S_PROB); }
