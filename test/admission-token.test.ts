/** The stateless stream admission token (src/call/admission-token.ts): minted on one instance, checked on any that shares the secret. */
import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { mintAdmissionToken, verifyAdmissionToken } from '../src/call/admission-token.js';
import { loadConfig } from '../src/config.js';

const SECRET = Buffer.from('a shared secret of at least thirty-two characters');
const OTHER = Buffer.from('another secret, also thirty-two characters or more');
const SID = 'CA' + '1'.repeat(32);
const SID2 = 'CA' + '2'.repeat(32);
const NOW = 1_790_000_000_000;

describe('admission token', () => {
  it('is v1.<expiry ms>.<43-char base64url HMAC>, under Twilio\'s parameter limit, and checks on another holder of the secret', () => {
    const t = mintAdmissionToken(SECRET, SID, NOW + 30_000);
    expect(t).toMatch(/^v1\.1790000030000\.[A-Za-z0-9_-]{43}$/);
    // The value itself, a known answer worked out apart from the code under test (openssl dgst -sha256 -hmac):
    // base64url HMAC-SHA-256 of `v1.<CallSid>.<expiry ms>` under the secret.
    expect(t).toBe('v1.1790000030000.FbJZEvXqYY_4cSgF0FUbB8Ctfi0VR-c3FX4-6vJSimg');
    expect(t).toBe(`v1.1790000030000.${createHmac('sha256', SECRET).update(`v1.${SID}.1790000030000`).digest('base64url')}`);
    expect(mintAdmissionToken(SECRET, SID, NOW + 30_000.9)).toBe(t); // the expiry is whole ms, floored
    expect('token'.length + t.length).toBeLessThan(500);
    expect(verifyAdmissionToken(Buffer.from(SECRET), SID, t, NOW)).toEqual({ ok: true, expiresAtMs: NOW + 30_000, leg: 1 });
    expect(verifyAdmissionToken(SECRET, SID, t, NOW + 30_000)).toMatchObject({ ok: true }); // valid through its expiry
  });

  it('refuses another call, another secret, an edited expiry or MAC, and an expired token', () => {
    const t = mintAdmissionToken(SECRET, SID, NOW + 30_000);
    expect(verifyAdmissionToken(SECRET, SID2, t, NOW)).toEqual({ ok: false, error: 'bad_mac' });
    expect(verifyAdmissionToken(OTHER, SID, t, NOW)).toEqual({ ok: false, error: 'bad_mac' });
    expect(verifyAdmissionToken(SECRET, SID, t.replace('.1790000030000.', '.1790000090000.'), NOW)).toEqual({ ok: false, error: 'bad_mac' });
    const mac = t.split('.')[2]!;
    const flipped = `v1.${NOW + 30_000}.${(mac[0] === 'A' ? 'B' : 'A') + mac.slice(1)}`;
    expect(verifyAdmissionToken(SECRET, SID, flipped, NOW)).toEqual({ ok: false, error: 'bad_mac' });
    expect(verifyAdmissionToken(SECRET, SID, t, NOW + 30_001)).toEqual({ ok: false, error: 'expired' });
  });

  it('v2: a later leg, or another agent, is signed in; the agent presented beside it must match', () => {
    const t = mintAdmissionToken(SECRET, SID, NOW + 30_000, { leg: 2, agent: 'billing desk' });
    expect(t).toMatch(/^v2\.2\.1790000030000\.[A-Za-z0-9_-]{43}$/);
    expect(t).toBe(`v2.2.1790000030000.${createHmac('sha256', SECRET).update(`v2.${SID}.2.1790000030000.billing desk`).digest('base64url')}`);
    expect(verifyAdmissionToken(SECRET, SID, t, NOW, 'billing desk')).toEqual({ ok: true, expiresAtMs: NOW + 30_000, leg: 2 });
    expect(verifyAdmissionToken(SECRET, SID, t, NOW, 'other')).toEqual({ ok: false, error: 'bad_mac' });
    expect(verifyAdmissionToken(SECRET, SID, t, NOW)).toEqual({ ok: false, error: 'bad_mac' });
    expect(verifyAdmissionToken(SECRET, SID, t.replace(/^v2\.2\./, 'v2.3.'), NOW, 'billing desk')).toEqual({ ok: false, error: 'bad_mac' });
    expect(verifyAdmissionToken(SECRET, SID2, t, NOW, 'billing desk')).toEqual({ ok: false, error: 'bad_mac' });
    // the default agent on leg 1 keeps the v1 form; a v1 token does not admit a named agent
    const v1 = mintAdmissionToken(SECRET, SID, NOW + 30_000, { leg: 1, agent: '' });
    expect(v1).toBe(mintAdmissionToken(SECRET, SID, NOW + 30_000));
    expect(verifyAdmissionToken(SECRET, SID, v1, NOW, 'billing desk')).toEqual({ ok: false, error: 'bad_mac' });
    const legOneNamed = mintAdmissionToken(SECRET, SID, NOW + 30_000, { leg: 1, agent: 'sales' });
    expect(verifyAdmissionToken(SECRET, SID, legOneNamed, NOW, 'sales')).toMatchObject({ ok: true, leg: 1 });
    expect(() => mintAdmissionToken(SECRET, SID, NOW, { leg: 21, agent: '' })).toThrow(RangeError);
    expect(verifyAdmissionToken(SECRET, SID, `v2.0.${NOW}.${'A'.repeat(43)}`, NOW, 'x')).toEqual({ ok: false, error: 'malformed' });
    expect(verifyAdmissionToken(SECRET, SID, t, NOW, 42)).toEqual({ ok: false, error: 'malformed' });
  });

  it('malformed input is a value, never a throw', () => {
    for (const bad of [undefined, null, 42, '', 'v1', 'v2.1.x', `v1.${NOW}.short`, `v1.-5.${'A'.repeat(43)}`, `v1.${NOW}.${'A'.repeat(43)}.extra`, 'x'.repeat(10_000), `v1.99999999999999999.${'A'.repeat(43)}`]) {
      const r = verifyAdmissionToken(SECRET, SID, bad, NOW);
      expect(r.ok).toBe(false);
    }
    expect(verifyAdmissionToken(SECRET, SID, `v1.${NOW}.${'A'.repeat(43)}`, NOW)).toEqual({ ok: false, error: 'bad_mac' });
  });
});

