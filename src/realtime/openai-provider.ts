/**
 * OpenAI Realtime (GA) as a ModelProvider: the transport of one call's model
 * session. It dials the outbound WebSocket, owns it and is the only module
 * that reads from it; realtime/ws-lean.ts writes raw append frames to it on
 * this module's behalf. The wire shapes are realtime/protocol.ts; what a
 * server event means for the call is realtime/events.ts.
 *
 * Contract:
 * - `connect()` dials `${url}?model=…` with `Authorization: Bearer …` (no
 *   `OpenAI-Beta` header), waits for `session.created`, sends `session.update`
 *   and resolves once `session.updated` arrives. Everything (TCP, TLS, HTTP
 *   upgrade, both events) must finish within `connectTimeoutMs`. Failures
 *   reject with ModelConnectError; `retryable` says whether trying again can
 *   help (timeouts, refused connections, 429/5xx: yes; 401/403/400, bad
 *   certificates, a rejected session.update: no).
 * - Every connect's outcome goes to the ReachabilityTracker
 *   (call/reachability.ts) whose snapshot /voice/health reports as
 *   ModelHealth: an opened session, and a session the server refused (the
 *   endpoint answered), count as reachable; any other failure as a failure;
 *   an aborted connect tells nothing.
 * - Server events are parsed (protocol.ts) and mapped (events.ts) into
 *   ModelEvents; this module acts itself only on the handshake events and on
 *   a server error during the handshake. Unknown or malformed events are
 *   logged and skipped, never thrown. Events that arrive before `onEvent` is
 *   set are queued and delivered in order.
 * - Sends on a socket that is not open are dropped silently and counted.
 * - Audio appends go out as one raw frame in one socket write when `ws` has
 *   nothing in flight (realtime/ws-lean.ts), else through `ws.send`; either
 *   way in order with every other event. Over MAX_BUFFERED_AUDIO_BYTES queued,
 *   appends are dropped and counted.
 * - The session reports `closed` once when the socket goes away on its own;
 *   after `close()` is called locally it reports nothing more.
 * - Once open, the socket is pinged every `pingIntervalMs`; a pong missing for
 *   `pongTimeoutMs` after a ping ends the socket and reports `closed` with
 *   `retryable: true` (the server is rightly silent while the caller is, so
 *   silence alone proves nothing; a missing pong does).
 */
import WebSocket from 'ws';
import { EventOutlet } from '../call/event-outlet.js';
import { ReachabilityTracker } from '../call/reachability.js';
import type { Logger } from '../log.js';
import {
  ModelConnectError,
  type ConversationItem,
  type ModelAudioFormat,
  type ModelEvent,
  type ModelProvider,
  type ModelSession,
  type ModelSessionOptions,
} from '../call/voice-model.js';
import { RealtimeEventMapper, type Mapped } from './events.js';
import {
  appendAudioEvent,
  buildSessionUpdate,
  functionCallOutputEvent,
  parseServerEvent,
  replayItemEvent,
  responseCancelEvent,
  responseCreateEvent,
  truncateEvent,
  userTextEvent,
  type ReasoningEffort,
  type ServerEvent,
  type VadSettings,
} from './protocol.js';
import { writeAppend } from './ws-lean.js';

// ---------------------------------------------------------------------------
// Socket errors

/** A socket-level failure talking to the model endpoint; `retryable`: a new attempt may succeed. */
export class RealtimeSocketError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
    /** HTTP status of a refused upgrade, a WebSocket close code, or a Node error code. */
    readonly code?: number | string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'RealtimeSocketError';
  }
}

const RETRYABLE_NET_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ENETDOWN',
]);

/** Classify an error from the `ws` client (before or after open). */
export function classifySocketError(err: unknown): RealtimeSocketError {
  if (err instanceof RealtimeSocketError) return err;
  const e = err instanceof Error ? err : new Error(String(err));
  const http = /Unexpected server response: (\d{3})/.exec(e.message);
  if (http) {
    const status = Number(http[1]);
    return new RealtimeSocketError(`model endpoint refused the upgrade: HTTP ${status}`, status === 429 || status >= 500, status, { cause: e });
  }
  const code = (e as NodeJS.ErrnoException).code;
  if (typeof code === 'string') {
    return new RealtimeSocketError(`model socket error: ${code}`, RETRYABLE_NET_CODES.has(code), code, { cause: e });
  }
  return new RealtimeSocketError(`model socket error: ${e.message}`, true, undefined, { cause: e });
}

/**
 * Whether a reconnect can help after the server closed with `code`. Protocol
 * and policy violations (1002, 1003, 1007, 1008) and HTTP-like 4xx
 * application codes (4001, 4003, 4400–4499) mean the same request will fail again.
 */
