import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  MAX_MESSAGE_CHARS,
  clearMessage,
  markMessage,
  mediaMessage,
  parseTwilioMessage,
  type TwilioMessage,
} from '../src/twilio/media-stream.js';

const frames = readFileSync(new URL('./fixtures/twilio/media-stream.jsonl', import.meta.url), 'utf8')
  .split('\n')
  .filter((l) => l.length > 0);

function parsed(text: string): TwilioMessage {
  const r = parseTwilioMessage(text);
  if (!r.ok) throw new Error(`expected ok, got: ${r.error}`);
  return r.msg;
}

function expectBad(text: string): string {
  const r = parseTwilioMessage(text);
  expect(r.ok).toBe(false);
  return r.ok ? '' : r.error;
}

describe('parseTwilioMessage on recorded frames', () => {
  it('parses every recorded frame into its event, in order', () => {
    expect(frames.map((f) => parsed(f).event)).toEqual(['connected', 'start', 'media', 'media', 'dtmf', 'mark', 'stop']);
  });

  it('converts number-like strings to numbers and keeps the payload as base64', () => {
    const raw = JSON.parse(frames[2]!);
    const m = parsed(frames[2]!);
    expect(m).toEqual({
      event: 'media',
      sequenceNumber: 2,
      streamSid: 'MZ18ad3ab5a668481ce02b83e7395059f0',
      media: { track: 'inbound', chunk: 1, timestamp: 5, payload: raw.media.payload },
    });
    if (m.event === 'media') expect(Buffer.from(m.media.payload, 'base64')).toHaveLength(160);
  });

  it('reads start: call, stream, tracks, custom parameters and media format', () => {
    const m = parsed(frames[1]!);
    expect(m.event).toBe('start');
    if (m.event !== 'start') return;
    expect(m.sequenceNumber).toBe(1);
    expect(m.start.callSid).toBe('CA0123456789abcdef0123456789abcdef');
    expect(m.start.streamSid).toBe(m.streamSid);
    expect(m.start.tracks).toEqual(['inbound']);
    expect({ ...m.start.customParameters }).toEqual({ token: 't0k3n', callSid: 'CA0123456789abcdef0123456789abcdef' });
    expect(m.start.mediaFormat).toEqual({ encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 });
  });

  it('reads dtmf, mark, stop and connected', () => {
    expect(parsed(frames[0]!)).toEqual({ event: 'connected', protocol: 'Call', version: '1.0.0' });
    const d = parsed(frames[4]!);
    expect(d.event === 'dtmf' && d.dtmf.digit).toBe('1');
    const mk = parsed(frames[5]!);
    expect(mk.event === 'mark' && mk.mark.name).toBe('r1:7');
    const s = parsed(frames[6]!);
    expect(s.event === 'stop' && s.stop.callSid).toBe('CA0123456789abcdef0123456789abcdef');
    expect(s.event === 'stop' && s.sequenceNumber).toBe(7);
  });

  it('a start without customParameters gets an empty record', () => {
    const raw = JSON.parse(frames[1]!);
    delete raw.start.customParameters;
    const m = parsed(JSON.stringify(raw));
    expect(m.event === 'start' && Object.keys(m.start.customParameters)).toEqual([]);
  });

  it('custom parameter names like __proto__ stay plain data', () => {
    const raw = JSON.parse(frames[1]!);
    const text = JSON.stringify(raw).replace('"token":"t0k3n"', '"__proto__":"x","token":"t0k3n"');
    const m = parsed(text);
    if (m.event !== 'start') throw new Error('start expected');
    expect(m.start.customParameters.__proto__).toBe('x');
    expect(Object.getPrototypeOf(m.start.customParameters)).toBe(null);
  });
});

