/**
 * Outbound calls: the OutboundApp the edge serves (POST /calls, POST
 * /voice/amd, the sealed `o` token of an outbound call's /voice/incoming).
 *
 * Contract:
 * - A call goes out only for an E.164 number that the agent's outbound policy
 *   allows: `allow` (prefixes; empty = any) and then `deny` (prefixes; deny
 *   wins). A refused number is never sent to Twilio (`number_not_allowed`).
 * - Pacing: each call first reserves a slot from the shared pacer (one per
 *   1000 / OUTBOUND_CPS ms across every instance sharing the store) and waits
 *   for it; the REST request is made only then. A pacer that cannot answer
 *   places nothing (`pacer_unavailable`).
 * - The call's webhook is `${publicUrl}/voice/incoming?o=<token>`: the token
 *   (./outbound-token.ts) seals the agent and the context, so any instance
 *   answers it. Status callbacks go to /voice/status (initiated, ringing,
 *   answered, completed); asynchronous answering-machine detection
 *   (DetectMessageEnd) to /voice/amd?o=<the same token>.
 * - AMD: the result is kept in the call's record (event `answered_by`). A
 *   person (or unknown) → nothing changes. A machine whose greeting ended →
 *   the agent's voicemail policy: `message` replaces the call's TwiML with
 *   `<Say>message</Say><Hangup/>`, `hangup` ends it. A machine still greeting
 *   (machine_start) with the hangup policy, or a fax, → ended at once.
 *   `amd` never rejects: a failed update is logged and kept as an event.
 * - Numbers and context are personal data: logged only in structured fields.
 */
import twilio from 'twilio';
import type { Logger } from '../log.js';
import type { OutboundPolicy } from '../agent/types.js';
import { E164, createPlaceCallHandler, type PlaceOutcome, type PlaceRequest } from '../admin/place-call.js';
import type { CallEvent } from '../records.js';
import type { CallUpdate, TwilioRest } from '../twilio/rest.js';
import type { AmdCallback } from '../twilio/webhooks.js';
import { OUTBOUND_TOKEN_TTL_MS, contextProblems, openCallToken, outboundTokenKey, sealCallToken } from './outbound-token.js';
import type { IncomingOptions, OutboundApp, OutboundPacer } from './ports.js';

/** What outbound calling needs of an agent: its name and its outbound policy. */
export interface OutboundAgent {
  name: string;
  outbound: OutboundPolicy;
}

/** Where a placed call is recorded (the call store: `placed` creates its row, as `answered` does for an inbound call). */
export interface OutboundRecords {
  placed(callSid: string, info: { from: string; to: string; agent: string }): void;
  appendEvent(callSid: string, e: CallEvent): void;
}

export interface OutboundCallsDeps {
  rest: TwilioRest;
  agents: ReadonlyMap<string, OutboundAgent>;
  /** The agent of a request that names none (a key of `agents`). */
  defaultAgent: string;
  /** PUBLIC_URL: where Twilio reaches the webhooks (https://…, no trailing slash needed). */
  publicUrl: string;
  /** OUTBOUND_FROM: the caller ID of agents that set none (E.164). */
  from: string | undefined;
  pacer: OutboundPacer;
  records: OutboundRecords;
  /** ADMISSION_SECRET's bytes (the same on every instance). */
  secret: Buffer;
  /** ADMIN_TOKEN: POST /calls is 404 without it. */
  adminToken: string | undefined;
  /** OUTBOUND_CPS: calls per second across all instances (default 1). */
  cps?: number;
  /** Unix ms. */
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  log: Logger;
}

/** Why the caller ID or the settings cannot place calls: every problem (empty = fine). */
export function outboundProblems(d: Pick<OutboundCallsDeps, 'agents' | 'defaultAgent' | 'publicUrl' | 'from' | 'cps'>): string[] {
  const problems: string[] = [];
  if (!/^https?:\/\/[^/]/.test(d.publicUrl)) problems.push('PUBLIC_URL: required to place calls (where Twilio sends the call\'s webhooks)');
  if (d.from !== undefined && !E164.test(d.from)) problems.push('OUTBOUND_FROM: expected an E.164 number');
  if (!d.agents.has(d.defaultAgent)) problems.push(`default agent '${d.defaultAgent}' is not loaded`);
  for (const a of d.agents.values()) {
    const from = a.outbound.callerId ?? d.from;
    if (from === undefined) problems.push(`agent '${a.name}': no caller ID (set outbound.callerId in its file, or OUTBOUND_FROM)`);
    else if (!E164.test(from)) problems.push(`agent '${a.name}': outbound.callerId is not an E.164 number`);
  }
  const cps = d.cps ?? 1;
  if (!(cps > 0 && Number.isFinite(cps))) problems.push('OUTBOUND_CPS: expected a number above 0');
  return problems;
}

