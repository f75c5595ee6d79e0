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
 * A call's later streams (a failed transfer back to the agent opens leg 2, 3,
 * …) and calls served by an agent other than the default get a v2 token:
 * `v2.<leg>.<expiryUnixMs>.<mac>`, the MAC over
 * `v2.<callSid>.<leg>.<expiryUnixMs>.<agent>`. The agent's name travels
 * beside it (the stream's `agent` parameter) and is checked by the MAC, so a
 * stream can neither pick another leg nor another agent. Leg 1 of the default
 * agent keeps the v1 form (agent '').
 *
 * Contract: `verifyAdmissionToken` never throws; bad input comes back as a
 * value with the reason, and the MAC is compared in constant time.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

const VERSION = 'v1';
const MAC_BYTES = 32;
/** Longest token accepted for parsing (a real one is ~60 characters). */
const MAX_TOKEN_CHARS = 128;

/** Legs of one call a token can name: 1 (the first stream) to MAX_LEG. */
export const MAX_LEG = 20;
/** Longest agent name a v2 token covers (an agent file's `name` is shorter). */
const MAX_AGENT_CHARS = 100;

/** Which stream of which agent a token admits: leg 1..MAX_LEG; agent '' = the default agent. */
export interface TokenScope {
  leg: number;
  agent: string;
}

export type TokenCheck = { ok: true; expiresAtMs: number; leg: number } | { ok: false; error: 'malformed' | 'bad_mac' | 'expired' };

function mac(secret: Buffer, callSid: string, expiresAtMs: number, scope: TokenScope | undefined): Buffer {
  const text = scope ? `v2.${callSid}.${scope.leg}.${expiresAtMs}.${scope.agent}` : `${VERSION}.${callSid}.${expiresAtMs}`;
  return createHmac('sha256', secret).update(text).digest();
}

const isV1 = (scope: TokenScope | undefined) => scope === undefined || (scope.leg === 1 && scope.agent === '');

/**
 * A token admitting a stream for `callSid` until `expiresAtMs` (Unix ms):
 * leg `scope.leg` of agent `scope.agent` (default: leg 1, the default agent).
 * Throws RangeError on a leg outside 1..MAX_LEG (a bug of the caller's).
 */
export function mintAdmissionToken(secret: Buffer, callSid: string, expiresAtMs: number, scope?: TokenScope): string {
  const expiry = Math.floor(expiresAtMs);
  if (isV1(scope)) return `${VERSION}.${expiry}.${mac(secret, callSid, expiry, undefined).toString('base64url')}`;
  const s = scope!;
  if (!Number.isInteger(s.leg) || s.leg < 1 || s.leg > MAX_LEG) throw new RangeError(`leg must be 1..${MAX_LEG}`);
  return `v2.${s.leg}.${expiry}.${mac(secret, callSid, expiry, s).toString('base64url')}`;
}

/**
 * Check a presented token for `callSid` at `nowMs` (Unix ms); `agent` is the
 * name presented beside it ('' or absent = the default agent). On success,
 * the leg it admits.
 */
export function verifyAdmissionToken(secret: Buffer, callSid: string, token: unknown, nowMs: number, agent: unknown = ''): TokenCheck {
  if (typeof token !== 'string' || token.length > MAX_TOKEN_CHARS) return { ok: false, error: 'malformed' };
  if (typeof agent !== 'string' || agent.length > MAX_AGENT_CHARS) return { ok: false, error: 'malformed' };
  const m = /^v1\.(\d{1,16})\.([A-Za-z0-9_-]{43})$/.exec(token) ?? /^v2\.(\d{1,2})\.(\d{1,16})\.([A-Za-z0-9_-]{43})$/.exec(token);
  if (!m) return { ok: false, error: 'malformed' };
  const v2 = m.length === 4;
  const leg = v2 ? Number(m[1]) : 1;
  const expiresAtMs = Number(v2 ? m[2] : m[1]);
  const presented = Buffer.from((v2 ? m[3] : m[2])!, 'base64url');
  if (!Number.isSafeInteger(expiresAtMs) || presented.length !== MAC_BYTES || leg < 1 || leg > MAX_LEG) return { ok: false, error: 'malformed' };
  const scope: TokenScope | undefined = v2 ? { leg, agent } : undefined;
  if (!v2 && agent !== '') return { ok: false, error: 'bad_mac' }; // a v1 token admits the default agent only
  // The MAC first, in constant time: an expired token says "expired" only when it is genuine.
  if (!timingSafeEqual(presented, mac(secret, callSid, expiresAtMs, scope))) return { ok: false, error: 'bad_mac' };
  if (nowMs > expiresAtMs) return { ok: false, error: 'expired' };
  return { ok: true, expiresAtMs, leg };
}