describe('ADMISSION_SECRET and STREAM_URL_TEMPLATE configuration', () => {
  it('without DATABASE_URL a per-process secret is made; with it ADMISSION_SECRET is required, listed with the other problems', () => {
    const a = loadConfig({});
    const b = loadConfig({});
    expect(a.admissionSecretGenerated).toBe(true);
    expect(a.admissionSecret.length).toBe(32);
    expect(a.admissionSecret.equals(b.admissionSecret)).toBe(false);
    expect(() => loadConfig({ DATABASE_URL: 'postgres://db/x', PORT: 'x' })).toThrow(/PORT[\s\S]*ADMISSION_SECRET: required with DATABASE_URL/);
    expect(() => loadConfig({ ADMISSION_SECRET: 'short' })).toThrow(/ADMISSION_SECRET: must be at least 32 characters/);
    const c = loadConfig({ DATABASE_URL: 'postgres://db/x', ADMISSION_SECRET: 's'.repeat(32) });
    expect(c.admissionSecret.toString()).toBe('s'.repeat(32));
    expect(c.admissionSecretGenerated).toBe(false);
  });

  it('a template must give a wss:// URL without a query, use known placeholders, and {instance} needs INSTANCE_ID', () => {
    expect(loadConfig({ STREAM_URL_TEMPLATE: 'wss://{instance}.calls.example.com/voice/stream', INSTANCE_ID: 'a' }).streamUrlTemplate).toBe(
      'wss://{instance}.calls.example.com/voice/stream',
    );
    expect(loadConfig({ STREAM_URL_TEMPLATE: '{publicUrl}/i/{instance}/voice/stream', INSTANCE_ID: 'a' }).streamUrlTemplate).toBeDefined();
    expect(() => loadConfig({ STREAM_URL_TEMPLATE: 'wss://{instance}.example.com/voice/stream' })).toThrow(/INSTANCE_ID must be set/);
    expect(() => loadConfig({ STREAM_URL_TEMPLATE: 'wss://{host}/voice/stream' })).toThrow(/unknown placeholder \{host\}/);
    expect(() => loadConfig({ STREAM_URL_TEMPLATE: 'https://{instance}.example.com/voice/stream', INSTANCE_ID: 'a' })).toThrow(/must use wss:/);
    expect(() => loadConfig({ STREAM_URL_TEMPLATE: 'wss://x.example.com/voice/stream?i={instance}', INSTANCE_ID: 'a' })).toThrow(/query string/);
  });
});
