// callbridge DSP module: G.711 codecs and the factor-3 resampler over a
// fixed table of channel slots. All memory is static (--runtime stub, fixed
// 64 pages): nothing is allocated after start-up.
//
// I/O: callers write input at ioIn() and read output at ioOut(); both
// pointers are fixed for the module's life. Every call returns the number of
// samples (or bytes) written, or a negative status:
//   -1 no free slot, -2 slot out of range or not open, -3 length out of range,
//   -4 unknown codec, -5 unknown rate pair.
import { alawDecodeBlock, alawEncodeBlock, initG711, ulawDecodeBlock, ulawEncodeBlock } from './g711';
import { FIR_PROTOTYPE, FIR_TAPS } from './fir96';
import {
  Codec, DOWN_STATE_BYTES, MAX_DOWN_IN, MAX_UP_IN, OUT_SLACK_BYTES, UP_STATE_BYTES, downsample, initResampler, upsample,
} from './resample';
import { MAX_PAIR_IN, downPair, initPairs, maxUpPairIn, upPair } from './pairs';

export const E_NO_SLOTS: i32 = -1;
export const E_BAD_SLOT: i32 = -2;
export const E_BAD_LENGTH: i32 = -3;
export const E_BAD_CODEC: i32 = -4;
export const E_BAD_RATE: i32 = -5;

/** Channel slots (one per call) per module instance, i.e. per thread. */
const MAX_SLOTS: i32 = 4096;
/** Largest sample count for the stateless codec calls. */
const MAX_CODEC_IN: i32 = 12288;
const IO_BYTES: i32 = 24576; // max(MAX_DOWN_IN, MAX_CODEC_IN) int16, 3 * MAX_UP_IN int16

const IO_IN: usize = memory.data(IO_BYTES, 16);
const IO_OUT: usize = memory.data(IO_BYTES + OUT_SLACK_BYTES, 16);
const UP_STATE: usize = memory.data(MAX_SLOTS * UP_STATE_BYTES, 16);
const DOWN_STATE: usize = memory.data(MAX_SLOTS * DOWN_STATE_BYTES, 16);
const DOWN_PENDING: usize = memory.data(MAX_SLOTS * 4, 16);
const SLOT_OPEN: usize = memory.data(MAX_SLOTS, 16);
/** Stack of free slot numbers; the top FREE_COUNT entries are free. */
const FREE_STACK: usize = memory.data(MAX_SLOTS * 4, 16);
let freeCount: i32 = 0;

initG711();
initResampler();
initPairs();
for (let s = MAX_SLOTS - 1; s >= 0; s--) store<i32>(FREE_STACK + (<usize>(freeCount++) << 2), s);

export function ioIn(): usize { return IO_IN; }
export function ioOut(): usize { return IO_OUT; }
export function ioBytes(): i32 { return IO_BYTES; }
export function maxSlots(): i32 { return MAX_SLOTS; }
export function openSlots(): i32 { return MAX_SLOTS - freeCount; }
export function maxUpIn(): i32 { return MAX_UP_IN; }
export function maxDownIn(): i32 { return MAX_DOWN_IN; }
export function maxCodecIn(): i32 { return MAX_CODEC_IN; }
/** The resampler prototype, f64[firTaps()], unit DC gain. */
export function firPrototype(): usize { return FIR_PROTOTYPE; }
export function firTaps(): i32 { return FIR_TAPS; }

@inline function isOpen(slot: i32): bool {
  return <u32>slot < <u32>MAX_SLOTS && load<u8>(SLOT_OPEN + <usize>slot) != 0;
}

/** Opens a slot with silent history in both directions; returns it, or E_NO_SLOTS. */
export function open(): i32 {
  if (freeCount == 0) return E_NO_SLOTS;
  const slot = load<i32>(FREE_STACK + (<usize>(--freeCount) << 2));
  store<u8>(SLOT_OPEN + <usize>slot, 1);
  resetUp(slot);
  resetDown(slot);
  return slot;
}

