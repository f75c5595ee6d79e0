/**
 * A local stand-in for the OpenAI Realtime API (GA interface), for tests,
 * the demo and the bench. It implements the protocol on its own (no code
 * shared with src/realtime) as PROTOCOLS.md describes it: bearer auth, the
 * beta-header refusal, session.created → session.update → session.updated,
 * energy-based server VAD over the audio it receives (PCM16 24 kHz or
 * µ-law), scripted transcripts and spoken replies with real audio streamed
 * faster than real time, scripted function calls, response.cancel and
 * conversation.item.truncate with the real server's errors, and barge-in.
 *
 * It also speaks the shapes of the 2026 models (gpt-realtime-2 and later):
 * a response may hold several output items — a spoken preamble, several
 * spoken messages, several function calls whose arguments stream one call
 * after another — and a tool round is answered once every call has its
 * output and the client asks with `response.create`. Responses can be made
 * to fail (`status: failed|incomplete` with the real `status_details`),
 * `rate_limits.updated` follows each response's start and end, and the
 * stand-in can refuse upgrades or drop a socket with or without a close
 * frame, for reconnect tests.
 *
 * What it says comes from a scenario (scenarios.ts); by default the
 * eligibility call's.
 *
 * Everything a client sends is recorded per session for assertions.
 */
import { createServer as createHttpServer, STATUS_CODES, type IncomingMessage } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { speechLike, ulawEncode, WindowLevel } from './audio.js';
import { FRAME_MS, bytesPerMs } from '../dsp/format.js';
import { eligibilityScenario, type Scenario, type ScenarioCall, type ScenarioFailure, type ScenarioTurn } from './scenarios.js';

export interface ModelStandInOptions {
  port?: number;
  host?: string;
  tls?: { cert: string | Buffer; key: string | Buffer };
  scenario?: Scenario;
  /** Alias of `scenario`. */
  script?: Scenario;
  /** A scenario per session, by the order sessions connect (0, 1, …); `scenario` where it returns undefined. */
  scenarioFor?: (sessionIndex: number) => Scenario | undefined;
  /**
   * How many sessions' records `sessions` keeps, in connect order (default
   * all). A long fuzz run keeps only the first (its real call), so what the
   * stand-in records does not count as the relay's memory.
   */
  recordSessions?: number;
  audioSpeedup?: number;
  transcriptDelayMs?: number;
  responseDelayMs?: number;
  /** Limits reported in `rate_limits.updated` (per minute; defaults 5000 requests, 40000 tokens). */
  rateLimits?: { requests?: number; tokens?: number };
  /** Told about refused upgrades and every error event sent (pino's `log.info.bind(log)` fits). */
  log?: (fields: Record<string, unknown>, msg: string) => void;
}

/** One output item of a response, as sent. */
export interface StandInOutputItem {
  id: string;
  outputIndex: number;
  type: 'message' | 'function_call';
  /** Message items: the full text (the transcript). */
  text?: string;
  callId?: string;
  name?: string;
  arguments?: string;
  /** Message items: audio sent so far (ms). */
  audioMsSent: number;
}

export interface StandInResponse {
  id: string;
  /** Id of output item 0 (allocated when the response starts). */
  itemId: string;
  status: 'in_progress' | 'completed' | 'cancelled' | 'failed' | 'incomplete';
  /** Audio sent over all message items (ms). */
  audioMsSent: number;
  /** The message items' texts, space-joined. */
  text: string;
  items: StandInOutputItem[];
  /** `response.status_details` as sent in response.done. */
  statusDetails?: unknown;
  /** Who asked for it: the server VAD at the end of a caller turn, or the client's response.create. */
  createdBy: 'vad' | 'client';
  createdAt: number;
  doneAt?: number;
  firstDeltaAt?: number;
}

/** A `conversation.item.create` item as received, with its text content flattened. */
export interface StandInItem {
  at: number;
  type: string;
  id?: string;
  role?: string;
  /** Text of every content part (`text` or `transcript`), space-joined. */
  text?: string;
  call_id?: string;
  name?: string;
  arguments?: string;
  output?: string;
  raw: unknown;
}

export interface StandInSession {
  /** The model named in the upgrade URL (`?model=`). */
  model: string;
  format: 'pcm24k' | 'ulaw8k' | undefined;
  sessionUpdate: any;
  events: { type: string; at: number }[];
  audioMsReceived: number;
  appendTimes: number[];
  truncates: { item_id: string; audio_end_ms: number }[];
  /** Every function_call_output received (times are performance.now() ms). */
  toolOutputs: { call_id: string; output: string; at: number }[];
  /** Every function call issued: when its arguments were done, and in which response. */
  toolCalls: { call_id: string; name: string; arguments: string; responseId: string; argsDoneAt: number }[];
  userTexts: string[];
  /** Every conversation.item.create item received, of any type. */
  items: StandInItem[];
  /**
   * Every response.create received: when, whether a response was active
   * then (the real server refuses it), and how many calls of the open tool
   * round still had no output.
   */
  responseCreates: { at: number; active: boolean; pendingOutputs: number }[];
  responses: StandInResponse[];
  errorsSent: { code: string }[];
  closed: boolean;
  /** Close with a close frame carrying `code`. */
  dropSocket(code?: number): void;
  /** Destroy the TCP socket without a close frame (the client sees 1006). */
  dropSocketAbruptly(): void;
}

export interface ModelStandIn {
  url: string;
  baseUrl: string;
  /** Same as baseUrl (http(s)://127.0.0.1:PORT/v1): what the openai package takes as baseURL. */
  httpBaseUrl: string;
  port: number;
  sessions: StandInSession[];
  /** Upgrades refused by refuseNextConnections/refuseAll (times are performance.now() ms). */
  refused: { at: number; status: number }[];
  /** Refuse the next `n` WebSocket upgrades with HTTP `status` (default 503); later ones are accepted. */
  refuseNextConnections(n: number, status?: number): void;
  /** Refuse every upgrade with `status` (default 503) while on. */
  refuseAll(on: boolean, status?: number): void;
  /**
   * Exhaust a rate limit for `resetSeconds`: `rate_limits.updated` reports it
   * with remaining 0, and every response started before the reset fails with
   * `rate_limit_exceeded`.
   */
  exhaustRateLimit(resetSeconds: number, name?: 'requests' | 'tokens'): void;
  close(): Promise<void>;
}

