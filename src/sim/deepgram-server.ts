/**
 * A local stand-in for Deepgram live streaming STT over WebSocket
 * (docs/deepgram-protocol.md), for tests, the demo and the bench. It
 * implements the protocol on its own (no code shared with src/pipeline):
 *
 * - Upgrade on `/v1/listen` with `Authorization: Token <key>`: a missing or
 *   wrong key is refused with HTTP 401, a query without encoding=mulaw,
 *   sample_rate=8000, channels=1 with HTTP 400 (`refuseStatus` forces another).
 * - Energy VAD on the µ-law in 20 ms blocks of the stream's own audio time
 *   (bytes received / 8 per ms). A speech onset sends `SpeechStarted`
 *   (vad_events=true); interim `Results` follow `firstResultMs` later and then
 *   every `interimEveryMs` while the utterance goes on (interim_results=true),
 *   revealing one word per `msPerWord` of speech heard; after `endpointing` ms
 *   of silence audio a final (`is_final`, `speech_final`) with every word is
 *   sent `finalDelayMs` later; `UtteranceEnd` once `utterance_end_ms` of
 *   silence audio follows the last word. Every send waits `jitterMs` more at
 *   random (seeded).
 * - `Finalize` flushes the utterance in progress as a final with
 *   `from_finalize: true` (`speech_final: false`); nothing is sent when no
 *   speech is buffered. `CloseStream` (or a legacy empty binary frame) flushes,
 *   sends `Metadata` (duration = audio seconds received) and closes 1000.
 * - No audio and no KeepAlive for `idleTimeoutMs` (10 s like Deepgram) →
 *   close 1011 `NET-0001`.
 * - The words said come from `texts`, one utterance each in order (the last
 *   repeats when they run out).
 * - Faults: after `afterAudioMs` of audio, `drop` (socket destroyed, no close
 *   frame), `net_error` (close 1011 NET-0000), `data_error` (close 1002
 *   DATA-0000), `garbage` (a text frame that is not JSON; the stream goes on).
 *
 * Everything a client sends is recorded per session for assertions.
 */
