/**
 * The shared call store: PostgreSQL, for several callbridge instances behind
 * one load balancer. Same records, readers, encryption and cost as the SQLite
 * store (sqlite.ts); selected by DATABASE_URL=postgres://… (open.ts).
 * Driver: postgres (porsager/postgres.js), see docs/postgres.md.
 *
 * Writes never touch the audio path. Every CallStore write only updates an
 * in-memory call header or pushes onto a bounded queue (record-buffer.ts,
 * shared with the SQLite store); a flush writes, in one transaction and one
 * pipelined round trip:
 *   - every entry queued since the last flush in ONE multi-row INSERT
 *     (unnest of column arrays: the statement text never changes, so it is
 *     prepared once per connection);
 *   - every changed header in one multi-row upsert;
 *   - status callbacks (one small statement each: a call has a handful).
 * Flushes run on a timer (flushMs) and on the next event-loop turn after a
 * call is answered, starts or ends, or a status callback arrives.
 *
 * An unreachable or slow database never stalls a call: a flush that fails or
 * takes longer than writeTimeoutMs is abandoned (its connections dropped) and
 * its work goes back to the queue for the next flush. Entries carry a
 * client-made uuid and header upserts a revision, so a retry after a flush
 * whose fate is unknown neither duplicates an entry nor rolls a header back.
 * The queue holds at most maxQueued entries and status callbacks; beyond
 * that new ones are refused, counted (stats().dropped) and logged, never
 * silently. Writing resumes by itself when the database answers again.
 *
 * Several instances share the database. A call's state (stream, times,
 * usage, end, outcome) is written only by its owner: the instance that
 * claimed its stream (`call_claims`), or before any claim the instance that
 * writes it. Any other instance's header write — the webhook instance's, a
 * stale retried flush — only fills in the webhook's own fields (numbers,
 * answered time) where the row has none; so does a header whose stream has
 * not started against a row whose stream has (the claim may have been
 * impossible while the database was away). calls.instance_id names the
 * owner. Each instance heartbeats a lease row (`instances`, postgres-leases.ts) holding a random
 * token of its process: an INSTANCE_ID whose lease another live process
 * holds is refused at start (startLeases), and only the token's holder
 * renews or releases it. Any live instance marks the in-progress calls of
 * an instance whose lease has expired as 'interrupted' (reapExpired). Lease
 * times use the database's clock, so instance clocks need not agree.
 * Status callbacks may arrive at any instance: they are rows of their own
 * (`call_status_events`, unique per call and SequenceNumber), never a
 * rewrite of another instance's header.
 *
 * Reads (get, list) are async: they flush this instance's queue first, so an
 * instance reads its own writes.
 *
 * Call control and outbound calls, sent at once (never queued) and bounded by
 * writeTimeoutMs: a transfer decision is one row of `call_transfers` (the
 * later replaces the earlier), committed before saveTransfer resolves, so the
 * `<Connect action>` webhook on any instance reads it; the outbound pacer is
 * one row (`outbound_pacer`) whose next free slot one statement reads and
 * moves on, so every instance's calls are spaced by the interval. A call's
 * agent and direction are filled in once (`placed`, `answered`) and kept.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import postgres from 'postgres';
import { openField } from './crypto.js';
import { errText, PostgresStoreError } from './postgres-error.js';
import { Leases } from './postgres-leases.js';
import { listLimit, RecordBuffer, type EntryKind, type PendingEntry, type RecordBufferOptions, type StatusNote } from './record-buffer.js';
import {
  checkTransfer,
  claimRanges,
  emptyHeader,
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
import type { TransferDecision } from '../records.js';
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

export { PostgresStoreError };

/** Defaults; each can be set per store. Times in ms. */
export const PG_DEFAULTS = {
  /** Timer flush period: the crash window for transcript/tool/latency entries. */
  flushMs: 250,
  /** Entries plus status callbacks held in memory while the database is away (≈ 300 B each). */
  maxQueued: 100_000,
  /** A flush or heartbeat not done by then is abandoned and retried. */
  writeTimeoutMs: 5_000,
  /** Connecting to the server gives up after this. */
  connectTimeoutMs: 5_000,
  /** Bound on how long a dead instance's calls stay 'in_progress'. */
  leaseMs: 30_000,
} as const;

/** A failing database is logged at most this often (the first failure and the recovery always). */
const FAILURE_LOG_EVERY_MS = 10_000;
/** Connections per store: flushes are serial, reads and heartbeats run beside them. */
const POOL_MAX = 4;