const MS_PER_CHAR = 65;
/** How callbridge words keypad input as a user message: a replayed one is not a spoken caller turn. */
const KEYPAD_TEXT = 'The caller pressed these keys';
/** Pause between two arguments deltas of one call (ms). */
const ARGS_DELTA_MS = 5;
const ARGS_DELTAS = 3;
const DEFAULT_GAP_MS = 150;
/** `session.reasoning.effort` values of the reasoning models (gpt-realtime-2 and later). */
const REASONING_EFFORTS: readonly unknown[] = ['minimal', 'low', 'medium', 'high', 'xhigh'];
export const WAITING_REPLY = "I'm still waiting on that.";

/**
 * Reply audio: a 1 s speech-like clip per format, synthesised once and tiled
 * to the length wanted (whole 100 ms steps), cached by length and format.
 * Synthesis costs far more than relaying, and blocks the event loop it
 * shares with the relay and the simulated caller in tests: a load test must
 * measure the relay, not this, and a stall must not starve a playout.
 */
const CLIP_MS = 1000;
const clips = new Map<'pcm24k' | 'ulaw8k', Buffer>();
const replyCache = new Map<string, Buffer>();
function replyAudio(durationMs: number, format: 'pcm24k' | 'ulaw8k'): Buffer {
  const ms = Math.max(100, Math.round(durationMs / 100) * 100);
  const key = `${format}:${ms}`;
  let bytes = replyCache.get(key);
  if (!bytes) {
    let clip = clips.get(format);
    if (!clip) {
      const pcm = speechLike(CLIP_MS, format === 'ulaw8k' ? 8000 : 24000, 3);
      clip = format === 'ulaw8k' ? Buffer.from(ulawEncode(pcm)) : Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength);
      clips.set(format, clip);
    }
    bytes = Buffer.alloc((ms / CLIP_MS) * clip.length);
    for (let off = 0; off < bytes.length; off += clip.length) clip.copy(bytes, off, 0, Math.min(clip.length, bytes.length - off));
    if (replyCache.size > 256) replyCache.clear();
    replyCache.set(key, bytes);
  }
  return bytes;
}
/** Pending connections the listening socket queues (the kernel caps it at net.core.somaxconn). */
const LISTEN_BACKLOG = 4096;
/** The VAD reads every 3rd sample of 24 kHz input (an 8 kHz decimation: speech energy lies below 4 kHz). */
const VAD_STRIDE = 3;
/**
 * A reply's audio deltas, base64, cut as playMessage cuts them (irregular
 * `sizes` in turn, the first `len` bytes of `all`): encoded once per clip and
 * length, not per delta of every response.
 */
const chunkCache = new WeakMap<Buffer, Map<number, { b64: string; bytes: number }[]>>();
function audioChunks(all: Buffer, len: number, sizes: readonly number[]): { b64: string; bytes: number }[] {
  let byLen = chunkCache.get(all);
  if (!byLen) chunkCache.set(all, (byLen = new Map()));
  let chunks = byLen.get(len);
  if (!chunks) {
    chunks = [];
    for (let off = 0, k = 0; off < len; k++) {
      const n = Math.min(sizes[k % sizes.length]!, len - off);
      chunks.push({ b64: all.toString('base64', off, off + n), bytes: n });
      off += n;
    }
    byLen.set(len, chunks);
  }
  return chunks;
}
/** Reply audio delta sizes in turn, bytes (odd counts included, like the real service). */
const ULAW_CHUNKS = [800, 1201, 640, 1999] as const;
const PCM_CHUNKS = [4800, 7201, 2399, 9600, 3841] as const;
const MAX_REPLY_MS = 6000;
/** Spoken length of a reply (ms): about 65 ms per character, 300 ms to 6 s. */
function replyMs(text: string): number {
  return Math.min(MAX_REPLY_MS, Math.max(300, text.length * MS_PER_CHAR));
}

/** Organisation-wide rate limits, shared by every session of one stand-in. */
class RateLimits {
  /** performance.now() ms until which `name` is exhausted. */
  private exhaustedUntil = 0;
  private exhaustedName: 'requests' | 'tokens' = 'requests';
  constructor(
    private readonly requestLimit: number,
    private readonly tokenLimit: number,
  ) {}

  exhaust(resetSeconds: number, name: 'requests' | 'tokens'): void {
    this.exhaustedUntil = performance.now() + resetSeconds * 1000;
    this.exhaustedName = name;
  }

  /** Seconds until the exhausted limit resets, or 0 when none is exhausted. */
  blockedSeconds(): number {
    return Math.max(0, (this.exhaustedUntil - performance.now()) / 1000);
  }

  blockedName(): 'requests' | 'tokens' {
    return this.exhaustedName;
  }

  /** The `rate_limits` array of a `rate_limits.updated` event. */
  snapshot(tokensUsed: number): { name: 'requests' | 'tokens'; limit: number; remaining: number; reset_seconds: number }[] {
    const blocked = this.blockedSeconds();
    const entry = (name: 'requests' | 'tokens', limit: number, used: number, refillS: number) =>
      blocked > 0 && this.exhaustedName === name
        ? { name, limit, remaining: 0, reset_seconds: Math.round(blocked * 1000) / 1000 }
        : { name, limit, remaining: Math.max(0, limit - used), reset_seconds: refillS };
    return [entry('requests', this.requestLimit, 1, 0.012), entry('tokens', this.tokenLimit, tokensUsed, Math.round((tokensUsed / this.tokenLimit) * 60_000) / 1000)];
  }
}