import { createServer, STATUS_CODES, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { randomUUID } from 'node:crypto';
import { WebSocketServer, type WebSocket } from 'ws';
import { rmsDbfs, ulawDecode } from './audio.js';

export const DEEPGRAM_PATH = '/v1/listen';
const BYTES_PER_MS = 8;
const BLOCK_MS = 20;
const BLOCK_BYTES = BLOCK_MS * BYTES_PER_MS;

export interface DeepgramFault {
  /** Audio received (ms) before the fault fires. */
  afterAudioMs: number;
  kind: 'drop' | 'net_error' | 'data_error' | 'garbage';
  /** Only in this session (connect order, from 0); every session when absent. */
  session?: number;
}

export interface DeepgramStandInOptions {
  port?: number;
  host?: string;
  /** The key accepted (`Authorization: Token <apiKey>`); default `test-key`. */
  apiKey?: string;
  /** Utterances, one per caller utterance in order (default one "hello"). */
  texts?: string[];
  /** From the speech onset's block arriving to the first interim (ms, default 150). */
  firstResultMs?: number;
  /** Between interims while speech goes on (ms, default 200). */
  interimEveryMs?: number;
  /** From the endpoint (silence reached `endpointing`) to the final (ms, default 40). */
  finalDelayMs?: number;
  /** Up to this much more (uniform) on every delayed send (ms, default 0). */
  jitterMs?: number;
  /** Speech heard per word revealed in interims (ms, default 300). */
  msPerWord?: number;
  /** A 20 ms block louder than this is speech (dBFS, default -45). */
  speechDbfs?: number;
  /** Close 1011 NET-0001 after this long without audio or KeepAlive (ms, default 10000). */
  idleTimeoutMs?: number;
  /** Refuse every upgrade with this HTTP status. */
  refuseStatus?: number;
  faults?: DeepgramFault[];
  seed?: number;
}

/** What the stand-in sent and when (performance.now()). */
export interface DeepgramSent {
  at: number;
  message: any;
}

export interface DeepgramStandInSession {
  index: number;
  /** The upgrade's query, as received. */
  query: Record<string, string>;
  authorization: string | undefined;
  /** Every text frame a client sent, parsed when it was JSON. */
  texts: { at: number; message: any }[];
  binaryFrames: number;
  emptyFrames: number;
  audioBytes: number;
  keepAlives: number;
  finalizes: number;
  closeStreams: number;
  sent: DeepgramSent[];
  /** Close code the stand-in sent, or -1 for a dropped socket; undefined while open. */
  closedWith: number | undefined;
  /** performance.now() when the socket closed. */
  closedAt: number | undefined;
}

export interface DeepgramStandIn {
  url: string;
  port: number;
  sessions: DeepgramStandInSession[];
  /** Upgrades refused: HTTP status and why. */
  refused: { status: number; why: string }[];
  close(): Promise<void>;
}

interface Utterance {
  text: string;
  words: string[];
  onsetMs: number;
  lastSpeechEndMs: number;
  speechMs: number;
  silenceMs: number;
  revealed: number;
  firstResultTimer?: NodeJS.Timeout;
  interimTimer?: NodeJS.Timeout;
}

interface Params {
  interim: boolean;
  endpointingMs: number | false;
  utteranceEndMs: number;
  vadEvents: boolean;
}

export async function startDeepgramStandIn(opts: DeepgramStandInOptions = {}): Promise<DeepgramStandIn> {
  const apiKey = opts.apiKey ?? 'test-key';
  const texts = opts.texts?.length ? opts.texts : ['hello'];
  const firstResultMs = opts.firstResultMs ?? 150;
  const interimEveryMs = opts.interimEveryMs ?? 200;
  const finalDelayMs = opts.finalDelayMs ?? 40;
  const jitterMs = opts.jitterMs ?? 0;
  const msPerWord = opts.msPerWord ?? 300;
  const speechDbfs = opts.speechDbfs ?? -45;
  const idleTimeoutMs = opts.idleTimeoutMs ?? 10_000;
  let seed = (opts.seed ?? 1) >>> 0 || 1;
  const rand = (): number => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32;

  const sessions: DeepgramStandInSession[] = [];
  const refused: { status: number; why: string }[] = [];
  const sockets = new Set<WebSocket>();
  const http = createServer((_req, res) => {
    res.writeHead(404).end();
  });
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });

  const refuse = (socket: Duplex, status: number, why: string): void => {
    refused.push({ status, why });
    const body = JSON.stringify({ err_code: status === 401 ? 'INVALID_AUTH' : 'Bad Request', err_msg: why });
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\ncontent-type: application/json\r\ndg-error: ${why}\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  };

  http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    // A client that resets the connection (it read our refusal and went): the socket's error has no one else to go to.
    socket.on('error', () => {});
    const u = new URL(req.url ?? '/', 'http://x');
    if (opts.refuseStatus) return refuse(socket, opts.refuseStatus, 'refused by test');
    if (u.pathname !== DEEPGRAM_PATH) return refuse(socket, 404, 'unknown path');
    const auth = req.headers.authorization;
    if (auth !== `Token ${apiKey}`) return refuse(socket, 401, 'Invalid credentials.');
    const q = Object.fromEntries(u.searchParams.entries());
    if (q.encoding !== 'mulaw' || q.sample_rate !== '8000' || (q.channels ?? '1') !== '1') return refuse(socket, 400, 'stand-in takes mulaw 8000 Hz mono only');
    wss.handleUpgrade(req, socket, head, (ws) => run(ws, q, auth));
  });

  function run(ws: WebSocket, q: Record<string, string>, auth: string | undefined): void {
    sockets.add(ws);
    const s: DeepgramStandInSession = {
      index: sessions.length,
      query: q,
      authorization: auth,
      texts: [],
      binaryFrames: 0,
      emptyFrames: 0,
      audioBytes: 0,
      keepAlives: 0,
      finalizes: 0,
      closeStreams: 0,
      sent: [],
      closedWith: undefined,
      closedAt: undefined,
    };
    sessions.push(s);
    const p: Params = {
      interim: q.interim_results === 'true',
      endpointingMs: q.endpointing === 'false' ? false : Number(q.endpointing ?? 10),
      utteranceEndMs: Number(q.utterance_end_ms ?? 0),
      vadEvents: q.vad_events === 'true',
    };
    const requestId = randomUUID();
    const faults = (opts.faults ?? []).filter((f) => f.session === undefined || f.session === s.index).map((f) => ({ ...f, fired: false }));
    let textIndex = 0;
    let pending: Buffer = Buffer.alloc(0);
    let audioMs = 0;
    let utt: Utterance | undefined;
    /** Last word end (ms) of the last final, and the silence since, for UtteranceEnd. */
    let lastFinalWordEndMs: number | undefined;
    let silenceSinceFinalMs = 0;
    let closing = false;
    const timers = new Set<NodeJS.Timeout>();
    let idleTimer: NodeJS.Timeout | undefined;

    const later = (ms: number, fn: () => void): NodeJS.Timeout => {
      const t = setTimeout(() => {
        timers.delete(t);
        fn();
      }, ms + (jitterMs > 0 ? rand() * jitterMs : 0));
      timers.add(t);
      return t;
    };
    const cancel = (t: NodeJS.Timeout | undefined): void => {
      if (!t) return;
      clearTimeout(t);
      timers.delete(t);
    };
    const send = (message: Record<string, unknown>): void => {
      if (ws.readyState !== ws.OPEN) return;
      s.sent.push({ at: performance.now(), message });
      ws.send(JSON.stringify(message));
    };
    const touch = (): void => {
      if (idleTimer) clearTimeout(idleTimer);
      idleTimer = setTimeout(() => shut(1011, 'NET-0001'), idleTimeoutMs);
    };
    const shut = (code: number, reason: string): void => {
      if (s.closedWith !== undefined) return;
      s.closedWith = code;
      s.closedAt = performance.now();
      stopTimers();
      ws.close(code, reason);
    };
    const stopTimers = (): void => {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      if (idleTimer) clearTimeout(idleTimer);
      idleTimer = undefined;
    };

    /** Words of the utterance placed evenly over its speech (s). */
    const wordsOf = (u: Utterance, n: number): { word: string; start: number; end: number; confidence: number; punctuated_word: string }[] => {
      const span = Math.max(u.lastSpeechEndMs - u.onsetMs, BLOCK_MS);
      const per = span / Math.max(1, u.words.length);
      return u.words.slice(0, n).map((w, i) => ({
        word: w.toLowerCase().replace(/[^\p{L}\p{N}'-]/gu, ''),
        start: (u.onsetMs + i * per) / 1000,
        end: (u.onsetMs + (i + 1) * per) / 1000,
        confidence: 0.98,
        punctuated_word: w,
      }));
    };
    const results = (u: Utterance, n: number, flags: { is_final: boolean; speech_final: boolean; from_finalize?: boolean }): Record<string, unknown> => {
      const words = wordsOf(u, n);
      return {
        type: 'Results',
        channel_index: [0, 1],
        duration: (audioMs - u.onsetMs) / 1000,
        start: u.onsetMs / 1000,
        is_final: flags.is_final,
        speech_final: flags.speech_final,
        ...(flags.from_finalize ? { from_finalize: true } : {}),
        channel: { alternatives: [{ transcript: words.map((w) => w.punctuated_word).join(' '), confidence: 0.97, words }] },
        metadata: { request_id: requestId, model_info: { name: q.model ?? 'nova-3', version: 'stand-in', arch: 'stand-in' }, model_uuid: 'stand-in' },
      };
    };
    const interim = (): void => {
      if (!utt || !p.interim) return;
      const n = Math.min(utt.words.length, Math.max(1, Math.ceil(utt.speechMs / msPerWord)));
      if (n > utt.revealed || utt.revealed === 0) {
        utt.revealed = n;
        send(results(utt, n, { is_final: false, speech_final: false }));
      }
      utt.interimTimer = later(interimEveryMs, interim);
    };
    /** The utterance in progress becomes final (now or after finalDelayMs). */
    const finish = (how: 'endpoint' | 'finalize' | 'close'): void => {
      const u = utt;
      if (!u) return;
      utt = undefined;
      cancel(u.firstResultTimer);
      cancel(u.interimTimer);
      const msg = results(u, u.words.length, { is_final: true, speech_final: how === 'endpoint', from_finalize: how === 'finalize' });
      lastFinalWordEndMs = u.lastSpeechEndMs;
      silenceSinceFinalMs = u.silenceMs;
      if (how === 'endpoint') later(finalDelayMs, () => send(msg));
      else send(msg);
    };

    const onBlock = (block: Uint8Array): void => {
      const speech = rmsDbfs(ulawDecode(block)) > speechDbfs;
      const startMs = audioMs;
      audioMs += BLOCK_MS;
      if (speech) {
        silenceSinceFinalMs = 0;
        if (!utt) {
          const text = texts[Math.min(textIndex++, texts.length - 1)]!;
          utt = { text, words: text.split(/\s+/).filter(Boolean), onsetMs: startMs, lastSpeechEndMs: audioMs, speechMs: 0, silenceMs: 0, revealed: 0 };
          if (p.vadEvents) send({ type: 'SpeechStarted', channel: [0], timestamp: startMs / 1000 });
          const u = utt;
          u.firstResultTimer = later(firstResultMs, () => {
            u.firstResultTimer = undefined;
            if (utt === u) interim();
          });
        }
        utt.speechMs += BLOCK_MS;
        utt.silenceMs = 0;
        utt.lastSpeechEndMs = audioMs;
        return;
      }
      if (utt) {
        utt.silenceMs += BLOCK_MS;
        if (p.endpointingMs !== false && utt.silenceMs >= p.endpointingMs) finish('endpoint');
        else if (p.endpointingMs === false && p.utteranceEndMs > 0 && utt.silenceMs >= p.utteranceEndMs) finish('close');
        else return;
      } else {
        silenceSinceFinalMs += BLOCK_MS;
      }
      // UtteranceEnd: a gap of utterance_end_ms after the last final word (needs interim results).
      if (lastFinalWordEndMs !== undefined && p.utteranceEndMs > 0 && p.interim && silenceSinceFinalMs >= p.utteranceEndMs) {
        const end = lastFinalWordEndMs / 1000;
        lastFinalWordEndMs = undefined;
        later(finalDelayMs, () => send({ type: 'UtteranceEnd', channel: [0, 1], last_word_end: end }));
      }
    };

    const onAudio = (bytes: Buffer): void => {
      s.binaryFrames++;
      s.audioBytes += bytes.length;
      pending = pending.length ? Buffer.concat([pending, bytes]) : bytes;
      let off = 0;
      while (pending.length - off >= BLOCK_BYTES) {
        onBlock(pending.subarray(off, off + BLOCK_BYTES));
        off += BLOCK_BYTES;
        for (const f of faults) {
          if (f.fired || audioMs < f.afterAudioMs) continue;
          f.fired = true;
          fire(f.kind);
          if (s.closedWith !== undefined) return;
        }
      }
      pending = Buffer.from(pending.subarray(off));
    };

    const fire = (kind: DeepgramFault['kind']): void => {
      switch (kind) {
        case 'drop':
          s.closedWith = -1;
          s.closedAt = performance.now();
          stopTimers();
          ws.terminate();
          return;
        case 'net_error':
          return shut(1011, 'NET-0000');
        case 'data_error':
          return shut(1002, 'DATA-0000');
        case 'garbage':
          if (ws.readyState === ws.OPEN) ws.send('{"type": not json');
          return;
        default: {
          const never: never = kind;
          throw new Error(`unknown fault ${String(never)}`);
        }
      }
    };

    const closeStream = (): void => {
      if (closing) return;
      closing = true;
      finish('close');
      send({
        type: 'Metadata',
        transaction_key: 'deprecated',
        request_id: requestId,
        sha256: '',
        created: new Date().toISOString(),
        duration: s.audioBytes / (BYTES_PER_MS * 1000),
        channels: 1,
      });
      shut(1000, '');
    };

    touch();
    ws.on('message', (data, isBinary) => {
      if (s.closedWith !== undefined) return;
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
      if (isBinary) {
        if (buf.length === 0) {
          s.emptyFrames++;
          return closeStream(); // legacy end-of-stream
        }
        if (closing) return;
        touch();
        onAudio(buf);
        return;
      }
      let message: any;
      try {
        message = JSON.parse(buf.toString('utf8'));
      } catch {
        message = buf.toString('utf8');
      }
      s.texts.push({ at: performance.now(), message });
      switch (message?.type) {
        case 'KeepAlive':
          s.keepAlives++;
          touch();
          return;
        case 'Finalize':
          s.finalizes++;
          finish('finalize');
          return;
        case 'CloseStream':
          s.closeStreams++;
          closeStream();
          return;
        default:
          return; // recorded; Deepgram ignores what it does not know
      }
    });
    ws.on('close', () => {
      sockets.delete(ws);
      if (s.closedWith === undefined) {
        s.closedWith = 1005;
        s.closedAt = performance.now();
      }
      stopTimers();
    });
    ws.on('error', () => {
      // the close handler records it
    });
  }

  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve());
  });
  const port = (http.address() as AddressInfo).port;
  return {
    url: `ws://${opts.host ?? '127.0.0.1'}:${port}${DEEPGRAM_PATH}`,
    port,
    sessions,
    refused,
    close: async () => {
      for (const ws of sockets) ws.terminate();
      wss.close();
      await new Promise<void>((r) => http.close(() => r()));
    },
  };
}
