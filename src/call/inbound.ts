/**
 * Caller audio, Twilio → model: decode → transcode → batch → append.
 *
 * Contract:
 * - `frame(payload)` takes one Twilio media payload (base64 µ-law 8 kHz, already
 *   validated by the parser) and never throws for audio reasons.
 * - `batchMs` = 20 (default): one append per Twilio frame. In passthrough the
 *   payload goes to the model as it arrived, without being decoded.
 * - `batchMs` 40–100 (capacity mode): frames are joined into one append of up
 *   to `batchMs`, except where arrival time matters to the model's VAD:
 *   - speech onset: a voiced frame after silence flushes what is held at once
 *     and the next ONSET_MS go one frame each, so speech_started (and so
 *     barge-in) is never delayed;
 *   - end of turn: the VAD ends a turn after `vadSilenceMs` of silence. When
 *     the caller stops (OFFSET_FRAMES unvoiced frames) what is held goes at
 *     once; batching resumes, and from `vadSilenceMs − batchMs − TAIL_GUARD_MS`
 *     after the offset until TAIL_GUARD_MS past the VAD's deadline frames go
 *     one each, so the model reaches its silence deadline no later than with
 *     per-frame appends. A voiced frame before that window is a pause inside
 *     the turn (the model's VAD is still in speech): batching goes on. A
 *     voiced frame inside the window is a new onset.
 *   Voiced = frame energy above VOICE_DBFS (dsp/format.ts ulawMeanSquare).
 * - Until the model session is attached, up to MAX_EARLY_MS of audio, and at
 *   most MAX_EARLY_BYTES (each payload's base64 plus EARLY_ENTRY_BYTES, so
 *   tiny payloads are bounded too), is held and sent in order on attach; the
 *   oldest is dropped and counted (`earlyDropped`).
 * - Allocation: one reused byte buffer per call for the batch, which holds
 *   µ-law (payloads are decoded straight into it): in transcode it goes
 *   through the DSP once per append.
 */
import { FRAME_BYTES, FRAME_MS, base64Bytes, bytesPerMs, dbfsToMeanSquare, ulawMeanSquare } from '../dsp/format.js';
import type { AudioTranscoder } from './ports.js';

/** Caller audio held while the model session connects, at most, ms (the oldest is dropped past it). */
export const MAX_EARLY_MS = 3000;
/** Memory held before attach, at most: 3 s of transcoded frames (~200 KB) fit; a flood of tiny payloads does not grow past it. */
export const MAX_EARLY_BYTES = 256 * 1024;
/** What one held payload costs besides its characters (string and array slot), for MAX_EARLY_BYTES. */
const EARLY_ENTRY_BYTES = 64;
/** Energy above which a frame counts as voiced (dBFS). Below the model VAD's usual −40 dBFS, so onsets are never late. */
export const VOICE_DBFS = -50;
const ONSET_MS = 200;
const OFFSET_FRAMES = 3;
/** Margin around the VAD's end-of-turn deadline in which frames go one by one. */
const TAIL_GUARD_MS = 100;

const VOICE_MEAN_SQUARE = dbfsToMeanSquare(VOICE_DBFS);

export interface InboundOptions {
  /** 'transcode': PCM16 24 kHz to the model through `transcoder`; 'passthrough': µ-law as received. */
  transcoder: AudioTranscoder | undefined;
  batchMs: number;
  /** The model VAD's silence duration: how long after the caller stops it ends the turn. */
  vadSilenceMs: number;
}

type Phase = 'quiet' | 'onset' | 'speech' | 'settle' | 'tail';

export class Inbound {
  /** Appends sent to the model, and frames taken (for the bench and tests). */
  appends = 0;
  frames = 0;
  /** Payloads dropped (oldest first) while held before attach. */
  earlyDropped = 0;
  private append: ((b64: string) => void) | undefined;
  private early: string[] = [];
  private earlyMs = 0;
  private earlyBytes = 0;
  private readonly batchFrames: number;
  private batch = Buffer.alloc(0);
  private batchLen = 0;
  private batchCount = 0;
  private scratch = Buffer.alloc(1024);
  private scratchView: Uint8Array = this.scratch.subarray(0, 0);
  /** The transcoder's last output view and a Buffer over the same bytes (base64Of). */
  private pcmView: Uint8Array | undefined;
  private pcmBytes: Buffer = Buffer.alloc(0);
  private phase: Phase = 'quiet';
  /** Frames left in the current onset window or tail. */
  private phaseFramesLeft = 0;
  private unvoicedRun = 0;

  constructor(private readonly opts: InboundOptions) {
    this.batchFrames = Math.max(1, Math.floor(opts.batchMs / FRAME_MS));
  }

  /** The model session is ready: held audio goes first, in order. */
  attach(append: (b64: string) => void): void {
    this.append = append;
    for (const b64 of this.early) this.send(b64);
    this.early = [];
    this.earlyMs = 0;
    this.earlyBytes = 0;
  }

  /** What is held before attach counts against MAX_EARLY_BYTES (tests). */
  get earlyHeldBytes(): number {
    return this.earlyBytes;
  }

