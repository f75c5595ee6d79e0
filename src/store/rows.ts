/**
 * What both call stores (sqlite.ts, postgres.ts) do alike with a call's
 * header: its `calls` row read back into a record, a new call's empty
 * header, and the changes usage and the end of a call make to it.
 * Row times are ISO 8601 strings (SQLite) or Dates (PostgreSQL); records
 * always carry ISO strings (UTC, ms).
 */
import { sumPipelineUsage, ZERO_PIPELINE_USAGE, type CallEndInfo, type RecordingInfo, type TransferDecision, type Usage } from '../records.js';
import { openField, type Keyring } from './crypto.js';
import { ZERO_USAGE, type CallRecord, type CallSummary } from './types.js';

/** What `list` shows for a number this store cannot open (sealed with a key it does not have, or not this call's). */
export const ENCRYPTED_NUMBER = '(encrypted)';

/**
 * A call's record without its lists, its status callbacks and its transfer decision (written at once, apart
 * from the header: saveTransfer): the columns of the `calls` row a store writes while it carries the call.
 */
export type CallHeader = Omit<CallRecord, 'transcript' | 'toolCalls' | 'turnLatencies' | 'events' | 'status' | 'statusEvents' | 'transfer'>;

/** The `calls` columns both stores have; `Time` is how the driver returns a timestamp. */
export interface CallRow<Time extends string | Date> {
  call_sid: string;
  stream_sid: string | null;
  from_number: string | null;
  to_number: string | null;
  started_at: Time | null;
  answered_at: Time | null;
  ended_at: Time | null;
  duration_ms: number | null;
  status: string | null;
  end_reason: string | null;
  outcome: string | null;
  audio_mode: string | null;
  model: string | null;
  agent: string | null;
  direction: string | null;
  state: string;
  relay: string | null;
  protocol_errors: number;
  usage: string;
  cost_usd: number;
  /** What became of the call's recording, as JSON (recordingToJson); null when it was not recorded (or a row written before the column). */
  recording?: string | null;
  /** The recording's object name, apart from the JSON, so a purge finds it without parsing. */
  recording_object?: string | null;
}

/** A row of `list`: `started_at` is when the call began (started, else answered, else created), never null. */
export type SummaryRow<Time extends string | Date> = Pick<
  CallRow<Time>,
  'call_sid' | 'from_number' | 'to_number' | 'duration_ms' | 'status' | 'state' | 'outcome' | 'end_reason' | 'cost_usd' | 'agent' | 'direction'
> & { started_at: Time };

/**
 * A finished call's one-word outcome for listings, as SQL (the same in both
 * dialects) over its `calls` row `c` and the entries written with it: the
 * call failed (model or relay), else whether the eligibility check ran and
 * answered.
 */
export const OUTCOME_SQL = `CASE
      WHEN c.end_reason IN ('model_unavailable', 'model_disconnected', 'error') THEN 'failed'
      WHEN EXISTS (SELECT 1 FROM call_entries e WHERE e.call_sid = c.call_sid AND e.kind = 'tool' AND e.label = 'check_eligibility' AND e.ok) THEN 'eligibility_checked'
      WHEN EXISTS (SELECT 1 FROM call_entries e WHERE e.call_sid = c.call_sid AND e.kind = 'tool' AND e.label = 'check_eligibility') THEN 'eligibility_failed'
      ELSE 'no_check' END`;

const iso = (t: string | Date | null): string | null => (t instanceof Date ? t.toISOString() : t);

/** `number` opens a stored caller (`from`) or callee (`to`) number of the row's call (sealed when TRANSCRIPT_KEY is set). */
export function headerFromRow(r: CallRow<string | Date>, number: (stored: string | null, field: 'from' | 'to') => string | null): CallHeader {
  return {
    callSid: r.call_sid,
    streamSid: r.stream_sid,
    from: number(r.from_number, 'from'),
    to: number(r.to_number, 'to'),
    startedAt: iso(r.started_at),
    answeredAt: iso(r.answered_at),
    endedAt: iso(r.ended_at),
    durationMs: r.duration_ms,
    endReason: r.end_reason,
    outcome: r.outcome,
    audioMode: r.audio_mode,
    model: r.model ?? null,
    agent: r.agent ?? null,
    direction: r.direction ?? null,
    state: r.state as CallRecord['state'],
    relay: r.relay ? (JSON.parse(r.relay) as CallRecord['relay']) : null,
    protocolErrors: r.protocol_errors,
    usage: { ...ZERO_USAGE, ...(JSON.parse(r.usage) as Partial<Usage>) },
    estimatedCostUsd: r.cost_usd,
    recording: recordingFromJson(r.recording),
  };
}

