/**
 * GET /calls and GET /calls/:sid — call records as JSON for operators.
 * Disabled (404 for everything) unless ADMIN_TOKEN is set; then every
 * request needs `Authorization: Bearer <ADMIN_TOKEN>` (compared in constant
 * time). `since` takes an ISO time or an age (30m, 2h, 7d); `limit` 1–500.
 * Records hold personal data: never cache, never log bodies.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { AdminReader } from '../call/ports.js';
import type { CallStore } from '../store/types.js';
import { DecryptError } from '../store/crypto.js';
import { parseSince } from '../store/since.js';
import { PostgresStoreError } from '../store/postgres.js';

const MAX_LIMIT = 500;

/** The reader the edge serves on GET /calls… (wired in main.ts straight to startServer, not through the call layer). */
export function createAdminHandler(store: CallStore, adminToken: string | undefined): AdminReader {
  const expected = adminToken ? createHash('sha256').update(adminToken).digest() : undefined;
  return async (req) => {
    if (!expected) return { status: 404, body: { error: 'not found' } };
    // The scheme is case-insensitive (RFC 9110); the token is compared as digests, in constant time.
    const bearer = /^bearer +(.+)$/i.exec(req.headers.authorization ?? '');
    const presented = createHash('sha256').update(bearer?.[1] ?? '').digest();
    if (!bearer || !timingSafeEqual(presented, expected)) {
      return { status: 401, body: { error: 'unauthorized' } };
    }
    if (req.method !== 'GET') return { status: 405, body: { error: 'method not allowed' } };
    const m = /^\/calls(?:\/([^/]+))?\/?$/.exec(req.path);
    if (!m) return { status: 404, body: { error: 'not found' } };
    try {
      if (m[1]) {
        let sid: string;
        try {
          sid = decodeURIComponent(m[1]);
        } catch {
          return { status: 400, body: { error: 'malformed call id' } };
        }
        const record = await store.get(sid);
        return record ? { status: 200, body: record } : { status: 404, body: { error: 'no such call' } };
      }
      const sinceRaw = req.query.get('since');
      const limitRaw = req.query.get('limit');
      const since = sinceRaw ? parseSince(sinceRaw) : undefined;
      if (sinceRaw && !since) return { status: 400, body: { error: 'since must be an ISO 8601 time or an age like 30m, 2h, 7d' } };
      const limit = limitRaw === null ? 50 : Number(limitRaw);
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) return { status: 400, body: { error: `limit must be a whole number from 1 to ${MAX_LIMIT}` } };
      return { status: 200, body: { calls: await store.list({ since, limit }) } };
    } catch (err) {
      if (err instanceof DecryptError) return { status: 500, body: { error: err.message } };
      // The database is away for a moment (PostgreSQL store): a retry will do.
      if (err instanceof PostgresStoreError && err.retryable) return { status: 503, body: { error: 'call store unavailable, try again', retryable: true } };
      throw err;
    }
  };
}