/** Whether `policy` lets its agent call `to`: an allow prefix matches (or there are none) and no deny prefix does. */
export function numberAllowed(policy: Pick<OutboundPolicy, 'allow' | 'deny'>, to: string): boolean {
  if (policy.allow.length > 0 && !policy.allow.some((p) => to.startsWith(p))) return false;
  return !policy.deny.some((p) => to.startsWith(p));
}

/** TwiML that leaves `message` on a machine and hangs up. */
export function voicemailTwiml(message: string): string {
  const r = new twilio.twiml.VoiceResponse();
  r.say(message);
  r.hangup();
  return r.toString();
}

/**
 * One-process pacing (no shared store): the next free slot after the last one
 * reserved. Instances that share a store use the store's pacer instead.
 */
export function memoryPacer(now: () => number = Date.now): OutboundPacer {
  let next = -Infinity;
  return {
    reserveOutboundSlot(intervalMs) {
      const at = Math.max(now(), next);
      next = at + intervalMs;
      return Promise.resolve(at);
    },
  };
}

/** How long a placed call's agent is remembered here for its AMD result, ms (the token's life). */
const AMD_MEMORY_MS = OUTBOUND_TOKEN_TTL_MS;

export class OutboundCalls implements OutboundApp {
  readonly placeCall: OutboundApp['placeCall'];
  private readonly key: Buffer;
  private readonly intervalMs: number;
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  /** Calls placed by this instance: their agent, for the AMD result (which names only the call). */
  private readonly placedHere = new Map<string, { agent: string; atMs: number }>();

  constructor(private readonly d: OutboundCallsDeps) {
    const problems = outboundProblems(d);
    if (problems.length) throw new Error(`outbound calls:\n  ${problems.join('\n  ')}`);
    this.key = outboundTokenKey(d.secret);
    this.intervalMs = 1000 / (d.cps ?? 1);
    this.now = d.now ?? Date.now;
    this.sleep = d.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
    this.placeCall = createPlaceCallHandler(d.adminToken, (req) => this.place(req));
  }

  /** Place one call. Resolves to its CallSid or why it was not placed; never rejects. */
  async place(req: PlaceRequest): Promise<PlaceOutcome> {
    const problems: string[] = [];
    if (!E164.test(req.to)) problems.push('to: expected an E.164 number (+ and 7-15 digits)');
    if (req.context) problems.push(...contextProblems(req.context));
    const agentName = req.agent ?? this.d.defaultAgent;
    const agent = this.d.agents.get(agentName);
    if (!agent) problems.push(`agent: no agent named '${agentName.slice(0, 40)}' is loaded`);
    if (problems.length || !agent) return { ok: false, error: 'invalid', problems };
    if (!numberAllowed(agent.outbound, req.to)) {
      this.d.log.warn({ agent: agent.name, to: req.to }, 'outbound call refused: number not allowed for the agent');
      return { ok: false, error: 'number_not_allowed' };
    }

    let slotAtMs: number;
    try {
      slotAtMs = await this.d.pacer.reserveOutboundSlot(this.intervalMs);
    } catch (err) {
      this.d.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'outbound call not placed: the pacer did not answer');
      return { ok: false, error: 'pacer_unavailable' };
    }
    const waitMs = slotAtMs - this.now();
    if (waitMs > 0) await this.sleep(waitMs);

