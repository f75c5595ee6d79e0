/**
 * A local stand-in for the OpenAI Realtime API (GA interface), for tests,
 * the demo and the bench. It implements the protocol on its own (no code
 * shared with src/realtime) as PROTOCOLS.md describes it: bearer auth, the
 * beta-header refusal, session.created → session.update → session.updated,
 * energy-based server VAD over the audio it receives (PCM16 24 kHz or
 * µ-law), scripted transcripts and spoken replies with real audio streamed
 * faster than real time, scripted function calls, response.cancel and
 * conversation.item.truncate with the real server's errors, and barge-in.
 * Everything a client sends is recorded per session for assertions.
 */
import { createServer as createHttpServer, type IncomingMessage } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { rmsDbfs, speechLike, ulawDecode, ulawEncode } from './audio.js';

export interface ScenarioTurn {
  callerTranscript: string;
  reply?: string;
  tool?: { name: string; arguments: Record<string, unknown>; reply: (output: string) => string };
}

export interface Scenario {
  greeting: string;
  turns: ScenarioTurn[];
  onUserText?(text: string): string;
}

export const eligibilityScenario: Scenario = {
  greeting: 'Thanks for calling the eligibility line. How can I help you today?',
  turns: [
    { callerTranscript: "Hi, I'd like to check my coverage.", reply: 'Sure. Can I get the Member ID?' },
    { callerTranscript: 'It is M B 1 2 3 4 5 6.', reply: 'Thank you. And the date of birth?' },
    {
      callerTranscript: 'March fifth, 1980.',
      tool: {
        name: 'check_eligibility',
        arguments: { member_id: 'M B 1 2 3 4 5 6', date_of_birth: 'March fifth, 1980' },
        reply: (output) => {
          let o: Record<string, unknown> = {};
          try {
            o = JSON.parse(output) as Record<string, unknown>;
          } catch {
            /* plain text output */
          }
          if (o.error || /trouble/i.test(output)) return "I'm sorry, I'm having trouble accessing the system right now.";
          const status = typeof o.status === 'string' ? o.status : 'checked';
          const plan = typeof o.plan === 'string' ? ` on the ${o.plan} plan` : '';
          return `You are ${status}${plan}. Is there anything else I can help with?`;
        },
      },
    },
    { callerTranscript: "No, that's all, thanks.", reply: 'Goodbye!' },
  ],
  onUserText: (text) => `You pressed ${text.replace(/[^0-9*#]/g, '')}.`,
};

export interface ModelStandInOptions {
  port?: number;
  host?: string;
  tls?: { cert: string | Buffer; key: string | Buffer };
  scenario?: Scenario;
  /** Alias of `scenario`. */
  script?: Scenario;
  audioSpeedup?: number;
  transcriptDelayMs?: number;
  responseDelayMs?: number;
  /** Told about refused upgrades and every error event sent (pino's `log.info.bind(log)` fits). */
  log?: (fields: Record<string, unknown>, msg: string) => void;
}

export interface StandInResponse {
  id: string;
  itemId: string;
  status: 'in_progress' | 'completed' | 'cancelled';
  audioMsSent: number;
  text: string;
  firstDeltaAt?: number;
}

export interface StandInSession {
  format: 'pcm24k' | 'ulaw8k' | undefined;
  sessionUpdate: any;
  events: { type: string; at: number }[];
  audioMsReceived: number;
  appendTimes: number[];
  truncates: { item_id: string; audio_end_ms: number }[];
  toolOutputs: { call_id: string; output: string }[];
  userTexts: string[];
  responses: StandInResponse[];
  errorsSent: { code: string }[];
  closed: boolean;
  dropSocket(code?: number): void;
}

export interface ModelStandIn {
  url: string;
  baseUrl: string;
  /** Same as baseUrl (http(s)://127.0.0.1:PORT/v1): what the openai package takes as baseURL. */
  httpBaseUrl: string;
  port: number;
  sessions: StandInSession[];
  close(): Promise<void>;
}

const MS_PER_CHAR = 65;

/**
 * Synthesised reply audio, cached by length and format: synthesis costs far
 * more than relaying, and a load test must measure the relay, not this.
 */
const replyCache = new Map<string, Buffer>();
function replyAudio(durationMs: number, format: 'pcm24k' | 'ulaw8k'): Buffer {
  const ms = Math.round(durationMs / 100) * 100;
  const key = `${format}:${ms}`;
  let bytes = replyCache.get(key);
  if (!bytes) {
    const pcm = speechLike(ms, format === 'ulaw8k' ? 8000 : 24000, (ms / 100) % 7);
    bytes = format === 'ulaw8k' ? Buffer.from(ulawEncode(pcm)) : Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength);
    if (replyCache.size > 256) replyCache.clear();
    replyCache.set(key, bytes);
  }
  return bytes;
}
const MAX_REPLY_MS = 6000;
const FRAME_MS = 20;

