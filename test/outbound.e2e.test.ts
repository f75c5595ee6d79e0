/**
 * Outbound calls through the real product (issue 16), on both edges:
 * startCallbridge from loadConfig(env) with TWILIO_ACCOUNT_SID, an API key,
 * TWILIO_API_BASE at the Calls API stand-in (src/sim/twilio-rest.ts),
 * TWILIO_AUTH_TOKEN (every webhook signed), ADMIN_TOKEN, OUTBOUND_FROM and
 * AGENT_FILE naming agent files written here with outbound policies.
 * PUBLIC_URL is an https origin that does not resolve (Twilio streams only
 * to wss://, and the relay's TwiML builder refuses anything else): the REST
 * stand-in and the simulated call reach the server on loopback instead,
 * signing over the public URL as Twilio does. An answered call is followed
 * like Twilio follows it: the stand-in's onAnswered runs simulateCall
 * (src/sim/twilio-call.ts) on the call's Url, so a real media stream runs
 * against the model stand-in. What each call leaves is read back from the
 * call store.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { main } from '../src/cli/main.js';
import type { CallRecord } from '../src/store/types.js';
import { availableEdges, type EdgeKind } from '../src/server/app.js';
import { twilioSignature } from '../src/sim/caller.js';
import { simulateCall, type SimulatedCall } from '../src/sim/twilio-call.js';
import { startTwilioRestSim, type NumberBehaviour, type SimCallInfo, type TwilioRestSim } from '../src/sim/twilio-rest.js';
import { memoryIO } from './helpers/cli-io.js';
import { useCallbridge, type Started } from './helpers/e2e.js';
import { until } from './helpers/until.js';

const ACCOUNT = `AC${'5e'.repeat(16)}`;
const AUTH_TOKEN = 'outbound-e2e-auth-token';
const KEY = { sid: `SK${'6f'.repeat(16)}`, secret: 'outbound-e2e-key-secret' };
const ADMIN = 'outbound-e2e-admin-token-0123456789';
const FROM = '+15550100999';
const PUBLIC = 'https://calls.example.test';
const VOICEMAIL = 'This is the clinic calling about your appointment. Please call us back.';

const ANSWERS = '+15550100111';
const BUSY = '+15550100121';
const NO_ANSWER = '+15550100122';
const MACHINE = '+15550100131';
const DENIED = '+15550190001';
const CLI_NUMBER = '+15550100141';

const dir = mkdtempSync(join(tmpdir(), 'callbridge-outbound-e2e-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The default agent: leaves a voicemail message, calls only +1555 numbers, never +1555019…. */
const REMINDER_FILE = join(dir, 'reminder.yaml');
writeFileSync(
  REMINDER_FILE,
  `name: reminder
instructions: You call patients to remind them of their appointment. Keep it short.
greeting: 'Say: "Hello, this is the clinic calling about your appointment."'
voice: marin
outbound:
  voicemail:
    message: "${VOICEMAIL}"
  allow: ["+1555"]
  deny: ["+1555019"]
`,
);
/** A second agent whose voicemail policy is to hang up. */
const COLLECTOR_FILE = join(dir, 'collector.yaml');
writeFileSync(
  COLLECTOR_FILE,
  `name: collector
instructions: You call customers about an unpaid invoice.
greeting: 'Say: "Hello, I am calling about your invoice."'
voice: cedar
outbound:
  voicemail: hangup
`,
);

const callbridge = useCallbridge('outbound');
const sims: TwilioRestSim[] = [];
/** Every simulated Twilio call flow started by an answer, so none outlives its test. */
const flows: Promise<SimulatedCall>[] = [];
afterEach(async () => {
  await Promise.all(flows.splice(0));
  await Promise.all(sims.splice(0).map((s) => s.close()));
});


/**
 * A port free on loopback now: the REST stand-in is told where the server will
 * listen before the server (which needs the stand-in's URL) starts.
 */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

interface Rig {
  started: Started;
  sim: TwilioRestSim;
  /** Where the server listens: http://127.0.0.1:PORT. */
  base: string;
  /** The simulated Twilio flow of each answered call, by CallSid. */
  answered: Map<string, Promise<SimulatedCall>>;
}

