/**
 * OpenAI GPT-Live as a ModelProvider (issue 20). Two parts, as realtime/ is
 * split: LiveEventMapper turns Live's event stream into the Realtime-shaped
 * ModelEvents the call knows (synthetic responses and items, caller turns,
 * tool calls from delegation); LiveSession is the transport (dial, handshake,
 * heartbeat, sends, close). The wire is live/protocol.ts; the start history
 * is live/history.ts. The socket error rules are realtime/openai-provider.ts's
 * (imported); realtime/ws-lean.ts is not used (its raw frame is Realtime's
 * append event).
 *
 * Contract (wire facts: ../shared/PROTOCOLS.md "OpenAI GPT-Live"):
 * - `connect()` dials `url` with `Authorization: Bearer …`, sends
 *   `session.start` (format, voice, instructions, Responses delegation with
 *   the ToolSpecs, the fitted history) and resolves on `session.started`,
 *   all within `connectTimeoutMs`. Refusals reject with ModelConnectError:
 *   HTTP 401/403/400 and an `error` during the handshake are not retryable
 *   (a server_error or rate limit is), timeouts, 429/5xx and network errors
 *   are. Every outcome goes to the ReachabilityTracker as the Realtime
 *   provider does (an aborted connect tells nothing).
 * - Responses: the first output (audio or transcript) after the output has
 *   paused starts `lresp_N` with item `litem_N`; OUTPUT_PAUSE_MS without
 *   output audio ends it `completed` (audio_done, assistant_transcript with
 *   timed words, response_done). An input transcript delta while one is
 *   active ends it `cancelled` (`turn_detected`) and reports speech_started
 *   at once; its later output (until the output pauses) is dropped.
 *   `cancelResponse()` ends it the same way, without speech_started.
 * - Caller turns: the first input delta opens one (speech_started); the turn
 *   closes (speech_stopped, then caller_transcript) when the next response
 *   starts or CALLER_TURN_CLOSE_MS after its last input delta.
 * - Tool calls: a nested `function_call` item done → tool_call with the
 *   active response's id, or with a response opened for the delegation
 *   (response_started) that ends when the nested response ends. A nested
 *   failed response → `error`. Nested usage → `usage` (text tokens).
 * - `session.usage.updated` / `session.closed` usage are cumulative seconds:
 *   reported as increments (`activeAudioSeconds`) when > 0.
 * - `session.closed` → `closed {retryable: reason === 'connection_lost'}`;
 *   a socket gone without it → `closed` with realtime's isRetryableClose.
 *   After a local close() nothing more is reported.
 * - Malformed or unknown server events are counted and logged, never thrown.
 */
import WebSocket from 'ws';
import { EventOutlet } from '../call/event-outlet.js';
import { ReachabilityTracker } from '../call/reachability.js';
import type { Logger } from '../log.js';
import {
  ModelConnectError,
  type ModelAudioFormat,
  type ModelEvent,
  type ModelProvider,
  type ModelSession,
  type ModelSessionOptions,
  type TimedText,
  type Usage,
} from '../call/voice-model.js';
import { MAX_BUFFERED_AUDIO_BYTES, RealtimeSocketError, classifySocketError, isRetryableClose } from '../realtime/openai-provider.js';
import { fitHistory } from './history.js';
import {
  buildSessionStart,
  commentaryAppendEvent,
  functionCallOutputItemEvent,
  inputAudioAppendEvent,
  parseLiveServerEvent,
  responseCreateEvent,
  sessionCloseEvent,
  thinkingAppendEvent,
  type LiveServerEvent,
  type NestedEvent,
} from './protocol.js';

