/**
 * Outbound playout to Twilio, and all barge-in state (marks, clear, what the
 * caller actually heard). Contract:
 *
 * - Audio is µ-law 8 kHz, held in whole 20 ms frames: the tail of an item is
 *   padded with µ-law silence so a frame never spans two items.
 * - It leaves in *chunks* of up to `chunkMs` (a whole number of frames), one
 *   media message and one mark each, and a chunk never spans two items. A
 *   chunk shorter than `chunkMs` goes out only at an item's end or when the
 *   caller would otherwise hear a gap (less than one frame left to play).
 * - Pacing: a chunk is sent only while the audio already sent ends less than
 *   the lead ahead of the wall clock, so Twilio holds at most about
 *   `lead + chunkMs` of our audio and a `clear` silences the caller at once.
 *   The lead is a fixed number of ms, or read at each pump from a
 *   `PlayoutLead` (the adaptive lead, clock.ts: it grows while the event
 *   loop runs late, so a stall shorter than the lead is no gap, and shrinks
 *   back when calm). A lead that shrinks sends nothing until the audio ahead
 *   falls below it; nothing already sent is taken back. A larger lead costs
 *   nothing at barge-in: `interrupt` clears Twilio's buffer whatever it holds.
 * - Heard position: Twilio echoes a chunk's mark when it has played. Between
 *   marks the position follows the wall clock from the last echo, along the
 *   schedule the chunks were sent on (a gap in sending is a gap in playing),
 *   capped at what was sent. Before the first echo after a start or a clear
 *   nothing counts as heard. Marks echoed after a `clear` are ignored
 *   (Twilio echoes pending marks on clear, which proves nothing).
 * - Allocation: one growable byte ring per call and one chunk-sized scratch
 *   for chunks that wrap the ring; steady state allocates only the strings
 *   the wire needs.
 */
import { FRAME_BYTES, FRAME_MS, ULAW_BYTES_PER_MS, ULAW_SILENCE } from '../dsp/format.js';
import type { Pumpable } from './clock.js';

const INITIAL_FRAMES = 100; // 2 s of audio before the ring first grows
const MAX_TRACKED_ITEMS = 32;

export interface PlayoutSink {
  /**
   * Send one chunk: bytes [start, end) of `buf` (a whole number of frames),
   * then a mark named `mark`, as one corked write. Return false when the
   * socket is backpressured. `playAtMs`: when the chunk starts playing at
   * the caller (the pump's clock): now, or when what was sent before it ends.
   */
  sendChunk(buf: Buffer, start: number, end: number, mark: string, playAtMs: number): boolean;
  sendClear(): void;
}

/** A lead that varies over time (clock.ts AdaptiveLead). */
export interface PlayoutLead {
  /** The lead at `nowMs`, ms (> 0). Called once per pump; must not allocate. */
  leadMs(nowMs: number): number;
}

export interface ChunkInfo {
  itemId: string;
  responseId: string;
  /** Position of the chunk's end within its item's audio, ms. */
  itemEndMs: number;
  /** The chunk's mark, as a number (its name is `String(mark)`; later chunks have larger ones): see `ackedMark`. */
  mark: number;
}

interface ItemState {
  responseId: string;
  queuedBytes: number;
  sentBytes: number;
  heardMs: number;
}

interface Segment {
  itemId: string;
  responseId: string;
  bytes: number; // multiple of FRAME_BYTES once closed; the last one may be open
  closed: boolean;
}

/** A chunk sent and not yet acknowledged by its mark. */
interface SentChunk {
  name: string;
  mark: number;
  itemId: string;
  itemStartMs: number;
  durationMs: number;
  sentAtMs: number;
}

export interface TruncatePoint {
  itemId: string;
  responseId: string;
  /** What the caller heard of this item, ms. */
  audioEndMs: number;
  /** Audio of this item sent to Twilio before the clear, ms. */
  sentMs: number;
}

export class Playout implements Pumpable {
  private ring: Buffer;
  private readIdx = 0;
  private length = 0;
  private readonly segments: Segment[] = [];
  private readonly items = new Map<string, ItemState>();
  private pending: SentChunk[] = [];
  private pendingHead = 0;
  /** When the last acknowledged chunk finished playing (its mark's echo), ms; undefined = no echo since the last start. */
  private ackAtMs: number | undefined;
  private markSeq = 0;
  /** The largest mark acknowledged so far (0 = none): every chunk with a mark up to it has been heard. */
  private ackedMarkSeq = 0;
  /** Wall time (ms) at which everything sent so far will have played. */
  private playheadEndMs = 0;
  private blocked = false;
  private readonly chunkBytes: number;
  private scratch: Buffer;
  framesSent = 0;
  chunksSent = 0;

