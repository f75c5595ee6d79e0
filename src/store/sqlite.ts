/**
 * The embedded call store: SQLite, WAL, one real file. The driver is
 * node:sqlite, or better-sqlite3 on a Node without it (sqlite-driver.ts);
 * both write the same file, so a store moves between Node versions as it is.
 *
 * Writes never block audio. Both drivers are synchronous, so nothing on the
 * call path touches the database: every CallStore write only updates a small
 * in-memory call header or pushes an entry onto a queue (record-buffer.ts,
 * shared with the PostgreSQL store). One flush writes all of it in a single
 * transaction:
 *   - on a timer every FLUSH_MS (transcript lines, tool calls, latencies, usage);
 *   - on the next turn of the event loop (setImmediate) after a call is
 *     answered, starts or ends, or a status callback arrives — what a crash
 *     must lose least of.
 * Transcript lines, tool calls and latencies are append-only rows
 * (`call_entries`), so a flush costs what arrived since the last one, never
 * the size of the calls in progress; the `calls` row holds the header only.
 *
 * Crash window (process killed, e.g. kill -9): entries queued since the last
 * flush — at most FLUSH_MS of transcript, tool and latency entries and usage
 * of calls in progress — and header changes made in the current event-loop
 * turn. Everything flushed before survives; the next process marks the call
 * 'interrupted' (markInterrupted). With synchronous=NORMAL a committed flush
 * survives a process crash; an OS crash or power loss may also lose the last
 * commits before the WAL was synced (SQLite's documented WAL trade-off).
 *
 * One writing process per database file: start-up marks every call left in
 * progress as interrupted, so processes must not share a file (run one file
 * per process, or the PostgreSQL store for scale-out).
 *
 * Personal data — transcripts, tool calls, call events, caller and callee
 * numbers — is sealed with AES-256-GCM per value, bound to its call and
 * field, when a key is configured (src/store/crypto.ts); older keys can be
 * given for reading. Values written before a key was set stay plain and
 * read as they are. Without the right key, `get` throws DecryptError and
 * `list` shows a sealed number as ENCRYPTED_NUMBER.
 *
 * Call control and outbound calls: a transfer decision (saveTransfer) is
 * one row of `call_transfers`, written at once outside the queue and
 * committed before the promise resolves, so the `<Connect action>` webhook
 * finds it; the header's agent and direction are filled in once (`placed`,
 * then `answered`) and never overwritten. The outbound pacer's slots live in
 * this process (one process per file).
 *
 * A header written from a stale copy never undoes a call's stream: a header
 * whose stream has not started (a webhook's, e.g. a retried one) does not
 * overwrite a row whose stream has; it only fills in the webhook's own
 * fields (numbers, answered time) where the row has none.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { ToolCallRecord, TranscriptLine, TransferDecision, TurnLatency } from '../records.js';
import { estimateCostUsd } from './cost.js';
import { openField, type Keyring } from './crypto.js';
import { listLimit, RecordBuffer, type EntryKind, type RecordBufferOptions, type StatusNote } from './record-buffer.js';
import { openSqlite, type SqlStatement, type SqliteDb, type SqlValue } from './sqlite-driver.js';
import {
  checkTransfer,
  claimRanges,
  emptyHeader,
  ENCRYPTED_NUMBER,
  headerFromRow,
  leaseTtlMs,
  OUTCOME_SQL,
  recordingToJson,
  retentionLimit,
  slotIntervalMs,
  transferFromJson,
  transferToJson,
  type CallHeader,
  type CallRow,
  type SummaryRow,
} from './rows.js';
import {
  checkInProgressLimit,
  checkSearch,
  FAILED_END_REASONS,
  foldStats,
  MAX_STATS_LATENCIES,
  searchOrder,
  searchWhere,
  START_SQL,
  STATS_LOOKBACK_MS,
  statsWindow,
  SUMMARY_COLUMNS_SQL,
} from './search.js';
import type { CallFilter, CallPage, CallRecord, CallStats, CallStore, CallSummary, ListOptions, SearchOptions, SearchPage, StatusEvent } from './types.js';

export { ENCRYPTED_NUMBER, estimateCostUsd };

/** Timer flush period: the crash window for transcript/tool/latency entries, ms. */
export const FLUSH_MS = 250;
/** Entries held while the database refuses writes (disk full…); beyond this new ones are refused, counted and logged. */
const MAX_QUEUED = 100_000;
/** How long a write waits for a lock before giving up until the next flush, ms (bounds an event-loop stall). */
const WRITE_BUSY_MS = 100;