const NUMBERS: Record<string, NumberBehaviour> = {
  [ANSWERS]: { outcome: 'answer', ringMs: 10 },
  [CLI_NUMBER]: { outcome: 'answer', ringMs: 10 },
  [BUSY]: { outcome: 'busy', ringMs: 10 },
  [NO_ANSWER]: { outcome: 'no-answer', ringMs: 10 },
  // AMD reports the machine after its greeting: a real stream has started by then.
  [MACHINE]: { outcome: 'answer', ringMs: 10, answeredBy: 'machine_end_beep', amdDelayMs: 600 },
};

async function rig(edge: EdgeKind): Promise<Rig> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const answered = new Map<string, Promise<SimulatedCall>>();
  let sim!: TwilioRestSim;
  // Twilio, once a placed call is answered: fetch its Url (direction outbound-api) and follow the TwiML; the
  // callee hangs up when the stream is over (the stand-in then sends `completed`).
  const onAnswered = (call: SimCallInfo) => {
    const flow = simulateCall({
      baseUrl: base,
      publicUrl: PUBLIC,
      authToken: AUTH_TOKEN,
      callSid: call.sid,
      accountSid: call.accountSid,
      from: call.from,
      to: call.to,
      direction: 'outbound-api',
      url: call.url,
      // The callee of ANSWERS speaks once and hears the reply; every other listens to the greeting and hangs up.
      legs: [call.to === ANSWERS ? { utterances: [{ durationMs: 900 }], hangupAfterMs: 500 } : { utterances: [], hangupAfterMs: 300 }],
    }).then((r) => {
      sim.hangup(call.sid);
      return r;
    });
    answered.set(call.sid, flow);
    flows.push(flow);
  };
  // `reach`: the stand-in's callbacks (status, AMD) to PUBLIC_URL go to the server on loopback, signed over PUBLIC_URL.
  sim = await startTwilioRestSim({ accountSid: ACCOUNT, authToken: AUTH_TOKEN, apiKeys: [KEY], numbers: NUMBERS, onAnswered, reach: { publicUrl: PUBLIC, baseUrl: base } });
  sims.push(sim);
  const started = await callbridge({
    edge,
    env: {
      PORT: String(port),
      PUBLIC_URL: PUBLIC,
      TWILIO_AUTH_TOKEN: AUTH_TOKEN,
      TWILIO_ACCOUNT_SID: ACCOUNT,
      TWILIO_API_KEY_SID: KEY.sid,
      TWILIO_API_KEY_SECRET: KEY.secret,
      TWILIO_API_BASE: sim.url,
      ADMIN_TOKEN: ADMIN,
      OUTBOUND_FROM: FROM,
      OUTBOUND_CPS: '50',
      AGENT_FILE: `${REMINDER_FILE},${COLLECTOR_FILE}`,
    },
  });
  expect(started.app.server.edge.kind).toBe(edge);
  expect(started.baseUrl).toBe(base);
  return { started, sim, base, answered };
}

