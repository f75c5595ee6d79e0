/**
 * The embedded call store: SQLite through better-sqlite3, WAL, one real file.
 *
 * Writes never block audio: the call path only updates an in-memory record
 * and marks it dirty; a timer (FLUSH_MS) writes every dirty record in one
 * transaction. A call's start and end are written at once (small, and what
 * a crash must not lose). Crash window: at most FLUSH_MS of transcript,
 * tool and latency entries of calls in progress; the row itself, with
 * everything up to the last flush, survives and is marked 'interrupted' by
 * the next process (markInterrupted).
 *
 * Personal data — transcripts, tool arguments and results — is sealed with
 * AES-256-GCM when a key is configured (src/store/crypto.ts).
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { CallEndInfo, ToolCallRecord, TranscriptLine, TurnLatency } from '../call/recorder.js';
import type { Usage } from '../call/voice-model.js';
import type { Prices } from '../config.js';
import type { Logger } from '../log.js';
import { parseStatusCallback } from '../twilio/signature.js';
import { estimateCostUsd } from './cost.js';

export { estimateCostUsd };
import { openText, sealText } from './crypto.js';
import { ZERO_USAGE, type CallRecord, type CallStore, type CallSummary, type StatusEvent } from './types.js';

export const FLUSH_MS = 250;

/** Schema migrations, applied in order; PRAGMA user_version holds how many ran. */
const MIGRATIONS: string[] = [
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
];

export interface SqliteStoreOptions {
  path: string;
  transcriptKey?: Buffer;
  prices: Prices;
  log: Logger;
  /** Open an existing store for reading (CLI): no timer, no schema changes beyond migrations. */
  readOnly?: boolean;
}

interface Row {
  call_sid: string;
  stream_sid: string | null;
  from_number: string | null;
  to_number: string | null;
  started_at: string | null;
  answered_at: string | null;
  ended_at: string | null;
  duration_ms: number | null;
  status: string | null;
  status_events: string;
  end_reason: string | null;
  outcome: string | null;
  audio_mode: string | null;
  state: string;
  transcript: string;
  tool_calls: string;
  turn_latencies: string;
  relay: string | null;
  protocol_errors: number;
  usage: string;
  cost_usd: number;
}

export class SqliteCallStore implements CallStore {
  private readonly db: Database.Database;
  /** Records of calls this process is handling, written on the next flush when dirty. */
  private readonly live = new Map<string, { rec: CallRecord; dirty: boolean }>();
  private readonly timer: NodeJS.Timeout | undefined;
  private readonly upsert: Database.Statement;
  private readonly key: Buffer | undefined;
  private closed = false;

  constructor(private readonly opts: SqliteStoreOptions) {
    this.key = opts.transcriptKey;
    if (opts.path !== ':memory:') mkdirSync(dirname(opts.path), { recursive: true });
    this.db = new Database(opts.path, { fileMustExist: opts.readOnly === true });
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 2000');
    this.migrate();
    this.upsert = this.db.prepare(`
      INSERT INTO calls (call_sid, stream_sid, from_number, to_number, started_at, answered_at, ended_at, duration_ms,
        status, status_events, end_reason, outcome, audio_mode, state, transcript, tool_calls, turn_latencies, relay,
        protocol_errors, usage, cost_usd, created_at, updated_at)
      VALUES (@call_sid, @stream_sid, @from_number, @to_number, @started_at, @answered_at, @ended_at, @duration_ms,
        @status, @status_events, @end_reason, @outcome, @audio_mode, @state, @transcript, @tool_calls, @turn_latencies,
        @relay, @protocol_errors, @usage, @cost_usd, @now, @now)
      ON CONFLICT (call_sid) DO UPDATE SET stream_sid = excluded.stream_sid, from_number = excluded.from_number,
        to_number = excluded.to_number, started_at = excluded.started_at, answered_at = excluded.answered_at,
        ended_at = excluded.ended_at, duration_ms = excluded.duration_ms, status = excluded.status,
        status_events = excluded.status_events, end_reason = excluded.end_reason, outcome = excluded.outcome,
        audio_mode = excluded.audio_mode, state = excluded.state, transcript = excluded.transcript,
        tool_calls = excluded.tool_calls, turn_latencies = excluded.turn_latencies, relay = excluded.relay,
        protocol_errors = excluded.protocol_errors, usage = excluded.usage, cost_usd = excluded.cost_usd,
        updated_at = excluded.updated_at`);
    if (!opts.readOnly) {
      this.timer = setInterval(() => this.flush(), FLUSH_MS);
      this.timer.unref();
    }
  }

