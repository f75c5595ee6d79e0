/**
 * A local stand-in for OpenAI GPT-Live over WebSocket (docs/live-protocol.md),
 * for tests, the demo and the bench. It implements the protocol on its own
 * (no code shared with src/live): bearer auth, `session.start` first and
 * validated (model, audio format, Responses delegation with function tools,
 * history limits), energy VAD over the caller's audio with timed input
 * transcript deltas, spoken output streamed faster than real time with timed
 * output transcript deltas, model-led barge-in (the model yields `yieldMs`
 * after the caller's speech onset), tools by delegation to a simulated
 * Responses backend (nested `response.event`s), cumulative usage, and
 * `session.close` → `session.closed`.
 *
 * What it says comes from the same scenarios as the Realtime stand-in
 * (scenarios.ts); by default the eligibility call's.
 *
 * Timing contract (what a client can rely on):
 * - Inside one utterance no two `session.output_audio.delta`s are more than
 *   `MAX_CHUNK_GAP_MS` (60 ms) apart, plus timer jitter.
 * - Between two utterances the output pauses at least `utterancePauseMs`
 *   (default 600 ms). There is no "done" event.
 * - Output transcript `start_ms`/`end_ms` place each word in the utterance's
 *   audio: the last word of an utterance ends exactly `audio ms` after the
 *   first word starts.
 * - The session timeline (ms) is the input audio received, pushed forward by
 *   the output audio sent when the model speaks.
 *
 * Everything a client sends is recorded per session for assertions.
 */
import { createServer as createHttpServer, STATUS_CODES, type IncomingMessage } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { speechLike, ulawEncode, WindowLevel } from './audio.js';
import { eligibilityScenario, type Scenario, type ScenarioCall, type ScenarioTurn } from './scenarios.js';

/** Wire audio formats the stand-in accepts (pcma is refused). */
export type LiveFormat = 'pcmu8k' | 'pcm16k' | 'pcm24k';

/** A scripted fault fired while the answer to scenario turn `turn` is being spoken. */
export interface LiveFault {
  /** Index into the scenario's turns (the caller turn whose answer is interrupted). */
  turn: number;
  /** `error`: an error event, the session stays; `drop`: close frame 1011; `drop_abrupt`: no close frame; `connection_lost`: session.closed then close. */
  kind: 'error' | 'drop' | 'drop_abrupt' | 'connection_lost';
  /** Audio of the answer sent before the fault (ms, default 200). */
  afterMs?: number;
}

export interface LiveStandInOptions {
  port?: number;
  host?: string;
  tls?: { cert: string | Buffer; key: string | Buffer };
  scenario?: Scenario;
  /** A scenario per session, by the order sessions connect (0, 1, …); `scenario` where it returns undefined. */
  scenarioFor?: (sessionIndex: number) => Scenario | undefined;
  /** How many sessions' records `sessions` keeps, in connect order (default all). */
  recordSessions?: number;
  /** Output audio is sent this many times faster than real time (default 4). */
  audioSpeedup?: number;
  /** From the end of a caller turn (or a commentary) to the model's first output (ms, default 150). */
  responseDelayMs?: number;
  /** From the caller's speech onset to the model stopping its output (ms, default 80). */
  yieldMs?: number;
  /** Silence that ends a caller turn (ms of input audio, default 500). */
  silenceMs?: number;
  /** Least pause between two utterances (ms, default 600). */
  utterancePauseMs?: number;
  /** Period of `session.usage.updated` (ms, default 1000). */
  usageEveryMs?: number;
  /** From the backend response.done to the spoken answer after tool outputs (ms, default 100). */
  backendDelayMs?: number;
  faults?: LiveFault[];
  /** Told about refused upgrades and every error event sent. */
  log?: (fields: Record<string, unknown>, msg: string) => void;
}

/** One utterance the model spoke (or began to). */
export interface LiveSpoken {
  text: string;
  /** Audio bytes sent. */
  bytes: number;
  /** Audio sent (ms). */
  audioMs: number;
  /** Full length of the utterance's audio (ms). */
  fullMs: number;
  /** Session timeline of its first sample (ms). */
  startMs: number;
  /** performance.now() of the first and last delta sent. */
  firstAt: number;
  lastAt: number;
  /** The answer to this scenario turn index, if it is one. */
  turn?: number;
  yielded: boolean;
}

export interface LiveYield {
  /** Caller speech onset: session ms and performance.now(). */
  onsetMs: number;
  onsetAt: number;
  /** When the output stopped: session ms (end of the audio sent) and performance.now(). */
  sessionMs: number;
  at: number;
  text: string;
}

export interface LiveDelegation {
  id: string;
  responseId: string;
  calls: { call_id: string; name: string; arguments: string }[];
  outputs: Record<string, string>;
  /** Every response.create for it: when, and how many outputs were still missing. */
  responseCreates: { at: number; missing: number }[];
  /** The second (message) response's id and text, once sent. */
  answerResponseId?: string;
  answer?: string;
  createdAt: number;
}