export const DEFAULT_LIVE_URL = 'wss://api.openai.com/v1/live/sessions';
export const DEFAULT_LIVE_MODEL = 'gpt-live-1.1';
export const DEFAULT_BACKEND_MODEL = 'gpt-5-mini';
/** No output audio for this long (ms) = the model's output has ended. */
export const OUTPUT_PAUSE_MS = 300;
/** A caller turn with no model output this long (ms) after its last input delta is closed anyway. */
export const CALLER_TURN_CLOSE_MS = 1500;
/** What createResponse() asks the model to say when it has no instructions and no tool round waits. */
export const DEFAULT_COMMENTARY = 'Answer the caller now.';
/** After session.close, the socket is closed when session.closed arrives or after this long (ms). */
const CLOSE_WAIT_MS = 1000;

// ---------------------------------------------------------------------------
// Events: Live's stream → the call's ModelEvents

export interface MapperTimers {
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

const nodeTimers: MapperTimers = {
  set: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clear: (h) => clearTimeout(h as NodeJS.Timeout),
};

interface ActiveResponse {
  responseId: string;
  itemId: string;
  text: string;
  words: TimedText[];
  /** Session ms of the item's first output transcript delta: where its audio starts. */
  baseMs: number | undefined;
}

interface CallerTurn {
  itemId: string;
  text: string;
  endMs: number;
}

interface Delegation {
  /** The synthetic response its tool calls were reported under. */
  responseId: string | undefined;
  /** Whether that response was opened for the delegation (and ends with it). */
  own: boolean;
}

const zeroUsage = (): Usage => ({ inputTextTokens: 0, inputAudioTokens: 0, inputCachedTokens: 0, outputTextTokens: 0, outputAudioTokens: 0 });

/** Log lines for the session (ids and types, never the conversation's words). */
export interface MapperWarning {
  fields: Record<string, unknown>;
  msg: string;
}

/** Sessions made by this process: part of every synthetic id, so a reconnected call never sees an id twice. */
let sessionSeq = 0;

export class LiveEventMapper {
  /**
   * Suffix of this session's synthetic ids (`lresp_3.k2`): Live names no responses or items, and the call
   * keeps ids across a reconnect (an item concluded in the old session must not swallow a new one's text).
   */
  private readonly idTag = (++sessionSeq).toString(36);
  private nextResp = 1;
  private nextItem = 1;
  private nextInput = 1;
  private active: ActiveResponse | undefined;
  /** Output of a cancelled response still arriving: dropped until the output pauses. */
  private dropping = false;
  private pauseTimer: unknown;
  private turn: CallerTurn | undefined;
  private turnTimer: unknown;
  private readonly delegations = new Map<string, Delegation>();
  /** Tool calls reported and not yet answered with sendToolResult. */
  private readonly openCalls = new Set<string>();
  /** A delegated response has all its calls answered and waits for response.create. */
  private continuationReady = false;
  private lastUsageSeconds = 0;
  /** Cuts the call made (itemId → ms heard): Live decides interruptions itself, so nothing is sent. */
  readonly cuts = new Map<string, number>();

  constructor(
    private readonly emit: (ev: ModelEvent) => void,
    private readonly warn: (w: MapperWarning) => void,
    private readonly outputPauseMs = OUTPUT_PAUSE_MS,
    private readonly callerTurnCloseMs = CALLER_TURN_CLOSE_MS,
    private readonly timers: MapperTimers = nodeTimers,
  ) {}

  /** Every server event other than the handshake's. */
  handle(ev: LiveServerEvent): void {
    switch (ev.type) {
      case 'session.started':
        return; // the handshake; a second one means nothing
      case 'session.output_audio.delta':
        return this.onOutputAudio(ev.delta);
      case 'session.output_transcript.delta':
        return this.onOutputTranscript(ev.delta, ev.start_ms, ev.end_ms);
      case 'session.input_transcript.delta':
        return this.onInputTranscript(ev.delta, ev.start_ms, ev.end_ms);
      case 'session.delegation.created':
        if (!this.delegations.has(ev.delegation.id)) this.delegations.set(ev.delegation.id, { responseId: undefined, own: false });
        return;
      case 'response.event':
        return this.onNested(ev.delegation_id, ev.event);
      case 'session.usage.updated':
        return this.onUsageSeconds(ev.usage.seconds);
      case 'session.closed':
        if (ev.usage) this.onUsageSeconds(ev.usage.seconds);
        this.dispose();
        this.emit({ type: 'closed', reason: ev.reason, retryable: ev.reason === 'connection_lost' });
        return;
      case 'error':
        this.emit({ type: 'error', code: ev.error.code, message: ev.error.message });
        return;
      case 'unhandled':
        return;
      default: {
        const never: never = ev;
        void never;
      }
    }
  }

