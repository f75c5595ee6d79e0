/**
 * Outbound playout to Twilio, and all barge-in state (marks, clear, what the
 * caller actually heard). Contract:
 *
 * - Audio is µ-law 8 kHz. It leaves in fixed FRAME_BYTES (20 ms) frames only;
 *   the tail of an item is padded with µ-law silence so a frame never spans
 *   two items.
 * - Pacing: a frame is sent only while the audio already sent ends less than
 *   `leadMs` ahead of the wall clock, so Twilio never holds more than about
 *   `leadMs` of our audio and a `clear` silences the caller at once.
 * - Every frame is followed by a mark; Twilio echoes it when the frame has
 *   played, so "heard" is exact to one frame (20 ms), never an estimate.
 *   Marks echoed after a `clear` are ignored (Twilio echoes pending marks on
 *   clear, which proves nothing).
 * - Allocation: one growable byte ring per call; steady state allocates
 *   only the strings the wire needs.
 */
import type { Pumpable } from './clock.js';

export const FRAME_MS = 20;
export const FRAME_BYTES = 160; // µ-law 8 kHz: 8 bytes per ms
export const BYTES_PER_MS = 8;
const ULAW_SILENCE = 0xff;
const INITIAL_FRAMES = 100; // 2 s of audio before the ring first grows
const MAX_TRACKED_ITEMS = 32;

export interface PlayoutSink {
  /**
   * Send one frame: bytes [start, start + FRAME_BYTES) of `ring`, then a mark
   * named `mark`. Return false when the socket is backpressured.
   */
  sendFrame(ring: Buffer, start: number, mark: string): boolean;
  sendClear(): void;
}

export interface FrameInfo {
  itemId: string;
  responseId: string;
  /** Position of the frame's end within its item's audio, ms. */
  itemEndMs: number;
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
}

interface PendingMark {
  name: string;
  itemId: string;
  itemEndMs: number;
}

export interface TruncatePoint {
  itemId: string;
  responseId: string;
  /** What the caller heard of this item, ms (0 if nothing was acknowledged). */
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
  private pending: PendingMark[] = [];
  private pendingHead = 0;
  private markSeq = 0;
  /** Wall time (ms) at which everything sent so far will have played. */
  private playheadEndMs = 0;
  private blocked = false;
  framesSent = 0;

  constructor(
    private readonly sink: PlayoutSink,
    private readonly leadMs: number,
    /** Called after each frame is sent (per-turn latency, transcript timing). */
    private readonly onFrame: (info: FrameInfo, nowMs: number) => void = () => {},
  ) {
    this.ring = Buffer.alloc(INITIAL_FRAMES * FRAME_BYTES);
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
    if (!seg || seg.itemId !== itemId) {
      if (seg) this.padOpenSegment(seg);
      seg = { itemId, responseId, bytes: 0 };
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
    if (seg && seg.itemId === itemId) this.padOpenSegment(seg);
  }

  /** Send every frame that is due. Returns true while whole frames remain queued. */
  pump(nowMs: number): boolean {
    while (!this.blocked && this.length >= FRAME_BYTES) {
      const ahead = this.playheadEndMs - nowMs;
      if (ahead >= this.leadMs) break;
      const seg = this.segments[0]!;
      const item = this.items.get(seg.itemId);
      const start = this.readIdx;
      this.readIdx = (this.readIdx + FRAME_BYTES) % this.ring.length;
      this.length -= FRAME_BYTES;
      seg.bytes -= FRAME_BYTES;
      if (seg.bytes <= 0) this.segments.shift();
      let itemEndMs = 0;
      if (item) {
        item.sentBytes += FRAME_BYTES;
        itemEndMs = item.sentBytes / BYTES_PER_MS;
      }
      const name = String(++this.markSeq);
      this.pending.push({ name, itemId: seg.itemId, itemEndMs });
      this.playheadEndMs = Math.max(this.playheadEndMs, nowMs) + FRAME_MS;
      this.framesSent++;
      const ok = this.sink.sendFrame(this.ring, start, name);
      this.onFrame({ itemId: seg.itemId, responseId: seg.responseId, itemEndMs }, nowMs);
      if (!ok) this.blocked = true;
    }
    return this.length >= FRAME_BYTES;
  }

  /** The socket drained: sending may resume. */
  unblock(): void {
    this.blocked = false;
  }

  /** Twilio echoed a mark: everything up to it has played. Unknown names are ignored. */
  onMark(name: string): boolean {
    for (let i = this.pendingHead; i < this.pending.length; i++) {
      if (this.pending[i]!.name !== name) continue;
      for (let j = this.pendingHead; j <= i; j++) {
        const m = this.pending[j]!;
        const item = this.items.get(m.itemId);
        if (item && m.itemEndMs > item.heardMs) item.heardMs = m.itemEndMs;
      }
      this.pendingHead = i + 1;
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
    return it && { heardMs: it.heardMs, sentMs: it.sentBytes / BYTES_PER_MS, queuedMs: it.queuedBytes / BYTES_PER_MS };
  }

  /**
   * Barge-in: if the caller is hearing our audio, send `clear`, drop all
   * queued audio and unacknowledged marks, and return where to truncate the
   * item that was playing. Returns null when nothing was playing.
   */
  interrupt(nowMs: number): TruncatePoint | null {
    if (!this.speaking) return null;
    const playingItemId =
      this.pendingHead < this.pending.length ? this.pending[this.pendingHead]!.itemId : this.segments[0]?.itemId;
    this.sink.sendClear();
    this.readIdx = 0;
    this.length = 0;
    this.segments.length = 0;
    this.pending = [];
    this.pendingHead = 0;
    this.playheadEndMs = nowMs;
    if (!playingItemId) return null;
    const item = this.items.get(playingItemId)!;
    const sentMs = item.sentBytes / BYTES_PER_MS;
    return { itemId: playingItemId, responseId: item.responseId, audioEndMs: Math.min(item.heardMs, sentMs), sentMs };
  }

  private trackItem(itemId: string, responseId: string): void {
    if (this.items.has(itemId)) return;
    this.items.set(itemId, { responseId, queuedBytes: 0, sentBytes: 0, heardMs: 0 });
    if (this.items.size > MAX_TRACKED_ITEMS) this.items.delete(this.items.keys().next().value!);
  }

  private padOpenSegment(seg: Segment): void {
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
