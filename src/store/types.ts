/**
 * Call records: what every call leaves behind, and the store interface.
 * SQLite (src/store/sqlite.ts) implements it for one machine, PostgreSQL
 * (src/store/postgres.ts) for several instances; both keep their writes in
 * the same record buffer (src/store/record-buffer.ts).
 * Times are ISO 8601 strings (UTC, ms); `atMs` fields are ms since call start.
 */
import type { CallEndInfo, CallEvent, RecordingInfo, ToolCallRecord, TranscriptLine, TransferDecision, TurnLatency, Usage } from '../records.js';
import type { OutboundPacer, TransferStore } from '../call/ports.js';
import type { StatusCallback } from '../twilio/webhooks.js';

export type CallState = 'in_progress' | 'completed' | 'interrupted';

export interface StatusEvent {
  sequenceNumber: number | null;
  status: string;
  timestamp: string | null;
  callDurationS: number | null;
  receivedAt: string;
}

export interface CallRecord {
  callSid: string;
  streamSid: string | null;
  from: string | null;
  to: string | null;
  startedAt: string | null;
  answeredAt: string | null;
  endedAt: string | null;
  durationMs: number | null;
  /** Latest Twilio CallStatus (highest SequenceNumber). */
  status: string | null;
  statusEvents: StatusEvent[];
  endReason: string | null;
  outcome: string | null;
  audioMode: string | null;
  /** The model that served the call; the cost estimate uses its prices (src/store/prices.ts). */
  model: string | null;
  /** The agent that served the call (its file's `name`); null for a call recorded without one. */
  agent: string | null;
  /** Twilio's `Direction`: `inbound`, or `outbound-api` for a call this service placed; null when not known. */
  direction: string | null;
  /** The call's latest hand-over decision (saveTransfer), or null: kept plain (names and times, no personal data). */
  transfer: TransferDecision | null;
  state: CallState;
  transcript: TranscriptLine[];
  toolCalls: ToolCallRecord[];
  turnLatencies: TurnLatency[];
  /** What happened to the call itself: failed responses, reconnects, … in time order. */
  events: CallEvent[];
  relay: CallEndInfo['relay'] | null;
  /** What became of the call's recording; null when it was not recorded. */
  recording: RecordingInfo | null;
  protocolErrors: number;
  usage: Usage;
  estimatedCostUsd: number;
}

export interface CallSummary {
  callSid: string;
  from: string | null;
  to: string | null;
  startedAt: string | null;
  durationMs: number | null;
  status: string | null;
  state: CallState;
  outcome: string | null;
  endReason: string | null;
  estimatedCostUsd: number;
  agent: string | null;
  direction: string | null;
}

/** Who a call is, as its webhook (or the REST request that placed it) tells: written with the header, never changed once set. */
export interface CallParties {
  from?: string;
  to?: string;
  /** The agent's name. */
  agent?: string;
  /** Twilio's `Direction` (`inbound`, `outbound-api`, …). */
  direction?: string;
}

/**
 * Writes (answered … recordStatus) are called from the call path: they only
 * update memory and never wait on I/O or throw for I/O; the implementation
 * persists them in the background (record-buffer.ts: on the next event-loop
 * turn for answered/started/ended/status, on a short timer for the rest). Reads see
 * this process's own writes. Times are ISO strings; `atMs` are ms since start.
 *
 * Reads, flush, close and markInterrupted return an Awaitable: SQLite answers
 * at once, PostgreSQL (postgres.ts) after a round trip. Callers that hold a
 * CallStore always `await` them; code that holds a SqliteCallStore may not.
 */
/** A value now, or a promise of it. */
export type Awaitable<T> = T | Promise<T>;

/** Where a page of a listing ended: the last call's start time (as the store keeps it: ISO, ms or µs) and SID. */
export interface ListPosition {
  t: string;
  sid: string;
}

export interface ListOptions {
  /** Calls that began at or after this. */
  since?: Date;
  /** At most this many (1–10 000, default 50). */
  limit?: number;
  /** Only calls after this place in the order (the `next` of the page before). */
  after?: ListPosition;
}

/** A page of a listing; `next` is where the following page starts, null on the last page. */
export interface CallPage {
  calls: CallSummary[];
  next: ListPosition | null;
}

/** What the console's call list filters on (every field optional; all given must hold). */
export interface CallFilter {
  /** Began at or after / before (the listing's start time). */
  since?: Date;
  until?: Date;
  /** The one-word outcome (CallSummary.outcome), e.g. `eligible`, `no_check`. */
  outcome?: string;
  endReason?: string;
  agent?: string;
  /** Calls that made at least one call to this tool. */
  tool?: string;
  /** Calls with at least one turn slower than this (ms). */
  minTurnLatencyMs?: number;
  state?: CallState;
}

export type CallSort = 'started' | 'duration' | 'cost';

/** A page of a search: `offset`-based (the console's pages), at most `limit` (1–200). */
export interface SearchOptions {
  sort?: CallSort;
  dir?: 'asc' | 'desc';
  limit?: number;
  offset?: number;
}

export interface SearchPage {
  calls: CallSummary[];
  /** More calls match after this page. */
  hasMore: boolean;
}

/** The last hour (or `since`→now) in buckets, for the console's small charts. */
export interface CallStats {
  bucketMs: number;
  buckets: { t: string; started: number; ended: number; failed: number; turnP50Ms: number | null; turnP95Ms: number | null }[];
  /** Calls in progress by the store's account (every instance sharing it). */
  inProgress: number;
}

