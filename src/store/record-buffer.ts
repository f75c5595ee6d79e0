/**
 * What both call stores hold between the call path and their database: the
 * write half of CallStore, done once. sqlite.ts and postgres.ts extend it
 * and add only their SQL (write a batch, read, claim, migrate).
 *
 *   - The write API: every write only updates memory and never waits on I/O
 *     or throws for it. Header changes a crash must lose least of (answered,
 *     started, ended, a recording's outcome, a status callback) ask for a flush on the next turn of
 *     the event loop; the rest wait for the store's flush timer.
 *   - The header cache: the `calls` columns of every call this process is
 *     writing. A change is an operation on the header: a store that reads a
 *     call's row at once (SQLite, synchronous) applies it at once; one that
 *     reads rows at flush time (PostgreSQL) keeps the operations and replays
 *     them on the row once read. Each change takes a new revision, so a
 *     header changed while a flush is in flight stays dirty for the next.
 *   - The write queue: entries (transcript lines, tool calls, latencies,
 *     call events: append-only rows) and, for a store that keeps them as
 *     rows, status callbacks. Bounded: beyond maxQueued (queued plus in
 *     flight) new ones are refused and counted (`dropped`), never silently.
 *     A failed flush puts its work back in front, sealed as first sent.
 *   - Eviction: only calls in progress stay in memory. A written header is
 *     let go when its call is over, when this process never answered it
 *     (status callbacks, late entries), or when it was answered but its
 *     stream never started within STREAMLESS_KEEP_MS.
 *   - What reads share: a record folded from its header and entries, the
 *     listing's limit (1–10 000, default 50) and a page cut from its rows.
 *
 * Personal data is sealed here, when a flush first takes it (crypto.ts):
 * entries other than latencies, and the caller and callee numbers.
 */
import type { CallEndInfo, CallEvent, RecordingInfo, ToolCallRecord, TranscriptLine, TurnLatency, Usage } from '../records.js';
import type { Logger } from '../log.js';
import type { StatusCallback } from '../twilio/webhooks.js';
import { estimateCostUsd } from './cost.js';
import { keyring, openText, sealField, sealText, type Keyring } from './crypto.js';
import type { Prices } from './prices.js';
import { checkRecording, endHeader, summaryFromRow, sumUsage, type CallHeader, type SummaryRow } from './rows.js';
import type { Awaitable, CallPage, CallParties, CallRecord, CallStore, ListOptions } from './types.js';

/** How long an answered call whose stream never started keeps its header in memory, ms. */
const STREAMLESS_KEEP_MS = 10 * 60_000;

export type EntryKind = 'transcript' | 'tool' | 'latency' | 'event';

/** One queued entry: a row of `call_entries`. */
export interface PendingEntry {
  callSid: string;
  kind: EntryKind;
  /** Its place in the call, ms since start: entries read back in this order (a late transcription lands where it was said). */
  atMs: number;
  /** Tool name or event type (not personal data): lets the outcome be computed in SQL. */
  label: string | null;
  ok: boolean | null;
  /** JSON of the entry. */
  json: string;
  /** What is written: `json`, sealed when personal; set by the first flush that takes the entry, so a retry writes it as first sent. */
  data: string | null;
  /** The store's idempotency key for the entry (PostgreSQL), likewise set once. */
  uid: string | null;
}

/** A Twilio status callback as the stores keep it. */
export interface StatusNote {
  callSid: string;
  seq: number | null;
  status: string;
  timestamp: string | null;
  durationS: number | null;
  receivedAt: string;
  from: string | null;
  to: string | null;
  /** Twilio's `Direction`: fills in a call's direction where it has none. */
  direction: string | null;
  terminal: boolean;
}

/** A change to a call's header; `false`: it changed nothing (nothing to write). */
type Op<H> = (h: H) => void | false;

interface Cached<H> {
  h: H;
  /** false until the call's row (if any) was read: changes wait in `ops` and are replayed on it. */
  loaded: boolean;
  ops: Op<H>[];
  dirty: boolean;
  /** Revision of the latest change (monotonic per store). */
  rev: number;
}

/** What one flush writes: the queue it took, and the changed headers with their revision when taken. */
export interface Batch<H> {
  entries: PendingEntry[];
  statuses: StatusNote[];
  headers: { h: H; rev: number }[];
}

export interface RecordBufferOptions {
  transcriptKey?: Buffer;
  /** Earlier keys (TRANSCRIPT_KEY_OLD): values they sealed are still read; nothing new is sealed with them. */
  transcriptKeysOld?: Buffer[];
  prices: Prices;
  log: Logger;
}

type Writes = 'answered' | 'placed' | 'started' | 'appendTranscript' | 'appendToolCall' | 'appendTurnLatency' | 'appendEvent' | 'addUsage' | 'ended' | 'setRecording' | 'recordStatus';