/** The driver is named in the log once per process, by the first store that writes. */
let driverLogged = false;

/** Schema migrations, applied in order; PRAGMA user_version holds how many ran. */
const MIGRATIONS: string[] = [
  // 1: one row per call. The JSON list columns (transcript, tool_calls,
  // turn_latencies) are only read now, for rows written before migration 2.
  `CREATE TABLE calls (
     call_sid        TEXT PRIMARY KEY,
     stream_sid      TEXT,
     from_number     TEXT,
     to_number       TEXT,
     started_at      TEXT,
     answered_at     TEXT,
     ended_at        TEXT,
     duration_ms     INTEGER,
     status          TEXT,
     status_events   TEXT NOT NULL DEFAULT '[]',
     end_reason      TEXT,
     outcome         TEXT,
     audio_mode      TEXT,
     state           TEXT NOT NULL DEFAULT 'in_progress',
     transcript      TEXT NOT NULL DEFAULT '[]',
     tool_calls      TEXT NOT NULL DEFAULT '[]',
     turn_latencies  TEXT NOT NULL DEFAULT '[]',
     relay           TEXT,
     protocol_errors INTEGER NOT NULL DEFAULT 0,
     usage           TEXT NOT NULL DEFAULT '{}',
     cost_usd        REAL NOT NULL DEFAULT 0,
     created_at      TEXT NOT NULL,
     updated_at      TEXT NOT NULL
   );
   CREATE INDEX calls_by_time ON calls (coalesce(started_at, answered_at, created_at) DESC);
   CREATE INDEX calls_in_progress ON calls (state) WHERE state = 'in_progress';`,
  // 2: append-only entries, so a flush writes only what is new.
  `CREATE TABLE call_entries (
     id       INTEGER PRIMARY KEY,
     call_sid TEXT NOT NULL,
     kind     TEXT NOT NULL CHECK (kind IN ('transcript', 'tool', 'latency')),
     at_ms    REAL NOT NULL,
     label    TEXT,
     ok       INTEGER,
     data     TEXT NOT NULL
   );
   CREATE INDEX call_entries_by_call ON call_entries (call_sid, kind, at_ms, id);`,
  // 3: call events (failed responses, reconnects, …) join the entries: the kind list is in a CHECK, so rebuild.
  `CREATE TABLE call_entries_3 (
     id       INTEGER PRIMARY KEY,
     call_sid TEXT NOT NULL,
     kind     TEXT NOT NULL CHECK (kind IN ('transcript', 'tool', 'latency', 'event')),
     at_ms    REAL NOT NULL,
     label    TEXT,
     ok       INTEGER,
     data     TEXT NOT NULL
   );
   INSERT INTO call_entries_3 SELECT id, call_sid, kind, at_ms, label, ok, data FROM call_entries;
   DROP TABLE call_entries;
   ALTER TABLE call_entries_3 RENAME TO call_entries;
   CREATE INDEX call_entries_by_call ON call_entries (call_sid, kind, at_ms, id);
   ALTER TABLE calls ADD COLUMN model TEXT;`,
  // 4: which stream took each call (single use of its admission token).
  `CREATE TABLE call_claims (
     call_sid    TEXT PRIMARY KEY,
     instance_id TEXT NOT NULL,
     claimed_at  TEXT NOT NULL
   );`,
  // 5: call control and outbound calls: the agent and direction of each call, and its latest transfer
  // decision (a row of its own, written at once, apart from the batched header). Claim keys are free text
  // (a CallSid, `CA…/2` for a later stream, `action:CA…/1` for an action webhook): no change needed there.
  `ALTER TABLE calls ADD COLUMN agent TEXT;
   ALTER TABLE calls ADD COLUMN direction TEXT;
   CREATE TABLE call_transfers (
     call_sid TEXT PRIMARY KEY,
     decision TEXT NOT NULL,
     saved_at TEXT NOT NULL
   );`,
  // 6: recordings and retention. Each call's recording outcome (plain JSON: no personal data) and its object name
  // apart, so a purge finds it without parsing; leases (one row each, times in epoch ms of this machine's clock,
  // which every process sharing the file reads). expiredCalls walks calls_by_time (a DESC index scans either way);
  // deleteCalls finds claim keys by the primary key's ranges, everything else by call_sid.
  `ALTER TABLE calls ADD COLUMN recording TEXT;
   ALTER TABLE calls ADD COLUMN recording_object TEXT;
   CREATE TABLE store_leases (
     name       TEXT PRIMARY KEY,
     holder     TEXT NOT NULL,
     expires_ms INTEGER NOT NULL
   );`,
  // 7: the console's queries (search.ts): stats count calls ended in the last hour, by an index on the end time (a
  // range, not a scan of every call); the tool filter finds the few tool entries among the transcript lines by a
  // small partial index. The rest walks calls_by_time or the in_progress index, or sorts what the filters leave.
  `CREATE INDEX calls_by_end ON calls (ended_at) WHERE ended_at IS NOT NULL;
   CREATE INDEX call_entries_tools ON call_entries (label, call_sid) WHERE kind = 'tool';`,
];

