/**
 * A local stand-in for Twilio's Calls API (2010-04-01) on node:http, for the
 * real `twilio` client (TWILIO_API_BASE=http://127.0.0.1:PORT) in tests and
 * the demo. It speaks the wire as Twilio does (PROTOCOLS.md, Call resource):
 *
 * - POST /2010-04-01/Accounts/{AC}/Calls.json (form: To, From, Url,
 *   StatusCallback, StatusCallbackEvent (repeated), MachineDetection,
 *   AsyncAmd, AsyncAmdStatusCallback, …) → 201 with the call resource
 *   (snake_case JSON, sid CA + 32 hex, status `queued`); 400 with Twilio's
 *   error JSON (`{code, message, more_info, status}`) when To, From or Url
 *   is missing or To is not E.164.
 * - POST /2010-04-01/Accounts/{AC}/Calls/{CA}.json (Twiml, or Status=
 *   completed|canceled) → 200; ends the call (completed), recorded in
 *   `call.updates` for tests to assert on. Unknown call → 404 (20404).
 * - HTTP Basic auth: the account SID with the auth token, or an API key SID
 *   with its secret; anything else → 401 (20003).
 *
 * After a create it drives the call like Twilio, per called number
 * (`numbers`, else `defaultBehaviour`): status callbacks to StatusCallback,
 * form-encoded and signed (X-Twilio-Signature with the auth token), one
 * after another, SequenceNumber from 0, Direction outbound-api, only the
 * events asked for (initiated, ringing, answered → in-progress, completed;
 * completed alone when none were asked), CallDuration on the last one.
 * Answered: `onAnswered(call)` runs (default: POST the Url signed, keep the
 * TwiML in `call.twiml`); with AsyncAmd, AnsweredBy is POSTed (signed) to
 * AsyncAmdStatusCallback after `amdDelayMs`. The call ends on an update, on
 * `hangup(sid)`, or after `talkMs` when a number sets it.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import twilio from 'twilio';

export type DialOutcome = 'answer' | 'busy' | 'no-answer' | 'failed';
export type SimAnsweredBy = 'human' | 'machine_start' | 'machine_end_beep' | 'machine_end_silence' | 'machine_end_other' | 'fax' | 'unknown';

/** How a called number behaves. Times in ms. */
export interface NumberBehaviour {
  outcome: DialOutcome;
  /** Ringing before the outcome (default 20). */
  ringMs?: number;
  /** What AMD reports, when the call asked for it (default human). */
  answeredBy?: SimAnsweredBy;
  /** Answer → AMD result (default 30). */
  amdDelayMs?: number;
  /** Answer → the callee hangs up; undefined = stays until updated or `hangup`. */
  talkMs?: number;
}

export interface SimCallInfo {
  sid: string;
  accountSid: string;
  from: string;
  to: string;
  url: string;
}

export interface SimStatusDelivery {
  callStatus: string;
  sequenceNumber: number;
  /** The receiver's HTTP status; 0 = not reached. */
  httpStatus: number;
}

export interface SimCall extends SimCallInfo {
  status: string;
  statusCallback: string | undefined;
  statusCallbackEvents: string[];
  machineDetection: string | undefined;
  asyncAmd: boolean;
  asyncAmdStatusCallback: string | undefined;
  /** The create request's form, as received. */
  form: Record<string, string | string[]>;
  /** Status callbacks delivered, in order. */
  deliveries: SimStatusDelivery[];
  /** The AMD callback's receiver status, once sent. */
  amdDelivery: { answeredBy: SimAnsweredBy; httpStatus: number } | undefined;
  /** Updates received (Twiml or Status), in order. */
  updates: { twiml?: string; status?: string }[];
  /** The TwiML the default onAnswered got back from the Url. */
  twiml: string | undefined;
  /** Resolves once the last status callback was sent (or tried). */
  ended: Promise<void>;
}

