/**
 * OpenAI text to speech (docs/openai-tts-protocol.md) behind the TTS stage:
 * one `POST /v1/audio/speech` per chunk the TextChunker cuts, through the
 * `openai` package (`audio.speech.create`), `response_format: "pcm"`
 * (PCM16 little endian, 24 kHz mono, no header) read as the body streams.
 *
 * - Only `pcm_24000` is offered; the orchestrator resamples to 8 kHz.
 * - Requests start as chunks are cut, at most `maxInFlight` at once (default
 *   2: the next chunk is synthesised while the current one plays out); audio
 *   is emitted strictly in chunk order. Later bodies are read only when their
 *   turn comes, so buffering is bounded by the HTTP stream's own window.
 * - HTTP 429, 5xx and network errors are retryable; other 4xx are not. The
 *   package's own retries are off by default (`maxRetries: 0`): the
 *   orchestrator decides, since a retry costs latency the caller hears.
 * - `cancel()` aborts every request in flight.
 */
import OpenAI, { APIConnectionError, APIError, APIUserAbortError } from 'openai';
import {
  TextChunker,
  TtsEmitter,
  TtsError,
  speakable,
  type TextToSpeech,
  type TtsFormat,
  type TtsListener,
  type TtsOpenOptions,
  type TtsStream,
  type TtsUsage,
} from './tts.js';

/** The API's limit on `input`. */
export const OPENAI_TTS_MAX_INPUT_CHARS = 4096;

export interface OpenAiTtsOptions {
  apiKey: string;
  /** Default the package's (https://api.openai.com/v1); the stand-in's `http://127.0.0.1:PORT/v1` in tests. */
  baseURL?: string;
  /** Default `gpt-4o-mini-tts`. */
  model?: string;
  /** Default voice when TtsOpenOptions.voice is absent (default `marin`). */
  voice?: string;
  /** Not for tts-1 / tts-1-hd. */
  instructions?: string;
  speed?: number;
  maxInFlight?: number;
  /** The package's retries per request (default 0). */
  maxRetries?: number;
}

export class OpenAiTts implements TextToSpeech {
  readonly name = 'openai';
  readonly formats: readonly TtsFormat[] = ['pcm_24000'];
  private readonly client: OpenAI;

  constructor(private readonly opts: OpenAiTtsOptions) {
    this.client = new OpenAI({
      apiKey: opts.apiKey,
      maxRetries: opts.maxRetries ?? 0,
      ...(opts.baseURL ? { baseURL: opts.baseURL } : {}),
    });
  }

  /** Opens nothing on the wire (HTTP per chunk); resolves at once. */
  async open(o: TtsOpenOptions, signal?: AbortSignal): Promise<TtsStream> {
    if (signal?.aborted) throw new TtsError('tts open aborted', false, 'aborted');
    if (o.format !== 'pcm_24000') throw new TtsError(`openai tts gives pcm_24000 only, not ${o.format}`, false, 'unsupported_format');
    return new OpenAiStream(this.client, this.opts, o);
  }
}

interface Pending {
  text: string;
  abort: AbortController;
  response: Promise<Response>;
}

class OpenAiStream implements TtsStream {
  readonly format: TtsFormat = 'pcm_24000';
  private readonly chunker: TextChunker;
  private readonly em = new TtsEmitter();
  private readonly counts: TtsUsage = { characters: 0 };
  /** Chunks cut but not yet requested. */
  private readonly waiting: string[] = [];
  /** Requests started, in chunk order; the head is being read. */
  private readonly inFlight: Pending[] = [];
  private readonly maxInFlight: number;
  private ended = false;
  private reading = false;

  constructor(
    private readonly client: OpenAI,
    private readonly opts: OpenAiTtsOptions,
    private readonly o: TtsOpenOptions,
  ) {
    this.chunker = new TextChunker(o.chunker ?? { maxChars: 400 });
    this.maxInFlight = Math.max(1, opts.maxInFlight ?? 2);
  }

  get usage(): TtsUsage {
    return { ...this.counts };
  }

  onEvent(l: TtsListener): () => void {
    return this.em.on(l);
  }

