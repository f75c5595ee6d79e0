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
 * - It owns the set of live calls, the concurrent-call cap and health.
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
 */
import type { Logger } from '../log.js';
import type { ToolRegistry } from '../tools/registry.js';
import { buildRejectTwiml, buildStreamTwiml } from '../twilio/twiml.js';
import { sharedClock, type PumpScheduler } from './clock.js';
import type { StatusCallback, VoiceWebhook } from '../twilio/webhooks.js';
import type { CallUrls, HealthReport, IncomingOptions, IncomingResult, ModelHealth, StoreHealth, StreamHandler, StreamInfo, StreamRefusal, TwilioSocket, VoiceApp } from './ports.js';
import { mintAdmissionToken, verifyAdmissionToken } from './admission-token.js';
import { nullRecorder, type CallRecorder } from '../records.js';
import { LatencyHistogram } from './stats.js';
import { noMetrics, type AudioTranscoder, type CallAdmission, type CallMetrics } from './ports.js';
import { CallSession, type CallOptions } from './session.js';
import type { ModelProvider, ModelSession } from './voice-model.js';

/**
 * What the relay reads (main.ts fills it in from the configuration): its own
 * limits, and each call's settings (CallOptions) but the tool and DTMF
 * timings, which the relay sets.
 */
export interface RelaySettings extends Omit<CallOptions, 'toolTimeoutMs' | 'toolFillerMs' | 'dtmfGapMs' | 'model'> {
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
  /** The model session's instructions and voice. */
  instructions: string;
  voice: string;
  /** The model serving calls (for the record and its cost). */
  model: string;
  /** Interim (h/control: these left CallOptions for the CallAgent): the default agent's silence timeout, maximum duration and greeting. */
  silenceTimeoutMs: number;
  maxCallMs: number;
  greeting: string;
}

export interface RelayDeps {
  settings: RelaySettings;
  log: Logger;
  provider: ModelProvider;
  tools: ToolRegistry;
  openTranscoder(): AudioTranscoder;
  /** A recorder for a new call (the durable record); default keeps nothing. */
  recorderFor?(call: VoiceWebhook): CallRecorder;
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
}

export class Relay implements VoiceApp {
  readonly calls = new Set<CallSession>();
  /** Relay-added latency per audio message over every ended call, each direction (ms). */
  readonly relayIn = new LatencyHistogram();
  readonly relayOut = new LatencyHistogram();
  readonly turnLatency = new LatencyHistogram();
  callsEnded = 0;
  private readonly pending = new Map<string, Pending>();
  private readonly startedAt = Date.now();
  private readonly options: CallOptions;
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
  incoming(call: VoiceWebhook, urls: CallUrls, _opts?: IncomingOptions): IncomingResult {
    const callSid = call.callSid;
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
    const ttlMs = this.deps.settings.prewarmTtlMs;
    const token = mintAdmissionToken(this.deps.settings.admissionSecret, callSid, Date.now() + ttlMs);
    const abort = new AbortController();
    const model = this.connectModel(abort);
    // The record starts at the webhook: a call whose stream never arrives is recorded too.
    const recorder = this.deps.recorderFor?.(call) ?? nullRecorder;
    const expiry = setTimeout(() => {
      const p = this.pending.get(callSid);
      if (p) {
        this.deps.log.info({ callSid }, 'no media stream arrived here for this call: closing its pre-warmed session');
        this.dropPending(callSid, p, 'no_stream');
      }
    }, ttlMs);
    this.pending.set(callSid, { recorder, model, abort, expiry });
    const twiml = buildStreamTwiml({ streamUrl: urls.streamUrl, parameters: { token } });
    return { ok: true, twiml };
  }

  status(callback: StatusCallback): void {
    this.deps.onStatus?.(callback);
  }

  openStream(socket: TwilioSocket, _info: StreamInfo): StreamHandler | StreamRefusal | null {
    // While draining (past the grace), only a call answered earlier may still bring its stream.
    if (this.closing || (this.draining && !this.inGrace && this.pending.size === 0)) return { refused: 'draining' };
    if (this.calls.size >= this.deps.settings.maxConcurrentCalls) return null;
    const session: CallSession = new CallSession({
      socket,
      options: this.options,
      log: this.deps.log,
      // Interim (h/control): the settings' agent, with no call control; relay.ts's own helper passes the per-call agent.
      agent: {
        name: 'default',
        instructions: this.deps.settings.instructions,
        greeting: this.deps.settings.greeting,
        voice: this.deps.settings.voice,
        tools: this.deps.tools,
        policies: {
          transfer: undefined,
          endCall: { enabled: false, goodbyeWaitMs: 0 },
          silence: { repromptAfterMs: undefined, reprompt: '', maxReprompts: 0, timeoutMs: this.deps.settings.silenceTimeoutMs },
          maxDuration: { maxCallMs: this.deps.settings.maxCallMs, warnBeforeMs: undefined, warning: '' },
        },
      },
      transfers: { saveTransfer: () => Promise.reject(new Error('no transfer store')), transfer: () => Promise.resolve(undefined) },
      clock: this.clock,
      metrics: this.metrics,
      admit: (callSid, params) => this.admit(callSid, params),
      openTranscoder: this.deps.openTranscoder,
      onEnded: (s) => this.onCallEnded(s),
    });
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

  private connectModel(abort: AbortController): Promise<ModelSession> {
    const model = this.deps.provider.connect(
      { instructions: this.deps.settings.instructions, voice: this.deps.settings.voice, tools: this.deps.tools.specs() },
      abort.signal,
    );
    model.catch(() => {}); // observed on `start`; an unused session must not raise
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
  private admit(callSid: string, params: Record<string, string>): CallAdmission | { refused: string } {
    const check = verifyAdmissionToken(this.deps.settings.admissionSecret, callSid, params.token, Date.now());
    if (!check.ok) {
      this.metrics.streamStartRefused(check.error === 'expired' ? 'expired' : 'token');
      return { refused: `token ${check.error}` };
    }
    const p = this.pending.get(callSid);
    if (p) {
      clearTimeout(p.expiry);
      this.pending.delete(callSid);
    }
    const release = () => {
      if (!p) return;
      p.abort.abort();
      p.model.then((m) => m.close(), () => {});
      this.checkIdle();
    };
    const won = (): { model: Promise<ModelSession>; recorder: CallRecorder } => {
      this.deps.prewarm?.(p ? 'hit' : 'miss');
      return p ? { model: p.model, recorder: p.recorder } : { model: this.connectModel(new AbortController()), recorder: this.deps.recorderForStream?.(callSid) ?? nullRecorder };
    };
    const claimed = this.claim(callSid);
    if (typeof claimed === 'boolean') {
      if (!claimed) {
        release();
        this.metrics.streamStartRefused('replayed');
        return { refused: TAKEN };
      }
      return won();
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
    return { model: session, recorder: gate.recorder, claimed: decided };
  }

  /**
   * Forget a call that never streamed here. With `reason`, its record is
   * closed out, but only when this instance can claim the call itself: if a
   * stream took it (here or on another instance), the record is that
   * stream's, and is left alone.
   */
  private dropPending(callSid: string, p: Pending, reason?: string): void {
    clearTimeout(p.expiry);
    this.pending.delete(callSid);
    p.abort.abort();
    p.model.then((m) => m.close(), () => {});
    if (reason) {
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