  constructor(
    private readonly sink: PlayoutSink,
    /** How far ahead of the wall clock audio may be sent, ms: fixed, or read at each pump. */
    private readonly lead: number | PlayoutLead,
    /** Called after each chunk is sent (per-turn latency, transcript timing). */
    private readonly onChunk: (info: ChunkInfo, nowMs: number) => void = () => {},
    /** Largest chunk, ms (rounded down to whole frames, at least one). */
    chunkMs = FRAME_MS,
  ) {
    this.ring = Buffer.alloc(INITIAL_FRAMES * FRAME_BYTES);
    this.chunkBytes = Math.max(1, Math.floor(chunkMs / FRAME_MS)) * FRAME_BYTES;
    this.scratch = Buffer.alloc(this.chunkBytes);
  }

  /**
   * The largest mark Twilio has acknowledged (0 = none yet): the chunk with that
   * mark, and every chunk sent before it, has been heard. Marks echoed after a
   * `clear` do not count, so a chunk cut off before it played is never acknowledged.
   */
  get ackedMark(): number {
    return this.ackedMarkSeq;
  }

  /** Bytes of audio waiting to be sent (including an open partial frame). */
  get queuedBytes(): number {
    return this.length;
  }

  /** True while the caller is hearing, or about to hear, our audio. */
  get speaking(): boolean {
    return this.length > 0 || this.pendingHead < this.pending.length;
  }

  /** Append µ-law audio of one item (copied). Returns true if a full frame is now waiting. */
  enqueue(responseId: string, itemId: string, ulaw: Uint8Array): boolean {
    if (ulaw.length === 0) return this.length >= FRAME_BYTES;
    let seg = this.segments[this.segments.length - 1];
    if (!seg || seg.itemId !== itemId || seg.closed) {
      if (seg) this.closeSegment(seg);
      seg = { itemId, responseId, bytes: 0, closed: false };
      this.segments.push(seg);
      this.trackItem(itemId, responseId);
    }
    this.write(ulaw);
    seg.bytes += ulaw.length;
    this.items.get(itemId)!.queuedBytes += ulaw.length;
    return this.length >= FRAME_BYTES;
  }

  /** The item has no more audio: pad its last frame with silence so it can be sent. */
  finishItem(itemId: string): void {
    const seg = this.segments[this.segments.length - 1];
    if (seg && seg.itemId === itemId) this.closeSegment(seg);
  }

  /** Send every chunk that is due. Returns true while whole frames remain queued. */
  pump(nowMs: number): boolean {
    if (this.blocked || this.length < FRAME_BYTES) return this.length >= FRAME_BYTES;
    const leadMs = typeof this.lead === 'number' ? this.lead : this.lead.leadMs(nowMs);
    while (!this.blocked && this.length >= FRAME_BYTES) {
      const ahead = this.playheadEndMs - nowMs;
      if (ahead >= leadMs) break;
      const seg = this.segments[0]!;
      const wholeBytes = Math.floor(Math.min(seg.bytes, this.length) / FRAME_BYTES) * FRAME_BYTES;
      if (wholeBytes === 0) break; // an open partial frame: wait for more audio or finishItem
      const n = Math.min(this.chunkBytes, wholeBytes);
      // A short chunk waits for more audio while the caller still has at least a frame to hear.
      if (n < this.chunkBytes && !(seg.closed && n === seg.bytes) && ahead > FRAME_MS) break;
      this.sendChunk(seg, n, nowMs);
    }
    return this.length >= FRAME_BYTES;
  }

  private sendChunk(seg: Segment, n: number, nowMs: number): void {
    const item = this.items.get(seg.itemId);
    let buf = this.ring;
    let start = this.readIdx;
    if (start + n > this.ring.length) {
      // Wraps the ring's end: one copy into the chunk scratch.
      const first = this.ring.length - start;
      this.ring.copy(this.scratch, 0, start, this.ring.length);
      this.ring.copy(this.scratch, first, 0, n - first);
      buf = this.scratch;
      start = 0;
    }
    this.readIdx = (this.readIdx + n) % this.ring.length;
    this.length -= n;
    seg.bytes -= n;
    if (seg.bytes <= 0) this.segments.shift();
    const itemStartMs = item ? item.sentBytes / ULAW_BYTES_PER_MS : 0;
    if (item) item.sentBytes += n;
    const durationMs = n / ULAW_BYTES_PER_MS;
    const mark = ++this.markSeq;
    const name = String(mark);
    this.pending.push({ name, mark, itemId: seg.itemId, itemStartMs, durationMs, sentAtMs: nowMs });
    const playAtMs = Math.max(this.playheadEndMs, nowMs);
    this.playheadEndMs = playAtMs + durationMs;
    this.framesSent += n / FRAME_BYTES;
    this.chunksSent++;
    const ok = this.sink.sendChunk(buf, start, start + n, name, playAtMs);
    this.onChunk({ itemId: seg.itemId, responseId: seg.responseId, itemEndMs: itemStartMs + durationMs, mark }, nowMs);
    if (!ok) this.blocked = true;
  }

  /** The socket drained: sending may resume. */
  unblock(): void {
    this.blocked = false;
  }