  // -- output ------------------------------------------------------------------

  private armPause(): void {
    if (this.pauseTimer !== undefined) this.timers.clear(this.pauseTimer);
    this.pauseTimer = this.timers.set(() => this.onOutputPause(), this.outputPauseMs);
  }

  private onOutputPause(): void {
    this.pauseTimer = undefined;
    this.dropping = false;
    if (this.active) this.endActive('completed');
  }

  /** The first output after a pause starts a response (closing an open caller turn first). */
  private startResponse(): ActiveResponse {
    if (this.turn) this.closeTurn();
    const r: ActiveResponse = { responseId: `lresp_${this.nextResp++}.${this.idTag}`, itemId: `litem_${this.nextItem++}.${this.idTag}`, text: '', words: [], baseMs: undefined };
    this.active = r;
    this.emit({ type: 'response_started', responseId: r.responseId });
    return r;
  }

  private onOutputAudio(delta: string): void {
    this.armPause();
    if (this.dropping) return;
    const r = this.active ?? this.startResponse();
    this.emit({ type: 'audio', responseId: r.responseId, itemId: r.itemId, audio: delta });
  }

  private onOutputTranscript(delta: string, startMs: number, endMs: number): void {
    if (this.dropping) return;
    if (!this.active) this.armPause(); // text before audio also opens the response; a pause still ends it
    const r = this.active ?? this.startResponse();
    r.baseMs ??= startMs;
    r.text += delta;
    r.words.push({ text: delta, startMs: Math.max(0, startMs - r.baseMs), endMs: Math.max(0, endMs - r.baseMs) });
    this.emit({ type: 'assistant_transcript_delta', responseId: r.responseId, itemId: r.itemId, delta });
  }

  private endActive(status: 'completed' | 'cancelled', reason?: string): void {
    const r = this.active;
    if (!r) return;
    this.active = undefined;
    this.emit({ type: 'audio_done', responseId: r.responseId, itemId: r.itemId });
    this.emit({ type: 'assistant_transcript', responseId: r.responseId, itemId: r.itemId, text: r.text, words: r.words });
    this.emit({ type: 'response_done', responseId: r.responseId, status, ...(reason ? { reason } : {}), usage: undefined });
  }

  /** cancelResponse(): end the current response as cancelled and drop the rest of its output. */
  cancel(): void {
    if (!this.active) return;
    this.endActive('cancelled');
    this.dropping = true;
    if (this.pauseTimer === undefined) this.armPause();
  }

  truncate(itemId: string, audioEndMs: number): void {
    this.cuts.set(itemId, audioEndMs);
  }

  // -- input -------------------------------------------------------------------

  private onInputTranscript(delta: string, startMs: number, endMs: number): void {
    if (this.active) {
      // The model yielded: the caller is talking. Its response ends now; what it still sends is dropped.
      this.endActive('cancelled', 'turn_detected');
      this.dropping = true;
      if (this.pauseTimer === undefined) this.armPause();
    }
    if (!this.turn) {
      this.turn = { itemId: `lin_${this.nextInput++}.${this.idTag}`, text: '', endMs };
      this.emit({ type: 'speech_started', itemId: this.turn.itemId, audioStartMs: startMs });
    }
    this.turn.text += delta;
    this.turn.endMs = Math.max(this.turn.endMs, endMs);
    if (this.turnTimer !== undefined) this.timers.clear(this.turnTimer);
    this.turnTimer = this.timers.set(() => {
      this.turnTimer = undefined;
      this.closeTurn();
    }, this.callerTurnCloseMs);
  }

