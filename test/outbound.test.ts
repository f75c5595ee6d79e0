/**
 * Outbound calls end to end on loopback: OutboundCalls places calls through
 * the real `twilio` client against the Calls API stand-in
 * (src/sim/twilio-rest.ts), which drives them like Twilio and calls back a
 * webhook receiver standing in for the edge (signatures checked with the
 * project's verifier, bodies parsed with twilio/webhooks.ts, AMD handed to
 * OutboundCalls.amd, the incoming URL's token opened with openCallToken).
 * Pacing runs on a virtual clock: no test measures wall-clock time.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { OutboundPolicy } from '../src/agent/types.js';
import { memoryPacer, numberAllowed, OutboundCalls, voicemailTwiml, type OutboundAgent, type OutboundCallsDeps } from '../src/call/outbound-calls.js';
import { MAX_CONTEXT_BYTES, MAX_TOKEN_CHARS, OUTBOUND_TOKEN_TTL_MS, contextProblems, openCallToken, outboundTokenKey, sealCallToken } from '../src/call/outbound-token.js';
import type { IncomingOptions, OutboundPacer } from '../src/call/ports.js';
import { silentLogger } from '../src/log.js';
import type { CallEvent } from '../src/records.js';
import { startTwilioRestSim, type NumberBehaviour, type TwilioRestSim } from '../src/sim/twilio-rest.js';
import { createTwilioRest, type TwilioRest } from '../src/twilio/rest.js';
import { verifyTwilioSignature } from '../src/twilio/signature.js';
import { parseAmdCallback, parseForm, parseStatusCallback, type StatusCallback } from '../src/twilio/webhooks.js';
import { run as callCommand } from '../src/cli/call.js';
import { memoryIO } from './helpers/cli-io.js';
import { until } from './helpers/until.js';

const ACCOUNT = `AC${'c3'.repeat(16)}`;
const AUTH_TOKEN = 'outbound-test-auth-token';
const KEY = { sid: `SK${'d4'.repeat(16)}`, secret: 'outbound-test-key-secret' };
const ADMIN = 'outbound-admin-token-0123456789';
const SECRET = Buffer.from('outbound-test-admission-secret-0123456789abcdef');
const FROM = '+15550100999';

const policy = (p: Partial<OutboundPolicy>): OutboundPolicy => ({ callerId: undefined, voicemail: { action: 'hangup' }, allow: [], deny: [], ...p });
const AGENTS = new Map<string, OutboundAgent>([
  ['nurse', { name: 'nurse', outbound: policy({ voicemail: { action: 'message', message: 'This is the clinic. Please call us back.' }, allow: ['+1555'], deny: ['+1555019'] }) }],
  ['collector', { name: 'collector', outbound: policy({ callerId: '+15550100888', voicemail: { action: 'hangup' } }) }],
]);

const servers: Server[] = [];
const sims: TwilioRestSim[] = [];
afterEach(async () => {
  await Promise.all(sims.splice(0).map((s) => s.close()));
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => (s.close(r), s.closeAllConnections()))));
});

interface Edge {
  base: string;
  statuses: StatusCallback[];
  incoming: { callSid: string; opts: IncomingOptions | null }[];
  unsigned: string[];
  /** Set once OutboundCalls exists: the receiver hands /voice/amd and the token to it. */
  app?: OutboundCalls;
}

