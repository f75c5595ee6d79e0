/**
 * One call's recording tap (recording/types.ts CallRecordingTap): a bounded
 * per-call timeline of two channels, fed from the audio path, written to a
 * RecordingWriter off it. Contract:
 *
 * - Timeline: samples (8 per ms) since the stream's start, on the relay's
 *   clock `now()`. Channel 1 is the caller, placed at each frame's `atMs`
 *   (Twilio's media timestamp); channel 2 is what the caller heard, placed
 *   at `playAtMs` (the relay sends up to about a second ahead). Samples
 *   nothing was placed at are µ-law silence (0xFF). The file's plaintext is
 *   the two channels interleaved per sample (caller, heard).
 * - Finality: the timeline before `now() - holdMs` is final. Audio may land
 *   anywhere not yet handed to the writer: a caller frame that is late or out
 *   of order is placed while its samples are still held; samples already
 *   handed on, audio more than AHEAD_MAX_MS ahead of `now()`, and garbage
 *   (non-finite times) are dropped and counted (`stats()`).
 * - `cleared(atMs)`: heard audio placed at or after `atMs` (and still held) is
 *   erased — it never played. Heard audio given later is placed normally.
 * - Writing: each time audio arrives the tap compares numbers; once at least
 *   `blockMs` of final audio is held, one flush is scheduled (`schedule`,
 *   default setImmediate) that interleaves the final audio into blocks of
 *   `blockMs` and queues them; the queue is written one block at a time, each
 *   write awaited. A stretch with no audio at all is queued as a run of
 *   silence (no memory), written in blocks of the same size.
 * - The writer is opened at the first write (`openWriter(recordingObjectName(…))`).
 *   If opening, a write or finishing rejects: the upload is aborted (best
 *   effort), nothing more is written or kept, and `finish()` resolves
 *   `incomplete` with `object: null` and reason `write failed: <message>`.
 * - Slow storage: when the blocks waiting for the writer pass
 *   `maxPendingBytes`, the tap stops taking audio (the call goes on); the
 *   waiting blocks are still written and `finish()` finishes the file, which
 *   is readable up to that point: `incomplete`, reason
 *   `storage too slow: stopped at <s> s`, object set.
 * - `optOut()`: everything held is dropped, an open upload is aborted (the
 *   object is removed) and nothing more is kept: `finish()` resolves
 *   `opted_out` with no object, no key, 0 bytes, 0 ms.
 * - `finish(atMs)`: the timeline up to `atMs` (no later than `now()` plus the
 *   hold and the lead allowance) or the end of the last audio, whichever is
 *   later, is written and the file finished (a call with no audio still
 *   leaves a short file): `complete` with its duration and size. Calls after
 *   `finish` are ignored; `finish` again returns the same promise.
 * - Every tap method returns at once and never throws; `finish()` never
 *   rejects.
 * - Memory: two byte rings (one per channel) that hold only what is not yet
 *   final plus a little slack (when audio would not fit, final audio is
 *   queued at once; only audio far ahead grows them, by doubling, up to a
 *   fixed bound), and the queued blocks (at most `maxPendingBytes` plus one
 *   block). In steady state the audio path allocates nothing; a flush
 *   allocates one block per `blockMs`.
 * - A write that never returns holds everything behind it (writes are
 *   serialised): the tap then stops as too slow, and `finish()` resolves when
 *   the writer does; timing out a hung storage is the writer's business.
 */
import { ULAW_BYTES_PER_MS, ULAW_SILENCE } from '../dsp/format.js';
import { silentLogger, type Logger } from '../log.js';
import type { CallRecordingTap, RecordingInfo, RecordingWriter } from './types.js';

export const RECORDING_EXT = '.cbrec';

/** Audio placed further ahead of `now()` than this is dropped (the relay sends about a second ahead). */
export const AHEAD_MAX_MS = 5000;

/** µ-law 8 kHz: samples per ms of one channel. */
const SAMPLES_PER_MS = ULAW_BYTES_PER_MS;
const DEFAULT_HOLD_MS = 1000;
const DEFAULT_BLOCK_MS = 1000;
const DEFAULT_MAX_PENDING_BYTES = 30_000 * SAMPLES_PER_MS * 2;
/** The rings start with room for the hold, a block and this much more, ms. */
const INITIAL_SLACK_MS = 2000;

