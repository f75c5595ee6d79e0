/**
 * src/twilio/rest.ts through the real `twilio` client against the local
 * Calls API stand-in (src/sim/twilio-rest.ts) on loopback: the wire form of
 * a create, both kinds of auth, updates, and every failure typed with its
 * status, Twilio code and whether a retry can help.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startTwilioRestSim, type TwilioRestSim } from '../src/sim/twilio-rest.js';
import { createTwilioRest, twilioRestProblems, TwilioRestError } from '../src/twilio/rest.js';
import { verifyTwilioSignature } from '../src/twilio/signature.js';
import { parseForm } from '../src/twilio/webhooks.js';
import { until } from './helpers/until.js';

const ACCOUNT = `AC${'a1'.repeat(16)}`;
const TOKEN = 'rest-test-auth-token';
const KEY = { sid: `SK${'b2'.repeat(16)}`, secret: 'rest-test-key-secret' };

let sim: TwilioRestSim | undefined;
const servers: Server[] = [];
afterEach(async () => {
  await sim?.close();
  sim = undefined;
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => (s.close(r), s.closeAllConnections()))));
});

/** A webhook receiver on loopback that keeps every request (path, form, whether the signature checks). */
async function receiver(): Promise<{ base: string; got: { path: string; form: Record<string, string>; signed: boolean }[] }> {
  const got: { path: string; form: Record<string, string>; signed: boolean }[] = [];
  let base = '';
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const form = parseForm(body);
      const signed = verifyTwilioSignature(TOKEN, req.headers['x-twilio-signature'] as string | undefined, `${base}${req.url}`, form);
      got.push({ path: req.url ?? '', form, signed });
      res.writeHead(signed ? 200 : 403, { 'content-type': 'text/xml' }).end('<Response/>');
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { base, got };
}

describe('twilio/rest settings', () => {
  it('lists every problem at once', () => {
    expect(twilioRestProblems({ accountSid: undefined })).toEqual([
      'TWILIO_ACCOUNT_SID: required to place calls',
      'TWILIO_API_KEY_SID + TWILIO_API_KEY_SECRET (or TWILIO_AUTH_TOKEN): required to place calls',
    ]);
    const p = twilioRestProblems({ accountSid: 'ACnope', apiKeySid: 'SKnope', apiBase: 'ftp://x' });
    expect(p).toHaveLength(4);
    expect(() => createTwilioRest({ accountSid: ACCOUNT })).toThrow(/TWILIO_API_KEY_SID/);
    expect(twilioRestProblems({ accountSid: ACCOUNT, authToken: TOKEN })).toEqual([]);
  });
});