/** The edge, as far as outbound calls touch it: signed webhooks in, parsed, handed on. */
async function edge(publicUrl?: string): Promise<Edge> {
  const e: Edge = { base: '', statuses: [], incoming: [], unsigned: [] };
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', async () => {
      const form = parseForm(body);
      const url = new URL(req.url ?? '/', e.base);
      if (!verifyTwilioSignature(AUTH_TOKEN, req.headers['x-twilio-signature'] as string | undefined, `${publicUrl ?? e.base}${req.url}`, form)) {
        e.unsigned.push(url.pathname);
        return res.writeHead(403).end();
      }
      if (url.pathname === '/voice/status') {
        const p = parseStatusCallback(form);
        if (!p.ok) return res.writeHead(400).end(p.error);
        e.statuses.push(p.value);
        return res.writeHead(204).end();
      }
      if (url.pathname === '/voice/amd') {
        const p = parseAmdCallback(form);
        if (!p.ok) return res.writeHead(400).end(p.error);
        await e.app!.amd(p.value, e.app!.openCallToken(url.searchParams.get('o') ?? ''));
        return res.writeHead(204).end();
      }
      if (url.pathname === '/voice/incoming') {
        e.incoming.push({ callSid: form.CallSid!, opts: e.app!.openCallToken(url.searchParams.get('o') ?? '') });
        return res.writeHead(200, { 'content-type': 'text/xml' }).end('<Response><Pause length="60"/></Response>');
      }
      res.writeHead(404).end();
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  e.base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return e;
}

interface Rig {
  sim: TwilioRestSim;
  edge: Edge;
  app: OutboundCalls;
  placed: { callSid: string; info: { from: string; to: string; agent: string } }[];
  events: { callSid: string; e: CallEvent }[];
}

async function rig(numbers: Record<string, NumberBehaviour> = {}, deps: Partial<OutboundCallsDeps> = {}): Promise<Rig> {
  const e = await edge(deps.publicUrl);
  const sim = await startTwilioRestSim({
    accountSid: ACCOUNT,
    authToken: AUTH_TOKEN,
    apiKeys: [KEY],
    numbers,
    defaultBehaviour: { outcome: 'answer', ringMs: 5 },
    ...(deps.publicUrl ? { reach: { publicUrl: deps.publicUrl, baseUrl: e.base } } : {}),
  });
  sims.push(sim);
  const placed: Rig['placed'] = [];
  const events: Rig['events'] = [];
  const app = new OutboundCalls({
    rest: createTwilioRest({ accountSid: ACCOUNT, apiKeySid: KEY.sid, apiKeySecret: KEY.secret, apiBase: sim.url }),
    agents: AGENTS,
    defaultAgent: 'nurse',
    publicUrl: e.base,
    from: FROM,
    pacer: memoryPacer(),
    records: { placed: (callSid, info) => placed.push({ callSid, info }), appendEvent: (callSid, ev) => events.push({ callSid, e: ev }) },
    secret: SECRET,
    adminToken: ADMIN,
    cps: 50,
    log: silentLogger,
    ...deps,
  });
  e.app = app;
  return { sim, edge: e, app, placed, events };
}

const post = (app: OutboundCalls, body: unknown, authorization: string | undefined = `Bearer ${ADMIN}`) =>
  app.placeCall({ authorization, body: typeof body === 'string' ? body : JSON.stringify(body) });

