/**
 * Relay: the call layer's face to the server (implements VoiceApp).
 *
 * - `/voice/incoming` answers TwiML whose <Parameter> `token` admits the
 *   call's stream (admission-token.ts: an HMAC over CallSid and expiry under
 *   ADMISSION_SECRET, valid for PREWARM_TTL_MS), and starts opening the model
 *   session right away (pre-warm, keyed by CallSid) so the first turn does
 *   not pay the connect.
 * - The stream's `start` must present a genuine, unexpired token for its
 *   CallSid (second guard besides the signature). Any instance that shares
 *   the secret can check it, so the stream may land on any instance. The
 *   first stream to present it claims the call (single use); any later
 *   stream, here or elsewhere, is closed 1008. A claim is first made in this
 *   process (a local set, always consulted first, each entry kept as long as
 *   a token for the call can be valid: PREWARM_TTL_MS + 1 s), then in the
 *   call store (across instances). So a CallSid claimed here is refused here
 *   again whatever the store says or whether it answers. If the store cannot
 *   answer, the stream is admitted on the token and the local claim (logged,
 *   counted by `admittedWithoutStore`): a database outage must not stop
 *   calls, and replays stay single use per instance (across instances the
 *   window is the outage).
 * - A stream landing on the instance that answered the webhook takes over
 *   the pre-warmed session (a pre-warm `hit`); one landing elsewhere opens
 *   its own model session once its claim is won (a `miss`). Until the claim
 *   is decided, the call's record writes are held, so a refused stream
 *   leaves no trace in the record of the call it tried to take.
 * - A pre-warm left unused at PREWARM_TTL_MS (or at shutdown) is closed; the
 *   call's record is closed out (`no_stream`, `shutdown`) only if this
 *   instance can claim the call itself, i.e. no stream took it anywhere.
 * - It owns the set of live calls (`liveCalls()`: the console's live view), the concurrent-call cap and health.
 *   Health is 503 only while draining: the model's reachability (and the
 *   store's) is reported in the body, never in the status, since every
 *   instance shares it (an outage would otherwise take all of them out of
 *   rotation, and nothing would place the connect that shows it is over).
 * - Admission: at most MAX_PENDING_CALLS pre-warmed sessions wait for their
 *   stream (over it: the busy TwiML); a stream that has not sent a valid
 *   `start` within START_TIMEOUT_MS is closed with 1008 and frees its slot.
 *   Every stream closed 1008 at admission is counted by reason
 *   (CallMetrics.streamStartRefused: token, expired, replayed, timeout).
 * - Drain (`drain(timeoutMs, graceMs)`): health says `draining` (503) at
 *   once. For `graceMs` (DRAIN_GRACE_MS, while the balancer's health check
 *   notices) new calls are still taken as usual, and their streams let in.
 *   After the grace, new call webhooks are answered 503; new streams are
 *   closed 1001 (going away), except while a call answered earlier still has
 *   its stream to open. Calls in progress go on until the deadline
 *   (`timeoutMs` from the drain's start; it also ends the grace), then each
 *   hears the goodbye prompt and ends `shutdown`. Resolves once the grace is
 *   over and no call, no pre-warmed session and no close-out is left.
 *   `shutdown()` ends everything at once (the grace too); `settled()` then
 *   resolves once the records it closed out are handed to the store.
 * - Agents: each call is served by one agent (call/agent.ts): the outbound
 *   token's (IncomingOptions.agent; a name not loaded here → busy) or the
 *   default. Its model session is opened with the agent's instructions (plus
 *   the call's context, "About this call:" then `key: value` lines; values
 *   are caller data and never logged), voice, and tools (its own and the
 *   control tools). The agent's name and the stream's leg are signed into
 *   the stream token (`agent` parameter beside it), so an instance the stream
 *   lands on serves it with the same agent; the context and the caller's
 *   number (for tools) stay with the instance that answered the webhook (a
 *   stream landing elsewhere is served without them). Which agent and leg a
 *   stream serves is known at its `start`: the session is handed them then
 *   (CallDeps' `agent`, `leg` and `from` read after admission; also in the
 *   CallAdmission).
 * - Legs: a call's first stream is leg 1, its claim key the CallSid; each
 *   TwiML stream names `<Connect action>` with `?leg=N`. When the stream of
 *   leg N closes, Twilio POSTs the action (`connectEnded`): each leg's action
 *   is claimed once across instances (`action:<CallSid>/<N>`: a replay is
 *   refused 403), then the call's transfer decision (TransferStore, saved by
 *   the session before it closed the stream) is looked up: one of leg N, of
 *   an agent loaded here, naming a target in that agent's policy → `<Dial>`
 *   (event `transfer_dialled`); anything else (no decision, an unknown call,
 *   a target not in the file, a store error) → `<Hangup/>`. Nothing is ever
 *   dialled but a target of the agent file. The dial's end (`dialEnded`,
 *   claimed once as `dial:<CallSid>/<N>`): reached → `<Hangup/>` (event
 *   `transfer_connected`); else event `transfer_failed` and the policy's
 *   on-failure: a message then `<Hangup/>`, or back to the agent on leg N+1
 *   (up to MAX_LEG): a pre-warmed session as for a new call, the conversation
 *   so far (`history`) replayed into it, a greeting telling the caller the
 *   person could not be reached, and a stream token for that leg (its claim
 *   key `<CallSid>/<N+1>`).
 */