export interface TwilioRestSimOptions {
  accountSid: string;
  /** Signs every callback; also Basic auth's password with the account SID. */
  authToken: string;
  apiKeys?: { sid: string; secret: string }[];
  numbers?: Record<string, NumberBehaviour>;
  defaultBehaviour?: NumberBehaviour;
  /**
   * Where callbacks really go when the server's PUBLIC_URL is not reachable
   * from here: a URL under `publicUrl` is sent to `baseUrl` instead (same path
   * and query), still signed over the public URL, as Twilio signs it.
   */
  reach?: { publicUrl: string; baseUrl: string };
  /** The call was answered: what Twilio does with its Url (default: POST it signed, keep the TwiML). */
  onAnswered?: (call: SimCallInfo) => Promise<void> | void;
}

export interface TwilioRestSim {
  /** http://127.0.0.1:PORT: TWILIO_API_BASE. */
  url: string;
  calls: SimCall[];
  /** Create requests that reached the API (accepted or not, auth passed). */
  createRequests: number;
  /** The next creates answer this error instead (e.g. 503/20503 or 429/20429), first in first out. */
  failCreates: { status: number; code: number; message?: string }[];
  call(sid: string): SimCall | undefined;
  /** The callee hangs up now. */
  hangup(sid: string): void;
  close(): Promise<void>;
}

const E164 = /^\+[1-9]\d{6,14}$/;
const MAX_BODY_BYTES = 64 * 1024;

const errorBody = (status: number, code: number, message: string) => ({ code, message, more_info: `https://www.twilio.com/docs/errors/${code}`, status });

/** RFC 2822 as Twilio writes it: "Sun, 06 Dec 2026 19:22:20 +0000". */
const rfc2822 = (d: Date) => d.toUTCString().replace('GMT', '+0000');

/**
 * POST a form signed as Twilio signs it (over `url`), sent to `sendTo` (default
 * `url`); resolves to the HTTP status (0 = not reached) and body.
 */
export async function postSigned(authToken: string, url: string, form: Record<string, string>, sendTo: string = url): Promise<{ status: number; body: string }> {
  try {
    const res = await fetch(sendTo, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': twilio.getExpectedTwilioSignature(authToken, url, form) },
      body: new URLSearchParams(form).toString(),
    });
    return { status: res.status, body: await res.text() };
  } catch {
    return { status: 0, body: '' };
  }
}