describe('outbound calls through the REST stand-in', () => {
  it('places a call that rings, is answered, opens its token and completes; status callbacks arrive signed, in order', async () => {
    const r = await rig({ '+15550100111': { outcome: 'answer', ringMs: 10, talkMs: 40 } });
    const placed = await r.app.place({ to: '+15550100111', agent: 'nurse', context: { memberId: 'M-1234', reason: 'follow-up' } });
    expect(placed.ok).toBe(true);
    if (!placed.ok) return;
    expect(placed.callSid).toMatch(/^CA[0-9a-f]{32}$/);
    expect(placed.status).toBe('queued');
    await r.sim.call(placed.callSid)!.ended;
    await until(() => r.edge.statuses.some((s) => s.terminal), { what: 'the completed callback' });
    expect(r.edge.unsigned).toEqual([]);
    expect(r.edge.statuses.map((s) => [s.sequenceNumber, s.callStatus, s.direction])).toEqual([
      [0, 'initiated', 'outbound-api'],
      [1, 'ringing', 'outbound-api'],
      [2, 'in-progress', 'outbound-api'],
      [3, 'completed', 'outbound-api'],
    ]);
    expect(r.edge.statuses.every((s) => s.callSid === placed.callSid && s.to === '+15550100111' && s.from === FROM)).toBe(true);
    await until(() => r.edge.incoming.length === 1, { what: 'the voice webhook' });
    expect(r.edge.incoming[0]).toEqual({ callSid: placed.callSid, opts: { agent: 'nurse', context: { memberId: 'M-1234', reason: 'follow-up' } } });
    expect(r.placed).toEqual([{ callSid: placed.callSid, info: { from: FROM, to: '+15550100111', agent: 'nurse' } }]);
    // The context travels sealed: not readable in the URL Twilio was given.
    expect(r.sim.call(placed.callSid)!.url).not.toContain('M-1234');
    expect(r.sim.call(placed.callSid)!.form).toMatchObject({ MachineDetection: 'DetectMessageEnd', AsyncAmd: 'true', AsyncAmdStatusCallback: expect.stringMatching(new RegExp(`^${r.edge.base}/voice/amd\\?o=v1\\.`)), StatusCallback: `${r.edge.base}/voice/status` });
  });

  it('a public URL that is not loopback: the stand-in reaches the edge anyway, signing over the public URL', async () => {
    const r = await rig({ '+15550100113': { outcome: 'answer', ringMs: 5, talkMs: 20 } }, { publicUrl: 'https://calls.example.test' });
    const placed = await r.app.place({ to: '+15550100113', context: { reason: 'x' } });
    if (!placed.ok) throw new Error('not placed');
    expect(r.sim.call(placed.callSid)!.url).toMatch(/^https:\/\/calls\.example\.test\/voice\/incoming\?o=v1\./);
    await r.sim.call(placed.callSid)!.ended;
    await until(() => r.edge.statuses.some((s) => s.terminal) && r.edge.incoming.length === 1, { what: 'callbacks' });
    expect(r.edge.unsigned).toEqual([]);
    expect(r.edge.incoming[0]!.opts).toEqual({ agent: 'nurse', context: { reason: 'x' } });
  });

  it('uses the agent\'s own caller ID', async () => {
    const r = await rig({ '+15550100112': { outcome: 'busy' } });
    const placed = await r.app.place({ to: '+15550100112', agent: 'collector' });
    if (!placed.ok) throw new Error('not placed');
    expect(r.sim.call(placed.callSid)!.from).toBe('+15550100888');
  });

  it('busy and no-answer end after ringing, without the voice webhook', async () => {
    const r = await rig({ '+15550100121': { outcome: 'busy', ringMs: 5 }, '+15550100122': { outcome: 'no-answer', ringMs: 5 } });
    const busy = await r.app.place({ to: '+15550100121' });
    const none = await r.app.place({ to: '+15550100122' });
    if (!busy.ok || !none.ok) throw new Error('not placed');
    await r.sim.call(busy.callSid)!.ended;
    await r.sim.call(none.callSid)!.ended;
    await until(() => r.edge.statuses.filter((s) => s.terminal).length === 2, { what: 'both terminal callbacks' });
    const of = (sid: string) => r.edge.statuses.filter((s) => s.callSid === sid).map((s) => s.callStatus);
    expect(of(busy.callSid)).toEqual(['initiated', 'ringing', 'busy']);
    expect(of(none.callSid)).toEqual(['initiated', 'ringing', 'no-answer']);
    expect(r.edge.incoming).toEqual([]);
  });

  it('never sends a refused number to Twilio: deny wins over allow, and allow is a whitelist', async () => {
    const r = await rig();
    expect(await r.app.place({ to: '+15550190000', agent: 'nurse' })).toEqual({ ok: false, error: 'number_not_allowed' });
    expect(await r.app.place({ to: '+442071234567', agent: 'nurse' })).toEqual({ ok: false, error: 'number_not_allowed' });
    const http = await post(r.app, { to: '+15550190001' });
    expect(http).toEqual({ status: 403, body: { error: 'number_not_allowed' } });
    expect(r.sim.createRequests).toBe(0);
    expect(r.placed).toEqual([]);
    // The same numbers are fine for an agent without those lists.
    expect((await r.app.place({ to: '+442071234567', agent: 'collector' })).ok).toBe(true);
    expect(r.sim.createRequests).toBe(1);
  });

  it('numberAllowed: prefixes, deny after allow', () => {
    expect(numberAllowed({ allow: [], deny: [] }, '+15550100111')).toBe(true);
    expect(numberAllowed({ allow: ['+44'], deny: [] }, '+15550100111')).toBe(false);
    expect(numberAllowed({ allow: ['+1'], deny: ['+1900'] }, '+19005550100')).toBe(false);
    expect(numberAllowed({ allow: [], deny: ['+1900'] }, '+15550100111')).toBe(true);
  });
});