  push(delta: string): void {
    if (this.ended || this.em.closed) return;
    this.enqueue(this.chunker.push(delta));
  }

  flush(): void {
    if (this.ended || this.em.closed) return;
    this.enqueue(this.chunker.flush());
  }

  end(): void {
    if (this.ended || this.em.closed) return;
    this.enqueue(this.chunker.flush());
    this.ended = true;
    this.pump();
  }

  cancel(): void {
    if (this.em.closed) return;
    this.em.close();
    this.stopAll();
  }

  private enqueue(chunks: string[]): void {
    for (const c of chunks) {
      if (!speakable(c)) continue;
      for (let i = 0; i < c.length; i += OPENAI_TTS_MAX_INPUT_CHARS) this.waiting.push(c.slice(i, i + OPENAI_TTS_MAX_INPUT_CHARS));
    }
    this.pump();
  }

  /** Starts requests up to maxInFlight and the reader; emits done when all is read after end(). */
  private pump(): void {
    if (this.em.closed) return;
    while (this.waiting.length > 0 && this.inFlight.length < this.maxInFlight) this.start(this.waiting.shift()!);
    if (!this.reading && this.inFlight.length > 0) void this.readHead();
    else if (!this.reading && this.ended && this.waiting.length === 0 && this.inFlight.length === 0) {
      this.em.emit({ type: 'done', usage: this.usage });
    }
  }

  private start(text: string): void {
    this.counts.characters += text.length;
    const abort = new AbortController();
    const response = this.client.audio.speech.create(
      {
        model: this.opts.model ?? 'gpt-4o-mini-tts',
        voice: this.o.voice ?? this.opts.voice ?? 'marin',
        input: text,
        response_format: 'pcm',
        ...(this.opts.instructions ? { instructions: this.opts.instructions } : {}),
        ...(this.opts.speed !== undefined ? { speed: this.opts.speed } : {}),
      },
      { signal: abort.signal },
    );
    // Rejections are read in readHead; keep an early one from being unhandled.
    (response as Promise<Response>).catch(() => {});
    this.inFlight.push({ text, abort, response });
  }

  private async readHead(): Promise<void> {
    const head = this.inFlight[0]!;
    this.reading = true;
    let carry: number | undefined;
    try {
      const res = await head.response;
      if (!res.body) throw new TtsError('openai tts: empty body', true, 'empty_body');
      const reader = res.body.getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (this.em.closed) {
          void reader.cancel().catch(() => {});
          return;
        }
        if (done) break;
        let b: Uint8Array = value;
        if (carry !== undefined) {
          const j = new Uint8Array(b.length + 1);
          j[0] = carry;
          j.set(b, 1);
          b = j;
          carry = undefined;
        }
        if (b.length % 2 === 1) {
          carry = b[b.length - 1];
          b = b.subarray(0, b.length - 1);
        }
        if (b.length > 0) this.em.emit({ type: 'audio', audio: b });
      }
    } catch (e) {
      if (this.em.closed) return;
      this.em.emit({ type: 'error', error: toTtsError(e) });
      this.stopAll();
      return;
    } finally {
      this.reading = false;
    }
    this.inFlight.shift();
    this.pump();
  }

  private stopAll(): void {
    for (const p of this.inFlight) p.abort.abort();
    this.inFlight.length = 0;
    this.waiting.length = 0;
  }
}

function toTtsError(e: unknown): TtsError {
  if (e instanceof TtsError) return e;
  if (e instanceof APIUserAbortError) return new TtsError('openai tts aborted', false, 'aborted', { cause: e });
  if (e instanceof APIConnectionError) return new TtsError(`openai tts connection failed: ${e.message}`, true, 'network', { cause: e });
  if (e instanceof APIError) {
    const status = e.status ?? 0;
    return new TtsError(`openai tts HTTP ${status}: ${e.message}`, status === 429 || status >= 500, e.code ?? `http_${status}`, { cause: e });
  }
  const msg = e instanceof Error ? e.message : String(e);
  // A body cut mid-stream (socket dropped) surfaces as a plain error from the reader.
  return new TtsError(`openai tts stream failed: ${msg}`, true, 'network', { cause: e });
}
