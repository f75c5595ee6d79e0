/**
 * The embedded call store: SQLite, WAL, one real file. The driver is
 * node:sqlite, or better-sqlite3 on a Node without it (sqlite-driver.ts);
 * both write the same file, so a store moves between Node versions as it is.
 *
 * Writes never block audio. Both drivers are synchronous, so nothing on the
 * call path touches the database: every CallStore write only updates a small
 * in-memory call header or pushes an entry onto a queue. One flush writes
 * all of it in a single transaction:
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
 * A header written from a stale copy never undoes a call's stream: a header
 * whose stream has not started (a webhook's, e.g. a retried one) does not
 * overwrite a row whose stream has; it only fills in the webhook's own
 * fields (numbers, answered time) where the row has none.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { CallEndInfo, CallEvent, ToolCallRecord, TranscriptLine, TurnLatency, Usage } from '../records.js';
import type { Prices } from '../config.js';
import type { Logger } from '../log.js';
import type { StatusCallback } from '../twilio/webhooks.js';
import { estimateCostUsd } from './cost.js';
import { keyring, openField, openText, sealField, sealText, type Keyring } from './crypto.js';
import { openSqlite, type SqlStatement, type SqliteDb, type SqlValue } from './sqlite-driver.js';
import { emptyHeader, endHeader, ENCRYPTED_NUMBER, headerFromRow, summaryFromRow, sumUsage, type CallHeader, type CallRow, type SummaryRow } from './rows.js';
import type { CallPage, CallRecord, CallStore, CallSummary, ListOptions, StatusEvent } from './types.js';

export { ENCRYPTED_NUMBER, estimateCostUsd };

/** Timer flush period: the crash window for transcript/tool/latency entries, ms. */
export const FLUSH_MS = 250;
/** Entries kept queued while the database refuses writes (disk full…); beyond this the oldest are dropped and logged. */
const MAX_PENDING = 100_000;
/** How long an answered call whose stream never started keeps its header in memory, ms. */
const STREAMLESS_KEEP_MS = 10 * 60_000;
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
];

export interface SqliteStoreOptions {
  path: string;
  transcriptKey?: Buffer;
  /** Earlier keys (TRANSCRIPT_KEY_OLD): values they sealed are still read; nothing new is sealed with them. */
  transcriptKeysOld?: Buffer[];
  prices: Prices;
  log: Logger;
  /** Open an existing store for reading (CLI): the file must exist, no flush timer. */
  readOnly?: boolean;
}

/** A call's record without its lists: what the call path keeps in memory (status too: it lives in the row here). */
type Header = CallHeader & Pick<CallRecord, 'status' | 'statusEvents'>;

type EntryKind = 'transcript' | 'tool' | 'latency' | 'event';

interface PendingEntry {
  callSid: string;
  kind: EntryKind;
  atMs: number;
  /** Tool name (not personal data): lets the outcome be computed in SQL. */
  label: string | null;
  ok: number | null;
  /** JSON of the entry, sealed at flush time when personal. */
  json: string;
}

interface Row extends CallRow<string> {
  status_events: string;
  transcript: string;
  tool_calls: string;
  turn_latencies: string;
}

interface EntryRow {
  kind: EntryKind;
  data: string;
}

export class SqliteCallStore implements CallStore {
  private readonly db: SqliteDb;
  /** Headers of calls this process is writing (in progress, or changed since the last flush). */
  private readonly live = new Map<string, { h: Header; dirty: boolean }>();
  private pending: PendingEntry[] = [];
  private droppedEntries = 0;
  private readonly timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  private readonly ring: Keyring;
  private closed = false;
  private readonly sql: {
    upsertHeader: SqlStatement;
    webhookFields: SqlStatement;
    stub: SqlStatement;
    insertEntry: SqlStatement;
    header: SqlStatement;
    entries: SqlStatement;
    eligibilityResults: SqlStatement;
    claim: SqlStatement;
  };

