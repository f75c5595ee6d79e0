import { createHash, createHmac } from 'node:crypto';
import twilio from 'twilio';
import { describe, expect, it } from 'vitest';
import { MAX_PARAMETER_CHARS, TwimlError, buildStreamTwiml, streamTwimlProblems } from '../src/twilio/twiml.js';
import {
  signTwilioRequest,
  verifyTwilioSignature,
  verifyTwilioSignatureWithBody,
} from '../src/twilio/signature.js';
import { countFormFields, parseForm, parseStatusCallback, parseStreamStatusCallback, parseVoiceWebhook } from '../src/twilio/webhooks.js';

const TOKEN = '12345678901234567890123456789012';
const CALL = 'CA0123456789abcdef0123456789abcdef';
const ACCOUNT = 'AC123456789abcdef0123456789abcdef0';

describe('buildStreamTwiml', () => {
  it('answers with <Connect><Stream> and one <Parameter> per entry, XML-escaped', () => {
    const xml = buildStreamTwiml({
      streamUrl: 'wss://bridge.example.com/voice/stream',
      parameters: { token: 'abc', note: 'a<b & "c"' },
    });
    expect(xml).toBe(
      '<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="wss://bridge.example.com/voice/stream">' +
        '<Parameter name="token" value="abc"/><Parameter name="note" value="a&lt;b &amp; &quot;c&quot;"/>' +
        '</Stream></Connect></Response>',
    );
  });

  it('adds the stream status callback when given', () => {
    const xml = buildStreamTwiml({
      streamUrl: 'wss://h.example/voice/stream',
      parameters: {},
      statusCallbackUrl: 'https://h.example/voice/stream-status',
    });
    expect(xml).toContain('statusCallback="https://h.example/voice/stream-status"');
    expect(xml).toContain('statusCallbackMethod="POST"');
  });

  it.each([
    ['https:// stream URL', { streamUrl: 'https://h.example/voice/stream' }, /wss:/],
    ['ws:// stream URL', { streamUrl: 'ws://h.example/voice/stream' }, /wss:/],
    ['relative stream URL', { streamUrl: '/voice/stream' }, /absolute/],
    ['query string', { streamUrl: 'wss://h.example/voice/stream?token=x' }, /query string/],
    ['bare ?', { streamUrl: 'wss://h.example/voice/stream?' }, /query string/],
    ['bad status callback', { streamUrl: 'wss://h.example/s', statusCallbackUrl: 'ftp://x/y' }, /status callback/],
  ])('rejects a %s', (_n, o, re) => {
    const opts = { parameters: {}, ...o };
    expect(() => buildStreamTwiml(opts)).toThrow(TwimlError);
    expect(() => buildStreamTwiml(opts)).toThrow(re);
  });

  it('enforces the per-parameter limit (name + value < 500) and lists every problem', () => {
    const name = 'token';
    const atLimit = 'x'.repeat(MAX_PARAMETER_CHARS - name.length - 1);
    expect(() => buildStreamTwiml({ streamUrl: 'wss://h.example/s', parameters: { [name]: atLimit } })).not.toThrow();
    const over = atLimit + 'x';
    expect(() => buildStreamTwiml({ streamUrl: 'wss://h.example/s', parameters: { [name]: over } })).toThrow(/limit < 500/);
    const problems = streamTwimlProblems({ streamUrl: 'https://h/s?q', parameters: { a: 'y'.repeat(600), '': 'v' } });
    expect(problems).toHaveLength(4);
    try {
      buildStreamTwiml({ streamUrl: 'wss://h/s', parameters: { a: 'y'.repeat(600) } });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(TwimlError);
      expect((e as TwimlError).problems).toHaveLength(1);
    }
  });
});

