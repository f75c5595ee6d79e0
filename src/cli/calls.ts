/**
 * `callbridge calls list|show`: read the call records (CALLBRIDGE_DB);
 * `audio`, `delete` and `purge` are ./calls-data.ts.
 * Readable by default, `--json` for scripts. A list with more calls than
 * `--limit` says on stderr how to get the next page (`--cursor <next>`), so
 * stdout stays the page alone. Errors: one line; exit 1 for an unknown call
 * or unreadable store, 2 for usage.
 */
import { existsSync } from 'node:fs';
import { ConfigError, loadConfig, type Config } from '../config.js';
import { silentLogger } from '../log.js';
import { LatencyHistogram } from '../call/stats.js';
import { decodeCursor, encodeCursor } from '../store/cursor.js';
import { parseSince } from '../store/since.js';
import { openCallStore, type StoreSettings } from '../store/open.js';
import type { TurnLatency } from '../records.js';
import type { CallRecord, CallStore, CallSummary, ListPosition } from '../store/types.js';
import { DATA_USAGE, runDataCommand } from './calls-data.js';
import type { CliIO } from './io.js';

export { parseSince };

const USAGE = `usage: callbridge calls list [--since <ISO time | 30m | 2h | 7d>] [--limit N] [--cursor <next>] [--json]\n       callbridge calls show <CallSid> [--json]\n${DATA_USAGE}`;

export async function run(args: string[], io: CliIO): Promise<number> {
  const [sub, ...rest] = args;
  const fail = (code: number, msg: string) => {
    io.stderr.write(`callbridge calls: ${msg}\n`);
    return code;
  };
  if (sub === 'audio' || sub === 'delete' || sub === 'purge') return runDataCommand(sub, rest, io);
  if (sub !== 'list' && sub !== 'show') return fail(2, `expected list, show, audio, delete or purge\n${USAGE}`);
  let json = false;
  let since: Date | undefined;
  let limit = 50;
  let after: ListPosition | undefined;
  const positional: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    if (a === '--json') json = true;
    else if (a === '--since' && sub === 'list') {
      since = parseSince(rest[++i] ?? '');
      if (!since) return fail(2, `--since takes an ISO time or an age like 30m, 2h, 7d (got '${rest[i] ?? ''}')`);
    } else if (a === '--limit' && sub === 'list') {
      limit = Number(rest[++i]);
      if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) return fail(2, '--limit takes a whole number from 1 to 10000');
    } else if (a === '--cursor' && sub === 'list') {
      after = decodeCursor(rest[++i] ?? '');
      if (!after) return fail(2, '--cursor takes the cursor an earlier `calls list` printed for its next page');
    } else if (a.startsWith('--')) return fail(2, `unknown option ${a}\n${USAGE}`);
    else positional.push(a);
  }
  if (sub === 'show' && positional.length !== 1) return fail(2, `show takes one CallSid\n${USAGE}`);
  if (sub === 'list' && positional.length > 0) return fail(2, `list takes no arguments\n${USAGE}`);

  let config;
  try {
    config = loadConfig(io.env);
  } catch (err) {
    if (err instanceof ConfigError) return fail(2, err.message);
    throw err;
  }
  const where = config.databaseUrl ? 'the PostgreSQL store' : config.dbPath;
  if (!config.databaseUrl && !existsSync(config.dbPath)) return fail(1, `no call store at ${config.dbPath} (set CALLBRIDGE_DB or DATABASE_URL)`);
  let store: CallStore;
  try {
    store = (
      await openCallStore({ ...storeSettings(config), log: silentLogger, readOnly: true })
    ).store;
  } catch (err) {
    return fail(1, `cannot open ${where}: ${err instanceof Error ? err.message : String(err)}`);
  }
  try {
    if (sub === 'list') {
      const page = await store.listPage({ since, limit, after });
      io.stdout.write(json ? `${JSON.stringify(page.calls, null, 2)}\n` : formatList(page.calls));
      if (page.next) io.stderr.write(`more calls: next page with --cursor ${encodeCursor(page.next)}\n`);
      return 0;
    }
    const record = await store.get(positional[0]!);
    if (!record) return fail(1, `no call ${positional[0]} in ${where}`);
    io.stdout.write(json ? `${JSON.stringify(record, null, 2)}\n` : formatRecord(record));
    return 0;
  } catch (err) {
    return fail(1, err instanceof Error ? err.message : String(err));
  } finally {
    await store.close();
  }
}

/** What a reader needs of the store's settings (the CLI stands above main.ts: it reads the Config itself). */
function storeSettings(config: Config): StoreSettings {
  return {
    databaseUrl: config.databaseUrl,
    dbPath: config.dbPath,
    transcriptKey: config.transcriptKey,
    transcriptKeysOld: config.transcriptKeysOld,
    prices: config.prices,
  };
}

const secs = (ms: number | null) => (ms === null ? '-' : `${(ms / 1000).toFixed(1)} s`);
const mmss = (ms: number) => `${String(Math.floor(ms / 60000)).padStart(2, '0')}:${String(Math.floor((ms % 60000) / 1000)).padStart(2, '0')}`;