  private closeTurn(): void {
    const t = this.turn;
    if (!t) return;
    this.turn = undefined;
    if (this.turnTimer !== undefined) this.timers.clear(this.turnTimer);
    this.turnTimer = undefined;
    this.emit({ type: 'speech_stopped', itemId: t.itemId, audioEndMs: t.endMs });
    this.emit({ type: 'caller_transcript', itemId: t.itemId, text: t.text.trim() });
  }

  // -- delegation ----------------------------------------------------------------

  private onNested(delegationId: string | undefined, ev: NestedEvent): void {
    const key = delegationId ?? '';
    let d = this.delegations.get(key);
    if (!d) {
      d = { responseId: undefined, own: false };
      this.delegations.set(key, d);
    }
    switch (ev.kind) {
      case 'function_call': {
        if (!d.responseId) {
          if (this.active) d.responseId = this.active.responseId;
          else {
            d.responseId = `lresp_${this.nextResp++}.${this.idTag}`;
            d.own = true;
            this.emit({ type: 'response_started', responseId: d.responseId });
          }
        }
        this.openCalls.add(ev.callId);
        this.continuationReady = false;
        this.emit({ type: 'tool_call', responseId: d.responseId, callId: ev.callId, name: ev.name, arguments: ev.arguments });
        return;
      }
      case 'response_end': {
        if (ev.usage && (ev.usage.inputTokens > 0 || ev.usage.outputTokens > 0)) {
          this.emit({ type: 'usage', usage: { ...zeroUsage(), inputTextTokens: ev.usage.inputTokens, outputTextTokens: ev.usage.outputTokens } });
        }
        const failed = ev.status === 'failed';
        if (failed) {
          this.warn({ fields: { delegationId, code: ev.errorCode }, msg: 'delegated response failed' });
          this.emit({ type: 'error', code: ev.errorCode ?? 'delegation_failed', message: ev.errorMessage ?? 'the delegated response failed' });
        }
        if (d.own && d.responseId) {
          this.emit({ type: 'response_done', responseId: d.responseId, status: failed ? 'failed' : 'completed', ...(failed && ev.errorCode ? { reason: ev.errorCode } : {}), usage: undefined });
        }
        // The next response of this delegation (after its tool outputs) reports under a new id.
        d.responseId = undefined;
        d.own = false;
        return;
      }
      case 'other':
        return;
      default: {
        const never: never = ev;
        void never;
      }
    }
  }

  /** A tool's output went out. */
  toolResult(callId: string): void {
    if (!this.openCalls.delete(callId)) return;
    if (this.openCalls.size === 0) this.continuationReady = true;
  }

  /** Whether createResponse() should continue a delegated response (consumes the readiness). */
  takeContinuation(): boolean {
    const ready = this.continuationReady;
    this.continuationReady = false;
    return ready;
  }

  // -- usage ---------------------------------------------------------------------

  private onUsageSeconds(total: number): void {
    const inc = total - this.lastUsageSeconds;
    if (inc <= 0) return;
    this.lastUsageSeconds = total;
    this.emit({ type: 'usage', usage: { ...zeroUsage(), activeAudioSeconds: inc } });
  }