import type { Logger } from '../log.js';
import { ToolRegistry } from '../tools/registry.js';
import {
  buildDialTwiml, buildHangupTwiml, buildRejectTwiml, buildSayHangupTwiml, buildStreamTwiml, buildWhisperTwiml,
} from '../twilio/twiml.js';
import { sharedClock, type PumpScheduler } from './clock.js';
import type { ConnectActionWebhook, DialActionWebhook, StatusCallback, VoiceWebhook } from '../twilio/webhooks.js';
import type {
  CallUrls, HealthReport, IncomingOptions, IncomingResult, ModelHealth, StoreHealth, StreamHandler, StreamInfo, StreamRefusal,
  TransferStore, TwilioSocket, VoiceApp,
} from './ports.js';
import { MAX_LEG, mintAdmissionToken, verifyAdmissionToken } from './admission-token.js';
import { nullRecorder, type CallRecorder, type TransferDecision } from '../records.js';
import { LatencyHistogram } from './stats.js';
import { noMetrics, type AudioTranscoder, type CallAdmission, type CallMetrics, type LiveCall, type OpenRecording } from './ports.js';
import { CallSession, type CallOptions } from './session.js';
import type { ConversationItem, ModelProvider, ModelSession } from './voice-model.js';
import { NO_RECORDING, controlToolSpecs, type CallAgent } from './agent.js';

/**
 * What the relay reads (main.ts fills it in from the configuration): its own
 * limits, and each call's settings (CallOptions) but the tool and DTMF
 * timings, which the relay sets.
 */
export interface RelaySettings extends Omit<CallOptions, 'toolTimeoutMs' | 'toolFillerMs' | 'dtmfGapMs' | 'model' | 'greeting' | 'silenceTimeoutMs' | 'maxCallMs'> {
  /** Calls in progress plus pre-warmed ones, at most (MAX_CONCURRENT_CALLS). */
  maxConcurrentCalls: number;
  /** Pre-warmed model sessions waiting for their stream, at most (MAX_PENDING_CALLS). */
  maxPendingCalls: number;
  /** How long a pre-warm and its stream token live (PREWARM_TTL_MS). */
  prewarmTtlMs: number;
  /** A stream must send a valid `start` within this (START_TIMEOUT_MS). */
  startTimeoutMs: number;
  /** HMAC key of the stream tokens (ADMISSION_SECRET). */
  admissionSecret: Buffer;
  /** Twilio signatures are checked (TWILIO_AUTH_TOKEN is set): for health. */
  signed: boolean;
  /** The model serving calls (for the record and its cost). */
  model: string;
  /**
   * Used only without `RelayDeps.agents` (one agent built from them, named
   * `default`, with no transfer, no hang-up tool, no reprompt or warning): the
   * configuration from before agent files.
   */
  instructions?: string;
  voice?: string;
  greeting?: string;
  silenceTimeoutMs?: number;
  maxCallMs?: number;
}

/** What a call's stream is served with, per agent, besides CallOptions (older sessions read them from their options). */
interface AgentCallOptions {
  greeting: string;
  silenceTimeoutMs: number;
  maxCallMs: number;
}

/** Instructions for the first response of a call back from a transfer that failed. */
export const DIAL_FAILED_GREETING = 'The person could not be reached. Tell the caller briefly and offer to help with anything else.';

export interface RelayDeps {
  settings: RelaySettings;
  log: Logger;
  provider: ModelProvider;
  /** The agents calls can be served by, by name; absent: one agent `default` from the settings and `tools`. */
  agents?: Map<string, CallAgent>;
  /** The name in `agents` of the agent serving calls that name none. */
  defaultAgent?: string;
  /** Used only without `agents`: the default agent's tools. */
  tools?: ToolRegistry;
  /** Where transfer decisions are kept (the call store; shared by instances); default: this process's memory. */
  transfers?: TransferStore;
  /** What the caller heard and said so far on this call (its record's transcript), for a failed transfer's return to the agent; default none. */
  history?(callSid: string): Promise<ConversationItem[]>;
  openTranscoder(): AudioTranscoder;
  /** Opens a call's recording (when its agent records); absent = calls are not recorded here (no RECORDING_KEY). */
  openRecording?: OpenRecording;
  /** A recorder for a new call (the durable record), told which agent serves it; default keeps nothing. */
  recorderFor?(call: VoiceWebhook, info: { agent: string }): CallRecorder;
  /** A recorder for a call whose webhook another instance answered (its stream landed here); default keeps nothing. */
  recorderForStream?(callSid: string): CallRecorder;
  /**
   * Claim the call for one stream (CallStore.claim with this instance's id):
   * true once per call across every instance sharing the store. Default: a
   * claim in this process's memory (one instance, no shared store).
   */
  claim?(callSid: string): boolean | Promise<boolean>;
  /** A stream took over a pre-warmed session (`hit`) or had to open its own (`miss`). */
  prewarm?(result: 'hit' | 'miss'): void;
  /** A stream was admitted on its token and the local claim alone: the store could not answer the claim. */
  admittedWithoutStore?(): void;
  /** The call store's state, for health. */
  storeHealth?(): StoreHealth;
  /** This instance's name, for health. */
  instanceId?: string;
  /** Status callbacks, signature-checked and parsed by the edge. */
  onStatus?(callback: StatusCallback): void;
  modelHealth?(): ModelHealth;
  metrics?: CallMetrics;
  clock?: PumpScheduler;
  version?: string;
  callOptions?: Partial<CallOptions>;
}

/** After the drain's deadline, how long the goodbye may take before a call is ended regardless (ms). */
const GOODBYE_GRACE_MS = 15_000;