/** The listing's page size: `limit` within 1–10 000, default 50. */
export function listLimit(opts: ListOptions): number {
  return Math.max(1, Math.min(opts.limit ?? 50, 10_000));
}

export abstract class RecordBuffer<H extends CallHeader> implements Pick<CallStore, Writes> {
  protected readonly ring: Keyring;
  /** Headers of calls this process is writing (in progress, or changed since the last flush). */
  protected readonly live = new Map<string, Cached<H>>();
  protected closed = false;
  private pending: PendingEntry[] = [];
  private statuses: StatusNote[] = [];
  /** Entries + statuses taken by the flush in flight (they count against maxQueued). */
  private inFlight = 0;
  /** Entries and status callbacks refused because the queue was full, since start. */
  protected dropped = 0;
  private rev = Date.now() * 1000;
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;

  protected constructor(
    private readonly buffer: RecordBufferOptions,
    /** Entries plus status callbacks held in memory at most. */
    private readonly maxQueued: number,
  ) {
    this.ring = keyring(buffer.transcriptKey, buffer.transcriptKeysOld);
  }

  /** The header of a call no row holds. */
  protected abstract newHeader(callSid: string): H;
  /** A call first touched here: its header from its row when this store reads rows at once (none: a new one); undefined when it reads them at flush time (loaded). */
  protected abstract headerNow(callSid: string): H | undefined;
  /** A status callback: folded into the header (changeHeader), or queued as a row of its own (queueStatus). */
  protected abstract noteStatus(s: StatusNote): void;
  /** Write everything queued; never throws or rejects for I/O (a failed flush keeps its work). */
  abstract flush(): Awaitable<void>;

  // ── Writes from the call path: memory only ─────────────────────────────

  /** Fills in what the header lacks: a placed call's numbers, agent and direction stay as `placed` wrote them. */
  answered(callSid: string, info: CallParties): void {
    const answeredAt = new Date().toISOString();
    this.changeHeader(callSid, true, (h) => {
      h.from ??= info.from || null;
      h.to ??= info.to || null;
      h.agent ??= info.agent || null;
      h.direction ??= info.direction || null;
      h.answeredAt ??= answeredAt;
    });
  }

  placed(callSid: string, info: { from: string; to: string; agent: string }): void {
    this.changeHeader(callSid, true, (h) => {
      h.from ??= info.from || null;
      h.to ??= info.to || null;
      h.agent ??= info.agent || null;
      h.direction ??= 'outbound-api';
    });
  }

  started(callSid: string, info: { streamSid: string; audioMode: string; startedAt: Date; model?: string }): void {
    this.changeHeader(callSid, true, (h) => {
      h.streamSid = info.streamSid;
      h.audioMode = info.audioMode;
      h.model = info.model ?? null;
      h.startedAt = info.startedAt.toISOString();
      h.state = 'in_progress';
    });
  }

  appendTranscript(callSid: string, line: TranscriptLine): void {
    this.enqueue(callSid, 'transcript', line.atMs, null, null, JSON.stringify(line));
  }

  appendToolCall(callSid: string, tc: ToolCallRecord): void {
    this.enqueue(callSid, 'tool', tc.startedAtMs, tc.name, tc.ok, JSON.stringify(tc));
  }

  appendTurnLatency(callSid: string, t: TurnLatency): void {
    this.enqueue(callSid, 'latency', t.turn, null, null, JSON.stringify(t));
  }

  appendEvent(callSid: string, e: CallEvent): void {
    this.enqueue(callSid, 'event', e.atMs, e.type, null, JSON.stringify(e));
  }

  addUsage(callSid: string, u: Usage): void {
    this.changeHeader(callSid, false, (h) => {
      h.usage = sumUsage(h.usage, u);
    });
  }

  ended(callSid: string, info: CallEndInfo): void {
    this.changeHeader(callSid, true, (h) => endHeader(h, info));
  }

  /** Buffered like `ended` (written on the next turn); a malformed one is logged and dropped, never thrown at the call path. */
  setRecording(callSid: string, info: RecordingInfo): void {
    let ok: RecordingInfo;
    try {
      ok = checkRecording(info);
    } catch (err) {
      this.log.error({ err: err instanceof Error ? err.message : String(err) }, 'call store: a malformed recording outcome was not kept');
      return;
    }
    this.changeHeader(callSid, true, (h) => {
      h.recording = ok;
    });
  }

  recordStatus(v: StatusCallback): void {
    if (this.closed) return;
    this.noteStatus({
      callSid: v.callSid,
      seq: v.sequenceNumber ?? null,
      status: v.callStatus,
      timestamp: v.timestampMs !== undefined ? new Date(v.timestampMs).toISOString() : null,
      durationS: v.callDurationS ?? null,
      receivedAt: new Date().toISOString(),
      from: v.from || null,
      to: v.to || null,
      direction: v.direction || null,
      terminal: v.terminal,
    });
  }

