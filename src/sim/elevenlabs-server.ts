/**
 * A local stand-in for ElevenLabs' text-to-speech stream-input WebSocket
 * (docs/elevenlabs-protocol.md), for tests, the demo and the bench. It
 * implements the protocol on its own (no code shared with src/pipeline):
 *
 * - `GET /v1/text-to-speech/{voice_id}/stream-input?model_id&output_format&auto_mode&inactivity_timeout`
 *   upgraded to a WebSocket; an unknown output format is refused with an
 *   error frame and close 1008.
 * - The first message must be `{text:" ", xi_api_key?, voice_settings?,
 *   generation_config?}`; a wrong key (when `apiKey` is set) gets an error
 *   frame `invalid_api_key` and close 1008.
 * - Text is buffered and generated: at once per message with
 *   `auto_mode=true`; otherwise when the buffer reaches the next
 *   `chunk_length_schedule` step (default [120, 160, 250, 290]); always on
 *   `flush: true` and on the end message `{text:""}`.
 * - Each generation's audio is `msPerChar` × its characters long (speech-like
 *   signal from audio.ts, µ-law or PCM16 LE at the format's rate), sent as
 *   `{audio, isFinal:null, normalizedAlignment}` frames of `frameMs` each, the
 *   first `firstAudioDelayMs` (+ jitter) after the generation was triggered,
 *   the next ones `frameGapMs` apart. The first frame of a generation carries
 *   its character alignment. After the end message and the last audio:
 *   `{isFinal:true}`, then close 1000.
 * - No message for `inactivity_timeout` s (default 20; `idleTimeoutMs`
 *   overrides it in ms for tests) → error frame `input_timeout_exceeded` and
 *   close 1008.
 * - Faults per session: after N audio frames send an error frame and close
 *   1011, close 1011 without one, or destroy the socket.
 *
 * Everything a client sends, and everything generated, is recorded per session.
 */
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { speechLike, ulawEncode } from './audio.js';

export type ElevenFormat = 'ulaw_8000' | 'pcm_8000' | 'pcm_16000' | 'pcm_22050' | 'pcm_24000' | 'pcm_44100' | 'pcm_48000';

export const ELEVEN_FORMAT_RATE: Readonly<Record<ElevenFormat, number>> = {
  ulaw_8000: 8000,
  pcm_8000: 8000,
  pcm_16000: 16000,
  pcm_22050: 22050,
  pcm_24000: 24000,
  pcm_44100: 44100,
  pcm_48000: 48000,
};

const DEFAULT_SCHEDULE = [120, 160, 250, 290];

export interface ElevenFault {
  /** Session index (connect order, from 0); every session when absent. */
  session?: number;
  /** Audio frames sent before the fault (default 1). */
  afterFrames?: number;
  /** `error`: error frame + close 1011; `close`: close 1011 only; `drop`: socket destroyed, no close frame. */
  kind: 'error' | 'close' | 'drop';
}

export interface ElevenStandInOptions {
  port?: number;
  host?: string;
  /** When set, the init message's xi_api_key must equal it. */
  apiKey?: string;
  /** Audio per character (ms, default 60). */
  msPerChar?: number;
  /** Audio per frame (ms, default 100). */
  frameMs?: number;
  /** From a generation's trigger to its first frame (ms, default 75). */
  firstAudioDelayMs?: number;
  /** Uniform extra delay 0…jitterMs on each first frame (default 0). */
  jitterMs?: number;
  /** Between frames of one generation (ms, default 5). */
  frameGapMs?: number;
  /** Overrides the `inactivity_timeout` query (ms). */
  idleTimeoutMs?: number;
  faults?: ElevenFault[];
  /** Seed for jitter (default 1). */
  seed?: number;
}

export interface ElevenGeneration {
  text: string;
  /** Audio bytes produced for it. */
  bytes: number;
  /** performance.now() when it was triggered (its text complete), and when its first audio frame was sent. */
  triggeredAt: number;
  firstFrameAt?: number;
}

export interface ElevenSession {
  voiceId: string;
  query: Record<string, string>;
  init: Record<string, unknown> | undefined;
  /** Every client text frame after the init message, parsed, with its arrival (performance.now()). */
  messages: { text: string; flush?: boolean; at: number }[];
  generations: ElevenGeneration[];
  audioFramesSent: number;
  audioBytesSent: number;
  /** Characters received for synthesis (billing). */
  characters: number;
  /** Who closed: `client` (socket closed while generating or idle), `server`, or undefined while open. */
  closedBy?: 'client' | 'server';
  closeCode?: number;
  /** Audio frames that were due after the client closed (and so not sent). */
  framesDroppedAfterClose: number;
  errorsSent: string[];
}

export interface ElevenStandIn {
  /** `ws://127.0.0.1:PORT` (the ElevenLabsTts baseUrl). */
  readonly url: string;
  readonly port: number;
  readonly sessions: ElevenSession[];
  close(): Promise<void>;
}