/** Why a stream whose token is genuine is refused: the call was taken. */
const TAKEN = 'call already taken by another stream';

/** Local claims kept at most (oldest dropped first): far above any real call rate × PREWARM_TTL_MS. */
const MAX_LOCAL_CLAIMS = 100_000;
/** A local claim outlives the last token for its call by this (ms): clocks of instances differ a little. */
const LOCAL_CLAIM_MARGIN_MS = 1000;

interface Pending {
  recorder: CallRecorder;
  model: Promise<ModelSession>;
  abort: AbortController;
  expiry: NodeJS.Timeout;
  /** The caller's number (for tools), when the webhook was answered here. */
  from: string | undefined;
  /** Which stream of the call this pre-warm waits for (1 = the first). */
  leg: number;
}

/** The claim key of a call's stream of leg `leg`: the CallSid for the first, `<CallSid>/<leg>` after. */
const streamKey = (callSid: string, leg: number) => (leg === 1 ? callSid : `${callSid}/${leg}`);

/** `url` with `leg` in its query (Twilio signs the URL with its query, and posts back to it as given). */
function withLeg(url: string, leg: number): string {
  const u = new URL(url);
  u.searchParams.set('leg', String(leg));
  return u.toString();
}

/** A call's context as lines for the model's instructions; '' for none. Values are caller data: never logged. */
function contextBlock(context: Record<string, string> | undefined): string {
  const entries = Object.entries(context ?? {});
  if (entries.length === 0) return '';
  return `\n\nAbout this call:\n${entries.map(([k, v]) => `${k}: ${v.replace(/[\r\n]+/g, ' ')}`).join('\n')}`;
}

/** A transfer store in this process's memory: one instance, no shared store. Decisions are kept for an hour. */
function memoryTransfers(): TransferStore {
  const kept = new Map<string, { decision: TransferDecision; until: number }>();
  return {
    saveTransfer(callSid, decision) {
      const now = Date.now();
      for (const [sid, e] of kept) if (e.until <= now) kept.delete(sid);
      kept.set(callSid, { decision, until: now + 3_600_000 });
      return Promise.resolve();
    },
    transfer(callSid) {
      const e = kept.get(callSid);
      return Promise.resolve(e && e.until > Date.now() ? e.decision : undefined);
    },
  };
}

/** The agent of the configuration before agent files: the settings' instructions, voice and greeting, the given tools, no call control. */
function legacyAgent(s: RelaySettings, tools: ToolRegistry | undefined): CallAgent {
  return {
    name: 'default',
    instructions: s.instructions ?? '',
    greeting: s.greeting ?? '',
    voice: s.voice ?? 'alloy',
    tools: tools ?? new ToolRegistry(),
    policies: {
      transfer: undefined,
      endCall: { enabled: false, goodbyeWaitMs: 0 },
      silence: { repromptAfterMs: undefined, reprompt: '', maxReprompts: 0, timeoutMs: s.silenceTimeoutMs ?? 300_000 },
      maxDuration: { maxCallMs: s.maxCallMs ?? 3_600_000, warnBeforeMs: undefined, warning: '' },
      recording: NO_RECORDING,
    },
  };
}

export class Relay implements VoiceApp {
  readonly calls = new Set<CallSession>();
  /** Relay-added latency per audio message over every ended call, each direction (ms). */
  readonly relayIn = new LatencyHistogram();
  readonly relayOut = new LatencyHistogram();
  readonly turnLatency = new LatencyHistogram();
  /**
   * Model session connects, dial to answer (ready or failed; not those given up on by the call), ms:
   * how long the model side took to take a session. A slow one costs the caller the audio held past
   * MAX_EARLY_MS (src/call/inbound.ts); the calls-per-core bench reads it to tell the model's delay from the relay's.
   */
  readonly modelConnect = new LatencyHistogram();
  callsEnded = 0;
  private readonly pending = new Map<string, Pending>();
  private readonly startedAt = Date.now();
  private readonly options: Omit<CallOptions, keyof AgentCallOptions>;
  private readonly agents: Map<string, CallAgent>;
  private readonly defaultAgent: CallAgent;
  private readonly transfers: TransferStore;
  private readonly clock: PumpScheduler;
  private readonly metrics: CallMetrics;
  private closing = false;
  private draining = false;
  /** Draining, but still taking new calls (DRAIN_GRACE_MS). */
  private inGrace = false;
  private drained: Promise<void> | undefined;
  private onIdle: (() => void) | undefined;
  private readonly drainTimers: NodeJS.Timeout[] = [];
  /** Streams still awaiting `start`, and when they will be closed for it. */
  private readonly startTimers = new Map<CallSession, NodeJS.Timeout>();
  /** Close-outs of unused pre-warms waiting for their claim to be decided. */
  private readonly closeOuts = new Set<Promise<void>>();
  /** Calls claimed in this process → until when (epoch ms) the claim is kept; in claim order, so oldest first. */
  private readonly claimedHere = new Map<string, number>();