/** Versioned migrations, applied in order inside one transaction under an advisory lock. */
const MIGRATIONS: string[] = [
  // 1: the content of SQLite schema 3 (calls with model; entries incl. 'event'), plus
  // status callbacks as rows, instance ownership and leases.
  `CREATE TABLE calls (
     call_sid        text PRIMARY KEY,
     stream_sid      text,
     from_number     text,
     to_number       text,
     started_at      timestamptz,
     answered_at     timestamptz,
     ended_at        timestamptz,
     duration_ms     double precision,
     status          text,
     end_reason      text,
     outcome         text,
     audio_mode      text,
     model           text,
     state           text NOT NULL DEFAULT 'in_progress' CHECK (state IN ('in_progress', 'completed', 'interrupted')),
     relay           text,
     protocol_errors integer NOT NULL DEFAULT 0,
     usage           text NOT NULL DEFAULT '{}',
     cost_usd        double precision NOT NULL DEFAULT 0,
     instance_id     text,
     owner_rev       bigint,
     created_at      timestamptz NOT NULL DEFAULT now(),
     updated_at      timestamptz NOT NULL DEFAULT now()
   );
   CREATE INDEX calls_by_time ON calls ((coalesce(started_at, answered_at, created_at)) DESC);
   CREATE INDEX calls_in_progress ON calls (instance_id) WHERE state = 'in_progress';
   CREATE TABLE call_entries (
     id       bigserial PRIMARY KEY,
     uid      uuid NOT NULL UNIQUE,
     call_sid text NOT NULL,
     kind     text NOT NULL CHECK (kind IN ('transcript', 'tool', 'latency', 'event')),
     at_ms    double precision NOT NULL,
     label    text,
     ok       boolean,
     data     text NOT NULL
   );
   CREATE INDEX call_entries_by_call ON call_entries (call_sid, kind, at_ms, id);
   CREATE TABLE call_status_events (
     id              bigserial PRIMARY KEY,
     call_sid        text NOT NULL,
     sequence_number integer,
     status          text NOT NULL,
     "timestamp"     timestamptz,
     call_duration_s integer,
     received_at     timestamptz NOT NULL
   );
   CREATE UNIQUE INDEX call_status_once ON call_status_events (call_sid, sequence_number);
   CREATE TABLE instances (
     instance_id  text PRIMARY KEY,
     started_at   timestamptz NOT NULL,
     heartbeat_at timestamptz NOT NULL,
     expires_at   timestamptz NOT NULL
   );`,
  // 2: which stream took each call: the first claim inserts, every later one finds the row (single use across instances).
  `CREATE TABLE call_claims (
     call_sid    text PRIMARY KEY,
     instance_id text NOT NULL,
     claimed_at  timestamptz NOT NULL DEFAULT now()
   );`,
  // 3: the lease holder's random per-process token: a second live process with the same INSTANCE_ID is refused.
  `ALTER TABLE instances ADD COLUMN token text;`,
  // 4: call control and outbound calls: each call's agent and direction; its latest transfer decision (a row of
  // its own, written at once by saveTransfer, apart from the batched header); the outbound pacer's one row (the
  // next free slot, epoch ms of the database's clock). Claim keys are free text (CA…, CA…/2, action:CA…/1).
  `ALTER TABLE calls ADD COLUMN IF NOT EXISTS agent text, ADD COLUMN IF NOT EXISTS direction text;
   CREATE TABLE IF NOT EXISTS call_transfers (
     call_sid text PRIMARY KEY,
     decision text NOT NULL,
     saved_at timestamptz NOT NULL DEFAULT now()
   );
   CREATE TABLE IF NOT EXISTS outbound_pacer (
     id         integer PRIMARY KEY CHECK (id = 1),
     next_at_ms bigint NOT NULL
   );`,
  // 5: recordings and retention. Each call's recording outcome (plain JSON: no personal data) and its object name
  // apart, so a purge finds it without parsing; named leases on the database's clock (the purger's, apart from the
  // instances' own); claim keys by prefix (text_pattern_ops: byte order whatever the collation), so deleting a
  // call's `<sid>/…`, `action:<sid>/…`, `dial:<sid>/…` claims is an index range each. expiredCalls walks calls_by_time.
  `ALTER TABLE calls ADD COLUMN IF NOT EXISTS recording text, ADD COLUMN IF NOT EXISTS recording_object text;
   CREATE TABLE IF NOT EXISTS store_leases (
     name       text PRIMARY KEY,
     holder     text NOT NULL,
     expires_at timestamptz NOT NULL
   );
   CREATE INDEX IF NOT EXISTS call_claims_by_prefix ON call_claims (call_sid text_pattern_ops);
   CREATE INDEX IF NOT EXISTS call_status_events_by_call ON call_status_events (call_sid);`,
  // 6: the console's queries (search.ts). Stats count calls ended in the last hour: an index on the end time, so that
  // is a range, not a scan of every call (EXPLAIN: Index Only Scan using calls_by_end). The tool filter finds the
  // few tool entries among the transcript lines by a small partial index instead of a scan of call_entries (200 000
  // calls, 1 M entries: a parallel seq scan of 86 ms before). The rest walks calls_by_time or the in_progress index.
  `CREATE INDEX IF NOT EXISTS calls_by_end ON calls (ended_at) WHERE ended_at IS NOT NULL;
   CREATE INDEX IF NOT EXISTS call_entries_tools ON call_entries (label, call_sid) WHERE kind = 'tool';`,
];

export interface PostgresStoreOptions extends RecordBufferOptions {
  /** postgres://user@host:port/db (DATABASE_URL). */
  url: string;
  /** A schema of its own (created if missing); default: the connection's search_path. */
  schema?: string;
  /** Names this instance in calls.instance_id and its lease; default hostname-pid. */
  instanceId?: string;
  /** Read only (CLI): no migrations (the schema must be there), no timer, no leases. */
  readOnly?: boolean;
  flushMs?: number;
  maxQueued?: number;
  writeTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** Sees the text of every statement sent (tests count statements per flush). */
  onQuery?: (sql: string) => void;
}

/** What an operator (or /voice/health) needs to know about the store's writing. */
export interface PostgresStoreStats {
  instanceId: string;
  /** false after a failed flush or heartbeat, until one succeeds. */
  reachable: boolean;
  /** Entries and status callbacks waiting (incl. a flush in flight). */
  queued: number;
  /** Entries and status callbacks refused because the queue was full, since start. */
  dropped: number;
  lastError: string | null;
}

interface Row extends CallRow<Date> {
  created_at: Date;
}

type Sql = postgres.Sql;

