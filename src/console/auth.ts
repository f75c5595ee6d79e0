/**
 * Console sign-in and sessions (api.ts: cookie `cb_console`, CSRF header
 * `x-console-csrf`, same-origin rule).
 *
 * - Tokens (ADMIN_TOKEN and CONSOLE_TOKENS) are compared as SHA-256 digests
 *   in constant time; every configured token is compared on every attempt,
 *   so the time taken says nothing about which one came close.
 * - A session is stateless: the cookie is base64url(JSON payload) "."
 *   base64url(HMAC-SHA256(key, payload)), payload {n: name, r: role, exp:
 *   epoch ms, sid: 16 random bytes base64url}. The key is derived from
 *   ADMISSION_SECRET with HKDF-SHA256 (info `callbridge console session`), so
 *   every instance sharing that secret accepts the same cookies and a new
 *   secret signs everyone out.
 * - The CSRF token is base64url(HMAC-SHA256(key, 'csrf' + sid)): tied to the
 *   session, never stored.
 * - Sign-out adds the sid to a revoked set kept IN MEMORY by this process,
 *   bounded (MAX_REVOKED, the oldest forgotten first; entries leave once the
 *   session would have expired anyway). Across instances that means: the
 *   browser drops its cookie at once (Max-Age=0), but a copy of the cookie
 *   replayed to ANOTHER instance (or to this one after a restart) is
 *   accepted there until its own expiry (CONSOLE_SESSION_HOURS).
 * - State changes must be same-origin: `Sec-Fetch-Site` absent or
 *   `same-origin`, and `Origin`, when present, naming the `Host` header's host.
 */
import { createHash, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Me, Role } from './api.js';

export const COOKIE_NAME = 'cb_console';
export const CSRF_HEADER = 'x-console-csrf';
/** Sign-outs remembered at most (each ~60 bytes). */
export const MAX_REVOKED = 10_000;
const HKDF_INFO = 'callbridge console session';

export interface ConsoleToken {
  name: string;
  role: Role;
  token: string;
}

/** A valid session, read from its cookie. */
export interface Session {
  user: string;
  role: Role;
  /** Epoch ms. */
  exp: number;
  sid: string;
}

export interface Sessions {
  /** The identity whose token this is, or undefined (constant time over all tokens). */
  checkToken(token: string): { name: string; role: Role } | undefined;
  /** A new session for `who`: its Set-Cookie value and the Me to answer. */
  issue(who: { name: string; role: Role }): { setCookie: string; me: Me };
  /** The session of a request's Cookie header, or undefined (none, forged, expired, or signed out here). */
  read(cookieHeader: string | undefined): Session | undefined;
  /** Whether the session is still good now (not expired, not signed out): for long-lived streams. */
  alive(session: Session): boolean;
  me(session: Session): Me;
  csrfOk(session: Session, header: string | undefined): boolean;
  /** Sign out: remember the sid as revoked; returns the Set-Cookie that clears the cookie. */
  revoke(session: Session | undefined): string;
}

const sha256 = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();
const b64u = (b: Buffer | string): string => Buffer.from(b).toString('base64url');

/** The session key of ADMISSION_SECRET's bytes. */
export function sessionKey(secret: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), Buffer.from(HKDF_INFO, 'utf8'), 32));
}

export function createSessions(opts: { tokens: readonly ConsoleToken[]; secret: Buffer; sessionMs: number; now: () => number }): Sessions {
  const key = sessionKey(opts.secret);
  const digests = opts.tokens.map((t) => ({ name: t.name, role: t.role, digest: sha256(t.token) }));
  /** sid → the session's expiry (epoch ms), oldest sign-out first. */
  const revoked = new Map<string, number>();
  const mac = (data: string): Buffer => createHmac('sha256', key).update(data, 'utf8').digest();
  const maxAgeS = Math.max(0, Math.floor(opts.sessionMs / 1000));
  const cookieAttrs = 'HttpOnly; Secure; SameSite=Strict; Path=/console';

  const forgetExpired = (): void => {
    const now = opts.now();
    for (const [sid, exp] of revoked) {
      if (exp > now && revoked.size <= MAX_REVOKED) break;
      revoked.delete(sid);
    }
  };
  const csrf = (sid: string): string => b64u(mac(`csrf${sid}`));
  const me = (s: Session): Me => ({ user: s.user, role: s.role, csrf: csrf(s.sid), expiresAt: new Date(s.exp).toISOString() });
  const alive = (s: Session): boolean => s.exp > opts.now() && !revoked.has(s.sid);

  return {
    checkToken(token) {
      const given = sha256(token);
      let found: { name: string; role: Role } | undefined;
      for (const t of digests) if (timingSafeEqual(given, t.digest) && !found) found = { name: t.name, role: t.role };
      return found;
    },
    issue(who) {
      const session: Session = { user: who.name, role: who.role, exp: opts.now() + opts.sessionMs, sid: b64u(randomBytes(16)) };
      const payload = b64u(JSON.stringify({ n: session.user, r: session.role, exp: session.exp, sid: session.sid }));
      const value = `${payload}.${b64u(mac(payload))}`;
      return { setCookie: `${COOKIE_NAME}=${value}; ${cookieAttrs}; Max-Age=${maxAgeS}`, me: me(session) };
    },
    read(cookieHeader) {
      const value = cookieValue(cookieHeader, COOKIE_NAME);
      if (!value) return undefined;
      const m = /^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]{43})$/.exec(value);
      if (!m) return undefined;
      const expected = mac(m[1]!);
      const given = Buffer.from(m[2]!, 'base64url');
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
      let p: unknown;
      try {
        p = JSON.parse(Buffer.from(m[1]!, 'base64url').toString('utf8'));
      } catch {
        return undefined;
      }
      const o = p as { n?: unknown; r?: unknown; exp?: unknown; sid?: unknown };
      if (typeof o.n !== 'string' || (o.r !== 'admin' && o.r !== 'read') || typeof o.exp !== 'number' || typeof o.sid !== 'string') return undefined;
      const session: Session = { user: o.n, role: o.r, exp: o.exp, sid: o.sid };
      return alive(session) ? session : undefined;
    },
    alive,
    me,
    csrfOk(session, header) {
      if (!header) return false;
      const a = sha256(header);
      const b = sha256(csrf(session.sid));
      return timingSafeEqual(a, b);
    },
    revoke(session) {
      if (session) {
        revoked.delete(session.sid);
        revoked.set(session.sid, session.exp);
        forgetExpired();
      }
      return `${COOKIE_NAME}=; ${cookieAttrs}; Max-Age=0`;
    },
  };
}

/** One cookie's value from a Cookie header (the first of that name), or undefined. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/**
 * Whether a state-changing request comes from the console's own origin:
 * `Sec-Fetch-Site` absent or `same-origin`, and `Origin` (when sent, and not
 * `null`-less) naming the same host (and port) as `Host`.
 */
export function sameOrigin(headers: Record<string, string>): boolean {
  const site = headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin') return false;
  const origin = headers.origin;
  if (origin === undefined) return true;
  const host = headers.host;
  if (!host) return false;
  try {
    return new URL(origin).host.toLowerCase() === host.trim().toLowerCase();
  } catch {
    return false; // `Origin: null` (a sandboxed or opaque origin) and anything that is not a URL
  }
}