export interface LiveStandInSession {
  index: number;
  id: string;
  model: string | undefined;
  format: LiveFormat | undefined;
  /** The `session` of session.start, as received. */
  start: any;
  started: boolean;
  /** Every client event, parsed (audio payloads kept). */
  events: { type: string; at: number; event: any }[];
  inputBytes: number;
  audioMsReceived: number;
  thinking: string[];
  commentary: string[];
  spoken: LiveSpoken[];
  yields: LiveYield[];
  delegations: LiveDelegation[];
  /** Every output audio delta: performance.now() and bytes. */
  audioSends: { at: number; bytes: number }[];
  /** Cumulative seconds of every usage event sent (session.closed's last). */
  usageSent: number[];
  errorsSent: { code: string }[];
  closedReason?: string;
  closed: boolean;
  /** Send an `error` event now (the session stays). */
  sendError(code?: string, message?: string): void;
  /** Send `session.closed {reason}` and close the socket. */
  closeSession(reason: 'close_requested' | 'expired' | 'content' | 'remote_hangup' | 'connection_lost'): void;
  /** Close with a close frame carrying `code`. */
  dropSocket(code?: number): void;
  /** Destroy the TCP socket without a close frame (the client sees 1006). */
  dropSocketAbruptly(): void;
}

export interface LiveStandIn {
  /** ws(s)://host:port/v1/live/sessions */
  url: string;
  baseUrl: string;
  port: number;
  sessions: LiveStandInSession[];
  refused: { at: number; status: number }[];
  refuseNextConnections(n: number, status?: number): void;
  refuseAll(on: boolean, status?: number): void;
  close(): Promise<void>;
}

export const LIVE_PATH = '/v1/live/sessions';
export const MAX_HISTORY_MESSAGES = 128;
export const MAX_HISTORY_TOKENS = 8192;
export const MAX_INSTRUCTIONS_TOKENS = 16_384;
export const MAX_APPEND_TOKENS = 500;
/** Longest wait between two output deltas of one utterance (ms, before timer jitter). */
export const MAX_CHUNK_GAP_MS = 60;
export const DEFAULT_UTTERANCE_PAUSE_MS = 600;
const FRAME_MS = 20;
const MS_PER_CHAR = 65;
const MAX_REPLY_MS = 6000;
/** Input audio per caller word in input transcript deltas (ms). */
const INPUT_WORD_MS = 250;
/** Chunk lengths of output audio (ms), cycled: irregular like a real service. */
const CHUNK_MS = [100, 140, 60, 180, 120];
const ARGS_DELTAS = 3;
const ARGS_DELTA_MS = 5;
const KEYPAD_TEXT = /pressed|keypad|keys|digits?/i;
const SESSION_TTL_S = 3600;

/** The conservative token count callbridge fits history with: ceil(chars/3) + 4 per message. */
export function liveMessageTokens(text: string): number {
  return Math.ceil(text.length / 3) + 4;
}

function bytesPerMs(f: LiveFormat): number {
  return f === 'pcmu8k' ? 8 : f === 'pcm16k' ? 32 : 48;
}

function rateOf(f: LiveFormat): number {
  return f === 'pcmu8k' ? 8000 : f === 'pcm16k' ? 16000 : 24000;
}

function wireFormat(f: LiveFormat): { type: string; rate: number } {
  return f === 'pcmu8k' ? { type: 'audio/pcmu', rate: 8000 } : { type: 'audio/pcm', rate: rateOf(f) };
}

function parseFormat(fmt: any): LiveFormat | null {
  if (fmt === undefined) return 'pcm24k';
  if (fmt?.type === 'audio/pcmu' && (fmt.rate === undefined || fmt.rate === 8000)) return 'pcmu8k';
  if (fmt?.type === 'audio/pcm' && fmt.rate === 16000) return 'pcm16k';
  if (fmt?.type === 'audio/pcm' && fmt.rate === 24000) return 'pcm24k';
  return null;
}

/** Reply audio: a 1 s speech-like clip per format, tiled to whole 100 ms steps, cached. */
const clips = new Map<LiveFormat, Buffer>();
function speechAudio(ms: number, f: LiveFormat): Buffer {
  let clip = clips.get(f);
  if (!clip) {
    const pcm = speechLike(1000, rateOf(f), 3);
    clip = f === 'pcmu8k' ? Buffer.from(ulawEncode(pcm)) : Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength);
    clips.set(f, clip);
  }
  const out = Buffer.alloc(ms * bytesPerMs(f));
  for (let off = 0; off < out.length; off += clip.length) clip.copy(out, off, 0, Math.min(clip.length, out.length - off));
  return out;
}

/** Spoken length of a text (ms): 65 ms per character, 300 ms to 6 s, in 100 ms steps. */
export function liveReplyMs(text: string): number {
  return Math.round(Math.min(MAX_REPLY_MS, Math.max(300, text.length * MS_PER_CHAR)) / 100) * 100;
}