const HEADER_UPSERT = `
  INSERT INTO calls AS c (call_sid, stream_sid, from_number, to_number, started_at, answered_at, ended_at, duration_ms,
    end_reason, outcome, audio_mode, model, state, relay, protocol_errors, usage, cost_usd, owner_rev, agent, direction,
    recording, recording_object, instance_id)
  SELECT t.*, $23::text FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[],
    $7::timestamptz[], $8::float8[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::int[],
    $16::text[], $17::float8[], $18::bigint[], $19::text[], $20::text[], $21::text[], $22::text[]) AS t
  ON CONFLICT (call_sid) DO UPDATE SET
    stream_sid = excluded.stream_sid,
    from_number = coalesce(excluded.from_number, c.from_number),
    to_number = coalesce(excluded.to_number, c.to_number),
    started_at = excluded.started_at,
    answered_at = coalesce(c.answered_at, excluded.answered_at),
    ended_at = excluded.ended_at,
    duration_ms = coalesce(excluded.duration_ms, c.duration_ms),
    end_reason = excluded.end_reason,
    outcome = coalesce(excluded.outcome, c.outcome),
    audio_mode = excluded.audio_mode,
    model = excluded.model,
    agent = coalesce(c.agent, excluded.agent),
    direction = coalesce(c.direction, excluded.direction),
    state = excluded.state,
    relay = excluded.relay,
    protocol_errors = excluded.protocol_errors,
    usage = excluded.usage,
    cost_usd = excluded.cost_usd,
    owner_rev = excluded.owner_rev,
    recording = coalesce(excluded.recording, c.recording),
    recording_object = CASE WHEN excluded.recording IS NULL THEN c.recording_object ELSE excluded.recording_object END,
    instance_id = excluded.instance_id,
    updated_at = now()
  WHERE (c.owner_rev IS NULL OR c.instance_id IS DISTINCT FROM excluded.instance_id OR c.owner_rev <= excluded.owner_rev)
    -- only the owner: no other instance claimed the call's stream, and no header without a stream undoes one
    AND NOT EXISTS (SELECT 1 FROM call_claims k WHERE k.call_sid = c.call_sid AND k.instance_id <> excluded.instance_id)
    AND (c.started_at IS NULL OR excluded.started_at IS NOT NULL OR c.instance_id IS NOT DISTINCT FROM excluded.instance_id)`;

/** What a header write of a non-owner adds (after HEADER_UPSERT, same columns): the webhook's own fields (numbers, answer time, agent, direction), where the row has none. */
const WEBHOOK_FIELDS = `
  UPDATE calls c SET from_number = coalesce(c.from_number, t.f), to_number = coalesce(c.to_number, t.t),
    answered_at = coalesce(c.answered_at, t.a), agent = coalesce(c.agent, t.g), direction = coalesce(c.direction, t.d),
    updated_at = now()
  FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::text[]) AS t(s, f, t, a, g, d)
  WHERE c.call_sid = t.s AND ((c.from_number IS NULL AND t.f IS NOT NULL) OR (c.to_number IS NULL AND t.t IS NOT NULL)
    OR (c.answered_at IS NULL AND t.a IS NOT NULL) OR (c.agent IS NULL AND t.g IS NOT NULL)
    OR (c.direction IS NULL AND t.d IS NOT NULL))`;

const ENTRIES_INSERT = `
  INSERT INTO call_entries (uid, call_sid, kind, at_ms, label, ok, data)
  SELECT u, s, k, a, l, o::boolean, d FROM unnest($1::uuid[], $2::text[], $3::text[], $4::float8[], $5::text[], $6::text[], $7::text[])
    AS t(u, s, k, a, l, o, d)
  ON CONFLICT (uid) DO NOTHING`;

const STUBS_INSERT = `INSERT INTO calls (call_sid) SELECT DISTINCT unnest($1::text[]) ON CONFLICT (call_sid) DO NOTHING`;

/** One status callback: its row once (a retry inserts nothing), and what it tells about the call. */
const STATUS_INSERT = `
  WITH ins AS (
    INSERT INTO call_status_events (call_sid, sequence_number, status, "timestamp", call_duration_s, received_at)
    VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING call_sid)
  UPDATE calls c SET
    from_number = coalesce(c.from_number, $7),
    to_number = coalesce(c.to_number, $8),
    direction = coalesce(c.direction, $10),
    state = CASE WHEN $9 AND c.state = 'in_progress' AND c.started_at IS NULL THEN 'completed' ELSE c.state END,
    outcome = CASE WHEN $9 AND c.state = 'in_progress' AND c.started_at IS NULL THEN $3 ELSE c.outcome END,
    duration_ms = CASE WHEN $9 AND $5::int IS NOT NULL AND ((c.state = 'in_progress' AND c.started_at IS NULL) OR c.duration_ms IS NULL)
                       THEN $5::int * 1000 ELSE c.duration_ms END,
    updated_at = now()
  FROM ins WHERE c.call_sid = ins.call_sid`;

/** The latest Twilio status of each call: highest SequenceNumber, one without a number counting as newest. */
const STATUS_LATEST = `
  UPDATE calls c SET status = s.status
  FROM (SELECT DISTINCT ON (call_sid) call_sid, status FROM call_status_events WHERE call_sid = ANY($1::text[])
        ORDER BY call_sid, sequence_number DESC NULLS FIRST, id DESC) s
  WHERE c.call_sid = s.call_sid`;

/** A one-word outcome for listings, from the end reason and the eligibility tool results written with the call. */
const OUTCOME_UPDATE = `
  UPDATE calls c SET outcome = ${OUTCOME_SQL}
  WHERE c.call_sid = ANY($1::text[]) AND c.state = 'completed'`;

/** Retention: the oldest calls begun before $1 (the listing's start time), at most $2. */
const EXPIRED = `
  SELECT call_sid, recording_object FROM calls WHERE coalesce(started_at, answered_at, created_at) < $1
  ORDER BY coalesce(started_at, answered_at, created_at) LIMIT $2`;

/** Retention: the claims of these calls: their own keys ($1) and every key in the ranges [$2, $3) (rows.ts claimRanges). */
const CLAIMS_DELETE = `
  DELETE FROM call_claims WHERE call_sid IN (
    SELECT unnest($1::text[])
    UNION ALL
    SELECT k.call_sid FROM unnest($2::text[], $3::text[]) AS r(lo, hi) JOIN call_claims k ON k.call_sid ~>=~ r.lo AND k.call_sid ~<~ r.hi)`;

/** A named lease: taken when free, expired or already the holder's, for $3 ms of the database's clock; one statement, so two holders cannot both win. */
const LEASE_ACQUIRE = `
  INSERT INTO store_leases AS l (name, holder, expires_at) VALUES ($1, $2, now() + $3 * interval '1 millisecond')
  ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
  WHERE l.holder = excluded.holder OR l.expires_at <= now()
  RETURNING name`;