export function isRetryableClose(code: number): boolean {
  if (code === 1002 || code === 1003 || code === 1007 || code === 1008) return false;
  if (code === 4001 || code === 4003 || (code >= 4400 && code <= 4499)) return false;
  return true;
}

// ---------------------------------------------------------------------------
// Provider

export interface OpenAIRealtimeProviderOptions {
  /** ws:// or wss:// realtime endpoint without query (config.openai.realtimeUrl). */
  url: string;
  model: string;
  apiKey: string;
  /** Extra CA to trust for wss:// (a local stand-in's self-signed certificate). */
  ca?: string | Buffer;
  /** Whole handshake budget: socket open + session.created + session.updated. */
  connectTimeoutMs: number;
  format: ModelAudioFormat;
  /** Input transcription model; empty = none. */
  transcriptionModel: string;
  vad: VadSettings;
  /** `session.reasoning.effort` for reasoning models (gpt-realtime-2+); undefined = the model's default. */
  reasoningEffort?: ReasoningEffort;
  log: Logger;
  /** Shared tracker for the health endpoint; one is created if omitted. */
  reachability?: ReachabilityTracker;
  /** Largest server frame accepted (bytes). */
  maxPayloadBytes?: number;
  /** Ping the open socket this often (ms); 0 = never. Default 3000. */
  pingIntervalMs?: number;
  /** A ping unanswered this long (ms) means the socket is dead. Default 4000. */
  pongTimeoutMs?: number;
}

export class OpenAIRealtimeProvider implements ModelProvider {
  readonly name = 'openai';
  readonly reachability: ReachabilityTracker;

  constructor(private readonly opts: OpenAIRealtimeProviderOptions) {
    const u = new URL(opts.url);
    if (u.protocol !== 'ws:' && u.protocol !== 'wss:') {
      throw new Error(`realtime URL must be ws:// or wss://, got ${u.protocol}`);
    }
    this.reachability = opts.reachability ?? new ReachabilityTracker();
  }

  /** The URL dialled: the endpoint with `?model=`. */
  endpoint(): string {
    const u = new URL(this.opts.url);
    u.searchParams.set('model', this.opts.model);
    return u.toString();
  }

  connect(session: ModelSessionOptions, signal?: AbortSignal): Promise<ModelSession> {
    const o = this.opts;
    const s = new OpenAIRealtimeSession(o.format, o.log);
    const sessionUpdate = buildSessionUpdate({
      model: o.model,
      instructions: session.instructions,
      voice: session.voice,
      format: o.format,
      transcriptionModel: o.transcriptionModel,
      vad: o.vad,
      tools: session.tools,
      reasoningEffort: o.reasoningEffort,
    });
    return s
      .open({
        url: this.endpoint(),
        apiKey: o.apiKey,
        ca: o.ca,
        timeoutMs: o.connectTimeoutMs,
        maxPayloadBytes: o.maxPayloadBytes ?? 16 * 1024 * 1024,
        pingIntervalMs: o.pingIntervalMs ?? 3000,
        pongTimeoutMs: o.pongTimeoutMs ?? 4000,
        sessionUpdate,
        signal,
      })
      .then(
        () => {
          this.reachability.ok();
          // Realtime takes items at any time: the earlier conversation goes in once configured, before any audio.
          if (session.history?.length) s.addHistory(session.history);
          return s;
        },
        (err: ModelConnectError) => {
          // The endpoint answered but refused the session: it is reachable. An abort tells nothing.
          if (s.connectFailure === 'rejected') this.reachability.ok();
          else if (s.connectFailure !== 'aborted') this.reachability.fail(err);
          throw err;
        },
      );
  }
}

// ---------------------------------------------------------------------------
// Session

interface OpenParams {
  url: string;
  apiKey: string;
  ca: string | Buffer | undefined;
  timeoutMs: number;
  maxPayloadBytes: number;
  pingIntervalMs: number;
  pongTimeoutMs: number;
  sessionUpdate: string;
  signal: AbortSignal | undefined;
}

type Phase = 'connecting' | 'awaiting_created' | 'awaiting_updated' | 'open' | 'closed';

export interface SessionCounters {
  sent: number;
  /** Sends dropped because the socket was not open. */
  dropped: number;
  /** Server events skipped as malformed. */
  malformed: number;
  /** Well-formed server events callbridge does not act on. */
  unhandled: number;
  /** Audio appends dropped because the socket had more than MAX_BUFFERED_AUDIO_BYTES queued. */
  audioDroppedForBackpressure: number;
  /** Audio appends written as one raw frame (realtime/ws-lean.ts); included in `sent`. */
  appendsLean: number;
}