/** The header of a call no row holds yet. */
export function emptyHeader(callSid: string): CallHeader {
  return {
    callSid,
    streamSid: null,
    from: null,
    to: null,
    startedAt: null,
    answeredAt: null,
    endedAt: null,
    durationMs: null,
    endReason: null,
    outcome: null,
    audioMode: null,
    model: null,
    agent: null,
    direction: null,
    state: 'in_progress',
    relay: null,
    protocolErrors: 0,
    usage: { ...ZERO_USAGE },
    estimatedCostUsd: 0,
    recording: null,
  };
}

/** A `list` row as a summary; a number sealed with another key (or none) shows as ENCRYPTED_NUMBER. */
export function summaryFromRow(r: SummaryRow<string | Date>, ring: Keyring): CallSummary {
  return {
    callSid: r.call_sid,
    from: openField(r.from_number, ring, r.call_sid, 'from', () => ENCRYPTED_NUMBER),
    to: openField(r.to_number, ring, r.call_sid, 'to', () => ENCRYPTED_NUMBER),
    startedAt: iso(r.started_at),
    durationMs: r.duration_ms,
    status: r.status,
    state: r.state as CallRecord['state'],
    outcome: r.outcome,
    endReason: r.end_reason,
    estimatedCostUsd: r.cost_usd,
    agent: r.agent ?? null,
    direction: r.direction ?? null,
  };
}

/**
 * Two usages added; active audio seconds and the pipeline's stages are kept only when either has them
 * (a token-only total stays as it was).
 */
export function sumUsage(a: Usage, b: Usage): Usage {
  const active = a.activeAudioSeconds === undefined && b.activeAudioSeconds === undefined ? {} : { activeAudioSeconds: (a.activeAudioSeconds ?? 0) + (b.activeAudioSeconds ?? 0) };
  const pipeline = a.pipeline === undefined && b.pipeline === undefined ? {} : { pipeline: sumPipelineUsage(a.pipeline ?? ZERO_PIPELINE_USAGE, b.pipeline ?? ZERO_PIPELINE_USAGE) };
  return {
    inputTextTokens: a.inputTextTokens + b.inputTextTokens,
    inputAudioTokens: a.inputAudioTokens + b.inputAudioTokens,
    inputCachedTokens: a.inputCachedTokens + b.inputCachedTokens,
    inputCachedAudioTokens: (a.inputCachedAudioTokens ?? 0) + (b.inputCachedAudioTokens ?? 0),
    outputTextTokens: a.outputTextTokens + b.outputTextTokens,
    outputAudioTokens: a.outputAudioTokens + b.outputAudioTokens,
    ...active,
    ...pipeline,
  };
}

/** The call ended: its header says how. The outcome is left to the flush, which computes it from the tool calls written with it. */
export function endHeader(h: CallHeader, info: CallEndInfo): void {
  h.endedAt = info.endedAt.toISOString();
  h.endReason = info.reason;
  h.relay = info.relay;
  h.protocolErrors = info.protocolErrors;
  h.state = 'completed';
  if (h.startedAt) h.durationMs = Math.max(0, info.endedAt.getTime() - Date.parse(h.startedAt));
  h.outcome = null;
}

/**
 * A transfer decision as both stores keep it: plain JSON (names, the leg and a time; no personal data, so
 * never sealed). Checked field by field when read: a row that is not one reads as null, never as a decision.
 */
export function transferToJson(d: TransferDecision): string {
  return JSON.stringify({ agent: d.agent, target: d.target, requestedBy: d.requestedBy, leg: d.leg, at: d.at });
}

export function transferFromJson(text: string | null | undefined): TransferDecision | null {
  if (!text) return null;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const o = v as Record<string, unknown>;
  if (typeof o.agent !== 'string' || typeof o.target !== 'string' || typeof o.at !== 'string') return null;
  if (o.requestedBy !== 'model' && o.requestedBy !== 'keypad') return null;
  if (typeof o.leg !== 'number' || !Number.isInteger(o.leg)) return null;
  return { agent: o.agent, target: o.target, requestedBy: o.requestedBy, leg: o.leg, at: o.at };
}