describe('pacing', () => {
  /** A virtual clock: sleeps resolve only when the test moves time on. */
  function clock(startMs: number) {
    let t = startMs;
    const waiting: { dueMs: number; resolve: () => void }[] = [];
    return {
      now: () => t,
      sleep: (ms: number) => new Promise<void>((resolve) => waiting.push({ dueMs: t + ms, resolve })),
      /** Run `work` to its end, moving time to each sleep's due moment in order. */
      async drive<T>(work: Promise<T>): Promise<T> {
        let done = false;
        void work.finally(() => (done = true)).catch(() => {});
        while (!done) {
          waiting.sort((a, b) => a.dueMs - b.dueMs);
          const next = waiting.shift();
          if (next) {
            t = Math.max(t, next.dueMs);
            next.resolve();
          }
          await new Promise((r) => setTimeout(r, 2));
        }
        return work;
      },
    };
  }

  it('5 calls at OUTBOUND_CPS=2 reach Twilio at least 500 ms apart, each after its slot', async () => {
    const c = clock(1_000_000);
    const creates: number[] = [];
    const sim = await startTwilioRestSim({ accountSid: ACCOUNT, authToken: AUTH_TOKEN, defaultBehaviour: { outcome: 'busy', ringMs: 1 } });
    sims.push(sim);
    const real = createTwilioRest({ accountSid: ACCOUNT, authToken: AUTH_TOKEN, apiBase: sim.url });
    const rest: TwilioRest = { createCall: (req) => (creates.push(c.now()), real.createCall(req)), updateCall: (sid, u) => real.updateCall(sid, u) };
    const slots: number[] = [];
    const pacer = memoryPacer(c.now);
    const app = new OutboundCalls({
      rest,
      agents: AGENTS,
      defaultAgent: 'collector',
      publicUrl: 'http://127.0.0.1:9',
      from: FROM,
      pacer: { reserveOutboundSlot: async (ms) => { const at = await pacer.reserveOutboundSlot(ms); slots.push(at); return at; } },
      records: { placed() {}, appendEvent() {} },
      secret: SECRET,
      adminToken: ADMIN,
      cps: 2,
      now: c.now,
      sleep: c.sleep,
      log: silentLogger,
    });
    const results = await c.drive(Promise.all([1, 2, 3, 4, 5].map((i) => app.place({ to: `+1555010020${i}` }))));
    expect(results.every((x) => x.ok)).toBe(true);
    expect(slots).toEqual([1_000_000, 1_000_500, 1_001_000, 1_001_500, 1_002_000]);
    expect(creates).toHaveLength(5);
    const sorted = [...creates].sort((a, b) => a - b);
    for (let i = 1; i < sorted.length; i++) expect(sorted[i]! - sorted[i - 1]!).toBeGreaterThanOrEqual(500);
    expect(sorted[0]).toBe(1_000_000);
    expect(sim.createRequests).toBe(5);
  });

  it('a pacer that cannot answer places nothing (503, retryable)', async () => {
    const failing: OutboundPacer = { reserveOutboundSlot: () => Promise.reject(new Error('store down')) };
    const r = await rig({}, { pacer: failing });
    expect(await post(r.app, { to: '+15550100111' })).toEqual({ status: 503, body: { error: 'pacer_unavailable', retryable: true } });
    expect(r.sim.createRequests).toBe(0);
  });
});