export interface CallRecordingOptions {
  callSid: string;
  /** Which stream of the call (1 = first); legs > 1 get `-<leg>` in the object name. */
  leg?: number;
  /** When the stream started (names the object's day folder, UTC): `YYYY/MM/DD/<CallSid>[-<leg>].cbrec`. */
  startedAt: Date;
  storage: { kind: 'dir' | 's3' };
  keyId: string;
  /** Opens the file being written (container.ts's createRecordingWriter over storage.create(name), wired by the caller). */
  openWriter(name: string): Promise<RecordingWriter>;
  /** The relay's clock, ms since the stream's start (same clock as atMs/playAtMs). */
  now(): number;
  /** How long audio is held before it is final (a clear can still cut heard audio up to playout lead ahead; caller frames can arrive late). Default 1000 ms. */
  holdMs?: number;
  /** Plaintext handed to the writer per block, ms of audio (default 1000 → 16 000 bytes). */
  blockMs?: number;
  /** Most plaintext waiting for the writer, bytes (default 30 s of audio = 480 000). Past it: the recording stops, incomplete, 'storage too slow'. */
  maxPendingBytes?: number;
  /** Runs a flush off the audio path (default setImmediate); tests pass their own. */
  schedule?(fn: () => void): void;
  log?: Logger;
}

/** Figures for logs and tests. */
export interface CallRecordingStats {
  /** Plaintext queued for the writer or being written, bytes. */
  pendingBytes: number;
  /** Samples each ring holds (both rings are this size). */
  ringSamples: number;
  /** Caller samples dropped: too late (already written), too far ahead, or at a garbage time. */
  droppedCallerSamples: number;
  /** Heard samples dropped, for the same reasons. */
  droppedHeardSamples: number;
}

/** The tap, plus figures about it. */
export interface CallRecording extends CallRecordingTap {
  stats(): CallRecordingStats;
}

/**
 * The object name of a call's recording: `YYYY/MM/DD/<CallSid>[-<leg>].cbrec`,
 * the day of `startedAt` in UTC. Characters other than letters, digits, `_`
 * and `-` in the CallSid become `_` (a name never escapes its folder); an
 * invalid date names the 1970/01/01 folder; a leg that is not an integer
 * above 1 counts as the first.
 */
export function recordingObjectName(callSid: string, leg: number, startedAt: Date): string {
  const t = startedAt instanceof Date && Number.isFinite(startedAt.getTime()) ? startedAt : new Date(0);
  const yyyy = String(t.getUTCFullYear()).padStart(4, '0');
  const mm = String(t.getUTCMonth() + 1).padStart(2, '0');
  const dd = String(t.getUTCDate()).padStart(2, '0');
  const sid = String(callSid).replace(/[^A-Za-z0-9_-]/g, '_') || '_';
  const suffix = Number.isInteger(leg) && leg > 1 ? `-${leg}` : '';
  return `${yyyy}/${mm}/${dd}/${sid}${suffix}${RECORDING_EXT}`;
}

export function createCallRecording(opts: CallRecordingOptions): CallRecording {
  return new Recording(opts);
}

type Mode =
  /** Taking audio. */
  | 'taking'
  /** Storage was too slow: no more audio is taken; what was queued is written. */
  | 'stopped'
  /** A write failed: nothing more is written; the upload was aborted. */
  | 'failed'
  /** The caller opted out: nothing is kept. */
  | 'opted_out';

/** Waiting for the writer: a block of interleaved plaintext, or a run of silence (samples per channel). */
type Entry = Uint8Array | number;

const EMPTY = new Uint8Array(0);

/** A finite number at least `min`, else the default. */
function setting(value: number | undefined, fallback: number, min: number): number {
  return typeof value === 'number' && Number.isFinite(value) && value >= min ? value : fallback;
}

function nextPow2(n: number): number {
  let p = 1024;
  while (p < n) p *= 2;
  return p;
}

class Recording implements CallRecording {
  private readonly name: string;
  private readonly log: Logger;
  private readonly holdMs: number;
  private readonly blockSamples: number;
  private readonly maxPendingBytes: number;
  private readonly maxRingSamples: number;
  private readonly schedule: (fn: () => void) => void;