describe('parseTwilioMessage rejects bad input as a value', () => {
  const media = JSON.parse(frames[2]!);
  const mutate = (f: (m: any) => void): string => {
    const copy = structuredClone(media);
    f(copy);
    return JSON.stringify(copy);
  };

  it.each([
    ['empty string', ''],
    ['bad JSON', '{"event":"media",'],
    ['JSON null', 'null'],
    ['JSON array', '[1,2]'],
    ['JSON string', '"media"'],
    ['JSON number', '42'],
    ['no event', '{"streamSid":"MZ1"}'],
    ['event not a string', '{"event":7}'],
    ['unknown event', '{"event":"clear","streamSid":"MZ1"}'],
    ['inherited name as event', '{"event":"toString"}'],
  ])('%s', (_name, text) => {
    expectBad(text);
  });

  it.each([
    ['media missing', (m: any) => delete m.media],
    ['media not an object', (m: any) => (m.media = 'x')],
    ['payload missing', (m: any) => delete m.media.payload],
    ['payload not a string', (m: any) => (m.media.payload = 12)],
    ['chunk not numeric', (m: any) => (m.media.chunk = 'one')],
    ['chunk negative', (m: any) => (m.media.chunk = '-1')],
    ['chunk fractional', (m: any) => (m.media.chunk = '1.5')],
    ['timestamp missing', (m: any) => delete m.media.timestamp],
    ['timestamp boolean', (m: any) => (m.media.timestamp = true)],
    ['sequenceNumber missing', (m: any) => delete m.sequenceNumber],
    ['sequenceNumber empty', (m: any) => (m.sequenceNumber = '')],
    ['streamSid missing', (m: any) => delete m.streamSid],
    ['streamSid number', (m: any) => (m.streamSid = 5)],
    ['track missing', (m: any) => delete m.media.track],
  ])('media: %s', (_name, f) => {
    expect(expectBad(mutate(f))).toMatch(/^media: /);
  });

  it.each([
    ['start', (m: any) => delete m.start.callSid],
    ['start', (m: any) => (m.start.tracks = 'inbound')],
    ['start', (m: any) => (m.start.tracks = [1])],
    ['start', (m: any) => (m.start.customParameters = { k: 1 })],
    ['start', (m: any) => (m.start.customParameters = ['v'])],
    ['start', (m: any) => (m.start.mediaFormat.sampleRate = '8000')],
    ['start', (m: any) => (m.start.mediaFormat.channels = 0)],
    ['start', (m: any) => delete m.start.mediaFormat],
    ['start', (m: any) => (m.start = null)],
  ])('%s with a broken field', (_event, f) => {
    const copy = JSON.parse(frames[1]!);
    f(copy);
    expect(expectBad(JSON.stringify(copy))).toMatch(/^start: /);
  });

  it.each([
    ['dtmf', 4, (m: any) => delete m.dtmf.digit],
    ['mark', 5, (m: any) => (m.mark.name = null)],
    ['mark', 5, (m: any) => delete m.mark],
    ['stop', 6, (m: any) => delete m.stop.callSid],
    ['connected', 0, (m: any) => delete m.protocol],
  ])('%s with a broken field', (event, index, f) => {
    const copy = JSON.parse(frames[index]!);
    f(copy);
    expect(expectBad(JSON.stringify(copy))).toMatch(new RegExp(`^${event}: `));
  });

  it('huge input is refused without parsing', () => {
    const huge = mutate((m) => (m.media.payload = 'A'.repeat(MAX_MESSAGE_CHARS)));
    expect(expectBad(huge)).toMatch(/too large/);
    // Just under the cap still parses.
    const ok = mutate((m) => (m.media.payload = 'A'.repeat(MAX_MESSAGE_CHARS - 200)));
    expect(parseTwilioMessage(ok).ok).toBe(true);
  });

  it('deeply nested junk does not throw', () => {
    expect(() => parseTwilioMessage('['.repeat(100_000))).not.toThrow();
    expectBad('{"event":"media","media":' + '{"a":'.repeat(1000) + '1' + '}'.repeat(1001));
  });

  it('a non-string argument is refused, not thrown', () => {
    expect(parseTwilioMessage(undefined as unknown as string).ok).toBe(false);
  });
});

describe('server → Twilio builders', () => {
  const sid = 'MZ18ad3ab5a668481ce02b83e7395059f0';

  it('mediaMessage is the exact wire shape and round-trips the payload', () => {
    const payload = Buffer.from([0, 1, 2, 250, 251, 255]).toString('base64');
    const text = mediaMessage(sid, payload);
    expect(JSON.parse(text)).toEqual({ event: 'media', streamSid: sid, media: { payload } });
    expect(text).toBe(`{"event":"media","streamSid":"${sid}","media":{"payload":"${payload}"}}`);
  });

  it('markMessage and clearMessage are the exact wire shapes', () => {
    expect(JSON.parse(markMessage(sid, 'r1:12'))).toEqual({ event: 'mark', streamSid: sid, mark: { name: 'r1:12' } });
    expect(JSON.parse(clearMessage(sid))).toEqual({ event: 'clear', streamSid: sid });
  });

  it('escapes what needs escaping in sid and mark name', () => {
    const name = 'a"b\\c\nd';
    const weirdSid = 'MZ"x';
    expect(JSON.parse(markMessage(weirdSid, name))).toEqual({ event: 'mark', streamSid: weirdSid, mark: { name } });
    expect(JSON.parse(clearMessage(weirdSid)).streamSid).toBe(weirdSid);
    expect(JSON.parse(mediaMessage(weirdSid, 'AAAA')).streamSid).toBe(weirdSid);
  });

  it('an echoed mark parses back to the same name', () => {
    const echoed = JSON.parse(markMessage(sid, 'r2:3'));
    echoed.sequenceNumber = '9';
    const m = parsed(JSON.stringify(echoed));
    expect(m.event === 'mark' && m.mark.name).toBe('r2:3');
  });
});
