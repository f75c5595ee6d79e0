/**
 * The text-to-speech stage of the STT → LLM → TTS pipeline (issue 19):
 * a provider-neutral interface, its event union and typed error, and a pure
 * sentence/clause chunker that turns an LLM's text deltas into speakable
 * chunks as early as the text allows.
 *
 * Contract of a TtsStream (every provider keeps it):
 * - `push(delta)` takes raw LLM text; the stream cuts it with `TextChunker`
 *   and sends each chunk as soon as it is cut, so audio can start before the
 *   LLM has finished. `flush()` sends whatever is buffered and asks the
 *   provider to generate it now. `end()` flushes and closes the input; the
 *   stream then emits the remaining audio and exactly one `done`.
 * - `cancel()` is for barge-in: the provider connection is closed at once and
 *   no event of any kind is emitted after `cancel()` returns (late audio is
 *   dropped). Calls after `cancel()`, `done` or `error` are ignored.
 * - `audio` bytes are in the stream's `format`: µ-law 8 kHz, or PCM16 little
 *   endian mono at the named rate, always whole samples.
 * - `error` is emitted at most once and ends the stream (no `done` after it);
 *   `retryable` says whether opening a new stream for the same text may help.
 * - `usage.characters` counts the characters of text sent to the provider for
 *   synthesis (what the vendors bill), whitespace-only chunks excluded.
 * - No timers or sockets remain after `done`, `error` or `cancel()`.
 */

/** Output formats the stage can ask for (ElevenLabs' names; OpenAI TTS gives pcm_24000 only). */
export const TTS_FORMATS = ['ulaw_8000', 'pcm_16000', 'pcm_22050', 'pcm_24000', 'pcm_44100'] as const;
export type TtsFormat = (typeof TTS_FORMATS)[number];

/** Sample rate (Hz) and bytes per sample of each format. */
export const TTS_FORMAT_INFO: Readonly<Record<TtsFormat, { rateHz: number; bytesPerSample: 1 | 2 }>> = {
  ulaw_8000: { rateHz: 8000, bytesPerSample: 1 },
  pcm_16000: { rateHz: 16000, bytesPerSample: 2 },
  pcm_22050: { rateHz: 22050, bytesPerSample: 2 },
  pcm_24000: { rateHz: 24000, bytesPerSample: 2 },
  pcm_44100: { rateHz: 44100, bytesPerSample: 2 },
};

/** Bytes of `ms` milliseconds of audio in `format` (whole samples, rounded). */
export function ttsBytesForMs(format: TtsFormat, ms: number): number {
  const { rateHz, bytesPerSample } = TTS_FORMAT_INFO[format];
  return Math.round((ms * rateHz) / 1000) * bytesPerSample;
}

/** Milliseconds of audio in `bytes` bytes of `format`. */
export function ttsMsForBytes(format: TtsFormat, bytes: number): number {
  const { rateHz, bytesPerSample } = TTS_FORMAT_INFO[format];
  return (bytes / bytesPerSample / rateHz) * 1000;
}

export interface TtsOpenOptions {
  format: TtsFormat;
  /** Provider voice id or name; the provider's configured default when absent. */
  voice?: string;
  /** Chunker settings for this stream. */
  chunker?: ChunkerOptions;
}

export interface TtsUsage {
  /** Characters of text sent for synthesis. */
  characters: number;
}

/** Character timing of audio already emitted (ms from the stream's first audio byte). */
export interface TtsAlignment {
  chars: string[];
  charStartMs: number[];
  charDurationMs: number[];
}

export type TtsEvent =
  | { type: 'audio'; audio: Uint8Array }
  | { type: 'alignment'; alignment: TtsAlignment }
  | { type: 'done'; usage: TtsUsage }
  | { type: 'error'; error: TtsError };

export type TtsListener = (ev: TtsEvent) => void;

export interface TtsStream {
  readonly format: TtsFormat;
  push(textDelta: string): void;
  flush(): void;
  end(): void;
  cancel(): void;
  /** Adds a listener; returns a function that removes it. */
  onEvent(listener: TtsListener): () => void;
  /** Running totals; final once `done`, `error` or `cancel()`. */
  readonly usage: TtsUsage;
}

/** Opens TTS streams; one per assistant utterance. Open errors reject with TtsError. */
export interface TextToSpeech {
  readonly name: string;
  /** Formats this provider can produce. */
  readonly formats: readonly TtsFormat[];
  open(opts: TtsOpenOptions, signal?: AbortSignal): Promise<TtsStream>;
}

export class TtsError extends Error {
  constructor(
    message: string,
    /** A new stream for the same text may succeed (network, 429, 5xx, idle timeout). */
    readonly retryable: boolean,
    /** Provider's error code when it gave one (`input_timeout_exceeded`, `rate_limit`, `http_401`, …). */
    readonly code?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'TtsError';
  }
}

/** Small helper shared by providers: listeners, once-only terminal events. */
export class TtsEmitter {
  private readonly listeners = new Set<TtsListener>();
  /** `open` until `done`, `error` or cancel; nothing is emitted afterwards. */
  private state: 'open' | 'closed' = 'open';

  get closed(): boolean {
    return this.state === 'closed';
  }

