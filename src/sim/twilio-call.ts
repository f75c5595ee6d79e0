/**
 * A stand-in for Twilio's voice call flow: one call, from the first webhook
 * to its end, following the TwiML it is given as Twilio does
 * (PROTOCOLS.md), independently of src/twilio.
 *
 * Contract:
 * - Every request is signed like Twilio's (X-Twilio-Signature over the exact
 *   public URL, query included, plus the sorted form fields; GET requests
 *   carry their fields in the query and sign the URL alone). Public URLs are
 *   reached at `route(url)` (default: `baseUrl`), so the relay can sit behind
 *   a PUBLIC_URL that does not resolve.
 * - Verbs run in document order; an action's answer replaces the document.
 *   `<Connect><Stream>`: the simulated caller (caller.ts) runs one leg on the
 *   stream; when the server closes it, the `<Connect action>` is requested
 *   (or the next verb runs); when the caller hangs up (`stop`), the call is
 *   over and no action is requested. `<Dial>`: `dial(target)` decides how the
 *   dialled leg went; only an answered leg fetches its `<Number url>`
 *   whisper (kept as said text); the `<Dial action>` gets DialCallStatus,
 *   DialCallSid and, once answered, DialCallDuration. `<Say>`, `<Play>`,
 *   `<Pause>` are kept, not played. `<Redirect>` fetches its URL. `<Hangup>`,
 *   `<Reject>` and the end of the document end the call.
 * - Any webhook not answered 200 with a TwiML `<Response>`, a verb this
 *   stand-in does not know, a refused stream upgrade, or more than
 *   `maxSteps` verbs ends the call with `ended: 'error'` and the reason (as
 *   Twilio ends a call on an application error). Nothing throws.
 */
import { randomBytes } from 'node:crypto';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { postStatusCallback, streamCall, twilioSignature, type CallerOptions, type CallResult } from './caller.js';

/** What one stream leg's caller does: a CallerOptions without the call's identity and addresses. */
export type LegOptions = Omit<CallerOptions, 'baseUrl' | 'publicUrl' | 'authToken' | 'callSid' | 'from' | 'to'>;

/** One noun of a `<Dial>`: a phone number, a SIP URI or a client, with its whisper URL. */
export interface DialTarget {
  kind: 'number' | 'sip' | 'client';
  address: string;
  /** `<Number url>` / `<Sip url>`: TwiML played to the answered party before bridging. */
  url?: string;
}

export interface DialOutcome {
  status: 'completed' | 'busy' | 'no-answer' | 'failed';
  /** Seconds the answered leg lasted (only with `completed`; default 5). */
  durationS?: number;
}

export interface SimulateCallOptions {
  /** Where the relay listens (http://127.0.0.1:PORT). */
  baseUrl: string;
  /** The relay's PUBLIC_URL, which every signature covers (default baseUrl). */
  publicUrl?: string;
  /** TWILIO_AUTH_TOKEN; without it nothing is signed. */
  authToken?: string;
  callSid?: string;
  accountSid?: string;
  from: string;
  to: string;
  /** `inbound` (default) or `outbound-api` (a call placed through the REST API). */
  direction?: 'inbound' | 'outbound-api';
  /** The first document's public URL (default `${publicUrl}/voice/incoming`; an outbound call's `Url`). */
  url?: string;
  /** Extra fields of the first request (e.g. an outbound call's AnsweredBy). */
  firstParams?: Record<string, string>;
  /** The caller on each `<Connect><Stream>`, in order; a stream beyond these gets a caller who listens and hangs up. */
  legs: LegOptions[];
  /** How a dialled target goes (default: answered, 5 s). */
  dial?: (target: DialTarget) => DialOutcome | Promise<DialOutcome>;
  /** Verbs followed at most before the call fails (default 25). */
  maxSteps?: number;
  /** Also POST signed /voice/status callbacks: ringing, in-progress, then the final status with CallDuration. */
  statusCallbacks?: boolean;
  /** The origin (http://host:port) that serves a public URL (default: baseUrl's). */
  route?: (url: URL) => string;
}