  // ── The header cache and the queue ─────────────────────────────────────

  /** Change a call's header; write it on the next turn of the event loop when `soon`, else with the timer's flush. */
  protected changeHeader(callSid: string, soon: boolean, op: Op<H>): void {
    if (this.closed) return;
    let c = this.live.get(callSid);
    if (!c) {
      const h = this.headerNow(callSid);
      c = { h: h ?? this.newHeader(callSid), loaded: h !== undefined, ops: [], dirty: false, rev: 0 };
      this.live.set(callSid, c);
    }
    if (!c.loaded) c.ops.push(op);
    else if (op(c.h) === false) return;
    c.dirty = true;
    c.rev = ++this.rev;
    if (soon) this.soon();
  }

  /** Queue a status callback as a row of its own, to be written on the next turn of the event loop. */
  protected queueStatus(s: StatusNote): void {
    if (!this.room(1)) return;
    this.statuses.push(s);
    this.soon();
  }

  private enqueue(callSid: string, kind: EntryKind, atMs: number, label: string | null, ok: boolean | null, json: string): void {
    if (this.closed || !this.room(1)) return;
    this.pending.push({ callSid, kind, atMs, label, ok, json, data: null, uid: null });
  }

  /** Is there room for `n` more in the bounded queue? If not, count them as dropped. */
  private room(n: number): boolean {
    if (this.pending.length + this.statuses.length + this.inFlight + n <= this.maxQueued) return true;
    this.dropped += n;
    return false;
  }

  /** Entries and status callbacks waiting, including a flush in flight. */
  protected queued(): number {
    return this.pending.length + this.statuses.length + this.inFlight;
  }

  /** What a flush could not write yet: queued entries and status callbacks, changed headers. */
  protected unwritten(): number {
    return this.pending.length + this.statuses.length + [...this.live.values()].filter((c) => c.dirty).length;
  }

  /**
   * Calls about to be deleted (retention, deleteCall): drop their headers and queued entries and status
   * callbacks, so no later flush of this process writes them back. A flush in flight may still write what
   * it took: a store flushes after this and deletes after that.
   */
  protected forget(callSids: readonly string[]): void {
    const gone = new Set(callSids);
    for (const sid of gone) this.live.delete(sid);
    this.pending = this.pending.filter((e) => !gone.has(e.callSid));
    this.statuses = this.statuses.filter((s) => !gone.has(s.callSid));
  }

  /** The calls whose headers this process holds (in progress here). */
  protected liveSids(): string[] {
    return [...this.live.keys()];
  }

  // ── Scheduling ─────────────────────────────────────────────────────────

  /** Flush every `everyMs` (`tick` instead of a plain flush when the store wants a say); stopped by stopFlushTimer. */
  protected startFlushTimer(everyMs: number, tick: () => void = () => void this.flush()): void {
    this.timer = setInterval(tick, everyMs);
    this.timer.unref();
  }

  protected stopFlushTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private soon(): void {
    if (this.immediate || this.closed) return;
    this.immediate = setImmediate(() => {
      this.immediate = undefined;
      void this.flush();
    });
  }

  /** A flush is starting: the one asked for on the next turn is no longer needed. */
  protected cancelSoon(): void {
    if (this.immediate) clearImmediate(this.immediate);
    this.immediate = undefined;
  }

  // ── A flush: take, write (the store's SQL), then done or put back ──────

  /** Take the queue for a flush (it counts as in flight until done or put back); undefined when there is nothing to write (then headers are let go). */
  protected takeQueued(): Batch<H> | undefined {
    if (this.pending.length === 0 && this.statuses.length === 0 && ![...this.live.values()].some((c) => c.dirty)) {
      this.evict();
      return undefined;
    }
    const batch: Batch<H> = { entries: this.pending, statuses: this.statuses, headers: [] };
    this.pending = [];
    this.statuses = [];
    this.inFlight = batch.entries.length + batch.statuses.length;
    return batch;
  }

  /** Calls first touched here whose rows this store has yet to read (one that reads rows at flush time). */
  protected unloaded(): string[] {
    return [...this.live.entries()].filter(([, c]) => !c.loaded).map(([sid]) => sid);
  }

  /** A call's row was read (`h`; undefined: no row): its header now, with the changes made meanwhile replayed on it. */
  protected loaded(callSid: string, h: H | undefined): void {
    const c = this.live.get(callSid);
    if (!c || c.loaded) return;
    c.h = h ?? this.newHeader(callSid);
    for (const op of c.ops) op(c.h);
    c.ops = [];
    c.loaded = true;
  }

