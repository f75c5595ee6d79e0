/**
 * Relay: the call layer's face to the server (implements VoiceApp).
 *
 * - `/voice/incoming` mints a per-call token, answers TwiML that carries it
 *   as a <Parameter>, and starts opening the model session right away
 *   (pre-warm, keyed by CallSid) so the first turn does not pay the connect.
 * - The stream's `start` must present that token for that CallSid (second
 *   guard besides the signature); it then takes over the pre-warmed session.
 * - It owns the set of live calls, the concurrent-call cap and health.
 * - Admission: at most MAX_PENDING_CALLS pre-warmed sessions wait for their
 *   stream (over it: the busy TwiML), each closed at PREWARM_TTL_MS; a stream
 *   that has not sent a valid `start` within START_TIMEOUT_MS is closed with
 *   1008 and frees its slot.
 * - Drain (`drain(timeoutMs)`): health says `draining` (503) at once; new
 *   call webhooks are answered 503; new streams are closed 1001 (going away),
 *   except while a call answered before the drain still has its stream to
 *   open; calls in progress go on until the deadline, then each hears the
 *   goodbye prompt and ends `shutdown`. Resolves once no call and no
 *   pre-warmed session is left. `shutdown()` ends everything at once.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { ToolRegistry } from '../tools/registry.js';
import { buildRejectTwiml, buildStreamTwiml } from '../twilio/twiml.js';
import { sharedClock, type PumpScheduler } from './clock.js';
import type { StatusCallback, VoiceWebhook } from '../twilio/webhooks.js';
import type { HealthReport, IncomingResult, ModelHealth, StreamHandler, StreamInfo, StreamRefusal, TwilioSocket, VoiceApp } from './ports.js';
import { nullRecorder, type CallRecorder } from '../records.js';
import { LatencyHistogram } from './stats.js';
import { CallSession, noMetrics, type AudioTranscoder, type CallAdmission, type CallMetrics, type CallOptions } from './session.js';
import type { ModelProvider, ModelSession } from './voice-model.js';

export interface RelayDeps {
  config: Config;
  log: Logger;
  provider: ModelProvider;
  tools: ToolRegistry;
  openTranscoder(): AudioTranscoder;
  /** A recorder for a new call (the durable record); default keeps nothing. */
  recorderFor?(call: VoiceWebhook): CallRecorder;
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

interface Pending {
  token: Buffer;
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
  private drained: Promise<void> | undefined;
  private onIdle: (() => void) | undefined;
  private readonly drainTimers: NodeJS.Timeout[] = [];
  /** Streams still awaiting `start`, and when they will be closed for it. */
  private readonly startTimers = new Map<CallSession, NodeJS.Timeout>();

