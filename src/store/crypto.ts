/**
 * Encryption at rest for personal data (transcripts, tool calls, call
 * events, caller and callee numbers): AES-256-GCM, a random 96-bit IV per
 * value, the 128-bit auth tag kept.
 *
 * Stored form (written): "enc2:" + kid + ":" + base64(iv | tag | ciphertext)
 *   - kid: which key sealed it, 8 hex characters (the first 4 bytes of the
 *     key's SHA-256; names the key, reveals nothing usable about it). Reads
 *     pick the key by it, so the key can be rotated: TRANSCRIPT_KEY seals,
 *     TRANSCRIPT_KEY_OLD keys still open what they sealed.
 *   - associated data: the call SID and the field (`from`, `to`) or entry
 *     kind (`transcript`, `tool`, `event`) the value belongs to. A value
 *     copied into another call's row, or into another field, does not open:
 *     DecryptError, never someone else's data shown as this call's.
 * Stored form "enc1:" + base64(iv | tag | ciphertext) (before enc2: no kid, no
 * associated data) is still read, with any of the keys; never written.
 *
 * Plain values are stored as they are (no key set), so a store can be read
 * whether or not a key is set — but a sealed value that cannot be opened is a
 * clear DecryptError, never junk.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

const V1 = 'enc1:';
const V2 = 'enc2:';
const IV_BYTES = 12;
const TAG_BYTES = 16;

export class DecryptError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DecryptError';
  }
}

/** What a sealed value belongs to: a number of the call, or an entry of its record. */
export type SealedField = 'from' | 'to' | 'transcript' | 'tool' | 'event';

/** The keys a store seals with (`current`) and opens with (all of them, by kid). */
export interface Keyring {
  /** TRANSCRIPT_KEY: seals every new value; undefined = values are stored plain. */
  readonly current: { kid: string; key: Buffer } | undefined;
  /** TRANSCRIPT_KEY then each TRANSCRIPT_KEY_OLD, without repeats. */
  readonly keys: readonly { kid: string; key: Buffer }[];
}

/** A key's id in the stored form: the first 4 bytes of its SHA-256, as hex. */
export function keyId(key: Buffer): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 8);
}

/** The keyring of TRANSCRIPT_KEY (`current`) and TRANSCRIPT_KEY_OLD (`old`, read only). */
export function keyring(current: Buffer | undefined, old: readonly Buffer[] = []): Keyring {
  const keys: { kid: string; key: Buffer }[] = [];
  for (const key of current ? [current, ...old] : old) {
    if (!keys.some((k) => k.key.equals(key))) keys.push({ kid: keyId(key), key });
  }
  return { current: current ? keys[0] : undefined, keys };
}

const aadOf = (callSid: string, field: SealedField) => Buffer.from(`callbridge\0${callSid}\0${field}`, 'utf8');

/** Seal `plain` for `field` of call `callSid` with the current key; no key: `plain` as it is. */
export function sealText(plain: string, ring: Keyring, callSid: string, field: SealedField): string {
  const k = ring.current;
  if (!k) return plain;
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', k.key, iv);
  cipher.setAAD(aadOf(callSid, field));
  const ct = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
  return `${V2}${k.kid}:${Buffer.concat([iv, cipher.getAuthTag(), ct]).toString('base64')}`;
}

/**
 * Open a stored value of `field` of call `callSid`. Plain values come back as
 * they are. Throws DecryptError when no key opens it: no key set, a key not
 * in the ring, or a value that belongs to another call or field (or was altered).
 */
export function openText(stored: string, ring: Keyring, callSid: string, field: SealedField): string {
  if (stored.startsWith(V2)) {
    const colon = stored.indexOf(':', V2.length);
    const kid = colon > 0 ? stored.slice(V2.length, colon) : '';
    if (ring.keys.length === 0) throw new DecryptError('this call record is encrypted: set TRANSCRIPT_KEY to read it');
    const candidates = ring.keys.filter((k) => k.kid === kid);
    if (candidates.length === 0) {
      throw new DecryptError(
        `this call record is sealed with key ${kid || '(none)'}, which is neither TRANSCRIPT_KEY nor a TRANSCRIPT_KEY_OLD: set the key it was written with (as TRANSCRIPT_KEY_OLD after a rotation)`,
      );
    }
    const raw = Buffer.from(stored.slice(colon + 1), 'base64');
    for (const k of candidates) {
      const plain = tryOpen(raw, k.key, aadOf(callSid, field));
      if (plain !== undefined) return plain;
    }
    throw new DecryptError(`cannot decrypt this call record: a sealed value does not belong to call ${callSid} (${field}); it was altered or moved from another row`);
  }
  if (stored.startsWith(V1)) {
    if (ring.keys.length === 0) throw new DecryptError('this call record is encrypted: set TRANSCRIPT_KEY to read it');
    const raw = Buffer.from(stored.slice(V1.length), 'base64');
    for (const k of ring.keys) {
      const plain = tryOpen(raw, k.key, undefined);
      if (plain !== undefined) return plain;
    }
    throw new DecryptError('cannot decrypt this call record: TRANSCRIPT_KEY is not the key it was written with (nor is any TRANSCRIPT_KEY_OLD)');
  }
  return stored;
}

function tryOpen(raw: Buffer, key: Buffer, aad: Buffer | undefined): string | undefined {
  if (raw.length < IV_BYTES + TAG_BYTES) return undefined;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, IV_BYTES));
    if (aad) decipher.setAAD(aad);
    decipher.setAuthTag(raw.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
    return Buffer.concat([decipher.update(raw.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]).toString('utf8');
  } catch {
    return undefined;
  }
}

/** Whether a stored value is in a sealed form (whatever the key). */
export function isSealed(stored: string): boolean {
  return stored.startsWith(V2) || stored.startsWith(V1);
}

/**
 * Seal a short nullable field (a caller or callee number) for storage. A value
 * already in sealed form — read from a row this process had no key for — is
 * stored as it is, so rewriting a row never loses or double-seals it.
 */
export function sealField(value: string | null, ring: Keyring, callSid: string, field: SealedField): string | null {
  if (value === null || isSealed(value)) return value;
  return sealText(value, ring, callSid, field);
}

/**
 * Open a nullable stored field. Plain values (rows written before a key was
 * set) come back as they are. A sealed value that cannot be opened throws
 * DecryptError, unless `unreadable` says what to return instead.
 */
export function openField(
  stored: string | null,
  ring: Keyring,
  callSid: string,
  field: SealedField,
  unreadable?: (stored: string) => string,
): string | null {
  if (stored === null) return null;
  if (!unreadable) return openText(stored, ring, callSid, field);
  try {
    return openText(stored, ring, callSid, field);
  } catch (e) {
    if (e instanceof DecryptError) return unreadable(stored);
    throw e;
  }
}

/** The "enc1:" form, as callbridge wrote it before enc2 (no kid, no associated data): only for tests that make old rows. */
export function sealV1ForTests(plain: string, key: Buffer): string {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  const ct = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
  return V1 + Buffer.concat([iv, cipher.getAuthTag(), ct]).toString('base64');
}
