/**
 * Sealing at rest (src/store/crypto.ts), as pure functions: each value is
 * bound to its call and field, names its key, and opens with the current or
 * an old key; what fails to open is a DecryptError that says why. The stores'
 * use of it (rows, rotation, swapped rows) is in store-contract.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { DecryptError, isSealed, keyId, keyring, openField, openText, sealField, sealText, sealV1ForTests } from '../src/store/crypto.js';

const K1 = Buffer.alloc(32, 1);
const K2 = Buffer.alloc(32, 2);
const A = 'CA0000000000000000000000000000000a';
const B = 'CA0000000000000000000000000000000b';

describe('sealed values', () => {
  it('enc2 names its key: the first 4 bytes of its SHA-256, 8 hex characters', () => {
    const sealed = sealText('hello', keyring(K1), A, 'transcript');
    expect(keyId(K1)).toMatch(/^[0-9a-f]{8}$/);
    expect(keyId(K1)).not.toBe(keyId(K2));
    expect(sealed.startsWith(`enc2:${keyId(K1)}:`)).toBe(true);
    expect(isSealed(sealed)).toBe(true);
    expect(openText(sealed, keyring(K1), A, 'transcript')).toBe('hello');
    expect(sealText('hello', keyring(undefined), A, 'transcript')).toBe('hello'); // no key: stored plain
    expect(sealText('hello', keyring(K1), A, 'transcript')).not.toBe(sealed); // a fresh IV each time
  });

  it('a value sealed for call A does not open as call B, nor as another field of A', () => {
    const ring = keyring(K1);
    const sealed = sealText('+15550001111', ring, A, 'from');
    expect(() => openText(sealed, ring, B, 'from')).toThrow(DecryptError);
    expect(() => openText(sealed, ring, B, 'from')).toThrow(/does not belong to call CA0+b \(from\)/);
    expect(() => openText(sealed, ring, A, 'to')).toThrow(DecryptError);
    expect(() => openField(sealed, ring, B, 'from')).toThrow(DecryptError);
    expect(openField(sealed, ring, B, 'from', () => '(encrypted)')).toBe('(encrypted)');
    expect(openField(sealed, ring, A, 'from')).toBe('+15550001111');
  });

  it('rotation: the new key seals, old keys still open what they sealed; a key not given is named', () => {
    const old = sealText('before', keyring(K1), A, 'event');
    const rotated = keyring(K2, [K1]);
    expect(openText(old, rotated, A, 'event')).toBe('before');
    const fresh = sealText('after', rotated, A, 'event');
    expect(fresh.startsWith(`enc2:${keyId(K2)}:`)).toBe(true);
    expect(() => openText(old, keyring(K2), A, 'event')).toThrow(new RegExp(`sealed with key ${keyId(K1)}.*TRANSCRIPT_KEY_OLD`));
    expect(() => openText(old, keyring(undefined), A, 'event')).toThrow(/set TRANSCRIPT_KEY/);
    expect(keyring(K1, [K1, K2]).keys).toHaveLength(2); // repeats dropped
  });

  it('enc1 values (before enc2) still open, with the current key or an old one; never written', () => {
    const v1 = sealV1ForTests('legacy', K1);
    expect(v1.startsWith('enc1:')).toBe(true);
    expect(isSealed(v1)).toBe(true);
    expect(openText(v1, keyring(K1), A, 'transcript')).toBe('legacy');
    expect(openText(v1, keyring(K2, [K1]), B, 'tool')).toBe('legacy'); // no associated data in enc1
    expect(() => openText(v1, keyring(K2), A, 'transcript')).toThrow(/not the key it was written with/);
  });

  it('altered or truncated values are errors, never junk; plain values pass through', () => {
    const ring = keyring(K1);
    const sealed = sealText('secret', ring, A, 'tool');
    const body = Buffer.from(sealed.slice(sealed.lastIndexOf(':') + 1), 'base64');
    body[body.length - 1]! ^= 1;
    expect(() => openText(`enc2:${keyId(K1)}:${body.toString('base64')}`, ring, A, 'tool')).toThrow(DecryptError);
    expect(() => openText(`enc2:${keyId(K1)}:AAAA`, ring, A, 'tool')).toThrow(DecryptError);
    expect(() => openText('enc2:', ring, A, 'tool')).toThrow(DecryptError);
    expect(openText('{"plain":true}', ring, A, 'tool')).toBe('{"plain":true}');
    expect(sealField(null, ring, A, 'from')).toBeNull();
    expect(sealField(sealed, ring, B, 'to')).toBe(sealed); // already sealed: kept as stored
  });
});
