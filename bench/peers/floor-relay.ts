/**
 * The floor relay: the cheapest relay that still carries the bench's traffic
 * on callbridge's own edge and model writer, so the relay bench can say what
 * this design costs before any call logic (issue 8). If the floor's CPU per
 * call-second is already above a target ratio to the naive relay, that target
 * is out of reach of the design on that machine, whatever the call layer does.
 *
 * What it keeps from callbridge:
 * - the edge: `startServer` (src/server/app.ts), native uWebSockets.js where
 *   it loads, with its signature checks, rate limits, limits and metrics, in
 *   front of a minimal VoiceApp (TwiML from a template string, one handler
 *   per stream, trivial health and status);
 * - the model writer: one `ws` client per call, caller audio written with
 *   `writeAppend` (src/realtime/ws-lean.ts), `ws.send` when it declines;
 * - the audio core: transcode mode runs callbridge's wasm Transcoder
 *   (src/dsp) exactly as the call layer opens it (`Transcoder.open()`).
 *
 * What it leaves out, on purpose: every message is trusted. Twilio `media`
 * is found with `indexOf('"payload":"')` and the next quote (no JSON.parse,
 * no validation); `start` is parsed once for its streamSid; `stop` closes the
 * model socket; everything else from Twilio is ignored. From the model, the
 * event type is read from the raw bytes (the first `"type":"` in the
 * message: the stand-in writes event_id then type, OpenAI type first) and
 * only `response.output_audio.delta` is JSON.parsed; `speech_started` sends
 * `clear`, every other event is dropped unread. What the model sends before
 * Twilio's `start` (the greeting, when the model answers first) is held and
 * replayed at `start`, as callbridge's playout holds it. Audio goes to Twilio the
 * moment it arrives (no pacing, no marks, so no barge-in bookkeeping and no
 * truncate); no admission tokens, records, transcripts, tools, turn latency,
 * reconnects, timeouts or backpressure handling. Capacity mode (`batchMs` >
 * 20) joins whole frames into one append with no speech-onset flush.
 *
 * Same as the naive relay (bench/peers/naive-relay.ts), so the three are
 * measured alike: the model URL and `session.update`, the greeting
 * (`response.create`), inbound audio queued until the model socket is open,
 * and relay-added latency recorded per audio message in a LatencyHistogram
 * (src/call/stats.ts) from handler entry to after the outgoing send.
 */
import WebSocket from 'ws';
import type { HealthReport, IncomingResult, StreamHandler, TwilioSocket, VoiceApp } from '../../src/call/ports.js';
import { LatencyHistogram } from '../../src/call/stats.js';
import type { Config } from '../../src/config.js';
import { Transcoder } from '../../src/dsp/index.js';
import type { Logger } from '../../src/log.js';
import { writeAppend } from '../../src/realtime/ws-lean.js';
import { peerSessionUpdate, type PeerRelay } from './peer-relay.js';
import { startServer, type RunningServer } from '../../src/server/app.js';
import { edgeSettingsFromConfig } from '../../src/main.js';
import { FRAME_MS } from '../../src/dsp/format.js';

export type FloorMode = 'passthrough' | 'transcode';

export interface FloorRelayOptions {
  /** The edge's settings (signatures, PUBLIC_URL, HOST/PORT, rate limits), as loadConfig reads them for callbridge. */
  config: Config;
  log: Logger;
  /** The model's base URL as callbridge takes it (OPENAI_BASE_URL), e.g. http://127.0.0.1:PORT/v1. */
  modelBaseUrl: string;
  apiKey: string;
  mode: FloorMode;
  /** Caller audio per append, ms: 20 (default) = one append per Twilio frame; 40-100 = that many ms of whole frames joined. */
  batchMs?: number;
}

export interface FloorRelay extends PeerRelay {
  /** The edge serving, as `callbridge serve` prints it. */
  edge: string;
  /** Model socket connects, dial to open, ms: the calls-per-core verdict tells a slow model side by it. */
  readonly modelConnect: LatencyHistogram;
}

/** What transcode mode runs (printed by the bench). */
export const FLOOR_TRANSCODE = 'callbridge wasm Transcoder (src/dsp)';