const READ_HEADERS = `SELECT * FROM calls WHERE call_sid = ANY($1::text[])`;

/** A call's transfer decision: one row, the later one replacing the earlier. */
const TRANSFER_SAVE = `
  INSERT INTO call_transfers (call_sid, decision, saved_at) VALUES ($1, $2, now())
  ON CONFLICT (call_sid) DO UPDATE SET decision = excluded.decision, saved_at = excluded.saved_at`;

/**
 * The next outbound slot, in one statement (the row lock orders concurrent callers, whichever instance):
 * slot = greatest(next free slot, now); the next free slot becomes slot + interval. Epoch ms of the
 * database's clock; $1 is the interval in whole ms.
 */
const SLOT_RESERVE = `
  INSERT INTO outbound_pacer AS p (id, next_at_ms) VALUES (1, ceil(extract(epoch FROM clock_timestamp()) * 1000)::bigint + $1::bigint)
  ON CONFLICT (id) DO UPDATE SET next_at_ms = greatest(p.next_at_ms, ceil(extract(epoch FROM clock_timestamp()) * 1000)::bigint) + $1::bigint
  RETURNING (p.next_at_ms - $1::bigint)::text AS slot_ms`;


export class PostgresCallStore extends RecordBuffer<CallHeader> implements CallStore {
  readonly instanceId: string;
  private sql: Sql;
  private readonly leases: Leases;
  private readonly flushMs: number;
  private readonly writeTimeoutMs: number;
  private reachable = true;
  private lastError: string | null = null;
  private lastFailureLogAt = 0;
  private droppedLogged = 0;
  private current: Promise<void> | undefined;
  private next: Promise<void> | undefined;

  /** Connect, apply migrations (under an advisory lock) and start the flush timer. */
  static async open(opts: PostgresStoreOptions): Promise<PostgresCallStore> {
    const store = new PostgresCallStore(opts);
    try {
      if (opts.readOnly) await store.checkSchema();
      else await store.migrate();
    } catch (err) {
      await store.sql.end({ timeout: 0 }).catch(() => {});
      throw err instanceof PostgresStoreError ? err : new PostgresStoreError(`call store: cannot open PostgreSQL: ${errText(err)}`, true);
    }
    if (!opts.readOnly) {
      store.startFlushTimer(store.flushMs, () => {
        if (!store.current) void store.flush();
      });
    }
    return store;
  }

  private constructor(private readonly opts: PostgresStoreOptions) {
    super(opts, opts.maxQueued ?? PG_DEFAULTS.maxQueued);
    if (opts.schema !== undefined && !/^[a-z_][a-z0-9_]{0,62}$/.test(opts.schema)) {
      throw new PostgresStoreError(`call store: schema name ${JSON.stringify(opts.schema)} must be lower-case letters, digits and _`, false);
    }
    this.instanceId = opts.instanceId ?? `${hostname()}-${process.pid}`;
    this.flushMs = opts.flushMs ?? PG_DEFAULTS.flushMs;
    this.writeTimeoutMs = opts.writeTimeoutMs ?? PG_DEFAULTS.writeTimeoutMs;
    this.sql = this.connect();
    this.leases = new Leases({
      instanceId: this.instanceId,
      log: opts.log,
      run: (what, work) => this.timed(work(this.sql), what),
      beat: (err) => (err === undefined ? this.succeeded() : this.failed(err)),
    });
  }

  private connect(): Sql {
    const connection: Record<string, string> = { application_name: `callbridge ${this.instanceId}`.slice(0, 63) };
    if (this.opts.schema) connection.search_path = this.opts.schema;
    return postgres(this.opts.url, {
      max: POOL_MAX,
      connect_timeout: Math.ceil((this.opts.connectTimeoutMs ?? PG_DEFAULTS.connectTimeoutMs) / 1000),
      idle_timeout: 60,
      onnotice: () => {},
      connection,
      ...(this.opts.onQuery ? { debug: (_conn: number, query: string) => this.opts.onQuery!(query) } : {}),
    });
  }

  // ── The record buffer's hooks ──────────────────────────────────────────

  protected newHeader(callSid: string): CallHeader {
    return emptyHeader(callSid);
  }

  /** Rows are read at flush time (load): reading one here would wait on the database. */
  protected headerNow(): undefined {
    return undefined;
  }

  /** Status callbacks are rows of their own (any instance may write them), never a change to the header. */
  protected noteStatus(s: StatusNote): void {
    this.queueStatus(s);
  }

  // ── Instances and leases (postgres-leases.ts) ──────────────────────────

  /** Take this instance's lease and heartbeat it (Leases.start); rejects when another live process holds this INSTANCE_ID. */
  async startLeases(opts: { leaseMs?: number } = {}): Promise<void> {
    if (this.opts.readOnly) throw new PostgresStoreError('call store: a read-only store holds no lease', false);
    await this.leases.start(opts.leaseMs ?? PG_DEFAULTS.leaseMs);
  }

  /** Stop heartbeating (the lease then expires and other instances reap this one's calls). */
  stopLeases(): void {
    this.leases.stop();
  }

  /** Mark 'interrupted' the in-progress calls of every other instance whose lease expired. Returns how many. */
  reapExpired(): Promise<number> {
    return this.leases.reapExpired();
  }

  /**
   * On start-up: this instance's own calls left in progress by its previous
   * run (same instance id), plus those of instances whose lease expired,
   * become 'interrupted'. Calls of live instances are never touched.
   */
  async markInterrupted(): Promise<number> {
    await this.flush();
    const own = await this.timed(
      this.sql.unsafe(
        `UPDATE calls SET state = 'interrupted', end_reason = coalesce(end_reason, 'process_exit'), updated_at = now()
         WHERE state = 'in_progress' AND instance_id = $1 AND NOT (call_sid = ANY($2::text[]))`,
        [this.instanceId, this.liveSids()],
      ),
      'mark interrupted',
    );
    return own.count + (await this.reapExpired());
  }

