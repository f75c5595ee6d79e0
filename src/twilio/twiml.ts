/**
 * TwiML for an answered call: `<Response><Connect action="…"><Stream url="wss://…">`
 * with `<Parameter>`s; and for what follows the stream: `<Dial>` to a
 * transfer target (with its whisper URL), `<Hangup/>`, a spoken message then
 * `<Hangup/>`, the whisper itself (`<Say>`). Built with the twilio package's
 * VoiceResponse (which handles XML escaping). Pure: no I/O.
 *
 * Contract: `buildStreamTwiml` either returns the TwiML document or throws a
 * TwimlError listing every problem. Rules enforced (Twilio's, PROTOCOLS.md):
 * - the stream URL is an absolute `wss://` URL without a query string
 *   (Twilio drops query strings; per-call data goes in `<Parameter>`s);
 * - each parameter has a non-empty name, and name + value together are
 *   under 500 characters (stricter than "value < 500", so safe under either
 *   reading of Twilio's limit);
 * - the status callback, if given, is an absolute http(s) URL.
 */
import twilio from 'twilio';
import type { TransferTarget } from '../call/agent.js';

/** Twilio's per-`<Parameter>` limit: name and value together must stay below this. */
export const MAX_PARAMETER_CHARS = 500;

export interface StreamTwimlOptions {
  /** wss:// URL of the media stream endpoint, no query string. */
  streamUrl: string;
  /** Arrive in the `start` message as `customParameters`. */
  parameters: Record<string, string>;
  /** Stream status callback (stream-started|stream-stopped|stream-error), POSTed by Twilio. */
  statusCallbackUrl?: string;
  /** `<Connect action>`: POSTed by Twilio once the stream closed (it asks what comes next); absent = the call ends with the stream. */
  actionUrl?: string;
}

