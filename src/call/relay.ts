/**
 * Relay: the call layer's face to the server (implements VoiceApp).
 *
 * - `/voice/incoming` mints a per-call token, answers TwiML that carries it
 *   as a <Parameter>, and starts opening the model session right away
 *   (pre-warm, keyed by CallSid) so the first turn does not pay the connect.
 * - The stream's `start` must present that token for that CallSid (second
 *   guard besides the signature); it then takes over the pre-warmed session.
 * - It owns the set of live calls, the concurrent-call cap and health.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { ToolRegistry } from '../tools/registry.js';
import { buildRejectTwiml, buildStreamTwiml } from '../twilio/twiml.js';
import { sharedClock, type PumpScheduler } from './clock.js';
import type { StatusCallback, VoiceWebhook } from '../twilio/webhooks.js';
import type { HealthReport, IncomingResult, ModelHealth, StreamHandler, StreamInfo, TwilioSocket, VoiceApp } from './ports.js';
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

  /** The webhook was parsed by the edge (twilio/webhooks.ts): `call.callSid` is a well-formed CA… SID. */
  incoming(call: VoiceWebhook, streamUrl: string): IncomingResult {
    const callSid = call.callSid;
    if (this.closing) return { ok: true, twiml: buildRejectTwiml() };
    if (this.calls.size + this.pending.size >= this.deps.config.maxConcurrentCalls) {
      this.deps.log.warn({ callSid, active: this.calls.size }, 'at capacity: rejecting call');
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

  openStream(socket: TwilioSocket, _info: StreamInfo): StreamHandler | null {
    if (this.closing || this.calls.size >= this.deps.config.maxConcurrentCalls) return null;
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
    return session;
  }

  health(): HealthReport {
    const model = this.deps.modelHealth?.() ?? { reachable: null, lastOkAt: null, lastError: null };
    return {
      status: model.reachable === false || this.closing ? 'degraded' : 'ok',
      version: this.deps.version ?? '0.0.0',
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      activeCalls: this.calls.size,
      model,
    };
  }

  /** Stop taking calls; end the live ones; close pre-warmed sessions. */
  shutdown(): void {
    this.closing = true;
    for (const [sid, p] of this.pending) this.dropPending(sid, p, 'shutdown');
    for (const call of [...this.calls]) call.end('shutdown');
  }

  private onCallEnded(s: CallSession): void {
    if (!this.calls.delete(s)) return;
    this.callsEnded++;
    this.relayIn.merge(s.relayIn);
    this.relayOut.merge(s.relayOut);
    this.turnLatency.merge(s.turnLatency);
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
  }
}