  on(l: TtsListener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  emit(ev: TtsEvent): void {
    if (this.state === 'closed') return;
    if (ev.type === 'done' || ev.type === 'error') this.state = 'closed';
    for (const l of [...this.listeners]) l(ev);
  }

  /** Silences the emitter (cancel). */
  close(): void {
    this.state = 'closed';
  }
}

// ---------------------------------------------------------------------------
// Chunker

export interface ChunkerOptions {
  /** Longest chunk (characters) unless a single word is longer (default 250). */
  maxChars?: number;
  /** A clause boundary (, ; : — –) cuts only once the chunk has this many characters (default 40). */
  minClauseChars?: number;
  /** The first chunk of a stream may cut at a clause from this many characters, to start audio sooner (default 20). */
  firstMinClauseChars?: number;
}

/** A run without whitespace longer than this many × maxChars is cut hard (bounds the buffer). */
const HARD_WORD_FACTOR = 4;

const SENTENCE_END = new Set(['.', '!', '?', '…', '。', '！', '？']);
const CLAUSE_END = new Set([',', ';', ':', '—', '–']);
/** Characters that may sit between end punctuation and the following space. */
const CLOSERS = new Set(['"', "'", ')', ']', '”', '’', '»']);
/** Words whose trailing dot does not end a sentence (lower case, without the dot). */
const ABBREVIATIONS = new Set(['mr', 'mrs', 'ms', 'dr', 'st', 'sr', 'jr', 'prof', 'vs', 'etc', 'e.g', 'i.e', 'no', 'approx', 'dept', 'apt']);

const isSpace = (c: string | undefined): boolean => c !== undefined && /\s/.test(c);

/**
 * Cuts streamed text into speakable chunks. Pure and synchronous.
 *
 * Guarantees:
 * - The concatenation of every chunk returned by `push` and `flush` is exactly
 *   the text pushed (nothing dropped, reordered or added).
 * - A chunk ends right after a whitespace character (which it includes), except
 *   the one `flush` returns. So no cut falls inside a word; the one exception
 *   is a run without whitespace longer than 4 × maxChars, cut hard to bound the buffer.
 * - Cuts, earliest first: after a sentence end (. ! ? … plus closing quotes or
 *   brackets, then whitespace; not after a listed abbreviation such as "Dr.",
 *   and "3.5" has no whitespace after its dot), after a newline, after a clause
 *   mark once the chunk is long enough; otherwise, when the buffer passes
 *   maxChars, after the last whitespace within maxChars.
 * - A chunk is at most maxChars long unless it is one word longer than that.
 * - `flush` returns the rest (cut at maxChars the same way) and resets the
 *   chunker for a new utterance.
 */
export class TextChunker {
  private buf = '';
  private emitted = 0;
  private readonly maxChars: number;
  private readonly minClauseChars: number;
  private readonly firstMinClauseChars: number;

  constructor(opts: ChunkerOptions = {}) {
    this.maxChars = Math.max(8, opts.maxChars ?? 250);
    this.minClauseChars = opts.minClauseChars ?? 40;
    this.firstMinClauseChars = opts.firstMinClauseChars ?? 20;
  }

  /** Characters held back waiting for a boundary. */
  get buffered(): number {
    return this.buf.length;
  }

  push(delta: string): string[] {
    this.buf += delta;
    const out: string[] = [];
    for (let cut = this.nextCut(); cut > 0; cut = this.nextCut()) out.push(this.take(cut));
    return out;
  }

  flush(): string[] {
    const out = this.push('');
    while (this.buf.length > this.maxChars) {
      const ws = this.lastSpaceWithin(this.maxChars);
      out.push(this.take(ws >= 0 ? ws + 1 : this.maxChars));
    }
    if (this.buf.length > 0) out.push(this.take(this.buf.length));
    this.emitted = 0;
    return out;
  }

  private take(n: number): string {
    const chunk = this.buf.slice(0, n);
    this.buf = this.buf.slice(n);
    this.emitted++;
    return chunk;
  }

  /** Length of the next chunk to cut now, or 0 to wait for more text. */
  private nextCut(): number {
    const b = this.buf;
    const minClause = this.emitted === 0 ? this.firstMinClauseChars : this.minClauseChars;
    const limit = Math.min(b.length - 1, this.maxChars);
    for (let i = 0; i < limit; i++) {
      const c = b[i]!;
      if (c === '\n') return i + 1;
      const sentence = SENTENCE_END.has(c);
      if (!sentence && !CLAUSE_END.has(c)) continue;
      let j = i + 1;
      while (j < b.length && CLOSERS.has(b[j]!)) j++;
      if (j >= b.length || !isSpace(b[j])) continue;
      if (j + 1 > this.maxChars) break;
      if (sentence) {
        if (c === '.' && this.isAbbreviation(i)) continue;
        if (/\S/.test(b.slice(0, i))) return j + 1;
      } else if (j + 1 >= minClause) {
        return j + 1;
      }
    }
    if (b.length <= this.maxChars) return 0;
    const ws = this.lastSpaceWithin(this.maxChars);
    if (ws >= 0) return ws + 1;
    // One word longer than maxChars: it becomes its own chunk once it ends.
    const end = b.search(/\s/);
    if (end >= 0) return end + 1;
    return b.length > this.maxChars * HARD_WORD_FACTOR ? this.maxChars * HARD_WORD_FACTOR : 0;
  }

  /** Index of the last whitespace among the first `n` characters, or -1. */
  private lastSpaceWithin(n: number): number {
    for (let i = Math.min(n, this.buf.length) - 1; i >= 0; i--) if (isSpace(this.buf[i])) return i;
    return -1;
  }

  /** Whether the dot at `dot` ends a known abbreviation or a single-letter initial. */
  private isAbbreviation(dot: number): boolean {
    let k = dot;
    while (k > 0 && /[A-Za-z.]/.test(this.buf[k - 1]!)) k--;
    const word = this.buf.slice(k, dot);
    return ABBREVIATIONS.has(word.toLowerCase()) || /^[A-Z]$/.test(word);
  }
}

/** Whether a chunk has anything to speak (whitespace-only chunks are not sent). */
export function speakable(chunk: string): boolean {
  return /\S/.test(chunk);
}
