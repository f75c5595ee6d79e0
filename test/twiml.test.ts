/**
 * twilio/twiml.ts: the documents the relay answers with, parsed back as XML
 * (fast-xml-parser): `<Connect action>`, `<Dial>` to a number or a SIP URI
 * with its whisper URL, `<Hangup/>`, `<Say>` then `<Hangup/>`, the whisper;
 * text that needs escaping comes back as it went in.
 */
import { XMLParser } from 'fast-xml-parser';
import { describe, expect, it } from 'vitest';
import type { TransferTarget } from '../src/call/agent.js';
import {
  buildDialTwiml, buildHangupTwiml, buildSayHangupTwiml, buildStreamTwiml, buildWhisperTwiml, TwimlError,
} from '../src/twilio/twiml.js';

const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@', preserveOrder: false, parseTagValue: false });
const parse = (xml: string) => parser.parse(xml) as { Response: Record<string, any> };

const billing: TransferTarget = { name: 'billing', description: 'bills', to: { number: '+15550100123' }, whisper: 'A caller about a bill & a "refund" <urgent>' };
const desk: TransferTarget = { name: 'desk', description: 'front desk', to: { sip: 'sip:desk@pbx.example.com' }, whisper: undefined };

describe('buildStreamTwiml', () => {
  it('with actionUrl: <Connect action method=POST> around the stream', () => {
    const doc = parse(buildStreamTwiml({ streamUrl: 'wss://x.example.com/voice/stream', parameters: { token: 't' }, actionUrl: 'https://x.example.com/voice/action?leg=1' }));
    const connect = doc.Response.Connect;
    expect(connect['@action']).toBe('https://x.example.com/voice/action?leg=1');
    expect(connect['@method']).toBe('POST');
    expect(connect.Stream['@url']).toBe('wss://x.example.com/voice/stream');
    expect(connect.Stream.Parameter['@value']).toBe('t');
  });
  it('without actionUrl: no action attribute', () => {
    const doc = parse(buildStreamTwiml({ streamUrl: 'wss://x.example.com/voice/stream', parameters: {} }));
    expect(doc.Response.Connect['@action']).toBeUndefined();
  });
  it('a relative action URL is refused', () => {
    expect(() => buildStreamTwiml({ streamUrl: 'wss://x.example.com/voice/stream', parameters: {}, actionUrl: '/voice/action' })).toThrow(TwimlError);
  });
});

describe('buildDialTwiml', () => {
  it('a number target with a whisper: <Dial action method timeout callerId><Number url=whisper?target&agent>', () => {
    const xml = buildDialTwiml({ target: billing, dialActionUrl: 'https://x.example.com/voice/dial-action?leg=1', whisperUrl: 'https://x.example.com/voice/whisper', agent: 'front desk', timeoutS: 25, callerId: '+15550100999' });
    const dial = parse(xml).Response.Dial;
    expect(dial['@action']).toBe('https://x.example.com/voice/dial-action?leg=1');
    expect(dial['@method']).toBe('POST');
    expect(dial['@timeout']).toBe('25');
    expect(dial['@callerId']).toBe('+15550100999');
    expect(dial.Number['#text']).toBe('+15550100123');
    const url = new URL(dial.Number['@url']);
    expect(url.origin + url.pathname).toBe('https://x.example.com/voice/whisper');
    expect(url.searchParams.get('target')).toBe('billing');
    expect(url.searchParams.get('agent')).toBe('front desk');
    expect(dial.Sip).toBeUndefined();
  });
  it('a SIP target without a whisper: <Sip> and no url', () => {
    const dial = parse(buildDialTwiml({ target: desk, dialActionUrl: 'https://x.example.com/voice/dial-action', whisperUrl: 'https://x.example.com/voice/whisper', agent: 'a', timeoutS: 20 })).Response.Dial;
    expect(dial.Sip).toBe('sip:desk@pbx.example.com');
    expect(dial.Number).toBeUndefined();
    expect(dial['@callerId']).toBeUndefined();
    expect(buildDialTwiml({ target: desk, dialActionUrl: 'https://x.example.com/d', whisperUrl: 'https://x.example.com/w', agent: 'a', timeoutS: 20 })).not.toContain('url=');
  });
  it('refuses a relative action URL and a timeout out of range, listing both', () => {
    try {
      buildDialTwiml({ target: billing, dialActionUrl: 'dial-action', whisperUrl: 'https://x.example.com/w', agent: 'a', timeoutS: 0 });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(TwimlError);
      expect((err as TwimlError).problems).toHaveLength(2);
    }
  });
});

describe('hang-up, message, whisper', () => {
  it('<Hangup/>', () => {
    const doc = parse(buildHangupTwiml());
    expect(Object.keys(doc.Response)).toEqual(['Hangup']);
  });
  it('<Say> with escaping, then <Hangup/>', () => {
    const text = 'Sorry, <nobody> is "free" & we close at 5';
    const xml = buildSayHangupTwiml(text);
    expect(xml.indexOf('<Say>')).toBeLessThan(xml.indexOf('<Hangup'));
    const parsed = new XMLParser({ processEntities: true, parseTagValue: false }).parse(xml) as { Response: { Say: string } };
    expect(parsed.Response.Say).toBe(text);
  });
  it('whisper: <Say> of the text (escaped); empty text → empty <Response/>', () => {
    const parsed = new XMLParser({ processEntities: true, parseTagValue: false }).parse(buildWhisperTwiml(billing.whisper!)) as { Response: { Say: string } };
    expect(parsed.Response.Say).toBe(billing.whisper);
    expect(buildWhisperTwiml('')).toMatch(/<Response\s*\/>|<Response><\/Response>/);
  });
});
