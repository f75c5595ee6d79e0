// The Twilio call-flow stand-in (src/sim/twilio-call.ts) against a small fake
// voice server in this file (node:http + ws on 127.0.0.1) that checks every
// X-Twilio-Signature with twilio's validateRequest and answers scripted TwiML:
// <Connect action> after the server closes the stream, none after the caller
// hangs up, <Dial> with its whisper and action, <Say>, a second stream leg,
// a refused webhook, and the step bound.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import twilio from 'twilio';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { simulateCall, type DialTarget } from '../src/sim/twilio-call.js';

const TOKEN = 'test-auth-token';
const PUBLIC = 'https://calls.example.com';

interface Request {
  method: string;
  /** Path and query as requested. */
  url: string;
  params: Record<string, string>;
  signed: boolean;
}

interface Answer {
  status?: number;
  twiml: string;
}

interface FakeVoice {
  baseUrl: string;
  requests: Request[];
  /** Per stream connection: the messages the caller sent, and whether the upgrade was signed. */
  streams: { url: string; signed: boolean; messages: any[] }[];
  close(): Promise<void>;
}

/**
 * `routes[path]` answers each request to that path (by path, query ignored);
 * the n-th stream is closed by the server `closeStreamAfterMs[n]` ms after
 * its `start` (undefined: never, the caller must hang up).
 */
async function startFakeVoice(routes: Record<string, (req: Request) => Answer>, closeStreamAfterMs: (number | undefined)[] = []): Promise<FakeVoice> {
  const v: FakeVoice = { baseUrl: '', requests: [], streams: [], close: async () => {} };
  const http: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const params = req.method === 'POST' ? Object.fromEntries(new URLSearchParams(body)) : {};
      const signed = twilio.validateRequest(TOKEN, String(req.headers['x-twilio-signature'] ?? ''), `${PUBLIC}${req.url}`, params);
      const r: Request = { method: req.method ?? '', url: req.url ?? '', params, signed };
      v.requests.push(r);
      if (!signed) return void res.writeHead(403).end();
      const route = routes[new URL(r.url, PUBLIC).pathname];
      if (!route) return void res.writeHead(404).end();
      const a = route(r);
      res.writeHead(a.status ?? 200, { 'content-type': 'text/xml' }).end(a.twiml);
    });
  });
  const wss = new WebSocketServer({ noServer: true });
  const timers: NodeJS.Timeout[] = [];
  http.on('upgrade', (req, socket, head) => {
    const signed = twilio.validateRequest(TOKEN, String(req.headers['x-twilio-signature'] ?? ''), `wss://calls.example.com${req.url}`, {});
    if (!signed) return void socket.end('HTTP/1.1 403 Forbidden\r\n\r\n');
    wss.handleUpgrade(req, socket, head, (ws) => {
      const n = v.streams.length;
      const s = { url: req.url ?? '', signed, messages: [] as any[] };
      v.streams.push(s);
      ws.on('message', (d) => {
        const m = JSON.parse(d.toString());
        s.messages.push(m);
        const after = closeStreamAfterMs[n];
        if (m.event === 'start' && after !== undefined) timers.push(setTimeout(() => ws.close(1000, 'done'), after));
      });
    });
  });
  await new Promise<void>((res) => http.listen(0, '127.0.0.1', res));
  v.baseUrl = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  v.close = async () => {
    for (const t of timers) clearTimeout(t);
    for (const c of wss.clients) c.terminate();
    await new Promise<void>((res) => wss.close(() => res()));
    http.closeAllConnections();
    await new Promise<void>((res) => http.close(() => res()));
  };
  return v;
}

const xml = (body: string) => `<?xml version="1.0" encoding="UTF-8"?><Response>${body}</Response>`;
const connect = (leg: number, token: string) =>
  xml(
    `<Connect action="${PUBLIC}/voice/action?leg=${leg}"><Stream url="wss://calls.example.com/voice/stream">` +
      `<Parameter name="token" value="${token}"/><Parameter name="note" value="a &amp; b"/></Stream></Connect>`,
  );