  constructor(private readonly opts: SqliteStoreOptions) {
    this.ring = keyring(opts.transcriptKey, opts.transcriptKeysOld);
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
          status, status_events, end_reason, outcome, audio_mode, model, state, relay, protocol_errors, usage, cost_usd,
          created_at, updated_at)
        VALUES (@call_sid, @stream_sid, @from_number, @to_number, @started_at, @answered_at, @ended_at, @duration_ms,
          @status, @status_events, @end_reason, @outcome, @audio_mode, @model, @state, @relay, @protocol_errors, @usage, @cost_usd,
          @now, @now)
        ON CONFLICT (call_sid) DO UPDATE SET stream_sid = excluded.stream_sid, from_number = excluded.from_number,
          to_number = excluded.to_number, started_at = excluded.started_at, answered_at = excluded.answered_at,
          ended_at = excluded.ended_at, duration_ms = excluded.duration_ms, status = excluded.status,
          status_events = excluded.status_events, end_reason = excluded.end_reason, outcome = excluded.outcome,
          audio_mode = excluded.audio_mode, model = excluded.model, state = excluded.state, relay = excluded.relay,
          protocol_errors = excluded.protocol_errors, usage = excluded.usage, cost_usd = excluded.cost_usd,
          updated_at = excluded.updated_at
        WHERE calls.started_at IS NULL OR excluded.started_at IS NOT NULL`),
      // What a header the upsert refused (no stream, the row has one) may still add: the webhook's own fields.
      webhookFields: this.db.prepare(`
        UPDATE calls SET from_number = coalesce(from_number, @from_number), to_number = coalesce(to_number, @to_number),
          answered_at = coalesce(answered_at, @answered_at), updated_at = @now
        WHERE call_sid = @call_sid`),
      stub: this.db.prepare('INSERT OR IGNORE INTO calls (call_sid, created_at, updated_at) VALUES (?, ?, ?)'),
      insertEntry: this.db.prepare('INSERT INTO call_entries (call_sid, kind, at_ms, label, ok, data) VALUES (?, ?, ?, ?, ?, ?)'),
      header: this.db.prepare('SELECT * FROM calls WHERE call_sid = ?'),
      entries: this.db.prepare('SELECT kind, data FROM call_entries WHERE call_sid = ? ORDER BY kind, at_ms, id'),
      eligibilityResults: this.db.prepare(
        "SELECT ok FROM call_entries WHERE call_sid = ? AND kind = 'tool' AND label = 'check_eligibility'",
      ),
      claim: this.db.prepare('INSERT OR IGNORE INTO call_claims (call_sid, instance_id, claimed_at) VALUES (?, ?, ?)'),
    };
    if (!opts.readOnly) {
      // Start-up work above may wait for a lock; the call path must not wait long.
      this.db.pragma(`busy_timeout = ${WRITE_BUSY_MS}`);
      this.timer = setInterval(() => this.flush(), FLUSH_MS);
      this.timer.unref();
    }
  }

  // ── Writes from the call path: memory only ─────────────────────────────

  answered(callSid: string, info: { from?: string; to?: string }): void {
    const h = this.header(callSid);
    h.from = info.from ?? h.from;
    h.to = info.to ?? h.to;
    h.answeredAt ??= new Date().toISOString();
    this.changed(callSid, true);
  }

  started(callSid: string, info: { streamSid: string; audioMode: string; startedAt: Date; model?: string }): void {
    const h = this.header(callSid);
    h.streamSid = info.streamSid;
    h.audioMode = info.audioMode;
    h.model = info.model ?? null;
    h.startedAt = info.startedAt.toISOString();
    h.state = 'in_progress';
    this.changed(callSid, true);
  }

  appendTranscript(callSid: string, line: TranscriptLine): void {
    // Ordered by when it was said at read time (at_ms): a caller's transcription
    // that finishes after the reply still lands before it.
    this.enqueue({ callSid, kind: 'transcript', atMs: line.atMs, label: null, ok: null, json: JSON.stringify(line) });
  }

  appendToolCall(callSid: string, tc: ToolCallRecord): void {
    this.enqueue({ callSid, kind: 'tool', atMs: tc.startedAtMs, label: tc.name, ok: tc.ok ? 1 : 0, json: JSON.stringify(tc) });
  }

  appendTurnLatency(callSid: string, t: TurnLatency): void {
    this.enqueue({ callSid, kind: 'latency', atMs: t.turn, label: null, ok: null, json: JSON.stringify(t) });
  }

  appendEvent(callSid: string, e: CallEvent): void {
    this.enqueue({ callSid, kind: 'event', atMs: e.atMs, label: e.type, ok: null, json: JSON.stringify(e) });
  }

  addUsage(callSid: string, u: Usage): void {
    const h = this.header(callSid);
    h.usage = sumUsage(h.usage, u);
    this.changed(callSid, false);
  }

  ended(callSid: string, info: CallEndInfo): void {
    endHeader(this.header(callSid), info);
    this.changed(callSid, true);
  }

  recordStatus(v: StatusCallback): void {
    const h = this.header(v.callSid);
    const seq = v.sequenceNumber ?? null;
    if (seq !== null && h.statusEvents.some((e) => e.sequenceNumber === seq)) return; // Twilio retried it
    const ev: StatusEvent = {
      sequenceNumber: seq,
      status: v.callStatus,
      timestamp: v.timestampMs !== undefined ? new Date(v.timestampMs).toISOString() : null,
      callDurationS: v.callDurationS ?? null,
      receivedAt: new Date().toISOString(),
    };
    h.statusEvents.push(ev);
    h.statusEvents.sort((a, b) => (a.sequenceNumber ?? Infinity) - (b.sequenceNumber ?? Infinity));
    h.status = h.statusEvents.at(-1)!.status;
    h.from ||= v.from || null;
    h.to ||= v.to || null;
    if (v.terminal && h.state === 'in_progress' && !h.startedAt) {
      // The stream never started (busy, no-answer, failed…): the callback is the whole story.
      h.state = 'completed';
      h.outcome = v.callStatus;
      if (v.callDurationS !== undefined) h.durationMs = v.callDurationS * 1000;
    }
    if (v.terminal && v.callDurationS !== undefined && h.durationMs === null) h.durationMs = v.callDurationS * 1000;
    this.changed(v.callSid, true);
  }

  /** One row insert, at once (a unique key decides); throws when the file cannot be written (a read-only store). */
  claim(callSid: string, instanceId: string): boolean {
    if (this.opts.readOnly || this.closed) throw new Error('call store: a read-only or closed store cannot claim calls');
    return Number(this.sql.claim.run(callSid, instanceId, new Date().toISOString()).changes) === 1;
  }

  markInterrupted(): number {
    this.flush();
    const live = [...this.live.keys()];
    const r = this.db
      .prepare(`UPDATE calls SET state = 'interrupted', end_reason = coalesce(end_reason, 'process_exit'), updated_at = ?
                WHERE state = 'in_progress' AND call_sid NOT IN (SELECT value FROM json_each(?))`)
      .run(new Date().toISOString(), JSON.stringify(live));
    return r.changes;
  }

  // ── Reads (flush first, so this process reads its own writes) ─────────

  get(callSid: string): CallRecord | undefined {
    this.flush();
    const row = this.sql.header.get(callSid) as Row | undefined;
    if (!row) return undefined;
    const open = (data: string, kind: 'transcript' | 'tool' | 'event') => JSON.parse(openText(data, this.ring, callSid, kind)) as unknown;
    const rec: CallRecord = {
      ...rowHeader(row, this.ring),
      // Rows written before migration 2 keep their lists in the row itself (sealed, if at all, as enc1).
      transcript: open(row.transcript, 'transcript') as TranscriptLine[],
      toolCalls: open(row.tool_calls, 'tool') as ToolCallRecord[],
      turnLatencies: JSON.parse(row.turn_latencies) as TurnLatency[],
      events: [],
    };
    for (const e of this.sql.entries.all(callSid) as EntryRow[]) {
      if (e.kind === 'transcript') rec.transcript.push(open(e.data, 'transcript') as TranscriptLine);
      else if (e.kind === 'tool') rec.toolCalls.push(open(e.data, 'tool') as ToolCallRecord);
      else if (e.kind === 'event') rec.events.push(open(e.data, 'event') as CallEvent);
      else rec.turnLatencies.push(JSON.parse(e.data) as TurnLatency);
    }
    return rec;
  }

  list(opts: ListOptions = {}): CallSummary[] {
    return this.listPage(opts).calls;
  }

  listPage(opts: ListOptions = {}): CallPage {
    this.flush();
    const limit = Math.max(1, Math.min(opts.limit ?? 50, 10_000));
    const since = opts.since?.toISOString() ?? '';
    // Past the end of the order (every ISO time sorts below '~'): no cursor means from the newest.
    const after = opts.after ?? { t: '~', sid: '' };
    const rows = this.db
      .prepare(`SELECT call_sid, from_number, to_number, coalesce(started_at, answered_at, created_at) AS started_at, duration_ms,
                       status, state, outcome, end_reason, cost_usd
                FROM calls WHERE coalesce(started_at, answered_at, created_at) >= ?
                  AND (coalesce(started_at, answered_at, created_at) < ? OR (coalesce(started_at, answered_at, created_at) = ? AND call_sid < ?))
                ORDER BY coalesce(started_at, answered_at, created_at) DESC, call_sid DESC LIMIT ?`)
      .all(since, after.t, after.t, after.sid, limit + 1) as SummaryRow<string>[];
    const more = rows.length > limit;
    if (more) rows.pop();
    const last = rows.at(-1);
    return { calls: rows.map((r) => summaryFromRow(r, this.ring)), next: more && last ? { t: last.started_at, sid: last.call_sid } : null };
  }

  /** Write everything queued, in one transaction. Never throws: a failed flush keeps its work for the next one. */
  flush(): void {
    if (this.immediate) {
      clearImmediate(this.immediate);
      this.immediate = undefined;
    }
    if (this.closed) return;
    const dirty = [...this.live.entries()].filter(([, v]) => v.dirty);
    const entries = this.pending;
    if (dirty.length === 0 && entries.length === 0) return this.evict();
    this.pending = [];
    const now = new Date().toISOString();
    try {
      this.db.transaction(() => {
        for (const e of entries) {
          if (!this.live.has(e.callSid)) this.sql.stub.run(e.callSid, now, now); // a late entry of a finished call
          const data = e.kind === 'latency' ? e.json : sealText(e.json, this.ring, e.callSid, e.kind);
          this.sql.insertEntry.run(e.callSid, e.kind, e.atMs, e.label, e.ok, data);
        }
        for (const [sid, v] of dirty) {
          if (v.h.state === 'completed' && v.h.outcome === null) v.h.outcome = this.outcomeOf(sid, v.h);
          const row = this.headerRow(v.h, now);
          if (Number(this.sql.upsertHeader.run(row).changes) === 0) {
            this.sql.webhookFields.run({ call_sid: row.call_sid!, from_number: row.from_number!, to_number: row.to_number!, answered_at: row.answered_at!, now });
          }
        }
      });
    } catch (err) {
      this.pending = entries.concat(this.pending);
      if (this.pending.length > MAX_PENDING) {
        const drop = this.pending.length - MAX_PENDING;
        this.pending.splice(0, drop);
        this.droppedEntries += drop;
      }
      this.opts.log.error(
        { err: err instanceof Error ? err.message : String(err), queued: this.pending.length, dropped: this.droppedEntries },
        'call store flush failed; will retry',
      );
      return;
    }
    for (const [, v] of dirty) v.dirty = false;
    this.evict();
  }

  /**
   * Only calls in progress stay in memory. Written headers are let go when the
   * call is over, when this process never answered it (status callbacks
   * only), or when it was answered but its stream never started.
   */
  private evict(): void {
    const staleBefore = Date.now() - STREAMLESS_KEEP_MS;
    for (const [sid, v] of this.live) {
      if (v.dirty) continue;
      const h = v.h;
      if (h.state !== 'in_progress' || (!h.startedAt && (!h.answeredAt || Date.parse(h.answeredAt) < staleBefore))) this.live.delete(sid);
    }
  }

  close(): void {
    if (this.closed) return;
    if (this.timer) clearInterval(this.timer);
    this.flush();
    this.closed = true;
    this.db.close();
  }

  // ── Internals ──────────────────────────────────────────────────────────

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

  /**
   * The in-memory header of a call: live, else read from its row (a status
   * callback or usage after the call ended), else a new one.
   */
  private header(callSid: string): Header {
    let entry = this.live.get(callSid);
    if (!entry) {
      const row = this.closed ? undefined : (this.sql.header.get(callSid) as Row | undefined);
      // A number this process cannot open is kept sealed as stored (sealField writes it back as it is).
      entry = { h: row ? rowHeader(row, this.ring, (stored) => stored) : { ...emptyHeader(callSid), status: null, statusEvents: [] }, dirty: false };
      this.live.set(callSid, entry);
    }
    return entry.h;
  }

  /** Mark a header for writing: on the next turn of the event loop when `soon`, else on the timer. */
  private changed(callSid: string, soon: boolean): void {
    const e = this.live.get(callSid);
    if (e) e.dirty = true;
    if (soon && !this.immediate && !this.closed) {
      this.immediate = setImmediate(() => {
        this.immediate = undefined;
        this.flush();
      });
    }
  }

  private enqueue(e: PendingEntry): void {
    if (this.closed) return;
    this.pending.push(e);
  }

  /** A one-word outcome for listings: what happened, from the caller's side. */
  private outcomeOf(callSid: string, h: Header): string {
    if (h.endReason === 'model_unavailable' || h.endReason === 'model_disconnected' || h.endReason === 'error') return 'failed';
    const results = this.sql.eligibilityResults.all(callSid) as { ok: number }[];
    if (results.some((r) => r.ok === 1)) return 'eligibility_checked';
    if (results.length > 0) return 'eligibility_failed';
    return 'no_check';
  }

  private headerRow(h: Header, now: string): Record<string, SqlValue> {
    const durationMs = h.durationMs ?? (h.startedAt ? Date.now() - Date.parse(h.startedAt) : 0);
    h.estimatedCostUsd = estimateCostUsd(h.usage, durationMs, this.opts.prices);
    return {
      call_sid: h.callSid,
      stream_sid: h.streamSid,
      from_number: sealField(h.from, this.ring, h.callSid, 'from'),
      to_number: sealField(h.to, this.ring, h.callSid, 'to'),
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
      state: h.state,
      relay: h.relay ? JSON.stringify(h.relay) : null,
      protocol_errors: h.protocolErrors,
      usage: JSON.stringify(h.usage),
      cost_usd: h.estimatedCostUsd,
      now,
    };
  }
}

/** `unreadable`: what a number sealed with another key reads as (default: DecryptError). */
function rowHeader(r: Row, ring: Keyring, unreadable?: (stored: string) => string): Header {
  return {
    ...headerFromRow(r, (n, field) => openField(n, ring, r.call_sid, field, unreadable)),
    status: r.status,
    statusEvents: JSON.parse(r.status_events) as StatusEvent[],
  };
}
