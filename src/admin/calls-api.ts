/**
 * GET /calls and GET /calls/:sid — call records as JSON for operators; DELETE
 * /calls/:sid removes one call (its recording first, then its rows:
 * store/retention.ts deleteCall) → 200 `{deleted: sid}`, 404 no such call,
 * 409 while the call is in progress (or it has a recording and no recording
 * storage is configured here), 503 when the recording could not be deleted
 * (the call is kept; try again).
 * Disabled (404 for everything) unless ADMIN_TOKEN is set; then every
 * request needs `Authorization: Bearer <ADMIN_TOKEN>` (compared in constant
 * time). `since` takes an ISO time or an age (30m, 2h, 7d; years 0001–9999);
 * `limit` 1–500. GET /calls answers `{calls, next}`: `next` is null on the
 * last page, else an opaque cursor — ask again with `?cursor=<next>` (and
 * the same `since`) for the following page. Bad parameters: 400, saying which.
 * Records hold personal data: never cache, never log bodies.
 */
import type { AdminReader } from '../call/ports.js';
import { bearerCheck } from './bearer.js';
import type { CallStore } from '../store/types.js';
import { DecryptError } from '../store/crypto.js';
import { decodeCursor, encodeCursor } from '../store/cursor.js';
import { parseSince } from '../store/since.js';
import { PostgresStoreError } from '../store/postgres.js';
import { CallInProgress, deleteCall, RecordingDeleteFailed } from '../store/retention.js';
import type { RecordingStorage } from '../recording/types.js';

const MAX_LIMIT = 500;

export interface AdminHandlerOptions {
  /** Where recordings are kept: DELETE /calls/:sid removes the call's recording there first. */
  recordings?: RecordingStorage;
}

/** The reader the edge serves on GET /calls… and DELETE /calls/:sid (wired in main.ts straight to startServer, not through the call layer). */
export function createAdminHandler(store: CallStore, adminToken: string | undefined, opts: AdminHandlerOptions = {}): AdminReader {
  const authorized = bearerCheck(adminToken);
  return async (req) => {
    if (!authorized) return { status: 404, body: { error: 'not found' } };
    if (!authorized(req.headers.authorization)) return { status: 401, body: { error: 'unauthorized' } };
    const m = /^\/calls(?:\/([^/]+))?\/?$/.exec(req.path);
    if (req.method !== 'GET' && !(req.method === 'DELETE' && m?.[1])) return { status: 405, body: { error: 'method not allowed' } };
    if (!m) return { status: 404, body: { error: 'not found' } };
    try {
      if (m[1]) {
        let sid: string;
        try {
          sid = decodeURIComponent(m[1]);
        } catch {
          return { status: 400, body: { error: 'malformed call id' } };
        }
        if (req.method === 'DELETE') return await deleteOne(store, opts.recordings, sid);
        const record = await store.get(sid);
        return record ? { status: 200, body: record } : { status: 404, body: { error: 'no such call' } };
      }
      const sinceRaw = req.query.get('since');
      const limitRaw = req.query.get('limit');
      const cursorRaw = req.query.get('cursor');
      const since = sinceRaw ? parseSince(sinceRaw) : undefined;
      if (sinceRaw && !since) return { status: 400, body: { error: 'since must be an ISO 8601 time (years 0001-9999) or an age like 30m, 2h, 7d' } };
      const limit = limitRaw === null ? 50 : Number(limitRaw);
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) return { status: 400, body: { error: `limit must be a whole number from 1 to ${MAX_LIMIT}` } };
      const after = cursorRaw ? decodeCursor(cursorRaw) : undefined;
      if (cursorRaw && !after) return { status: 400, body: { error: 'cursor must be the `next` of an earlier answer' } };
      const page = await store.listPage({ since, limit, after });
      return { status: 200, body: { calls: page.calls, next: page.next ? encodeCursor(page.next) : null } };
    } catch (err) {
      if (err instanceof DecryptError) return { status: 500, body: { error: err.message } };
      // The database is away for a moment (PostgreSQL store): a retry will do.
      if (err instanceof PostgresStoreError && err.retryable) return { status: 503, body: { error: 'call store unavailable, try again', retryable: true } };
      throw err;
    }
  };
}

/** DELETE /calls/:sid: the call's recording, then its rows. */
async function deleteOne(store: CallStore, recordings: RecordingStorage | undefined, sid: string): Promise<{ status: number; body: unknown }> {
  try {
    if (!(await deleteCall(store, recordings, sid))) return { status: 404, body: { error: 'no such call' } };
  } catch (err) {
    if (err instanceof CallInProgress) return { status: 409, body: { error: err.message } };
    if (err instanceof RecordingDeleteFailed) {
      return err.noStorage ? { status: 409, body: { error: err.message } } : { status: 503, body: { error: err.message, retryable: true } };
    }
    throw err;
  }
  return { status: 200, body: { deleted: sid } };
}