const dialTwiml = xml(
  `<Dial action="${PUBLIC}/voice/dial-action?leg=1" method="POST" timeout="20">` +
    `<Number url="${PUBLIC}/voice/whisper?target=member_services&amp;agent=demo">+15550100200</Number></Dial>`,
);
/** A leg whose caller says nothing and, unless the server ends the stream first, hangs up after `ms`. */
const quietLeg = (ms = 4000) => ({ utterances: [], maxCallMs: ms });

const base = (v: FakeVoice) => ({ baseUrl: v.baseUrl, publicUrl: PUBLIC, authToken: TOKEN, from: '+15550100001', to: '+15550100999' });

let voice: FakeVoice | undefined;
afterEach(async () => {
  await voice?.close();
  voice = undefined;
});

describe('simulateCall follows Twilio\'s call flow', () => {
  it('requests the <Connect action> once the server closes the stream, signed, with the call\'s fields', async () => {
    voice = await startFakeVoice({ '/voice/incoming': () => ({ twiml: connect(1, 'tok-1') }), '/voice/action': () => ({ twiml: xml('<Hangup/>') }) }, [300]);
    const call = await simulateCall({ ...base(voice), legs: [quietLeg()] });
    expect(call.error).toBeUndefined();
    expect(call.ended).toBe('hangup');
    expect(call.steps.map((s) => s.verb)).toEqual(['Connect', 'Hangup']);
    expect(voice.requests.map((r) => [r.url, r.signed])).toEqual([
      ['/voice/incoming', true],
      ['/voice/action?leg=1', true],
    ]);
    expect(voice.requests[0]!.params).toMatchObject({ CallSid: call.callSid, AccountSid: call.accountSid, From: '+15550100001', To: '+15550100999', CallStatus: 'ringing', Direction: 'inbound', ApiVersion: '2010-04-01' });
    expect(voice.requests[1]!.params).toEqual({ CallSid: call.callSid, AccountSid: call.accountSid, From: '+15550100001', To: '+15550100999', CallStatus: 'in-progress', Direction: 'inbound', ApiVersion: '2010-04-01' });
    expect(call.callSid).toMatch(/^CA[0-9a-f]{32}$/);
    expect(call.accountSid).toMatch(/^AC[0-9a-f]{32}$/);
    // The stream: signed upgrade, the TwiML's parameters (unescaped) in start, ended by the server.
    expect(voice.streams).toHaveLength(1);
    const start = voice.streams[0]!.messages.find((m) => m.event === 'start');
    expect(start.start).toMatchObject({ callSid: call.callSid, accountSid: call.accountSid, customParameters: { token: 'tok-1', note: 'a & b' } });
    expect(voice.streams[0]!.messages.some((m) => m.event === 'stop')).toBe(false);
    expect(call.legs).toHaveLength(1);
    expect(call.legs[0]!.endedBy).toBe('server');
    expect(call.legs[0]!.twiml).toBe(connect(1, 'tok-1'));
    expect(call.webhooks.map((w) => [w.kind, w.status])).toEqual([
      ['incoming', 200],
      ['action', 200],
    ]);
  });

  it('does not request the action when the caller hangs up: the call is over', async () => {
    voice = await startFakeVoice({ '/voice/incoming': () => ({ twiml: connect(1, 'tok-1') }), '/voice/action': () => ({ twiml: xml('<Hangup/>') }) }, [undefined]);
    const call = await simulateCall({ ...base(voice), legs: [quietLeg(400)] });
    expect(call.ended).toBe('caller-hangup');
    expect(call.legs[0]!.endedBy).toBe('caller');
    expect(voice.streams[0]!.messages.at(-1)).toMatchObject({ event: 'stop', stop: { callSid: call.callSid } });
    expect(voice.requests.map((r) => r.url)).toEqual(['/voice/incoming']);
    expect(call.steps.map((s) => s.verb)).toEqual(['Connect']);
  });

  it('<Dial>: an answered target fetches its whisper (signed, the child leg\'s fields) and the Dial action gets the status, DialCallSid and duration', async () => {
    voice = await startFakeVoice(
      {
        '/voice/incoming': () => ({ twiml: connect(1, 'tok-1') }),
        '/voice/action': () => ({ twiml: dialTwiml }),
        '/voice/whisper': () => ({ twiml: xml('<Say>Transferring a caller from the eligibility line.</Say>') }),
        '/voice/dial-action': () => ({ twiml: xml('<Hangup/>') }),
      },
      [200],
    );
    const dialled: DialTarget[] = [];
    const call = await simulateCall({
      ...base(voice),
      legs: [quietLeg()],
      dial: (t) => {
        dialled.push(t);
        return { status: 'completed', durationS: 42 };
      },
    });
    expect(call.error).toBeUndefined();
    expect(call.steps.map((s) => s.verb)).toEqual(['Connect', 'Dial', 'Hangup']);
    expect(dialled).toEqual([{ kind: 'number', address: '+15550100200', url: `${PUBLIC}/voice/whisper?target=member_services&agent=demo` }]);
    expect(voice.requests.map((r) => [r.url, r.signed])).toEqual([
      ['/voice/incoming', true],
      ['/voice/action?leg=1', true],
      ['/voice/whisper?target=member_services&agent=demo', true],
      ['/voice/dial-action?leg=1', true],
    ]);
    const whisper = voice.requests[2]!.params;
    const dialAction = voice.requests[3]!.params;
    expect(whisper).toMatchObject({ ParentCallSid: call.callSid, To: '+15550100200', CallStatus: 'in-progress', Direction: 'outbound-dial' });
    expect(whisper.CallSid).toBe(dialAction.DialCallSid);
    expect(dialAction).toMatchObject({ CallSid: call.callSid, CallStatus: 'in-progress', DialCallStatus: 'completed', DialCallDuration: '42' });
    expect(dialAction.DialCallSid).toMatch(/^CA[0-9a-f]{32}$/);
    expect(call.dials).toEqual([
      { target: dialled[0], status: 'completed', dialCallSid: dialAction.DialCallSid, durationS: 42, whisper: ['Transferring a caller from the eligibility line.'] },
    ]);
    expect(call.ended).toBe('hangup');
  });

  it('<Dial> busy: no whisper (nobody answered), DialCallStatus busy without a duration; the answer\'s <Say> is kept, then <Hangup/>', async () => {
    voice = await startFakeVoice(
      {
        '/voice/incoming': () => ({ twiml: connect(1, 'tok-1') }),
        '/voice/action': () => ({ twiml: dialTwiml }),
        '/voice/whisper': () => ({ twiml: xml('<Say>never</Say>') }),
        '/voice/dial-action': () => ({ twiml: xml('<Say>Sorry, nobody can take your call. Goodbye.</Say><Hangup/><Say>after the hang-up</Say>') }),
      },
      [200],
    );
    const call = await simulateCall({ ...base(voice), legs: [quietLeg()], dial: () => ({ status: 'busy' }) });
    expect(call.steps.map((s) => s.verb)).toEqual(['Connect', 'Dial', 'Say', 'Hangup']);
    expect(voice.requests.map((r) => r.url)).toEqual(['/voice/incoming', '/voice/action?leg=1', '/voice/dial-action?leg=1']);
    expect(voice.requests[2]!.params.DialCallStatus).toBe('busy');
    expect(voice.requests[2]!.params.DialCallDuration).toBeUndefined();
    expect(call.dials[0]).toMatchObject({ status: 'busy', whisper: [] });
    expect(call.said).toEqual(['Sorry, nobody can take your call. Goodbye.']);
    expect(call.ended).toBe('hangup');
  });

  it('a failed dial answered with a new <Connect> runs a second stream leg with that leg\'s caller, then its own action', async () => {

    voice = await startFakeVoice(
      {
        '/voice/incoming': () => ({ twiml: connect(1, 'tok-1') }),
        '/voice/action': (r) => ({ twiml: r.url.endsWith('leg=1') ? dialTwiml : xml('<Hangup/>') }),
        '/voice/dial-action': () => ({ twiml: connect(2, 'tok-2') }),
      },
      [200, 300],
    );
    const call = await simulateCall({ ...base(voice), legs: [quietLeg(), { utterances: [], dtmf: [{ atMs: 40, digits: '5' }], maxCallMs: 4000 }], dial: () => ({ status: 'no-answer' }) });
    const leg2Start = voice.streams[1]?.messages.find((m) => m.event === 'start');
    expect(call.error).toBeUndefined();
    expect(call.steps.map((s) => s.verb)).toEqual(['Connect', 'Dial', 'Connect', 'Hangup']);
    expect(voice.requests.map((r) => r.url)).toEqual(['/voice/incoming', '/voice/action?leg=1', '/voice/dial-action?leg=1', '/voice/action?leg=2']);
    expect(call.legs).toHaveLength(2);
    expect(call.legs[1]!.callSid).toBe(call.callSid);
    expect(call.legs[1]!.streamSid).not.toBe(call.legs[0]!.streamSid);
    expect(leg2Start.start.customParameters.token).toBe('tok-2');
    // The second leg's own caller options: its keypad digit went down that stream only.
    expect(voice.streams[1]!.messages.filter((m) => m.event === 'dtmf').map((m) => m.dtmf.digit)).toEqual(['5']);
    expect(voice.streams[0]!.messages.some((m) => m.event === 'dtmf')).toBe(false);
    expect(call.ended).toBe('hangup');
  });

  it('a webhook answered 403 ends the call with an error, as Twilio\'s application error would', async () => {
    voice = await startFakeVoice({ '/voice/incoming': () => ({ twiml: connect(1, 'tok-1') }), '/voice/action': () => ({ status: 403, twiml: '' }) }, [200]);
    const call = await simulateCall({ ...base(voice), legs: [quietLeg()] });
    expect(call.ended).toBe('error');
    expect(call.error).toMatch(/action webhook \/voice\/action answered 403/);
    expect(call.webhooks.map((w) => [w.kind, w.status])).toEqual([
      ['incoming', 200],
      ['action', 403],
    ]);
    // A wrong auth token: the fake refuses the very first webhook.
    const refused = await simulateCall({ ...base(voice), authToken: 'wrong', legs: [] });
    expect(refused).toMatchObject({ ended: 'error', legs: [], steps: [] });
    expect(refused.error).toMatch(/incoming webhook \/voice\/incoming answered 403/);
    // A body that is not TwiML fails the call too.
    const garbage = await startFakeVoice({ '/voice/incoming': () => ({ twiml: '<html><body>hi</body></html>' }) });
    try {
      const g = await simulateCall({ ...base(garbage), legs: [] });
      expect(g.ended).toBe('error');
      expect(g.error).toMatch(/no <Response>/);
    } finally {
      await garbage.close();
    }
  });

  it('bounds the steps: a <Redirect> loop fails the call after maxSteps verbs', async () => {
    voice = await startFakeVoice({
      '/voice/incoming': () => ({ twiml: xml('<Redirect>/voice/again</Redirect>') }),
      '/voice/again': () => ({ twiml: xml('<Pause length="1"/><Redirect method="POST">again</Redirect>') }),
    });
    const call = await simulateCall({ ...base(voice), legs: [], maxSteps: 7 });
    expect(call.ended).toBe('error');
    expect(call.error).toMatch(/more than 7 verbs/);
    expect(call.steps).toHaveLength(7);
    // Relative URLs resolve against the document's URL, and every redirect is signed.
    expect(voice.requests.slice(1).every((r) => r.url === '/voice/again' && r.signed)).toBe(true);
    expect(voice.requests).toHaveLength(5);
  });

  it('an outbound call: GET actions signed over the URL with the fields in its query, a <Dial> without action goes on to the next verb, <Reject> ends it, and route() picks the host', async () => {
    const other = await startFakeVoice({
      '/voice/outbound': () => ({ twiml: xml(`<Dial><Sip>sip:desk@pbx.example.com</Sip></Dial><Redirect method="GET">${PUBLIC}/voice/next?x=1</Redirect>`) }),
    });
    voice = await startFakeVoice({ '/voice/next': () => ({ twiml: xml('<Reject reason="busy"/><Say>never</Say>') }) });
    try {
      const routed: string[] = [];
      const call = await simulateCall({
        ...base(voice),
        direction: 'outbound-api',
        url: `${PUBLIC}/voice/outbound?agent=demo`,
        firstParams: { AnsweredBy: 'human' },
        legs: [],
        dial: (t) => ({ status: t.kind === 'sip' ? 'failed' : 'completed' }),
        route: (u) => {
          routed.push(u.pathname);
          return u.pathname === '/voice/outbound' ? other.baseUrl : voice!.baseUrl;
        },
      });
      expect(call.error).toBeUndefined();
      expect(call.steps).toEqual([
        { verb: 'Dial', detail: 'sip:desk@pbx.example.com' },
        { verb: 'Redirect', detail: `${PUBLIC}/voice/next?x=1` },
        { verb: 'Reject', detail: 'busy' },
      ]);
      expect(call.ended).toBe('reject');
      expect(call.dials).toMatchObject([{ target: { kind: 'sip', address: 'sip:desk@pbx.example.com' }, status: 'failed', whisper: [] }]);
      expect(routed).toEqual(['/voice/outbound', '/voice/next']);
      expect(other.requests).toHaveLength(1);
      expect(other.requests[0]).toMatchObject({ url: '/voice/outbound?agent=demo', signed: true, params: { Direction: 'outbound-api', CallStatus: 'in-progress', AnsweredBy: 'human' } });
      // GET: no body; the call's fields ride in the query, and the signature covers that whole URL.
      const get = voice.requests[0]!;
      expect(get.method).toBe('GET');
      expect(get.signed).toBe(true);
      const q = new URL(get.url, PUBLIC).searchParams;
      expect([q.get('x'), q.get('CallSid'), q.get('CallStatus'), q.get('Direction')]).toEqual(['1', call.callSid, 'in-progress', 'outbound-api']);
    } finally {
      await other.close();
    }
  });

  it('an unknown verb, and the end of the document, end the call; status callbacks are posted signed in order', async () => {
    voice = await startFakeVoice({
      '/voice/incoming': (r) => ({ twiml: r.params.From === '+15550100777' ? xml('<Gather/>') : xml('<Say>Hello.</Say><Play>https://x.invalid/a.wav</Play>') }),
      '/voice/status': () => ({ status: 200, twiml: '' }),
    });
    const unknown = await simulateCall({ ...base(voice), from: '+15550100777', legs: [] });
    expect(unknown).toMatchObject({ ended: 'error', error: expect.stringMatching(/<Gather>/) });
    voice.requests.length = 0;
    const call = await simulateCall({ ...base(voice), legs: [], statusCallbacks: true });
    expect(call.ended).toBe('end-of-document');
    expect(call.said).toEqual(['Hello.']);
    expect(call.steps.map((s) => s.verb)).toEqual(['Say', 'Play']);
    const status = voice.requests.filter((r) => r.url === '/voice/status');
    expect(status.every((r) => r.signed)).toBe(true);
    expect(status.map((r) => [r.params.SequenceNumber, r.params.CallStatus])).toEqual([
      ['0', 'ringing'],
      ['1', 'in-progress'],
      ['2', 'completed'],
    ]);
    expect(status[2]!.params.CallDuration).toMatch(/^\d+$/);
  });
});
