/**
 * GET /calls/:sid/recording — a call's recording, decrypted, as a plain WAV
 * (stereo µ-law 8 kHz: caller left, what the caller heard right).
 *
 * - Same guard as GET /calls: 404 for everything without ADMIN_TOKEN, 401
 *   without `Authorization: Bearer <ADMIN_TOKEN>`.
 * - Seeking: one byte range per request (`Range: bytes=a-b`, `a-`, `-n`) is
 *   answered 206 with `Content-Range`; an open-ended range gets at most
 *   MAX_RANGE_BYTES (players ask for the rest as they go); a range past the
 *   end 416. Without `Range`, the whole file (200). Only the chunks a range
 *   covers are read and decrypted, except on a request from byte 0 (a
 *   player's first, or a plain GET), which checks every chunk first.
 * - A file that does not open (tampered, truncated, no or the wrong key) is
 *   never played half-right: 500 naming what is wrong, before any audio. A
 *   call without a recording (not recorded, opted out, a write that failed)
 *   is 404 saying which; a recording whose file is gone is 404 too.
 * - `Cache-Control: no-store` on every answer (recordings are personal data);
 *   nothing of the audio or the call is logged.
 */
import type { AdminRequest, BinaryResponse, RecordingReader } from '../call/ports.js';
import { openRecording } from '../recording/container.js';
import { RecordingCorrupt, RecordingNotFound, type Keyring, type RecordingInfo, type RecordingStorage } from '../recording/types.js';
import { DecryptError } from '../store/crypto.js';
import { PostgresStoreError } from '../store/postgres.js';
import type { CallStore } from '../store/types.js';
import { bearerCheck } from './bearer.js';

/** Largest answer to an open-ended range (`bytes=a-`), bytes: 4 MiB is about 4 minutes of stereo µ-law. */
export const MAX_RANGE_BYTES = 4 * 1024 * 1024;

export type RecordingReply = BinaryResponse;

export interface RecordingApiDeps {
  store: CallStore;
  /** Where recordings are kept; undefined = this instance has no recording storage configured. */
  storage: RecordingStorage | undefined;
  /** RECORDING_KEY and RECORDING_KEY_OLD. */
  keys: Keyring;
  adminToken: string | undefined;
}

const NO_STORE = { 'cache-control': 'no-store' };
const json = (status: number, body: unknown, headers: Record<string, string> = {}): RecordingReply => ({
  status,
  headers: { ...NO_STORE, ...headers },
  type: 'application/json',
  body: JSON.stringify(body),
});

/** `/calls/<sid>/recording` → the sid (decoded), or undefined when the path is not one. */
export function recordingPathSid(path: string): string | undefined | null {
  const m = /^\/calls\/([^/]+)\/recording\/?$/.exec(path);
  if (!m) return undefined;
  try {
    return decodeURIComponent(m[1]!);
  } catch {
    return null;
  }
}

/**
 * A `Range` header against a body of `size` bytes: the [start, end) to send,
 * `'unsatisfiable'` (416), or undefined to send the whole body (no header, or
 * one this server does not take: several ranges, another unit — RFC 9110 lets
 * a server ignore it).
 */
export function parseRange(header: string | undefined, size: number, maxOpenEnded = MAX_RANGE_BYTES): { start: number; end: number } | 'unsatisfiable' | undefined {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - n), end: size };
  }
  const start = Number(m[1]);
  if (start >= size) return 'unsatisfiable';
  if (m[2] === '') return { start, end: Math.min(size, start + maxOpenEnded) };
  const last = Number(m[2]);
  if (last < start) return undefined;
  return { start, end: Math.min(size, last + 1) };
}

/**
 * Where a call's recording is, or why it cannot be played (status and sentence): not recorded, opted out,
 * never stored (the reason), no storage here, or another kind of storage than this instance's.
 */
export function findRecording(
  rec: RecordingInfo | null,
  storage: RecordingStorage | undefined,
): { storage: RecordingStorage; object: string } | { status: number; error: string } {
  if (!rec) return { status: 404, error: 'this call was not recorded' };
  if (rec.status === 'opted_out') return { status: 404, error: 'the caller opted out of the recording: nothing was kept' };
  if (!rec.object) return { status: 404, error: `this call's recording was not stored${rec.reason ? ` (${rec.reason})` : ''}` };
  if (!storage) return { status: 404, error: 'recording storage is not configured on this instance (RECORDING_DIR or RECORDING_S3_URL, and RECORDING_KEY)' };
  if (storage.kind !== rec.storage) return { status: 503, error: `this recording is in ${rec.storage} storage, and this instance uses ${storage.kind} storage` };
  return { storage, object: rec.object };
}

export function createRecordingApi(deps: RecordingApiDeps): RecordingReader {
  const authorized = bearerCheck(deps.adminToken);
  return async (req) => {
    if (!authorized) return json(404, { error: 'not found' });
    if (!authorized(req.headers.authorization)) return json(401, { error: 'unauthorized' });
    if (req.method !== 'GET') return json(405, { error: 'method not allowed' }, { allow: 'GET' });
    const sid = recordingPathSid(req.path);
    if (sid === undefined) return json(404, { error: 'not found' });
    if (sid === null) return json(400, { error: 'malformed call id' });
    try {
      const record = await deps.store.get(sid);
      if (!record) return json(404, { error: 'no such call' });
      const found = findRecording(record.recording, deps.storage);
      if ('error' in found) return json(found.status, { error: found.error });
      const reader = await openRecording(found.storage, found.object, deps.keys);
      const size = reader.wavBytes;
      const range = parseRange(req.headers.range, size);
      const headers: Record<string, string> = { ...NO_STORE, 'accept-ranges': 'bytes', 'content-disposition': `inline; filename="${sid.replace(/[^A-Za-z0-9_-]/g, '')}.wav"` };
      if (range === 'unsatisfiable') return { status: 416, headers: { ...headers, 'content-range': `bytes */${size}` }, type: 'application/json', body: JSON.stringify({ error: `range not satisfiable (the recording is ${size} bytes)` }) };
      const { start, end } = range ?? { start: 0, end: size };
      // A player's first request starts at 0: the whole file is checked then (every chunk's tag), so a
      // tampered recording is refused before any of it plays, not part-way through.
      const body = start === 0 ? (await reader.read(0, size)).subarray(0, end) : await reader.read(start, end);
      if (range) headers['content-range'] = `bytes ${start}-${end - 1}/${size}`;
      return { status: range ? 206 : 200, headers, type: 'audio/wav', body };
    } catch (err) {
      if (err instanceof RecordingNotFound) return json(404, { error: 'the recording file is missing from storage (deleted, or another storage)' });
      if (err instanceof RecordingCorrupt || err instanceof DecryptError) return json(500, { error: err.message });
      if (err instanceof PostgresStoreError && err.retryable) return json(503, { error: 'call store unavailable, try again', retryable: true });
      throw err;
    }
  };
}