  constructor(private readonly deps: RelayDeps) {
    const c = deps.settings;
    this.options = {
      audioMode: c.audioMode,
      model: c.model,
      playoutLeadMs: c.playoutLeadMs,
      playoutLeadMaxMs: c.playoutLeadMaxMs,
      outboundChunkMs: c.outboundChunkMs,
      inboundBatchMs: c.inboundBatchMs,
      vadSilenceMs: c.vadSilenceMs,
      toolTimeoutMs: 10_000,
      toolFillerMs: 2_500,
      dtmfGapMs: 1_500,
      responseRetryMs: c.responseRetryMs,
      prompts: c.prompts,
      ...deps.callOptions,
    };
    this.clock = deps.clock ?? sharedClock;
    this.metrics = deps.metrics ?? noMetrics;
    this.agents = deps.agents ?? new Map([['default', legacyAgent(c, deps.tools)]]);
    const def = this.agents.get(deps.agents ? (deps.defaultAgent ?? '') : 'default');
    if (!def) throw new Error(`relay: the default agent ${JSON.stringify(deps.defaultAgent)} is not among the agents given`);
    this.defaultAgent = def;
    this.transfers = deps.transfers ?? memoryTransfers();
  }

  /** Relay-added latency of every call so far: ended calls merged, plus the live ones as they stand. */
  relayLatency(): { inbound: LatencyHistogram; outbound: LatencyHistogram } {
    const inbound = new LatencyHistogram();
    const outbound = new LatencyHistogram();
    inbound.merge(this.relayIn);
    outbound.merge(this.relayOut);
    for (const c of this.calls) {
      inbound.merge(c.relayIn);
      outbound.merge(c.relayOut);
    }
    return { inbound, outbound };
  }

  get activeCalls(): number {
    return this.calls.size;
  }

  /** Calls answered whose stream has not started yet (each holds a pre-warmed model session). */
  get pendingCalls(): number {
    return this.pending.size;
  }

  /** The webhook was parsed by the edge (twilio/webhooks.ts): `call.callSid` is a well-formed CA… SID. */
  incoming(call: VoiceWebhook, urls: CallUrls, opts?: IncomingOptions): IncomingResult {
    const callSid = call.callSid;
    const agent = opts?.agent === undefined ? this.defaultAgent : this.agents.get(opts.agent);
    if (!agent) {
      this.deps.log.warn({ callSid, agent: opts?.agent }, 'the call names an agent not loaded here: rejecting it');
      return { ok: true, twiml: buildRejectTwiml() };
    }
    // Draining (past the grace): 503, so Twilio tries the number's fallback URL (another instance behind the balancer).
    if (this.closing || (this.draining && !this.inGrace)) return { ok: false, status: 503, message: 'draining: not taking new calls' };
    if (this.calls.size + this.pending.size >= this.deps.settings.maxConcurrentCalls) {
      this.deps.log.warn({ callSid, active: this.calls.size }, 'at capacity: rejecting call');
      return { ok: true, twiml: buildRejectTwiml() };
    }
    if (this.pending.size >= this.deps.settings.maxPendingCalls && !this.pending.has(callSid)) {
      this.deps.log.warn({ callSid, pending: this.pending.size }, 'too many calls waiting for their stream: rejecting call');
      return { ok: true, twiml: buildRejectTwiml() };
    }
    const old = this.pending.get(callSid);
    if (old) this.dropPending(callSid, old); // Twilio retried the webhook: start over (same record)
    // The record starts at the webhook: a call whose stream never arrives is recorded too.
    const recorder = this.deps.recorderFor?.(call, { agent: agent.name }) ?? nullRecorder;
    return { ok: true, twiml: this.prewarm(callSid, 1, agent, opts?.context, recorder, call.from, urls) };
  }

  /**
   * Pre-warm the model session of leg `leg` of a call (the agent's, with the
   * call's context; for a later leg the conversation so far replayed), keep
   * it for PREWARM_TTL_MS, and return the stream TwiML with its token and
   * `<Connect action ?leg=N>`.
   */
  private prewarm(callSid: string, leg: number, agent: CallAgent, context: Record<string, string> | undefined, recorder: CallRecorder, from: string | undefined, urls: CallUrls): string {
    const key = streamKey(callSid, leg);
    const ttlMs = this.deps.settings.prewarmTtlMs;
    const agentParam = agent === this.defaultAgent ? '' : agent.name;
    const token = mintAdmissionToken(this.deps.settings.admissionSecret, callSid, Date.now() + ttlMs, { leg, agent: agentParam });
    const abort = new AbortController();
    const model = this.connectModel(agent, abort, context, leg > 1 ? callSid : undefined);
    const expiry = setTimeout(() => {
      const p = this.pending.get(key);
      if (p) {
        this.deps.log.info({ callSid, leg }, 'no media stream arrived here for this call: closing its pre-warmed session');
        this.dropPending(key, p, 'no_stream');
      }
    }, ttlMs);
    this.pending.set(key, { recorder, model, abort, expiry, from, leg });
    const parameters: Record<string, string> = agentParam === '' ? { token } : { token, agent: agentParam };
    return buildStreamTwiml({ streamUrl: urls.streamUrl, parameters, actionUrl: withLeg(urls.actionUrl, leg) });
  }

  /** The agent a stream's parameters name ('' or none = the default), when it is loaded here. */
  private agentNamed(name: string | undefined): CallAgent | undefined {
    return name === undefined || name === '' ? this.defaultAgent : this.agents.get(name);
  }

  /** A webhook about a call, recorded in its record as an event (fire-and-forget). */
  private callEvent(callSid: string, type: string, detail: string): void {
    try {
      // The webhook does not know when the stream started: the event is stamped at 0 ms.
      this.deps.recorderForStream?.(callSid).event({ atMs: 0, type, detail });
    } catch (err) {
      this.deps.log.warn({ callSid, type, err: err instanceof Error ? err.message : String(err) }, 'call event not recorded');
    }
  }