/** An ISO time column as epoch ms (a whole number), in SQL. */
const EPOCH_MS = (t: string) => `CAST(round((julianday(${t}) - 2440587.5) * 86400000) AS INTEGER)`;

/** Now on the database's clock (SQLite's: this machine's), epoch ms, as SQL. */
const NOW_MS = `CAST(round((julianday('now') - 2440587.5) * 86400000) AS INTEGER)`;

export interface SqliteStoreOptions extends RecordBufferOptions {
  path: string;
  /** Open an existing store for reading (CLI): the file must exist, no flush timer. */
  readOnly?: boolean;
}

/** A call's record without its lists: what the call path keeps in memory (status too: it lives in the row here). */
type Header = CallHeader & Pick<CallRecord, 'status' | 'statusEvents'>;

interface Row extends CallRow<string> {
  status_events: string;
  transcript: string;
  tool_calls: string;
  turn_latencies: string;
}

export class SqliteCallStore extends RecordBuffer<Header> implements CallStore {
  private readonly db: SqliteDb;
  private readonly sql: {
    upsertHeader: SqlStatement;
    webhookFields: SqlStatement;
    outcome: SqlStatement;
    stub: SqlStatement;
    insertEntry: SqlStatement;
    header: SqlStatement;
    entries: SqlStatement;
    claim: SqlStatement;
    saveTransfer: SqlStatement;
    transfer: SqlStatement;
    expired: SqlStatement;
    deleteEntries: SqlStatement;
    deleteTransfer: SqlStatement;
    deleteClaim: SqlStatement;
    deleteClaimRange: SqlStatement;
    deleteCall: SqlStatement;
    acquireLease: SqlStatement;
    releaseLease: SqlStatement;
  };
  /** The pacer's next free slot, epoch ms (this process only: one process writes a file). */
  private nextSlotMs = 0;