  dispose(): void {
    if (this.pauseTimer !== undefined) this.timers.clear(this.pauseTimer);
    if (this.turnTimer !== undefined) this.timers.clear(this.turnTimer);
    this.pauseTimer = undefined;
    this.turnTimer = undefined;
  }
}

// ---------------------------------------------------------------------------
// Provider

export interface LiveProviderOptions {
  /** ws:// or wss:// Live endpoint. Default DEFAULT_LIVE_URL. */
  url?: string;
  apiKey: string;
  /** The Live model. Default DEFAULT_LIVE_MODEL. */
  model?: string;
  /** The Responses model that runs delegated tool work. Default DEFAULT_BACKEND_MODEL. */
  backendModel?: string;
  format: ModelAudioFormat;
  /** Whole handshake budget: socket open + session.started. */
  connectTimeoutMs: number;
  /** Extra CA to trust for wss:// (a local stand-in's self-signed certificate). */
  ca?: string | Buffer;
  /** Ping the open socket this often (ms); 0 = never. Default 3000. */
  pingIntervalMs?: number;
  /** A ping unanswered this long (ms) means the socket is dead. Default 4000. */
  pongTimeoutMs?: number;
  /** Largest server frame accepted (bytes). Default 16 MiB. */
  maxPayloadBytes?: number;
  /** No output audio this long (ms) ends a synthetic response. Default OUTPUT_PAUSE_MS. */
  outputPauseMs?: number;
  /** A caller turn with no model output this long after its last input delta is closed. Default CALLER_TURN_CLOSE_MS. */
  callerTurnCloseMs?: number;
  log: Logger;
  /** Shared tracker for the health endpoint; one is created if omitted. */
  reachability?: ReachabilityTracker;
}

export class LiveProvider implements ModelProvider {
  readonly name = 'live';
  readonly reachability: ReachabilityTracker;
  readonly url: string;

  constructor(private readonly opts: LiveProviderOptions) {
    this.url = opts.url ?? DEFAULT_LIVE_URL;
    const u = new URL(this.url);
    if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new Error(`live URL must be ws:// or wss://, got ${u.protocol}`);
    this.reachability = opts.reachability ?? new ReachabilityTracker();
  }

  connect(session: ModelSessionOptions, signal?: AbortSignal): Promise<ModelSession> {
    const o = this.opts;
    const s = new LiveSession(o.format, o.log, o.outputPauseMs ?? OUTPUT_PAUSE_MS, o.callerTurnCloseMs ?? CALLER_TURN_CLOSE_MS);
    const start = buildSessionStart({
      model: o.model ?? DEFAULT_LIVE_MODEL,
      instructions: session.instructions,
      voice: session.voice,
      format: o.format,
      backendModel: o.backendModel ?? DEFAULT_BACKEND_MODEL,
      tools: session.tools,
      input: fitHistory(session.history ?? []),
    });
    return s
      .open({
        url: this.url,
        apiKey: o.apiKey,
        ca: o.ca,
        timeoutMs: o.connectTimeoutMs,
        maxPayloadBytes: o.maxPayloadBytes ?? 16 * 1024 * 1024,
        pingIntervalMs: o.pingIntervalMs ?? 3000,
        pongTimeoutMs: o.pongTimeoutMs ?? 4000,
        sessionStart: start,
        signal,
      })
      .then(
        () => {
          this.reachability.ok();
          return s;
        },
        (err: ModelConnectError) => {
          if (s.connectFailure === 'rejected') this.reachability.ok();
          else if (s.connectFailure !== 'aborted') this.reachability.fail(err);
          throw err;
        },
      );
  }
}

// ---------------------------------------------------------------------------
// Session: the transport

interface OpenParams {
  url: string;
  apiKey: string;
  ca: string | Buffer | undefined;
  timeoutMs: number;
  maxPayloadBytes: number;
  pingIntervalMs: number;
  pongTimeoutMs: number;
  sessionStart: string;
  signal: AbortSignal | undefined;
}

export interface LiveSessionCounters {
  sent: number;
  /** Sends dropped because the session was not open. */
  dropped: number;
  malformed: number;
  unhandled: number;
  audioDroppedForBackpressure: number;
}

type Phase = 'connecting' | 'awaiting_started' | 'open' | 'closed';

/** Server error codes during the handshake that a new attempt may get past. */
const RETRYABLE_REFUSALS = new Set(['server_error', 'rate_limit_exceeded', 'rate_limit_error', 'overloaded']);

export class LiveSession implements ModelSession {
  private ws: WebSocket | undefined;
  private phase: Phase = 'connecting';
  private readonly outlet: EventOutlet;
  private readonly mapper: LiveEventMapper;
  private closedLocally = false;
  private closedReported = false;
  private settle: { resolve: () => void; reject: (e: ModelConnectError) => void } | undefined;
  private heartbeat: { intervalMs: number; timeoutMs: number; ticker?: NodeJS.Timeout; deadline?: NodeJS.Timeout } | undefined;
  readonly counters: LiveSessionCounters = { sent: 0, dropped: 0, malformed: 0, unhandled: 0, audioDroppedForBackpressure: 0 };
  connectFailure: 'unreachable' | 'rejected' | 'aborted' | undefined;