  /** One Twilio media payload. */
  frame(payload: string): void {
    this.frames++;
    const t = this.opts.transcoder;
    if (this.batchFrames === 1) {
      if (!t) return this.send(payload); // passthrough: untouched
      return this.send(this.base64Of(t.inbound(this.decode(payload))));
    }
    // Decoded straight into the batch (µ-law: the batch is transcoded when it goes, one DSP call per
    // append, the same samples); the speech detector reads the frame's bytes where they landed.
    const at = this.batchLen;
    this.reserve((payload.length * 3) >> 2);
    const n = this.batch.write(payload, at, 'base64');
    this.batchLen += n;
    this.batchCount++;
    const voiced = n > 0 && ulawMeanSquare(this.batch, at, at + n) > VOICE_MEAN_SQUARE;
    const urgent = this.advancePhase(voiced, Math.max(1, Math.round(n / FRAME_BYTES)));
    if (urgent || this.batchCount >= this.batchFrames) this.flush();
  }

  /** Send what is held now (end of call, or the model is about to be asked something). */
  flush(): void {
    if (this.batchLen === 0) return;
    const t = this.opts.transcoder;
    const b64 = t ? this.base64Of(t.inbound(this.batch.subarray(0, this.batchLen))) : this.batch.toString('base64', 0, this.batchLen);
    this.batchLen = 0;
    this.batchCount = 0;
    this.send(b64);
  }

  /**
   * Base64 of the transcoder's output. The transcoder hands out the same view while the length
   * stays the same (every append of a call, in the steady state), so its Buffer is made once.
   */
  private base64Of(pcm: Uint8Array): string {
    if (pcm !== this.pcmView) {
      this.pcmView = pcm;
      this.pcmBytes = Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength);
    }
    return this.pcmBytes.toString('base64');
  }

  /** Move the speech detector on by one frame; true = this frame must go out now. */
  private advancePhase(voiced: boolean, frames: number): boolean {
    const settleFrames = Math.max(0, Math.floor((this.opts.vadSilenceMs - this.opts.batchMs - TAIL_GUARD_MS) / FRAME_MS) - OFFSET_FRAMES);
    const tailFrames = Math.ceil((this.opts.batchMs + 2 * TAIL_GUARD_MS) / FRAME_MS);
    this.unvoicedRun = voiced ? 0 : this.unvoicedRun + frames;
    switch (this.phase) {
      case 'quiet':
        if (!voiced) return false;
        this.phase = 'onset';
        this.phaseFramesLeft = ONSET_MS / FRAME_MS - 1; // this frame is the first of the window
        return true;
      case 'onset':
        if (--this.phaseFramesLeft <= 0) this.phase = 'speech';
        return true;
      case 'speech':
        if (this.unvoicedRun < OFFSET_FRAMES) return false;
        this.phase = settleFrames > 0 ? 'settle' : 'tail';
        this.phaseFramesLeft = settleFrames > 0 ? settleFrames : tailFrames;
        return true;
      case 'settle':
        // A pause inside the turn (between words): the model's VAD, short of its deadline, is still in
        // speech, so no speech_started is pending and batching goes on.
        if (voiced) {
          this.phase = 'speech';
          return false;
        }
        if (--this.phaseFramesLeft > 0) return false;
        this.phase = 'tail';
        this.phaseFramesLeft = tailFrames;
        return true;
      case 'tail':
        if (voiced) {
          this.phase = 'onset';
          this.phaseFramesLeft = ONSET_MS / FRAME_MS - 1; // this frame is the first of the window
          return true;
        }
        if (--this.phaseFramesLeft <= 0) this.phase = 'quiet';
        return true;
    }
  }

  /** Room for `extra` more bytes in the batch. */
  private reserve(extra: number): void {
    if (this.batchLen + extra <= this.batch.length) return;
    const next = Buffer.alloc(Math.max(this.batchLen + extra, this.batch.length * 2, 4096));
    this.batch.copy(next, 0, 0, this.batchLen);
    this.batch = next;
  }

  private send(b64: string): void {
    if (this.append) {
      this.appends++;
      this.append(b64);
      return;
    }
    this.early.push(b64);
    this.earlyMs += this.heldMs(b64);
    this.earlyBytes += b64.length + EARLY_ENTRY_BYTES;
    let drop = 0;
    while ((this.earlyMs > MAX_EARLY_MS || this.earlyBytes > MAX_EARLY_BYTES) && drop < this.early.length - 1) {
      const old = this.early[drop++]!;
      this.earlyMs -= this.heldMs(old);
      this.earlyBytes -= old.length + EARLY_ENTRY_BYTES;
    }
    if (drop > 0) {
      this.early.splice(0, drop);
      this.earlyDropped += drop;
    }
  }

  /** Audio in a held payload, ms (fractions kept: a 1-byte payload is 1/8 ms, not 0). */
  private heldMs(b64: string): number {
    return base64Bytes(b64) / bytesPerMs(this.opts.transcoder ? 'pcm24k' : 'ulaw8k');
  }

  /** A payload decoded into the per-call scratch: a view of its bytes (the same view while frames keep their length). */
  private decode(b64: string): Uint8Array {
    const need = Math.ceil((b64.length * 3) / 4);
    if (need > this.scratch.length) this.scratch = Buffer.alloc(Math.max(need, this.scratch.length * 2));
    const n = this.scratch.write(b64, 'base64');
    if (this.scratchView.buffer !== this.scratch.buffer || this.scratchView.length !== n) this.scratchView = this.scratch.subarray(0, n);
    return this.scratchView;
  }

  /** Current phase of the speech detector (tests). */
  get speechPhase(): Phase {
    return this.phase;
  }
}