  constructor(private readonly opts: SqliteStoreOptions) {
    super(opts, MAX_QUEUED);
    if (opts.path !== ':memory:' && !opts.readOnly) mkdirSync(dirname(opts.path), { recursive: true });
    this.db = openSqlite(opts.path, { fileMustExist: opts.readOnly === true });
    if (!opts.readOnly && !driverLogged) {
      driverLogged = true;
      const d = this.db.driver;
      opts.log.info({ sqliteDriver: d.name, sqliteVersion: d.sqliteVersion }, `call store: SQLite ${d.sqliteVersion} through ${d.name} (${d.why})`);
    }
    this.db.pragma('busy_timeout = 2000');
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.migrate();
    this.sql = {
      upsertHeader: this.db.prepare(`
        INSERT INTO calls (call_sid, stream_sid, from_number, to_number, started_at, answered_at, ended_at, duration_ms,
          status, status_events, end_reason, outcome, audio_mode, model, agent, direction, state, relay, protocol_errors, usage,
          cost_usd, recording, recording_object, created_at, updated_at)
        VALUES (@call_sid, @stream_sid, @from_number, @to_number, @started_at, @answered_at, @ended_at, @duration_ms,
          @status, @status_events, @end_reason, @outcome, @audio_mode, @model, @agent, @direction, @state, @relay, @protocol_errors,
          @usage, @cost_usd, @recording, @recording_object, @now, @now)
        ON CONFLICT (call_sid) DO UPDATE SET stream_sid = excluded.stream_sid, from_number = excluded.from_number,
          to_number = excluded.to_number, started_at = excluded.started_at, answered_at = excluded.answered_at,
          ended_at = excluded.ended_at, duration_ms = excluded.duration_ms, status = excluded.status,
          status_events = excluded.status_events, end_reason = excluded.end_reason, outcome = excluded.outcome,
          audio_mode = excluded.audio_mode, model = excluded.model, agent = coalesce(calls.agent, excluded.agent),
          direction = coalesce(calls.direction, excluded.direction), state = excluded.state, relay = excluded.relay,
          protocol_errors = excluded.protocol_errors, usage = excluded.usage, cost_usd = excluded.cost_usd,
          recording = coalesce(excluded.recording, calls.recording),
          recording_object = CASE WHEN excluded.recording IS NULL THEN calls.recording_object ELSE excluded.recording_object END,
          updated_at = excluded.updated_at
        WHERE calls.started_at IS NULL OR excluded.started_at IS NOT NULL`),
      // What a header the upsert refused (no stream, the row has one) may still add: the webhook's own fields.
      webhookFields: this.db.prepare(`
        UPDATE calls SET from_number = coalesce(from_number, @from_number), to_number = coalesce(to_number, @to_number),
          answered_at = coalesce(answered_at, @answered_at), agent = coalesce(agent, @agent),
          direction = coalesce(direction, @direction), updated_at = @now
        WHERE call_sid = @call_sid`),
      outcome: this.db.prepare(`UPDATE calls AS c SET outcome = ${OUTCOME_SQL} WHERE c.call_sid = ? AND c.state = 'completed'`),
      stub: this.db.prepare('INSERT OR IGNORE INTO calls (call_sid, created_at, updated_at) VALUES (?, ?, ?)'),
      insertEntry: this.db.prepare('INSERT INTO call_entries (call_sid, kind, at_ms, label, ok, data) VALUES (?, ?, ?, ?, ?, ?)'),
      header: this.db.prepare('SELECT * FROM calls WHERE call_sid = ?'),
      entries: this.db.prepare('SELECT kind, data FROM call_entries WHERE call_sid = ? ORDER BY kind, at_ms, id'),
      claim: this.db.prepare('INSERT OR IGNORE INTO call_claims (call_sid, instance_id, claimed_at) VALUES (?, ?, ?)'),
      saveTransfer: this.db.prepare(`
        INSERT INTO call_transfers (call_sid, decision, saved_at) VALUES (?, ?, ?)
        ON CONFLICT (call_sid) DO UPDATE SET decision = excluded.decision, saved_at = excluded.saved_at`),
      transfer: this.db.prepare('SELECT decision FROM call_transfers WHERE call_sid = ?'),
      expired: this.db.prepare(`
        SELECT call_sid, recording_object FROM calls WHERE coalesce(started_at, answered_at, created_at) < ?
        ORDER BY coalesce(started_at, answered_at, created_at) LIMIT ?`),
      deleteEntries: this.db.prepare('DELETE FROM call_entries WHERE call_sid = ?'),
      deleteTransfer: this.db.prepare('DELETE FROM call_transfers WHERE call_sid = ?'),
      deleteClaim: this.db.prepare('DELETE FROM call_claims WHERE call_sid = ?'),
      deleteClaimRange: this.db.prepare('DELETE FROM call_claims WHERE call_sid >= ? AND call_sid < ?'),
      deleteCall: this.db.prepare('DELETE FROM calls WHERE call_sid = ?'),
      // Taken when free, expired, or already the holder's; one statement, so two processes cannot both win.
      acquireLease: this.db.prepare(`
        INSERT INTO store_leases (name, holder, expires_ms) VALUES (?, ?, ${NOW_MS} + ?)
        ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms
        WHERE store_leases.holder = excluded.holder OR store_leases.expires_ms <= ${NOW_MS}`),
      releaseLease: this.db.prepare('DELETE FROM store_leases WHERE name = ? AND holder = ?'),
    };
    if (!opts.readOnly) {
      // Start-up work above may wait for a lock; the call path must not wait long.
      this.db.pragma(`busy_timeout = ${WRITE_BUSY_MS}`);
      this.startFlushTimer(FLUSH_MS);
    }
  }