  // ── Writes from the call path: memory only, flushed on the timer ───────

  answered(callSid: string, info: { from?: string; to?: string }): void {
    const rec = this.load(callSid);
    rec.from = info.from ?? rec.from;
    rec.to = info.to ?? rec.to;
    rec.answeredAt ??= new Date().toISOString();
    this.writeNow(callSid);
  }

  started(callSid: string, info: { streamSid: string; audioMode: string; startedAt: Date }): void {
    const rec = this.load(callSid);
    rec.streamSid = info.streamSid;
    rec.audioMode = info.audioMode;
    rec.startedAt = info.startedAt.toISOString();
    rec.state = 'in_progress';
    this.writeNow(callSid);
  }

  appendTranscript(callSid: string, line: TranscriptLine): void {
    const rec = this.load(callSid);
    // Keep the transcript ordered by when it was said; late arrivals (caller
    // transcription finishes after the reply) slot in at their time.
    let i = rec.transcript.length;
    while (i > 0 && rec.transcript[i - 1]!.atMs > line.atMs) i--;
    rec.transcript.splice(i, 0, line);
    this.touch(callSid);
  }

  appendToolCall(callSid: string, tc: ToolCallRecord): void {
    this.load(callSid).toolCalls.push(tc);
    this.touch(callSid);
  }

  appendTurnLatency(callSid: string, t: TurnLatency): void {
    this.load(callSid).turnLatencies.push(t);
    this.touch(callSid);
  }

  addUsage(callSid: string, u: Usage): void {
    const rec = this.load(callSid);
    rec.usage = {
      inputTextTokens: rec.usage.inputTextTokens + u.inputTextTokens,
      inputAudioTokens: rec.usage.inputAudioTokens + u.inputAudioTokens,
      inputCachedTokens: rec.usage.inputCachedTokens + u.inputCachedTokens,
      outputTextTokens: rec.usage.outputTextTokens + u.outputTextTokens,
      outputAudioTokens: rec.usage.outputAudioTokens + u.outputAudioTokens,
    };
    this.touch(callSid);
  }

  ended(callSid: string, info: CallEndInfo): void {
    const rec = this.load(callSid);
    rec.endedAt = info.endedAt.toISOString();
    rec.endReason = info.reason;
    rec.relay = info.relay;
    rec.protocolErrors = info.protocolErrors;
    rec.state = 'completed';
    if (rec.startedAt) rec.durationMs = Math.max(0, info.endedAt.getTime() - Date.parse(rec.startedAt));
    rec.outcome = outcomeOf(rec);
    this.writeNow(callSid);
    this.live.delete(callSid);
  }

  recordStatus(form: Record<string, string>): void {
    const parsed = parseStatusCallback(form);
    if (!parsed.ok) {
      this.opts.log.warn({ error: parsed.error }, 'ignoring an invalid status callback');
      return;
    }
    const v = parsed.value;
    const rec = this.load(v.callSid);
    const seq = v.sequenceNumber ?? null;
    if (seq !== null && rec.statusEvents.some((e) => e.sequenceNumber === seq)) return; // Twilio retried it
    const ev: StatusEvent = {
      sequenceNumber: seq,
      status: v.callStatus,
      timestamp: v.timestampMs !== undefined ? new Date(v.timestampMs).toISOString() : null,
      callDurationS: v.callDurationS ?? null,
      receivedAt: new Date().toISOString(),
    };
    rec.statusEvents.push(ev);
    rec.statusEvents.sort((a, b) => (a.sequenceNumber ?? Infinity) - (b.sequenceNumber ?? Infinity));
    rec.status = rec.statusEvents.at(-1)!.status;
    rec.from ||= v.from || null;
    rec.to ||= v.to || null;
    if (v.terminal && rec.state === 'in_progress' && !rec.startedAt) {
      // The stream never started (busy, no-answer, failed…): the callback is the whole story.
      rec.state = 'completed';
      rec.outcome = v.callStatus;
      if (v.callDurationS !== undefined) rec.durationMs = v.callDurationS * 1000;
    }
    if (v.terminal && v.callDurationS !== undefined && rec.durationMs === null) rec.durationMs = v.callDurationS * 1000;
    this.writeNow(v.callSid);
    if (rec.state !== 'in_progress') this.live.delete(v.callSid);
  }

