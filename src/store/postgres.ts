/**
 * The shared call store: PostgreSQL, for several callbridge instances behind
 * one load balancer. Same records, readers, encryption and cost as the SQLite
 * store (sqlite.ts); selected by DATABASE_URL=postgres://… (open.ts).
 * Driver: postgres (porsager/postgres.js), see docs/postgres.md.
 *
 * Writes never touch the audio path. Every CallStore write only updates an
 * in-memory call header or pushes onto a bounded queue; a flush writes, in
 * one transaction and one pipelined round trip:
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
 * owner. Each instance heartbeats a lease row (`instances`) holding a random
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
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import postgres from 'postgres';
import type { CallEndInfo, CallEvent, ToolCallRecord, TranscriptLine, TurnLatency, Usage } from '../records.js';
import type { Prices } from '../config.js';
import type { Logger } from '../log.js';
import type { StatusCallback } from '../twilio/webhooks.js';
import { estimateCostUsd } from './cost.js';
import { keyring, openField, openText, sealField, sealText, type Keyring } from './crypto.js';
import { emptyHeader, endHeader, headerFromRow, summaryFromRow, sumUsage, type CallHeader, type CallRow, type SummaryRow } from './rows.js';
import type { CallPage, CallRecord, CallStore, CallSummary, ListOptions, StatusEvent } from './types.js';

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

/** How long an answered call whose stream never started keeps its header in memory. */
const STREAMLESS_KEEP_MS = 10 * 60_000;
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
];