describe('X-Twilio-Signature', () => {
  const url = 'https://bridge.example.com/voice/incoming';
  const params = { CallSid: CALL, AccountSid: ACCOUNT, From: '+15551230000', To: '+15559870000', CallStatus: 'ringing' };

  /** The algorithm from PROTOCOLS.md, written out independently of the twilio package. */
  function reference(token: string, u: string, p: Record<string, string>): string {
    const data = u + Object.keys(p).sort().map((k) => k + p[k]).join('');
    return createHmac('sha1', token).update(data, 'utf8').digest('base64');
  }

  it('signs like the documented algorithm and like the twilio package', () => {
    const sig = signTwilioRequest(TOKEN, url, params);
    expect(sig).toBe(reference(TOKEN, url, params));
    expect(sig).toBe(twilio.getExpectedTwilioSignature(TOKEN, url, params));
  });

  it('accepts a valid signature', () => {
    expect(verifyTwilioSignature(TOKEN, reference(TOKEN, url, params), url, params)).toBe(true);
  });

  it.each([
    ['wrong token', (s: string) => ({ token: 'x'.repeat(32), sig: s, url, params })],
    ['tampered param', (s: string) => ({ token: TOKEN, sig: s, url, params: { ...params, From: '+15550000000' } })],
    ['extra param', (s: string) => ({ token: TOKEN, sig: s, url, params: { ...params, Extra: '1' } })],
    ['other URL', (s: string) => ({ token: TOKEN, sig: s, url: url.replace('incoming', 'status'), params })],
    ['garbage signature', (_s: string) => ({ token: TOKEN, sig: 'not-base64!!', url, params })],
    ['empty signature', (_s: string) => ({ token: TOKEN, sig: '', url, params })],
    ['empty token', (s: string) => ({ token: '', sig: s, url, params })],
  ])('rejects: %s', (_n, make) => {
    const c = make(signTwilioRequest(TOKEN, url, params));
    expect(verifyTwilioSignature(c.token, c.sig, c.url, c.params)).toBe(false);
  });

  it('rejects a missing header and never throws on a bad URL', () => {
    expect(verifyTwilioSignature(TOKEN, undefined, url, params)).toBe(false);
    expect(() => verifyTwilioSignature(TOKEN, 'abc', 'not a url', {})).not.toThrow();
    expect(verifyTwilioSignature(TOKEN, 'abc', 'not a url', {})).toBe(false);
  });

  it('checks a WebSocket upgrade: wss URL, empty params', () => {
    const wss = 'wss://bridge.example.com/voice/stream';
    const sig = reference(TOKEN, wss, {});
    expect(verifyTwilioSignature(TOKEN, sig, wss, {})).toBe(true);
    expect(verifyTwilioSignature(TOKEN, sig, 'wss://evil.example.com/voice/stream', {})).toBe(false);
  });

  it('validates a signed request parsed from the raw form body', () => {
    const body = new URLSearchParams(params).toString();
    const sig = reference(TOKEN, url, params);
    expect(verifyTwilioSignature(TOKEN, sig, url, parseForm(Buffer.from(body)))).toBe(true);
    expect(verifyTwilioSignature(TOKEN, sig, url, parseForm(body.replace('ringing', 'completed')))).toBe(false);
  });

  it('validates JSON bodies signed with bodySHA256', () => {
    const body = '{"a":1}';
    const u = `${url}?bodySHA256=${createHash('sha256').update(body).digest('hex')}`;
    const sig = reference(TOKEN, u, {});
    expect(verifyTwilioSignatureWithBody(TOKEN, sig, u, body)).toBe(true);
    expect(verifyTwilioSignatureWithBody(TOKEN, sig, u, '{"a":2}')).toBe(false);
  });
});

describe('parseForm', () => {
  it('decodes application/x-www-form-urlencoded, + as space, %XX, utf-8', () => {
    const f = parseForm('From=%2B15551230000&Caller+Name=J%C3%BCrgen+M&Empty=&Dup=1&Dup=2');
    expect({ ...f }).toEqual({ From: '+15551230000', 'Caller Name': 'Jürgen M', Empty: '', Dup: '2' });
  });

  it('handles empty and malformed bodies without throwing', () => {
    expect({ ...parseForm('') }).toEqual({});
    expect(() => parseForm('a=%ZZ&b=%')).not.toThrow();
    expect(parseForm('a=%ZZ').a).toBe('%ZZ');
  });

  it('keeps __proto__ as data', () => {
    const f = parseForm('__proto__=x&a=1');
    expect(f.__proto__).toBe('x');
    expect(Object.getPrototypeOf(f)).toBe(null);
  });
});

describe('countFormFields', () => {
  it('counts the &-separated pieces of a body: never fewer than parseForm finds', () => {
    expect(countFormFields(Buffer.from(''))).toBe(1);
    expect(countFormFields(Buffer.from('a=1'))).toBe(1);
    expect(countFormFields(Buffer.from('a=1&b=2&c=%26'))).toBe(3); // an escaped & is inside a value
    expect(countFormFields(Buffer.from('a=1&&b=2&'))).toBe(4);
    const body = Array.from({ length: 150 }, (_, i) => `k${i}=v`).join('&');
    expect(countFormFields(Buffer.from(body))).toBe(150);
    expect(Object.keys(parseForm(body))).toHaveLength(150);
  });
});