  /**
   * One unique insert, sent at once (not through the write queue) and bounded
   * by writeTimeoutMs: true when this is the call's first claim anywhere.
   * Rejects with a retryable PostgresStoreError when the database cannot answer.
   */
  async claim(callSid: string, instanceId: string): Promise<boolean> {
    if (this.opts.readOnly || this.closed) throw new PostgresStoreError('call store: a read-only or closed store cannot claim calls', false);
    const rows = await this.timed(
      this.sql.unsafe<{ call_sid: string }[]>(
        'INSERT INTO call_claims (call_sid, instance_id) VALUES ($1, $2) ON CONFLICT (call_sid) DO NOTHING RETURNING call_sid',
        [callSid, instanceId],
        { prepare: true },
      ),
      'claim',
    ).catch((err: unknown) => {
      throw err instanceof PostgresStoreError ? err : new PostgresStoreError(`call store: claim failed: ${errText(err)}`, true);
    });
    return rows.length === 1;
  }

  /**
   * One upsert, sent at once (not through the write queue) and bounded by writeTimeoutMs: resolves once
   * committed. Rejects with a retryable PostgresStoreError when the database cannot answer (a timeout leaves
   * its fate unknown: the caller goes on as if not saved), a non-retryable one when the store is read-only or
   * closed, a TypeError for a malformed decision.
   */
  async saveTransfer(callSid: string, decision: TransferDecision): Promise<void> {
    if (this.opts.readOnly || this.closed) throw new PostgresStoreError('call store: a read-only or closed store cannot save a transfer', false);
    const json = transferToJson(checkTransfer(decision));
    await this.timed(this.sql.unsafe(TRANSFER_SAVE, [callSid, json], { prepare: true }), 'save transfer');
  }

  /** The call's latest decision as the database holds it (whichever instance saved it); rejects (retryable) when it cannot answer. */
  async transfer(callSid: string): Promise<TransferDecision | undefined> {
    if (this.closed) throw new PostgresStoreError('call store: closed', false);
    return (await this.timed(this.readTransfer(callSid), 'read transfer')) ?? undefined;
  }

  /**
   * The next outbound slot across every instance on this database (SLOT_RESERVE: one statement). The slot is
   * in the database's clock, like the leases: instances whose clocks agree with it (NTP) place calls at it.
   */
  async reserveOutboundSlot(intervalMs: number): Promise<number> {
    const interval = slotIntervalMs(intervalMs);
    if (this.opts.readOnly || this.closed) throw new PostgresStoreError('call store: a read-only or closed store cannot reserve outbound slots', false);
    const [row] = await this.timed(this.sql.unsafe<{ slot_ms: string }[]>(SLOT_RESERVE, [interval], { prepare: true }), 'reserve outbound slot');
    return Number(row!.slot_ms);
  }

  // ── Retention (store/retention.ts) ─────────────────────────────────────

  /** Oldest first, by the listing's start time; calls still 'in_progress' too (an abandoned row: docs/postgres.md, Retention). Rejects (retryable) when the database cannot answer. */
  async expiredCalls(before: Date, limit: number): Promise<{ callSid: string; recordingObject: string | null }[]> {
    const n = retentionLimit(limit);
    if (this.closed) throw new PostgresStoreError('call store: closed', false);
    await this.flush();
    const rows = await this.timed(
      this.sql.unsafe<{ call_sid: string; recording_object: string | null }[]>(EXPIRED, [before, n], { prepare: true }),
      'find expired calls',
    );
    return rows.map((r) => ({ callSid: r.call_sid, recordingObject: r.recording_object }));
  }

  /**
   * One transaction: entries, status events, transfer decision, claims and the rows. Calls this instance still
   * carries are forgotten first (nothing of theirs is written back by a later flush); another instance still
   * writing one of them would write a new partial row — only abandoned calls are that old.
   */
  async deleteCalls(callSids: readonly string[]): Promise<number> {
    if (this.opts.readOnly || this.closed) throw new PostgresStoreError('call store: a read-only or closed store cannot delete calls', false);
    if (callSids.length === 0) return 0;
    this.forget(callSids);
    await this.flush();
    const sids = [...callSids];
    const ranges = claimRanges(sids);
    const done = await this.timed(
      this.sql.begin((tx) => [
        tx.unsafe('DELETE FROM call_entries WHERE call_sid = ANY($1::text[])', [sids], { prepare: true }),
        tx.unsafe('DELETE FROM call_status_events WHERE call_sid = ANY($1::text[])', [sids], { prepare: true }),
        tx.unsafe('DELETE FROM call_transfers WHERE call_sid = ANY($1::text[])', [sids], { prepare: true }),
        tx.unsafe(CLAIMS_DELETE, [ranges.exact, ranges.lo, ranges.hi], { prepare: true }),
        tx.unsafe('DELETE FROM calls WHERE call_sid = ANY($1::text[])', [sids], { prepare: true }),
      ]),
      'delete calls',
    );
    return done.at(-1)!.count;
  }

  async acquireLease(name: string, holder: string, ttlMs: number): Promise<boolean> {
    const ttl = leaseTtlMs(ttlMs);
    if (this.opts.readOnly || this.closed) throw new PostgresStoreError('call store: a read-only or closed store cannot hold a lease', false);
    const rows = await this.timed(this.sql.unsafe(LEASE_ACQUIRE, [name, holder, ttl], { prepare: true }), 'acquire lease');
    return rows.length === 1;
  }

  async releaseLease(name: string, holder: string): Promise<void> {
    if (this.opts.readOnly || this.closed) return;
    await this.timed(this.sql.unsafe('DELETE FROM store_leases WHERE name = $1 AND holder = $2', [name, holder], { prepare: true }), 'release lease');
  }