export async function startLiveStandIn(opts: LiveStandInOptions = {}): Promise<LiveStandIn> {
  const scenario = opts.scenario ?? eligibilityScenario;
  const http = opts.tls ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }) : createHttpServer();
  http.on('request', (_req, res) => res.writeHead(404).end());
  const wss = new WebSocketServer({ noServer: true, maxPayload: 16 * 1024 * 1024 });
  const sessions: LiveStandInSession[] = [];
  const live = new Set<LiveSession>();
  const refused: { at: number; status: number }[] = [];
  let connected = 0;
  let refuseNext = 0;
  let refuseNextStatus = 503;
  let refuseAllStatus: number | null = null;

  http.on('upgrade', (req: IncomingMessage, socket, head) => {
    // A client that resets the connection (it read our refusal and went): the socket's error has no one else to go to.
    socket.on('error', () => {});
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname !== LIVE_PATH) {
      socket.end('HTTP/1.1 404 Not Found\r\n\r\n');
      return;
    }
    const refuseStatus = refuseAllStatus ?? (refuseNext > 0 ? refuseNextStatus : null);
    if (refuseStatus !== null) {
      if (refuseAllStatus === null) refuseNext--;
      refused.push({ at: performance.now(), status: refuseStatus });
      opts.log?.({ status: refuseStatus }, `live stand-in: upgrade refused on request (${refuseStatus})`);
      const body = JSON.stringify({ error: { message: 'The server is temporarily unable to accept connections.', type: 'server_error', code: null } });
      socket.end(
        `HTTP/1.1 ${refuseStatus} ${STATUS_CODES[refuseStatus] ?? 'Error'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      );
      return;
    }
    if (!/^Bearer \S+/.test(req.headers.authorization ?? '')) {
      opts.log?.({ path: url.pathname }, 'live stand-in: upgrade without bearer token refused (401)');
      const body = '{"error":{"message":"Missing bearer authentication","type":"invalid_request_error","code":"invalid_api_key"}}';
      socket.end(`HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const index = connected++;
      const s = new LiveSession(ws, index, opts.scenarioFor?.(index) ?? scenario, opts);
      if (index < (opts.recordSessions ?? Infinity)) sessions.push(s.record);
      live.add(s);
      ws.on('close', () => live.delete(s));
    });
  });

  await new Promise<void>((resolve) => http.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', resolve));
  const port = (http.address() as AddressInfo).port;
  const host = opts.host ?? '127.0.0.1';
  return {
    url: `${opts.tls ? 'wss' : 'ws'}://${host}:${port}${LIVE_PATH}`,
    baseUrl: `${opts.tls ? 'https' : 'http'}://${host}:${port}/v1`,
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
    async close() {
      for (const s of live) s.shutdown();
      for (const ws of wss.clients) ws.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}

/** One utterance being played. */
interface Playing {
  rec: LiveSpoken;
  audio: Buffer;
  off: number;
  /** Word boundaries in ms from the utterance start; word i spans [bounds[i], bounds[i+1]). */
  words: string[];
  bounds: number[];
  wordsSent: number;
  chunk: number;
  timer?: NodeJS.Timeout;
  fault?: LiveFault;
  done?: () => void;
}

interface Queued {
  text: string;
  turn?: number;
  done?: () => void;
}

/** A delegation whose function calls wait for outputs and one response.create. */
interface Waiting {
  rec: LiveDelegation;
  followUp: (outputs: string[]) => string | string[];
  turn: number;
  answered: boolean;
}

class LiveSession {
  readonly record: LiveStandInSession;
  private seq = 0;
  private readonly timers = new Set<NodeJS.Timeout>();
  // Input side.
  private inputMs = 0;
  /** The VAD's input level, per 20 ms window. */
  private readonly level = new WindowLevel((dbfs) => this.vadWindow(dbfs));
  private callerSpeaking = false;
  private onsetMs = 0;
  private lastVoiceEndMs = 0;
  /** Caller words of the open turn not yet sent, and how many were due. */
  private callerWords: string[] = [];
  private callerWordsSent = 0;
  private callerTurn: { index: number; turn: ScenarioTurn | undefined } | null = null;
  /** Input deltas are held while the model has not yet yielded. */
  private holdInput = false;
  /** The caller's turn ended while input deltas were held. */
  private endPending = false;
  private turnIndex = 0;
  // Output side.
  private outputEndMs = 0;
  private playing: Playing | null = null;
  private queue: Queued[] = [];
  private lastSendAt = -Infinity;
  private waiting: Waiting | null = null;
  /** A caller turn given in the start history with no answer after it: the next commentary answers it. */
  private owed: { index: number; turn: ScenarioTurn } | null = null;
  private pendingUserText: string | null = null;
  private greeted = false;
  private resumeOwed = false;
  private readonly faults: LiveFault[];
  private ended = false;

  constructor(
    private readonly ws: WebSocket,
    index: number,
    private readonly scenario: Scenario,
    private readonly opts: LiveStandInOptions,
  ) {
    this.faults = [...(opts.faults ?? [])];
    this.record = {
      index,
      id: `sess_live_${index + 1}`,
      model: undefined,
      format: undefined,
      start: undefined,
      started: false,
      events: [],
      inputBytes: 0,
      audioMsReceived: 0,
      thinking: [],
      commentary: [],
      spoken: [],
      yields: [],
      delegations: [],
      audioSends: [],
      usageSent: [],
      errorsSent: [],
      closed: false,
      sendError: (code = 'server_error', message = 'The server had an error while processing your request.') => this.error(code, message, undefined, 'server_error'),
      closeSession: (reason) => this.closeSession(reason),
      dropSocket: (code = 1011) => {
        this.shutdown();
        ws.close(code, 'stand-in dropped the socket');
      },
      dropSocketAbruptly: () => {
        this.shutdown();
        ws.terminate();
      },
    };
    ws.on('message', (data, isBinary) => this.onMessage(data.toString(), isBinary));
    ws.on('close', () => {
      this.record.closed = true;
      this.shutdown();
    });
  }

  shutdown(): void {
    this.ended = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  private get format(): LiveFormat {
    return this.record.format ?? 'pcm24k';
  }

  private nowMs(): number {
    return Math.max(this.inputMs, this.outputEndMs);
  }

  private send(ev: Record<string, unknown>): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    this.ws.send(JSON.stringify({ event_id: `event_${++this.seq}`, ...ev }));
  }

  private later(ms: number, fn: () => void): NodeJS.Timeout {
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (!this.ended) fn();
    }, ms);
    this.timers.add(t);
    return t;
  }

  private error(code: string, message: string, clientEventId?: string, type = 'invalid_request_error', param?: string): void {
    this.record.errorsSent.push({ code });
    this.opts.log?.({ code, param, clientEventId }, `live stand-in: error sent: ${message}`);
    const error: Record<string, unknown> = { type, code, message };
    if (param) error.param = param;
    if (clientEventId) error.client_event_id = clientEventId;
    this.send({ type: 'error', error });
  }

  /** Refuses the start and closes the socket (1008). */
  private refuse(code: string, message: string, clientEventId?: string, param?: string): void {
    this.error(code, message, clientEventId, 'invalid_request_error', param);
    this.shutdown();
    this.ws.close(1008, code);
  }

  private sessionResource() {
    const s = this.record.start ?? {};
    return {
      id: this.record.id,
      object: 'live.session',
      model: this.record.model,
      status: 'active',
      expires_at: Math.floor(Date.now() / 1000) + SESSION_TTL_S,
      audio: { format: wireFormat(this.format), output: { voice: s.audio?.output?.voice ?? 'marin' } },
      delegation: s.delegation ?? null,
      input: s.input ?? [],
      instructions: s.instructions ?? null,
    };
  }

  private usageSeconds(): number {
    return Math.round(this.inputMs) / 1000;
  }

  private sendUsage(): void {
    const seconds = this.usageSeconds();
    this.record.usageSent.push(seconds);
    this.send({ type: 'session.usage.updated', usage: { seconds } });
  }

  private closeSession(reason: 'close_requested' | 'expired' | 'content' | 'remote_hangup' | 'connection_lost', clientEventId?: string): void {
    if (this.record.closedReason) return;
    this.stopOutput();
    this.queue = [];
    const seconds = this.usageSeconds();
    this.record.usageSent.push(seconds);
    this.record.closedReason = reason;
    this.send({ type: 'session.closed', reason, session: this.sessionResource(), usage: { seconds }, ...(clientEventId ? { client_event_id: clientEventId } : {}) });
    this.shutdown();
    setTimeout(() => this.ws.close(reason === 'connection_lost' ? 1011 : 1000, reason), 20);
  }

  // ── Client events ──────────────────────────────────────────────────────

  private onMessage(text: string, isBinary: boolean): void {
    const at = performance.now();
    if (this.ended) return;
    if (isBinary) return this.error('invalid_request_error', 'Binary frames are not supported.');
    let ev: any;
    try {
      ev = JSON.parse(text);
    } catch {
      return this.error('invalid_json', 'The server could not parse the event as JSON.');
    }
    if (!ev || typeof ev !== 'object' || typeof ev.type !== 'string') return this.error('missing_required_parameter', "Missing required parameter: 'type'.", undefined, undefined, 'type');
    const id = typeof ev.event_id === 'string' ? ev.event_id : undefined;
    this.record.events.push({ type: ev.type, at, event: ev });
    if (!this.record.started) {
      if (ev.type !== 'session.start') return this.refuse('session_not_started', `The first event must be session.start, not '${String(ev.type).slice(0, 60)}'.`, id);
      return this.onStart(ev, id);
    }
    switch (ev.type) {
      case 'session.start':
        return this.error('session_already_started', 'The session has already started.', id);
      case 'session.update':
        return this.send({ type: 'session.updated', session: this.sessionResource(), ...(id ? { client_event_id: id } : {}) });
      case 'session.input_audio.append':
        return this.onAppend(ev, id);
      case 'session.input_audio.mute':
      case 'session.input_audio.unmute':
        return this.send({ type: ev.type === 'session.input_audio.mute' ? 'session.input_audio.muted' : 'session.input_audio.unmuted', ...(id ? { client_event_id: id } : {}) });
      case 'session.instructions.append':
      case 'session.thinking.append':
      case 'session.commentary.append':
        return this.onAppendText(ev, id);
      case 'response.item.create':
        return this.onItemCreate(ev, id);
      case 'response.create':
        return this.onResponseCreate(at, id);
      case 'session.close':
        return this.closeSession('close_requested', id);
      default:
        return this.error('invalid_request_error', `Invalid value: '${String(ev.type).slice(0, 60)}'. Supported values are Live client events.`, id, undefined, 'type');
    }
  }

  private onStart(ev: any, id: string | undefined): void {
    const s = ev.session;
    if (!s || typeof s !== 'object') return this.refuse('missing_required_parameter', "Missing required parameter: 'session'.", id, 'session');
    if (typeof s.model !== 'string' || s.model === '') return this.refuse('missing_required_parameter', "Missing required parameter: 'session.model'.", id, 'session.model');
    const format = parseFormat(s.audio?.format);
    if (!format) return this.refuse('invalid_value', `Unsupported audio format: ${JSON.stringify(s.audio?.format).slice(0, 80)}`, id, 'session.audio.format');
    const d = s.delegation;
    if (!d || d.type !== 'responses' || typeof d.responses?.model !== 'string') {
      return this.refuse('invalid_value', 'The stand-in needs delegation {type: "responses", responses: {model, tools}}.', id, 'session.delegation');
    }
    const tools = d.responses.tools;
    if (!Array.isArray(tools) || tools.some((t: any) => t?.type !== 'function' || typeof t.name !== 'string' || t.name === '')) {
      return this.refuse('invalid_value', 'delegation.responses.tools must be function tools with names.', id, 'session.delegation.responses.tools');
    }
    if (typeof s.instructions === 'string' && Math.ceil(s.instructions.length / 3) > MAX_INSTRUCTIONS_TOKENS) {
      return this.refuse('instructions_too_long', `Instructions exceed ${MAX_INSTRUCTIONS_TOKENS} tokens.`, id, 'session.instructions');
    }
    const input = s.input ?? [];
    if (!Array.isArray(input)) return this.refuse('invalid_type', "'session.input' must be an array.", id, 'session.input');
    const texts: { role: string; text: string }[] = [];
    for (const [i, m] of input.entries()) {
      const parts = Array.isArray(m?.content) ? m.content : [];
      if (!['developer', 'user', 'assistant'].includes(m?.role) || parts.length !== 1 || typeof parts[0]?.text !== 'string') {
        return this.refuse('invalid_value', `session.input[${i}] must be a developer, user or assistant message with one text part.`, id, `session.input[${i}]`);
      }
      texts.push({ role: m.role, text: parts[0].text });
    }
    const tokens = texts.reduce((n, m) => n + liveMessageTokens(m.text), 0);
    if (texts.length > MAX_HISTORY_MESSAGES || tokens > MAX_HISTORY_TOKENS) {
      return this.refuse(
        'history_too_long',
        `Initial input has ${texts.length} messages and ${tokens} tokens; at most ${MAX_HISTORY_MESSAGES} messages and ${MAX_HISTORY_TOKENS} tokens.`,
        id,
        'session.input',
      );
    }
    this.record.start = s;
    this.record.model = s.model;
    this.record.format = format;
    this.record.started = true;
    this.replayHistory(texts);
    this.send({ type: 'session.started', session: this.sessionResource(), ...(id ? { client_event_id: id } : {}) });
    const every = this.opts.usageEveryMs ?? 1000;
    const tick = () => {
      this.sendUsage();
      this.later(every, tick);
    };
    this.later(every, tick);
  }

  /** History given at start: each caller message uses up a scripted turn; one left last is owed an answer. */
  private replayHistory(texts: { role: string; text: string }[]): void {
    for (const m of texts) {
      if (m.role === 'user' && !KEYPAD_TEXT.test(m.text)) {
        const index = this.turnIndex++;
        this.owed = { index, turn: this.scenario.turns[index] ?? { callerTranscript: m.text, reply: 'Okay.' } };
      } else if (m.role === 'assistant') {
        this.greeted = true;
        if (this.scenario.resume !== undefined) this.resumeOwed = true;
        this.owed = null;
      }
    }
  }

  private onAppendText(ev: any, id: string | undefined): void {
    const kind = ev.type.split('.')[1] as 'instructions' | 'thinking' | 'commentary';
    if (typeof ev.content !== 'string') return this.error('missing_required_parameter', "Missing required parameter: 'content'.", id, undefined, 'content');
    if (!('delegation_id' in ev)) return this.error('missing_required_parameter', "Missing required parameter: 'delegation_id'.", id, undefined, 'delegation_id');
    if (ev.delegation_id !== null) return this.error('invalid_value', 'delegation_id must be null with Responses delegation.', id, undefined, 'delegation_id');
    if (Math.ceil(ev.content.length / 3) > MAX_APPEND_TOKENS) return this.error('content_too_long', `content exceeds ${MAX_APPEND_TOKENS} tokens.`, id, undefined, 'content');
    const at = this.nowMs();
    this.send({ type: `session.${kind}.appended`, start_ms: at, end_ms: at, ...(id ? { client_event_id: id } : {}) });
    if (kind === 'thinking') {
      this.record.thinking.push(ev.content);
      if (KEYPAD_TEXT.test(ev.content) || /^[0-9*#\s]+$/.test(ev.content)) this.pendingUserText = ev.content;
    } else if (kind === 'commentary') {
      this.record.commentary.push(ev.content);
      this.onCommentary(ev.content);
    }
  }

  /** The model speaks on a commentary: what is owed first, else the greeting, else the content's first sentence. */
  private onCommentary(content: string): void {
    if (this.owed) {
      const owed = this.owed;
      this.owed = null;
      return this.answer(owed.index, owed.turn);
    }
    if (this.pendingUserText !== null) {
      const text = this.pendingUserText;
      this.pendingUserText = null;
      return this.say(this.scenario.onUserText?.(text) ?? `You pressed ${text.replace(/[^0-9*#]/g, '')}.`);
    }
    if (this.resumeOwed) {
      this.resumeOwed = false;
      return this.say(this.scenario.resume!);
    }
    if (!this.greeted || /greet/i.test(content)) {
      this.greeted = true;
      return this.say(this.scenario.greeting);
    }
    if (/^answer the caller/i.test(content.trim())) return this.say('Okay.');
    const first = /^[^.!?]*[.!?]?/.exec(content.trim())?.[0]?.trim();
    return this.say(first || 'Okay.');
  }

  private say(text: string, turn?: number, done?: () => void): void {
    this.later(this.opts.responseDelayMs ?? 150, () => this.enqueue({ text, turn, done }));
  }

  // ── Caller audio, VAD, input transcript ────────────────────────────────

  private onAppend(ev: any, id: string | undefined): void {
    if (typeof ev.audio !== 'string') return this.error('missing_required_parameter', "Missing required parameter: 'audio'.", id, undefined, 'audio');
    const bytes = Buffer.from(ev.audio, 'base64');
    this.record.inputBytes += bytes.length;
    const rate = rateOf(this.format);
    const samples = this.format === 'pcmu8k' ? bytes.length : bytes.length >> 1;
    this.record.audioMsReceived += (samples * 1000) / rate;
    this.level.push(bytes, this.format === 'pcmu8k', (rate * FRAME_MS) / 1000);
  }

  /** One 20 ms window (its level, dBFS): energy VAD at -40 dBFS with a `silenceMs` hang-over. */
  private vadWindow(dbfs: number): void {
    const startMs = this.inputMs;
    this.inputMs += FRAME_MS;
    const voiced = dbfs > -40;
    if (voiced) {
      this.lastVoiceEndMs = this.inputMs;
      if (!this.callerSpeaking) this.onset(startMs);
      this.flushCallerWords(false);
    } else if (this.callerSpeaking && this.inputMs - this.lastVoiceEndMs >= (this.opts.silenceMs ?? 500)) {
      this.callerSpeaking = false;
      this.endCallerTurn();
    }
  }

  private onset(startMs: number): void {
    this.callerSpeaking = true;
    this.onsetMs = startMs;
    const index = this.turnIndex++;
    const turn = this.scenario.turns[index];
    this.callerTurn = { index, turn };
    this.callerWords = (turn?.callerTranscript ?? 'Mm-hm.').split(' ');
    this.callerWordsSent = 0;
    const speaking = this.playing !== null || this.queue.length > 0;
    if (!speaking) return;
    // Model-led barge-in: the model yields yieldMs after the onset; input deltas wait for it.
    this.holdInput = true;
    const onsetAt = performance.now();
    this.later(this.opts.yieldMs ?? 80, () => {
      const p = this.playing;
      this.stopOutput(true);
      this.queue = [];
      this.record.yields.push({ onsetMs: startMs, onsetAt, sessionMs: this.outputEndMs, at: performance.now(), text: p?.rec.text ?? '' });
      this.holdInput = false;
      this.flushCallerWords(false);
      if (this.endPending) {
        this.endPending = false;
        this.endCallerTurn();
      }
    });
  }

  /** Sends the caller's words due by now (one per INPUT_WORD_MS of speech; all of them at the turn's end). */
  private flushCallerWords(all: boolean): void {
    if (this.holdInput) return;
    const spokeMs = this.lastVoiceEndMs - this.onsetMs;
    const due = all ? this.callerWords.length : Math.min(this.callerWords.length, Math.max(1, Math.ceil(spokeMs / INPUT_WORD_MS)));
    while (this.callerWordsSent < due) {
      const i = this.callerWordsSent++;
      const start = Math.min(this.onsetMs + i * INPUT_WORD_MS, this.lastVoiceEndMs);
      const end = i === this.callerWords.length - 1 ? Math.max(start, this.lastVoiceEndMs) : Math.min(start + INPUT_WORD_MS, this.lastVoiceEndMs);
      this.send({ type: 'session.input_transcript.delta', delta: `${i > 0 ? ' ' : ''}${this.callerWords[i]}`, start_ms: start, end_ms: end });
    }
  }

  private endCallerTurn(): void {
    if (this.holdInput) {
      // The model has not yielded yet: the turn closes when it has.
      this.endPending = true;
      return;
    }
    this.flushCallerWords(true);
    const t = this.callerTurn;
    this.callerTurn = null;
    if (!t) return;
    if (!t.turn && this.pendingUserText !== null) {
      const text = this.pendingUserText;
      this.pendingUserText = null;
      return this.say(this.scenario.onUserText?.(text) ?? `You pressed ${text.replace(/[^0-9*#]/g, '')}.`);
    }
    this.answer(t.index, t.turn ?? { callerTranscript: '', reply: 'Okay.' });
  }

  // ── Answers: spoken, or by delegation ──────────────────────────────────

  private answer(index: number, turn: ScenarioTurn): void {
    const calls: ScenarioCall[] = [...(turn.tool ? [turn.tool] : []), ...(turn.tools ?? [])];
    const spoken = turn.replies ?? (turn.reply !== undefined ? [turn.reply] : []);
    if (calls.length === 0) return this.say([turn.preamble, ...spoken].filter((t): t is string => !!t).join(' ') || 'Okay.', index);
    const tool = turn.tool;
    const followUp =
      turn.followUp ?? (tool && calls.length === 1 ? (outputs: string[]) => tool.reply(outputs[0] ?? '') : (outputs: string[]) => `I have ${outputs.length} results for you.`);
    const delegate = () => this.delegate(index, calls, followUp, turn.gapMs ?? 150);
    const before = [turn.preamble, ...spoken].filter((t): t is string => !!t).join(' ');
    if (before) this.say(before, index, delegate);
    else this.later(this.opts.responseDelayMs ?? 150, delegate);
  }

  private nested(delegationId: string, event: Record<string, unknown>): void {
    this.send({ type: 'response.event', delegation_id: delegationId, event: { sequence_number: ++this.seq, ...event } });
  }

  /** A delegation to the Responses backend: one response with the function calls, then a wait for outputs. */
  private delegate(turnIndex: number, calls: ScenarioCall[], followUp: (outputs: string[]) => string | string[], gapMs: number): void {
    const rec: LiveDelegation = {
      id: `deleg_${++this.seq}`,
      responseId: `resp_${++this.seq}`,
      calls: [],
      outputs: {},
      responseCreates: [],
      createdAt: performance.now(),
    };
    this.record.delegations.push(rec);
    // A new delegation supersedes one still waiting (the model moved on).
    this.waiting = { rec, followUp, turn: turnIndex, answered: false };
    this.send({ type: 'session.delegation.created', delegation: { id: rec.id, type: 'delegation', target: 'responses', response_id: rec.responseId }, offset_ms: this.nowMs() });
    this.nested(rec.id, { type: 'response.created', response: { id: rec.responseId, object: 'response', status: 'in_progress', output: [] } });
    const output: Record<string, unknown>[] = [];
    let i = 0;
    const nextCall = () => {
      const c = calls[i];
      if (!c) {
        return this.nested(rec.id, {
          type: 'response.done',
          response: { id: rec.responseId, object: 'response', status: 'completed', output, usage: { input_tokens: 420, output_tokens: 38 * calls.length, total_tokens: 420 + 38 * calls.length } },
        });
      }
      const outputIndex = i++;
      const args = JSON.stringify(c.arguments);
      const itemId = `fc_${++this.seq}`;
      const callId = `call_${++this.seq}`;
      rec.calls.push({ call_id: callId, name: c.name, arguments: args });
      const item = { type: 'function_call', id: itemId, call_id: callId, name: c.name, arguments: '', status: 'in_progress' };
      this.nested(rec.id, { type: 'response.output_item.added', response_id: rec.responseId, output_index: outputIndex, item });
      const size = Math.ceil(args.length / ARGS_DELTAS);
      let off = 0;
      const step = () => {
        if (off < args.length) {
          this.nested(rec.id, { type: 'response.function_call_arguments.delta', item_id: itemId, output_index: outputIndex, delta: args.slice(off, off + size) });
          off += size;
          if (off < args.length) return void this.later(ARGS_DELTA_MS, step);
        }
        this.nested(rec.id, { type: 'response.function_call_arguments.done', item_id: itemId, output_index: outputIndex, name: c.name, arguments: args });
        const done = { ...item, arguments: args, status: 'completed' };
        output.push(done);
        this.nested(rec.id, { type: 'response.output_item.done', response_id: rec.responseId, output_index: outputIndex, item: done });
        this.later(calls[i] ? gapMs : 0, nextCall);
      };
      step();
    };
    nextCall();
  }

  private onItemCreate(ev: any, id: string | undefined): void {
    const item = ev.item;
    if (!item || typeof item.type !== 'string') return this.error('missing_required_parameter', "Missing required parameter: 'item'.", id, undefined, 'item');
    if (item.type !== 'function_call_output') return; // other Responses input items: accepted, unused
    if (typeof item.call_id !== 'string' || typeof item.output !== 'string') {
      return this.error('invalid_value', 'function_call_output needs call_id and output.', id, undefined, 'item');
    }
    const w = this.waiting;
    if (!w || !w.rec.calls.some((c) => c.call_id === item.call_id)) {
      return this.error('unknown_call_id', `No function call with call_id '${String(item.call_id).slice(0, 60)}' is waiting for output.`, id, undefined, 'item.call_id');
    }
    w.rec.outputs[item.call_id] = item.output;
  }

  private onResponseCreate(at: number, id: string | undefined): void {
    const w = this.waiting;
    if (!w || w.answered) return this.error('no_response_waiting', 'No delegated response is waiting for tool outputs.', id);
    const missing = w.rec.calls.filter((c) => !(c.call_id in w.rec.outputs)).length;
    w.rec.responseCreates.push({ at, missing });
    if (missing > 0 || w.rec.calls.length === 0) {
      return this.error('tool_outputs_missing', `${missing} function call(s) still have no output.`, id);
    }
    w.answered = true;
    this.waiting = null;
    const said = w.followUp(w.rec.calls.map((c) => w.rec.outputs[c.call_id] ?? ''));
    const text = (Array.isArray(said) ? said : [said]).join(' ');
    const responseId = `resp_${++this.seq}`;
    const itemId = `msg_${++this.seq}`;
    w.rec.answerResponseId = responseId;
    w.rec.answer = text;
    const d = w.rec.id;
    this.nested(d, { type: 'response.created', response: { id: responseId, object: 'response', status: 'in_progress', output: [] } });
    const item = { type: 'message', id: itemId, role: 'assistant', status: 'in_progress', content: [] as unknown[] };
    this.nested(d, { type: 'response.output_item.added', response_id: responseId, output_index: 0, item });
    this.nested(d, { type: 'response.output_text.delta', item_id: itemId, output_index: 0, content_index: 0, delta: text });
    this.nested(d, { type: 'response.output_text.done', item_id: itemId, output_index: 0, content_index: 0, text });
    const done = { ...item, status: 'completed', content: [{ type: 'output_text', text, annotations: [] }] };
    this.nested(d, { type: 'response.output_item.done', response_id: responseId, output_index: 0, item: done });
    const outTokens = Math.ceil(text.length / 4);
    this.nested(d, { type: 'response.done', response: { id: responseId, object: 'response', status: 'completed', output: [done], usage: { input_tokens: 520, output_tokens: outTokens, total_tokens: 520 + outTokens } } });
    this.later(this.opts.backendDelayMs ?? 100, () => this.enqueue({ text, turn: w.turn }));
  }

  // ── Output: utterances streamed faster than real time ──────────────────

  private enqueue(q: Queued): void {
    // The model does not start speaking over a caller who is talking.
    if (this.callerSpeaking) return;
    this.queue.push(q);
    if (!this.playing) this.playNext();
  }

  private playNext(): void {
    if (this.playing || this.ended) return;
    const q = this.queue[0];
    if (!q) return;
    const pause = this.opts.utterancePauseMs ?? DEFAULT_UTTERANCE_PAUSE_MS;
    const wait = this.lastSendAt + pause - performance.now();
    if (wait > 0) {
      this.later(wait + 1, () => this.playNext());
      return;
    }
    this.queue.shift();
    const fullMs = liveReplyMs(q.text);
    const audio = speechAudio(fullMs, this.format);
    const words = q.text.split(' ');
    // Word boundaries proportional to characters (a space counts as one).
    const weights = words.map((w) => w.length + 1);
    const total = weights.reduce((a, b) => a + b, 0);
    const bounds = [0];
    let acc = 0;
    for (const w of weights) bounds.push(Math.round(((acc += w) / total) * fullMs));
    const rec: LiveSpoken = { text: q.text, bytes: 0, audioMs: 0, fullMs, startMs: this.nowMs(), firstAt: performance.now(), lastAt: performance.now(), turn: q.turn, yielded: false };
    this.record.spoken.push(rec);
    const fault = q.turn !== undefined ? this.faults.find((f) => f.turn === q.turn) : undefined;
    if (fault) this.faults.splice(this.faults.indexOf(fault), 1);
    this.playing = { rec, audio, off: 0, words, bounds, wordsSent: 0, chunk: 0, fault, done: q.done };
    this.step();
  }

  private step(): void {
    const p = this.playing;
    if (!p || this.ended) return;
    const per = bytesPerMs(this.format);
    const speedup = this.opts.audioSpeedup ?? 4;
    const ms = Math.min(CHUNK_MS[p.chunk++ % CHUNK_MS.length]!, MAX_CHUNK_GAP_MS * speedup, p.rec.fullMs - p.rec.audioMs);
    let n = Math.min(Math.round(ms * per), p.audio.length - p.off);
    if (this.format !== 'pcmu8k') n -= n % 2;
    const chunk = p.audio.subarray(p.off, p.off + n);
    p.off += n;
    const now = performance.now();
    p.rec.bytes += n;
    p.rec.audioMs = p.off / per;
    p.rec.lastAt = now;
    this.lastSendAt = now;
    this.outputEndMs = p.rec.startMs + p.rec.audioMs;
    this.record.audioSends.push({ at: now, bytes: n });
    this.send({ type: 'session.output_audio.delta', delta: chunk.toString('base64') });
    // Every word whose audio has begun.
    while (p.wordsSent < p.words.length && p.bounds[p.wordsSent]! < p.rec.audioMs) {
      const i = p.wordsSent++;
      this.send({
        type: 'session.output_transcript.delta',
        delta: `${i > 0 ? ' ' : ''}${p.words[i]}`,
        start_ms: p.rec.startMs + p.bounds[i]!,
        end_ms: p.rec.startMs + p.bounds[i + 1]!,
      });
    }
    if (p.fault && p.rec.audioMs >= (p.fault.afterMs ?? 200)) {
      const f = p.fault;
      p.fault = undefined;
      if (this.fire(f)) return;
    }
    if (p.off >= p.audio.length) {
      this.playing = null;
      p.done?.();
      this.playNext();
      return;
    }
    p.timer = this.later(ms / speedup, () => this.step());
  }

  /** Fires a scripted fault; true when the session is gone. */
  private fire(f: LiveFault): boolean {
    this.opts.log?.({ kind: f.kind, turn: f.turn }, 'live stand-in: scripted fault');
    switch (f.kind) {
      case 'error':
        this.error('server_error', 'The server had an error while processing your request.', undefined, 'server_error');
        return false;
      case 'drop':
        this.record.dropSocket(1011);
        return true;
      case 'drop_abrupt':
        this.record.dropSocketAbruptly();
        return true;
      case 'connection_lost':
        this.closeSession('connection_lost');
        return true;
    }
  }

  /** Stops the current utterance at once (a yield or a close). */
  private stopOutput(yielded = false): void {
    const p = this.playing;
    if (!p) return;
    if (p.timer) {
      clearTimeout(p.timer);
      this.timers.delete(p.timer);
    }
    p.rec.yielded = yielded;
    this.playing = null;
  }
}