export interface CallStore extends TransferStore, OutboundPacer {
  /**
   * The call was answered (webhook): create its row at once, so even a call whose stream never starts is recorded.
   * Fills in only what the row does not have yet: an outbound call's numbers, agent and direction from `placed` stay.
   */
  answered(callSid: string, info: CallParties): void;
  /**
   * This service placed the call (Twilio's REST API gave its SID): its row, direction `outbound-api`, is written
   * on the next turn of the event loop, while the call rings: before the callee can answer and Twilio ask any
   * instance for the call's TwiML. Memory only here, like the other writes.
   */
  placed(callSid: string, info: { from: string; to: string; agent: string }): void;
  started(callSid: string, info: { streamSid: string; audioMode: string; startedAt: Date; model?: string }): void;
  appendTranscript(callSid: string, line: TranscriptLine): void;
  appendToolCall(callSid: string, rec: ToolCallRecord): void;
  appendTurnLatency(callSid: string, t: TurnLatency): void;
  appendEvent(callSid: string, e: CallEvent): void;
  addUsage(callSid: string, u: Usage): void;
  ended(callSid: string, info: CallEndInfo): void;
  /** What became of the call's recording (buffered like `ended`); replaces an earlier one. */
  setRecording(callSid: string, info: RecordingInfo): void;
  /** A Twilio call status callback, parsed at the edge (twilio/webhooks.ts). Retries (same SequenceNumber) are ignored. */
  recordStatus(callback: StatusCallback): void;
  /**
   * Take something once: true for the first claim of `key` (by any instance
   * sharing the store), false for every later one. Keys are free text: a
   * CallSid (the call's first stream), `CA…/2` (a later stream of the call),
   * `action:CA…/1` (an action webhook answered once).
   * Goes to the database at once (not batched); rejects when the database
   * cannot answer, and the caller decides what that means.
   */
  claim(key: string, instanceId: string): Awaitable<boolean>;
  /**
   * TransferStore: `saveTransfer` writes at once (never queued), replacing the call's earlier decision, and
   * resolves once durable; it rejects when the database cannot take it (or the store is closed or read-only).
   * `transfer` reads the database (any instance may have saved it). Both work before the call has a row.
   *
   * OutboundPacer: `reserveOutboundSlot(intervalMs)` resolves to the epoch ms at which the caller may place
   * its call; slots are spaced at least intervalMs (rounded up to whole ms) apart across every process
   * sharing the store. Rejects for an interval that is not a finite number ≥ 0, or when the store cannot answer.
   */
  /** On start-up: calls a previous process left in progress become 'interrupted'. Returns how many. */
  markInterrupted(): Awaitable<number>;
  get(callSid: string): Awaitable<CallRecord | undefined>;
  /** Newest first: by start time (started, else answered, else first written), then call SID, both descending. */
  list(opts?: ListOptions): Awaitable<CallSummary[]>;
  /**
   * The same order a page at a time: `after` the previous page's `next`. A call
   * inserted meanwhile never shifts a page (it lands before the cursor, or
   * after it in its place); a call answered but not yet streaming is placed by
   * its answer time and moves up when its stream starts (seconds later).
   */
  listPage(opts?: ListOptions): Awaitable<CallPage>;
  /**
   * Retention (store/retention.ts). `expiredCalls`: up to `limit` calls whose
   * record began (started, else answered, else first written) before `before`,
   * oldest first, each with its recording's object name (null when none).
   * `deleteCalls`: remove these calls and everything kept for them (record,
   * transcript, tool calls, turn latencies, events, status events, transfer
   * decision, claims), in one transaction; resolves how many calls were
   * removed. Rejects when the database cannot answer (or the store is read-only).
   */
  expiredCalls(before: Date, limit: number): Awaitable<{ callSid: string; recordingObject: string | null }[]>;
  deleteCalls(callSids: readonly string[]): Awaitable<number>;
  /**
   * One holder at a time across every process sharing the store: true when
   * `holder` now holds lease `name` (it was free, expired, or already
   * `holder`'s; held for `ttlMs` from now on the database's clock), false when
   * another holder's lease is still running. Rejects when the database cannot answer.
   */
  acquireLease(name: string, holder: string, ttlMs: number): Awaitable<boolean>;
  /** Give up `name` if `holder` holds it. */
  releaseLease(name: string, holder: string): Awaitable<void>;
  /**
   * The console's call list: calls matching `filter`, sorted, a page at a time (offset; never every row).
   * `callsInProgress`: calls whose state is in_progress (every instance), newest first, at most `limit`.
   * `stats`: calls started/ended/failed (end reasons error, model_unavailable, model_disconnected) and turn
   * latency p50/p95 per bucket since `since`.
   */
  searchCalls(filter: CallFilter, opts?: SearchOptions): Awaitable<SearchPage>;
  callsInProgress(limit: number): Awaitable<CallSummary[]>;
  stats(since: Date, bucketMs: number): Awaitable<CallStats>;
  /** Write everything buffered now. */
  flush(): Awaitable<void>;
  close(): Awaitable<void>;
}

export const ZERO_USAGE: Usage = {
  inputTextTokens: 0,
  inputAudioTokens: 0,
  inputCachedTokens: 0,
  outputTextTokens: 0,
  outputAudioTokens: 0,
};