  /**
   * Without arguments: how this instance's writing goes (PostgresStoreStats, at once; /voice/health and metrics).
   * With a window: the console's stats (CallStore.stats, search.ts), read from the database.
   */
  stats(): PostgresStoreStats;
  stats(since: Date, bucketMs: number): Promise<CallStats>;
  stats(since?: Date, bucketMs?: number): PostgresStoreStats | Promise<CallStats> {
    if (since !== undefined || bucketMs !== undefined) return this.callStats(since as Date, bucketMs as number);
    return { instanceId: this.instanceId, reachable: this.reachable, queued: this.queued(), dropped: this.dropped, lastError: this.lastError };
  }

  // ── Reads (flush first, so this instance reads its own writes) ─────────

  async get(callSid: string): Promise<CallRecord | undefined> {
    await this.flush();
    const [rows, entries, statuses, transfer] = await this.timed(this.read(callSid), 'read');
    const row = rows[0];
    if (!row) return undefined;
    const header = {
      ...headerFromRow(row, (n, field) => openField(n, this.ring, callSid, field)),
      transfer,
      status: row.status,
      statusEvents: statuses.map(
        (s): StatusEvent => ({
          sequenceNumber: s.sequence_number,
          status: s.status,
          timestamp: iso(s.timestamp),
          callDurationS: s.call_duration_s,
          receivedAt: s.received_at.toISOString(),
        }),
      ),
    };
    return this.record(header, entries);
  }

  private read(callSid: string) {
    return Promise.all([
      this.sql.unsafe<Row[]>('SELECT * FROM calls WHERE call_sid = $1', [callSid], { prepare: true }),
      this.sql.unsafe<{ kind: EntryKind; data: string }[]>(
        'SELECT kind, data FROM call_entries WHERE call_sid = $1 ORDER BY kind, at_ms, id',
        [callSid],
        { prepare: true },
      ),
      this.sql.unsafe<{ sequence_number: number | null; status: string; timestamp: Date | null; call_duration_s: number | null; received_at: Date }[]>(
        `SELECT sequence_number, status, "timestamp", call_duration_s, received_at FROM call_status_events
         WHERE call_sid = $1 ORDER BY sequence_number ASC NULLS LAST, id`,
        [callSid],
        { prepare: true },
      ),
      this.readTransfer(callSid),
    ]);
  }

  private async readTransfer(callSid: string): Promise<TransferDecision | null> {
    const [row] = await this.sql.unsafe<{ decision: string }[]>('SELECT decision FROM call_transfers WHERE call_sid = $1', [callSid], { prepare: true });
    return transferFromJson(row?.decision);
  }

  async list(opts: ListOptions = {}): Promise<CallSummary[]> {
    return (await this.listPage(opts)).calls;
  }

  async listPage(opts: ListOptions = {}): Promise<CallPage> {
    await this.flush();
    const limit = listLimit(opts);
    // The cursor keeps the sort key at the database's precision (µs: created_at is now()), as ISO text, and sends it
    // back as text: the driver would cut a timestamptz parameter to a JS Date's ms.
    const rows = await this.timed(this.sql.unsafe<(SummaryRow<Date> & { k: string })[]>(
      `SELECT call_sid, from_number, to_number, coalesce(started_at, answered_at, created_at) AS started_at, duration_ms,
              status, state, outcome, end_reason, cost_usd, agent, direction,
              to_char(coalesce(started_at, answered_at, created_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS k
       FROM calls WHERE coalesce(started_at, answered_at, created_at) >= $1
         AND ($3::text IS NULL OR (coalesce(started_at, answered_at, created_at), call_sid) < ($3::text::timestamptz, $4::text))
       ORDER BY coalesce(started_at, answered_at, created_at) DESC, call_sid DESC LIMIT $2`,
      [opts.since ?? new Date(0), limit + 1, opts.after?.t ?? null, opts.after?.sid ?? ''],
      { prepare: true },
    ), 'list');
    return this.page(rows, limit, (r) => r.k);
  }

  // ── The console's queries (search.ts; flush first, like list) ──────────

  async searchCalls(filter: CallFilter, opts: SearchOptions = {}): Promise<SearchPage> {
    const s = checkSearch(opts);
    const params: unknown[] = [];
    const where = searchWhere(filter, 'postgres', (v) => (params.push(v), `$${params.length}`));
    await this.flush();
    const rows = await this.timed(
      this.sql.unsafe<SummaryRow<Date>[]>(
        `SELECT ${SUMMARY_COLUMNS_SQL} FROM calls c WHERE ${where} ORDER BY ${searchOrder(s)} LIMIT ${s.limit + 1} OFFSET ${s.offset}`,
        params as postgres.ParameterOrJSON<never>[],
      ),
      'search',
    );
    const page = this.page([...rows], s.limit, (r) => r.started_at.toISOString());
    return { calls: page.calls, hasMore: page.next !== null };
  }

  async callsInProgress(limit: number): Promise<CallSummary[]> {
    const n = checkInProgressLimit(limit);
    await this.flush();
    const rows = await this.timed(
      this.sql.unsafe<SummaryRow<Date>[]>(
        `SELECT ${SUMMARY_COLUMNS_SQL} FROM calls c WHERE c.state = 'in_progress' ORDER BY ${START_SQL} DESC, c.call_sid DESC LIMIT $1`,
        [n],
        { prepare: true },
      ),
      'calls in progress',
    );
    return this.page([...rows], n, (r) => r.started_at.toISOString()).calls;
  }