  constructor(
    readonly format: ModelAudioFormat,
    private readonly log: Logger,
    outputPauseMs = OUTPUT_PAUSE_MS,
    callerTurnCloseMs = CALLER_TURN_CLOSE_MS,
  ) {
    this.outlet = new EventOutlet(log);
    this.mapper = new LiveEventMapper(
      (ev) => this.onMapped(ev),
      (w) => this.log.warn(w.fields, w.msg),
      outputPauseMs,
      callerTurnCloseMs,
    );
  }

  /** Cuts the call asked for (Live takes none; kept for the record). */
  get cuts(): ReadonlyMap<string, number> {
    return this.mapper.cuts;
  }

  open(p: OpenParams): Promise<void> {
    if (p.pingIntervalMs > 0) this.heartbeat = { intervalMs: p.pingIntervalMs, timeoutMs: p.pongTimeoutMs };
    return new Promise<void>((resolve, reject) => {
      if (p.signal?.aborted) {
        this.phase = 'closed';
        this.connectFailure = 'aborted';
        reject(new ModelConnectError('model connect aborted', false));
        return;
      }
      let timer: NodeJS.Timeout | undefined;
      const onAbort = (): void => this.failConnect(new ModelConnectError('model connect aborted', false), 'aborted');
      const done = (): void => {
        if (timer) clearTimeout(timer);
        p.signal?.removeEventListener('abort', onAbort);
        this.settle = undefined;
      };
      this.settle = {
        resolve: () => {
          done();
          resolve();
        },
        reject: (e) => {
          done();
          reject(e);
        },
      };
      timer = setTimeout(() => {
        const cause = new RealtimeSocketError(`no session.started within ${p.timeoutMs} ms`, true, 'ETIMEDOUT');
        this.failConnect(new ModelConnectError(`model connect timed out after ${p.timeoutMs} ms (${this.phase})`, true, { cause }));
      }, p.timeoutMs);
      p.signal?.addEventListener('abort', onAbort, { once: true });

      let ws: WebSocket;
      try {
        ws = new WebSocket(p.url, {
          headers: { Authorization: `Bearer ${p.apiKey}` },
          ...(p.ca !== undefined ? { ca: p.ca } : {}),
          handshakeTimeout: p.timeoutMs,
          maxPayload: p.maxPayloadBytes,
          perMessageDeflate: false,
        });
      } catch (err) {
        const cause = classifySocketError(err);
        this.failConnect(new ModelConnectError(`model connect failed: ${cause.message}`, false, { cause }));
        return;
      }
      this.ws = ws;
      ws.on('open', () => {
        if (this.phase !== 'connecting') return;
        this.phase = 'awaiting_started';
        this.sendRaw(p.sessionStart);
      });
      ws.on('message', (data, isBinary) => this.onMessage(data, isBinary));
      ws.on('pong', () => this.onPong());
      ws.on('error', (err) => this.onSocketError(err));
      ws.on('close', (code, reason) => this.onSocketClose(code, reason.toString('utf8')));
    });
  }

  private failConnect(err: ModelConnectError, why: 'unreachable' | 'rejected' | 'aborted' = 'unreachable'): void {
    if (this.phase === 'closed' || this.phase === 'open') return;
    this.phase = 'closed';
    this.connectFailure = why;
    this.log.warn({ err: err.message, retryable: err.retryable }, 'live connect failed');
    this.terminate();
    this.settle?.reject(err);
  }