  // ── The record buffer's hooks ──────────────────────────────────────────

  protected newHeader(callSid: string): Header {
    return { ...emptyHeader(callSid), status: null, statusEvents: [] };
  }

  /** Read at once: a status callback or usage after the call ended finds its row. */
  protected headerNow(callSid: string): Header {
    const row = this.sql.header.get(callSid) as Row | undefined;
    // A number this process cannot open is kept sealed as stored (sealField writes it back as it is).
    return row ? rowHeader(row, this.ring, (stored) => stored) : this.newHeader(callSid);
  }

  /** Status callbacks live in the row here: folded into the header, in order; a retry (same SequenceNumber) changes nothing. */
  protected noteStatus(s: StatusNote): void {
    this.changeHeader(s.callSid, true, (h) => foldStatus(h, s));
  }

  /** One row insert, at once (a unique key decides); throws when the file cannot be written (a read-only store). */
  claim(callSid: string, instanceId: string): boolean {
    if (this.opts.readOnly || this.closed) throw new Error('call store: a read-only or closed store cannot claim calls');
    return Number(this.sql.claim.run(callSid, instanceId, new Date().toISOString()).changes) === 1;
  }

  /**
   * One row upsert, at once (outside the write queue), committed before this resolves: it survives a crash of
   * the process (WAL, synchronous=NORMAL; see the head comment for power loss). Rejects when the file cannot
   * take it (locked past the busy timeout, read-only, closed) or the decision is malformed.
   */
  async saveTransfer(callSid: string, decision: TransferDecision): Promise<void> {
    if (this.opts.readOnly || this.closed) throw new Error('call store: a read-only or closed store cannot save a transfer');
    this.sql.saveTransfer.run(callSid, transferToJson(checkTransfer(decision)), new Date().toISOString());
  }

  async transfer(callSid: string): Promise<TransferDecision | undefined> {
    if (this.closed) throw new Error('call store: closed');
    return this.readTransfer(callSid) ?? undefined;
  }

  /** Slots in this process (one process per file): the next is the later of now and the last one plus its interval. */
  async reserveOutboundSlot(intervalMs: number): Promise<number> {
    const interval = slotIntervalMs(intervalMs);
    if (this.closed) throw new Error('call store: closed');
    const slot = Math.max(this.nextSlotMs, Date.now());
    this.nextSlotMs = slot + interval;
    return slot;
  }

  // ── Retention (store/retention.ts) ─────────────────────────────────────

  /** Oldest first, by the listing's start time; calls still 'in_progress' too (an abandoned row: see docs/postgres.md, Retention). */
  async expiredCalls(before: Date, limit: number): Promise<{ callSid: string; recordingObject: string | null }[]> {
    if (this.closed) throw new Error('call store: closed');
    this.flush();
    const rows = this.sql.expired.all(before.toISOString(), retentionLimit(limit)) as { call_sid: string; recording_object: string | null }[];
    return rows.map((r) => ({ callSid: r.call_sid, recordingObject: r.recording_object }));
  }