    const from = (agent.outbound.callerId ?? this.d.from)!;
    const base = this.d.publicUrl.replace(/\/+$/, '');
    const token = sealCallToken(this.key, { agent: agent.name, ...(req.context ? { context: req.context } : {}) }, this.now() + OUTBOUND_TOKEN_TTL_MS);
    // Both voicemail policies need detection; a machine's greeting end is where a message starts.
    const created = await this.d.rest.createCall({
      to: req.to,
      from,
      url: `${base}/voice/incoming?o=${token}`,
      statusCallback: `${base}/voice/status`,
      machineDetection: 'DetectMessageEnd',
      asyncAmd: true,
      // The token again: the AMD result names only the call, and any instance may receive it.
      asyncAmdStatusCallback: `${base}/voice/amd?o=${token}`,
    });
    if (!created.ok) {
      this.d.log.warn({ agent: agent.name, to: req.to, status: created.error.status, code: created.error.code, retryable: created.error.retryable }, 'outbound call not placed: Twilio refused');
      return { ok: false, error: 'twilio', rest: created.error };
    }
    const callSid = created.value.sid;
    this.remember(callSid, agent.name);
    try {
      this.d.records.placed(callSid, { from, to: req.to, agent: agent.name });
    } catch (err) {
      // The call is placed either way: its status callbacks still reach the record.
      this.d.log.error({ callSid, err: err instanceof Error ? err.message : String(err) }, 'outbound call placed but not recorded');
    }
    this.d.log.info({ callSid, agent: agent.name, to: req.to }, 'outbound call placed');
    return { ok: true, callSid, status: created.value.status };
  }

  /**
   * `opts`: the call's opened `o` token when the edge passes it (the AMD URL
   * carries it: `openCallToken(query o)`), so the right agent's policy applies
   * on every instance; without it, the agent of a call placed here, else the
   * default agent.
   */
  async amd(cb: AmdCallback, opts?: IncomingOptions | null): Promise<void> {
    try {
      this.event(cb.callSid, 'answered_by', `${cb.answeredBy}${cb.detectionMs !== undefined ? ` after ${cb.detectionMs} ms` : ''}`);
      const policy = this.policyOf(cb.callSid, opts?.agent).voicemail;
      let update: CallUpdate | undefined;
      if (cb.answeredBy === 'fax') update = { status: 'completed' };
      else if (cb.messageEnded) update = policy.action === 'message' ? { twiml: voicemailTwiml(policy.message) } : { status: 'completed' };
      else if (cb.answeredBy === 'machine_start' && policy.action === 'hangup') update = { status: 'completed' };
      if (!update) return;
      const what = 'twiml' in update ? 'voicemail_message' : 'voicemail_hangup';
      const r = await this.d.rest.updateCall(cb.callSid, update);
      if (r.ok) {
        this.event(cb.callSid, what);
        this.d.log.info({ callSid: cb.callSid, answeredBy: cb.answeredBy, action: what }, 'answering machine: voicemail policy applied');
      } else {
        this.event(cb.callSid, `${what}_failed`, r.error.message);
        this.d.log.warn({ callSid: cb.callSid, action: what, status: r.error.status, code: r.error.code, retryable: r.error.retryable }, 'answering machine: call update failed');
      }
    } catch (err) {
      this.d.log.error({ callSid: cb.callSid, err: err instanceof Error ? err.message : String(err) }, 'answering machine result not handled');
    }
  }

  openCallToken(token: string): IncomingOptions | null {
    return openCallToken(this.key, token, this.now());
  }

  /**
   * The policy for a call's AMD result: the agent its token names, else its
   * agent's when it was placed here, else the default agent's (the AMD
   * callback itself names only the call, and another instance may have placed it).
   */
  private policyOf(callSid: string, fromToken: string | undefined): OutboundPolicy {
    const name = fromToken ?? this.placedHere.get(callSid)?.agent;
    const agent = (name !== undefined ? this.d.agents.get(name) : undefined) ?? this.d.agents.get(this.d.defaultAgent)!;
    return agent.outbound;
  }

  private remember(callSid: string, agent: string): void {
    const now = this.now();
    for (const [sid, p] of this.placedHere) {
      if (now - p.atMs <= AMD_MEMORY_MS) break; // insertion order = age order
      this.placedHere.delete(sid);
    }
    this.placedHere.set(callSid, { agent, atMs: now });
  }

  /** An event in the call's record. Before the stream starts the call has no clock: `atMs` 0. */
  private event(callSid: string, type: string, detail?: string): void {
    this.d.records.appendEvent(callSid, { atMs: 0, type, ...(detail !== undefined ? { detail } : {}) });
  }
}