  private terminate(): void {
    try {
      this.ws?.terminate();
    } catch {
      // already gone
    }
  }

  private onSocketError(err: Error): void {
    const e = classifySocketError(err);
    if (this.phase !== 'open') {
      this.failConnect(new ModelConnectError(`model connect failed: ${e.message}`, e.retryable, { cause: e }));
      return;
    }
    this.log.warn({ err: e.message, code: e.code, retryable: e.retryable }, 'live socket error');
    this.shutdown();
    this.reportClosed(e.message, e.retryable);
  }

  private onSocketClose(code: number, reason: string): void {
    const retryable = isRetryableClose(code);
    if (this.phase !== 'open') {
      const cause = new RealtimeSocketError(`model socket closed during handshake (${code} ${reason})`, retryable, code);
      this.failConnect(new ModelConnectError(cause.message, retryable, { cause }));
      return;
    }
    this.shutdown();
    this.log.info({ code, reason: reason.slice(0, 200) }, 'live socket closed');
    this.reportClosed(`model socket closed (${code}${reason ? ` ${reason.slice(0, 200)}` : ''})`, retryable);
  }

  private shutdown(): void {
    this.phase = 'closed';
    this.stopHeartbeat();
    this.mapper.dispose();
  }

  // -- liveness ------------------------------------------------------------------

  private startHeartbeat(): void {
    const hb = this.heartbeat;
    if (!hb || hb.ticker) return;
    hb.ticker = setInterval(() => {
      const ws = this.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN) return;
      try {
        ws.ping();
      } catch {
        return;
      }
      if (!hb.deadline) hb.deadline = setTimeout(() => this.onPongMissed(hb.timeoutMs), hb.timeoutMs);
    }, hb.intervalMs);
    hb.ticker.unref();
  }

  private onPong(): void {
    const hb = this.heartbeat;
    if (hb?.deadline) clearTimeout(hb.deadline);
    if (hb) hb.deadline = undefined;
  }

  private stopHeartbeat(): void {
    const hb = this.heartbeat;
    if (!hb) return;
    if (hb.ticker) clearInterval(hb.ticker);
    if (hb.deadline) clearTimeout(hb.deadline);
    this.heartbeat = undefined;
  }

  private onPongMissed(timeoutMs: number): void {
    if (this.phase !== 'open') return;
    this.shutdown();
    this.log.warn({ timeoutMs }, 'live socket missed a pong: treating it as lost');
    this.reportClosed(`model socket missed a pong for ${timeoutMs} ms`, true);
    this.terminate();
  }

  private reportClosed(reason: string, retryable: boolean): void {
    if (this.closedLocally || this.closedReported) return;
    this.closedReported = true;
    this.outlet.emit({ type: 'closed', reason, retryable });
  }

  // -- server events -------------------------------------------------------------

  private onMessage(data: WebSocket.RawData, isBinary: boolean): void {
    if (isBinary) {
      this.counters.malformed++;
      this.log.warn('live sent a binary frame; skipped');
      return;
    }
    const text = Buffer.isBuffer(data) ? data.toString('utf8') : Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.from(data).toString('utf8');
    const parsed = parseLiveServerEvent(text);
    if (!parsed.ok) {
      this.counters.malformed++;
      this.log.warn({ error: parsed.error }, 'malformed live event skipped');
      return;
    }
    try {
      this.handle(parsed.event);
    } catch (err) {
      this.log.error({ err }, 'live event handler failed');
    }
  }