  constructor(private readonly deps: RelayDeps) {
    const c = deps.config;
    this.options = {
      audioMode: c.audioMode,
      model: c.openai.model,
      playoutLeadMs: c.playoutLeadMs,
      outboundChunkMs: c.outboundChunkMs,
      inboundBatchMs: c.inboundBatchMs,
      vadSilenceMs: c.openai.vad.silenceDurationMs,
      silenceTimeoutMs: c.silenceTimeoutMs,
      maxCallMs: c.maxCallMs,
      greeting: c.openai.greeting,
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
  incoming(call: VoiceWebhook, streamUrl: string): IncomingResult {
    const callSid = call.callSid;
    // Draining: 503, so Twilio tries the number's fallback URL (another instance behind the balancer).
    if (this.closing || this.draining) return { ok: false, status: 503, message: 'draining: not taking new calls' };
    if (this.calls.size + this.pending.size >= this.deps.config.maxConcurrentCalls) {
      this.deps.log.warn({ callSid, active: this.calls.size }, 'at capacity: rejecting call');
      return { ok: true, twiml: buildRejectTwiml() };
    }
    if (this.pending.size >= this.deps.config.maxPendingCalls && !this.pending.has(callSid)) {
      this.deps.log.warn({ callSid, pending: this.pending.size }, 'too many calls waiting for their stream: rejecting call');
      return { ok: true, twiml: buildRejectTwiml() };
    }
    const old = this.pending.get(callSid);
    if (old) this.dropPending(callSid, old); // Twilio retried the webhook: start over (same record)
    const token = randomBytes(18);
    const abort = new AbortController();
    const model = this.deps.provider.connect(
      { instructions: this.deps.config.openai.instructions, voice: this.deps.config.openai.voice, tools: this.deps.tools.specs() },
      abort.signal,
    );
    model.catch(() => {}); // observed on `start`; an unused pre-warm must not raise
    // The record starts at the webhook: a call whose stream never arrives is recorded too.
    const recorder = this.deps.recorderFor?.(call) ?? nullRecorder;
    const expiry = setTimeout(() => {
      const p = this.pending.get(callSid);
      if (p) {
        this.deps.log.warn({ callSid }, 'no media stream arrived for this call: closing its pre-warmed session');
        this.dropPending(callSid, p, 'no_stream');
      }
    }, this.deps.config.prewarmTtlMs);
    this.pending.set(callSid, { token, recorder, model, abort, expiry });
    const twiml = buildStreamTwiml({ streamUrl, parameters: { token: token.toString('base64url') } });
    return { ok: true, twiml };
  }

  status(callback: StatusCallback): void {
    this.deps.onStatus?.(callback);
  }

  openStream(socket: TwilioSocket, _info: StreamInfo): StreamHandler | StreamRefusal | null {
    // While draining, only a call answered before the drain may still bring its stream.
    if (this.closing || (this.draining && this.pending.size === 0)) return { refused: 'draining' };
    if (this.calls.size >= this.deps.config.maxConcurrentCalls) return null;
    const session: CallSession = new CallSession({
      socket,
      options: this.options,
      log: this.deps.log,
      tools: this.deps.tools,
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
      this.deps.log.warn({ startTimeoutMs: this.deps.config.startTimeoutMs }, 'stream sent no valid start in time: closing it');
      socket.close(1008, 'no start in time'); // onClose ends the session and frees its slot
      const after: string = session.state; // a socket port that did not report the close synchronously
      if (after !== 'ended') session.end('stream_closed', false);
    }, this.deps.config.startTimeoutMs);
    this.startTimers.set(session, startTimer);
    return session;
  }

  health(): HealthReport {
    const model = this.deps.modelHealth?.() ?? { reachable: null, lastOkAt: null, lastError: null };
    return {
      status: this.draining || this.closing ? 'draining' : model.reachable === false ? 'degraded' : 'ok',
      version: this.deps.version ?? '0.0.0',
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      activeCalls: this.calls.size,
      model,
      signed: this.deps.config.twilioAuthToken !== undefined,
    };
  }

  /**
   * Stop taking calls and let the live ones finish: see the file comment.
   * Calling it again returns the same promise (the first deadline holds).
   */
  drain(timeoutMs: number): Promise<void> {
    this.drained ??= new Promise<void>((resolve) => {
      this.draining = true;
      this.deps.log.info({ activeCalls: this.calls.size, pending: this.pending.size, timeoutMs }, 'draining: calls in progress go on, no new ones');
      this.onIdle = () => {
        for (const t of this.drainTimers) clearTimeout(t);
        this.onIdle = undefined;
        resolve();
      };
      this.drainTimers.push(setTimeout(() => this.drainDeadline(), timeoutMs));
      this.checkIdle();
    });
    return this.drained;
  }

  private drainDeadline(): void {
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
    if (this.onIdle && this.calls.size === 0 && this.pending.size === 0) this.onIdle();
  }

  /** Stop taking calls; end the live ones; close pre-warmed sessions. */
  shutdown(): void {
    this.closing = true;
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

  private admit(callSid: string, params: Record<string, string>): CallAdmission | { refused: string } {
    const p = this.pending.get(callSid);
    const presented = Buffer.from(params.token ?? '', 'base64url');
    if (!p || presented.length !== p.token.length || !timingSafeEqual(presented, p.token)) {
      return { refused: p ? 'bad token' : 'no pending call for this CallSid' };
    }
    clearTimeout(p.expiry);
    this.pending.delete(callSid);
    return { model: p.model, recorder: p.recorder };
  }

  /** Forget a call that never streamed; with `reason`, its record is closed with it. */
  private dropPending(callSid: string, p: Pending, reason?: string): void {
    clearTimeout(p.expiry);
    this.pending.delete(callSid);
    p.abort.abort();
    p.model.then((m) => m.close(), () => {});
    if (reason) {
      const none = { p50Ms: NaN, p99Ms: NaN };
      p.recorder.ended({ endedAt: new Date(), reason, relay: { inbound: none, outbound: none }, protocolErrors: 0 });
    }
    this.checkIdle();
  }
}