  markInterrupted(): number {
    const now = new Date().toISOString();
    const r = this.db
      .prepare(`UPDATE calls SET state = 'interrupted', end_reason = coalesce(end_reason, 'process_exit'), updated_at = ?
                WHERE state = 'in_progress'`)
      .run(now);
    return r.changes;
  }

  // ── Reads ──────────────────────────────────────────────────────────────

  get(callSid: string): CallRecord | undefined {
    const live = this.live.get(callSid);
    if (live) return structuredClone(live.rec);
    const row = this.db.prepare('SELECT * FROM calls WHERE call_sid = ?').get(callSid) as Row | undefined;
    return row && this.fromRow(row);
  }

  list(opts: { since?: Date; limit?: number } = {}): CallSummary[] {
    this.flush();
    const limit = Math.max(1, Math.min(opts.limit ?? 50, 10_000));
    const since = opts.since?.toISOString() ?? '';
    const rows = this.db
      .prepare(`SELECT call_sid, from_number, to_number, coalesce(started_at, answered_at, created_at) AS started_at, duration_ms,
                       status, state, outcome, end_reason, cost_usd
                FROM calls WHERE coalesce(started_at, answered_at, created_at) >= ?
                ORDER BY coalesce(started_at, answered_at, created_at) DESC LIMIT ?`)
      .all(since, limit) as Row[];
    return rows.map((r) => ({
      callSid: r.call_sid,
      from: r.from_number,
      to: r.to_number,
      startedAt: r.started_at,
      durationMs: r.duration_ms,
      status: r.status,
      state: r.state as CallRecord['state'],
      outcome: r.outcome,
      endReason: r.end_reason,
      estimatedCostUsd: r.cost_usd,
    }));
  }