export class TwimlError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid stream TwiML: ${problems.join('; ')}`);
    this.name = 'TwimlError';
  }
}

function urlProblems(label: string, raw: string, protocols: string[]): string[] {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return [`${label} is not an absolute URL`];
  }
  const problems: string[] = [];
  if (!protocols.includes(u.protocol)) problems.push(`${label} must use ${protocols.map((p) => `${p}//`).join(' or ')}`);
  return problems;
}

/** Every problem with these options (empty = valid). */
export function streamTwimlProblems(opts: StreamTwimlOptions): string[] {
  const problems = urlProblems('stream URL', opts.streamUrl, ['wss:']);
  if (opts.streamUrl.includes('?')) problems.push('stream URL must not carry a query string (use parameters)');
  if (opts.statusCallbackUrl !== undefined) {
    problems.push(...urlProblems('status callback URL', opts.statusCallbackUrl, ['https:', 'http:']));
  }
  if (opts.actionUrl !== undefined) problems.push(...urlProblems('action URL', opts.actionUrl, ['https:', 'http:']));
  for (const [name, value] of Object.entries(opts.parameters)) {
    if (name.length === 0) problems.push('parameter name must not be empty');
    if (typeof value !== 'string') problems.push(`parameter ${name.slice(0, 40)}: value must be a string`);
    else if (name.length + value.length >= MAX_PARAMETER_CHARS) {
      problems.push(
        `parameter ${name.slice(0, 40)}: name + value is ${name.length + value.length} chars (limit < ${MAX_PARAMETER_CHARS})`,
      );
    }
  }
  return problems;
}

/** The TwiML document answering a call into a bidirectional media stream. Throws TwimlError on invalid options. */
export function buildStreamTwiml(opts: StreamTwimlOptions): string {
  const problems = streamTwimlProblems(opts);
  if (problems.length > 0) throw new TwimlError(problems);
  const response = new twilio.twiml.VoiceResponse();
  const stream = response.connect(opts.actionUrl !== undefined ? { action: opts.actionUrl, method: 'POST' } : {}).stream({
    url: opts.streamUrl,
    ...(opts.statusCallbackUrl !== undefined ? { statusCallback: opts.statusCallbackUrl, statusCallbackMethod: 'POST' } : {}),
  });
  for (const [name, value] of Object.entries(opts.parameters)) stream.parameter({ name, value });
  return response.toString();
}

/** The TwiML document refusing a call with a busy signal (at capacity, shutting down): Twilio never bills it as answered. */
export function buildRejectTwiml(): string {
  const response = new twilio.twiml.VoiceResponse();
  response.reject({ reason: 'busy' });
  return response.toString();
}

export interface DialTwimlOptions {
  /** Who to dial: its number or SIP URI, and whether a whisper is said to whoever answers. */
  target: TransferTarget;
  /** `<Dial action>`: POSTed by Twilio when the dial ends (DialCallStatus). */
  dialActionUrl: string;
  /** POST /voice/whisper; `?target=&agent=` is added. Used only when the target has a whisper. */
  whisperUrl: string;
  /** The agent whose target this is (the whisper route looks the target up in it). */
  agent: string;
  /** Seconds of ringing before no-answer. */
  timeoutS: number;
  /** Caller ID shown to the target; absent = Twilio's default (the caller's number). */
  callerId?: string;
}

/** `url` with `params` added to its query (keeps any query it has). */
function withQuery(url: string, params: Record<string, string>): string {
  const u = new URL(url);
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  return u.toString();
}

/**
 * `<Dial action method=POST timeout>` to the target's number (`<Number>`) or
 * SIP URI (`<Sip>`), with `url` = the whisper route for this target when it
 * has a whisper. Throws TwimlError when a URL is not absolute http(s) or the
 * timeout is not a whole number of seconds 1..600.
 */
export function buildDialTwiml(opts: DialTwimlOptions): string {
  const problems = [...urlProblems('dial action URL', opts.dialActionUrl, ['https:', 'http:'])];
  if (opts.target.whisper !== undefined) problems.push(...urlProblems('whisper URL', opts.whisperUrl, ['https:', 'http:']));
  if (!Number.isInteger(opts.timeoutS) || opts.timeoutS < 1 || opts.timeoutS > 600) problems.push('dial timeout must be 1..600 whole seconds');
  if (problems.length > 0) throw new TwimlError(problems);
  const response = new twilio.twiml.VoiceResponse();
  const dial = response.dial({
    action: opts.dialActionUrl,
    method: 'POST',
    timeout: opts.timeoutS,
    ...(opts.callerId !== undefined ? { callerId: opts.callerId } : {}),
  });
  const url = opts.target.whisper !== undefined ? withQuery(opts.whisperUrl, { target: opts.target.name, agent: opts.agent }) : undefined;
  const attrs = url !== undefined ? { url, method: 'POST' } : {};
  const to = opts.target.to;
  if ('number' in to) dial.number(attrs, to.number);
  else dial.sip(attrs, to.sip);
  return response.toString();
}

/** `<Hangup/>`: the call ends here. */
export function buildHangupTwiml(): string {
  const response = new twilio.twiml.VoiceResponse();
  response.hangup();
  return response.toString();
}

/** `<Say>text</Say><Hangup/>`: a message to the caller, then the call ends. */
export function buildSayHangupTwiml(text: string): string {
  const response = new twilio.twiml.VoiceResponse();
  response.say(text);
  response.hangup();
  return response.toString();
}

/** The whisper said to the person who answers a transfer, before the caller is connected; '' = an empty `<Response/>` (connect at once). */
export function buildWhisperTwiml(text: string): string {
  const response = new twilio.twiml.VoiceResponse();
  if (text !== '') response.say(text);
  return response.toString();
}

/** The placeholders a STREAM_URL_TEMPLATE may use. */
const TEMPLATE_FIELDS = ['instance', 'publicUrl'] as const;

/**
 * The stream URL for this instance from a STREAM_URL_TEMPLATE: `{instance}`
 * becomes the instance id, `{publicUrl}` the wss:// origin (PUBLIC_URL with
 * its scheme turned ws). The result is what goes in `<Stream url>` and what
 * Twilio signs on the upgrade.
 */
export function streamUrlFromTemplate(template: string, values: { instance: string; publicUrl: string }): string {
  return template.replaceAll('{instance}', values.instance).replaceAll('{publicUrl}', values.publicUrl);
}

/** Every problem with a template (empty = usable): unknown placeholders, or a result that is not a wss:// URL without a query. */
export function streamUrlTemplateProblems(template: string): string[] {
  const problems: string[] = [];
  for (const m of template.matchAll(/\{([^}]*)\}/g)) {
    if (!(TEMPLATE_FIELDS as readonly string[]).includes(m[1]!)) problems.push(`unknown placeholder {${m[1]}} (use {instance}, {publicUrl})`);
  }
  if (problems.length > 0) return problems;
  const sample = streamUrlFromTemplate(template, { instance: 'instance-1', publicUrl: 'wss://calls.example.com' });
  for (const p of urlProblems('the stream URL', sample, ['wss:'])) problems.push(`${p} (e.g. wss://{instance}.calls.example.com/voice/stream)`);
  if (sample.includes('?')) problems.push('the stream URL must not carry a query string');
  return problems;
}