export type WebhookKind = 'incoming' | 'action' | 'dial-action' | 'whisper' | 'redirect' | 'status';

export interface SimStep {
  verb: string;
  /** Connect: the stream URL; Dial: the targets; Say: the text; Play/Redirect: the URL; Reject: the reason. */
  detail?: string;
}

export interface SimulatedCall {
  callSid: string;
  accountSid: string;
  /** Verbs followed, in order. */
  steps: SimStep[];
  /** The caller's view of each stream leg, in order. */
  legs: CallResult[];
  dials: { target: DialTarget; status: DialOutcome['status']; dialCallSid: string; durationS?: number; whisper: string[] }[];
  /** `<Say>` texts heard by the caller, in order. */
  said: string[];
  ended: 'hangup' | 'reject' | 'end-of-document' | 'caller-hangup' | 'error';
  /** Why, with `ended: 'error'`. */
  error?: string;
  /** Every request made, with the HTTP status it got (0: no answer at all). */
  webhooks: { kind: WebhookKind; method: string; url: string; status: number }[];
  /** First request → end, ms. */
  durationMs: number;
}

const DEFAULT_MAX_STEPS = 25;
const DEFAULT_DIAL: DialOutcome = { status: 'completed', durationS: 5 };
const API_VERSION = '2010-04-01';

const hex = (n: number) => randomBytes(n).toString('hex');

/** One element of a TwiML document as fast-xml-parser's preserveOrder form gives it. */
type XmlNode = Record<string, unknown>;

const parser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '',
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
});

function nameOf(node: XmlNode): string {
  return Object.keys(node).find((k) => k !== ':@') ?? '';
}
function attrsOf(node: XmlNode): Record<string, string> {
  return (node[':@'] as Record<string, string> | undefined) ?? {};
}
function childrenOf(node: XmlNode): XmlNode[] {
  const c = node[nameOf(node)];
  return Array.isArray(c) ? (c as XmlNode[]) : [];
}
function textOf(node: XmlNode): string {
  return childrenOf(node)
    .map((c) => (typeof c['#text'] === 'string' || typeof c['#text'] === 'number' ? String(c['#text']) : ''))
    .join('')
    .trim();
}

/** The verbs of a TwiML document, or why it is not one. */
export function parseTwiml(text: string): { ok: true; verbs: XmlNode[] } | { ok: false; error: string } {
  const valid = XMLValidator.validate(text);
  if (valid !== true) return { ok: false, error: `TwiML is not XML (${valid.err.msg})` };
  const root = (parser.parse(text) as XmlNode[]).find((n) => nameOf(n) !== '?xml');
  if (!root || nameOf(root) !== 'Response') return { ok: false, error: 'TwiML has no <Response> root' };
  return { ok: true, verbs: childrenOf(root) };
}

class CallFlow {
  private readonly publicUrl: string;
  private readonly callSid: string;
  private readonly accountSid: string;
  private readonly direction: string;
  private readonly t0 = performance.now();
  private statusSeq = 0;
  private readonly result: SimulatedCall;

  constructor(private readonly opts: SimulateCallOptions) {
    this.publicUrl = opts.publicUrl ?? opts.baseUrl;
    this.callSid = opts.callSid ?? `CA${hex(16)}`;
    this.accountSid = opts.accountSid ?? `AC${hex(16)}`;
    this.direction = opts.direction ?? 'inbound';
    this.result = { callSid: this.callSid, accountSid: this.accountSid, steps: [], legs: [], dials: [], said: [], ended: 'end-of-document', webhooks: [], durationMs: 0 };
  }

