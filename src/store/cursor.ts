/**
 * The `next` of a call listing (GET /calls, `calls list`): where a page
 * ended, as an opaque string for the client to hand back (`?cursor=`).
 * Inside: the last call's place in the listing order (start time as the
 * store keeps it, then call SID), so the next page starts right after it
 * whatever was inserted meanwhile. Bad input comes back as undefined.
 */
import type { ListPosition } from './types.js';

const PREFIX = 'c1.';
/** An ISO 8601 UTC time as the stores write it: ms (SQLite) or µs (PostgreSQL). */
const TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$/;
const MAX_SID = 128;

export function encodeCursor(p: ListPosition): string {
  return PREFIX + Buffer.from(JSON.stringify([p.t, p.sid]), 'utf8').toString('base64url');
}

export function decodeCursor(s: string): ListPosition | undefined {
  if (!s.startsWith(PREFIX) || s.length > 512) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(s.slice(PREFIX.length), 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  if (!Array.isArray(v) || v.length !== 2) return undefined;
  const [t, sid] = v as unknown[];
  if (typeof t !== 'string' || !TIME.test(t) || Number.isNaN(Date.parse(t))) return undefined;
  if (typeof sid !== 'string' || sid.length === 0 || sid.length > MAX_SID) return undefined;
  return { t, sid };
}
