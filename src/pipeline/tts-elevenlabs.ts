/**
 * ElevenLabs text to speech over the stream-input WebSocket
 * (docs/elevenlabs-protocol.md): one socket per TtsStream.
 *
 * `wss://api.elevenlabs.io/v1/text-to-speech/{voice_id}/stream-input?model_id=…&output_format=…&auto_mode=true`
 * First message `{text:" ", voice_settings, xi_api_key}`, then one
 * `{text, flush}` per chunk the TextChunker cuts, `{text:""}` to end. The
 * server answers `{audio, isFinal, normalizedAlignment}` frames and a final
 * `{isFinal:true}`, then closes. 20 s without input → `input_timeout_exceeded`
 * and close 1008, surfaced as a retryable TtsError.
 *
 * `auto_mode=true` (default) turns off the server's chunk-length schedule,
 * which suits text that already arrives in whole sentences or clauses; with
 * `autoMode: false` a `generation_config.chunk_length_schedule` may be given.
 *
 * The wire part (zod parse, builders) is the pure section at the top; the
 * socket part below it.
 */
import WebSocket from 'ws';
import { z } from 'zod';
import {
  TTS_FORMATS,
  TextChunker,
  TtsEmitter,
  TtsError,
  speakable,
  type TextToSpeech,
  type TtsAlignment,
  type TtsFormat,
  type TtsListener,
  type TtsOpenOptions,
  type TtsStream,
  type TtsUsage,
} from './tts.js';

// ---------------------------------------------------------------------------
// Wire (pure)

/** Largest server frame accepted (an audio frame of a few seconds at 44.1 kHz in base64). */
export const MAX_ELEVENLABS_FRAME_BYTES = 4 * 1024 * 1024;

const alignmentWire = z.object({
  chars: z.array(z.string()),
  charStartTimesMs: z.array(z.number().finite()),
  charDurationsMs: z.array(z.number().finite()),
});

const audioFrame = z.object({
  audio: z.string().nullish(),
  isFinal: z.boolean().nullish(),
  normalizedAlignment: alignmentWire.nullish(),
  alignment: alignmentWire.nullish(),
});

const errorFrame = z.object({
  error: z.string(),
  message: z.string().nullish(),
  code: z.number().nullish(),
});

export type ElevenLabsServerMessage =
  | { type: 'audio'; audioB64: string | null; isFinal: boolean; alignment: TtsAlignment | null }
  | { type: 'error'; code: string; message: string };

/** Parses one server text frame; never throws. */
export function parseElevenLabsMessage(text: string): { ok: true; msg: ElevenLabsServerMessage } | { ok: false; error: string } {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return { ok: false, error: 'not JSON' };
  }
  const err = errorFrame.safeParse(raw);
  if (err.success) return { ok: true, msg: { type: 'error', code: err.data.error, message: err.data.message ?? err.data.error } };
  const a = audioFrame.safeParse(raw);
  if (!a.success) return { ok: false, error: a.error.message };
  const al = a.data.normalizedAlignment ?? a.data.alignment ?? null;
  return {
    ok: true,
    msg: {
      type: 'audio',
      audioB64: a.data.audio ?? null,
      isFinal: a.data.isFinal === true,
      alignment: al ? { chars: al.chars, charStartMs: al.charStartTimesMs, charDurationMs: al.charDurationsMs } : null,
    },
  };
}

export interface VoiceSettings {
  stability?: number;
  similarity_boost?: number;
  style?: number;
  use_speaker_boost?: boolean;
  speed?: number;
}

export function elevenLabsUrl(o: { baseUrl: string; voiceId: string; modelId: string; format: TtsFormat; autoMode: boolean; inactivityTimeoutS?: number }): string {
  const u = new URL(`${o.baseUrl.replace(/\/+$/, '')}/v1/text-to-speech/${encodeURIComponent(o.voiceId)}/stream-input`);
  u.searchParams.set('model_id', o.modelId);
  u.searchParams.set('output_format', o.format);
  if (o.autoMode) u.searchParams.set('auto_mode', 'true');
  if (o.inactivityTimeoutS !== undefined) u.searchParams.set('inactivity_timeout', String(o.inactivityTimeoutS));
  return u.toString();
}

export function initMessage(apiKey: string, voiceSettings: VoiceSettings | undefined, chunkLengthSchedule: number[] | undefined): string {
  return JSON.stringify({
    text: ' ',
    ...(voiceSettings ? { voice_settings: voiceSettings } : {}),
    ...(chunkLengthSchedule ? { generation_config: { chunk_length_schedule: chunkLengthSchedule } } : {}),
    xi_api_key: apiKey,
  });
}