  async run(): Promise<SimulatedCall> {
    try {
      await this.status('ringing');
      const first = this.opts.url ?? `${this.publicUrl}/voice/incoming`;
      const firstStatus = this.direction === 'inbound' ? 'ringing' : 'in-progress';
      let doc: Doc | undefined = await this.fetchTwiml('incoming', first, 'POST', { ...this.callParams(firstStatus), ...this.opts.firstParams });
      let answered = false;
      let steps = 0;
      flow: while (doc) {
        const current: Doc = doc;
        doc = undefined;
        for (const node of current.verbs) {
          if (++steps > (this.opts.maxSteps ?? DEFAULT_MAX_STEPS)) throw new FlowError(`more than ${this.opts.maxSteps ?? DEFAULT_MAX_STEPS} verbs followed (a TwiML loop?)`);
          const verb = nameOf(node);
          if (!answered && verb !== 'Reject') {
            answered = true;
            await this.status('in-progress');
          }
          const next = await this.follow(verb, node, current);
          if (next === 'end') break flow;
          if (next) {
            doc = next;
            continue flow;
          }
        }
      }
    } catch (err) {
      this.result.ended = 'error';
      this.result.error = err instanceof Error ? err.message : String(err);
    }
    this.result.durationMs = Math.round(performance.now() - this.t0);
    const final = this.result.ended === 'reject' ? (this.result.steps.at(-1)?.detail === 'busy' ? 'busy' : 'no-answer') : this.result.ended === 'error' ? 'failed' : 'completed';
    await this.status(final, { CallDuration: String(Math.round(this.result.durationMs / 1000)) }).catch(() => undefined);
    return this.result;
  }

  /** Runs one verb: 'end' ends the call, a document replaces the current one, undefined goes on to the next verb. */
  private async follow(verb: string, node: XmlNode, current: Doc): Promise<Doc | 'end' | undefined> {
    const attrs = attrsOf(node);
    const docUrl = current.url;
    switch (verb) {
      case 'Connect':
        return this.connect(node, current);
      case 'Dial':
        return this.dial(node, docUrl);
      case 'Say': {
        const text = textOf(node);
        this.result.steps.push({ verb, detail: text });
        this.result.said.push(text);
        return undefined;
      }
      case 'Play':
        this.result.steps.push({ verb, detail: textOf(node) });
        return undefined;
      case 'Pause':
        this.result.steps.push({ verb, detail: attrs.length ?? '1' });
        return undefined;
      case 'Redirect': {
        const target = this.resolve(textOf(node), docUrl);
        this.result.steps.push({ verb, detail: target });
        return this.fetchTwiml('redirect', target, methodOf(attrs), this.callParams('in-progress'));
      }
      case 'Hangup':
        this.result.steps.push({ verb });
        this.result.ended = 'hangup';
        return 'end';
      case 'Reject':
        this.result.steps.push({ verb, detail: attrs.reason ?? 'rejected' });
        this.result.ended = 'reject';
        return 'end';
      default:
        throw new FlowError(`<${verb}> is not a verb this stand-in follows`);
    }
  }

  private async connect(node: XmlNode, current: Doc): Promise<Doc | 'end' | undefined> {
    const stream = childrenOf(node).find((c) => nameOf(c) === 'Stream');
    const streamUrl = stream ? attrsOf(stream).url : undefined;
    if (!stream || !streamUrl) throw new FlowError('<Connect> without a <Stream url>');
    const customParameters: Record<string, string> = {};
    for (const p of childrenOf(stream)) {
      if (nameOf(p) !== 'Parameter') continue;
      const a = attrsOf(p);
      if (a.name !== undefined) customParameters[a.name] = a.value ?? '';
    }
    const leg = this.result.legs.length;
    this.result.steps.push({ verb: 'Connect', detail: streamUrl });
    const legOpts: LegOptions = this.opts.legs[leg] ?? { utterances: [] };
    let parsedStream: URL;
    try {
      parsedStream = new URL(streamUrl);
    } catch {
      throw new FlowError(`<Stream url> is not an absolute URL`);
    }
    const callerOpts: CallerOptions = {
      ...legOpts,
      baseUrl: this.origin(parsedStream),
      publicUrl: this.publicUrl,
      authToken: this.opts.authToken,
      callSid: this.callSid,
      from: this.opts.from,
      to: this.opts.to,
    };
    let result: CallResult;
    try {
      result = await streamCall(callerOpts, { twiml: current.text, streamUrl, customParameters, callSid: this.callSid, accountSid: this.accountSid });
    } catch (err) {
      throw new FlowError(`stream ${leg + 1}: ${err instanceof Error ? err.message : String(err)}`);
    }
    this.result.legs.push(result);
    if (result.endedBy === 'caller') {
      this.result.ended = 'caller-hangup';
      return 'end';
    }
    const action = attrsOf(node).action;
    if (action === undefined) return undefined;
    return this.fetchTwiml('action', this.resolve(action, current.url), methodOf(attrsOf(node)), this.callParams('in-progress'));
  }