/** Audio bytes the stand-in makes for `chars` characters in `format` (whole samples). */
export function elevenAudioBytes(chars: number, format: ElevenFormat, msPerChar = 60): number {
  const samples = Math.round((chars * msPerChar * ELEVEN_FORMAT_RATE[format]) / 1000);
  return format === 'ulaw_8000' ? samples : samples * 2;
}

function encode(format: ElevenFormat, durationMs: number, seed: number): Buffer {
  const rate = ELEVEN_FORMAT_RATE[format];
  const pcm = speechLike(durationMs, rate, seed);
  if (format === 'ulaw_8000') return Buffer.from(ulawEncode(pcm));
  const out = Buffer.alloc(pcm.length * 2);
  for (let i = 0; i < pcm.length; i++) out.writeInt16LE(pcm[i]!, 2 * i);
  return out;
}

export async function startElevenLabsStandIn(opts: ElevenStandInOptions = {}): Promise<ElevenStandIn> {
  const msPerChar = opts.msPerChar ?? 60;
  const frameMs = opts.frameMs ?? 100;
  const firstDelay = opts.firstAudioDelayMs ?? 75;
  const jitterMs = opts.jitterMs ?? 0;
  const frameGap = opts.frameGapMs ?? 5;
  let rnd = (opts.seed ?? 1) >>> 0 || 1;
  const random = (): number => (rnd = (Math.imul(rnd, 1664525) + 1013904223) >>> 0) / 2 ** 32;

  const sessions: ElevenSession[] = [];
  const sockets = new Set<WebSocket>();
  const http = createServer((_req, res) => {
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ detail: { status: 'not_found', message: 'not found' } }));
  });
  const wss = new WebSocketServer({ noServer: true, maxPayload: 1024 * 1024 });

  http.on('upgrade', (req: IncomingMessage, socket, head) => {
    // A client that resets the connection (it read our refusal and went): the socket's error has no one else to go to.
    socket.on('error', () => {});
    const u = new URL(req.url ?? '/', 'http://x');
    const m = /^\/v1\/text-to-speech\/([^/]+)\/stream-input$/.exec(u.pathname);
    if (!m) {
      socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      sockets.add(ws);
      ws.on('close', () => sockets.delete(ws));
      serve(ws, decodeURIComponent(m[1]!), Object.fromEntries(u.searchParams));
    });
  });

  function serve(ws: WebSocket, voiceId: string, query: Record<string, string>): void {
    const index = sessions.length;
    const s: ElevenSession = {
      voiceId, query, init: undefined, messages: [], generations: [], audioFramesSent: 0, audioBytesSent: 0,
      characters: 0, framesDroppedAfterClose: 0, errorsSent: [],
    };
    sessions.push(s);
    const faults = (opts.faults ?? []).filter((f) => f.session === undefined || f.session === index);
    /** Generations waiting to be sent, in order; the head is being sent. */
    const queue: { frames: Buffer[]; alignment: unknown; gen: ElevenGeneration }[] = [];
    let sending = false;
    /** Generations triggered whose last frame is not yet sent. */
    let pendingGenerations = 0;
    const timers = new Set<NodeJS.Timeout>();
    const later = (ms: number, fn: () => void): void => {
      const t = setTimeout(() => {
        timers.delete(t);
        fn();
      }, ms);
      timers.add(t);
    };
    let closed = false;
    const stop = (): void => {
      closed = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
    };
    const serverClose = (code: number, reason: string, error?: { error: string; message: string }): void => {
      if (closed) return;
      if (error) {
        ws.send(JSON.stringify({ ...error, code }));
        s.errorsSent.push(error.error);
      }
      s.closedBy = 'server';
      s.closeCode = code;
      stop();
      ws.close(code, reason);
    };
    ws.on('close', (code) => {
      if (!closed) {
        s.closedBy = 'client';
        s.closeCode = code;
        // Frames still queued would have been sent: count them as dropped.
        s.framesDroppedAfterClose = queue.reduce((n, g) => n + g.frames.length, 0);
      }
      stop();
    });

    const format = query.output_format as ElevenFormat | undefined;
    if (!format || !(format in ELEVEN_FORMAT_RATE)) {
      serverClose(1008, 'invalid_output_format', { error: 'invalid_output_format', message: `output_format ${format ?? '(none)'} is not supported` });
      return;
    }
    const autoMode = query.auto_mode === 'true';
    const idleMs = opts.idleTimeoutMs ?? (query.inactivity_timeout ? Number(query.inactivity_timeout) * 1000 : 20_000);
    let idleTimer: NodeJS.Timeout | undefined;
    const armIdle = (): void => {
      if (idleTimer) {
        clearTimeout(idleTimer);
        timers.delete(idleTimer);
      }
      const t = setTimeout(() => {
        timers.delete(t);
        serverClose(1008, 'input_timeout_exceeded', {
          error: 'input_timeout_exceeded',
          message: `Have not received new text input for ${Math.round(idleMs / 1000)} seconds. Closing the connection.`,
        });
      }, idleMs);
      timers.add(t);
      idleTimer = t;
    };
    armIdle();

    let schedule = DEFAULT_SCHEDULE;
    let scheduleStep = 0;
    let buffer = '';
    let ended = false;
    let startMs = 0;

    const generate = (): void => {
      const text = buffer;
      buffer = '';
      if (!/\S/.test(text)) return;
      const durationMs = text.length * msPerChar;
      const audio = encode(format, durationMs, s.generations.length + 1);
      const gen: ElevenGeneration = { text, bytes: audio.length, triggeredAt: performance.now() };
      s.generations.push(gen);
      const bytesPerFrame = Math.max(2, Math.round((frameMs * ELEVEN_FORMAT_RATE[format]) / 1000) * (format === 'ulaw_8000' ? 1 : 2));
      const frames: Buffer[] = [];
      for (let o = 0; o < audio.length; o += bytesPerFrame) frames.push(audio.subarray(o, o + bytesPerFrame));
      const chars = [...text];
      const alignment = {
        chars,
        charStartTimesMs: chars.map((_, i) => startMs + i * msPerChar),
        charDurationsMs: chars.map(() => msPerChar),
      };
      startMs += durationMs;
      const delay = firstDelay + random() * jitterMs;
      const g = { frames, alignment, gen };
      later(delay, () => {
        queue.push(g);
        if (!sending) sendNext();
      });
    };

    const sendNext = (): void => {
      if (closed) return;
      const g = queue[0];
      if (!g) {
        sending = false;
        if (ended && pendingGenerations === 0) {
          ws.send(JSON.stringify({ isFinal: true }));
          serverClose(1000, '');
        }
        return;
      }
      sending = true;
      const frame = g.frames.shift()!;
      const first = g.alignment !== null;
      if (first) g.gen.firstFrameAt = performance.now();
      ws.send(JSON.stringify({ audio: frame.toString('base64'), isFinal: null, normalizedAlignment: first ? g.alignment : null, alignment: first ? g.alignment : null }));
      g.alignment = null;
      s.audioFramesSent++;
      s.audioBytesSent += frame.length;
      if (g.frames.length === 0) {
        queue.shift();
        pendingGenerations--;
      }
      const fault = faults.find((f) => (f.afterFrames ?? 1) === s.audioFramesSent);
      if (fault) {
        switch (fault.kind) {
          case 'error':
            return serverClose(1011, 'internal_error', { error: 'internal_error', message: 'An internal server error occurred.' });
          case 'close':
            return serverClose(1011, '');
          case 'drop':
            s.closedBy = 'server';
            stop();
            ws.terminate();
            return;
        }
      }
      later(frameGap, sendNext);
    };

    const trigger = (): void => {
      if (/\S/.test(buffer)) pendingGenerations++;
      generate();
    };

    ws.on('message', (data, isBinary) => {
      if (closed) return;
      armIdle();
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(data.toString()) as Record<string, unknown>;
        if (isBinary || typeof msg !== 'object' || msg === null || typeof msg.text !== 'string') throw new Error('bad');
      } catch {
        serverClose(1008, 'invalid_message', { error: 'invalid_message', message: 'Expected a JSON object with a text field.' });
        return;
      }
      const text = msg.text as string;
      if (s.init === undefined) {
        if (text !== ' ') {
          serverClose(1008, 'invalid_message', { error: 'invalid_message', message: 'The first message must have text " ".' });
          return;
        }
        s.init = msg;
        if (opts.apiKey !== undefined && msg.xi_api_key !== opts.apiKey) {
          serverClose(1008, 'invalid_api_key', { error: 'invalid_api_key', message: 'Invalid API key.' });
          return;
        }
        const gc = msg.generation_config as { chunk_length_schedule?: unknown } | undefined;
        if (Array.isArray(gc?.chunk_length_schedule)) schedule = gc.chunk_length_schedule.filter((n): n is number => typeof n === 'number');
        return;
      }
      const flush = msg.flush === true;
      s.messages.push(flush ? { text, flush, at: performance.now() } : { text, at: performance.now() });
      if (text === '') {
        ended = true;
        trigger();
        if (!sending && queue.length === 0) later(0, sendNext);
        return;
      }
      if (text !== ' ') s.characters += text.length;
      buffer += text;
      if (autoMode || flush) return trigger();
      const step = schedule[Math.min(scheduleStep, schedule.length - 1)] ?? 120;
      if (buffer.length >= step) {
        scheduleStep++;
        trigger();
      }
    });
  }

  await new Promise<void>((resolve) => http.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', resolve));
  const port = (http.address() as AddressInfo).port;
  return {
    url: `ws://127.0.0.1:${port}`,
    port,
    sessions,
    close: () =>
      new Promise<void>((resolve) => {
        for (const ws of sockets) ws.terminate();
        wss.close();
        http.close(() => resolve());
      }),
  };
}