describe('the outbound token', () => {
  const key = outboundTokenKey(SECRET);
  const now = 1_800_000_000_000;

  it('opens what it sealed, until its expiry', () => {
    const t = sealCallToken(key, { agent: 'nurse', context: { memberId: 'M-1', reason: 'lab results' } }, now + OUTBOUND_TOKEN_TTL_MS);
    expect(t).toMatch(/^v1\.[A-Za-z0-9_-]+$/);
    expect(t).not.toContain('M-1');
    expect(openCallToken(key, t, now)).toEqual({ agent: 'nurse', context: { memberId: 'M-1', reason: 'lab results' } });
    expect(openCallToken(key, t, now + OUTBOUND_TOKEN_TTL_MS)).not.toBeNull();
    expect(openCallToken(key, t, now + OUTBOUND_TOKEN_TTL_MS + 1)).toBeNull();
    expect(openCallToken(key, sealCallToken(key, {}, now + 1), now)).toEqual({});
  });

  it('refuses a changed token, another secret\'s, and garbage', () => {
    const t = sealCallToken(key, { agent: 'nurse' }, now + 60_000);
    const body = t.slice(3);
    for (let i = 0; i < body.length; i += 7) {
      const flipped = `v1.${body.slice(0, i)}${body[i] === 'A' ? 'B' : 'A'}${body.slice(i + 1)}`;
      expect(openCallToken(key, flipped, now)).toBeNull();
    }
    expect(openCallToken(outboundTokenKey(Buffer.from('another-secret-of-at-least-32-characters!!')), t, now)).toBeNull();
    for (const junk of ['', 'v1.', 'v2.' + body, 'v1.!!!', 'v1.AAAA', `v1.${'A'.repeat(MAX_TOKEN_CHARS)}`, 42, null]) expect(openCallToken(key, junk, now)).toBeNull();
  });

  it('keeps the context within limits, and the largest one within the token limit', () => {
    const many = Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`k${i}`, 'v']));
    expect(contextProblems(many)).toEqual(['context: at most 20 keys (got 21)']);
    expect(contextProblems({ note: 'x'.repeat(201) })).toEqual(['context.note: at most 200 characters (got 201)']);
    expect(contextProblems({ 'bad key': 'v' })[0]).toMatch(/key 'bad key'/);
    const big = Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`k${i}`, 'x'.repeat(200)]));
    expect(contextProblems(big)[0]).toMatch(/at most 1500 bytes/);
    expect(() => sealCallToken(key, { context: big }, now)).toThrow(/1500 bytes/);
    // The largest context that passes still seals under the limit and opens.
    const fill: Record<string, string> = {};
    for (let i = 0; contextProblems({ ...fill, [`key${i}`]: 'é'.repeat(200) }).length === 0 && i < 20; i++) fill[`key${i}`] = 'é'.repeat(200);
    const rest = MAX_CONTEXT_BYTES - Buffer.byteLength(JSON.stringify(fill)) - 12;
    if (rest > 0) fill.tail = 'z'.repeat(Math.min(200, rest));
    expect(contextProblems(fill)).toEqual([]);
    const t = sealCallToken(key, { agent: 'a'.repeat(40), context: fill }, now + 1);
    expect(t.length).toBeLessThanOrEqual(MAX_TOKEN_CHARS);
    expect(openCallToken(key, t, now)).toEqual({ agent: 'a'.repeat(40), context: fill });
  });
});