  /**
   * Claim a webhook of a call once across instances (`key`): true the first
   * time. A store that cannot answer leaves the claim made here (logged).
   */
  private async claimOnce(key: string, callSid: string): Promise<boolean> {
    try {
      return await this.claim(key);
    } catch (err) {
      this.deps.log.warn({ callSid, err: err instanceof Error ? err.message : String(err) }, 'call store cannot claim the webhook: answering it on the claim made here');
      this.deps.admittedWithoutStore?.();
      return true;
    }
  }

  /** The call's transfer decision for leg `leg`, with its agent and target as loaded here; undefined when there is none or it does not hold. */
  private async decisionFor(callSid: string, leg: number): Promise<{ decision: TransferDecision; agent: CallAgent } | undefined> {
    let decision: TransferDecision | undefined;
    try {
      decision = await this.transfers.transfer(callSid);
    } catch (err) {
      this.deps.log.error({ callSid, err: err instanceof Error ? err.message : String(err) }, 'transfer store cannot answer: hanging up');
      return undefined;
    }
    if (!decision || decision.leg !== leg) return undefined;
    const agent = this.agents.get(decision.agent);
    if (!agent) {
      this.deps.log.warn({ callSid, agent: decision.agent }, 'transfer decision names an agent not loaded here: hanging up');
      return undefined;
    }
    return { decision, agent };
  }

  async connectEnded(call: ConnectActionWebhook, urls: CallUrls, leg: number): Promise<IncomingResult> {
    const callSid = call.callSid;
    try {
      if (!(await this.claimOnce(`action:${callSid}/${leg}`, callSid))) {
        this.deps.log.warn({ callSid, leg }, 'connect action for this leg already answered: refused');
        return { ok: false, status: 403, message: 'already answered' };
      }
      const found = await this.decisionFor(callSid, leg);
      if (!found) return { ok: true, twiml: buildHangupTwiml() };
      const { decision, agent } = found;
      const policy = agent.policies.transfer;
      const target = policy?.targets.find((t) => t.name === decision.target);
      if (!policy || !target) {
        this.deps.log.warn({ callSid, agent: agent.name, target: decision.target }, 'transfer decision names a target not in the agent file: hanging up, nothing dialled');
        this.callEvent(callSid, 'transfer_failed', `target ${decision.target} is not in agent ${agent.name}`);
        return { ok: true, twiml: buildHangupTwiml() };
      }
      const twiml = buildDialTwiml({ target, dialActionUrl: withLeg(urls.dialActionUrl, leg), whisperUrl: urls.whisperUrl, agent: agent.name, timeoutS: policy.dialTimeoutS });
      this.deps.log.info({ callSid, leg, agent: agent.name, target: target.name }, 'dialling the transfer target');
      this.callEvent(callSid, 'transfer_dialled', `target=${target.name} by=${decision.requestedBy} leg=${leg}`);
      return { ok: true, twiml };
    } catch (err) {
      this.deps.log.error({ callSid, leg, err: err instanceof Error ? err.message : String(err) }, 'connect action failed: hanging up');
      return { ok: true, twiml: buildHangupTwiml() };
    }
  }

  async dialEnded(call: DialActionWebhook, urls: CallUrls, leg: number): Promise<IncomingResult> {
    const callSid = call.callSid;
    try {
      if (!(await this.claimOnce(`dial:${callSid}/${leg}`, callSid))) {
        this.deps.log.warn({ callSid, leg }, 'dial action for this leg already answered: refused');
        return { ok: false, status: 403, message: 'already answered' };
      }
      if (call.reached) {
        this.callEvent(callSid, 'transfer_connected', `leg=${leg} duration_s=${call.dialCallDurationS ?? ''}`);
        return { ok: true, twiml: buildHangupTwiml() };
      }
      this.callEvent(callSid, 'transfer_failed', `${call.dialCallStatus} leg=${leg}`);
      const found = await this.decisionFor(callSid, leg);
      const policy = found?.agent.policies.transfer;
      if (!found || !policy) return { ok: true, twiml: buildHangupTwiml() };
      this.deps.log.info({ callSid, leg, status: call.dialCallStatus, onFailure: policy.onFailure.action }, 'transfer not reached');
      if (policy.onFailure.action === 'message') return { ok: true, twiml: buildSayHangupTwiml(policy.onFailure.message) };
      if (leg >= MAX_LEG) return { ok: true, twiml: buildHangupTwiml() };
      // Back to the agent: the same admission rules as a new call (draining, capacity).
      if (this.closing || (this.draining && !this.inGrace)) return { ok: true, twiml: buildHangupTwiml() };
      if (this.calls.size + this.pending.size >= this.deps.settings.maxConcurrentCalls || this.pending.size >= this.deps.settings.maxPendingCalls) {
        this.deps.log.warn({ callSid, active: this.calls.size, pending: this.pending.size }, 'at capacity: the call cannot go back to the agent, hanging up');
        return { ok: true, twiml: buildHangupTwiml() };
      }
      const recorder = this.deps.recorderForStream?.(callSid) ?? nullRecorder;
      return { ok: true, twiml: this.prewarm(callSid, leg + 1, found.agent, undefined, recorder, call.from, urls) };
    } catch (err) {
      this.deps.log.error({ callSid, leg, err: err instanceof Error ? err.message : String(err) }, 'dial action failed: hanging up');
      return { ok: true, twiml: buildHangupTwiml() };
    }
  }

  whisper(target: string, agentName: string): IncomingResult {
    const t = this.agents.get(agentName)?.policies.transfer?.targets.find((x) => x.name === target);
    return { ok: true, twiml: buildWhisperTwiml(t?.whisper ?? '') };
  }

