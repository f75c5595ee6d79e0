/**
 * Encryption at rest for personal data (transcripts, tool arguments and
 * results): AES-256-GCM, a random 96-bit IV per value, the auth tag kept.
 * Stored form: "enc1:" + base64(iv | tag | ciphertext). Plain values are
 * stored as they are, so a store can be read whether or not a key is set —
 * but an encrypted value without the right key is a clear error, never junk.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

const PREFIX = 'enc1:';

export class DecryptError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DecryptError';
  }
}

export function sealText(plain: string, key: Buffer | undefined): string {
  if (!key) return plain;
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  const ct = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
  return PREFIX + Buffer.concat([iv, cipher.getAuthTag(), ct]).toString('base64');
}

export function openText(stored: string, key: Buffer | undefined): string {
  if (!stored.startsWith(PREFIX)) return stored;
  if (!key) throw new DecryptError('this call record is encrypted: set TRANSCRIPT_KEY to read it');
  const raw = Buffer.from(stored.slice(PREFIX.length), 'base64');
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12));
    decipher.setAuthTag(raw.subarray(12, 28));
    return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8');
  } catch {
    throw new DecryptError('cannot decrypt this call record: TRANSCRIPT_KEY is not the key it was written with');
  }
}

/** Whether a stored value is in sealed form (whatever the key). */
export function isSealed(stored: string): boolean {
  return stored.startsWith(PREFIX);
}

/**
 * Seal a short nullable field (a caller or callee number) for storage. A value
 * already in sealed form — read from a row this process had no key for — is
 * stored as it is, so rewriting a row never loses or double-seals it.
 */
export function sealField(value: string | null, key: Buffer | undefined): string | null {
  if (value === null || isSealed(value)) return value;
  return sealText(value, key);
}

/**
 * Open a nullable stored field. Plain values (rows written before a key was
 * set) come back as they are. A sealed value that cannot be opened throws
 * DecryptError, unless `unreadable` says what to return instead.
 */
export function openField(stored: string | null, key: Buffer | undefined, unreadable?: (stored: string) => string): string | null {
  if (stored === null) return null;
  if (!unreadable) return openText(stored, key);
  try {
    return openText(stored, key);
  } catch (e) {
    if (e instanceof DecryptError) return unreadable(stored);
    throw e;
  }
}