export interface PostgresStoreOptions {
  /** postgres://user@host:port/db (DATABASE_URL). */
  url: string;
  /** A schema of its own (created if missing); default: the connection's search_path. */
  schema?: string;
  transcriptKey?: Buffer;
  /** Earlier keys (TRANSCRIPT_KEY_OLD): values they sealed are still read; nothing new is sealed with them. */
  transcriptKeysOld?: Buffer[];
  prices: Prices;
  log: Logger;
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

/** A typed store error: `retryable` says whether trying again later can help. */
export class PostgresStoreError extends Error {
  constructor(message: string, readonly retryable: boolean) {
    super(message);
    this.name = 'PostgresStoreError';
  }
}

/** A change to a call's header: the columns this instance owns while it carries the call (status lives in its own rows). */
type Op = (h: CallHeader) => void;

interface Live {
  h: CallHeader;
  /** false until the call's row (if any) was read: changes wait in `ops` and are replayed on it. */
  loaded: boolean;
  ops: Op[];
  dirty: boolean;
  /** Revision of the latest change (monotonic per store; the database keeps the newest). */
  rev: number;
}

type EntryKind = 'transcript' | 'tool' | 'latency' | 'event';

interface PendingEntry {
  uid: string | null;
  callSid: string;
  kind: EntryKind;
  atMs: number;
  label: string | null;
  ok: boolean | null;
  /** JSON of the entry, sealed at flush time when personal. */
  json: string;
  /** Sealed form, kept so a retried entry is written as it was first sent. */
  data: string | null;
}

interface PendingStatus {
  callSid: string;
  seq: number | null;
  status: string;
  timestamp: string | null;
  durationS: number | null;
  receivedAt: string;
  from: string | null;
  to: string | null;
  terminal: boolean;
}

interface Row extends CallRow<Date> {
  created_at: Date;
}

type Sql = postgres.Sql;

const HEADER_UPSERT = `
  INSERT INTO calls AS c (call_sid, stream_sid, from_number, to_number, started_at, answered_at, ended_at, duration_ms,
    end_reason, outcome, audio_mode, model, state, relay, protocol_errors, usage, cost_usd, owner_rev, instance_id)
  SELECT t.*, $19::text FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[],
    $7::timestamptz[], $8::float8[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::int[],
    $16::text[], $17::float8[], $18::bigint[]) AS t
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
    state = excluded.state,
    relay = excluded.relay,
    protocol_errors = excluded.protocol_errors,
    usage = excluded.usage,
    cost_usd = excluded.cost_usd,
    owner_rev = excluded.owner_rev,
    instance_id = excluded.instance_id,
    updated_at = now()
  WHERE (c.owner_rev IS NULL OR c.instance_id IS DISTINCT FROM excluded.instance_id OR c.owner_rev <= excluded.owner_rev)
    -- only the owner: no other instance claimed the call's stream, and no header without a stream undoes one
    AND NOT EXISTS (SELECT 1 FROM call_claims k WHERE k.call_sid = c.call_sid AND k.instance_id <> excluded.instance_id)
    AND (c.started_at IS NULL OR excluded.started_at IS NOT NULL OR c.instance_id IS NOT DISTINCT FROM excluded.instance_id)`;

/** What a header write of a non-owner adds (after HEADER_UPSERT, same columns): the webhook's own fields, where the row has none. */
const WEBHOOK_FIELDS = `
  UPDATE calls c SET from_number = coalesce(c.from_number, t.f), to_number = coalesce(c.to_number, t.t),
    answered_at = coalesce(c.answered_at, t.a), updated_at = now()
  FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) AS t(s, f, t, a)
  WHERE c.call_sid = t.s AND ((c.from_number IS NULL AND t.f IS NOT NULL) OR (c.to_number IS NULL AND t.t IS NOT NULL)
    OR (c.answered_at IS NULL AND t.a IS NOT NULL))`;

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
  UPDATE calls c SET outcome = CASE
      WHEN c.end_reason IN ('model_unavailable', 'model_disconnected', 'error') THEN 'failed'
      WHEN EXISTS (SELECT 1 FROM call_entries e WHERE e.call_sid = c.call_sid AND e.kind = 'tool' AND e.label = 'check_eligibility' AND e.ok) THEN 'eligibility_checked'
      WHEN EXISTS (SELECT 1 FROM call_entries e WHERE e.call_sid = c.call_sid AND e.kind = 'tool' AND e.label = 'check_eligibility') THEN 'eligibility_failed'
      ELSE 'no_check' END
  WHERE c.call_sid = ANY($1::text[]) AND c.state = 'completed'`;

const READ_HEADERS = `SELECT * FROM calls WHERE call_sid = ANY($1::text[])`;

export class PostgresCallStore implements CallStore {
  readonly instanceId: string;
  private sql: Sql;
  private readonly ring: Keyring;
  /** This process's lease token (random per process): only its holder renews or releases the lease. */
  private readonly leaseToken = randomBytes(12).toString('hex');
  private leaseLost = false;
  private readonly flushMs: number;
  private readonly maxQueued: number;
  private readonly writeTimeoutMs: number;
  private readonly live = new Map<string, Live>();
  private pending: PendingEntry[] = [];
  private statuses: PendingStatus[] = [];
  /** Entries + statuses taken by the flush in flight (they count against maxQueued). */
  private inFlight = 0;
  private dropped = 0;
  private droppedLogged = 0;
  private reachable = true;
  private lastError: string | null = null;
  private lastFailureLogAt = 0;
  private rev = Date.now() * 1000;
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  private current: Promise<void> | undefined;
  private next: Promise<void> | undefined;
  private leaseTimer: NodeJS.Timeout | undefined;
  private leaseMs = 0;
  private beating = false;
  private closed = false;

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
      store.timer = setInterval(() => {
        if (!store.current) void store.flush();
      }, store.flushMs);
      store.timer.unref();
    }
    return store;
  }

  private constructor(private readonly opts: PostgresStoreOptions) {
    if (opts.schema !== undefined && !/^[a-z_][a-z0-9_]{0,62}$/.test(opts.schema)) {
      throw new PostgresStoreError(`call store: schema name ${JSON.stringify(opts.schema)} must be lower-case letters, digits and _`, false);
    }
    this.instanceId = opts.instanceId ?? `${hostname()}-${process.pid}`;
    this.ring = keyring(opts.transcriptKey, opts.transcriptKeysOld);
    this.flushMs = opts.flushMs ?? PG_DEFAULTS.flushMs;
    this.maxQueued = opts.maxQueued ?? PG_DEFAULTS.maxQueued;
    this.writeTimeoutMs = opts.writeTimeoutMs ?? PG_DEFAULTS.writeTimeoutMs;
    this.sql = this.connect();
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

  // ── Writes from the call path: memory only ─────────────────────────────

  answered(callSid: string, info: { from?: string; to?: string }): void {
    const answeredAt = new Date().toISOString();
    this.change(callSid, true, (h) => {
      h.from = info.from ?? h.from;
      h.to = info.to ?? h.to;
      h.answeredAt ??= answeredAt;
    });
  }

  started(callSid: string, info: { streamSid: string; audioMode: string; startedAt: Date; model?: string }): void {
    this.change(callSid, true, (h) => {
      h.streamSid = info.streamSid;
      h.audioMode = info.audioMode;
      h.model = info.model ?? null;
      h.startedAt = info.startedAt.toISOString();
      h.state = 'in_progress';
    });
  }

  appendTranscript(callSid: string, line: TranscriptLine): void {
    // Ordered at read time by when it was said (at_ms): a late caller transcription still lands before the reply.
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
    this.change(callSid, false, (h) => {
      h.usage = sumUsage(h.usage, u);
    });
  }

  ended(callSid: string, info: CallEndInfo): void {
    this.change(callSid, true, (h) => endHeader(h, info));
  }

  recordStatus(v: StatusCallback): void {
    if (this.closed) return;
    if (!this.admit(1)) return;
    this.statuses.push({
      callSid: v.callSid,
      seq: v.sequenceNumber ?? null,
      status: v.callStatus,
      timestamp: v.timestampMs !== undefined ? new Date(v.timestampMs).toISOString() : null,
      durationS: v.callDurationS ?? null,
      receivedAt: new Date().toISOString(),
      from: v.from || null,
      to: v.to || null,
      terminal: v.terminal,
    });
    this.soon();
  }

  // ── Instances and leases ───────────────────────────────────────────────

  /**
   * Take this instance's lease, then heartbeat it every leaseMs/6; each beat
   * also reaps the calls of instances whose lease expired. A lease is valid
   * for 2/3 leaseMs after a beat, so a dead instance's calls are marked
   * 'interrupted' at most leaseMs after its last beat, and a live one can
   * miss three beats before another instance considers it gone.
   *
   * The lease of this INSTANCE_ID may be held by another process's token:
   * released (a clean exit) or expired, it is taken at once; still valid, it
   * is watched until it expires (the holder died: a restart after kill -9
   * waits at most 2/3 of the holder's leaseMs) or is renewed — then another
   * live process uses this INSTANCE_ID, and this rejects with a
   * non-retryable PostgresStoreError, having touched nothing of its calls.
   */
  async startLeases(opts: { leaseMs?: number } = {}): Promise<void> {
    if (this.opts.readOnly) throw new PostgresStoreError('call store: a read-only store holds no lease', false);
    const leaseMs = opts.leaseMs ?? PG_DEFAULTS.leaseMs;
    if (!Number.isFinite(leaseMs) || leaseMs < 300) throw new PostgresStoreError(`call store: leaseMs must be at least 300 (got ${leaseMs})`, false);
    this.leaseMs = leaseMs;
    await this.acquireLease();
    this.leaseTimer = setInterval(() => void this.beatAndReap(), Math.max(10, Math.round(this.leaseMs / 6)));
    this.leaseTimer.unref();
  }

  private async acquireLease(): Promise<void> {
    const validMs = Math.round((this.leaseMs * 2) / 3);
    let watched: { token: string | null; heartbeat: string } | undefined;
    for (;;) {
      // Take the lease if it is free (no row, released or expired): one statement, so two starting processes cannot both win.
      const taken = await this.timed(
        this.sql.unsafe<{ instance_id: string }[]>(
          `INSERT INTO instances AS i (instance_id, started_at, heartbeat_at, expires_at, token)
           VALUES ($1, now(), now(), now() + $2 * interval '1 millisecond', $3)
           ON CONFLICT (instance_id) DO UPDATE SET started_at = now(), heartbeat_at = now(), expires_at = excluded.expires_at, token = excluded.token
           WHERE i.expires_at <= now()
           RETURNING instance_id`,
          [this.instanceId, validMs, this.leaseToken],
          { prepare: true },
        ),
        'take lease',
      );
      if (taken.length === 1) return;
      const [held] = await this.timed(
        this.sql.unsafe<{ token: string | null; heartbeat: string; left_ms: number }[]>(
          `SELECT token, heartbeat_at::text AS heartbeat, greatest(0, extract(epoch FROM expires_at - now()) * 1000)::float8 AS left_ms
           FROM instances WHERE instance_id = $1`,
          [this.instanceId],
          { prepare: true },
        ),
        'read lease',
      );
      if (!held) continue; // forgotten meanwhile: try again
      if (watched && (held.token !== watched.token || held.heartbeat !== watched.heartbeat)) {
        throw new PostgresStoreError(
          `INSTANCE_ID ${this.instanceId} is in use: another live process holds its lease (renewed while this one waited); give every instance its own INSTANCE_ID`,
          false,
        );
      }
      if (!watched) {
        this.opts.log.warn({ instanceId: this.instanceId, leftMs: Math.round(held.left_ms) }, 'the lease of this INSTANCE_ID is held: waiting for it to expire (a restart after a crash) or be renewed (another live process)');
      }
      watched = { token: held.token, heartbeat: held.heartbeat };
      // Look again before its holder's next beat could be missed: every leaseMs/6, and just after it expires.
      await sleep(Math.max(10, Math.min(Math.round(this.leaseMs / 6), Math.ceil(held.left_ms) + 10)));
    }
  }

  /** Stop heartbeating (the lease then expires and other instances reap this one's calls). */
  stopLeases(): void {
    if (this.leaseTimer) clearInterval(this.leaseTimer);
    this.leaseTimer = undefined;
  }

  /** Mark 'interrupted' the in-progress calls of every other instance whose lease expired. Returns how many. */
  async reapExpired(): Promise<number> {
    const rows = await this.timed(
      this.sql.unsafe<{ call_sid: string; instance_id: string }[]>(
        `UPDATE calls c SET state = 'interrupted', end_reason = coalesce(c.end_reason, 'instance_lost'), updated_at = now()
         FROM instances i
         WHERE c.state = 'in_progress' AND c.instance_id = i.instance_id AND i.expires_at < now() AND i.instance_id <> $1
         RETURNING c.call_sid, c.instance_id`,
        [this.instanceId],
        { prepare: true },
      ),
      'reap',
    );
    // Leases long expired whose calls are all settled are history: forget them (instance ids change with every restart by default).
    await this.timed(
      this.sql.unsafe(
        `DELETE FROM instances i WHERE i.expires_at < now() - interval '1 hour'
         AND NOT EXISTS (SELECT 1 FROM calls c WHERE c.instance_id = i.instance_id AND c.state = 'in_progress')`,
        [],
        { prepare: true },
      ),
      'forget old leases',
    );
    if (rows.length > 0) {
      const byInstance: Record<string, number> = {};
      for (const r of rows) byInstance[r.instance_id] = (byInstance[r.instance_id] ?? 0) + 1;
      this.opts.log.warn({ count: rows.length, instances: byInstance }, 'calls of instances whose lease expired marked interrupted');
    }
    return rows.length;
  }

  /**
   * On start-up: this instance's own calls left in progress by its previous
   * run (same instance id), plus those of instances whose lease expired,
   * become 'interrupted'. Calls of live instances are never touched.
   */
  async markInterrupted(): Promise<number> {
    await this.flush();
    const live = [...this.live.keys()];
    const own = await this.timed(
      this.sql.unsafe(
        `UPDATE calls SET state = 'interrupted', end_reason = coalesce(end_reason, 'process_exit'), updated_at = now()
         WHERE state = 'in_progress' AND instance_id = $1 AND NOT (call_sid = ANY($2::text[]))`,
        [this.instanceId, live],
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

  stats(): PostgresStoreStats {
    return {
      instanceId: this.instanceId,
      reachable: this.reachable,
      queued: this.pending.length + this.statuses.length + this.inFlight,
      dropped: this.dropped,
      lastError: this.lastError,
    };
  }

  // ── Reads (flush first, so this instance reads its own writes) ─────────

  async get(callSid: string): Promise<CallRecord | undefined> {
    await this.flush();
    const [rows, entries, statuses] = await this.timed(this.read(callSid), 'read');
    const row = rows[0];
    if (!row) return undefined;
    const rec: CallRecord = {
      ...headerFromRow(row, (n, field) => openField(n, this.ring, callSid, field)),
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
      transcript: [],
      toolCalls: [],
      turnLatencies: [],
      events: [],
    };
    const open = (data: string, kind: 'transcript' | 'tool' | 'event') => JSON.parse(openText(data, this.ring, callSid, kind)) as unknown;
    for (const e of entries) {
      if (e.kind === 'transcript') rec.transcript.push(open(e.data, 'transcript') as TranscriptLine);
      else if (e.kind === 'tool') rec.toolCalls.push(open(e.data, 'tool') as ToolCallRecord);
      else if (e.kind === 'event') rec.events.push(open(e.data, 'event') as CallEvent);
      else rec.turnLatencies.push(JSON.parse(e.data) as TurnLatency);
    }
    return rec;
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
    ]);
  }

  async list(opts: ListOptions = {}): Promise<CallSummary[]> {
    return (await this.listPage(opts)).calls;
  }

  async listPage(opts: ListOptions = {}): Promise<CallPage> {
    await this.flush();
    const limit = Math.max(1, Math.min(opts.limit ?? 50, 10_000));
    // The cursor keeps the sort key at the database's precision (µs: created_at is now()), as ISO text, and sends it
    // back as text: the driver would cut a timestamptz parameter to a JS Date's ms.
    const rows = await this.timed(this.sql.unsafe<(SummaryRow<Date> & { k: string })[]>(
      `SELECT call_sid, from_number, to_number, coalesce(started_at, answered_at, created_at) AS started_at, duration_ms,
              status, state, outcome, end_reason, cost_usd,
              to_char(coalesce(started_at, answered_at, created_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS k
       FROM calls WHERE coalesce(started_at, answered_at, created_at) >= $1
         AND ($3::text IS NULL OR (coalesce(started_at, answered_at, created_at), call_sid) < ($3::text::timestamptz, $4::text))
       ORDER BY coalesce(started_at, answered_at, created_at) DESC, call_sid DESC LIMIT $2`,
      [opts.since ?? new Date(0), limit + 1, opts.after?.t ?? null, opts.after?.sid ?? ''],
      { prepare: true },
    ), 'list');
    const more = rows.length > limit;
    if (more) rows.pop();
    const last = rows.at(-1);
    return { calls: rows.map((r) => summaryFromRow(r, this.ring)), next: more && last ? { t: last.k, sid: last.call_sid } : null };
  }

  // ── Flushing ───────────────────────────────────────────────────────────

  /**
   * Write everything queued so far. Never rejects: a failed flush keeps its
   * work for the next one. Flushes run one at a time; a call while one is in
   * flight waits for it and then writes what arrived meanwhile.
   */
  flush(): Promise<void> {
    if (this.immediate) {
      clearImmediate(this.immediate);
      this.immediate = undefined;
    }
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
    if (this.timer) clearInterval(this.timer);
    this.stopLeases();
    await this.flush();
    this.closed = true;
    const left = this.pending.length + this.statuses.length + [...this.live.values()].filter((v) => v.dirty).length;
    if (left > 0) this.opts.log.error({ unwritten: left, dropped: this.dropped }, 'call store closed with records it could not write');
    if (this.leaseMs > 0) {
      await this.timed(
        this.sql.unsafe('UPDATE instances SET expires_at = now() WHERE instance_id = $1 AND token = $2', [this.instanceId, this.leaseToken]),
        'release lease',
      ).catch(() => {});
    }
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
    const entries = this.pending;
    const statuses = this.statuses;
    const toLoad = [...this.live.entries()].filter(([, v]) => !v.loaded).map(([sid]) => sid);
    if (entries.length === 0 && statuses.length === 0 && toLoad.length === 0 && ![...this.live.values()].some((v) => v.dirty)) {
      this.evict();
      return;
    }
    this.pending = [];
    this.statuses = [];
    this.inFlight = entries.length + statuses.length;
    let taken: [string, Live, number][] = [];
    try {
      if (toLoad.length > 0) await this.timed(this.load(toLoad), 'read headers');
      taken = [...this.live.entries()].filter(([, v]) => v.dirty && v.loaded).map(([sid, v]) => [sid, v, v.rev]);
      await this.timed(this.write(entries, statuses, taken.map(([, v]) => v)), 'flush');
    } catch (err) {
      this.pending = entries.concat(this.pending);
      this.statuses = statuses.concat(this.statuses);
      this.inFlight = 0;
      this.failed(err);
      return;
    }
    this.inFlight = 0;
    // A header changed while its write was in flight stays dirty for the next flush.
    for (const [, v, rev] of taken) if (v.rev === rev) v.dirty = false;
    this.succeeded();
    this.evict();
  }

  /** Read the rows of calls first touched here, then replay the changes made meanwhile on them. */
  private async load(sids: string[]): Promise<void> {
    const rows = await this.sql.unsafe<Row[]>(READ_HEADERS, [sids], { prepare: true });
    const byId = new Map(rows.map((r) => [r.call_sid, r]));
    for (const sid of sids) {
      const v = this.live.get(sid);
      if (!v || v.loaded) continue;
      const row = byId.get(sid);
      // A number this instance cannot open stays sealed as stored (sealField writes it back as it is).
      v.h = row ? headerFromRow(row, (n, field) => openField(n, this.ring, sid, field, (stored) => stored)) : emptyHeader(sid);
      for (const op of v.ops) op(v.h);
      v.ops = [];
      v.loaded = true;
    }
  }

  private async write(entries: PendingEntry[], statuses: PendingStatus[], headers: Live[]): Promise<void> {
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
      e.data ??= e.kind === 'latency' ? e.json : sealText(e.json, this.ring, e.callSid, e.kind);
      cols.uid.push(e.uid);
      cols.sid.push(e.callSid);
      cols.kind.push(e.kind);
      cols.at.push(e.atMs);
      cols.label.push(e.label);
      cols.ok.push(e.ok === null ? null : e.ok ? 't' : 'f');
      cols.data.push(e.data);
    }
    const h = headers.map((v) => this.headerRow(v));
    const webhook = h.filter((r) => r[2] !== null || r[3] !== null || r[5] !== null); // from, to, answered_at
    const stubSids = [...new Set([...cols.sid, ...statuses.map((s) => s.callSid)])];
    const endedSids = headers.filter((v) => v.h.state === 'completed' && v.h.outcome === null).map((v) => v.h.callSid);
    const statusSids = [...new Set(statuses.map((s) => s.callSid))];
    await this.sql.begin((tx) => {
      const q: postgres.PendingQuery<postgres.Row[]>[] = [];
      if (h.length > 0) {
        const col = (i: number) => h.map((r) => r[i] ?? null);
        q.push(tx.unsafe(HEADER_UPSERT, [...Array.from({ length: 18 }, (_, i) => col(i)), this.instanceId] as never[], { prepare: true }));
        if (webhook.length > 0) {
          q.push(tx.unsafe(WEBHOOK_FIELDS, [0, 2, 3, 5].map((i) => webhook.map((r) => r[i] ?? null)) as never[], { prepare: true }));
        }
      }
      if (stubSids.length > 0) q.push(tx.unsafe(STUBS_INSERT, [stubSids], { prepare: true }));
      if (entries.length > 0) {
        q.push(tx.unsafe(ENTRIES_INSERT, [cols.uid, cols.sid, cols.kind, cols.at, cols.label, cols.ok, cols.data] as never[], { prepare: true }));
      }
      for (const s of statuses) {
        q.push(
          tx.unsafe(STATUS_INSERT, [s.callSid, s.seq, s.status, s.timestamp, s.durationS, s.receivedAt, sealField(s.from, this.ring, s.callSid, 'from'), sealField(s.to, this.ring, s.callSid, 'to'), s.terminal] as never[], {
            prepare: true,
          }),
        );
      }
      if (statusSids.length > 0) q.push(tx.unsafe(STATUS_LATEST, [statusSids], { prepare: true }));
      if (endedSids.length > 0) q.push(tx.unsafe(OUTCOME_UPDATE, [endedSids], { prepare: true }));
      return q;
    });
  }

  /** The 18 unnest columns of HEADER_UPSERT, in order. */
  private headerRow(v: Live): (string | number | null)[] {
    const h = v.h;
    const durationMs = h.durationMs ?? (h.startedAt ? Date.now() - Date.parse(h.startedAt) : 0);
    h.estimatedCostUsd = estimateCostUsd(h.usage, durationMs, this.opts.prices);
    return [
      h.callSid,
      h.streamSid,
      sealField(h.from, this.ring, h.callSid, 'from'),
      sealField(h.to, this.ring, h.callSid, 'to'),
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
      v.rev,
    ];
  }

  // ── Internals ──────────────────────────────────────────────────────────

  private change(callSid: string, soon: boolean, op: Op): void {
    if (this.closed) return;
    let v = this.live.get(callSid);
    if (!v) {
      v = { h: emptyHeader(callSid), loaded: false, ops: [], dirty: false, rev: 0 };
      this.live.set(callSid, v);
    }
    if (v.loaded) op(v.h);
    else v.ops.push(op);
    v.dirty = true;
    v.rev = ++this.rev;
    if (soon) this.soon();
  }

  private enqueue(callSid: string, kind: EntryKind, atMs: number, label: string | null, ok: boolean | null, json: string): void {
    if (this.closed || !this.admit(1)) return;
    this.pending.push({ uid: null, callSid, kind, atMs, label, ok, json, data: null });
  }

  /** Room in the bounded queue? If not, count the refusal (logged by the next failure or recovery report). */
  private admit(n: number): boolean {
    if (this.pending.length + this.statuses.length + this.inFlight + n <= this.maxQueued) return true;
    this.dropped += n;
    return false;
  }

  private soon(): void {
    if (this.immediate || this.closed) return;
    this.immediate = setImmediate(() => {
      this.immediate = undefined;
      void this.flush();
    });
  }

  private async beatAndReap(): Promise<void> {
    if (this.beating) return; // the last beat is still waiting on the database
    this.beating = true;
    try {
      await this.heartbeat();
      await this.reapExpired();
      this.succeeded();
    } catch (err) {
      this.failed(err);
    } finally {
      this.beating = false;
    }
  }

  /** Renew this process's lease (its token's). Lost (another process took this INSTANCE_ID after it expired): a non-retryable error, logged by every failed beat. */
  private async heartbeat(): Promise<void> {
    if (this.leaseLost) throw this.leaseLostError();
    const validMs = Math.round((this.leaseMs * 2) / 3);
    const renewed = await this.timed(
      this.sql.unsafe(
        `UPDATE instances SET heartbeat_at = now(), expires_at = now() + $2 * interval '1 millisecond' WHERE instance_id = $1 AND token = $3`,
        [this.instanceId, validMs, this.leaseToken],
        { prepare: true },
      ),
      'heartbeat',
    );
    if (renewed.count === 0) {
      this.leaseLost = true;
      throw this.leaseLostError();
    }
  }

  private leaseLostError(): PostgresStoreError {
    return new PostgresStoreError(`call store: the lease of INSTANCE_ID ${this.instanceId} was taken by another process after it expired here; two processes use this INSTANCE_ID`, false);
  }

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
      this.opts.log.error({ err: this.lastError, ...this.counts() }, 'call store: PostgreSQL write failed; records kept in memory, will retry');
    }
  }

  private succeeded(): void {
    if (!this.reachable) {
      this.reachable = true;
      this.opts.log.warn({ ...this.counts() }, 'call store: PostgreSQL writable again; queued records written');
      this.droppedLogged = this.dropped;
    } else if (this.dropped > this.droppedLogged) {
      this.opts.log.error({ ...this.counts() }, 'call store: queue full, records dropped');
      this.droppedLogged = this.dropped;
    }
  }

  private counts(): { queued: number; dropped: number } {
    return { queued: this.pending.length + this.statuses.length + this.inFlight, dropped: this.dropped };
  }

  /**
   * Only calls in progress stay in memory. Written headers are let go when the
   * call is over, or when it was answered here but its stream never started.
   */
  private evict(): void {
    const staleBefore = Date.now() - STREAMLESS_KEEP_MS;
    for (const [sid, v] of this.live) {
      if (v.dirty || !v.loaded) continue;
      const h = v.h;
      if (h.state !== 'in_progress' || (!h.startedAt && (!h.answeredAt || Date.parse(h.answeredAt) < staleBefore))) this.live.delete(sid);
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

  private async checkSchema(): Promise<void> {
    const [row] = await this.sql.unsafe<{ t: string | null }[]>(`SELECT to_regclass('callbridge_migrations')::text AS t`);
    if (!row?.t) throw new PostgresStoreError('no callbridge call store in this database (no migrations applied)', false);
  }
}

const iso = (d: Date | null): string | null => (d ? d.toISOString() : null);
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const errText = (err: unknown): string => (err instanceof Error ? err.message : String(err));