  status(callback: StatusCallback): void {
    this.deps.onStatus?.(callback);
  }

  openStream(socket: TwilioSocket, _info: StreamInfo): StreamHandler | StreamRefusal | null {
    // While draining (past the grace), only a call answered earlier may still bring its stream.
    if (this.closing || (this.draining && !this.inGrace && this.pending.size === 0)) return { refused: 'draining' };
    if (this.calls.size >= this.deps.settings.maxConcurrentCalls) return null;
    // Which agent and leg the stream serves is known at its `start` (the token): set then, read by the session after admission.
    const late: { agent: CallAgent; leg: number; from: string | undefined } = { agent: this.defaultAgent, leg: 1, from: undefined };
    const options: CallOptions & AgentCallOptions = { ...this.options, ...agentOptions(this.defaultAgent), ...this.deps.callOptions };
    const callDeps = {
      socket,
      options,
      log: this.deps.log,
      get agent(): CallAgent {
        return late.agent;
      },
      get tools(): ToolRegistry {
        return late.agent.tools;
      },
      get leg(): number {
        return late.leg;
      },
      get from(): string | undefined {
        return late.from;
      },
      transfers: this.transfers,
      clock: this.clock,
      metrics: this.metrics,
      admit: (callSid: string, params: Record<string, string>) => {
        const a = this.admit(callSid, params);
        if (!('refused' in a) && a.agent) {
          late.agent = a.agent;
          late.leg = a.leg ?? 1;
          late.from = a.from;
          Object.assign(options, agentOptions(a.agent), this.deps.callOptions);
        }
        return a;
      },
      openTranscoder: this.deps.openTranscoder,
      openRecording: this.deps.openRecording,
      onEnded: (s: CallSession) => this.onCallEnded(s),
    };
    const session: CallSession = new CallSession(callDeps);
    this.calls.add(session);
    const startTimer = setTimeout(() => {
      this.startTimers.delete(session);
      if (session.state !== 'awaiting_start') return;
      this.metrics.streamStartRefused('timeout');
      this.deps.log.warn({ startTimeoutMs: this.deps.settings.startTimeoutMs }, 'stream sent no valid start in time: closing it');
      socket.close(1008, 'no start in time'); // onClose ends the session and frees its slot
      const after: string = session.state; // a socket port that did not report the close synchronously
      if (after !== 'ended') session.end('stream_closed', false);
    }, this.deps.settings.startTimeoutMs);
    this.startTimers.set(session, startTimer);
    return session;
  }

  /**
   * The calls in progress here (stream started, not ended), for the console's
   * live view: a few fields read from each session, nothing on the audio path.
   * `from` is known only when this instance answered the call's webhook.
   */
  liveCalls(): LiveCall[] {
    const live: LiveCall[] = [];
    for (const s of this.calls) {
      if (s.state !== 'connecting' && s.state !== 'live') continue;
      live.push({
        callSid: s.callSid,
        from: s.from || null,
        agent: s.agentName,
        startedAt: s.startedAt.toISOString(),
        durationMs: s.durationMs,
        speaking: s.speaking,
        turns: s.turnCount,
        lastTurnMs: s.lastTurnLatencyMs,
        model: s.modelState,
        audioMode: s.audioMode,
      });
    }
    return live;
  }

  health(): HealthReport {
    const model = this.deps.modelHealth?.() ?? { reachable: null, lastOkAt: null, lastError: null };
    return {
      status: this.draining || this.closing ? 'draining' : 'ok',
      version: this.deps.version ?? '0.0.0',
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      activeCalls: this.calls.size,
      model,
      signed: this.deps.settings.signed,
      ...(this.deps.instanceId !== undefined ? { instanceId: this.deps.instanceId } : {}),
      pendingCalls: this.pending.size,
      ...(this.deps.storeHealth ? { store: this.deps.storeHealth() } : {}),
    };
  }

  /** Resolves once every record closed out by a drop of pre-warms (shutdown, drain, expiry) has been handed to the store. */
  async settled(): Promise<void> {
    while (this.closeOuts.size > 0) await Promise.allSettled([...this.closeOuts]);
  }

  /**
   * Stop taking calls (after `graceMs`) and let the live ones finish: see the
   * file comment. Calling it again returns the same promise (the first
   * deadline and grace hold).
   */
  drain(timeoutMs: number, graceMs = 0): Promise<void> {
    this.drained ??= new Promise<void>((resolve) => {
      this.draining = true;
      this.inGrace = graceMs > 0 && timeoutMs > 0 && !this.closing;
      this.deps.log.info(
        { activeCalls: this.calls.size, pending: this.pending.size, timeoutMs, graceMs: this.inGrace ? graceMs : 0 },
        this.inGrace ? 'draining: health says so; new calls are still taken during the grace, calls in progress go on' : 'draining: calls in progress go on, no new ones',
      );
      this.onIdle = () => {
        for (const t of this.drainTimers) clearTimeout(t);
        this.onIdle = undefined;
        resolve();
      };
      if (this.inGrace) this.drainTimers.push(setTimeout(() => this.endGrace(), Math.min(graceMs, timeoutMs)));
      this.drainTimers.push(setTimeout(() => this.drainDeadline(), timeoutMs));
      this.checkIdle();
    });
    return this.drained;
  }