describe('POST /calls', () => {
  it('is 404 without ADMIN_TOKEN and 401 without the right bearer', async () => {
    const off = await rig({}, { adminToken: undefined });
    expect(await post(off.app, { to: '+15550100111' })).toEqual({ status: 404, body: { error: 'not found' } });
    const r = await rig();
    expect(await r.app.placeCall({ authorization: undefined, body: JSON.stringify({ to: '+15550100111' }) })).toEqual({ status: 401, body: { error: 'unauthorized' } });
    expect(await post(r.app, { to: '+15550100111' }, 'Bearer wrong-token-0123456789')).toEqual({ status: 401, body: { error: 'unauthorized' } });
    expect(r.sim.createRequests + off.sim.createRequests).toBe(0);
  });

  it('is 400 with every problem, and never quotes a value', async () => {
    const r = await rig();
    expect(await post(r.app, '{nope')).toEqual({ status: 400, body: { error: 'invalid request', problems: ['(body): expected JSON'] } });
    const bad = await post(r.app, { to: '5550100111', agent: 'No Such', context: { memberId: 12345 }, extra: true });
    expect(bad.status).toBe(400);
    const problems = (bad.body as { problems: string[] }).problems;
    expect(problems.some((p) => p.startsWith('to:'))).toBe(true);
    expect(problems.some((p) => p.startsWith('agent:'))).toBe(true);
    expect(problems.some((p) => p.startsWith('context.memberId:'))).toBe(true);
    expect(problems.some((p) => p.includes('extra'))).toBe(true);
    expect(JSON.stringify(bad.body)).not.toContain('5550100111');
    expect(await post(r.app, { to: '+15550100111', agent: 'ghost' })).toEqual({ status: 400, body: { error: 'invalid request', problems: ["agent: no agent named 'ghost' is loaded"] } });
    expect(r.sim.createRequests).toBe(0);
  });

  it('is 201 with the CallSid, and 502 with Twilio\'s error (retryable or not)', async () => {
    const r = await rig({ '+15550100111': { outcome: 'busy' } });
    const ok = await post(r.app, { to: '+15550100111', agent: 'nurse', context: { reason: 'reminder' } });
    expect(ok.status).toBe(201);
    expect(ok.body).toEqual({ callSid: expect.stringMatching(/^CA[0-9a-f]{32}$/), status: 'queued' });
    r.sim.failCreates.push({ status: 503, code: 20503 }, { status: 400, code: 21215, message: 'Geo permission' });
    const down = await post(r.app, { to: '+15550100111' });
    expect(down).toMatchObject({ status: 502, body: { error: 'twilio', status: 503, code: 20503, retryable: true } });
    const refused = await post(r.app, { to: '+15550100111' });
    expect(refused).toMatchObject({ status: 502, body: { error: 'twilio', status: 400, code: 21215, retryable: false } });
  });
});