  private mode: Mode = 'taking';
  private finishing = false;
  /** Where the file ends once finishing, samples. */
  private finishEnd = 0;

  private callerRing: Uint8Array;
  private heardRing: Uint8Array;
  /** Ring size, samples; position p lives at p % ringSamples. */
  private ringSamples: number;
  /** Samples before this have left the rings (queued or written). */
  private emitted = 0;
  /** End of the furthest audio ever placed, samples: ring slots at and after it hold silence. */
  private placedEnd = 0;
  private callerEnd = 0;
  private heardEnd = 0;
  private lastNowMs = 0;

  private readonly queue: Entry[] = [];
  private pendingBytes = 0;
  private flushScheduled = false;
  private pumping = false;
  private writer: RecordingWriter | undefined;
  private silence: Uint8Array = EMPTY;
  private fileDone = false;
  private fileBytes = 0;
  private stoppedAt = 0;
  private failReason = '';
  private droppedCaller = 0;
  private droppedHeard = 0;

  private settled = false;
  private resolveDone!: (info: RecordingInfo) => void;
  private readonly done: Promise<RecordingInfo>;

  constructor(private readonly opts: CallRecordingOptions) {
    this.name = recordingObjectName(opts.callSid, opts.leg ?? 1, opts.startedAt);
    this.log = opts.log ?? silentLogger;
    this.holdMs = setting(opts.holdMs, DEFAULT_HOLD_MS, 0);
    const blockMs = Math.round(setting(opts.blockMs, DEFAULT_BLOCK_MS, 1));
    this.blockSamples = blockMs * SAMPLES_PER_MS;
    this.maxPendingBytes = setting(opts.maxPendingBytes, DEFAULT_MAX_PENDING_BYTES, 0);
    this.schedule = opts.schedule ?? ((fn) => void setImmediate(fn));
    this.ringSamples = nextPow2((this.holdMs + blockMs + INITIAL_SLACK_MS) * SAMPLES_PER_MS);
    this.maxRingSamples = Math.max(this.ringSamples, 2 * nextPow2((this.holdMs + blockMs + AHEAD_MAX_MS) * SAMPLES_PER_MS));
    this.callerRing = new Uint8Array(this.ringSamples).fill(ULAW_SILENCE);
    this.heardRing = new Uint8Array(this.ringSamples).fill(ULAW_SILENCE);
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  caller(ulaw: Uint8Array, atMs: number): void {
    try {
      if (this.mode !== 'taking' || this.finishing || !(ulaw instanceof Uint8Array)) return;
      this.place(true, ulaw, 0, ulaw.length, Math.round(atMs * SAMPLES_PER_MS));
    } catch (err) {
      this.logUnexpected(err);
    }
  }

  heard(buf: Uint8Array, start: number, end: number, playAtMs: number): void {
    try {
      if (this.mode !== 'taking' || this.finishing || !(buf instanceof Uint8Array)) return;
      if (!Number.isFinite(start) || !Number.isFinite(end)) return;
      const s = Math.max(0, Math.min(buf.length, Math.floor(start)));
      const e = Math.max(s, Math.min(buf.length, Math.floor(end)));
      this.place(false, buf, s, e, Math.round(playAtMs * SAMPLES_PER_MS));
    } catch (err) {
      this.logUnexpected(err);
    }
  }

  cleared(atMs: number): void {
    try {
      if (this.mode !== 'taking' || this.finishing || !Number.isFinite(atMs)) return;
      const from = Math.max(Math.round(atMs * SAMPLES_PER_MS), this.emitted);
      if (from >= this.heardEnd) return;
      const ring = this.heardRing;
      let idx = from % this.ringSamples;
      for (let p = from; p < this.heardEnd; p++) {
        ring[idx] = ULAW_SILENCE;
        if (++idx === this.ringSamples) idx = 0;
      }
      this.heardEnd = from;
    } catch (err) {
      this.logUnexpected(err);
    }
  }

  optOut(): void {
    try {
      if (this.finishing || this.mode === 'opted_out') return;
      this.mode = 'opted_out';
      this.dropAll();
      this.log.info({ callSid: this.opts.callSid }, 'recording: the caller opted out; nothing is kept');
      this.kick();
    } catch (err) {
      this.logUnexpected(err);
    }
  }

  finish(atMs: number): Promise<RecordingInfo> {
    try {
      if (this.finishing) return this.done;
      this.finishing = true;
      if (this.mode === 'taking') {
        const nowMs = this.nowMs();
        const endMs = Number.isFinite(atMs) ? Math.min(atMs, nowMs + this.holdMs + AHEAD_MAX_MS) : nowMs;
        const end = Math.ceil(Math.max(0, endMs)) * SAMPLES_PER_MS;
        const last = Math.ceil(Math.max(this.callerEnd, this.heardEnd) / SAMPLES_PER_MS) * SAMPLES_PER_MS;
        this.finishEnd = Math.max(end, this.emitted, last);
      }
      if (this.droppedCaller > 0 || this.droppedHeard > 0) {
        this.log.info(
          { callSid: this.opts.callSid, droppedCallerMs: this.droppedCaller / SAMPLES_PER_MS, droppedHeardMs: this.droppedHeard / SAMPLES_PER_MS },
          'recording: some audio came too late or at no usable time and is not in the file',
        );
      }
      this.kick();
    } catch (err) {
      this.logUnexpected(err);
    }
    return this.done;
  }

  stats(): CallRecordingStats {
    return {
      pendingBytes: this.pendingBytes,
      ringSamples: this.ringSamples,
      droppedCallerSamples: this.droppedCaller,
      droppedHeardSamples: this.droppedHeard,
    };
  }

  // ---- the timeline (audio path) ----

  /** Copy src[s, e) into a channel at sample `pos`: what is already written is dropped, the rest placed. */
  private place(isCaller: boolean, src: Uint8Array, s: number, e: number, pos: number): void {
    let n = e - s;
    if (n <= 0) return;
    if (!Number.isFinite(pos)) return this.drop(isCaller, n);
    if (pos < this.emitted) {
      const late = Math.min(n, this.emitted - pos);
      this.drop(isCaller, late);
      s += late;
      pos += late;
      n -= late;
      if (n === 0) return;
    }
    const nowMs = this.nowMs();
    const end = pos + n;
    if (end > (nowMs + AHEAD_MAX_MS) * SAMPLES_PER_MS || !this.makeRoom(end, nowMs)) return this.drop(isCaller, n);
    const ring = isCaller ? this.callerRing : this.heardRing;
    const size = this.ringSamples;
    let idx = pos % size;
    for (let i = s; i < e; i++) {
      ring[idx] = src[i]!;
      if (++idx === size) idx = 0;
    }
    if (end > this.placedEnd) this.placedEnd = end;
    if (isCaller) {
      if (end > this.callerEnd) this.callerEnd = end;
    } else if (end > this.heardEnd) this.heardEnd = end;
    if (!this.flushScheduled && this.finalAt(nowMs) - this.emitted >= this.blockSamples) this.scheduleFlush();
  }

  private drop(isCaller: boolean, samples: number): void {
    if (isCaller) this.droppedCaller += samples;
    else this.droppedHeard += samples;
  }

  /**
   * Make the rings reach sample `end`: first by queuing final audio at once
   * (what a late flush would have done), else by growing them up to their
   * bound. False when it cannot (the audio is too far ahead).
   */
  private makeRoom(end: number, nowMs: number): boolean {
    if (end <= this.emitted + this.ringSamples) return true;
    const final = this.finalAt(nowMs);
    if (this.needed(end) > final) {
      while (this.ringSamples < this.maxRingSamples && end > this.emitted + this.ringSamples) this.grow();
      if (end <= this.emitted + this.ringSamples) return true;
      if (this.needed(end) > final) return false;
    }
    this.emit(this.needed(end), false);
    if (!this.flushScheduled) this.scheduleFlush(); // the flush starts the writer on what was queued
    return this.mode === 'taking';
  }

  /** Where the rings must start for `end` to fit, samples (whole ms). */
  private needed(end: number): number {
    return Math.ceil((end - this.ringSamples) / SAMPLES_PER_MS) * SAMPLES_PER_MS;
  }

  private grow(): void {
    const size = this.ringSamples * 2;
    const caller = new Uint8Array(size).fill(ULAW_SILENCE);
    const heard = new Uint8Array(size).fill(ULAW_SILENCE);
    const to = Math.min(this.placedEnd, this.emitted + this.ringSamples);
    for (let p = this.emitted; p < to; p++) {
      caller[p % size] = this.callerRing[p % this.ringSamples]!;
      heard[p % size] = this.heardRing[p % this.ringSamples]!;
    }
    this.callerRing = caller;
    this.heardRing = heard;
    this.ringSamples = size;
  }

  /** Where the final part of the timeline ends at `nowMs`, samples (whole ms). */
  private finalAt(nowMs: number): number {
    return Math.max(0, Math.floor(nowMs - this.holdMs)) * SAMPLES_PER_MS;
  }

  private nowMs(): number {
    try {
      const t = this.opts.now();
      if (Number.isFinite(t)) this.lastNowMs = t;
    } catch {
      // a broken clock keeps the last good reading
    }
    return this.lastNowMs;
  }

  private scheduleFlush(): void {
    this.flushScheduled = true;
    try {
      this.schedule(this.flush);
    } catch (err) {
      this.flushScheduled = false;
      this.logUnexpected(err);
    }
  }

  /** Queue the final audio in whole blocks and start the writer (runs off the audio path). */
  private readonly flush = (): void => {
    try {
      this.flushScheduled = false;
      if (this.mode === 'taking' && !this.finishing) this.emit(this.finalAt(this.nowMs()), true);
      if (this.queue.length > 0) this.kick();
    } catch (err) {
      this.logUnexpected(err);
    }
  };

  /** Queue [emitted, limit): whole blocks only, or all of it. Stops the recording when too much waits for the writer. */
  private emit(limit: number, wholeBlocks: boolean): void {
    while (this.mode === 'taking') {
      const left = limit - this.emitted;
      if (left <= 0 || (wholeBlocks && left < this.blockSamples)) return;
      const entry = this.take(limit, wholeBlocks);
      this.queue.push(entry);
      if (typeof entry === 'number') continue;
      this.pendingBytes += entry.length;
      if (this.pendingBytes > this.maxPendingBytes) this.stop();
    }
  }

  /**
   * Take the next part of [emitted, limit) (not empty) out of the rings: a
   * run of silence when nothing was placed there, else a block of at most
   * blockMs, interleaved (caller, heard) per sample.
   */
  private take(limit: number, wholeBlocks: boolean): Entry {
    const left = limit - this.emitted;
    if (this.emitted >= this.placedEnd) {
      const n = wholeBlocks ? left - (left % this.blockSamples) : left;
      this.emitted += n;
      return n;
    }
    const n = Math.min(this.blockSamples, left);
    const block = new Uint8Array(n * 2);
    const size = this.ringSamples;
    const caller = this.callerRing;
    const heard = this.heardRing;
    let idx = this.emitted % size;
    for (let i = 0; i < n; i++) {
      block[2 * i] = caller[idx]!;
      block[2 * i + 1] = heard[idx]!;
      caller[idx] = ULAW_SILENCE;
      heard[idx] = ULAW_SILENCE;
      if (++idx === size) idx = 0;
    }
    this.emitted += n;
    return block;
  }

  private stop(): void {
    this.mode = 'stopped';
    this.stoppedAt = this.emitted;
    this.releaseRings();
    this.log.warn(
      { callSid: this.opts.callSid, object: this.name, atMs: this.stoppedAt / SAMPLES_PER_MS, pendingBytes: this.pendingBytes },
      'recording stopped: storage too slow (the call goes on; the file keeps what was taken)',
    );
  }

  private dropAll(): void {
    this.queue.length = 0;
    this.pendingBytes = 0;
    this.releaseRings();
  }

  private releaseRings(): void {
    this.callerRing = EMPTY;
    this.heardRing = EMPTY;
  }

  // ---- the writer (off the audio path, one call at a time) ----

  private kick(): void {
    if (!this.pumping) void this.pump();
  }

  /** Write what is queued (and, once finishing, the rest of the timeline), then finish or abort the file. */
  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      for (;;) {
        if (this.mode === 'opted_out' || this.mode === 'failed') {
          await this.abortWriter();
          break;
        }
        const entry =
          this.queue.length > 0
            ? this.queue.shift()!
            : this.finishing && this.mode === 'taking' && this.emitted < this.finishEnd
              ? this.take(this.finishEnd, false)
              : undefined;
        if (entry !== undefined) {
          await this.write(entry);
          continue;
        }
        if (this.finishing && !this.fileDone) {
          const writer = await this.open();
          if (!this.keeping()) continue;
          const { bytes } = await writer.finish();
          this.writer = undefined;
          this.fileBytes = bytes;
          this.fileDone = true;
        }
        break;
      }
    } catch (err) {
      this.fail(err);
      await this.abortWriter();
    } finally {
      this.pumping = false;
    }
    this.settle();
  }

  /** Still writing the file (not failed, not opted out). */
  private keeping(): boolean {
    return this.mode === 'taking' || this.mode === 'stopped';
  }

  private async open(): Promise<RecordingWriter> {
    if (!this.writer) this.writer = await this.opts.openWriter(this.name);
    return this.writer;
  }

  private async write(entry: Entry): Promise<void> {
    const writer = await this.open();
    if (typeof entry !== 'number') {
      if (!this.keeping()) return;
      await writer.write(entry);
      if (this.keeping()) this.pendingBytes -= entry.length;
      return;
    }
    const blockBytes = this.blockSamples * 2;
    if (this.silence.length !== blockBytes) this.silence = new Uint8Array(blockBytes).fill(ULAW_SILENCE);
    for (let left = entry; left > 0 && this.keeping(); left -= this.blockSamples) {
      const n = Math.min(left, this.blockSamples);
      await writer.write(n === this.blockSamples ? this.silence : this.silence.subarray(0, n * 2));
    }
  }

  private fail(err: unknown): void {
    if (this.mode === 'opted_out' || this.mode === 'failed') return;
    const message = err instanceof Error ? err.message : String(err);
    this.mode = 'failed';
    this.failReason = `write failed: ${message}`;
    this.dropAll();
    this.log.warn({ callSid: this.opts.callSid, object: this.name, err: message }, 'recording write failed; the call goes on unrecorded');
  }

  private async abortWriter(): Promise<void> {
    const writer = this.writer;
    this.writer = undefined;
    if (!writer) return;
    try {
      await writer.abort();
    } catch (err) {
      this.log.warn(
        { callSid: this.opts.callSid, object: this.name, err: err instanceof Error ? err.message : String(err) },
        'recording: aborting the upload failed; a partial upload may be left for the storage to expire',
      );
    }
  }

  /** Resolve `finish()` once the outcome is settled: opted out (at once), failed, or the file finished. */
  private settle(): void {
    if (this.settled || this.pumping) return;
    const storage = this.opts.storage.kind;
    let info: RecordingInfo;
    if (this.mode === 'opted_out') {
      info = { status: 'opted_out', object: null, storage, keyId: null, durationMs: 0, bytes: 0 };
    } else if (!this.finishing) {
      return;
    } else if (this.mode === 'failed') {
      info = { status: 'incomplete', object: null, storage, keyId: null, durationMs: 0, bytes: 0, reason: this.failReason };
    } else if (!this.fileDone) {
      return;
    } else if (this.mode === 'stopped') {
      const durationMs = this.stoppedAt / SAMPLES_PER_MS;
      info = {
        status: 'incomplete',
        object: this.name,
        storage,
        keyId: this.opts.keyId,
        durationMs,
        bytes: this.fileBytes,
        reason: `storage too slow: stopped at ${Number((durationMs / 1000).toFixed(1))} s`,
      };
    } else {
      info = { status: 'complete', object: this.name, storage, keyId: this.opts.keyId, durationMs: this.emitted / SAMPLES_PER_MS, bytes: this.fileBytes };
    }
    this.settled = true;
    this.resolveDone(info);
  }

  private logUnexpected(err: unknown): void {
    try {
      this.log.error({ callSid: this.opts.callSid, err: err instanceof Error ? err.message : String(err) }, 'recording tap: unexpected error (ignored)');
    } catch {
      // logging must not break the audio path
    }
  }
}