describe('webhook bodies', () => {
  const voice = { CallSid: CALL, AccountSid: ACCOUNT, From: '+15551230000', To: '+15559870000', Direction: 'inbound', CallStatus: 'ringing', ApiVersion: '2010-04-01' };

  it('parses the voice webhook', () => {
    expect(parseVoiceWebhook(voice)).toEqual({
      ok: true,
      value: { callSid: CALL, accountSid: ACCOUNT, from: '+15551230000', to: '+15559870000', direction: 'inbound', callStatus: 'ringing' },
    });
  });

  it.each([
    ['missing CallSid', { ...voice, CallSid: undefined }, /CallSid/],
    ['CallSid with the wrong prefix', { ...voice, CallSid: 'XX0123456789abcdef0123456789abcdef' }, /CallSid/],
    ['CallSid one digit short', { ...voice, CallSid: CALL.slice(0, -1) }, /CallSid/],
    ['CallSid one digit long', { ...voice, CallSid: CALL + '0' }, /CallSid/],
    ['CallSid with a non-hex digit', { ...voice, CallSid: CALL.slice(0, -1) + 'g' }, /CallSid/],
    ['AccountSid one digit short', { ...voice, AccountSid: ACCOUNT.slice(0, -1) }, /AccountSid/],
    ['AccountSid where the CallSid goes', { ...voice, CallSid: ACCOUNT }, /CallSid/],
    ['unknown CallStatus', { ...voice, CallStatus: 'dancing' }, /CallStatus/],
    ['missing AccountSid', { ...voice, AccountSid: undefined }, /AccountSid/],
  ])('rejects a voice webhook with %s', (_n, body, re) => {
    const r = parseVoiceWebhook(JSON.parse(JSON.stringify(body)));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(re);
  });

  it('accepts SIDs in either case of hex, as Twilio shapes them (prefix + 32 hex digits)', () => {
    expect(parseVoiceWebhook({ ...voice, CallSid: CALL.toUpperCase().replace(/^CA/, 'CA') }).ok).toBe(true);
    const r = parseVoiceWebhook({ ...voice, ApiVersion: undefined as unknown as string, Direction: undefined as unknown as string });
    expect(r.ok && r.value.direction).toBe('inbound');
  });

  it('names the bad fields but never echoes their values (caller numbers are personal data)', () => {
    const r = parseVoiceWebhook({ ...voice, CallSid: '+15551230000', CallStatus: 'dancing' });
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error).toMatch(/CallSid/);
      expect(r.error).toMatch(/CallStatus/);
      expect(r.error).not.toContain('+15551230000');
    }
  });

  it('parses a terminal status callback with numbers converted', () => {
    const r = parseStatusCallback({
      ...voice,
      CallStatus: 'completed',
      CallDuration: '42',
      SequenceNumber: '0',
      Timestamp: 'Wed, 25 Nov 2026 07:46:45 +0000',
    });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value.callStatus).toBe('completed');
    expect(r.value.terminal).toBe(true);
    expect(r.value.callDurationS).toBe(42);
    expect(r.value.sequenceNumber).toBe(0);
    expect(r.value.timestampMs).toBe(Date.UTC(2026, 10, 25, 7, 46, 45));
  });

  it('a ringing status callback is not terminal and may omit duration', () => {
    const r = parseStatusCallback({ ...voice, SequenceNumber: '1' });
    expect(r.ok && r.value.terminal).toBe(false);
    expect(r.ok && r.value.callDurationS).toBe(undefined);
  });

  it.each([
    ['negative duration', { CallDuration: '-1' }],
    ['non-numeric sequence', { SequenceNumber: 'x' }],
    ['bad status', { CallStatus: 'done' }],
    ['short CallSid', { CallSid: 'CA1' }],
    ['missing AccountSid', { AccountSid: undefined as unknown as string }],
  ])('rejects a status callback with %s', (_n, patch) => {
    expect(parseStatusCallback({ ...voice, ...patch }).ok).toBe(false);
  });

  it('parses and rejects stream status callbacks', () => {
    const ok = parseStreamStatusCallback({
      AccountSid: ACCOUNT,
      CallSid: CALL,
      StreamSid: 'MZ18ad3ab5a668481ce02b83e7395059f0',
      StreamName: 'callbridge',
      StreamEvent: 'stream-error',
      StreamError: 'Stream - WebSocket - Connection Broken Pipe',
      Timestamp: '2026-11-25T07:46:45.000Z',
    });
    expect(ok.ok && ok.value.streamEvent).toBe('stream-error');
    expect(ok.ok && ok.value.streamError).toMatch(/Broken Pipe/);
    expect(parseStreamStatusCallback({ AccountSid: ACCOUNT, CallSid: CALL, StreamSid: 'MZ1', StreamEvent: 'stream-paused' }).ok).toBe(false);
    expect(parseStreamStatusCallback({}).ok).toBe(false);
  });
});
