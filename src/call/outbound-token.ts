/**
 * The sealed token of an outbound call: which agent serves it and the
 * per-call context, carried in the `o` query parameter of the
 * /voice/incoming URL the call is placed with, so whichever instance Twilio
 * calls back opens it without shared state. Pure: no I/O, no clock of its
 * own (times are passed in).
 *
 * Format: `v1.` + base64url(iv 12 bytes ‖ AES-256-GCM ciphertext ‖ tag 16
 * bytes) of the JSON `{a?, c?, e}` (agent, context, expiry in Unix ms). The
 * key is HKDF-SHA256 of ADMISSION_SECRET (shared by every instance), info
 * "callbridge outbound call": sealed, so the context (member IDs, reasons)
 * is neither readable nor changeable in Twilio's logs or by a forger.
 *
 * Contract:
 * - `openCallToken` never throws: a tampered, expired, malformed or
 *   over-long token (or one whose content breaks the limits) is null.
 * - Limits (checked by `contextProblems`, enforced on seal and open):
 *   agent names [a-z0-9_-]{1,40}; context at most 20 keys ([A-Za-z0-9_.-],
 *   1–40 chars), string values of at most 200 chars, and at most
 *   MAX_CONTEXT_BYTES of JSON in all, so the whole URL stays far below
 *   Twilio's limit on a webhook URL (a token is at most MAX_TOKEN_CHARS).
 * - A token is good until its expiry (inclusive), OUTBOUND_TOKEN_TTL_MS after
 *   the call is placed: long enough to ring out, short enough to be useless
 *   later.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { IncomingOptions } from './ports.js';

const VERSION = 'v1';
const IV_BYTES = 12;
const TAG_BYTES = 16;
const AAD = Buffer.from('callbridge outbound call token v1');

/** How long a placed call's token opens, ms: ringing (≤ 60 s by default) plus slack, like a pre-warmed session's life. */
export const OUTBOUND_TOKEN_TTL_MS = 10 * 60_000;
export const MAX_CONTEXT_KEYS = 20;
export const MAX_CONTEXT_VALUE_CHARS = 200;
/** The context's JSON, UTF-8 bytes. */
export const MAX_CONTEXT_BYTES = 1500;
/** Longest token accepted: the largest context sealed, base64url, with room to spare. */
export const MAX_TOKEN_CHARS = 2400;

export const AGENT_NAME = /^[a-z0-9_-]{1,40}$/;
const CONTEXT_KEY = /^[A-Za-z0-9_.-]{1,40}$/;

/** Every problem with a context (empty = fine). Values are never quoted: they may be personal data. */
export function contextProblems(context: Record<string, string>): string[] {
  const problems: string[] = [];
  const keys = Object.keys(context);
  if (keys.length > MAX_CONTEXT_KEYS) problems.push(`context: at most ${MAX_CONTEXT_KEYS} keys (got ${keys.length})`);
  for (const k of keys) {
    if (!CONTEXT_KEY.test(k)) problems.push(`context: key '${k.slice(0, 40)}' must be 1-40 of A-Z a-z 0-9 _ . -`);
    const v = context[k];
    if (typeof v !== 'string') problems.push(`context.${k}: expected a string`);
    else if (v.length > MAX_CONTEXT_VALUE_CHARS) problems.push(`context.${k}: at most ${MAX_CONTEXT_VALUE_CHARS} characters (got ${v.length})`);
  }
  const bytes = Buffer.byteLength(JSON.stringify(context), 'utf8');
  if (bytes > MAX_CONTEXT_BYTES) problems.push(`context: at most ${MAX_CONTEXT_BYTES} bytes of JSON in all (got ${bytes})`);
  return problems;
}

/** The token key from ADMISSION_SECRET's bytes: derive once at start-up. */
export function outboundTokenKey(secret: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), 'callbridge outbound call', 32));
}

const PayloadSchema = z
  .object({
    a: z.string().regex(AGENT_NAME).optional(),
    c: z.record(z.string(), z.string()).optional(),
    e: z.number().int().nonnegative(),
  })
  .strict();

/** Seal an outbound call's agent and context until `expiresAtMs` (Unix ms). Throws on a context over the limits (check `contextProblems` first). */
export function sealCallToken(key: Buffer, opts: IncomingOptions, expiresAtMs: number): string {
  if (opts.agent !== undefined && !AGENT_NAME.test(opts.agent)) throw new Error('outbound token: agent name must be [a-z0-9_-]{1,40}');
  const problems = opts.context ? contextProblems(opts.context) : [];
  if (problems.length) throw new Error(`outbound token: ${problems.join('; ')}`);
  const payload = JSON.stringify({
    ...(opts.agent !== undefined ? { a: opts.agent } : {}),
    ...(opts.context && Object.keys(opts.context).length ? { c: opts.context } : {}),
    e: Math.floor(expiresAtMs),
  });
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(AAD);
  const body = Buffer.concat([cipher.update(payload, 'utf8'), cipher.final()]);
  return `${VERSION}.${Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64url')}`;
}

/** Open a token at `nowMs` (Unix ms): the call's agent and context, or null (forged, changed, expired, malformed). */
export function openCallToken(key: Buffer, token: unknown, nowMs: number): IncomingOptions | null {
  if (typeof token !== 'string' || token.length > MAX_TOKEN_CHARS) return null;
  const m = /^v1\.([A-Za-z0-9_-]+)$/.exec(token);
  if (!m) return null;
  const raw = Buffer.from(m[1]!, 'base64url');
  if (raw.length < IV_BYTES + TAG_BYTES + 1) return null;
  let payload: unknown;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, IV_BYTES));
    decipher.setAAD(AAD);
    decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
    const text = Buffer.concat([decipher.update(raw.subarray(IV_BYTES, raw.length - TAG_BYTES)), decipher.final()]).toString('utf8');
    payload = JSON.parse(text);
  } catch {
    return null;
  }
  const p = PayloadSchema.safeParse(payload);
  if (!p.success || nowMs > p.data.e) return null;
  if (p.data.c && contextProblems(p.data.c).length) return null;
  return { ...(p.data.a !== undefined ? { agent: p.data.a } : {}), ...(p.data.c ? { context: p.data.c } : {}) };
}