async function postCall(r: Rig, body: unknown, token = ADMIN): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${r.base}/calls`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** The call's record once `done` holds for it (the store flushed first). */
async function recordOnce(r: Rig, callSid: string, done: (rec: CallRecord) => boolean, what: string): Promise<CallRecord> {
  let rec: CallRecord | undefined;
  await until(
    async () => {
      await r.started.app.store.flush();
      rec = await r.started.app.store.get(callSid);
      return rec !== undefined && done(rec);
    },
    { what },
  );
  return rec!;
}

const statuses = (rec: CallRecord) => [...rec.statusEvents].sort((a, b) => (a.sequenceNumber ?? 0) - (b.sequenceNumber ?? 0)).map((e) => e.status);

describe.each(availableEdges())('outbound calls through the real product (%s edge)', (edge) => {
  it('POST /calls places a call; answered, it runs a real stream with the agent and its context; the record is outbound-api with every status', async () => {
    const r = await rig(edge);
    const placed = await postCall(r, { to: ANSWERS, agent: 'reminder', context: { patient: 'Ada', appointment: 'Tuesday 10:00\nroom 4' } });
    expect(placed.status).toBe(201);
    const callSid = String(placed.body.callSid);
    expect(callSid).toMatch(/^CA[0-9a-f]{32}$/);

    const sent = r.sim.call(callSid)!;
    expect(sent).toMatchObject({ to: ANSWERS, from: FROM, statusCallback: `${PUBLIC}/voice/status` });
    expect(sent.url).toMatch(new RegExp(`^${PUBLIC}/voice/incoming\\?o=`));
    // The context travels sealed, not readable in the URL Twilio is given.
    expect(sent.url).not.toContain('Ada');

    await until(() => r.answered.has(callSid), { what: 'the answer' });
    const flow = await r.answered.get(callSid)!;
    expect(flow.error).toBeUndefined();
    expect(flow.webhooks[0]).toMatchObject({ kind: 'incoming', status: 200 });
    expect(flow.steps[0]!.verb).toBe('Connect');
    expect(flow.legs).toHaveLength(1);
    expect(flow.legs[0]!.heardMs).toBeGreaterThan(0);
    expect(flow.legs[0]!.protocolViolations).toEqual([]);
    await sent.ended;
    expect(sent.deliveries.map((d) => [d.callStatus, d.httpStatus])).toEqual([
      ['initiated', 204],
      ['ringing', 204],
      ['in-progress', 204],
      ['completed', 204],
    ]);

    const rec = await recordOnce(r, callSid, (x) => x.state !== 'in_progress' && x.statusEvents.length === 4, 'the finished record with four status events');
    expect(rec).toMatchObject({ agent: 'reminder', direction: 'outbound-api', from: FROM, to: ANSWERS, status: 'completed' });
    expect(statuses(rec)).toEqual(['initiated', 'ringing', 'in-progress', 'completed']);
    expect(rec.streamSid).not.toBeNull();
    expect(rec.transcript.some((t) => t.speaker === 'assistant')).toBe(true);

    // The model was told who the call is for: the agent's instructions, then the context (newlines flattened).
    expect(r.started.model.sessions).toHaveLength(1);
    const instructions = String(r.started.model.sessions[0]!.sessionUpdate.instructions);
    expect(instructions).toContain('You call patients to remind them of their appointment.');
    expect(instructions).toContain('About this call:\npatient: Ada\nappointment: Tuesday 10:00 room 4');
  });

  it('busy and no-answer numbers leave records with those statuses and no stream', async () => {
    const r = await rig(edge);
    const busy = await postCall(r, { to: BUSY });
    const none = await postCall(r, { to: NO_ANSWER, agent: 'collector' });
    expect([busy.status, none.status]).toEqual([201, 201]);
    const busySid = String(busy.body.callSid);
    const noneSid = String(none.body.callSid);
    await r.sim.call(busySid)!.ended;
    await r.sim.call(noneSid)!.ended;

    const b = await recordOnce(r, busySid, (x) => x.status === 'busy', 'the busy record');
    const n = await recordOnce(r, noneSid, (x) => x.status === 'no-answer', 'the no-answer record');
    expect(statuses(b)).toEqual(['initiated', 'ringing', 'busy']);
    expect(statuses(n)).toEqual(['initiated', 'ringing', 'no-answer']);
    expect(b).toMatchObject({ agent: 'reminder', direction: 'outbound-api', streamSid: null, transcript: [] });
    expect(n).toMatchObject({ agent: 'collector', direction: 'outbound-api', streamSid: null, transcript: [] });
    expect(r.answered.size).toBe(0);
    expect(r.started.model.sessions).toEqual([]);
  });

  it('a machine answers (AMD machine_end_beep): the voicemail message policy replaces the TwiML with <Say>message</Say><Hangup/>', async () => {
    const r = await rig(edge);
    const placed = await postCall(r, { to: MACHINE, agent: 'reminder' });
    expect(placed.status).toBe(201);
    const callSid = String(placed.body.callSid);
    const sent = r.sim.call(callSid)!;
    expect(sent.form).toMatchObject({ MachineDetection: 'DetectMessageEnd', AsyncAmd: 'true' });
    expect(sent.asyncAmdStatusCallback).toMatch(new RegExp(`^${PUBLIC}/voice/amd\\?o=`));
    await sent.ended;
    expect(sent.amdDelivery).toEqual({ answeredBy: 'machine_end_beep', httpStatus: 204 });
    expect(sent.updates).toHaveLength(1);
    const twiml = sent.updates[0]!.twiml ?? '';
    expect(twiml.replace(/<\?xml[^>]*\?>/, '').replace(/\s+</g, '<')).toBe(`<Response><Say>${VOICEMAIL}</Say><Hangup/></Response>`);

    const rec = await recordOnce(r, callSid, (x) => x.events.some((e) => e.type === 'answered_by') && x.status === 'completed', 'the answered_by event');
    expect(rec.events.find((e) => e.type === 'answered_by')!.detail).toMatch(/^machine_end_beep/);
    expect(rec).toMatchObject({ agent: 'reminder', direction: 'outbound-api' });
  });

  it('a machine answers a hang-up agent: the call is ended with Status=completed', async () => {
    const r = await rig(edge);
    const placed = await postCall(r, { to: MACHINE, agent: 'collector' });
    expect(placed.status).toBe(201);
    const callSid = String(placed.body.callSid);
    const sent = r.sim.call(callSid)!;
    await sent.ended;
    expect(sent.updates).toEqual([{ status: 'completed' }]);
    const rec = await recordOnce(r, callSid, (x) => x.events.some((e) => e.type === 'answered_by') && x.status === 'completed', 'the answered_by event');
    expect(rec.events.find((e) => e.type === 'answered_by')!.detail).toMatch(/^machine_end_beep/);
    expect(rec.agent).toBe('collector');
  });

  it('a number the agent file denies is refused 403 number_not_allowed and never reaches Twilio', async () => {
    const r = await rig(edge);
    expect(await postCall(r, { to: DENIED, agent: 'reminder' })).toEqual({ status: 403, body: { error: 'number_not_allowed' } });
    // Outside the allow list too.
    expect(await postCall(r, { to: '+442071234567' })).toEqual({ status: 403, body: { error: 'number_not_allowed' } });
    expect(r.sim.createRequests).toBe(0);
    expect(r.sim.calls).toEqual([]);
    // The admin token is required at all.
    expect((await postCall(r, { to: ANSWERS }, 'not-the-admin-token-000000')).status).toBe(401);
    expect(r.sim.createRequests).toBe(0);
  });

  it('`callbridge call +1… --agent FILE --context JSON` places one and prints its CallSid', async () => {
    const r = await rig(edge);
    const cli = memoryIO({ ADMIN_TOKEN: ADMIN });
    const code = await main(['call', CLI_NUMBER, '--agent', COLLECTOR_FILE, '--context', JSON.stringify({ invoice: 'INV-77' }), '--server', r.base], cli.io);
    expect(cli.err()).toBe('');
    expect(code).toBe(0);
    const callSid = cli.out().trim();
    expect(callSid).toMatch(/^CA[0-9a-f]{32}$/);
    expect(r.sim.calls.map((c) => c.sid)).toEqual([callSid]);
    expect(r.sim.call(callSid)!.to).toBe(CLI_NUMBER);
    await until(() => r.answered.has(callSid), { what: 'the answer' });
    expect((await r.answered.get(callSid)!).error).toBeUndefined();
    await r.sim.call(callSid)!.ended;
    const rec = await recordOnce(r, callSid, (x) => x.state !== 'in_progress' && x.status === 'completed', 'the finished record');
    expect(rec).toMatchObject({ agent: 'collector', direction: 'outbound-api' });
    expect(String(r.started.model.sessions[0]!.sessionUpdate.instructions)).toContain('About this call:\ninvoice: INV-77');
  });

  it('a forged `o` token on /voice/incoming is refused 403 (signed request, no call, no model session)', async () => {
    const r = await rig(edge);
    const callSid = `CA${'7a'.repeat(16)}`;
    const path = '/voice/incoming?o=v1.forged-token';
    const url = `${PUBLIC}${path}`;
    const form = { CallSid: callSid, AccountSid: ACCOUNT, From: FROM, To: ANSWERS, CallStatus: 'in-progress', Direction: 'outbound-api', ApiVersion: '2010-04-01' };
    const res = await fetch(`${r.base}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': twilioSignature(AUTH_TOKEN, url, form) },
      body: new URLSearchParams(form).toString(),
    });
    expect(res.status).toBe(403);
    // The same request without the token is an ordinary inbound call: the signature was not what failed.
    const plain = `${PUBLIC}/voice/incoming`;
    const ok = await fetch(`${r.base}/voice/incoming`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': twilioSignature(AUTH_TOKEN, plain, { ...form, CallSid: `CA${'7b'.repeat(16)}`, Direction: 'inbound' }) },
      body: new URLSearchParams({ ...form, CallSid: `CA${'7b'.repeat(16)}`, Direction: 'inbound' }).toString(),
    });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toContain('<Connect');
    await r.started.app.store.flush();
    expect(await r.started.app.store.get(callSid)).toBeUndefined();
  });
});