  /** The drain's grace is over (or cut short): no new calls from now on. */
  private endGrace(): void {
    if (!this.inGrace) return;
    this.inGrace = false;
    this.deps.log.info({ activeCalls: this.calls.size, pending: this.pending.size }, 'drain grace over: no new calls');
    this.checkIdle();
  }

  private drainDeadline(): void {
    this.endGrace();
    this.deps.log.info({ activeCalls: this.calls.size }, 'drain deadline: saying goodbye to the calls still in progress');
    for (const [sid, p] of this.pending) this.dropPending(sid, p, 'shutdown');
    for (const call of [...this.calls]) call.goodbye();
    // A goodbye ends its call after the prompt; anything still there after the grace is ended outright.
    this.drainTimers.push(setTimeout(() => {
      for (const call of [...this.calls]) call.end('shutdown');
    }, GOODBYE_GRACE_MS));
    this.checkIdle();
  }

  private checkIdle(): void {
    if (this.onIdle && !this.inGrace && this.calls.size === 0 && this.pending.size === 0 && this.closeOuts.size === 0) this.onIdle();
  }

  /** Stop taking calls; end the live ones; close pre-warmed sessions. */
  shutdown(): void {
    this.closing = true;
    this.inGrace = false;
    for (const [sid, p] of this.pending) this.dropPending(sid, p, 'shutdown');
    for (const call of [...this.calls]) call.end('shutdown');
    this.checkIdle();
  }

  private onCallEnded(s: CallSession): void {
    const startTimer = this.startTimers.get(s);
    if (startTimer) {
      clearTimeout(startTimer);
      this.startTimers.delete(s);
    }
    if (!this.calls.delete(s)) return;
    this.callsEnded++;
    this.relayIn.merge(s.relayIn);
    this.relayOut.merge(s.relayOut);
    this.turnLatency.merge(s.turnLatency);
    this.checkIdle();
  }

  /**
   * Open a model session for the agent: its instructions (and the call's
   * context), voice, own tools and control tools. With `replayFor` (a later
   * leg), the call's conversation so far is replayed into it before it is
   * handed over; history that cannot be read leaves the session without it (logged).
   */
  private connectModel(agent: CallAgent, abort: AbortController, context?: Record<string, string>, replayFor?: string): Promise<ModelSession> {
    const options = {
      instructions: agent.instructions + contextBlock(context),
      voice: agent.voice,
      tools: [...agent.tools.specs(), ...controlToolSpecs(agent.policies)],
    };
    const history = this.deps.history;
    // A later leg starts with the call's conversation so far: the provider takes it at connect.
    const model =
      replayFor === undefined || !history
        ? this.deps.provider.connect(options, abort.signal)
        : history(replayFor)
            .catch((err: unknown) => {
              this.deps.log.warn({ callSid: replayFor, err: err instanceof Error ? err.message : String(err) }, 'call history unavailable: the agent goes on without it');
              return [] as ConversationItem[];
            })
            .then((items) => this.deps.provider.connect(items.length > 0 ? { ...options, history: items } : options, abort.signal));
    const t0 = performance.now();
    const answered = (ok: boolean): void => {
      if (abort.signal.aborted) return;
      const ms = performance.now() - t0;
      this.modelConnect.record(ms);
      this.metrics.modelConnect(ms, ok);
    };
    // Also observes a failure: `start` awaits it; an unused session must not raise.
    model.then(
      () => answered(true),
      () => answered(false),
    );
    return model;
  }

  /**
   * Claim the call here, in this process: false when it was claimed here
   * before (within PREWARM_TTL_MS + margin, when a token for it can still be
   * valid). Expired entries are dropped oldest first on every claim.
   */
  private claimLocally(callSid: string): boolean {
    const now = Date.now();
    for (const [sid, until] of this.claimedHere) {
      if (until > now && this.claimedHere.size < MAX_LOCAL_CLAIMS) break;
      if (until > now) this.deps.log.warn({ callSid: sid, kept: MAX_LOCAL_CLAIMS }, 'too many local claims: forgetting the oldest before its tokens expire');
      this.claimedHere.delete(sid);
    }
    const until = this.claimedHere.get(callSid);
    if (until !== undefined && until > now) return false;
    this.claimedHere.delete(callSid); // re-inserted at the end: the map stays in expiry order
    this.claimedHere.set(callSid, now + this.deps.settings.prewarmTtlMs + LOCAL_CLAIM_MARGIN_MS);
    return true;
  }

