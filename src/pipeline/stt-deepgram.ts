/**
 * Deepgram live streaming STT (docs/deepgram-protocol.md) behind the
 * SpeechToText port (./stt.ts), over the WebSocket protocol directly.
 *
 * Wire (pure functions in the first half of this file, no sockets):
 * - `listenUrl` builds `/v1/listen?model=nova-3&encoding=mulaw&sample_rate=8000&channels=1
 *   &interim_results=…&endpointing=…&utterance_end_ms=…&vad_events=…`.
 * - `parseDeepgramMessage` never throws: `Results`, `UtteranceEnd`,
 *   `SpeechStarted`, `Metadata` come back typed, other well-formed types as
 *   `unhandled`, bad input as `{ ok: false, error }`.
 * - `closeError` maps a close frame to an SttError: 1000 after our
 *   CloseStream is clean; 1002 (DATA-0000: audio that cannot be decoded) is
 *   not retryable; 1011 (NET-0000 internal, NET-0001 no audio for 10 s) and a
 *   socket gone without a close frame (1006) are.
 *
 * Stream behaviour:
 * - `Authorization: Token <key>` on the upgrade; HTTP 400/401/403 refusals are
 *   not retryable, 429 and 5xx are.
 * - Audio is sent as binary frames as it arrives, never empty (Deepgram reads
 *   an empty binary frame as the legacy end-of-stream). While the socket's
 *   buffer is over `maxBufferedBytes` audio is dropped and counted.
 * - `{"type":"KeepAlive"}` (a text frame) is sent after `keepAliveMs` without
 *   audio (default 4000 ms, inside Deepgram's 3–5 s advice and its 10 s idle close).
 * - `finalize()` sends `{"type":"Finalize"}`; `close()` sends
 *   `{"type":"CloseStream"}` and waits for Deepgram's final results,
 *   Metadata and close (at most `closeTimeoutMs`), then ends the socket.
 */
import WebSocket from 'ws';
import { z } from 'zod';
import { readTypedObject } from '../realtime/protocol.js';
import { SttError, type SpeechToText, type SttConnectOptions, type SttEvent, type SttStream, type SttUsage, type SttWord } from './stt.js';

export const DEEPGRAM_LISTEN_URL = 'wss://api.deepgram.com/v1/listen';
/** µ-law 8 kHz: one byte a sample. */
export const ULAW_BYTES_PER_S = 8000;
/** Largest server text frame accepted. */
export const MAX_DEEPGRAM_MESSAGE_CHARS = 1024 * 1024;

// ---------------------------------------------------------------------------
// Wire: URL and client messages

export interface ListenParams {
  model: string;
  /** ms of silence that ends speech (`speech_final`); false disables endpointing. */
  endpointingMs: number | false;
  /** ms gap after the last final word before `UtteranceEnd`; 0 = not asked for. Needs interim results. */
  utteranceEndMs: number;
  interimResults: boolean;
  vadEvents: boolean;
  smartFormat: boolean;
  language?: string;
  keyterms?: string[];
}

/** The listen URL for µ-law 8 kHz mono on `base` (ws:// or wss://, no query). */
export function listenUrl(base: string, p: ListenParams): string {
  const u = new URL(base);
  const q = u.searchParams;
  q.set('model', p.model);
  q.set('encoding', 'mulaw');
  q.set('sample_rate', '8000');
  q.set('channels', '1');
  q.set('interim_results', String(p.interimResults));
  q.set('endpointing', p.endpointingMs === false ? 'false' : String(Math.round(p.endpointingMs)));
  if (p.utteranceEndMs > 0) q.set('utterance_end_ms', String(Math.round(p.utteranceEndMs)));
  q.set('vad_events', String(p.vadEvents));
  if (p.smartFormat) q.set('smart_format', 'true');
  if (p.language) q.set('language', p.language);
  for (const k of p.keyterms ?? []) q.append('keyterm', k);
  return u.toString();
}

export const KEEP_ALIVE_MESSAGE = '{"type":"KeepAlive"}';
export const FINALIZE_MESSAGE = '{"type":"Finalize"}';
export const CLOSE_STREAM_MESSAGE = '{"type":"CloseStream"}';

// ---------------------------------------------------------------------------
// Wire: server messages