describe('answering-machine detection', () => {
  it('a machine\'s greeting ended, message policy: the call is updated to <Say>message</Say><Hangup/>', async () => {
    const r = await rig({ '+15550100131': { outcome: 'answer', answeredBy: 'machine_end_beep', amdDelayMs: 10 } });
    const placed = await r.app.place({ to: '+15550100131', agent: 'nurse' });
    if (!placed.ok) throw new Error('not placed');
    const call = r.sim.call(placed.callSid)!;
    await call.ended;
    expect(call.updates).toEqual([{ twiml: voicemailTwiml('This is the clinic. Please call us back.') }]);
    expect(call.updates[0]!.twiml).toMatch(/<Say>This is the clinic\. Please call us back\.<\/Say><Hangup\/><\/Response>$/);
    expect(r.events.map((e) => [e.callSid, e.e.type, e.e.detail])).toEqual([
      [placed.callSid, 'answered_by', 'machine_end_beep after 10 ms'],
      [placed.callSid, 'voicemail_message', undefined],
    ]);
    await until(() => r.edge.statuses.some((s) => s.callStatus === 'completed'), { what: 'completed' });
  });

  it('hangup policy: the call is ended (Status=completed)', async () => {
    const r = await rig({ '+15550100132': { outcome: 'answer', answeredBy: 'machine_end_silence', amdDelayMs: 10 } });
    const placed = await r.app.place({ to: '+15550100132', agent: 'collector' });
    if (!placed.ok) throw new Error('not placed');
    await r.sim.call(placed.callSid)!.ended;
    expect(r.sim.call(placed.callSid)!.updates).toEqual([{ status: 'completed' }]);
    expect(r.events.map((e) => e.e.type)).toEqual(['answered_by', 'voicemail_hangup']);
  });

  it('a machine still greeting, hangup policy: ended at once; message policy: waits for the beep', async () => {
    const r = await rig({ '+15550100133': { outcome: 'answer', answeredBy: 'machine_start', amdDelayMs: 10 }, '+15550100134': { outcome: 'answer', answeredBy: 'machine_start', amdDelayMs: 10 } });
    const hang = await r.app.place({ to: '+15550100133', agent: 'collector' });
    const wait = await r.app.place({ to: '+15550100134', agent: 'nurse' });
    if (!hang.ok || !wait.ok) throw new Error('not placed');
    await r.sim.call(hang.callSid)!.ended;
    expect(r.sim.call(hang.callSid)!.updates).toEqual([{ status: 'completed' }]);
    await until(() => r.sim.call(wait.callSid)!.amdDelivery !== undefined, { what: 'the AMD callback' });
    expect(r.sim.call(wait.callSid)!.updates).toEqual([]);
    expect(r.sim.call(wait.callSid)!.status).toBe('in-progress');
  });

  it('a person: the result is recorded and nothing changes', async () => {
    const r = await rig({ '+15550100135': { outcome: 'answer', answeredBy: 'human', amdDelayMs: 10 } });
    const placed = await r.app.place({ to: '+15550100135', agent: 'nurse' });
    if (!placed.ok) throw new Error('not placed');
    await until(() => r.sim.call(placed.callSid)!.amdDelivery !== undefined, { what: 'the AMD callback' });
    expect(r.sim.call(placed.callSid)!.amdDelivery).toEqual({ answeredBy: 'human', httpStatus: 204 });
    expect(r.sim.call(placed.callSid)!.updates).toEqual([]);
    expect(r.sim.call(placed.callSid)!.status).toBe('in-progress');
    expect(r.events.map((e) => [e.e.type, e.e.detail])).toEqual([['answered_by', 'human after 10 ms']]);
  });

  it('another instance applies the placing agent\'s policy from the token on the AMD URL', async () => {
    const r = await rig({ '+15550100136': { outcome: 'answer', answeredBy: 'machine_end_beep', amdDelayMs: 10 } });
    // A second instance (same secret, same agents, nothing placed): it receives every webhook.
    const other = new OutboundCalls({
      rest: createTwilioRest({ accountSid: ACCOUNT, authToken: AUTH_TOKEN, apiBase: r.sim.url }),
      agents: AGENTS,
      defaultAgent: 'nurse',
      publicUrl: r.edge.base,
      from: FROM,
      pacer: memoryPacer(),
      records: { placed() {}, appendEvent() {} },
      secret: SECRET,
      adminToken: ADMIN,
      log: silentLogger,
    });
    const placed = await r.app.place({ to: '+15550100136', agent: 'collector' });
    if (!placed.ok) throw new Error('not placed');
    r.edge.app = other;
    await r.sim.call(placed.callSid)!.ended;
    // collector's policy is hangup; the default agent (nurse) would have left a message.
    expect(r.sim.call(placed.callSid)!.updates).toEqual([{ status: 'completed' }]);
  });

  it('a failed update is kept as an event and amd still resolves', async () => {
    const r = await rig();
    await expect(r.app.amd({ callSid: `CA${'9'.repeat(32)}`, accountSid: ACCOUNT, answeredBy: 'machine_end_beep', detectionMs: undefined, messageEnded: true })).resolves.toBeUndefined();
    expect(r.events.map((e) => e.e.type)).toEqual(['answered_by', 'voicemail_message_failed']);
    expect(r.events[1]!.e.detail).toMatch(/404/);
  });
});

describe('settings', () => {
  it('refuses to start without what placing a call needs, listing every problem', () => {
    const agents = new Map<string, OutboundAgent>([['a', { name: 'a', outbound: policy({}) }]]);
    const base = { rest: {} as TwilioRest, pacer: memoryPacer(), records: { placed() {}, appendEvent() {} }, secret: SECRET, adminToken: ADMIN, log: silentLogger };
    expect(() => new OutboundCalls({ ...base, agents, defaultAgent: 'b', publicUrl: '', from: undefined, cps: 0 })).toThrow(
      /PUBLIC_URL[\s\S]*default agent 'b'[\s\S]*agent 'a': no caller ID[\s\S]*OUTBOUND_CPS/,
    );
  });
});

