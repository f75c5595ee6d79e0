/**
 * The per-call stream admission token: stateless, so any instance that holds
 * the shared secret (ADMISSION_SECRET) can check a token another instance
 * minted. Pure: no I/O, no clock of its own (times are passed in).
 *
 * Format: `v1.<expiryUnixMs>.<mac>`, where mac is the base64url HMAC-SHA-256
 * (32 bytes, 43 characters) of `v1.<callSid>.<expiryUnixMs>` under the secret.
 * The CallSid is not in the token: the checker takes it from the stream's
 * `start`, so a token is good for its own call only. A token is valid until
 * its expiry (inclusive); single use is not the token's business (the call
 * store's claim does it, across instances).
 *
 * Contract: `verifyAdmissionToken` never throws; bad input comes back as a
 * value with the reason, and the MAC is compared in constant time.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

const VERSION = 'v1';
const MAC_BYTES = 32;
/** Longest token accepted for parsing (a real one is ~60 characters). */
const MAX_TOKEN_CHARS = 128;

export type TokenCheck = { ok: true; expiresAtMs: number } | { ok: false; error: 'malformed' | 'bad_mac' | 'expired' };

function mac(secret: Buffer, callSid: string, expiresAtMs: number): Buffer {
  return createHmac('sha256', secret).update(`${VERSION}.${callSid}.${expiresAtMs}`).digest();
}

/** A token admitting a stream for `callSid` until `expiresAtMs` (Unix ms). */
export function mintAdmissionToken(secret: Buffer, callSid: string, expiresAtMs: number): string {
  const expiry = Math.floor(expiresAtMs);
  return `${VERSION}.${expiry}.${mac(secret, callSid, expiry).toString('base64url')}`;
}

/** Check a presented token for `callSid` at `nowMs` (Unix ms). */
export function verifyAdmissionToken(secret: Buffer, callSid: string, token: unknown, nowMs: number): TokenCheck {
  if (typeof token !== 'string' || token.length > MAX_TOKEN_CHARS) return { ok: false, error: 'malformed' };
  const m = /^v1\.(\d{1,16})\.([A-Za-z0-9_-]{43})$/.exec(token);
  if (!m) return { ok: false, error: 'malformed' };
  const expiresAtMs = Number(m[1]);
  const presented = Buffer.from(m[2]!, 'base64url');
  if (!Number.isSafeInteger(expiresAtMs) || presented.length !== MAC_BYTES) return { ok: false, error: 'malformed' };
  // The MAC first, in constant time: an expired token says "expired" only when it is genuine.
  if (!timingSafeEqual(presented, mac(secret, callSid, expiresAtMs))) return { ok: false, error: 'bad_mac' };
  if (nowMs > expiresAtMs) return { ok: false, error: 'expired' };
  return { ok: true, expiresAtMs };
}