const num = z.number().finite();
const word = z.object({
  word: z.string(),
  start: num,
  end: num,
  confidence: num,
  punctuated_word: z.string().nullish(),
});
const results = z.object({
  type: z.literal('Results'),
  start: num.nullish(),
  duration: num.nullish(),
  is_final: z.boolean().nullish(),
  speech_final: z.boolean().nullish(),
  from_finalize: z.boolean().nullish(),
  channel: z.object({
    alternatives: z.array(z.object({ transcript: z.string(), confidence: num.nullish(), words: z.array(word).nullish() })),
  }),
});
const utteranceEnd = z.object({ type: z.literal('UtteranceEnd'), last_word_end: num });
const speechStarted = z.object({ type: z.literal('SpeechStarted'), timestamp: num });
const metadata = z.object({ type: z.literal('Metadata'), request_id: z.string().nullish(), duration: num.nullish() });

export type DeepgramMessage =
  | {
      type: 'Results';
      isFinal: boolean;
      speechFinal: boolean;
      fromFinalize: boolean;
      startS: number;
      durationS: number;
      text: string;
      confidence: number;
      words: SttWord[];
    }
  | { type: 'UtteranceEnd'; lastWordEndS: number }
  | { type: 'SpeechStarted'; atS: number }
  | { type: 'Metadata'; requestId: string | undefined; durationS: number | undefined }
  | { type: 'unhandled'; originalType: string };

export type ParseDeepgramResult = { ok: true; message: DeepgramMessage } | { ok: false; error: string };

function parseHandled(type: string, raw: unknown): DeepgramMessage {
  switch (type) {
    case 'Results': {
      const r = results.parse(raw);
      const alt = r.channel.alternatives[0];
      return {
        type: 'Results',
        isFinal: r.is_final ?? false,
        speechFinal: r.speech_final ?? false,
        fromFinalize: r.from_finalize ?? false,
        startS: r.start ?? 0,
        durationS: r.duration ?? 0,
        text: alt?.transcript ?? '',
        confidence: alt?.confidence ?? 0,
        words: (alt?.words ?? []).map((w) => ({
          word: w.word,
          startS: w.start,
          endS: w.end,
          confidence: w.confidence,
          ...(w.punctuated_word ? { punctuated: w.punctuated_word } : {}),
        })),
      };
    }
    case 'UtteranceEnd':
      return { type: 'UtteranceEnd', lastWordEndS: utteranceEnd.parse(raw).last_word_end };
    case 'SpeechStarted':
      return { type: 'SpeechStarted', atS: speechStarted.parse(raw).timestamp };
    case 'Metadata': {
      const m = metadata.parse(raw);
      return { type: 'Metadata', requestId: m.request_id ?? undefined, durationS: m.duration ?? undefined };
    }
    default:
      return { type: 'unhandled', originalType: type };
  }
}

/** Parse one server text frame. Never throws. */
export function parseDeepgramMessage(text: string): ParseDeepgramResult {
  const frame = readTypedObject(text, MAX_DEEPGRAM_MESSAGE_CHARS, 'message');
  if (!frame.ok) return frame;
  const { type, raw } = frame;
  try {
    return { ok: true, message: parseHandled(type, raw) };
  } catch (e) {
    const issue = e instanceof z.ZodError ? e.issues[0] : undefined;
    return { ok: false, error: `${type.slice(0, 60)}: ${issue ? `${issue.path.join('.')} ${issue.message}` : 'invalid'}` };
  }
}

/** Deepgram's own error code at the start of a close reason (`DATA-0000`, `NET-0001`), if any. */
export function deepgramCode(reason: string): string | undefined {
  return /^(?:DATA|NET)-\d{4}/.exec(reason)?.[0];
}

/**
 * The error a close frame means, or undefined for a clean close (1000 after
 * our CloseStream). 1002/1003/1007/1008 and 4xxx: the same stream would fail
 * again; 1011, 1006 and the rest: a new stream may work.
 */
export function closeError(code: number, reason: string, closeRequested: boolean): SttError | undefined {
  if (code === 1000 && closeRequested) return undefined;
  const dg = deepgramCode(reason);
  const text = `deepgram closed the stream (${code}${reason ? ` ${reason.slice(0, 200)}` : ''})`;
  const fatal = code === 1002 || code === 1003 || code === 1007 || code === 1008 || (code >= 4000 && code <= 4999);
  return new SttError(text, !fatal, code, dg);
}