  /** One transaction: entries, transfer decision, claims (`<sid>`, `<sid>/…`, `action:<sid>/…`, `dial:<sid>/…`) and the row (status events live in it). */
  async deleteCalls(callSids: readonly string[]): Promise<number> {
    if (this.opts.readOnly || this.closed) throw new Error('call store: a read-only or closed store cannot delete calls');
    if (callSids.length === 0) return 0;
    this.forget(callSids);
    this.flush();
    const ranges = claimRanges(callSids);
    let removed = 0;
    this.db.transaction(() => {
      for (const sid of callSids) {
        this.sql.deleteEntries.run(sid);
        this.sql.deleteTransfer.run(sid);
        this.sql.deleteClaim.run(sid);
        removed += Number(this.sql.deleteCall.run(sid).changes);
      }
      for (let i = 0; i < ranges.lo.length; i++) this.sql.deleteClaimRange.run(ranges.lo[i]!, ranges.hi[i]!);
    });
    return removed;
  }

  async acquireLease(name: string, holder: string, ttlMs: number): Promise<boolean> {
    if (this.opts.readOnly || this.closed) throw new Error('call store: a read-only or closed store cannot hold a lease');
    return Number(this.sql.acquireLease.run(name, holder, leaseTtlMs(ttlMs)).changes) === 1;
  }

  async releaseLease(name: string, holder: string): Promise<void> {
    if (this.opts.readOnly || this.closed) return;
    this.sql.releaseLease.run(name, holder);
  }

  markInterrupted(): number {
    this.flush();
    const r = this.db
      .prepare(`UPDATE calls SET state = 'interrupted', end_reason = coalesce(end_reason, 'process_exit'), updated_at = ?
                WHERE state = 'in_progress' AND call_sid NOT IN (SELECT value FROM json_each(?))`)
      .run(new Date().toISOString(), JSON.stringify(this.liveSids()));
    return r.changes;
  }

  // ── Reads (flush first, so this process reads its own writes) ─────────

  get(callSid: string): CallRecord | undefined {
    this.flush();
    const row = this.sql.header.get(callSid) as Row | undefined;
    if (!row) return undefined;
    // Rows written before migration 2 keep their lists in the row itself (sealed, if at all, as enc1).
    const base = { ...rowHeader(row, this.ring), transfer: this.readTransfer(callSid) };
    return this.record(base, this.sql.entries.all(callSid) as { kind: EntryKind; data: string }[], {
      transcript: this.openJson(row.transcript, callSid, 'transcript') as TranscriptLine[],
      toolCalls: this.openJson(row.tool_calls, callSid, 'tool') as ToolCallRecord[],
      turnLatencies: JSON.parse(row.turn_latencies) as TurnLatency[],
    });
  }

  list(opts: ListOptions = {}): CallSummary[] {
    return this.listPage(opts).calls;
  }

  listPage(opts: ListOptions = {}): CallPage {
    this.flush();
    const limit = listLimit(opts);
    const since = opts.since?.toISOString() ?? '';
    // Past the end of the order (every ISO time sorts below '~'): no cursor means from the newest.
    const after = opts.after ?? { t: '~', sid: '' };
    const rows = this.db
      .prepare(`SELECT call_sid, from_number, to_number, coalesce(started_at, answered_at, created_at) AS started_at, duration_ms,
                       status, state, outcome, end_reason, cost_usd, agent, direction
                FROM calls WHERE coalesce(started_at, answered_at, created_at) >= ?
                  AND (coalesce(started_at, answered_at, created_at) < ? OR (coalesce(started_at, answered_at, created_at) = ? AND call_sid < ?))
                ORDER BY coalesce(started_at, answered_at, created_at) DESC, call_sid DESC LIMIT ?`)
      .all(since, after.t, after.t, after.sid, limit + 1) as SummaryRow<string>[];
    return this.page(rows, limit, (r) => r.started_at);
  }