  /**
   * The claim, as a value or a promise: the local claim first (a call claimed
   * here is refused here whatever the store says), then the store's. A throw
   * of the store's claim becomes a rejection (the store cannot answer).
   */
  private claim(callSid: string): boolean | Promise<boolean> {
    if (!this.claimLocally(callSid)) return false;
    if (!this.deps.claim) return true;
    try {
      return this.deps.claim(callSid);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * A stream's `start`: the token must be genuine and unexpired for this
   * CallSid; then the call is claimed. A pre-warm here is handed over (hit),
   * else a model session is opened once the claim is won (miss).
   */
  private admit(callSid: string, params: Record<string, string>): (CallAdmission & { from?: string }) | { refused: string } {
    const check = verifyAdmissionToken(this.deps.settings.admissionSecret, callSid, params.token, Date.now(), params.agent ?? '');
    if (!check.ok) {
      this.metrics.streamStartRefused(check.error === 'expired' ? 'expired' : 'token');
      return { refused: `token ${check.error}` };
    }
    const named = this.agentNamed(params.agent);
    if (!named) {
      this.deps.log.warn({ callSid, agent: params.agent }, 'stream names an agent not loaded here: refused');
      this.metrics.streamStartRefused('token');
      return { refused: 'unknown agent' };
    }
    const leg = check.leg;
    // Back from a transfer that failed: the agent first tells the caller.
    const agent: CallAgent = leg > 1 ? { ...named, greeting: DIAL_FAILED_GREETING } : named;
    const key = streamKey(callSid, leg);
    const p = this.pending.get(key);
    if (p) {
      clearTimeout(p.expiry);
      this.pending.delete(key);
    }
    const release = () => {
      if (!p) return;
      p.abort.abort();
      p.model.then((m) => m.close(), () => {});
      this.checkIdle();
    };
    const won = (): { model: Promise<ModelSession>; recorder: CallRecorder } => {
      this.deps.prewarm?.(p ? 'hit' : 'miss');
      return p
        ? { model: p.model, recorder: p.recorder }
        : { model: this.connectModel(named, new AbortController(), undefined, leg > 1 ? callSid : undefined), recorder: this.deps.recorderForStream?.(callSid) ?? nullRecorder };
    };
    const who = { agent, leg, ...(p?.from !== undefined ? { from: p.from } : {}) };
    const claimed = this.claim(key);
    if (typeof claimed === 'boolean') {
      if (!claimed) {
        release();
        this.metrics.streamStartRefused('replayed');
        return { refused: TAKEN };
      }
      return { ...won(), ...who };
    }
    // The claim needs a round trip: audio is held and record writes wait until it is decided.
    const gate = gatedRecorder();
    let model: Promise<ModelSession> | undefined;
    const decided = claimed.then(
      (ok) => (ok ? null : TAKEN),
      (err: unknown) => {
        this.deps.log.warn(
          { callSid, err: err instanceof Error ? err.message : String(err) },
          'call store cannot claim the call: admitting the stream on its token alone (and the claim made here)',
        );
        this.deps.admittedWithoutStore?.();
        return null;
      },
    ).then((refused) => {
      if (refused !== null) {
        release();
        gate.discard();
        this.metrics.streamStartRefused('replayed');
        return refused;
      }
      const w = won();
      model = w.model;
      gate.open(w.recorder);
      return null;
    });
    // Used by the session only after `claimed` resolved null, by when `model` is set.
    const session = decided.then(() => model ?? Promise.reject(new Error(TAKEN)));
    session.catch(() => {}); // a refused stream never asks for it
    return { model: session, recorder: gate.recorder, claimed: decided, ...who };
  }

  /**
   * Forget a call that never streamed here. With `reason`, its record is
   * closed out, but only when this instance can claim the call itself: if a
   * stream took it (here or on another instance), the record is that
   * stream's, and is left alone. A later leg's pre-warm (back from a failed
   * transfer) never closes the record out: the first leg's stream ended it
   * (`transferred`), and the caller may have hung up during the dial.
   */
  private dropPending(callSid: string, p: Pending, reason?: string): void {
    clearTimeout(p.expiry);
    this.pending.delete(callSid);
    p.abort.abort();
    p.model.then((m) => m.close(), () => {});
    if (reason && p.leg === 1) {
      const closeOut = (mine: boolean) => {
        if (!mine) {
          this.deps.log.info({ callSid }, 'unused pre-warm closed; the call was taken by a stream elsewhere, its record is left to it');
          return;
        }
        const none = { p50Ms: NaN, p99Ms: NaN };
        p.recorder.ended({ endedAt: new Date(), reason, relay: { inbound: none, outbound: none }, protocolErrors: 0 });
      };
      const claimed = this.claim(callSid);
      if (typeof claimed === 'boolean') closeOut(claimed);
      else {
        const done: Promise<void> = claimed
          .then(closeOut, (err: unknown) => {
            this.deps.log.warn(
              { callSid, reason, err: err instanceof Error ? err.message : String(err) },
              'call store cannot tell whether a stream took this call: its record is left as it is',
            );
          })
          .finally(() => {
            this.closeOuts.delete(done);
            this.checkIdle();
          });
        this.closeOuts.add(done);
      }
    }
    this.checkIdle();
  }
}

/** The per-agent values older sessions read from their options. */
function agentOptions(agent: CallAgent): AgentCallOptions {
  return { greeting: agent.greeting, silenceTimeoutMs: agent.policies.silence.timeoutMs, maxCallMs: agent.policies.maxDuration.maxCallMs };
}

/**
 * A CallRecorder that holds every write until it is told where they go
 * (`open`: replayed in order, then passed straight through) or that they go
 * nowhere (`discard`).
 */
function gatedRecorder(): { recorder: CallRecorder; open(target: CallRecorder): void; discard(): void } {
  let target: CallRecorder | null | undefined; // undefined: held; null: discarded
  const held: ((r: CallRecorder) => void)[] = [];
  const put = (write: (r: CallRecorder) => void) => {
    if (target) write(target);
    else if (target === undefined) held.push(write);
  };
  return {
    recorder: {
      started: (i) => put((r) => r.started(i)),
      transcript: (l) => put((r) => r.transcript(l)),
      toolCall: (t) => put((r) => r.toolCall(t)),
      turnLatency: (t) => put((r) => r.turnLatency(t)),
      usage: (u) => put((r) => r.usage(u)),
      event: (e) => put((r) => r.event(e)),
      ended: (i) => put((r) => r.ended(i)),
      recording: (i) => put((r) => r.recording(i)),
    },
    open(r) {
      target = r;
      for (const write of held.splice(0)) write(r);
    },
    discard() {
      target = null;
      held.length = 0;
    },
  };
}
