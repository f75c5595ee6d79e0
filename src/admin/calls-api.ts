/**
 * GET /calls and GET /calls/:sid — call records as JSON for operators.
 * Disabled (404 for everything) unless ADMIN_TOKEN is set; then every
 * request needs `Authorization: Bearer <ADMIN_TOKEN>` (compared in constant
 * time). Records hold personal data: never cache, never log bodies.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { AdminRequest, AdminResponse } from '../call/ports.js';
import type { CallStore } from '../store/types.js';
import { DecryptError } from '../store/crypto.js';

const MAX_LIMIT = 500;

export function createAdminHandler(store: CallStore, adminToken: string | undefined): (req: AdminRequest) => Promise<AdminResponse> {
  const expected = adminToken ? createHash('sha256').update(adminToken).digest() : undefined;
  return async (req) => {
    if (!expected) return { status: 404, body: { error: 'not found' } };
    const auth = req.headers.authorization ?? '';
    const presented = createHash('sha256').update(auth.startsWith('Bearer ') ? auth.slice(7) : '').digest();
    if (!auth.startsWith('Bearer ') || !timingSafeEqual(presented, expected)) {
      return { status: 401, body: { error: 'unauthorized' } };
    }
    if (req.method !== 'GET') return { status: 405, body: { error: 'method not allowed' } };
    const m = /^\/calls(?:\/([^/]+))?\/?$/.exec(req.path);
    if (!m) return { status: 404, body: { error: 'not found' } };
    try {
      if (m[1]) {
        const record = store.get(decodeURIComponent(m[1]));
        return record ? { status: 200, body: record } : { status: 404, body: { error: 'no such call' } };
      }
      const sinceRaw = req.query.get('since');
      const limitRaw = req.query.get('limit');
      const since = sinceRaw ? new Date(sinceRaw) : undefined;
      if (since && Number.isNaN(since.getTime())) return { status: 400, body: { error: 'since must be an ISO 8601 time' } };
      const limit = limitRaw === null ? 50 : Number(limitRaw);
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) return { status: 400, body: { error: `limit must be a whole number from 1 to ${MAX_LIMIT}` } };
      return { status: 200, body: { calls: store.list({ since, limit }) } };
    } catch (err) {
      if (err instanceof DecryptError) return { status: 500, body: { error: err.message } };
      throw err;
    }
  };
}