/** Outbound bytes queued on the model socket above which caller audio is dropped (~2 min of pcm24k as base64). */
export const MAX_BUFFERED_AUDIO_BYTES = 8 * 1024 * 1024;

export class OpenAIRealtimeSession implements ModelSession {
  private ws: WebSocket | undefined;
  private phase: Phase = 'connecting';
  private readonly outlet: EventOutlet;
  private closedLocally = false;
  private closedReported = false;
  /** Server events → ModelEvents (realtime/events.ts). */
  private readonly events = new RealtimeEventMapper();
  readonly counters: SessionCounters = { sent: 0, dropped: 0, malformed: 0, unhandled: 0, audioDroppedForBackpressure: 0, appendsLean: 0 };
  private settle: { resolve: () => void; reject: (e: ModelConnectError) => void } | undefined;
  private sessionUpdate = '';
  private heartbeat: { intervalMs: number; timeoutMs: number; ticker?: NodeJS.Timeout; deadline?: NodeJS.Timeout } | undefined;
  /** Why open() failed: the endpoint could not be used, refused the session (it answered), or the caller gave up. */
  connectFailure: 'unreachable' | 'rejected' | 'aborted' | undefined;

  constructor(
    readonly format: ModelAudioFormat,
    private readonly log: Logger,
  ) {
    this.outlet = new EventOutlet(log);
  }

  /** Dial and run the handshake. Resolves once session.updated has arrived. */
  open(p: OpenParams): Promise<void> {
    this.sessionUpdate = p.sessionUpdate;
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
        const cause = new RealtimeSocketError(`no session.updated within ${p.timeoutMs} ms`, true, 'ETIMEDOUT');
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
        if (this.phase === 'connecting') this.phase = 'awaiting_created';
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
    this.log.warn({ err: err.message, retryable: err.retryable }, 'model connect failed');
    this.terminate();
    this.settle?.reject(err);
  }

  private terminate(): void {
    const ws = this.ws;
    if (!ws) return;
    try {
      ws.terminate();
    } catch {
      // already gone
    }
  }

  // -- socket callbacks -----------------------------------------------------

  private onSocketError(err: Error): void {
    const e = classifySocketError(err);
    if (this.phase !== 'open') {
      this.failConnect(new ModelConnectError(`model connect failed: ${e.message}`, e.retryable, { cause: e }));
      return;
    }
    this.log.warn({ err: e.message, code: e.code, retryable: e.retryable }, 'model socket error');
    this.stopHeartbeat();
    this.reportClosed(e.message, e.retryable);
  }

  private onSocketClose(code: number, reason: string): void {
    const retryable = isRetryableClose(code);
    if (this.phase !== 'open') {
      const cause = new RealtimeSocketError(`model socket closed during handshake (${code} ${reason})`, retryable, code);
      this.failConnect(new ModelConnectError(cause.message, retryable, { cause }));
      return;
    }
    this.phase = 'closed';
    this.stopHeartbeat();
    this.log.info({ code, reason: reason.slice(0, 200) }, 'model socket closed');
    this.reportClosed(`model socket closed (${code}${reason ? ` ${reason.slice(0, 200)}` : ''})`, retryable);
  }

  // -- liveness: ping the open socket; a missing pong ends it ------------------