const RETRYABLE_NET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ENETDOWN']);

/** An error from the `ws` client: a refused upgrade (HTTP status) or a network error. */
export function socketError(err: unknown): SttError {
  if (err instanceof SttError) return err;
  const e = err instanceof Error ? err : new Error(String(err));
  const http = /Unexpected server response: (\d{3})/.exec(e.message);
  if (http) {
    const status = Number(http[1]);
    return new SttError(`deepgram refused the stream: HTTP ${status}`, status === 408 || status === 429 || status >= 500, status, undefined, { cause: e });
  }
  const code = (e as NodeJS.ErrnoException).code;
  if (typeof code === 'string') return new SttError(`deepgram socket error: ${code}`, RETRYABLE_NET_CODES.has(code), code, undefined, { cause: e });
  return new SttError(`deepgram socket error: ${e.message}`, true, undefined, undefined, { cause: e });
}

// ---------------------------------------------------------------------------
// Provider

export interface DeepgramSttOptions {
  apiKey: string;
  /** ws:// or wss:// listen endpoint without query (default DEEPGRAM_LISTEN_URL). */
  url?: string;
  /** Default `nova-3`. */
  model?: string;
  /** Default 300 ms; false disables endpointing. */
  endpointingMs?: number | false;
  /** Default 1000 ms (Deepgram's least is 1000); 0 = no UtteranceEnd. */
  utteranceEndMs?: number;
  /** Default true (UtteranceEnd needs them). */
  interimResults?: boolean;
  /** SpeechStarted events; default true. */
  vadEvents?: boolean;
  smartFormat?: boolean;
  /** KeepAlive after this long without audio (default 4000 ms; 0 disables: for tests of the idle close). */
  keepAliveMs?: number;
  /** Upgrade budget (default 5000 ms). */
  connectTimeoutMs?: number;
  /** From CloseStream to ending the socket ourselves (default 2000 ms). */
  closeTimeoutMs?: number;
  /** Audio is dropped while the socket buffers more than this (default 64 KiB = 8 s of µ-law). */
  maxBufferedBytes?: number;
  /** Extra CA for wss:// (a local stand-in). */
  ca?: string | Buffer;
  log?: (fields: Record<string, unknown>, msg: string) => void;
}

export class DeepgramStt implements SpeechToText {
  readonly name = 'deepgram';
  readonly url: string;

  constructor(private readonly opts: DeepgramSttOptions) {
    this.url = opts.url ?? DEEPGRAM_LISTEN_URL;
    const u = new URL(this.url);
    if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new Error(`deepgram URL must be ws:// or wss://, got ${u.protocol}`);
    if (!opts.apiKey) throw new Error('deepgram API key is empty');
  }

  connect(call: SttConnectOptions, signal?: AbortSignal): Promise<SttStream> {
    const o = this.opts;
    const url = listenUrl(this.url, {
      model: o.model ?? 'nova-3',
      endpointingMs: o.endpointingMs ?? 300,
      utteranceEndMs: o.utteranceEndMs ?? 1000,
      interimResults: o.interimResults ?? true,
      vadEvents: o.vadEvents ?? true,
      smartFormat: o.smartFormat ?? false,
      ...(call.language ? { language: call.language } : {}),
      ...(call.keyterms?.length ? { keyterms: call.keyterms } : {}),
    });
    const stream = new DeepgramStream({
      keepAliveMs: o.keepAliveMs ?? 4000,
      closeTimeoutMs: o.closeTimeoutMs ?? 2000,
      maxBufferedBytes: o.maxBufferedBytes ?? 64 * 1024,
      log: o.log ?? (() => {}),
    });
    return stream.open(url, o.apiKey, o.connectTimeoutMs ?? 5000, o.ca, signal).then(() => stream);
  }
}

interface StreamSettings {
  keepAliveMs: number;
  closeTimeoutMs: number;
  maxBufferedBytes: number;
  log: (fields: Record<string, unknown>, msg: string) => void;
}