  private async callStats(since: Date, bucketMs: number): Promise<CallStats> {
    const w = statsWindow(since, bucketMs, Date.now());
    await this.flush();
    const bucket = (t: string) => `floor(extract(epoch FROM (${t} - $1::timestamptz)) * 1000 / $2)::bigint`;
    const failed = FAILED_END_REASONS.map((r) => `'${r}'`).join(', ');
    const [started, ended, latencies, live] = await this.timed(
      Promise.all([
        this.sql.unsafe<{ b: string; n: string }[]>(
          `SELECT ${bucket(START_SQL)} AS b, count(*) AS n FROM calls c WHERE ${START_SQL} >= $1 GROUP BY b`,
          [since, bucketMs],
          { prepare: true },
        ),
        this.sql.unsafe<{ b: string; n: string; failed: string }[]>(
          `SELECT ${bucket('c.ended_at')} AS b, count(*) AS n, count(*) FILTER (WHERE c.end_reason IN (${failed})) AS failed
           FROM calls c WHERE c.ended_at IS NOT NULL AND c.ended_at >= $1 GROUP BY b`,
          [since, bucketMs],
          { prepare: true },
        ),
        this.sql.unsafe<{ start: Date; data: string }[]>(
          `SELECT ${START_SQL} AS start, e.data FROM calls c JOIN call_entries e ON e.call_sid = c.call_sid AND e.kind = 'latency'
           WHERE ${START_SQL} >= $1 ORDER BY ${START_SQL} DESC, e.id DESC LIMIT $2`,
          [new Date(w.sinceMs - STATS_LOOKBACK_MS), MAX_STATS_LATENCIES],
          { prepare: true },
        ),
        this.sql.unsafe<{ n: string }[]>(`SELECT count(*) AS n FROM calls WHERE state = 'in_progress'`, [], { prepare: true }),
      ]),
      'stats',
    );
    return foldStats(
      w,
      bucketMs,
      started.map((r) => ({ b: Number(r.b), n: Number(r.n) })),
      ended.map((r) => ({ b: Number(r.b), n: Number(r.n), failed: Number(r.failed) })),
      latencies.map((r) => ({ callStartMs: r.start.getTime(), data: r.data })),
      Number(live[0]?.n ?? 0),
    );
  }

  // ── Flushing ───────────────────────────────────────────────────────────

  /**
   * Write everything queued so far. Never rejects: a failed flush keeps its
   * work for the next one. Flushes run one at a time; a call while one is in
   * flight waits for it and then writes what arrived meanwhile.
   */
  flush(): Promise<void> {
    this.cancelSoon();
    if (!this.current) return this.startFlush();
    this.next ??= this.current.then(() => {
      this.next = undefined;
      return this.startFlush();
    });
    return this.next;
  }

  /** Flush what is left, release the lease (other instances may reap at once) and disconnect. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.stopFlushTimer();
    this.stopLeases();
    await this.flush();
    this.closed = true;
    const left = this.unwritten();
    if (left > 0) this.log.error({ unwritten: left, dropped: this.dropped }, 'call store closed with records it could not write');
    await this.leases.release();
    await this.sql.end({ timeout: 2 }).catch(() => {});
  }

  private startFlush(): Promise<void> {
    const p: Promise<void> = this.flushOnce().finally(() => {
      if (this.current === p) this.current = undefined;
    });
    this.current = p;
    return p;
  }

  private async flushOnce(): Promise<void> {
    if (this.closed) return;
    const batch = this.takeQueued();
    if (!batch) return;
    try {
      const toLoad = this.unloaded();
      if (toLoad.length > 0) await this.timed(this.load(toLoad), 'read headers');
      const headers = this.takeHeaders(batch);
      await this.timed(this.write(batch.entries, batch.statuses, headers), 'flush');
    } catch (err) {
      this.putBack(batch);
      this.failed(err);
      return;
    }
    this.done(batch);
    this.succeeded();
  }

  /** Read the rows of calls first touched here; the buffer replays the changes made meanwhile on them. */
  private async load(sids: string[]): Promise<void> {
    const rows = await this.sql.unsafe<Row[]>(READ_HEADERS, [sids], { prepare: true });
    const byId = new Map(rows.map((r) => [r.call_sid, r]));
    for (const sid of sids) {
      const row = byId.get(sid);
      // A number this instance cannot open stays sealed as stored (sealField writes it back as it is).
      this.loaded(sid, row ? headerFromRow(row, (n, field) => openField(n, this.ring, sid, field, (stored) => stored)) : undefined);
    }
  }

  private async write(entries: PendingEntry[], statuses: StatusNote[], headers: { h: CallHeader; rev: number }[]): Promise<void> {
    const cols = {
      uid: [] as string[],
      sid: [] as string[],
      kind: [] as string[],
      at: [] as number[],
      label: [] as (string | null)[],
      ok: [] as (string | null)[], // 't'/'f': the driver sends a JS boolean[] as one boolean
      data: [] as string[],
    };
    for (const e of entries) {
      e.uid ??= randomUUID();
      cols.uid.push(e.uid);
      cols.sid.push(e.callSid);
      cols.kind.push(e.kind);
      cols.at.push(e.atMs);
      cols.label.push(e.label);
      cols.ok.push(e.ok === null ? null : e.ok ? 't' : 'f');
      cols.data.push(this.entryData(e));
    }
    const h = headers.map(({ h, rev }) => this.headerRow(h, rev));
    const webhook = h.filter((r) => r[2] !== null || r[3] !== null || r[5] !== null || r[18] !== null || r[19] !== null); // from, to, answered_at, agent, direction
    const stubSids = [...new Set([...cols.sid, ...statuses.map((s) => s.callSid)])];
    const endedSids = headers.filter(({ h }) => h.state === 'completed' && h.outcome === null).map(({ h }) => h.callSid);
    const statusSids = [...new Set(statuses.map((s) => s.callSid))];
    await this.sql.begin((tx) => {
      const q: postgres.PendingQuery<postgres.Row[]>[] = [];
      if (h.length > 0) {
        const col = (i: number) => h.map((r) => r[i] ?? null);
        q.push(tx.unsafe(HEADER_UPSERT, [...Array.from({ length: 22 }, (_, i) => col(i)), this.instanceId] as never[], { prepare: true }));
        if (webhook.length > 0) {
          q.push(tx.unsafe(WEBHOOK_FIELDS, [0, 2, 3, 5, 18, 19].map((i) => webhook.map((r) => r[i] ?? null)) as never[], { prepare: true }));
        }
      }
      if (stubSids.length > 0) q.push(tx.unsafe(STUBS_INSERT, [stubSids], { prepare: true }));
      if (entries.length > 0) {
        q.push(tx.unsafe(ENTRIES_INSERT, [cols.uid, cols.sid, cols.kind, cols.at, cols.label, cols.ok, cols.data] as never[], { prepare: true }));
      }
      for (const s of statuses) {
        const sealed = this.sealedNumbers(s);
        q.push(
          tx.unsafe(STATUS_INSERT, [s.callSid, s.seq, s.status, s.timestamp, s.durationS, s.receivedAt, sealed.from, sealed.to, s.terminal, s.direction] as never[], {
            prepare: true,
          }),
        );
      }
      if (statusSids.length > 0) q.push(tx.unsafe(STATUS_LATEST, [statusSids], { prepare: true }));
      if (endedSids.length > 0) q.push(tx.unsafe(OUTCOME_UPDATE, [endedSids], { prepare: true }));
      return q;
    });
  }