  flush(): void {
    if (this.closed) return;
    const dirty = [...this.live.entries()].filter(([, v]) => v.dirty);
    if (dirty.length === 0) return;
    try {
      this.db.transaction(() => {
        for (const [, v] of dirty) {
          this.upsert.run(this.toRow(v.rec));
          v.dirty = false;
        }
      })();
      // An entry that arrived after its call finished (a late transcription)
      // is written, then let go: only calls in progress stay in memory.
      for (const [sid, v] of dirty) if (v.rec.state !== 'in_progress') this.live.delete(sid);
    } catch (err) {
      this.opts.log.error({ err: err instanceof Error ? err.message : String(err) }, 'call store flush failed; will retry');
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
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version > MIGRATIONS.length) {
      throw new Error(`call store ${this.opts.path} has schema version ${version}, newer than this callbridge (${MIGRATIONS.length})`);
    }
    for (let v = version; v < MIGRATIONS.length; v++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[v]!);
        this.db.pragma(`user_version = ${v + 1}`);
      })();
    }
  }

  /** The live record of a call: from memory, else from its row, else a new one. */
  private load(callSid: string): CallRecord {
    let entry = this.live.get(callSid);
    if (!entry) {
      const row = this.db.prepare('SELECT * FROM calls WHERE call_sid = ?').get(callSid) as Row | undefined;
      entry = { rec: row ? this.fromRow(row) : emptyRecord(callSid), dirty: !row };
      this.live.set(callSid, entry);
    }
    return entry.rec;
  }

  private touch(callSid: string): void {
    const e = this.live.get(callSid);
    if (e) e.dirty = true;
  }

  private writeNow(callSid: string): void {
    const e = this.live.get(callSid);
    if (!e || this.closed) return;
    try {
      this.upsert.run(this.toRow(e.rec));
      e.dirty = false;
    } catch (err) {
      e.dirty = true;
      this.opts.log.error({ err: err instanceof Error ? err.message : String(err) }, 'call store write failed; will retry');
    }
  }

  private toRow(rec: CallRecord): Record<string, unknown> {
    const durationMs = rec.durationMs ?? (rec.startedAt ? Date.now() - Date.parse(rec.startedAt) : 0);
    rec.estimatedCostUsd = estimateCostUsd(rec.usage, durationMs, this.opts.prices);
    return {
      call_sid: rec.callSid,
      stream_sid: rec.streamSid,
      from_number: rec.from,
      to_number: rec.to,
      started_at: rec.startedAt,
      answered_at: rec.answeredAt,
      ended_at: rec.endedAt,
      duration_ms: rec.durationMs,
      status: rec.status,
      status_events: JSON.stringify(rec.statusEvents),
      end_reason: rec.endReason,
      outcome: rec.outcome,
      audio_mode: rec.audioMode,
      state: rec.state,
      transcript: sealText(JSON.stringify(rec.transcript), this.key),
      tool_calls: sealText(JSON.stringify(rec.toolCalls), this.key),
      turn_latencies: JSON.stringify(rec.turnLatencies),
      relay: rec.relay ? JSON.stringify(rec.relay) : null,
      protocol_errors: rec.protocolErrors,
      usage: JSON.stringify(rec.usage),
      cost_usd: rec.estimatedCostUsd,
      now: new Date().toISOString(),
    };
  }

  private fromRow(r: Row): CallRecord {
    return {
      callSid: r.call_sid,
      streamSid: r.stream_sid,
      from: r.from_number,
      to: r.to_number,
      startedAt: r.started_at,
      answeredAt: r.answered_at,
      endedAt: r.ended_at,
      durationMs: r.duration_ms,
      status: r.status,
      statusEvents: JSON.parse(r.status_events) as StatusEvent[],
      endReason: r.end_reason,
      outcome: r.outcome,
      audioMode: r.audio_mode,
      state: r.state as CallRecord['state'],
      transcript: JSON.parse(openText(r.transcript, this.key)) as TranscriptLine[],
      toolCalls: JSON.parse(openText(r.tool_calls, this.key)) as ToolCallRecord[],
      turnLatencies: JSON.parse(r.turn_latencies) as TurnLatency[],
      relay: r.relay ? (JSON.parse(r.relay) as CallRecord['relay']) : null,
      protocolErrors: r.protocol_errors,
      usage: { ...ZERO_USAGE, ...(JSON.parse(r.usage) as Partial<Usage>) },
      estimatedCostUsd: r.cost_usd,
    };
  }
}

function emptyRecord(callSid: string): CallRecord {
  return {
    callSid,
    streamSid: null,
    from: null,
    to: null,
    startedAt: null,
    answeredAt: null,
    endedAt: null,
    durationMs: null,
    status: null,
    statusEvents: [],
    endReason: null,
    outcome: null,
    audioMode: null,
    state: 'in_progress',
    transcript: [],
    toolCalls: [],
    turnLatencies: [],
    relay: null,
    protocolErrors: 0,
    usage: { ...ZERO_USAGE },
    estimatedCostUsd: 0,
  };
}

/** A one-word outcome for listings: what happened, from the caller's side. */
function outcomeOf(rec: CallRecord): string {
  const eligibility = rec.toolCalls.filter((t) => t.name === 'check_eligibility');
  if (rec.endReason === 'model_unavailable' || rec.endReason === 'model_disconnected' || rec.endReason === 'error') return 'failed';
  if (eligibility.some((t) => t.ok)) return 'eligibility_checked';
  if (eligibility.length > 0) return 'eligibility_failed';
  return 'no_check';
}