  /** The changed headers the batch writes (those read), each with its revision now (PostgreSQL writes it: the database keeps the newest). */
  protected takeHeaders(batch: Batch<H>): { h: H; rev: number }[] {
    batch.headers = [...this.live.values()].filter((c) => c.dirty && c.loaded).map((c) => ({ h: c.h, rev: c.rev }));
    return batch.headers;
  }

  /** The batch is written: its headers are clean unless changed meanwhile; finished calls are let go. */
  protected done(batch: Batch<H>): void {
    this.inFlight = 0;
    for (const { h, rev } of batch.headers) {
      const c = this.live.get(h.callSid);
      if (c && c.h === h && c.rev === rev) c.dirty = false;
    }
    this.evict();
  }

  /** The batch failed: its queue goes back in front, for the next flush (its headers are still dirty). */
  protected putBack(batch: Batch<H>): void {
    this.pending = batch.entries.concat(this.pending);
    this.statuses = batch.statuses.concat(this.statuses);
    this.inFlight = 0;
  }

  private evict(): void {
    const staleBefore = Date.now() - STREAMLESS_KEEP_MS;
    for (const [sid, c] of this.live) {
      if (c.dirty || !c.loaded) continue;
      const h = c.h;
      if (h.state !== 'in_progress' || (!h.startedAt && (!h.answeredAt || Date.parse(h.answeredAt) < staleBefore))) this.live.delete(sid);
    }
  }

  // ── What a flush writes ────────────────────────────────────────────────

  /** An entry as written: its JSON, sealed (bound to its call and kind) unless a latency; the same on every retry. */
  protected entryData(e: PendingEntry): string {
    return (e.data ??= e.kind === 'latency' ? e.json : sealText(e.json, this.ring, e.callSid, e.kind));
  }

  /**
   * A header as written: its cost estimated now at the store's prices (a call
   * in progress: its duration so far), and its numbers sealed (a number this
   * store could not open is written back as stored).
   */
  protected headerToWrite(h: H): { from: string | null; to: string | null } {
    const durationMs = h.durationMs ?? (h.startedAt ? Date.now() - Date.parse(h.startedAt) : 0);
    h.estimatedCostUsd = estimateCostUsd(h.usage, durationMs, this.buffer.prices);
    return this.sealedNumbers(h);
  }

  /** A call's caller and callee numbers as written: sealed, bound to the call and the field. */
  protected sealedNumbers(n: { callSid: string; from: string | null; to: string | null }): { from: string | null; to: string | null } {
    return { from: sealField(n.from, this.ring, n.callSid, 'from'), to: sealField(n.to, this.ring, n.callSid, 'to') };
  }

  protected get log(): Logger {
    return this.buffer.log;
  }

  // ── What reads share ───────────────────────────────────────────────────

  /** A sealed (or plain) JSON value of `callSid`'s `kind`, opened; DecryptError without the right key. */
  protected openJson(data: string, callSid: string, kind: 'transcript' | 'tool' | 'event'): unknown {
    return JSON.parse(openText(data, this.ring, callSid, kind)) as unknown;
  }

  /**
   * A call's record: its header and status, then its entries as stored
   * (ordered by kind, time, insertion) appended to `lists` (lists a row kept
   * itself, in stores that had them).
   */
  protected record(
    base: Omit<CallRecord, 'transcript' | 'toolCalls' | 'turnLatencies' | 'events'>,
    entries: { kind: EntryKind; data: string }[],
    lists: Pick<CallRecord, 'transcript' | 'toolCalls' | 'turnLatencies'> = { transcript: [], toolCalls: [], turnLatencies: [] },
  ): CallRecord {
    const rec: CallRecord = { ...base, ...lists, events: [] };
    for (const e of entries) {
      if (e.kind === 'transcript') rec.transcript.push(this.openJson(e.data, rec.callSid, 'transcript') as TranscriptLine);
      else if (e.kind === 'tool') rec.toolCalls.push(this.openJson(e.data, rec.callSid, 'tool') as ToolCallRecord);
      else if (e.kind === 'event') rec.events.push(this.openJson(e.data, rec.callSid, 'event') as CallEvent);
      else rec.turnLatencies.push(JSON.parse(e.data) as TurnLatency);
    }
    return rec;
  }

  /** A page from up to limit + 1 rows in listing order: the extra row says there is a next page, which starts after the last kept row (`key`: its sort time as the store keeps it). */
  protected page<R extends SummaryRow<string | Date>>(rows: R[], limit: number, key: (r: R) => string): CallPage {
    const more = rows.length > limit;
    if (more) rows.pop();
    const last = rows.at(-1);
    return { calls: rows.map((r) => summaryFromRow(r, this.ring)), next: more && last ? { t: key(last), sid: last.call_sid } : null };
  }
}
