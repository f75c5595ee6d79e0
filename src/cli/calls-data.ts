/**
 * `callbridge calls audio|delete|purge`: what an operator does with the data
 * a call leaves (src/cli/calls.ts hands these over).
 *
 *   calls audio <CallSid> [-o FILE]   the recording, decrypted, as a plain WAV
 *                                     (stereo µ-law 8 kHz: caller | heard), to
 *                                     FILE or to stdout when it is not a terminal
 *   calls delete <CallSid>            the call's record and recording, now
 *   calls purge [--older-than 90d] [--dry-run]
 *                                     what retention deletes (default
 *                                     RETENTION_DAYS), one purger at a time
 *                                     across instances (the store's lease)
 *
 * Errors are one line on stderr: exit 1 for a call, file or store that is not
 * there or does not open (a tampered recording, a missing key), 2 for usage.
 * Nothing of a call's content is printed but the audio asked for.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { ConfigError, loadConfig, type Config } from '../config.js';
import { silentLogger } from '../log.js';
import { openRecording } from '../recording/container.js';
import { openRecordingStorage } from '../recording/open-storage.js';
import { RecordingCorrupt, RecordingNotFound } from '../recording/types.js';
import { keyring } from '../store/crypto.js';
import { openCallStore } from '../store/open.js';
import { createRetention, deleteCall } from '../store/retention.js';
import type { CallStore } from '../store/types.js';
import type { CliIO } from './io.js';

export const DATA_USAGE =
  '       callbridge calls audio <CallSid> [-o FILE]\n' +
  '       callbridge calls delete <CallSid>\n' +
  '       callbridge calls purge [--older-than <90d | 12h | 30m>] [--dry-run]\n';

const AGE_MS = { m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** `90d`, `12h`, `30m` → ms; undefined for anything else (0 is not an age). */
export function parseAge(s: string): number | undefined {
  const m = /^(\d{1,6})\s*(m|h|d)$/.exec(s.trim());
  if (!m || Number(m[1]) === 0) return undefined;
  return Number(m[1]) * AGE_MS[m[2] as keyof typeof AGE_MS];
}