/** Frees a slot; 0, or E_BAD_SLOT if it was not open. */
export function close(slot: i32): i32 {
  if (!isOpen(slot)) return E_BAD_SLOT;
  store<u8>(SLOT_OPEN + <usize>slot, 0);
  store<i32>(FREE_STACK + (<usize>(freeCount++) << 2), slot);
  return 0;
}

/** Silences the 8k -> 24k history. */
export function resetUp(slot: i32): i32 {
  if (!isOpen(slot)) return E_BAD_SLOT;
  memory.fill(UP_STATE + <usize>slot * UP_STATE_BYTES, 0, UP_STATE_BYTES);
  return 0;
}

/** Silences the 24k -> 8k history and drops its 0..2 pending samples. */
export function resetDown(slot: i32): i32 {
  if (!isOpen(slot)) return E_BAD_SLOT;
  memory.fill(DOWN_STATE + <usize>slot * DOWN_STATE_BYTES, 0, DOWN_STATE_BYTES);
  store<i32>(DOWN_PENDING + (<usize>slot << 2), 0);
  return 0;
}

/** 24 kHz samples a slot's downsampler holds back (0..2) until it has three. */
export function downPending(slot: i32): i32 {
  if (!isOpen(slot)) return E_BAD_SLOT;
  return load<i32>(DOWN_PENDING + (<usize>slot << 2));
}

/**
 * 8 kHz -> 24 kHz on a slot: n (0..maxUpIn) samples at ioIn in `codec`
 * (0 int16, 1 µ-law byte, 2 A-law byte) -> 3n int16 at ioOut. Returns 3n.
 */
export function up(slot: i32, n: i32, codec: i32): i32 {
  if (!isOpen(slot)) return E_BAD_SLOT;
  if (n < 0 || n > MAX_UP_IN) return E_BAD_LENGTH;
  if (<u32>codec > 2) return E_BAD_CODEC;
  upsample(UP_STATE + <usize>slot * UP_STATE_BYTES, IO_IN, n, <Codec>codec, IO_OUT);
  return 3 * n;
}

/**
 * 24 kHz -> 8 kHz on a slot: n (0..maxDownIn) int16 at ioIn -> samples at
 * ioOut in `codec`. Returns floor((pending + n) / 3), pending being the
 * 0..2 samples carried from the previous call.
 */
export function down(slot: i32, n: i32, codec: i32): i32 {
  if (!isOpen(slot)) return E_BAD_SLOT;
  if (n < 0 || n > MAX_DOWN_IN) return E_BAD_LENGTH;
  if (<u32>codec > 2) return E_BAD_CODEC;
  return downsample(
    DOWN_STATE + <usize>slot * DOWN_STATE_BYTES, DOWN_PENDING + (<usize>slot << 2), IO_IN, n, <Codec>codec, IO_OUT,
  );
}

/** Stateless 8 kHz codecs: n (0..maxCodecIn) samples ioIn -> ioOut. Return n. */
export function ulawToPcm(n: i32): i32 {
  if (n < 0 || n > MAX_CODEC_IN) return E_BAD_LENGTH;
  ulawDecodeBlock(IO_IN, IO_OUT, n);
  return n;
}

export function alawToPcm(n: i32): i32 {
  if (n < 0 || n > MAX_CODEC_IN) return E_BAD_LENGTH;
  alawDecodeBlock(IO_IN, IO_OUT, n);
  return n;
}

export function pcmToUlaw(n: i32): i32 {
  if (n < 0 || n > MAX_CODEC_IN) return E_BAD_LENGTH;
  ulawEncodeBlock(IO_IN, IO_OUT, n);
  return n;
}

export function pcmToAlaw(n: i32): i32 {
  if (n < 0 || n > MAX_CODEC_IN) return E_BAD_LENGTH;
  alawEncodeBlock(IO_IN, IO_OUT, n);
  return n;
}

// ---- the other rate pairs (pairs.ts) -----------------------------------------
// A slot's up and down areas serve one pair each at a time: resetUp/resetDown
// before switching a slot's direction to another pair.

/** Largest n for upTo(rate) (8 kHz samples) or downFrom(rate) (samples at rate); 0 for an unknown rate. */
export function maxPairIn(rate: i32, down: i32): i32 {
  if (down != 0) return rate == 16000 || rate == 48000 || rate == 22050 || rate == 44100 ? MAX_PAIR_IN : 0;
  return maxUpPairIn(rate);
}