/** A decision as saveTransfer takes it: the same checks as on reading, so nothing is saved that would read back as null. */
export function checkTransfer(d: TransferDecision): TransferDecision {
  const ok = transferFromJson(transferToJson(d));
  if (!ok || ok.leg < 1 || Number.isNaN(Date.parse(ok.at))) throw new TypeError('call store: a transfer decision needs agent, target, requestedBy (model|keypad), a leg ≥ 1 and an ISO time');
  return ok;
}

/** The whole ms at which a pacer's next slot may be: `intervalMs` rounded up, so slots are never closer than asked. */
export function slotIntervalMs(intervalMs: number): number {
  if (typeof intervalMs !== 'number' || !Number.isFinite(intervalMs) || intervalMs < 0) {
    throw new RangeError(`call store: an outbound interval must be a finite number of ms ≥ 0 (got ${String(intervalMs)})`);
  }
  return Math.ceil(intervalMs);
}

/**
 * A call's recording as both stores keep it: plain JSON (status, object name, storage, key id, sizes and a
 * reason in words; object names hold the CallSid only, so nothing personal and never sealed). Checked field
 * by field when read: a value that is not one reads as null.
 */
export function recordingToJson(r: RecordingInfo): string {
  const v: RecordingInfo = { status: r.status, object: r.object, storage: r.storage, keyId: r.keyId, durationMs: r.durationMs, bytes: r.bytes };
  if (r.reason !== undefined) v.reason = r.reason;
  return JSON.stringify(v);
}

export function recordingFromJson(text: string | null | undefined): RecordingInfo | null {
  if (!text) return null;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const o = v as Record<string, unknown>;
  if (o.status !== 'complete' && o.status !== 'incomplete' && o.status !== 'opted_out') return null;
  if (o.storage !== 'dir' && o.storage !== 's3') return null;
  if ((o.object !== null && typeof o.object !== 'string') || (o.keyId !== null && typeof o.keyId !== 'string')) return null;
  if (typeof o.durationMs !== 'number' || typeof o.bytes !== 'number') return null;
  const r: RecordingInfo = { status: o.status, object: o.object, storage: o.storage, keyId: o.keyId, durationMs: o.durationMs, bytes: o.bytes };
  if (typeof o.reason === 'string') r.reason = o.reason;
  return r;
}

/** A recording as setRecording takes it: the same checks as on reading, so nothing is kept that would read back as null. */
export function checkRecording(r: RecordingInfo): RecordingInfo {
  const ok = recordingFromJson(recordingToJson(r));
  if (!ok) throw new TypeError('call store: a recording needs a status (complete|incomplete|opted_out), a storage (dir|s3), an object and key id (text or null), durationMs and bytes');
  return ok;
}

/**
 * Where the claim keys of calls begin and end (claims are free text: `CA…`, `CA…/2`, `action:CA…/1`,
 * `dial:CA…/1`): each call's own key, and the [lo, hi) ranges (in byte order: '/' is just below '0') that
 * hold every key under `<sid>/`, `action:<sid>/` and `dial:<sid>/`.
 */
export function claimRanges(callSids: readonly string[]): { exact: string[]; lo: string[]; hi: string[] } {
  const lo: string[] = [];
  const hi: string[] = [];
  for (const sid of callSids) {
    for (const p of ['', 'action:', 'dial:']) {
      lo.push(`${p}${sid}/`);
      hi.push(`${p}${sid}0`);
    }
  }
  return { exact: [...callSids], lo, hi };
}

/** expiredCalls' `limit`: a whole number ≥ 1 (RangeError otherwise). */
export function retentionLimit(limit: number): number {
  if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`call store: expiredCalls needs a whole limit ≥ 1 (got ${String(limit)})`);
  return limit;
}

/** A lease's time to live: whole ms ≥ 1 (RangeError otherwise). */
export function leaseTtlMs(ttlMs: number): number {
  if (typeof ttlMs !== 'number' || !Number.isFinite(ttlMs) || ttlMs < 1) throw new RangeError(`call store: a lease needs a finite ttl ≥ 1 ms (got ${String(ttlMs)})`);
  return Math.ceil(ttlMs);
}