export async function runDataCommand(sub: 'audio' | 'delete' | 'purge', rest: string[], io: CliIO): Promise<number> {
  const fail = (code: number, msg: string) => {
    io.stderr.write(`callbridge calls: ${msg}\n`);
    return code;
  };
  let out: string | undefined;
  let dryRun = false;
  let olderThanMs: number | undefined;
  const positional: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    if ((a === '-o' || a === '--out') && sub === 'audio') {
      out = rest[++i];
      if (!out) return fail(2, `${a} takes a file name`);
    } else if (a === '--dry-run' && sub === 'purge') dryRun = true;
    else if (a === '--older-than' && sub === 'purge') {
      olderThanMs = parseAge(rest[++i] ?? '');
      if (olderThanMs === undefined) return fail(2, `--older-than takes an age like 90d, 12h or 30m (got '${rest[i] ?? ''}')`);
    } else if (a.startsWith('-')) return fail(2, `unknown option ${a}\nusage:\n${DATA_USAGE}`);
    else positional.push(a);
  }
  if (sub !== 'purge' && positional.length !== 1) return fail(2, `${sub} takes one CallSid\nusage:\n${DATA_USAGE}`);
  if (sub === 'purge' && positional.length > 0) return fail(2, `purge takes no arguments\nusage:\n${DATA_USAGE}`);
  if (sub === 'audio' && out === undefined && (io.stdout as { isTTY?: boolean }).isTTY) {
    return fail(2, 'the recording is binary audio: send it to a file (> call.wav, or -o call.wav)');
  }

  let config: Config;
  try {
    config = loadConfig(io.env);
  } catch (err) {
    if (err instanceof ConfigError) return fail(2, err.message);
    throw err;
  }
  const where = config.databaseUrl ? 'the PostgreSQL store' : config.dbPath;
  if (!config.databaseUrl && !existsSync(config.dbPath)) return fail(1, `no call store at ${config.dbPath} (set CALLBRIDGE_DB or DATABASE_URL)`);
  const storage = openRecordingStorage(config.recording, io.env);
  let store: CallStore;
  try {
    store = (
      await openCallStore({
        databaseUrl: config.databaseUrl,
        dbPath: config.dbPath,
        transcriptKey: config.transcriptKey,
        transcriptKeysOld: config.transcriptKeysOld,
        prices: config.prices,
        log: silentLogger,
        readOnly: sub === 'audio',
      })
    ).store;
  } catch (err) {
    return fail(1, `cannot open ${where}: ${err instanceof Error ? err.message : String(err)}`);
  }
  try {
    if (sub === 'audio') {
      const sid = positional[0]!;
      const record = await store.get(sid);
      if (!record) return fail(1, `no call ${sid} in ${where}`);
      const rec = record.recording;
      if (!rec) return fail(1, `call ${sid} was not recorded`);
      if (rec.status === 'opted_out') return fail(1, `the caller of ${sid} opted out of the recording: nothing was kept`);
      if (!rec.object) return fail(1, `the recording of ${sid} was not stored${rec.reason ? ` (${rec.reason})` : ''}`);
      if (rec.storage !== storage.kind) return fail(1, `the recording of ${sid} is in ${rec.storage} storage; this configuration uses ${storage.kind} (${storage.where})`);
      const reader = await openRecording(storage, rec.object, keyring(config.recording.key, config.recording.keysOld));
      // Every chunk is checked before a byte is written: a tampered file never comes out half-right.
      const wav = await reader.readAll();
      if (out !== undefined) writeFileSync(out, wav);
      else await new Promise<void>((resolve, reject) => io.stdout.write(wav, (err) => (err ? reject(err) : resolve())));
      const note = rec.status === 'incomplete' ? ` (incomplete: ${rec.reason ?? 'stopped early'})` : '';
      io.stderr.write(`${sid}: ${(reader.durationMs / 1000).toFixed(1)} s, stereo µ-law 8 kHz (left: caller, right: what the caller heard)${note}${out !== undefined ? ` → ${out}` : ''}\n`);
      return 0;
    }
    if (sub === 'delete') {
      const sid = positional[0]!;
      const deleted = await deleteCall(store, storage, sid);
      if (!deleted) return fail(1, `no call ${sid} in ${where}`);
      await store.flush();
      io.stdout.write(`deleted ${sid} (its record and its recording)\n`);
      return 0;
    }
    const days = config.retention.days;
    if (olderThanMs === undefined && days === 0) return fail(2, 'RETENTION_DAYS is 0 (keep for ever): say how old with --older-than');
    const retention = createRetention({ store, recordings: storage, days: days || 1, holder: `cli-${hostname()}-${process.pid}`, log: silentLogger });
    const r = await retention.runOnce({ dryRun, olderThanMs: olderThanMs ?? days * AGE_MS.d });
    if (r.skipped === 'lease_held') return fail(1, 'another instance is purging right now (the store\'s retention lease is held): try again later');
    const what = dryRun ? 'would delete' : 'deleted';
    io.stdout.write(
      `${what} ${r.calls} call${r.calls === 1 ? '' : 's'} and ${r.recordings} recording${r.recordings === 1 ? '' : 's'}` +
        (r.sweptObjects ? `, and ${r.sweptObjects} recording file${r.sweptObjects === 1 ? '' : 's'} without a call` : '') +
        (r.recordingFailures ? `; ${r.recordingFailures} recording${r.recordingFailures === 1 ? '' : 's'} could not be deleted (their calls are kept for the next purge)` : '') +
        '\n',
    );
    return r.recordingFailures ? 1 : 0;
  } catch (err) {
    if (err instanceof RecordingNotFound) return fail(1, `the recording file is missing from ${storage.where}`);
    if (err instanceof RecordingCorrupt) return fail(1, err.message);
    return fail(1, err instanceof Error ? err.message : String(err));
  } finally {
    await store.close();
  }
}