/**
 * 8 kHz -> rate (16000 or 48000) on a slot's up area: n samples at ioIn in
 * `codec` -> L n int16 at ioOut (L = rate / 8000). Returns L n.
 */
export function upTo(slot: i32, rate: i32, n: i32, codec: i32): i32 {
  if (!isOpen(slot)) return E_BAD_SLOT;
  const max = maxUpPairIn(rate);
  if (max == 0) return E_BAD_RATE;
  if (n < 0 || n > max) return E_BAD_LENGTH;
  if (<u32>codec > 2) return E_BAD_CODEC;
  return upPair(UP_STATE + <usize>slot * UP_STATE_BYTES, rate, IO_IN, n, <Codec>codec, IO_OUT);
}

/**
 * rate (16000, 48000, 22050 or 44100) -> 8 kHz on a slot's down area: n int16
 * at ioIn -> the outputs due at ioOut in `codec`. Returns their count.
 */
export function downFrom(slot: i32, rate: i32, n: i32, codec: i32): i32 {
  if (!isOpen(slot)) return E_BAD_SLOT;
  if (maxPairIn(rate, 1) == 0) return E_BAD_RATE;
  if (n < 0 || n > MAX_PAIR_IN) return E_BAD_LENGTH;
  if (<u32>codec > 2) return E_BAD_CODEC;
  return downPair(
    DOWN_STATE + <usize>slot * DOWN_STATE_BYTES, DOWN_PENDING + (<usize>slot << 2), rate, IO_IN, n, <Codec>codec, IO_OUT,
  );
}

// ---- voice activity detector (vad.ts), its own slot table ---------------------
import { VAD_MAX_IN, VAD_SLOTS, initVad, vadAcquire, vadFrame, vadIsOpen, vadOpenCount, vadProb, vadReference, vadRelease, vadReset } from './vad';
initVad();
export function vadMaxIn(): i32 { return VAD_MAX_IN; }
export function vadSlots(): i32 { return VAD_SLOTS; }
export function vadOpenSlots(): i32 { return vadOpenCount(); }
/** Opens a detector in its start state; returns its slot, or E_NO_SLOTS. */
export function vadOpen(): i32 { const s = vadAcquire(); return s < 0 ? E_NO_SLOTS : s; }
/** Frees a detector; 0, or E_BAD_SLOT. */
export function vadClose(slot: i32): i32 { return vadRelease(slot) ? 0 : E_BAD_SLOT; }
/** Back to the start state (background unknown, no reference, not active); 0, or E_BAD_SLOT. */
export function vadRestart(slot: i32): i32 {
  if (!vadIsOpen(slot)) return E_BAD_SLOT;
  vadReset(slot);
  return 0;
}
/** One caller frame: n (1..vadMaxIn) samples at ioIn in codec 0 (int16) or 1 (µ-law) -> decision bits (vad.ts), or < 0. */
export function vadPush(slot: i32, n: i32, codec: i32): i32 {
  if (!vadIsOpen(slot)) return E_BAD_SLOT;
  if (n <= 0 || n > VAD_MAX_IN) return E_BAD_LENGTH;
  if (<u32>codec > 1) return E_BAD_CODEC;
  return vadFrame(slot, IO_IN, n, codec);
}
/** The far end as played, n samples at ioIn (codec as vadPush), before the caller frame of the same time; 0, or < 0. */
export function vadPlayed(slot: i32, n: i32, codec: i32): i32 {
  if (!vadIsOpen(slot)) return E_BAD_SLOT;
  if (n <= 0 || n > VAD_MAX_IN) return E_BAD_LENGTH;
  if (<u32>codec > 1) return E_BAD_CODEC;
  vadReference(slot, IO_IN, n, codec);
  return 0;
}
/** Speech probability (0..1) of the slot's last frame; -1 for a slot not open. */
export function vadLastProb(slot: i32): f32 { return vadIsOpen(slot) ? vadProb(slot) : -1; }