export const textMessage = (text: string, flush: boolean): string => JSON.stringify(flush ? { text, flush: true } : { text });
export const END_MESSAGE = '{"text":""}';

// ---------------------------------------------------------------------------
// Provider

export interface ElevenLabsTtsOptions {
  apiKey: string;
  /** Default voice when TtsOpenOptions.voice is absent. */
  voiceId: string;
  /** Default `eleven_flash_v2_5`. */
  modelId?: string;
  /** `wss://api.elevenlabs.io` by default; the stand-in's `ws://127.0.0.1:PORT` in tests. */
  baseUrl?: string;
  voiceSettings?: VoiceSettings;
  /** Default true (see the file comment). */
  autoMode?: boolean;
  /** Only with autoMode false (values 50–500). */
  chunkLengthSchedule?: number[];
  /** Server-side idle limit in seconds (`inactivity_timeout`, vendor default 20, max 180). */
  inactivityTimeoutS?: number;
  /** TLS CA for a self-signed stand-in. */
  ca?: string | Buffer;
}

export class ElevenLabsTts implements TextToSpeech {
  readonly name = 'elevenlabs';
  readonly formats = TTS_FORMATS;

  constructor(private readonly opts: ElevenLabsTtsOptions) {}

  open(o: TtsOpenOptions, signal?: AbortSignal): Promise<TtsStream> {
    const autoMode = this.opts.autoMode ?? true;
    const url = elevenLabsUrl({
      baseUrl: this.opts.baseUrl ?? 'wss://api.elevenlabs.io',
      voiceId: o.voice ?? this.opts.voiceId,
      modelId: this.opts.modelId ?? 'eleven_flash_v2_5',
      format: o.format,
      autoMode,
      ...(this.opts.inactivityTimeoutS !== undefined ? { inactivityTimeoutS: this.opts.inactivityTimeoutS } : {}),
    });
    return new Promise<TtsStream>((resolve, reject) => {
      if (signal?.aborted) return reject(new TtsError('tts open aborted', false, 'aborted'));
      const ws = new WebSocket(url, { maxPayload: MAX_ELEVENLABS_FRAME_BYTES, ...(this.opts.ca ? { ca: this.opts.ca } : {}) });
      let settled = false;
      const fail = (e: TtsError): void => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        ws.removeAllListeners();
        ws.on('error', () => {});
        ws.terminate();
        reject(e);
      };
      const onAbort = (): void => fail(new TtsError('tts open aborted', false, 'aborted'));
      signal?.addEventListener('abort', onAbort, { once: true });
      ws.once('unexpected-response', (_req, res) => {
        const status = res.statusCode ?? 0;
        res.resume();
        fail(new TtsError(`elevenlabs handshake HTTP ${status}`, status === 429 || status >= 500, `http_${status}`));
      });
      ws.once('error', (e) => fail(new TtsError(`elevenlabs connect failed: ${e.message}`, true, 'network', { cause: e })));
      ws.once('close', (code, reason) => fail(new TtsError(`elevenlabs closed during connect: ${code} ${reason.toString()}`, true, `close_${code}`)));
      ws.once('open', () => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        ws.removeAllListeners();
        const stream = new ElevenLabsStream(ws, o);
        ws.send(initMessage(this.opts.apiKey, this.opts.voiceSettings, autoMode ? undefined : this.opts.chunkLengthSchedule));
        resolve(stream);
      });
    });
  }
}

class ElevenLabsStream implements TtsStream {
  readonly format: TtsFormat;
  private readonly chunker: TextChunker;
  private readonly em = new TtsEmitter();
  private readonly counts: TtsUsage = { characters: 0 };
  private ended = false;
  /** Server sent isFinal; the socket close that follows is expected. */
  private final = false;
  /** An error frame arrived; reported on close with its code. */
  private serverError: { code: string; message: string } | undefined;
  /** Odd byte of a PCM16 frame, held so audio events carry whole samples. */
  private carry: number | undefined;

  constructor(
    private readonly ws: WebSocket,
    o: TtsOpenOptions,
  ) {
    this.format = o.format;
    this.chunker = new TextChunker(o.chunker);
    ws.on('message', (data, isBinary) => this.onFrame(data, isBinary));
    ws.on('close', (code, reason) => this.onClose(code, reason.toString()));
    ws.on('error', (e) => this.fail(new TtsError(`elevenlabs socket error: ${e.message}`, true, 'network', { cause: e })));
  }