export async function startModelStandIn(opts: ModelStandInOptions = {}): Promise<ModelStandIn> {
  const scenario = opts.scenario ?? opts.script ?? eligibilityScenario;
  const http = opts.tls ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }) : createHttpServer();
  http.on('request', (_req, res) => {
    res.writeHead(404).end();
  });
  const wss = new WebSocketServer({ noServer: true, maxPayload: 16 * 1024 * 1024 });
  const sessions: StandInSession[] = [];
  const live = new Set<Session>();

  http.on('upgrade', (req: IncomingMessage, socket, head) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname !== '/v1/realtime') {
      socket.end('HTTP/1.1 404 Not Found\r\n\r\n');
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
      const s = new Session(ws, scenario, opts, url.searchParams.get('model') ?? 'gpt-realtime');
      sessions.push(s.record);
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

  await new Promise<void>((resolve) => http.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', resolve));
  const port = (http.address() as AddressInfo).port;
  const host = opts.host ?? '127.0.0.1';
  const baseUrl = `${opts.tls ? 'https' : 'http'}://${host}:${port}/v1`;
  return {
    url: `${opts.tls ? 'wss' : 'ws'}://${host}:${port}/v1/realtime`,
    baseUrl,
    httpBaseUrl: baseUrl,
    port,
    sessions,
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

class Session {
  readonly record: StandInSession;
  private seq = 0;
  private vad: Vad | null = { threshold: 0.5, prefixPaddingMs: 300, silenceDurationMs: 500, createResponse: true, interruptResponse: true };
  private inputMs = 0;
  /** Audio appended since the last commit/clear (ms): a manual commit needs ≥ 100 ms. */
  private uncommittedMs = 0;
  private carry: Int16Array = new Int16Array(0);
  private speaking = false;
  private speechStartMs = 0;
  private lastVoiceEndMs = 0;
  private inputItemId = '';
  private turn = 0;
  private active: { resp: StandInResponse; timers: NodeJS.Timeout[]; tool?: boolean } | null = null;
  private pendingTool: { callId: string; reply: (output: string) => string; output?: string } | null = null;
  private pendingUserText: string | null = null;
  private greeted = false;
  private queuedTurn: (() => void) | null = null;
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(
    private readonly ws: WebSocket,
    private readonly scenario: Scenario,
    private readonly opts: ModelStandInOptions,
    private readonly model: string,
  ) {
    this.record = {
      format: undefined,
      sessionUpdate: undefined,
      events: [],
      audioMsReceived: 0,
      appendTimes: [],
      truncates: [],
      toolOutputs: [],
      userTexts: [],
      responses: [],
      errorsSent: [],
      closed: false,
      dropSocket: (code = 1011) => {
        this.shutdown();
        ws.close(code, 'stand-in dropped the socket');
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
      model: this.model,
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
        this.carry = new Int16Array(0);
        return this.send({ type: 'input_audio_buffer.cleared' });
      case 'conversation.item.create':
        return this.onItemCreate(ev);
      case 'conversation.item.truncate':
        return this.onTruncate(ev);
      case 'response.create':
        return this.onResponseCreate(ev);
      case 'response.cancel':
        if (!this.active) return this.error('response_cancel_not_active', 'Cancellation failed: no active response found.', ev.event_id);
        return this.cancelActive();
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
    let pcm: Int16Array;
    let rate: number;
    if (format === 'ulaw8k') {
      pcm = ulawDecode(bytes);
      rate = 8000;
    } else {
      const n = bytes.length >> 1;
      pcm = new Int16Array(n);
      for (let i = 0; i < n; i++) pcm[i] = bytes.readInt16LE(2 * i);
      rate = 24000;
    }
    this.record.audioMsReceived += (pcm.length * 1000) / rate;
    this.uncommittedMs += (pcm.length * 1000) / rate;
    const all = new Int16Array(this.carry.length + pcm.length);
    all.set(this.carry);
    all.set(pcm, this.carry.length);
    const win = (rate * FRAME_MS) / 1000;
    let off = 0;
    for (; off + win <= all.length; off += win) this.vadWindow(all.subarray(off, off + win));
    this.carry = all.slice(off);
  }

  /** One 20 ms window of input: energy VAD with prefix padding and a silence hang-over. */
  private vadWindow(win: Int16Array): void {
    const startMs = this.inputMs;
    this.inputMs += FRAME_MS;
    if (!this.vad) return;
    const voiced = rmsDbfs(win) > -60 + 40 * this.vad.threshold; // threshold 0.5 → -40 dBFS
    if (voiced) {
      this.lastVoiceEndMs = this.inputMs;
      if (!this.speaking) {
        this.speaking = true;
        this.speechStartMs = Math.max(0, startMs - this.vad.prefixPaddingMs);
        this.inputItemId = this.newItemId();
        this.send({ type: 'input_audio_buffer.speech_started', audio_start_ms: this.speechStartMs, item_id: this.inputItemId });
        if (this.active && this.vad.interruptResponse) this.cancelActive();
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
    const respond = () => (turn?.tool ? this.startToolResponse(turn.tool) : this.startSpokenResponse(turn?.reply ?? 'Okay.'));
    // One response at a time: a turn that ends while another response is
    // still generating is answered when that one is done.
    if (this.active) this.queuedTurn = respond;
    else respond();
  }

  private onItemCreate(ev: any): void {
    const item = ev.item;
    if (!item || typeof item.type !== 'string') return this.error('invalid_request_error', "Missing required parameter: 'item'.", ev.event_id, 'item');
    const id = item.id ?? this.newItemId();
    if (item.type === 'function_call_output') {
      if (typeof item.call_id !== 'string' || typeof item.output !== 'string') {
        return this.error('invalid_request_error', 'function_call_output needs call_id and output.', ev.event_id, 'item');
      }
      this.record.toolOutputs.push({ call_id: item.call_id, output: item.output });
      const pending = this.pendingTool;
      if (pending && pending.callId === item.call_id) pending.output = item.output;
    } else if (item.type === 'message' && item.role === 'user') {
      const text = (item.content ?? []).map((c: any) => (c?.type === 'input_text' ? c.text : '')).join(' ');
      this.record.userTexts.push(text);
      this.pendingUserText = text;
    }
    this.send({ type: 'conversation.item.added', previous_item_id: null, item: { ...item, id } });
    this.send({ type: 'conversation.item.done', previous_item_id: null, item: { ...item, id } });
  }

  private onTruncate(ev: any): void {
    const resp = this.record.responses.find((r) => r.itemId === ev.item_id);
    if (!resp) return this.error('item_truncate_invalid_item_id', `Item with item_id '${ev.item_id}' not found.`, ev.event_id, 'item_id');
    if (typeof ev.audio_end_ms !== 'number' || ev.audio_end_ms < 0 || ev.audio_end_ms > Math.ceil(resp.audioMsSent)) {
      return this.error(
        'invalid_value',
        `Audio content of ${Math.round(resp.audioMsSent)}ms is already shorter than ${ev.audio_end_ms}ms`,
        ev.event_id,
        'audio_end_ms',
      );
    }
    this.record.truncates.push({ item_id: ev.item_id, audio_end_ms: ev.audio_end_ms });
    this.send({ type: 'conversation.item.truncated', item_id: ev.item_id, content_index: ev.content_index ?? 0, audio_end_ms: ev.audio_end_ms });
  }

  private onResponseCreate(ev: any): void {
    if (this.active) {
      return this.error('conversation_already_has_active_response', `Conversation already has an active response in progress: ${this.active.resp.id}.`, ev.event_id);
    }
    if (this.pendingTool?.output !== undefined) {
      const { reply, output } = this.pendingTool;
      this.pendingTool = null;
      return this.startSpokenResponse(reply(output));
    }
    if (this.pendingUserText !== null) {
      const text = this.pendingUserText;
      this.pendingUserText = null;
      return this.startSpokenResponse(this.scenario.onUserText?.(text) ?? `You pressed ${text.replace(/[^0-9*#]/g, '')}.`);
    }
    if (!this.greeted) {
      this.greeted = true;
      return this.startSpokenResponse(this.scenario.greeting);
    }
    return this.startSpokenResponse(ev.response?.instructions ? 'One moment, please.' : 'Okay.');
  }

  private beginResponse(text: string): { resp: StandInResponse; timers: NodeJS.Timeout[] } {
    const resp: StandInResponse = { id: `resp_${++this.seq}`, itemId: this.newItemId(), status: 'in_progress', audioMsSent: 0, text };
    this.record.responses.push(resp);
    this.active = { resp, timers: [] };
    this.send({ type: 'response.created', response: { id: resp.id, object: 'realtime.response', status: 'in_progress', output: [] } });
    return this.active;
  }

  private startSpokenResponse(text: string): void {
    const act = this.beginResponse(text);
    const { resp } = act;
    const format = this.record.format ?? 'pcm24k';
    const durationMs = Math.min(MAX_REPLY_MS, Math.max(300, text.length * MS_PER_CHAR));
    const bytes = replyAudio(durationMs, format);
    const bytesPerMs = format === 'ulaw8k' ? 8 : 48;
    // Irregular chunk sizes, odd byte counts included, like the real service.
    const sizes = format === 'ulaw8k' ? [800, 1201, 640, 1999] : [4800, 7201, 2399, 9600, 3841];
    const speedup = this.opts.audioSpeedup ?? 4;
    const item = { id: resp.itemId, type: 'message', role: 'assistant', status: 'in_progress', content: [] };
    const words = text.split(' ');
    let off = 0;
    let k = 0;
    let sentMs = 0;
    const step = () => {
      if (this.active?.resp !== resp) return;
      if (off === 0) {
        this.send({ type: 'response.output_item.added', response_id: resp.id, output_index: 0, item });
        this.send({ type: 'response.content_part.added', response_id: resp.id, item_id: resp.itemId, output_index: 0, content_index: 0, part: { type: 'audio', transcript: '' } });
        resp.firstDeltaAt = performance.now();
      }
      if (off < bytes.length) {
        const n = Math.min(sizes[k++ % sizes.length]!, bytes.length - off);
        const chunk = bytes.subarray(off, off + n);
        off += n;
        resp.audioMsSent = off / bytesPerMs;
        this.send({ type: 'response.output_audio.delta', response_id: resp.id, item_id: resp.itemId, output_index: 0, content_index: 0, delta: chunk.toString('base64') });
        const w = words[Math.min(words.length - 1, Math.floor((off / bytes.length) * words.length))];
        if (w && k <= words.length) this.send({ type: 'response.output_audio_transcript.delta', response_id: resp.id, item_id: resp.itemId, output_index: 0, content_index: 0, delta: `${w} ` });
        const chunkMs = n / bytesPerMs;
        sentMs += chunkMs;
        act.timers.push(this.later(chunkMs / speedup, step));
        return;
      }
      this.send({ type: 'response.output_audio.done', response_id: resp.id, item_id: resp.itemId, output_index: 0, content_index: 0 });
      this.send({ type: 'response.output_audio_transcript.done', response_id: resp.id, item_id: resp.itemId, output_index: 0, content_index: 0, transcript: text });
      this.send({ type: 'response.output_item.done', response_id: resp.id, output_index: 0, item: { ...item, status: 'completed', content: [{ type: 'output_audio', transcript: text }] } });
      this.finish(resp, 'completed', sentMs);
    };
    act.timers.push(this.later(this.opts.responseDelayMs ?? 150, step));
  }

  private startToolResponse(tool: NonNullable<ScenarioTurn['tool']>): void {
    const act = this.beginResponse('');
    const { resp } = act;
    const callId = `call_${++this.seq}`;
    const args = JSON.stringify(tool.arguments);
    act.timers.push(
      this.later(this.opts.responseDelayMs ?? 150, () => {
        if (this.active?.resp !== resp) return;
        const item = { id: resp.itemId, type: 'function_call', status: 'in_progress', call_id: callId, name: tool.name, arguments: '' };
        this.send({ type: 'response.output_item.added', response_id: resp.id, output_index: 0, item });
        const half = Math.floor(args.length / 2);
        for (const delta of [args.slice(0, half), args.slice(half)]) {
          this.send({ type: 'response.function_call_arguments.delta', response_id: resp.id, item_id: resp.itemId, output_index: 0, call_id: callId, delta });
        }
        this.send({ type: 'response.function_call_arguments.done', response_id: resp.id, item_id: resp.itemId, output_index: 0, call_id: callId, name: tool.name, arguments: args });
        this.send({ type: 'response.output_item.done', response_id: resp.id, output_index: 0, item: { ...item, status: 'completed', arguments: args } });
        this.pendingTool = { callId, reply: tool.reply };
        this.finish(resp, 'completed', 0);
      }),
    );
  }

  private cancelActive(): void {
    const act = this.active;
    if (!act) return;
    for (const t of act.timers) clearTimeout(t);
    this.finish(act.resp, 'cancelled', act.resp.audioMsSent);
  }

  private finish(resp: StandInResponse, status: 'completed' | 'cancelled', audioMs: number): void {
    resp.status = status;
    if (this.active?.resp === resp) this.active = null;
    const next = this.queuedTurn;
    this.queuedTurn = null;
    if (next) queueMicrotask(() => !this.active && next());
    const outAudio = Math.ceil(audioMs / 50);
    const outText = Math.ceil(resp.text.length / 4);
    const inAudio = Math.ceil(this.record.audioMsReceived / 100);
    this.send({
      type: 'response.done',
      response: {
        id: resp.id,
        object: 'realtime.response',
        status,
        status_details: status === 'cancelled' ? { type: 'cancelled', reason: 'turn_detected' } : null,
        usage: {
          total_tokens: outAudio + outText + inAudio + 120,
          input_tokens: inAudio + 120,
          output_tokens: outAudio + outText,
          input_token_details: { text_tokens: 120, audio_tokens: inAudio, cached_tokens: 64 },
          output_token_details: { text_tokens: outText, audio_tokens: outAudio },
        },
      },
    });
  }

  private newItemId(): string {
    return `item_${++this.seq}`;
  }
}