  // ── The console's queries (search.ts; flush first, like list) ──────────

  searchCalls(filter: CallFilter, opts: SearchOptions = {}): SearchPage {
    const s = checkSearch(opts);
    const params: SqlValue[] = [];
    const where = searchWhere(filter, 'sqlite', (v) => (params.push(v as SqlValue), '?'));
    this.flush();
    const rows = this.db
      .prepare(`SELECT ${SUMMARY_COLUMNS_SQL} FROM calls c WHERE ${where} ORDER BY ${searchOrder(s)} LIMIT ? OFFSET ?`)
      .all(...params, s.limit + 1, s.offset) as SummaryRow<string>[];
    const page = this.page(rows, s.limit, (r) => r.started_at);
    return { calls: page.calls, hasMore: page.next !== null };
  }

  callsInProgress(limit: number): CallSummary[] {
    const n = checkInProgressLimit(limit);
    this.flush();
    const rows = this.db
      .prepare(`SELECT ${SUMMARY_COLUMNS_SQL} FROM calls c WHERE c.state = 'in_progress' ORDER BY ${START_SQL} DESC, c.call_sid DESC LIMIT ?`)
      .all(n) as SummaryRow<string>[];
    return this.page(rows, n, (r) => r.started_at).calls;
  }

  stats(since: Date, bucketMs: number): CallStats {
    const w = statsWindow(since, bucketMs, Date.now());
    this.flush();
    const from = since.toISOString();
    const bucket = (t: string) => `((${EPOCH_MS(t)} - ${w.sinceMs}) / ${bucketMs})`;
    const started = this.db
      .prepare(`SELECT ${bucket(START_SQL)} AS b, count(*) AS n FROM calls c WHERE ${START_SQL} >= ? GROUP BY b`)
      .all(from) as { b: number; n: number }[];
    const failed = FAILED_END_REASONS.map((r) => `'${r}'`).join(', ');
    const ended = this.db
      .prepare(`SELECT ${bucket('c.ended_at')} AS b, count(*) AS n, sum(CASE WHEN c.end_reason IN (${failed}) THEN 1 ELSE 0 END) AS failed
                FROM calls c WHERE c.ended_at IS NOT NULL AND c.ended_at >= ? GROUP BY b`)
      .all(from) as { b: number; n: number; failed: number }[];
    const latencies = this.db
      .prepare(`SELECT ${EPOCH_MS(START_SQL)} AS callStartMs, e.data AS data FROM calls c
                JOIN call_entries e ON e.call_sid = c.call_sid AND e.kind = 'latency'
                WHERE ${START_SQL} >= ? ORDER BY ${START_SQL} DESC, e.id DESC LIMIT ?`)
      .all(new Date(w.sinceMs - STATS_LOOKBACK_MS).toISOString(), MAX_STATS_LATENCIES) as { callStartMs: number; data: string }[];
    const [live] = this.db.prepare(`SELECT count(*) AS n FROM calls WHERE state = 'in_progress'`).all() as { n: number }[];
    return foldStats(w, bucketMs, started, ended, latencies, live?.n ?? 0);
  }

  /** Write everything queued, in one transaction. Never throws: a failed flush keeps its work for the next one. */
  flush(): void {
    this.cancelSoon();
    if (this.closed) return;
    const batch = this.takeQueued();
    if (!batch) return;
    const headers = this.takeHeaders(batch);
    const now = new Date().toISOString();
    try {
      this.db.transaction(() => {
        for (const e of batch.entries) {
          if (!this.live.has(e.callSid)) this.sql.stub.run(e.callSid, now, now); // a late entry of a finished call
          this.sql.insertEntry.run(e.callSid, e.kind, e.atMs, e.label, e.ok === null ? null : e.ok ? 1 : 0, this.entryData(e));
        }
        for (const { h } of headers) {
          const row = this.headerRow(h, now);
          if (Number(this.sql.upsertHeader.run(row).changes) === 0) {
            this.sql.webhookFields.run({
              call_sid: row.call_sid!,
              from_number: row.from_number!,
              to_number: row.to_number!,
              answered_at: row.answered_at!,
              agent: row.agent!,
              direction: row.direction!,
              now,
            });
          }
          if (h.state === 'completed' && h.outcome === null) this.sql.outcome.run(h.callSid);
        }
      });
    } catch (err) {
      this.putBack(batch);
      this.log.error(
        { err: err instanceof Error ? err.message : String(err), queued: this.queued(), dropped: this.dropped },
        'call store flush failed; will retry',
      );
      return;
    }
    this.done(batch);
  }

