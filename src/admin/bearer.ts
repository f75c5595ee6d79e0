/**
 * The operator's bearer token (ADMIN_TOKEN), as GET /calls… and the details
 * of GET /voice/health check it: `Authorization: Bearer <token>`, the scheme
 * case-insensitive (RFC 9110), the token compared as SHA-256 digests in
 * constant time. No token configured: nothing is checked here (undefined).
 */
import { createHash, timingSafeEqual } from 'node:crypto';

const sha256 = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/** Whether an Authorization header carries the token; undefined when no token is set. */
export function bearerCheck(token: string | undefined): ((authorization: string | undefined) => boolean) | undefined {
  if (!token) return undefined;
  const expected = sha256(token);
  return (authorization) => {
    const bearer = /^bearer +(.+)$/i.exec(authorization ?? '');
    return bearer !== null && timingSafeEqual(sha256(bearer[1]!), expected);
  };
}