  private async dial(node: XmlNode, docUrl: string): Promise<Doc | undefined> {
    const targets: DialTarget[] = [];
    for (const c of childrenOf(node)) {
      const kind = ({ Number: 'number', Sip: 'sip', Client: 'client' } as const)[nameOf(c) as 'Number' | 'Sip' | 'Client'];
      if (kind) targets.push({ kind, address: textOf(c), url: attrsOf(c).url });
    }
    const bare = textOf(node);
    if (targets.length === 0 && bare) targets.push({ kind: 'number', address: bare });
    if (targets.length === 0) throw new FlowError('<Dial> with nothing to dial');
    this.result.steps.push({ verb: 'Dial', detail: targets.map((t) => t.address).join(', ') });
    // Several nouns ring at once: the first to answer wins; otherwise the last outcome stands.
    let outcome: DialOutcome = { status: 'failed' };
    let dialCallSid = '';
    for (const target of targets) {
      const got = this.opts.dial ? await this.opts.dial(target) : DEFAULT_DIAL;
      dialCallSid = `CA${hex(16)}`;
      outcome = got;
      const entry: SimulatedCall['dials'][number] = { target, status: got.status, dialCallSid, whisper: [] };
      this.result.dials.push(entry);
      if (got.status !== 'completed') continue;
      entry.durationS = got.durationS ?? DEFAULT_DIAL.durationS;
      if (target.url !== undefined) entry.whisper = await this.whisper(target, dialCallSid, docUrl);
      break;
    }
    const attrs = attrsOf(node);
    if (attrs.action === undefined) return undefined;
    const params: Record<string, string> = {
      ...this.callParams('in-progress'),
      DialCallStatus: outcome.status,
      DialCallSid: dialCallSid,
      DialBridged: String(outcome.status === 'completed'),
    };
    if (outcome.status === 'completed') params.DialCallDuration = String(outcome.durationS ?? DEFAULT_DIAL.durationS);
    return this.fetchTwiml('dial-action', this.resolve(attrs.action, docUrl), methodOf(attrs), params);
  }

  /** The answered party's announcement: `<Say>` texts of the whisper document, requested for the child leg. */
  private async whisper(target: DialTarget, dialCallSid: string, docUrl: string): Promise<string[]> {
    const params: Record<string, string> = {
      CallSid: dialCallSid,
      ParentCallSid: this.callSid,
      AccountSid: this.accountSid,
      From: this.opts.from,
      To: target.address,
      CallStatus: 'in-progress',
      Direction: 'outbound-dial',
      ApiVersion: API_VERSION,
    };
    const doc = await this.fetchTwiml('whisper', this.resolve(target.url!, docUrl), 'POST', params);
    return doc.verbs.filter((v) => nameOf(v) === 'Say').map(textOf);
  }