  /** The 22 unnest columns of HEADER_UPSERT, in order. */
  private headerRow(h: CallHeader, rev: number): (string | number | null)[] {
    const sealed = this.headerToWrite(h);
    return [
      h.callSid,
      h.streamSid,
      sealed.from,
      sealed.to,
      h.startedAt,
      h.answeredAt,
      h.endedAt,
      h.durationMs,
      h.endReason,
      h.outcome,
      h.audioMode,
      h.model,
      h.state,
      h.relay ? JSON.stringify(h.relay) : null,
      h.protocolErrors,
      JSON.stringify(h.usage),
      h.estimatedCostUsd,
      rev,
      h.agent,
      h.direction,
      h.recording ? recordingToJson(h.recording) : null,
      h.recording?.object ?? null,
    ];
  }

  // ── Internals ──────────────────────────────────────────────────────────

  /**
   * Bound a database operation by writeTimeoutMs. On timeout the pool is
   * replaced (the old connections are dropped, so a black-holed query cannot
   * hold a flush forever) and a retryable PostgresStoreError is thrown.
   */
  private timed<T>(work: Promise<T>, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const old = this.sql;
        this.sql = this.connect();
        void old.end({ timeout: 0 }).catch(() => {});
        reject(new PostgresStoreError(`call store: ${what} took longer than ${this.writeTimeoutMs} ms`, true));
      }, this.writeTimeoutMs);
    });
    work.catch(() => {}); // its fate no longer matters once the timeout won
    // A failure of the server or the connection (refused, reset, ended) is worth a retry: say so, typed.
    const typed = work.catch((err: unknown) => {
      throw err instanceof PostgresStoreError ? err : new PostgresStoreError(`call store: ${what} failed: ${errText(err)}`, true);
    });
    return Promise.race([typed, timeout]).finally(() => clearTimeout(timer));
  }

  private failed(err: unknown): void {
    const now = Date.now();
    this.lastError = errText(err);
    const first = this.reachable;
    this.reachable = false;
    if (first || now - this.lastFailureLogAt >= FAILURE_LOG_EVERY_MS) {
      this.lastFailureLogAt = now;
      this.droppedLogged = this.dropped;
      this.log.error({ err: this.lastError, queued: this.queued(), dropped: this.dropped }, 'call store: PostgreSQL write failed; records kept in memory, will retry');
    }
  }

  private succeeded(): void {
    if (!this.reachable) {
      this.reachable = true;
      this.log.warn({ queued: this.queued(), dropped: this.dropped }, 'call store: PostgreSQL writable again; queued records written');
      this.droppedLogged = this.dropped;
    } else if (this.dropped > this.droppedLogged) {
      this.log.error({ queued: this.queued(), dropped: this.dropped }, 'call store: queue full, records dropped');
      this.droppedLogged = this.dropped;
    }
  }

  private async migrate(): Promise<void> {
    const schema = this.opts.schema;
    await this.sql.begin(async (tx) => {
      // One migrator at a time per schema: a second instance starting now waits here, then finds the work done.
      await tx.unsafe(`SELECT pg_advisory_xact_lock(hashtext('callbridge migrations ' || $1))`, [schema ?? '']);
      if (schema) await tx.unsafe(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
      await tx.unsafe(`CREATE TABLE IF NOT EXISTS callbridge_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`);
      const [row] = await tx.unsafe<{ v: number | null }[]>('SELECT max(version) AS v FROM callbridge_migrations');
      const version = row?.v ?? 0;
      if (version > MIGRATIONS.length) {
        throw new PostgresStoreError(`call store has schema version ${version}, newer than this callbridge (${MIGRATIONS.length})`, false);
      }
      for (let v = version; v < MIGRATIONS.length; v++) {
        await tx.unsafe(MIGRATIONS[v]!);
        await tx.unsafe('INSERT INTO callbridge_migrations (version) VALUES ($1)', [v + 1]);
      }
    });
  }

  /** A reader migrates nothing: the schema must be this callbridge's (an older one lacks what reads ask for). */
  private async checkSchema(): Promise<void> {
    const [row] = await this.sql.unsafe<{ t: string | null }[]>(`SELECT to_regclass('callbridge_migrations')::text AS t`);
    if (!row?.t) throw new PostgresStoreError('no callbridge call store in this database (no migrations applied)', false);
    const [v] = await this.sql.unsafe<{ v: number | null }[]>('SELECT max(version) AS v FROM callbridge_migrations');
    const version = v?.v ?? 0;
    if (version < MIGRATIONS.length) {
      throw new PostgresStoreError(
        `call store has schema version ${version}, older than this callbridge (${MIGRATIONS.length}): start a callbridge server of this version on it once to upgrade it`,
        false,
      );
    }
  }
}

const iso = (d: Date | null): string | null => (d ? d.toISOString() : null);