  private handle(ev: LiveServerEvent): void {
    if (this.phase === 'awaiting_started' || this.phase === 'connecting') {
      switch (ev.type) {
        case 'session.started':
          this.phase = 'open';
          this.startHeartbeat();
          this.outlet.emit({ type: 'ready' });
          this.settle?.resolve();
          return;
        case 'error':
          this.failConnect(new ModelConnectError(`live refused the session: ${ev.error.code}: ${ev.error.message.slice(0, 200)}`, RETRYABLE_REFUSALS.has(ev.error.code)), 'rejected');
          return;
        case 'session.closed':
          this.failConnect(new ModelConnectError(`live closed the session during start: ${ev.reason}`, ev.reason === 'connection_lost'), 'rejected');
          return;
        default:
          this.log.debug({ eventType: ev.type }, 'live event before session.started ignored');
          return;
      }
    }
    if (this.phase !== 'open') {
      if (ev.type === 'session.closed') this.ws?.close(1000, 'session closed');
      return;
    }
    if (ev.type === 'unhandled') {
      this.counters.unhandled++;
      this.log.debug({ eventType: ev.originalType }, 'live event ignored');
      return;
    }
    if (ev.type === 'error') this.log.warn({ code: ev.error.code }, 'live error event');
    this.mapper.handle(ev);
    if (ev.type === 'session.closed') {
      this.shutdown();
      this.closedReported = true; // the mapper reported `closed`
      try {
        this.ws?.close(1000, 'session closed');
      } catch {
        // already gone
      }
    }
  }

  private onMapped(ev: ModelEvent): void {
    if (this.closedLocally) return;
    this.outlet.emit(ev);
  }

  onEvent(listener: (ev: ModelEvent) => void): void {
    this.outlet.listen(listener);
  }

  // -- client events ---------------------------------------------------------------

  private sendRaw(text: string): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      this.counters.dropped++;
      return;
    }
    try {
      ws.send(text);
      this.counters.sent++;
    } catch {
      this.counters.dropped++;
    }
  }

  private send(text: string): void {
    if (this.phase !== 'open') {
      this.counters.dropped++;
      return;
    }
    this.sendRaw(text);
  }

  appendAudio(base64: string): void {
    const ws = this.ws;
    if (ws && ws.bufferedAmount > MAX_BUFFERED_AUDIO_BYTES) {
      this.counters.dropped++;
      this.counters.audioDroppedForBackpressure++;
      return;
    }
    this.send(inputAudioAppendEvent(base64));
  }

  sendUserText(text: string): void {
    this.send(thinkingAppendEvent(text));
  }

  createResponse(instructions?: string): void {
    if (this.mapper.takeContinuation()) this.send(responseCreateEvent());
    else this.send(commentaryAppendEvent(instructions ?? DEFAULT_COMMENTARY));
  }

  cancelResponse(): void {
    this.mapper.cancel();
  }

  truncate(itemId: string, audioEndMs: number): void {
    this.mapper.truncate(itemId, audioEndMs);
  }

  sendToolResult(callId: string, output: string, _respond: boolean): void {
    // Never response.create here: the call asks once per round through createResponse.
    this.send(functionCallOutputItemEvent(callId, output));
    this.mapper.toolResult(callId);
  }

  close(): void {
    if (this.closedLocally) return;
    this.closedLocally = true;
    const wasOpen = this.phase === 'open';
    if (!wasOpen) this.failConnect(new ModelConnectError('model session closed during connect', false), 'aborted');
    this.outlet.clear();
    const ws = this.ws;
    if (wasOpen) this.sendRaw(sessionCloseEvent());
    this.shutdown();
    if (!ws) return;
    if (!wasOpen || ws.readyState !== WebSocket.OPEN) {
      this.terminate();
      return;
    }
    // session.closed (handled above while closed: it closes the socket) or CLOSE_WAIT_MS, whichever first.
    const t = setTimeout(() => {
      try {
        ws.close(1000, 'call ended');
      } catch {
        // already gone
      }
      const k = setTimeout(() => this.terminate(), 2000);
      k.unref();
      ws.once('close', () => clearTimeout(k));
    }, CLOSE_WAIT_MS);
    t.unref();
    ws.once('close', () => clearTimeout(t));
  }
}