  get usage(): TtsUsage {
    return { ...this.counts };
  }

  onEvent(l: TtsListener): () => void {
    return this.em.on(l);
  }

  push(delta: string): void {
    if (this.ended || this.em.closed) return;
    for (const c of this.chunker.push(delta)) this.sendText(c, false);
  }

  flush(): void {
    if (this.ended || this.em.closed) return;
    const rest = this.chunker.flush().filter(speakable);
    rest.forEach((c, i) => this.sendText(c, i === rest.length - 1));
    // Nothing was buffered: still ask the server to generate what it holds.
    if (rest.length === 0) this.sendRaw(textMessage(' ', true));
  }

  end(): void {
    if (this.ended || this.em.closed) return;
    for (const c of this.chunker.flush()) this.sendText(c, false);
    this.ended = true;
    this.sendRaw(END_MESSAGE);
  }

  cancel(): void {
    if (this.em.closed) return;
    this.em.close();
    this.shutdown();
  }

  private sendText(chunk: string, flush: boolean): void {
    if (!speakable(chunk)) return;
    this.counts.characters += chunk.length;
    // The vendor recommends text that ends with a space.
    this.sendRaw(textMessage(/\s$/.test(chunk) ? chunk : `${chunk} `, flush));
  }

  private sendRaw(msg: string): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(msg);
  }

  private onFrame(data: WebSocket.RawData, isBinary: boolean): void {
    if (this.em.closed) return;
    if (isBinary) return this.fail(new TtsError('elevenlabs sent a binary frame', false, 'protocol'));
    const p = parseElevenLabsMessage(data.toString());
    if (!p.ok) return this.fail(new TtsError(`elevenlabs sent a bad frame: ${p.error}`, false, 'protocol'));
    const m = p.msg;
    switch (m.type) {
      case 'audio':
        return this.handleAudio(m.audioB64, m.isFinal, m.alignment);
      case 'error':
        this.serverError = { code: m.code, message: m.message };
        return;
    }
  }

  private handleAudio(b64: string | null, isFinal: boolean, alignment: TtsAlignment | null): void {
    if (b64) {
      let bytes: Uint8Array = Buffer.from(b64, 'base64');
      if (this.format !== 'ulaw_8000') bytes = this.wholeSamples(bytes);
      if (bytes.length > 0) this.em.emit({ type: 'audio', audio: bytes });
    }
    if (alignment && alignment.chars.length > 0) this.em.emit({ type: 'alignment', alignment });
    if (isFinal) {
      this.final = true;
      this.em.emit({ type: 'done', usage: this.usage });
      this.shutdown();
    }
  }

  private wholeSamples(bytes: Uint8Array): Uint8Array {
    let b = bytes;
    if (this.carry !== undefined) {
      const joined = new Uint8Array(b.length + 1);
      joined[0] = this.carry;
      joined.set(b, 1);
      b = joined;
      this.carry = undefined;
    }
    if (b.length % 2 === 1) {
      this.carry = b[b.length - 1]!;
      b = b.subarray(0, b.length - 1);
    }
    return b;
  }

  private onClose(code: number, reason: string): void {
    if (this.em.closed) return;
    if (this.final) return;
    if (this.serverError) {
      const e = this.serverError;
      return this.fail(new TtsError(`elevenlabs: ${e.message}`, retryableCode(e.code), e.code));
    }
    if (/input_timeout_exceeded/.test(reason)) return this.fail(new TtsError('elevenlabs: input timeout exceeded', true, 'input_timeout_exceeded'));
    if (code === 1000 && this.ended) {
      // Closed normally after the end message without isFinal: treat as done.
      this.em.emit({ type: 'done', usage: this.usage });
      return;
    }
    this.fail(new TtsError(`elevenlabs closed: ${code} ${reason}`, code !== 1008 && code !== 1003, `close_${code}`));
  }

  private fail(e: TtsError): void {
    if (this.em.closed) return;
    this.em.emit({ type: 'error', error: e });
    this.shutdown();
  }

  private shutdown(): void {
    this.ws.removeAllListeners('message');
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) {
      // ws answers the server's close frame and clears its own close timer.
      this.ws.close(1000);
    }
  }
}

/** Idle timeouts and capacity errors pass with a new stream; auth, quota and bad input do not. */
function retryableCode(code: string): boolean {
  switch (code) {
    case 'input_timeout_exceeded':
    case 'internal_error':
    case 'rate_limited':
    case 'concurrent_limit_exceeded':
    case 'system_busy':
      return true;
    default:
      return false;
  }
}