  private callParams(callStatus: string): Record<string, string> {
    return {
      CallSid: this.callSid,
      AccountSid: this.accountSid,
      From: this.opts.from,
      To: this.opts.to,
      CallStatus: callStatus,
      Direction: this.direction,
      ApiVersion: API_VERSION,
    };
  }

  /** Requests a TwiML document as Twilio does (signed); anything but 200 with a `<Response>` fails the call. */
  private async fetchTwiml(kind: WebhookKind, publicUrl: string, method: 'GET' | 'POST', params: Record<string, string>): Promise<Doc> {
    const { status, body } = await this.request(kind, publicUrl, method, params);
    if (status !== 200) throw new FlowError(`${kind} webhook ${new URL(publicUrl).pathname} answered ${status}`);
    const doc = parseTwiml(body);
    if (!doc.ok) throw new FlowError(`${kind} webhook ${new URL(publicUrl).pathname}: ${doc.error}`);
    return { url: publicUrl, text: body, verbs: doc.verbs };
  }

  private async request(kind: WebhookKind, publicUrl: string, method: 'GET' | 'POST', params: Record<string, string>): Promise<{ status: number; body: string }> {
    let signedUrl = publicUrl;
    let body: string | undefined;
    const headers: Record<string, string> = {};
    if (method === 'GET') {
      const u = new URL(publicUrl);
      for (const [k, v] of Object.entries(params)) u.searchParams.append(k, v);
      signedUrl = u.toString();
      if (this.opts.authToken) headers['x-twilio-signature'] = twilioSignature(this.opts.authToken, signedUrl, {});
    } else {
      body = new URLSearchParams(params).toString();
      headers['content-type'] = 'application/x-www-form-urlencoded';
      if (this.opts.authToken) headers['x-twilio-signature'] = twilioSignature(this.opts.authToken, signedUrl, params);
    }
    const target = new URL(signedUrl);
    const entry = { kind, method, url: signedUrl, status: 0 };
    this.result.webhooks.push(entry);
    try {
      const res = await fetch(`${this.origin(target)}${target.pathname}${target.search}`, { method, headers, body });
      entry.status = res.status;
      return { status: res.status, body: await res.text() };
    } catch (err) {
      throw new FlowError(`${kind} webhook ${target.pathname}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  /** POSTs a signed call status callback (when asked for); its answer is recorded, never fatal. */
  private async status(callStatus: string, extra: Record<string, string> = {}): Promise<void> {
    if (!this.opts.statusCallbacks) return;
    const params = { ...this.callParams(callStatus), Timestamp: new Date().toUTCString(), SequenceNumber: String(this.statusSeq++), ...extra };
    const publicUrl = `${this.publicUrl}/voice/status`;
    const entry = { kind: 'status' as const, method: 'POST', url: publicUrl, status: 0 };
    this.result.webhooks.push(entry);
    const target = new URL(publicUrl);
    entry.status = await postStatusCallback({ baseUrl: this.origin(target), publicUrl: this.publicUrl, authToken: this.opts.authToken, params }).catch(() => 0);
  }

  private origin(publicUrl: URL): string {
    return (this.opts.route?.(publicUrl) ?? this.opts.baseUrl).replace(/\/+$/, '');
  }

  private resolve(url: string, docUrl: string): string {
    try {
      return new URL(url, docUrl).toString();
    } catch {
      throw new FlowError(`${url.slice(0, 80)} is not a URL`);
    }
  }
}

interface Doc {
  /** Public URL the document came from (relative URLs in it resolve against it). */
  url: string;
  /** The document as received. */
  text: string;
  verbs: XmlNode[];
}

class FlowError extends Error {}

function methodOf(attrs: Record<string, string>): 'GET' | 'POST' {
  return attrs.method?.toUpperCase() === 'GET' ? 'GET' : 'POST';
}

/** Places one simulated call and follows it to its end. Never throws: failures come back as `ended: 'error'`. */
export function simulateCall(opts: SimulateCallOptions): Promise<SimulatedCall> {
  return new CallFlow(opts).run();
}