  private startHeartbeat(): void {
    const hb = this.heartbeat;
    if (!hb || hb.ticker) return;
    hb.ticker = setInterval(() => {
      const ws = this.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN) return;
      try {
        ws.ping();
      } catch {
        return; // the close event follows
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
    this.phase = 'closed';
    this.stopHeartbeat();
    this.log.warn({ timeoutMs }, 'model socket missed a pong: treating it as lost');
    this.reportClosed(`model socket missed a pong for ${timeoutMs} ms`, true);
    this.terminate();
  }

  private reportClosed(reason: string, retryable: boolean): void {
    if (this.closedLocally || this.closedReported) return;
    this.closedReported = true;
    this.emit({ type: 'closed', reason, retryable });
  }

  private onMessage(data: WebSocket.RawData, isBinary: boolean): void {
    if (isBinary) {
      this.counters.malformed++;
      this.log.warn('model sent a binary frame; skipped');
      return;
    }
    const text = Buffer.isBuffer(data)
      ? data.toString('utf8')
      : Array.isArray(data)
        ? Buffer.concat(data).toString('utf8')
        : Buffer.from(data).toString('utf8');
    const parsed = parseServerEvent(text);
    if (!parsed.ok) {
      this.counters.malformed++;
      this.log.warn({ error: parsed.error }, 'malformed model event skipped');
      return;
    }
    this.handle(parsed.event);
  }

  // -- server events: mapped by realtime/events.ts; the handshake is handled here --

  private handle(ev: ServerEvent): void {
    const m = this.events.map(ev);
    switch (m.kind) {
      case 'session_created': return this.handleSessionCreated();
      case 'session_updated': return this.handleSessionUpdated();
      case 'events':
        for (const w of m.warnings) this.log.warn(w.fields, w.msg);
        for (const e of m.events) this.emit(e);
        return;
      case 'server_error': return this.handleServerError(m);
      case 'unhandled':
        this.counters.unhandled++;
        this.log.debug({ eventType: m.originalType }, 'model event ignored');
        return;
      default: {
        const never: never = m;
        void never;
      }
    }
  }

  private handleSessionCreated(): void {
    if (this.phase === 'connecting' || this.phase === 'awaiting_created') {
      this.phase = 'awaiting_updated';
      this.sendRaw(this.sessionUpdate);
      return;
    }
    this.log.debug('unexpected session.created ignored');
  }

  private handleSessionUpdated(): void {
    if (this.phase === 'awaiting_updated') {
      this.phase = 'open';
      this.startHeartbeat();
      this.emit({ type: 'ready' });
      this.settle?.resolve();
      return;
    }
    this.log.debug({ phase: this.phase }, 'session.updated');
  }

  private handleServerError(m: Extract<Mapped, { kind: 'server_error' }>): void {
    if (this.phase === 'awaiting_updated' || this.phase === 'awaiting_created' || this.phase === 'connecting') {
      // The server rejected the handshake (e.g. an invalid session.update).
      this.failConnect(new ModelConnectError(m.rejection.message, m.rejection.retryable), 'rejected');
      return;
    }
    this.log.warn(m.warning.fields, m.warning.msg);
    this.emit(m.event);
  }

  // -- delivery -------------------------------------------------------------

  private emit(ev: ModelEvent): void {
    // After a local close() nothing more is reported, also not what the socket still reads while it closes.
    if (this.closedLocally) return;
    this.outlet.emit(ev);
  }

  onEvent(listener: (ev: ModelEvent) => void): void {
    this.outlet.listen(listener);
  }

  // -- client events ---------------------------------------------------------

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

  /** Client events are only sent once the session is configured (sessionUpdate goes through sendRaw directly). */
  private send(text: string): void {
    if (this.phase !== 'open') {
      this.counters.dropped++;
      return;
    }
    this.sendRaw(text);
  }

  appendAudio(base64: string): void {
    // A stalled model socket must not buffer caller audio without bound: past the cap, audio is dropped
    // (control events still go out). Fresh audio matters more than a backlog the model will never catch up on.
    const ws = this.ws;
    if (ws && ws.bufferedAmount > MAX_BUFFERED_AUDIO_BYTES) {
      this.counters.dropped++;
      this.counters.audioDroppedForBackpressure++;
      return;
    }
    // Hot path (50/s per call): one raw frame in one socket write when ws has nothing in flight; else ws.send.
    if (this.phase === 'open' && ws) {
      try {
        if (writeAppend(ws, base64)) {
          this.counters.sent++;
          this.counters.appendsLean++;
          return;
        }
      } catch {
        this.counters.dropped++; // the socket failed under us; its error/close events report it
        return;
      }
    }
    this.send(appendAudioEvent(base64));
  }

  sendUserText(text: string): void {
    this.send(userTextEvent(text));
  }

  createResponse(instructions?: string): void {
    this.send(responseCreateEvent(instructions));
  }

  cancelResponse(): void {
    this.send(responseCancelEvent());
  }

  truncate(itemId: string, audioEndMs: number): void {
    this.send(truncateEvent(itemId, audioEndMs));
  }

  sendToolResult(callId: string, output: string, respond: boolean): void {
    this.send(functionCallOutputEvent(callId, output));
    if (respond) this.send(responseCreateEvent());
  }

  /** Earlier conversation items, in order, without asking for a response. */
  addHistory(items: readonly ConversationItem[]): void {
    for (const item of items) this.send(replayItemEvent(item));
  }

  close(): void {
    if (this.closedLocally) return;
    this.closedLocally = true;
    const wasOpen = this.phase === 'open';
    if (!wasOpen) this.failConnect(new ModelConnectError('model session closed during connect', false), 'aborted');
    this.outlet.clear();
    this.phase = 'closed';
    this.stopHeartbeat();
    const ws = this.ws;
    if (!ws) return;
    try {
      if (ws.readyState === WebSocket.OPEN) ws.close(1000, 'call ended');
      else ws.terminate();
    } catch {
      // already gone
    }
    // Do not wait on a peer that never answers the close handshake.
    const t = setTimeout(() => this.terminate(), 2000);
    t.unref();
    ws.once('close', () => clearTimeout(t));
  }
}
