/**
 * The speech-to-text stage of the pipeline (issue 19): a provider-neutral
 * port. One `SttStream` per call leg; the orchestrator feeds it the caller's
 * µ-law 8 kHz as it arrives and listens for transcript events.
 *
 * Contract:
 * - `connect` resolves once the stream is open and can take audio; it rejects
 *   with `SttError` (`retryable` says whether a new attempt may help: a refused
 *   key or a bad request will not, a timeout or a 5xx may). An aborted
 *   `signal` rejects with a non-retryable `SttError` (code `aborted`).
 * - `send` never blocks and never throws; empty frames are ignored, frames
 *   sent when the stream is not open or its socket buffer is over its bound
 *   are dropped and counted in `usage().droppedBytes`.
 * - Events arrive in wire order. `interim` and `final` carry the words
 *   heard so far for the current segment (times in seconds from the start of
 *   the stream's audio); `final.speechFinal` marks the provider's endpoint
 *   (end of a turn), `final.fromFinalize` a flush asked for by `finalize()`.
 * - `error` is non-fatal (a malformed server message); the stream goes on.
 *   `closed` is emitted exactly once and is the last event; after it no timer
 *   of the stream is left running. `closed.retryable`: a new stream may help.
 * - `close()` asks the provider to flush (finals still arrive) and resolves
 *   once the socket is gone (bounded by the implementation's close timeout).
 */

/** One recognised word; times in seconds from the start of the stream's audio. */
export interface SttWord {
  word: string;
  startS: number;
  endS: number;
  confidence: number;
  /** With punctuation and casing, when the provider gives it. */
  punctuated?: string;
}

/** A transcript of the current segment (interim: may still change; final: will not). */
export interface SttTranscript {
  text: string;
  words: SttWord[];
  /** 0…1 */
  confidence: number;
  /** Segment start and length (s). */
  startS: number;
  durationS: number;
}

export type SttEvent =
  /** The provider heard speech begin (s into the stream's audio). */
  | { type: 'speech_started'; atS: number }
  | ({ type: 'interim'; isFinal: false; speechFinal: false } & SttTranscript)
  | ({ type: 'final'; isFinal: true; speechFinal: boolean; fromFinalize: boolean } & SttTranscript)
  /** A gap after the last final word: the utterance is over. `lastWordEndS` is that word's end (s). */
  | { type: 'utterance_end'; lastWordEndS: number }
  /** Something the stream could not use; it goes on. */
  | { type: 'error'; error: SttError }
  /** The stream is over (last event). `error` says why when it was not a clean close. */
  | { type: 'closed'; reason: string; retryable: boolean; error?: SttError };

/** Per-call options (provider settings such as the model live in the provider). */
export interface SttConnectOptions {
  /** BCP-47 language, provider default when absent. */
  language?: string;
  /** Words or phrases to favour (names, member-ID vocabulary). */
  keyterms?: string[];
}

/** What the stream has sent; for the record's usage and cost. */
export interface SttUsage {
  /** Audio seconds sent (µ-law 8 kHz: bytes / 8000). Billing is by audio sent. */
  audioSeconds: number;
  bytesSent: number;
  framesSent: number;
  keepAlivesSent: number;
  /** Audio bytes not sent (stream not open, or socket buffer over its bound). */
  droppedBytes: number;
}

export interface SttStream {
  /** µ-law 8 kHz mono, any length (20 ms frames from Twilio are 160 bytes). */
  send(ulawFrame: Uint8Array): void;
  /** Ask for the audio so far to be transcribed as final now (local end of turn). */
  finalize(): void;
  /** Flush and close; resolves once the socket is gone. Idempotent. */
  close(): Promise<void>;
  /** Subscribe; returns the unsubscribe function. */
  onEvent(listener: (ev: SttEvent) => void): () => void;
  usage(): SttUsage;
}

export interface SpeechToText {
  readonly name: string;
  connect(opts: SttConnectOptions, signal?: AbortSignal): Promise<SttStream>;
}

/**
 * An STT failure. `code`: HTTP status of a refused upgrade, a WebSocket close
 * code, a Node error code, `timeout` or `aborted`; `providerCode` the
 * provider's own (Deepgram `DATA-0000`, `NET-0001`, …) when it gave one.
 */
export class SttError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
    readonly code?: number | string,
    readonly providerCode?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'SttError';
  }
}