export async function startTwilioRestSim(opts: TwilioRestSimOptions): Promise<TwilioRestSim> {
  const calls = new Map<string, SimCall>();
  const order: SimCall[] = [];
  const timers = new Set<NodeJS.Timeout>();
  /** Per call: end it now (status for the last callback). */
  const enders = new Map<string, (status: string) => void>();
  let closed = false;

  const reach = opts.reach ? { publicUrl: opts.reach.publicUrl.replace(/\/+$/, ''), baseUrl: opts.reach.baseUrl.replace(/\/+$/, '') } : undefined;
  /** A signed callback, to where it can be reached. */
  const callback = (url: string, form: Record<string, string>) =>
    postSigned(opts.authToken, url, form, reach && url.startsWith(reach.publicUrl) ? `${reach.baseUrl}${url.slice(reach.publicUrl.length)}` : url);

  const later = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        timers.delete(t);
        resolve();
      }, ms);
      timers.add(t);
    });

  const sim: TwilioRestSim = {
    url: '',
    calls: order,
    createRequests: 0,
    failCreates: [],
    call: (sid) => calls.get(sid),
    hangup: (sid) => enders.get(sid)?.('completed'),
    close: async () => {
      closed = true;
      for (const t of timers) clearTimeout(t);
      for (const end of enders.values()) end('completed');
      await new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      });
    },
  };

  const authorized = (req: IncomingMessage): boolean => {
    const m = /^basic +(.+)$/i.exec(req.headers.authorization ?? '');
    if (!m) return false;
    const [user, ...rest] = Buffer.from(m[1]!, 'base64').toString('utf8').split(':');
    const pass = rest.join(':');
    if (user === opts.accountSid && pass === opts.authToken) return true;
    return (opts.apiKeys ?? []).some((k) => k.sid === user && k.secret === pass);
  };

  const resource = (c: SimCall) => ({
    sid: c.sid,
    account_sid: c.accountSid,
    to: c.to,
    to_formatted: c.to,
    from: c.from,
    from_formatted: c.from,
    status: c.status,
    direction: 'outbound-api',
    api_version: '2010-04-01',
    date_created: rfc2822(new Date()),
    date_updated: rfc2822(new Date()),
    uri: `/2010-04-01/Accounts/${c.accountSid}/Calls/${c.sid}.json`,
  });

  /** Drive one call through its life, sending its status callbacks in order. */
  async function drive(call: SimCall, b: NumberBehaviour, finish: () => void): Promise<void> {
    let seq = 0;
    let answeredAt: number | undefined;
    let over = false;
    const wanted = (event: string) => call.statusCallbackEvents.includes(event);
    const send = async (callStatus: string, event: string) => {
      call.status = callStatus;
      if (!call.statusCallback || (event !== 'completed' && !wanted(event))) return;
      const form: Record<string, string> = {
        CallSid: call.sid,
        AccountSid: call.accountSid,
        From: call.from,
        To: call.to,
        Called: call.to,
        Caller: call.from,
        CallStatus: callStatus,
        Direction: 'outbound-api',
        ApiVersion: '2010-04-01',
        CallbackSource: 'call-progress-events',
        SequenceNumber: String(seq),
        Timestamp: rfc2822(new Date()),
      };
      if (event === 'completed') form.CallDuration = String(answeredAt === undefined ? 0 : Math.round((Date.now() - answeredAt) / 1000));
      const sequenceNumber = seq++;
      const r = await callback(call.statusCallback, form);
      call.deliveries.push({ callStatus, sequenceNumber, httpStatus: r.status });
    };
    // Ends the call once, from whichever comes first: an update, a hang-up, talkMs, close.
    let endNow!: (status: string) => void;
    const endRequested = new Promise<string>((r) => (endNow = r));
    enders.set(call.sid, (status) => endNow(status));

    await send('initiated', 'initiated');
    if (!closed) await send('ringing', 'ringing');
    const rang = await Promise.race([later(b.ringMs ?? 20).then(() => 'rang'), endRequested]);
    if (rang !== 'rang' || closed) {
      await send('canceled', 'completed');
      over = true;
    } else if (b.outcome !== 'answer') {
      await send(b.outcome, 'completed');
      over = true;
    }
    if (!over) {
      answeredAt = Date.now();
      await send('in-progress', 'answered');
      const info: SimCallInfo = { sid: call.sid, accountSid: call.accountSid, from: call.from, to: call.to, url: call.url };
      void Promise.resolve()
        .then(() => (opts.onAnswered ? opts.onAnswered(info) : defaultAnswer(call)))
        .catch(() => {});
      if (call.asyncAmd && call.asyncAmdStatusCallback) {
        const amdUrl = call.asyncAmdStatusCallback;
        const answeredBy = b.answeredBy ?? 'human';
        const delay = b.amdDelayMs ?? 30;
        void Promise.race([later(delay).then(() => true), endRequested.then(() => false)]).then(async (due) => {
          if (!due || closed) return;
          const r = await callback(amdUrl, {
            CallSid: call.sid,
            AccountSid: call.accountSid,
            AnsweredBy: answeredBy,
            MachineDetectionDuration: String(delay),
          });
          call.amdDelivery = { answeredBy, httpStatus: r.status };
        });
      }
      if (b.talkMs !== undefined) void later(b.talkMs).then(() => endNow('completed'));
      await endRequested;
      await send('completed', 'completed');
    }
    enders.delete(call.sid);
    finish();
  }

  async function defaultAnswer(call: SimCall): Promise<void> {
    const r = await callback(call.url, {
      CallSid: call.sid,
      AccountSid: call.accountSid,
      From: call.from,
      To: call.to,
      Called: call.to,
      Caller: call.from,
      CallStatus: 'in-progress',
      Direction: 'outbound-api',
      ApiVersion: '2010-04-01',
    });
    call.twiml = r.body;
  }

  function create(accountSid: string, form: Record<string, string | string[]>, res: ServerResponse): void {
    sim.createRequests++;
    const one = (k: string) => (Array.isArray(form[k]) ? (form[k] as string[]).at(-1) : (form[k] as string | undefined));
    const fail = sim.failCreates.shift();
    if (fail) return json(res, fail.status, errorBody(fail.status, fail.code, fail.message ?? 'Service unavailable'));
    const to = one('To');
    const from = one('From');
    const url = one('Url');
    if (!to) return json(res, 400, errorBody(400, 21201, "No 'To' number is specified"));
    if (!E164.test(to)) return json(res, 400, errorBody(400, 21211, "Invalid 'To' Phone Number"));
    if (!from) return json(res, 400, errorBody(400, 21603, "A 'From' phone number is required."));
    if (!url && !one('Twiml')) return json(res, 400, errorBody(400, 21205, 'Url parameter is required.'));
    const events = form.StatusCallbackEvent;
    let finish!: () => void;
    const ended = new Promise<void>((r) => (finish = r));
    const call: SimCall = {
      sid: `CA${randomBytes(16).toString('hex')}`,
      accountSid,
      from,
      to,
      url: url ?? '',
      status: 'queued',
      statusCallback: one('StatusCallback'),
      statusCallbackEvents: events === undefined ? [] : Array.isArray(events) ? events : [events],
      machineDetection: one('MachineDetection'),
      asyncAmd: one('AsyncAmd') === 'true',
      asyncAmdStatusCallback: one('AsyncAmdStatusCallback'),
      form,
      deliveries: [],
      amdDelivery: undefined,
      updates: [],
      twiml: undefined,
      ended,
    };
    calls.set(call.sid, call);
    order.push(call);
    json(res, 201, resource(call));
    const behaviour = opts.numbers?.[to] ?? opts.defaultBehaviour ?? { outcome: 'answer' };
    void drive(call, behaviour, finish).catch(() => finish());
  }

  function update(accountSid: string, sid: string, form: Record<string, string | string[]>, res: ServerResponse): void {
    const call = calls.get(sid);
    if (!call || call.accountSid !== accountSid) return json(res, 404, errorBody(404, 20404, `The requested resource /2010-04-01/Accounts/${accountSid}/Calls/${sid}.json was not found`));
    const twiml = typeof form.Twiml === 'string' ? form.Twiml : undefined;
    const status = typeof form.Status === 'string' ? form.Status : undefined;
    if (status !== undefined && status !== 'completed' && status !== 'canceled') return json(res, 400, errorBody(400, 21218, 'Invalid Status'));
    if (twiml === undefined && status === undefined && typeof form.Url !== 'string') return json(res, 400, errorBody(400, 21205, 'Url, Twiml or Status is required.'));
    call.updates.push({ ...(twiml !== undefined ? { twiml } : {}), ...(status !== undefined ? { status } : {}) });
    json(res, 200, resource(call));
    // New TwiML here always ends in <Hangup/> or silence: the call is over either way for the stand-in.
    enders.get(sid)?.('completed');
  }

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) req.destroy();
      else chunks.push(c);
    });
    req.on('end', () => {
      if (!authorized(req)) return json(res, 401, errorBody(401, 20003, 'Authenticate'));
      const path = (req.url ?? '').split('?')[0]!;
      const form: Record<string, string | string[]> = Object.create(null) as Record<string, string | string[]>;
      for (const [k, v] of new URLSearchParams(Buffer.concat(chunks).toString('utf8'))) {
        const prev = form[k];
        form[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
      }
      const m = /^\/2010-04-01\/Accounts\/(AC[0-9a-f]{32})\/Calls(?:\/(CA[0-9a-f]{32}))?\.json$/i.exec(path);
      if (!m || req.method !== 'POST') return json(res, 404, errorBody(404, 20404, 'The requested resource was not found'));
      if (m[1] !== opts.accountSid) return json(res, 403, errorBody(403, 20003, 'Authenticate'));
      if (m[2]) update(m[1]!, m[2], form, res);
      else create(m[1]!, form, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  sim.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return sim;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