const PAYLOAD_KEY = '"payload":"';
const TYPE_KEY = '"type":"';
const AUDIO_DELTA = Buffer.from('response.output_audio.delta"', 'latin1');
const SPEECH_STARTED = Buffer.from('input_audio_buffer.speech_started"', 'latin1');

/** True when `buf` holds `word` at `at`. */
function holdsAt(buf: Buffer, word: Buffer, at: number): boolean {
  return at + word.length <= buf.length && buf.compare(word, 0, word.length, at, at + word.length) === 0;
}

const xmlAttr = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

export async function startFloorRelay(opts: FloorRelayOptions): Promise<FloorRelay> {
  const modelUrl = `${opts.modelBaseUrl.replace(/^http/, 'ws').replace(/\/$/, '')}/realtime?model=gpt-realtime`;
  const batchFrames = Math.max(1, Math.floor((opts.batchMs ?? FRAME_MS) / FRAME_MS));
  const relayIn = new LatencyHistogram();
  const relayOut = new LatencyHistogram();
  const modelConnect = new LatencyHistogram();
  const calls = new Set<FloorCall>();
  let callsEnded = 0;
  const startedAt = Date.now();

  const shared: CallShared = {
    modelUrl,
    apiKey: opts.apiKey,
    transcode: opts.mode === 'transcode',
    batchFrames,
    relayIn,
    relayOut,
    modelConnect,
    ended(call) {
      if (calls.delete(call)) callsEnded++;
    },
  };

  const app: VoiceApp = {
    incoming(_call, urls): IncomingResult {
      return {
        ok: true,
        twiml: `<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="${xmlAttr(urls.streamUrl)}"/></Connect></Response>`,
      };
    },
    status() {},
    openStream(socket) {
      const call = new FloorCall(socket, shared);
      calls.add(call);
      return call;
    },
    health(): HealthReport {
      return {
        status: 'ok',
        version: 'floor',
        uptimeSeconds: Math.round((Date.now() - startedAt) / 1000),
        activeCalls: calls.size,
        model: { reachable: null, lastOkAt: null, lastError: null },
        signed: opts.config.twilioAuthToken !== undefined,
      };
    },
  };

  const server: RunningServer = await startServer({ settings: edgeSettingsFromConfig(opts.config), app, log: opts.log });
  return {
    port: server.port,
    edge: server.edge.description,
    get callsEnded() {
      return callsEnded;
    },
    relayIn,
    relayOut,
    modelConnect,
    close: () => server.close(),
  };
}

interface CallShared {
  modelUrl: string;
  apiKey: string;
  transcode: boolean;
  batchFrames: number;
  relayIn: LatencyHistogram;
  relayOut: LatencyHistogram;
  /** Model socket connects, dial to open, ms (as callbridge's Relay.modelConnect). */
  modelConnect: LatencyHistogram;
  ended(call: FloorCall): void;
}

/** One call: a Twilio stream and its model socket. */
class FloorCall implements StreamHandler {
  private readonly model: WebSocket;
  private readonly transcoder: Transcoder | undefined;
  /** `{"event":"media","streamSid":…,"media":{"payload":"`, set on `start`. */
  private mediaPrefix: string | undefined;
  private clearMessage = '';
  /** Appends (base64) waiting for the model socket to open. */
  private pending: string[] = [];
  /** Model messages that arrived before Twilio's `start` (the greeting can): replayed once the stream is known. */
  private early: Buffer[] = [];
  /** Phone audio held for the next append (capacity mode, or transcode), µ-law bytes. */
  private held = Buffer.alloc(1024);
  private heldLen = 0;
  private heldFrames = 0;
  /** Model audio decoded from base64. */
  private scratch = Buffer.alloc(8192);
  private closed = false;