export async function startModelStandIn(opts: ModelStandInOptions = {}): Promise<ModelStandIn> {
  const scenario = opts.scenario ?? opts.script ?? eligibilityScenario;
  const http = opts.tls ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }) : createHttpServer();
  http.on('request', (_req, res) => {
    res.writeHead(404).end();
  });
  const wss = new WebSocketServer({ noServer: true, maxPayload: 16 * 1024 * 1024 });
  const sessions: StandInSession[] = [];
  let connected = 0;
  const live = new Set<Session>();
  const rate = new RateLimits(opts.rateLimits?.requests ?? 5000, opts.rateLimits?.tokens ?? 40_000);
  const refused: { at: number; status: number }[] = [];
  let refuseNext = 0;
  let refuseNextStatus = 503;
  let refuseAllStatus: number | null = null;

  http.on('upgrade', (req: IncomingMessage, socket, head) => {
    // A client that resets the connection (it read our refusal and went): the socket's error has no one else to go to.
    socket.on('error', () => {});
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname !== '/v1/realtime') {
      socket.end('HTTP/1.1 404 Not Found\r\n\r\n');
      return;
    }
    const refuseStatus = refuseAllStatus ?? (refuseNext > 0 ? refuseNextStatus : null);
    if (refuseStatus !== null) {
      if (refuseAllStatus === null) refuseNext--;
      refused.push({ at: performance.now(), status: refuseStatus });
      opts.log?.({ status: refuseStatus }, `stand-in: upgrade refused on request (${refuseStatus})`);
      const body = JSON.stringify({ error: { message: 'The server is temporarily unable to accept connections.', type: 'server_error', code: null } });
      socket.end(
        `HTTP/1.1 ${refuseStatus} ${STATUS_CODES[refuseStatus] ?? 'Error'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      );
      return;
    }
    const auth = req.headers.authorization ?? '';
    if (!/^Bearer \S+/.test(auth)) {
      opts.log?.({ path: url.pathname }, 'stand-in: upgrade without bearer token refused (401)');
      socket.end('HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\n\r\n{"error":{"message":"Missing bearer authentication","code":"invalid_api_key"}}');
      return;
    }
    const beta = req.headers['openai-beta'];
    wss.handleUpgrade(req, socket, head, (ws) => {
      const index = connected++;
      const s = new Session(ws, opts.scenarioFor?.(index) ?? scenario, opts, url.searchParams.get('model') ?? 'gpt-realtime', rate);
      if (index < (opts.recordSessions ?? Infinity)) sessions.push(s.record);
      live.add(s);
      ws.on('close', () => live.delete(s));
      if (beta) {
        s.error('beta_api_shape_disabled', 'The beta Realtime API shape is disabled; use the GA interface.');
        ws.close(1008, 'beta api shape disabled');
        return;
      }
      s.start();
    });
  });

  // A deep accept queue: a relay under load test opens hundreds of model sessions within a second,
  // and Node's default backlog (511) drops the SYNs beyond it (the client retries after 1, 3, 7 s…).
  await new Promise<void>((resolve) => http.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', LISTEN_BACKLOG, resolve));
  const port = (http.address() as AddressInfo).port;
  const host = opts.host ?? '127.0.0.1';
  const baseUrl = `${opts.tls ? 'https' : 'http'}://${host}:${port}/v1`;
  return {
    url: `${opts.tls ? 'wss' : 'ws'}://${host}:${port}/v1/realtime`,
    baseUrl,
    httpBaseUrl: baseUrl,
    port,
    sessions,
    refused,
    refuseNextConnections(n: number, status = 503) {
      refuseNext = Math.max(0, Math.floor(n));
      refuseNextStatus = status;
    },
    refuseAll(on: boolean, status = 503) {
      refuseAllStatus = on ? status : null;
    },
    exhaustRateLimit(resetSeconds: number, name: 'requests' | 'tokens' = 'requests') {
      rate.exhaust(resetSeconds, name);
    },
    async close() {
      for (const s of live) s.shutdown();
      for (const ws of wss.clients) ws.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}

interface Vad {
  threshold: number;
  prefixPaddingMs: number;
  silenceDurationMs: number;
  createResponse: boolean;
  interruptResponse: boolean;
}

/** What one response will send: its output items in order, and how it ends. */
interface Plan {
  items: ({ kind: 'message'; text: string } | { kind: 'call'; name: string; args: string })[];
  /** Between two consecutive calls (ms). */
  gapMs: number;
  /** Follow-up for the tool round this response opens (if it has calls), and how it fails first. */
  followUp?: (outputs: string[]) => string | string[];
  followUpFail?: ScenarioFailure;
  /** End as failed/incomplete instead of completed; message audio is cut at `partialAudioMs`. */
  failure?: { status: 'failed' | 'incomplete'; details: Record<string, unknown>; partialAudioMs: number; resetSeconds?: number };
}

interface Active {
  resp: StandInResponse;
  timers: NodeJS.Timeout[];
  /** Output items as they appear in response.done's `output`. */
  output: Record<string, unknown>[];
}

/** The calls of one response and their outputs; answered by one response.create once all are in. */
interface ToolRound {
  callIds: string[];
  outputs: Map<string, string>;
  followUp: (outputs: string[]) => string | string[];
  followUpFail?: ScenarioFailure;
  /** Follow-ups failed so far. */
  failed: number;
  /** False while the response that issues the calls is still in progress. */
  responseDone: boolean;
}

const STOCK_ERROR_MESSAGES: Record<string, string> = {
  server_error: 'The server had an error while processing your request. Sorry about that!',
  rate_limit_exceeded: 'Rate limit reached for requests. Please try again later.',
};

class Session {
  readonly record: StandInSession;
  private seq = 0;
  private vad: Vad | null = { threshold: 0.5, prefixPaddingMs: 300, silenceDurationMs: 500, createResponse: true, interruptResponse: true };
  private inputMs = 0;
  /** Audio appended since the last commit/clear (ms): a manual commit needs ≥ 100 ms. */
  private uncommittedMs = 0;
  /** The VAD's input level, per 20 ms window (every VAD_STRIDE-th sample at 24 kHz). */
  private readonly level = new WindowLevel((dbfs) => this.vadWindow(dbfs));
  private speaking = false;
  private speechStartMs = 0;
  private lastVoiceEndMs = 0;
  private inputItemId = '';
  private turn = 0;
  private active: Active | null = null;
  private round: ToolRound | null = null;
  /** A caller turn whose last response failed: the next response.create answers it. */
  private unanswered: ScenarioTurn | null = null;
  private readonly failures = new Map<ScenarioTurn, number>();
  private pendingUserText: string | null = null;
  /** Items arriving before any audio or response.create are a replay of an earlier session's conversation. */
  private replaying = true;
  private replayOwed: ScenarioTurn | null = null;
  private greeted = false;
  /** A conversation was replayed into this session (messages before any audio) and `scenario.resume` is not yet spoken. */
  private resumeOwed = false;
  private queuedTurn: (() => void) | null = null;
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(
    private readonly ws: WebSocket,
    private readonly scenario: Scenario,
    private readonly opts: ModelStandInOptions,
    model: string,
    private readonly rate: RateLimits,
  ) {
    this.record = {
      model,
      format: undefined,
      sessionUpdate: undefined,
      events: [],
      audioMsReceived: 0,
      appendTimes: [],
      truncates: [],
      toolOutputs: [],
      toolCalls: [],
      userTexts: [],
      items: [],
      responseCreates: [],
      responses: [],
      errorsSent: [],
      closed: false,
      dropSocket: (code = 1011) => {
        this.shutdown();
        ws.close(code, 'stand-in dropped the socket');
      },
      dropSocketAbruptly: () => {
        this.shutdown();
        ws.terminate(); // destroys the TCP socket: no close frame
      },
    };
    ws.on('message', (data, isBinary) => this.onMessage(data.toString(), isBinary));
    ws.on('close', () => {
      this.record.closed = true;
      this.shutdown();
    });
  }

  start(): void {
    this.send({ type: 'session.created', session: this.sessionObject() });
  }

  shutdown(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    if (this.active) for (const t of this.active.timers) clearTimeout(t);
  }

  error(code: string, message: string, eventId?: string, param: string | null = null): void {
    this.record.errorsSent.push({ code });
    this.opts.log?.({ code, param, eventId }, `stand-in: error sent: ${message}`);
    this.send({ type: 'error', error: { type: 'invalid_request_error', code, message, param, event_id: eventId ?? null } });
  }

  private send(ev: Record<string, unknown>): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    this.ws.send(JSON.stringify({ event_id: `event_${++this.seq}`, ...ev }));
  }

  /** An event already serialised after its event_id (`tail` starts with the closing quote of the id). */
  private sendRaw(tail: string): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    this.ws.send(`{"event_id":"event_${++this.seq}${tail}`);
  }

  private later(ms: number, fn: () => void): NodeJS.Timeout {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
    return t;
  }

  private sessionObject() {
    return {
      type: 'realtime',
      object: 'realtime.session',
      id: 'sess_standin',
      model: this.record.model,
      output_modalities: ['audio'],
      audio: {
        input: { format: this.record.format === 'ulaw8k' ? { type: 'audio/pcmu' } : { type: 'audio/pcm', rate: 24000 } },
        output: { format: this.record.format === 'ulaw8k' ? { type: 'audio/pcmu' } : { type: 'audio/pcm', rate: 24000 }, voice: 'marin' },
      },
    };
  }

  private onMessage(text: string, isBinary: boolean): void {
    const at = performance.now();
    if (isBinary) return this.error('invalid_request_error', 'Binary frames are not supported.');
    let ev: any;
    try {
      ev = JSON.parse(text);
    } catch {
      return this.error('invalid_json', 'The server could not parse the event as JSON.');
    }
    if (!ev || typeof ev.type !== 'string') return this.error('invalid_request_error', "Missing required parameter: 'type'.", ev?.event_id);
    this.record.events.push({ type: ev.type, at });
    switch (ev.type) {
      case 'session.update':
        return this.onSessionUpdate(ev);
      case 'input_audio_buffer.append':
        this.replaying = false;
        this.record.appendTimes.push(at);
        return this.onAppend(ev);
      case 'input_audio_buffer.commit':
        if (this.uncommittedMs < 100) {
          return this.error(
            'input_audio_buffer_commit_empty',
            `Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, but buffer only has ${this.uncommittedMs.toFixed(2)}ms of audio.`,
            ev.event_id,
          );
        }
        this.uncommittedMs = 0;
        return this.send({ type: 'input_audio_buffer.committed', previous_item_id: null, item_id: this.newItemId() });
      case 'input_audio_buffer.clear':
        this.uncommittedMs = 0;
        this.level.reset();
        return this.send({ type: 'input_audio_buffer.cleared' });
      case 'conversation.item.create':
        return this.onItemCreate(ev, at);
      case 'conversation.item.truncate':
        return this.onTruncate(ev);
      case 'response.create':
        return this.onResponseCreate(ev, at);
      case 'response.cancel':
        if (!this.active) return this.error('response_cancel_not_active', 'Cancellation failed: no active response found.', ev.event_id);
        return this.cancelActive('client_cancelled');
      default:
        return this.error('invalid_request_error', `Invalid value: '${String(ev.type).slice(0, 60)}'. Supported values are client events.`, ev.event_id, 'type');
    }
  }

  private onSessionUpdate(ev: any): void {
    const s = ev.session;
    if (!s || s.type !== 'realtime') {
      return this.error('invalid_request_error', "Missing required parameter: 'session.type'.", ev.event_id, 'session.type');
    }
    const fmt = s.audio?.input?.format;
    if (fmt) {
      if (fmt.type === 'audio/pcm' && (fmt.rate === undefined || fmt.rate === 24000)) this.record.format = 'pcm24k';
      else if (fmt.type === 'audio/pcmu') this.record.format = 'ulaw8k';
      else return this.error('invalid_value', `Invalid input audio format: ${JSON.stringify(fmt)}`, ev.event_id, 'session.audio.input.format');
    }
    const effort = s.reasoning?.effort;
    if (effort !== undefined && !REASONING_EFFORTS.includes(effort)) {
      return this.error(
        'invalid_value',
        `Invalid value: '${String(effort).slice(0, 20)}'. Supported values are: ${REASONING_EFFORTS.map((e) => `'${e}'`).join(', ')}.`,
        ev.event_id,
        'session.reasoning.effort',
      );
    }
    const td = s.audio?.input?.turn_detection;
    if (td === null) this.vad = null;
    else if (td) {
      this.vad = {
        threshold: td.threshold ?? 0.5,
        prefixPaddingMs: td.prefix_padding_ms ?? 300,
        silenceDurationMs: td.silence_duration_ms ?? 500,
        createResponse: td.create_response ?? true,
        interruptResponse: td.interrupt_response ?? true,
      };
    }
    this.record.sessionUpdate = s;
    this.send({ type: 'session.updated', session: { ...this.sessionObject(), ...s } });
  }

  private onAppend(ev: any): void {
    if (typeof ev.audio !== 'string') return this.error('invalid_request_error', "Missing required parameter: 'audio'.", ev.event_id, 'audio');
    const bytes = Buffer.from(ev.audio, 'base64');
    const format = this.record.format ?? 'pcm24k';
    const rate = format === 'ulaw8k' ? 8000 : 24000;
    const samples = format === 'ulaw8k' ? bytes.length : bytes.length >> 1;
    this.record.audioMsReceived += (samples * 1000) / rate;
    this.uncommittedMs += (samples * 1000) / rate;
    // Energy per 20 ms window (24 kHz: every VAD_STRIDE-th sample, an 8 kHz decimation, 160 a window).
    this.level.push(bytes, format === 'ulaw8k', (rate * FRAME_MS) / 1000, VAD_STRIDE);
  }

  /** One 20 ms window of input (its level, dBFS): energy VAD with prefix padding and a silence hang-over. */
  private vadWindow(dbfs: number): void {
    const startMs = this.inputMs;
    this.inputMs += FRAME_MS;
    if (!this.vad) return;
    const voiced = dbfs > -60 + 40 * this.vad.threshold; // threshold 0.5 → -40 dBFS
    if (voiced) {
      this.lastVoiceEndMs = this.inputMs;
      if (!this.speaking) {
        this.speaking = true;
        this.speechStartMs = Math.max(0, startMs - this.vad.prefixPaddingMs);
        this.inputItemId = this.newItemId();
        this.send({ type: 'input_audio_buffer.speech_started', audio_start_ms: this.speechStartMs, item_id: this.inputItemId });
        if (this.active && this.vad.interruptResponse) this.cancelActive('turn_detected');
      }
    } else if (this.speaking && this.inputMs - this.lastVoiceEndMs >= this.vad.silenceDurationMs) {
      this.speaking = false;
      this.endTurn();
    }
  }

  private endTurn(): void {
    const itemId = this.inputItemId;
    this.uncommittedMs = 0;
    this.send({ type: 'input_audio_buffer.speech_stopped', audio_end_ms: this.lastVoiceEndMs, item_id: itemId });
    this.send({ type: 'input_audio_buffer.committed', previous_item_id: null, item_id: itemId });
    const item = { id: itemId, type: 'message', role: 'user', status: 'completed', content: [{ type: 'input_audio', transcript: null }] };
    this.send({ type: 'conversation.item.added', previous_item_id: null, item });
    this.send({ type: 'conversation.item.done', previous_item_id: null, item });
    const turn = this.scenario.turns[this.turn++];
    const transcript = turn?.callerTranscript ?? 'Mm-hm.';
    this.later(this.opts.transcriptDelayMs ?? 300, () =>
      this.send({ type: 'conversation.item.input_audio_transcription.completed', item_id: itemId, content_index: 0, transcript, usage: { type: 'duration', seconds: 1 } }),
    );
    if (!this.vad?.createResponse) return;
    const respond = () => {
      // Like the real model, the turn's answer takes in a text item that arrived with it (keypad digits):
      // with no scripted turn, that text is what gets answered.
      if (!turn && this.pendingUserText !== null) {
        const text = this.pendingUserText;
        this.pendingUserText = null;
        return this.answerTurn({ callerTranscript: transcript, reply: this.scenario.onUserText?.(text) ?? `You pressed ${text.replace(/[^0-9*#]/g, '')}.` }, 'vad');
      }
      this.answerTurn(turn ?? { callerTranscript: transcript, reply: 'Okay.' }, 'vad');
    };
    // One response at a time: a turn that ends while another response is
    // still generating is answered when that one is done.
    if (this.active) this.queuedTurn = respond;
    else respond();
  }

  /** Answers a caller turn, or fails it as scripted (then it stays unanswered until a response.create). */
  private answerTurn(turn: ScenarioTurn, by: 'vad' | 'client'): void {
    this.unanswered = null;
    if (this.rate.blockedSeconds() > 0) {
      this.unanswered = turn;
      return this.runResponse(this.rateLimitedPlan(), by);
    }
    const failedSoFar = this.failures.get(turn) ?? 0;
    if (turn.fail && failedSoFar < turn.fail.times) {
      this.failures.set(turn, failedSoFar + 1);
      this.unanswered = turn;
      return this.runResponse(this.failurePlan(turn.preamble ?? turn.replies?.[0] ?? turn.reply ?? 'Okay.', turn.fail), by);
    }
    this.runResponse(this.turnPlan(turn), by);
  }

  private turnPlan(turn: ScenarioTurn): Plan {
    const items: Plan['items'] = [];
    if (turn.preamble) items.push({ kind: 'message', text: turn.preamble });
    const calls: ScenarioCall[] = [...(turn.tool ? [turn.tool] : []), ...(turn.tools ?? [])];
    const spoken = turn.replies ?? (turn.reply !== undefined ? [turn.reply] : calls.length === 0 && !turn.preamble ? ['Okay.'] : []);
    for (const text of spoken) items.push({ kind: 'message', text });
    for (const c of calls) items.push({ kind: 'call', name: c.name, args: JSON.stringify(c.arguments) });
    const tool = turn.tool;
    const followUp =
      turn.followUp ??
      (tool && calls.length === 1 ? (outputs: string[]) => tool.reply(outputs[0] ?? '') : (outputs: string[]) => `I have ${outputs.length} results for you.`);
    return { items, gapMs: turn.gapMs ?? DEFAULT_GAP_MS, followUp: calls.length > 0 ? followUp : undefined, followUpFail: turn.followUpFail };
  }

  /** A response that ends as `fail` says; with partial audio it starts speaking `text`. */
  private failurePlan(text: string, fail: ScenarioFailure): Plan {
    const details: Record<string, unknown> =
      fail.status === 'failed'
        ? {
            type: 'failed',
            error: {
              type: fail.error?.type ?? 'server_error',
              code: fail.error?.code !== undefined ? fail.error.code : (fail.error?.type ?? 'server_error'),
              message: fail.error?.message ?? STOCK_ERROR_MESSAGES[fail.error?.type ?? 'server_error'] ?? 'The response failed.',
            },
          }
        : { type: 'incomplete', reason: fail.reason ?? 'max_output_tokens' };
    const partialAudioMs = fail.partialAudioMs ?? 0;
    return {
      items: partialAudioMs > 0 ? [{ kind: 'message', text }] : [],
      gapMs: 0,
      failure: { status: fail.status, details, partialAudioMs, resetSeconds: fail.resetSeconds },
    };
  }

  private rateLimitedPlan(): Plan {
    const name = this.rate.blockedName();
    const wait = this.rate.blockedSeconds().toFixed(3);
    return {
      items: [],
      gapMs: 0,
      failure: {
        status: 'failed',
        details: {
          type: 'failed',
          error: { type: 'rate_limit_exceeded', code: 'rate_limit_exceeded', message: `Rate limit reached for ${name}. Please try again in ${wait}s.` },
        },
        partialAudioMs: 0,
      },
    };
  }

  private onItemCreate(ev: any, at: number): void {
    const item = ev.item;
    if (!item || typeof item.type !== 'string') return this.error('invalid_request_error', "Missing required parameter: 'item'.", ev.event_id, 'item');
    const id = item.id ?? this.newItemId();
    const content = Array.isArray(item.content) ? (item.content as any[]) : [];
    const texts = content.map((c) => (typeof c?.text === 'string' ? c.text : typeof c?.transcript === 'string' ? c.transcript : '')).filter((t) => t !== '');
    this.record.items.push({
      at,
      type: item.type,
      id: typeof item.id === 'string' ? item.id : undefined,
      role: typeof item.role === 'string' ? item.role : undefined,
      text: texts.length > 0 ? texts.join(' ') : undefined,
      call_id: typeof item.call_id === 'string' ? item.call_id : undefined,
      name: typeof item.name === 'string' ? item.name : undefined,
      arguments: typeof item.arguments === 'string' ? item.arguments : undefined,
      output: typeof item.output === 'string' ? item.output : undefined,
      raw: item,
    });
    if (item.type === 'function_call_output') {
      if (typeof item.call_id !== 'string' || typeof item.output !== 'string') {
        return this.error('invalid_request_error', 'function_call_output needs call_id and output.', ev.event_id, 'item');
      }
      this.record.toolOutputs.push({ call_id: item.call_id, output: item.output, at });
      if (this.round?.callIds.includes(item.call_id)) this.round.outputs.set(item.call_id, item.output);
    } else if (item.type === 'message' && item.role === 'user') {
      const text = content.map((c: any) => (c?.type === 'input_text' ? c.text : '')).join(' ');
      this.record.userTexts.push(text);
      if (this.replaying && !text.startsWith(KEYPAD_TEXT)) {
        // A caller turn replayed into this session (after a reconnect): it used up a scripted turn,
        // and it is owed an answer until an assistant message follows it.
        this.replayOwed = this.scenario.turns[this.turn++] ?? { callerTranscript: text, reply: 'Okay.' };
      } else {
        this.pendingUserText = text;
      }
    } else if (item.type === 'message' && item.role === 'assistant') {
      // Replayed assistant speech: this session's conversation is under way (no greeting), and the turn before it is answered.
      this.greeted = true;
      if (this.replaying && this.scenario.resume !== undefined) this.resumeOwed = true;
      this.replayOwed = null;
    }
    this.send({ type: 'conversation.item.added', previous_item_id: null, item: { ...item, id } });
    this.send({ type: 'conversation.item.done', previous_item_id: null, item: { ...item, id } });
  }

  private onTruncate(ev: any): void {
    const item = this.record.responses.flatMap((r) => r.items).find((i) => i.id === ev.item_id && i.type === 'message');
    if (!item) return this.error('item_truncate_invalid_item_id', `Item with item_id '${ev.item_id}' not found.`, ev.event_id, 'item_id');
    if (typeof ev.audio_end_ms !== 'number' || ev.audio_end_ms < 0 || ev.audio_end_ms > Math.ceil(item.audioMsSent)) {
      return this.error(
        'invalid_value',
        `Audio content of ${Math.round(item.audioMsSent)}ms is already shorter than ${ev.audio_end_ms}ms`,
        ev.event_id,
        'audio_end_ms',
      );
    }
    this.record.truncates.push({ item_id: ev.item_id, audio_end_ms: ev.audio_end_ms });
    this.send({ type: 'conversation.item.truncated', item_id: ev.item_id, content_index: ev.content_index ?? 0, audio_end_ms: ev.audio_end_ms });
  }

  private onResponseCreate(ev: any, at: number): void {
    this.replaying = false;
    const round = this.round;
    const pendingOutputs = round ? round.callIds.filter((id) => !round.outputs.has(id)).length : 0;
    this.record.responseCreates.push({ at, active: this.active !== null, pendingOutputs });
    if (this.active) {
      return this.error('conversation_already_has_active_response', `Conversation already has an active response in progress: ${this.active.resp.id}.`, ev.event_id);
    }
    const instructions = typeof ev.response?.instructions === 'string' ? ev.response.instructions : undefined;
    if (this.unanswered) return this.answerTurn(this.unanswered, 'client');
    if (this.replayOwed) {
      const owed = this.replayOwed;
      this.replayOwed = null;
      return this.answerTurn(owed, 'client');
    }
    if (this.rate.blockedSeconds() > 0) return this.runResponse(this.rateLimitedPlan(), 'client');
    if (round && round.responseDone && pendingOutputs === 0) {
      const said = round.followUp(round.callIds.map((id) => round.outputs.get(id) ?? ''));
      const texts = Array.isArray(said) ? said : [said];
      if (round.followUpFail && round.failed < round.followUpFail.times) {
        round.failed++;
        return this.runResponse(this.failurePlan(texts[0] ?? 'Okay.', round.followUpFail), 'client');
      }
      this.round = null;
      return this.speak(texts);
    }
    if (round && pendingOutputs > 0) {
      // Asked before every call has its output: a real model answers
      // without the missing results. An out-of-band prompt (the relay's
      // "still checking" filler) gets a short hold message instead.
      return this.speak([instructions !== undefined ? 'One moment, please.' : WAITING_REPLY]);
    }
    if (this.pendingUserText !== null) {
      const text = this.pendingUserText;
      this.pendingUserText = null;
      return this.speak([this.scenario.onUserText?.(text) ?? `You pressed ${text.replace(/[^0-9*#]/g, '')}.`]);
    }
    if (this.resumeOwed) {
      // The first response after a replayed conversation (a call back from a failed transfer): the scenario's own line.
      this.resumeOwed = false;
      return this.speak([this.scenario.resume!]);
    }
    if (!this.greeted) {
      this.greeted = true;
      return this.speak([this.scenario.greeting]);
    }
    return this.speak([instructions !== undefined ? 'One moment, please.' : 'Okay.']);
  }

  private speak(texts: string[]): void {
    this.runResponse({ items: texts.map((text) => ({ kind: 'message' as const, text })), gapMs: 0 }, 'client');
  }

  /**
   * Plays a response: response.created, rate_limits.updated, then each
   * output item in turn (messages as audio + transcript, calls as streamed
   * arguments), then response.done and rate_limits.updated.
   */
  private runResponse(plan: Plan, createdBy: 'vad' | 'client'): void {
    const text = plan.items.flatMap((i) => (i.kind === 'message' ? [i.text] : [])).join(' ');
    const resp: StandInResponse = {
      id: `resp_${++this.seq}`,
      itemId: this.newItemId(),
      status: 'in_progress',
      audioMsSent: 0,
      text,
      items: [],
      createdBy,
      createdAt: performance.now(),
    };
    this.record.responses.push(resp);
    const act: Active = { resp, timers: [], output: [] };
    this.active = act;
    // A response with calls opens a new tool round (an older one still
    // waiting for outputs is dropped, as the model moved on).
    const round: ToolRound | null =
      plan.followUp && plan.items.some((i) => i.kind === 'call') ? { callIds: [], outputs: new Map(), followUp: plan.followUp, followUpFail: plan.followUpFail, failed: 0, responseDone: false } : null;
    if (round) this.round = round;
    this.send({ type: 'response.created', response: { id: resp.id, object: 'realtime.response', status: 'in_progress', output: [] } });
    this.send({ type: 'rate_limits.updated', rate_limits: this.rate.snapshot(0) });
    // Synthesise every message's audio now, before the response delay: the
    // synthesis stalls the event loop, and a stall just before the first
    // delta (rather than before the delay) starves the caller's playout.
    const format = this.record.format ?? 'pcm24k';
    const audio = plan.items.map((i) => (i.kind === 'message' ? replyAudio(replyMs(i.text), format) : undefined));
    let index = 0;
    const next = (delayMs: number) => {
      act.timers.push(
        this.later(delayMs, () => {
          if (this.active !== act) return;
          const item = plan.items[index];
          if (!item) {
            if (plan.failure) {
              if (plan.failure.resetSeconds !== undefined) this.rate.exhaust(plan.failure.resetSeconds, 'requests');
              return this.finish(act, plan.failure.status, plan.failure.details);
            }
            if (round && this.round === round) round.responseDone = true;
            return this.finish(act, 'completed', null);
          }
          const outputIndex = index++;
          const itemId = outputIndex === 0 ? resp.itemId : this.newItemId();
          const following = plan.items[index];
          const gap = item.kind === 'call' && following?.kind === 'call' ? plan.gapMs : 0;
          if (item.kind === 'message') {
            const cutMs = plan.failure ? plan.failure.partialAudioMs : Infinity;
            this.playMessage(act, item.text, audio[outputIndex]!, outputIndex, itemId, cutMs, () => next(gap));
          } else {
            this.playCall(act, item.name, item.args, outputIndex, itemId, round, () => next(gap));
          }
        }),
      );
    };
    next(this.opts.responseDelayMs ?? 150);
  }

  /** One spoken message item: audio deltas in irregular chunks with transcript deltas; `cutMs` ends it early (incomplete). */
  private playMessage(act: Active, text: string, all: Buffer, outputIndex: number, itemId: string, cutMs: number, done: () => void): void {
    const { resp } = act;
    const format = this.record.format ?? 'pcm24k';
    const perMs = bytesPerMs(format);
    const cut = cutMs < all.length / perMs;
    const len = cut ? Math.floor(cutMs * perMs) : all.length;
    // Irregular chunk sizes, odd byte counts included, like the real service.
    const sizes = format === 'ulaw8k' ? ULAW_CHUNKS : PCM_CHUNKS;
    const chunks = audioChunks(all, len, sizes);
    const speedup = this.opts.audioSpeedup ?? 4;
    const rec: StandInOutputItem = { id: itemId, outputIndex, type: 'message', text, audioMsSent: 0 };
    resp.items.push(rec);
    const item = { id: itemId, type: 'message', role: 'assistant', status: 'in_progress', content: [] as unknown[] };
    const ids = { response_id: resp.id, item_id: itemId, output_index: outputIndex, content_index: 0 };
    // The audio delta's JSON after its event_id, as JSON.stringify writes `{ event_id, type, ...ids, delta }`.
    const deltaHead = `","type":"response.output_audio.delta","response_id":${JSON.stringify(resp.id)},"item_id":${JSON.stringify(itemId)},"output_index":${outputIndex},"content_index":0,"delta":"`;
    const words = text.split(' ');
    let saidWords = 0;
    let off = 0;
    let k = 0;
    this.send({ type: 'response.output_item.added', response_id: resp.id, output_index: outputIndex, item });
    this.send({ type: 'response.content_part.added', ...ids, part: { type: 'audio', transcript: '' } });
    resp.firstDeltaAt ??= performance.now();
    const step = () => {
      if (this.active !== act) return;
      if (off < len) {
        const chunk = chunks[k++]!;
        const n = chunk.bytes;
        off += n;
        const chunkMs = n / perMs;
        rec.audioMsSent += chunkMs;
        resp.audioMsSent += chunkMs;
        this.sendRaw(`${deltaHead}${chunk.b64}"}`);
        const upTo = Math.min(words.length, Math.ceil((off / all.length) * words.length));
        if (upTo > saidWords) {
          this.send({ type: 'response.output_audio_transcript.delta', ...ids, delta: `${words.slice(saidWords, upTo).join(' ')} ` });
          saidWords = upTo;
        }
        act.timers.push(this.later(chunkMs / speedup, step));
        return;
      }
      const said = cut ? words.slice(0, saidWords).join(' ') : text;
      this.send({ type: 'response.output_audio.done', ...ids });
      this.send({ type: 'response.output_audio_transcript.done', ...ids, transcript: said });
      this.send({ type: 'response.content_part.done', ...ids, part: { type: 'audio', transcript: said } });
      const doneItem = { ...item, status: cut ? 'incomplete' : 'completed', content: [{ type: 'output_audio', transcript: said }] };
      act.output.push(doneItem);
      this.send({ type: 'response.output_item.done', response_id: resp.id, output_index: outputIndex, item: doneItem });
      done();
    };
    step();
  }

  /** One function call item: arguments in several deltas, then .done and output_item.done. */
  private playCall(act: Active, name: string, args: string, outputIndex: number, itemId: string, round: ToolRound | null, done: () => void): void {
    const { resp } = act;
    const callId = `call_${++this.seq}`;
    resp.items.push({ id: itemId, outputIndex, type: 'function_call', callId, name, arguments: args, audioMsSent: 0 });
    round?.callIds.push(callId);
    const item = { id: itemId, type: 'function_call', status: 'in_progress', call_id: callId, name, arguments: '' };
    const ids = { response_id: resp.id, item_id: itemId, output_index: outputIndex, call_id: callId };
    this.send({ type: 'response.output_item.added', response_id: resp.id, output_index: outputIndex, item });
    const size = Math.ceil(args.length / ARGS_DELTAS);
    let off = 0;
    const step = () => {
      if (this.active !== act) return;
      if (off < args.length) {
        this.send({ type: 'response.function_call_arguments.delta', ...ids, delta: args.slice(off, off + size) });
        off += size;
        if (off < args.length) {
          act.timers.push(this.later(ARGS_DELTA_MS, step));
          return;
        }
      }
      this.send({ type: 'response.function_call_arguments.done', ...ids, name, arguments: args });
      this.record.toolCalls.push({ call_id: callId, name, arguments: args, responseId: resp.id, argsDoneAt: performance.now() });
      const doneItem = { ...item, status: 'completed', arguments: args };
      act.output.push(doneItem);
      this.send({ type: 'response.output_item.done', response_id: resp.id, output_index: outputIndex, item: doneItem });
      done();
    };
    step();
  }

  private cancelActive(reason: 'turn_detected' | 'client_cancelled'): void {
    const act = this.active;
    if (!act) return;
    for (const t of act.timers) clearTimeout(t);
    // Calls never issued are no longer owed; a round with none issued is gone.
    if (this.round && !this.round.responseDone) {
      if (this.round.callIds.length === 0) this.round = null;
      else this.round.responseDone = true;
    }
    this.finish(act, 'cancelled', { type: 'cancelled', reason });
  }

  private finish(act: Active, status: 'completed' | 'cancelled' | 'failed' | 'incomplete', details: Record<string, unknown> | null): void {
    const { resp } = act;
    resp.status = status;
    resp.statusDetails = details;
    resp.doneAt = performance.now();
    if (this.active === act) this.active = null;
    const next = this.queuedTurn;
    this.queuedTurn = null;
    if (next) queueMicrotask(() => !this.active && next());
    const outAudio = Math.ceil(resp.audioMsSent / 50);
    const outText = Math.ceil(resp.text.length / 4);
    const inAudio = Math.ceil(this.record.audioMsReceived / 100);
    const total = outAudio + outText + inAudio + 120;
    this.send({
      type: 'response.done',
      response: {
        id: resp.id,
        object: 'realtime.response',
        status,
        status_details: details,
        output: act.output,
        usage: {
          total_tokens: total,
          input_tokens: inAudio + 120,
          output_tokens: outAudio + outText,
          input_token_details: { text_tokens: 120, audio_tokens: inAudio, cached_tokens: 64 },
          output_token_details: { text_tokens: outText, audio_tokens: outAudio },
        },
      },
    });
    this.send({ type: 'rate_limits.updated', rate_limits: this.rate.snapshot(total) });
  }

  private newItemId(): string {
    return `item_${++this.seq}`;
  }
}