function formatList(calls: CallSummary[]): string {
  if (calls.length === 0) return 'no calls\n';
  const rows = calls.map((c) => [
    c.startedAt ?? '-',
    c.callSid,
    secs(c.durationMs),
    c.state,
    c.status ?? '-',
    c.outcome ?? '-',
    `$${c.estimatedCostUsd.toFixed(4)}`,
    c.direction ?? '-',
    c.agent ?? '-',
  ]);
  const head = ['started', 'call', 'duration', 'state', 'twilio status', 'outcome', 'cost', 'direction', 'agent'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd();
  return `${[line(head), ...rows.map(line)].join('\n')}\n`;
}

/** µs from a figure in ms; '-' where there is none (a call that never streamed has no relay figures). */
const us = (ms: number | null | undefined) => (typeof ms === 'number' && Number.isFinite(ms) ? `${(ms * 1000).toFixed(0)} µs` : '-');

/** A pipeline turn's stages and first frame, ms after its speech stopped ('-' for a stage not reported). */
function stageSplit(parts: NonNullable<TurnLatency['parts']>): string {
  const after = (ms: number | undefined) => (ms === undefined ? '-' : `${ms - parts.speechStoppedMs} ms`);
  const s = parts.stages ?? {};
  return [after(s.finalTranscriptMs), after(s.firstTokenMs), after(s.firstTtsAudioMs), after(parts.firstFrameMs)].join(' → ');
}

/** One call record, readable: `calls show` prints it, and so does the demo for the calls it placed. */
export function formatRecord(r: CallRecord, opts: { transcript?: boolean } = {}): string {
  const out: string[] = [];
  out.push(`call ${r.callSid}   stream ${r.streamSid ?? '-'}   ${r.audioMode ?? ''}${r.model ? `   ${r.model}` : ''}`);
  out.push(`from ${r.from ?? '-'} to ${r.to ?? '-'}   direction ${r.direction ?? '-'}   agent ${r.agent ?? '-'}`);
  out.push(`started ${r.startedAt ?? '-'}   ended ${r.endedAt ?? '-'}   duration ${secs(r.durationMs)}`);
  out.push(`state ${r.state}   twilio status ${r.status ?? '-'}   end reason ${r.endReason ?? '-'}   outcome ${r.outcome ?? '-'}`);
  if (r.transfer) {
    const t = r.transfer;
    out.push(`transfer to ${t.target} (agent ${t.agent}), asked by the ${t.requestedBy === 'keypad' ? 'caller on the keypad' : 'model'} on leg ${t.leg} at ${t.at}`);
  }
  out.push(`estimated cost $${r.estimatedCostUsd.toFixed(4)}`);
  const rec = r.recording;
  if (rec) {
    const detail =
      rec.status === 'opted_out'
        ? 'the caller opted out: nothing kept'
        : `${(rec.durationMs / 1000).toFixed(1)} s${rec.object ? ` (callbridge calls audio ${r.callSid} > call.wav)` : ', not stored'}${rec.reason ? `; ${rec.reason}` : ''}`;
    out.push(`recording ${rec.status}: ${detail}`);
  }
  if (opts.transcript ?? true) {
    out.push('', 'transcript');
    for (const t of r.transcript) out.push(`  [${mmss(t.atMs)}] ${t.speaker.padEnd(9)} ${t.text}${t.interrupted ? '  (interrupted)' : ''}`);
  }
  if (r.toolCalls.length) {
    out.push('', 'tool calls');
    for (const t of r.toolCalls) out.push(`  [${mmss(t.startedAtMs)}] ${t.name} ${t.ok ? 'ok' : 'FAILED'} in ${t.durationMs} ms: ${t.output}`);
  }
  if (r.events.length) {
    out.push('', 'events');
    for (const e of r.events) out.push(`  [${mmss(e.atMs)}] ${e.type}${e.detail ? `: ${e.detail}` : ''}`);
  }
  if (r.turnLatencies.length) {
    const h = new LatencyHistogram();
    for (const t of r.turnLatencies) h.record(t.latencyMs);
    const s = h.summary();
    out.push('', `turn latency (speech stopped → first audio out): ${r.turnLatencies.length} turns, p50 ${Math.round(s.p50Ms)} ms, p95 ${Math.round(h.percentile(0.95))} ms, max ${Math.round(s.maxMs)} ms`);
    const staged = r.turnLatencies.filter((t) => t.parts?.stages);
    if (staged.length) {
      out.push('pipeline stages, ms after speech stopped (final transcript → first LLM token → first TTS audio → first frame out):');
      for (const t of staged) out.push(`  turn ${t.turn}: ${stageSplit(t.parts!)}`);
    }
  }
  if (r.relay) out.push(`relay-added latency per frame: in p50 ${us(r.relay.inbound.p50Ms)} p99 ${us(r.relay.inbound.p99Ms)}, out p50 ${us(r.relay.outbound.p50Ms)} p99 ${us(r.relay.outbound.p99Ms)}`);
  const u = r.usage;
  out.push(`usage: input ${u.inputAudioTokens} audio + ${u.inputTextTokens} text (${u.inputCachedTokens} cached), output ${u.outputAudioTokens} audio + ${u.outputTextTokens} text tokens`);
  // Time-billed models (GPT-Live): the audio seconds they billed, in the unit they price (per active minute).
  if (u.activeAudioSeconds !== undefined) out.push(`active audio: ${(u.activeAudioSeconds / 60).toFixed(2)} min (${u.activeAudioSeconds.toFixed(1)} s), billed per active minute`);
  // Pipeline calls (STT → LLM → TTS): each stage in the unit it is billed in.
  const p = u.pipeline;
  if (p) {
    out.push(`pipeline STT: ${(p.sttAudioSeconds / 60).toFixed(2)} min of audio (${p.sttAudioSeconds.toFixed(1)} s), billed per minute`);
    out.push(`pipeline LLM: ${p.llmInputTokens} input (${p.llmCachedInputTokens} cached) + ${p.llmOutputTokens} output tokens`);
    out.push(`pipeline TTS: ${p.ttsCharacters} characters`);
  }
  if (r.statusEvents.length) out.push(`status callbacks: ${r.statusEvents.map((e) => `${e.sequenceNumber ?? '?'}:${e.status}`).join(' → ')}`);
  return `${out.join('\n')}\n`;
}