type Phase = 'connecting' | 'open' | 'closing' | 'closed';

export class DeepgramStream implements SttStream {
  private ws: WebSocket | undefined;
  private phase: Phase = 'connecting';
  private readonly listeners = new Set<(ev: SttEvent) => void>();
  private readonly counts: SttUsage = { audioSeconds: 0, bytesSent: 0, framesSent: 0, keepAlivesSent: 0, droppedBytes: 0 };
  private lastAudioAt = 0;
  private keepAliveTimer: NodeJS.Timeout | undefined;
  private closeTimer: NodeJS.Timeout | undefined;
  private closeRequested = false;
  private closedPromise: Promise<void>;
  private resolveClosed!: () => void;
  /** Audio duration Deepgram reported in its closing Metadata (s). */
  metadataDurationS: number | undefined;

  constructor(private readonly s: StreamSettings) {
    this.closedPromise = new Promise((r) => (this.resolveClosed = r));
  }

  open(url: string, apiKey: string, timeoutMs: number, ca: string | Buffer | undefined, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) {
        this.finish();
        reject(new SttError('deepgram connect aborted', false, 'aborted'));
        return;
      }
      let settled = false;
      const fail = (e: SttError): void => {
        if (settled) return;
        settled = true;
        cleanup();
        this.terminate();
        this.finish();
        reject(e);
      };
      const onAbort = (): void => fail(new SttError('deepgram connect aborted', false, 'aborted'));
      const timer = setTimeout(() => fail(new SttError(`deepgram connect timed out after ${timeoutMs} ms`, true, 'timeout')), timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      let ws: WebSocket;
      try {
        ws = new WebSocket(url, {
          headers: { Authorization: `Token ${apiKey}` },
          ...(ca !== undefined ? { ca } : {}),
          handshakeTimeout: timeoutMs,
          perMessageDeflate: false,
          maxPayload: MAX_DEEPGRAM_MESSAGE_CHARS * 4,
        });
      } catch (err) {
        fail(socketError(err));
        return;
      }
      this.ws = ws;
      ws.on('open', () => {
        if (settled) return;
        settled = true;
        cleanup();
        this.phase = 'open';
        this.lastAudioAt = performance.now();
        this.armKeepAlive(this.s.keepAliveMs);
        resolve();
      });
      ws.on('message', (data, isBinary) => this.onMessage(data, isBinary));
      ws.on('error', (err) => {
        const e = socketError(err);
        if (!settled) return fail(e);
        this.s.log({ err: e.message, code: e.code }, 'deepgram socket error');
        this.end(e.message, e.retryable, e);
      });
      ws.on('close', (code, reasonBuf) => {
        const reason = reasonBuf.toString('utf8');
        const e = closeError(code, reason, this.closeRequested);
        if (!settled) return fail(e ?? new SttError(`deepgram closed during connect (${code})`, true, code));
        this.end(e ? e.message : 'closed', e ? e.retryable : false, e);
      });
    });
  }

  send(ulawFrame: Uint8Array): void {
    const n = ulawFrame.byteLength;
    if (n === 0) return; // an empty binary frame would end the stream
    const ws = this.ws;
    if (this.phase !== 'open' || !ws || ws.readyState !== WebSocket.OPEN || ws.bufferedAmount > this.s.maxBufferedBytes) {
      this.counts.droppedBytes += n;
      return;
    }
    ws.send(ulawFrame, { binary: true });
    this.counts.bytesSent += n;
    this.counts.framesSent++;
    this.counts.audioSeconds = this.counts.bytesSent / ULAW_BYTES_PER_S;
    this.lastAudioAt = performance.now();
  }

  finalize(): void {
    if (this.phase === 'open') this.sendText(FINALIZE_MESSAGE);
  }

  close(): Promise<void> {
    if (this.phase === 'open') {
      this.phase = 'closing';
      this.closeRequested = true;
      this.stopKeepAlive();
      this.sendText(CLOSE_STREAM_MESSAGE);
      this.closeTimer = setTimeout(() => {
        this.s.log({ ms: this.s.closeTimeoutMs }, 'deepgram did not close after CloseStream; ending the socket');
        this.terminate();
        this.end('closed (no close frame after CloseStream)', false);
      }, this.s.closeTimeoutMs);
    } else if (this.phase === 'connecting') {
      this.terminate();
      this.end('closed before open', false);
    }
    return this.closedPromise;
  }

  onEvent(listener: (ev: SttEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  usage(): SttUsage {
    return { ...this.counts };
  }

  /** Timers of this stream still set (KeepAlive, close budget): 0 once `closed` has been emitted. */
  get timersPending(): number {
    return (this.keepAliveTimer ? 1 : 0) + (this.closeTimer ? 1 : 0);
  }

  // -- internals -------------------------------------------------------------

  private sendText(text: string): void {
    const ws = this.ws;
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(text);
  }

  /** One timer: fires `ms` after the last audio (or KeepAlive) and re-arms for what is left. */
  private armKeepAlive(ms: number): void {
    if (this.s.keepAliveMs <= 0) return;
    this.keepAliveTimer = setTimeout(() => {
      this.keepAliveTimer = undefined;
      if (this.phase !== 'open') return;
      const idle = performance.now() - this.lastAudioAt;
      if (idle >= this.s.keepAliveMs - 1) {
        this.sendText(KEEP_ALIVE_MESSAGE);
        this.counts.keepAlivesSent++;
        this.lastAudioAt = performance.now();
        this.armKeepAlive(this.s.keepAliveMs);
      } else {
        this.armKeepAlive(this.s.keepAliveMs - idle);
      }
    }, Math.max(1, ms));
  }

  private stopKeepAlive(): void {
    if (this.keepAliveTimer) clearTimeout(this.keepAliveTimer);
    this.keepAliveTimer = undefined;
  }

  private onMessage(data: WebSocket.RawData, isBinary: boolean): void {
    if (this.phase === 'closed') return;
    if (isBinary) {
      this.emit({ type: 'error', error: new SttError('deepgram sent a binary frame', false, 'protocol') });
      return;
    }
    const parsed = parseDeepgramMessage(data.toString());
    if (!parsed.ok) {
      this.s.log({ err: parsed.error }, 'deepgram message malformed');
      this.emit({ type: 'error', error: new SttError(`deepgram message malformed: ${parsed.error}`, false, 'protocol') });
      return;
    }
    const m = parsed.message;
    switch (m.type) {
      case 'Results':
        return this.handleResults(m);
      case 'UtteranceEnd':
        return this.emit({ type: 'utterance_end', lastWordEndS: m.lastWordEndS });
      case 'SpeechStarted':
        return this.emit({ type: 'speech_started', atS: m.atS });
      case 'Metadata':
        this.metadataDurationS = m.durationS;
        return;
      case 'unhandled':
        this.s.log({ type: m.originalType.slice(0, 60) }, 'deepgram message not handled');
        return;
      default: {
        const never: never = m;
        throw new Error(`unhandled ${String(never)}`);
      }
    }
  }

  private handleResults(m: Extract<DeepgramMessage, { type: 'Results' }>): void {
    const t = { text: m.text, words: m.words, confidence: m.confidence, startS: m.startS, durationS: m.durationS };
    if (m.isFinal) this.emit({ type: 'final', isFinal: true, speechFinal: m.speechFinal, fromFinalize: m.fromFinalize, ...t });
    else if (m.text.length > 0) this.emit({ type: 'interim', isFinal: false, speechFinal: false, ...t });
  }

  private emit(ev: SttEvent): void {
    for (const l of this.listeners) {
      try {
        l(ev);
      } catch (err) {
        this.s.log({ err: err instanceof Error ? err.message : String(err), event: ev.type }, 'stt listener threw');
      }
    }
  }

  private terminate(): void {
    try {
      this.ws?.terminate();
    } catch {
      // already gone
    }
  }

  /** Stop every timer; the stream is over. */
  private finish(): void {
    this.phase = 'closed';
    this.stopKeepAlive();
    if (this.closeTimer) clearTimeout(this.closeTimer);
    this.closeTimer = undefined;
    this.resolveClosed();
  }

  private end(reason: string, retryable: boolean, error?: SttError): void {
    if (this.phase === 'closed') return;
    this.finish();
    this.emit({ type: 'closed', reason, retryable, ...(error ? { error } : {}) });
    this.listeners.clear();
  }
}