describe('twilio/rest against the Calls API stand-in', () => {
  it('creates a call with an API key: the form Twilio expects, the resource back', async () => {
    sim = await startTwilioRestSim({ accountSid: ACCOUNT, authToken: TOKEN, apiKeys: [KEY], defaultBehaviour: { outcome: 'busy' } });
    const rest = createTwilioRest({ accountSid: ACCOUNT, apiKeySid: KEY.sid, apiKeySecret: KEY.secret, apiBase: sim.url });
    const r = await rest.createCall({
      to: '+15550100111',
      from: '+15550100999',
      url: 'https://example.test/voice/incoming?o=abc',
      statusCallback: 'https://example.test/voice/status',
      machineDetection: 'DetectMessageEnd',
      asyncAmd: true,
      asyncAmdStatusCallback: 'https://example.test/voice/amd',
    });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value.sid).toMatch(/^CA[0-9a-f]{32}$/);
    expect(r.value.status).toBe('queued');
    const call = sim.call(r.value.sid)!;
    expect(call.form).toMatchObject({
      To: '+15550100111',
      From: '+15550100999',
      Url: 'https://example.test/voice/incoming?o=abc',
      Method: 'POST',
      StatusCallback: 'https://example.test/voice/status',
      StatusCallbackMethod: 'POST',
      MachineDetection: 'DetectMessageEnd',
      AsyncAmd: 'true',
      AsyncAmdStatusCallback: 'https://example.test/voice/amd',
    });
    expect(call.statusCallbackEvents).toEqual(['initiated', 'ringing', 'answered', 'completed']);
  });

  it('authenticates with the auth token too; a wrong secret is 401, not retryable', async () => {
    sim = await startTwilioRestSim({ accountSid: ACCOUNT, authToken: TOKEN, defaultBehaviour: { outcome: 'busy' } });
    const ok = await createTwilioRest({ accountSid: ACCOUNT, authToken: TOKEN, apiBase: sim.url }).createCall({ to: '+15550100111', from: '+15550100999', url: 'https://x.test/a', statusCallback: 'https://x.test/s' });
    expect(ok.ok).toBe(true);
    const bad = await createTwilioRest({ accountSid: ACCOUNT, apiKeySid: KEY.sid, apiKeySecret: 'wrong', apiBase: sim.url }).createCall({ to: '+15550100111', from: '+15550100999', url: 'https://x.test/a', statusCallback: 'https://x.test/s' });
    expect(bad.ok).toBe(false);
    if (bad.ok) return;
    expect(bad.error).toBeInstanceOf(TwilioRestError);
    expect(bad.error).toMatchObject({ status: 401, code: 20003, retryable: false });
    expect(sim.createRequests).toBe(1);
  });

  it('types Twilio\'s refusals: 400 with its code (number not quoted), 429 and 503 retryable', async () => {
    sim = await startTwilioRestSim({ accountSid: ACCOUNT, authToken: TOKEN });
    const rest = createTwilioRest({ accountSid: ACCOUNT, authToken: TOKEN, apiBase: sim.url });
    const req = { to: '+15550100111', from: '+15550100999', url: 'https://x.test/a', statusCallback: 'https://x.test/s' };
    const invalid = await rest.createCall({ ...req, to: '5550100111' });
    expect(invalid.ok || invalid.error).toMatchObject({ status: 400, code: 21211, retryable: false });
    sim.failCreates.push({ status: 429, code: 20429, message: 'Too Many Requests' }, { status: 503, code: 20503 });
    const limited = await rest.createCall(req);
    expect(limited.ok || limited.error).toMatchObject({ status: 429, code: 20429, retryable: true });
    const down = await rest.createCall(req);
    expect(down.ok || down.error).toMatchObject({ status: 503, code: 20503, retryable: true });
    expect(sim.calls).toHaveLength(0);
  });

  it('a request the client refuses before sending is not retryable', async () => {
    const rest = createTwilioRest({ accountSid: ACCOUNT, authToken: TOKEN, apiBase: 'http://127.0.0.1:9' });
    const r = await rest.createCall({ to: undefined as unknown as string, from: '+15550100999', url: 'https://x.test/a', statusCallback: 'https://x.test/s' });
    expect(r.ok || r.error).toMatchObject({ status: 0, retryable: false });
  });

  it('keeps numbers out of error messages', async () => {
    sim = await startTwilioRestSim({ accountSid: ACCOUNT, authToken: TOKEN });
    sim.failCreates.push({ status: 400, code: 21211, message: "The 'To' number +15550100111 is not a valid phone number." });
    const r = await createTwilioRest({ accountSid: ACCOUNT, authToken: TOKEN, apiBase: sim.url }).createCall({ to: '+15550100111', from: '+15550100999', url: 'https://x.test/a', statusCallback: 'https://x.test/s' });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.error.message).toContain('[number]');
    expect(r.error.message).not.toContain('5550100111');
  });

  it('a Twilio that is not there: status 0, retryable, never a rejection', async () => {
    sim = await startTwilioRestSim({ accountSid: ACCOUNT, authToken: TOKEN });
    const base = sim.url;
    await sim.close();
    sim = undefined;
    const r = await createTwilioRest({ accountSid: ACCOUNT, authToken: TOKEN, apiBase: base }).createCall({ to: '+15550100111', from: '+15550100999', url: 'https://x.test/a', statusCallback: 'https://x.test/s' });
    expect(r.ok || r.error).toMatchObject({ status: 0, retryable: true });
  });

  it('the stand-in answers a raw request as Twilio does: Basic auth, 400 with the error JSON per missing field', async () => {
    sim = await startTwilioRestSim({ accountSid: ACCOUNT, authToken: TOKEN });
    const url = `${sim.url}/2010-04-01/Accounts/${ACCOUNT}/Calls.json`;
    const auth = `Basic ${Buffer.from(`${ACCOUNT}:${TOKEN}`).toString('base64')}`;
    const send = (form: Record<string, string>, authorization = auth) =>
      fetch(url, { method: 'POST', headers: { authorization, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form).toString() }).then(async (r) => ({ status: r.status, body: (await r.json()) as { code: number; status: number; more_info: string } }));
    const full = { To: '+15550100111', From: '+15550100999', Url: 'https://x.test/a' };
    expect((await send(full, 'Basic bm9ib2R5Om5vdGhpbmc=')).body).toMatchObject({ code: 20003, status: 401 });
    expect((await send({ From: full.From, Url: full.Url })).body).toMatchObject({ code: 21201, status: 400 });
    expect((await send({ To: full.To, Url: full.Url })).body).toMatchObject({ code: 21603, status: 400 });
    const noUrl = await send({ To: full.To, From: full.From });
    expect(noUrl).toMatchObject({ status: 400, body: { code: 21205, more_info: 'https://www.twilio.com/docs/errors/21205' } });
    expect(sim.calls).toHaveLength(0);
    const ok = await send(full);
    expect(ok.status).toBe(201);
    expect(ok.body).toMatchObject({ status: 'queued', direction: 'outbound-api', account_sid: ACCOUNT });
  });

  it('updates a live call with TwiML or a hang-up; an unknown call is 404', async () => {
    const hooks = await receiver();
    sim = await startTwilioRestSim({ accountSid: ACCOUNT, authToken: TOKEN, defaultBehaviour: { outcome: 'answer', ringMs: 5 } });
    const rest = createTwilioRest({ accountSid: ACCOUNT, authToken: TOKEN, apiBase: sim.url });
    const req = { to: '+15550100111', from: '+15550100999', url: `${hooks.base}/voice/incoming`, statusCallback: `${hooks.base}/voice/status` };
    const a = await rest.createCall(req);
    const b = await rest.createCall(req);
    if (!a.ok || !b.ok) throw new Error('create failed');
    await until(() => sim!.call(a.value.sid)!.status === 'in-progress' && sim!.call(b.value.sid)!.status === 'in-progress', { what: 'both answered' });
    const upd = await rest.updateCall(a.value.sid, { twiml: '<Response><Say>Hi</Say><Hangup/></Response>' });
    expect(upd.ok).toBe(true);
    const hang = await rest.updateCall(b.value.sid, { status: 'completed' });
    expect(hang.ok).toBe(true);
    expect(sim.call(a.value.sid)!.updates).toEqual([{ twiml: '<Response><Say>Hi</Say><Hangup/></Response>' }]);
    expect(sim.call(b.value.sid)!.updates).toEqual([{ status: 'completed' }]);
    await sim.call(a.value.sid)!.ended;
    await sim.call(b.value.sid)!.ended;
    expect(sim.call(a.value.sid)!.deliveries.at(-1)).toMatchObject({ callStatus: 'completed', httpStatus: 200 });
    const missing = await rest.updateCall(`CA${'0'.repeat(32)}`, { status: 'completed' });
    expect(missing.ok || missing.error).toMatchObject({ status: 404, code: 20404, retryable: false });
    // The answered calls' Url was POSTed signed, as Twilio does.
    expect(hooks.got.filter((g) => g.path === '/voice/incoming').map((g) => [g.signed, g.form.Direction])).toEqual([[true, 'outbound-api'], [true, 'outbound-api']]);
  });
});