  close(): void {
    if (this.closed) return;
    this.stopFlushTimer();
    this.flush();
    this.closed = true;
    this.db.close();
  }

  // ── Internals ──────────────────────────────────────────────────────────

  private readTransfer(callSid: string): TransferDecision | null {
    const row = this.sql.transfer.get(callSid) as { decision: string } | undefined;
    return transferFromJson(row?.decision);
  }

  private migrate(): void {
    const version = Number(this.db.pragma('user_version'));
    if (version > MIGRATIONS.length) {
      throw new Error(`call store ${this.opts.path} has schema version ${version}, newer than this callbridge (${MIGRATIONS.length})`);
    }
    for (let v = version; v < MIGRATIONS.length; v++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[v]!);
        this.db.pragma(`user_version = ${v + 1}`);
      });
    }
  }

  private headerRow(h: Header, now: string): Record<string, SqlValue> {
    const sealed = this.headerToWrite(h);
    return {
      call_sid: h.callSid,
      stream_sid: h.streamSid,
      from_number: sealed.from,
      to_number: sealed.to,
      started_at: h.startedAt,
      answered_at: h.answeredAt,
      ended_at: h.endedAt,
      duration_ms: h.durationMs,
      status: h.status,
      status_events: JSON.stringify(h.statusEvents),
      end_reason: h.endReason,
      outcome: h.outcome,
      audio_mode: h.audioMode,
      model: h.model,
      agent: h.agent,
      direction: h.direction,
      state: h.state,
      relay: h.relay ? JSON.stringify(h.relay) : null,
      protocol_errors: h.protocolErrors,
      usage: JSON.stringify(h.usage),
      cost_usd: h.estimatedCostUsd,
      recording: h.recording ? recordingToJson(h.recording) : null,
      recording_object: h.recording?.object ?? null,
      now,
    };
  }
}

/**
 * A status callback folded into the header (what the PostgreSQL store does
 * in SQL with its status rows): kept once per SequenceNumber, in order; the
 * latest is the call's status. A terminal one for a call whose stream never
 * started (busy, no-answer, failed…) is the whole story: the call is over.
 */
function foldStatus(h: Header, s: StatusNote): false | void {
  if (s.seq !== null && h.statusEvents.some((e) => e.sequenceNumber === s.seq)) return false; // Twilio retried it
  h.statusEvents.push({ sequenceNumber: s.seq, status: s.status, timestamp: s.timestamp, callDurationS: s.durationS, receivedAt: s.receivedAt });
  h.statusEvents.sort((a, b) => (a.sequenceNumber ?? Infinity) - (b.sequenceNumber ?? Infinity));
  h.status = h.statusEvents.at(-1)!.status;
  h.from ||= s.from;
  h.to ||= s.to;
  h.direction ||= s.direction;
  if (s.terminal && h.state === 'in_progress' && !h.startedAt) {
    h.state = 'completed';
    h.outcome = s.status;
    if (s.durationS !== null) h.durationMs = s.durationS * 1000;
  }
  if (s.terminal && s.durationS !== null && h.durationMs === null) h.durationMs = s.durationS * 1000;
}

/** `unreadable`: what a number sealed with another key reads as (default: DecryptError). */
function rowHeader(r: Row, ring: Keyring, unreadable?: (stored: string) => string): Header {
  return {
    ...headerFromRow(r, (n, field) => openField(n, ring, r.call_sid, field, unreadable)),
    status: r.status,
    statusEvents: JSON.parse(r.status_events) as StatusEvent[],
  };
}