  /** Twilio echoed a mark at `nowMs`: everything up to it has played (`ackedMark`). Unknown names are ignored. */
  onMark(name: string, nowMs: number): boolean {
    for (let i = this.pendingHead; i < this.pending.length; i++) {
      if (this.pending[i]!.name !== name) continue;
      for (let j = this.pendingHead; j <= i; j++) {
        const c = this.pending[j]!;
        this.heard(c.itemId, c.itemStartMs + c.durationMs);
      }
      this.pendingHead = i + 1;
      this.ackAtMs = nowMs;
      this.ackedMarkSeq = this.pending[i]!.mark;
      if (this.pendingHead > 256) {
        this.pending = this.pending.slice(this.pendingHead);
        this.pendingHead = 0;
      }
      return true;
    }
    return false;
  }

  /** Heard / sent figures of an item, ms. */
  item(itemId: string): { heardMs: number; sentMs: number; queuedMs: number } | undefined {
    const it = this.items.get(itemId);
    return it && { heardMs: it.heardMs, sentMs: it.sentBytes / ULAW_BYTES_PER_MS, queuedMs: it.queuedBytes / ULAW_BYTES_PER_MS };
  }

  /**
   * Barge-in: if the caller is hearing our audio, send `clear`, drop all
   * queued audio and unacknowledged marks, and return where to truncate the
   * item that was playing. Returns null when nothing was playing.
   */
  interrupt(nowMs: number): TruncatePoint | null {
    if (!this.speaking) return null;
    const playingItemId = this.advanceHeard(nowMs) ?? this.segments[0]?.itemId;
    this.sink.sendClear();
    this.readIdx = 0;
    this.length = 0;
    this.segments.length = 0;
    this.pending = [];
    this.pendingHead = 0;
    this.ackAtMs = undefined;
    this.playheadEndMs = nowMs;
    if (!playingItemId) return null;
    const item = this.items.get(playingItemId);
    if (!item) return null;
    const sentMs = item.sentBytes / ULAW_BYTES_PER_MS;
    return { itemId: playingItemId, responseId: item.responseId, audioEndMs: Math.min(item.heardMs, sentMs), sentMs };
  }

  /**
   * Count as heard what the schedule says has played since the last echo,
   * and return the item playing now (undefined if nothing unacknowledged).
   */
  private advanceHeard(nowMs: number): string | undefined {
    const first = this.pending[this.pendingHead];
    if (!first) return undefined;
    if (this.ackAtMs === undefined) return first.itemId; // no echo yet since playback began: nothing provably heard
    let t = this.ackAtMs;
    for (let i = this.pendingHead; i < this.pending.length; i++) {
      const c = this.pending[i]!;
      const start = Math.max(t, c.sentAtMs);
      const played = Math.max(0, Math.min(c.durationMs, nowMs - start));
      this.heard(c.itemId, c.itemStartMs + played);
      if (played < c.durationMs) return c.itemId;
      t = start + c.durationMs;
    }
    return this.pending[this.pending.length - 1]!.itemId;
  }

  private heard(itemId: string, ms: number): void {
    const item = this.items.get(itemId);
    if (item && ms > item.heardMs) item.heardMs = ms;
  }

  private trackItem(itemId: string, responseId: string): void {
    if (this.items.has(itemId)) return;
    this.items.set(itemId, { responseId, queuedBytes: 0, sentBytes: 0, heardMs: 0 });
    if (this.items.size > MAX_TRACKED_ITEMS) this.items.delete(this.items.keys().next().value!);
  }

  private closeSegment(seg: Segment): void {
    seg.closed = true;
    const rem = seg.bytes % FRAME_BYTES;
    if (rem === 0) return;
    const pad = FRAME_BYTES - rem;
    this.ensureCapacity(pad);
    for (let i = 0; i < pad; i++) this.ring[(this.readIdx + this.length + i) % this.ring.length] = ULAW_SILENCE;
    this.length += pad;
    seg.bytes += pad;
  }

  private write(src: Uint8Array): void {
    this.ensureCapacity(src.length);
    const cap = this.ring.length;
    const w = (this.readIdx + this.length) % cap;
    const first = Math.min(src.length, cap - w);
    this.ring.set(src.subarray(0, first), w);
    if (first < src.length) this.ring.set(src.subarray(first), 0);
    this.length += src.length;
  }

  /** Grow to a multiple of FRAME_BYTES so frames never wrap around the ring's end. */
  private ensureCapacity(extra: number): void {
    if (this.length + extra <= this.ring.length) return;
    let cap = this.ring.length * 2;
    while (cap < this.length + extra) cap *= 2;
    const next = Buffer.alloc(cap);
    const first = Math.min(this.length, this.ring.length - this.readIdx);
    this.ring.copy(next, 0, this.readIdx, this.readIdx + first);
    if (first < this.length) this.ring.copy(next, first, 0, this.length - first);
    this.ring = next;
    this.readIdx = 0;
  }
}