  constructor(
    private readonly socket: TwilioSocket,
    private readonly shared: CallShared,
  ) {
    this.transcoder = shared.transcode ? Transcoder.open() : undefined;
    const dialled = performance.now();
    const model = (this.model = new WebSocket(shared.modelUrl, { headers: { Authorization: `Bearer ${shared.apiKey}` } }));
    model.on('open', () => {
      shared.modelConnect.record(performance.now() - dialled);
      model.send(peerSessionUpdate(shared.transcode));
      model.send('{"type":"response.create"}');
      for (const b64 of this.pending.splice(0)) this.append(b64);
    });
    model.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary) this.onModelMessage(data);
    });
    model.on('error', () => this.socket.close(1011, 'model error'));
    model.on('close', () => this.socket.close(1000, 'model closed'));
  }

  onText(text: string): void {
    const t0 = performance.now();
    const p = text.indexOf(PAYLOAD_KEY);
    if (p >= 0) {
      const from = p + PAYLOAD_KEY.length;
      const to = text.indexOf('"', from);
      if (to < 0) return;
      this.media(text.slice(from, to));
      this.shared.relayIn.record(performance.now() - t0);
      return;
    }
    if (text.includes('"event":"start"')) {
      const streamSid = (JSON.parse(text) as { start: { streamSid: string } }).start.streamSid;
      const sid = JSON.stringify(streamSid);
      this.mediaPrefix = `{"event":"media","streamSid":${sid},"media":{"payload":"`;
      this.clearMessage = `{"event":"clear","streamSid":${sid}}`;
      for (const data of this.early.splice(0)) this.onModelMessage(data);
    } else if (text.includes('"event":"stop"')) {
      this.flush();
      this.model.close();
    }
  }

  onBinary(): void {}

  onDrain(): void {}

  onClose(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.model.readyState === WebSocket.OPEN || this.model.readyState === WebSocket.CONNECTING) {
      this.flush();
      this.model.close();
    }
    this.transcoder?.close();
    this.shared.ended(this);
  }

  /** One Twilio media payload (base64 µ-law, 20 ms). */
  private media(b64: string): void {
    if (this.shared.batchFrames === 1 && !this.transcoder) return this.append(b64);
    const need = this.heldLen + Math.ceil((b64.length * 3) / 4);
    if (need > this.held.length) {
      const next = Buffer.alloc(Math.max(need, this.held.length * 2));
      this.held.copy(next, 0, 0, this.heldLen);
      this.held = next;
    }
    this.heldLen += this.held.write(b64, this.heldLen, 'base64');
    if (++this.heldFrames >= this.shared.batchFrames) this.flush();
  }

  /** Send the held phone audio as one append (transcoded in transcode mode). */
  private flush(): void {
    if (this.heldLen === 0) return;
    let audio: Uint8Array = this.held.subarray(0, this.heldLen);
    if (this.transcoder) audio = this.transcoder.inbound(audio);
    this.heldLen = 0;
    this.heldFrames = 0;
    this.append(Buffer.from(audio.buffer, audio.byteOffset, audio.byteLength).toString('base64'));
  }

  private append(b64: string): void {
    const model = this.model;
    if (model.readyState !== WebSocket.OPEN) {
      if (model.readyState === WebSocket.CONNECTING) this.pending.push(b64);
      return;
    }
    if (!writeAppend(model, b64)) model.send(`{"type":"input_audio_buffer.append","audio":"${b64}"}`);
  }

  private onModelMessage(data: Buffer): void {
    const t0 = performance.now();
    // After the stream closed, the transcoder is gone and there is no one to send to.
    if (this.closed) return;
    if (this.mediaPrefix === undefined) {
      this.early.push(data);
      return;
    }
    const p = data.indexOf(TYPE_KEY);
    if (p < 0) return;
    const at = p + TYPE_KEY.length;
    if (holdsAt(data, AUDIO_DELTA, at)) {
      const delta = (JSON.parse(data.toString()) as { delta: string }).delta;
      let payload = delta;
      if (this.transcoder) {
        const need = Math.ceil((delta.length * 3) / 4);
        if (need > this.scratch.length) this.scratch = Buffer.alloc(Math.max(need, this.scratch.length * 2));
        const n = this.scratch.write(delta, 'base64');
        const ulaw = this.transcoder.outbound(this.scratch.subarray(0, n));
        if (ulaw.length === 0) return; // under one 8 kHz sample: carried to the next delta
        payload = Buffer.from(ulaw.buffer, ulaw.byteOffset, ulaw.byteLength).toString('base64');
      }
      const message = `${this.mediaPrefix}${payload}"}}`;
      this.socket.cork(() => this.socket.send(message));
      this.shared.relayOut.record(performance.now() - t0);
    } else if (holdsAt(data, SPEECH_STARTED, at)) {
      const message = this.clearMessage;
      this.socket.cork(() => this.socket.send(message));
    }
  }
}