describe('callbridge call', () => {
  /** POST /calls served over loopback by the app, as the edge serves it (JSON body in, status and JSON out). */
  async function serveCalls(app: OutboundCalls): Promise<string> {
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', async () => {
        if (req.method !== 'POST' || req.url !== '/calls') return res.writeHead(404).end();
        const out = await app.placeCall({ authorization: req.headers.authorization, body });
        res.writeHead(out.status, { 'content-type': 'application/json' }).end(JSON.stringify(out.body));
      });
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  it('prints the CallSid of the placed call, with agent and context', async () => {
    const r = await rig({ '+15550100141': { outcome: 'busy' } });
    const base = await serveCalls(r.app);
    const m = memoryIO({ ADMIN_TOKEN: ADMIN });
    expect(await callCommand(['+15550100141', '--agent', 'collector', '--context', '{"reason":"invoice"}', '--server', base], m.io)).toBe(0);
    expect(m.out()).toMatch(/^CA[0-9a-f]{32}\n$/);
    const call = r.sim.call(m.out().trim())!;
    expect(call.from).toBe('+15550100888');
    expect(r.placed[0]!.info.agent).toBe('collector');
  });

  it('--agent FILE checks the file and sends its name; a broken file is listed and nothing is placed', async () => {
    const r = await rig({ '+15550100142': { outcome: 'busy' } });
    const base = await serveCalls(r.app);
    const dir = mkdtempSync(join(tmpdir(), 'cb-call-agent-'));
    const file = join(dir, 'collector.yaml');
    writeFileSync(file, 'name: collector\ninstructions: Remind the member of the invoice.\n');
    const m = memoryIO({ ADMIN_TOKEN: ADMIN });
    expect(await callCommand(['+15550100142', '--agent', file, '--server', base], m.io)).toBe(0);
    expect(r.placed[0]!.info.agent).toBe('collector');
    const broken = join(dir, 'broken.yaml');
    writeFileSync(broken, 'name: Not A Name\n');
    const b = memoryIO({ ADMIN_TOKEN: ADMIN });
    expect(await callCommand(['+15550100142', '--agent', broken, '--server', base], b.io)).toBe(2);
    expect(b.err()).toMatch(/name:/);
    expect(b.err()).toMatch(/instructions/);
    expect(r.placed).toHaveLength(1);
  });

  it('says clearly why not: not allowed, wrong token, no server, bad usage', async () => {
    const r = await rig();
    const base = await serveCalls(r.app);
    const denied = memoryIO({ ADMIN_TOKEN: ADMIN });
    expect(await callCommand(['+15550190000', '--server', base], denied.io)).toBe(1);
    expect(denied.err()).toMatch(/number not allowed/);
    const wrong = memoryIO({ ADMIN_TOKEN: 'not-the-admin-token-at-all' });
    expect(await callCommand(['+15550100111', '--server', base], wrong.io)).toBe(1);
    expect(wrong.err()).toMatch(/refused the admin token/);
    const gone = memoryIO({ ADMIN_TOKEN: ADMIN });
    expect(await callCommand(['+15550100111', '--server', 'http://127.0.0.1:9'], gone.io)).toBe(1);
    expect(gone.err()).toMatch(/cannot reach the server at http:\/\/127\.0\.0\.1:9/);
    for (const args of [[], ['5550100111'], ['+15550100111', '--context', '[1]'], ['+15550100111', '--agent', './agents/nurse.yaml']]) {
      const m = memoryIO({ ADMIN_TOKEN: ADMIN });
      expect(await callCommand(args, m.io)).toBe(2);
    }
    const noToken = memoryIO({});
    expect(await callCommand(['+15550100111', '--server', base], noToken.io)).toBe(2);
    expect(noToken.err()).toMatch(/ADMIN_TOKEN/);
    expect(r.sim.createRequests).toBe(0);
  });
});
