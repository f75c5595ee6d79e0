/**
 * Call recordings: the contracts between the call (which taps its audio),
 * the recording file (encrypted in chunks), where files are kept (a
 * directory or S3-compatible storage), and the store (which keeps what
 * became of each call's recording and purges old ones).
 *
 *   caller frames ─┐
 *                  ├─▶ CallRecordingTap (a bounded per-call timeline, two channels)
 *   paced output ──┘        │ blocks of interleaved µ-law, off the audio path
 *                           ▼
 *                  RecordingWriter (AES-256-GCM chunks) ─▶ RecordingStorage (dir | s3)
 *
 * What is recorded: stereo G.711 µ-law at 8 kHz, channel 1 (left) what the
 * caller said (Twilio's inbound frames, placed by their media timestamp),
 * channel 2 (right) what the caller heard (the relay's paced output, placed
 * where it played, cut at a `clear` exactly where playing stopped; prompts
 * and hold audio included), both on the stream's clock (ms since `start`).
 * Read back as a plain WAV (format tag 7, 2 channels, 8 kHz, 8-bit).
 */
import type { Keyring } from '../store/crypto.js';

export type { Keyring };

/** What became of a call's recording, as its record keeps it. */
export type RecordingStatus =
  /** The whole call is in the file. */
  | 'complete'
  /** The file holds the call up to a point (`reason` says why it stopped: storage too slow, …); or no file at all when `object` is null (a write failed). */
  | 'incomplete'
  /** The caller pressed the opt-out key: nothing was kept. */
  | 'opted_out';

export interface RecordingInfo {
  status: RecordingStatus;
  /** The object's name in its storage (`YYYY/MM/DD/<CallSid>[-<leg>].cbrec`), or null when nothing was stored. */
  object: string | null;
  /** Which storage holds it. */
  storage: 'dir' | 's3';
  /** Id of the key that sealed it (store/crypto.ts `keyId`), or null when nothing was stored. */
  keyId: string | null;
  /** Audio in the file, ms (both channels are this long). */
  durationMs: number;
  /** Size of the stored object, bytes. */
  bytes: number;
  /** Why it is incomplete, in words (no personal data). */
  reason?: string;
}

/**
 * Where recording files are kept. Object names are '/'-separated relative
 * paths made by the recorder (no `..`, no leading '/'). Every method rejects
 * with a clear Error on failure (the caller decides what that means).
 */
export interface RecordingStorage {
  readonly kind: 'dir' | 's3';
  /** Where, for logs and errors: a directory path or `s3://bucket/prefix` (never credentials). */
  readonly where: string;
  /**
   * Start writing `name`. Parts are appended in order; nothing is visible
   * under `name` until `complete()` resolves (a directory writes a temporary
   * file and renames it; S3 uses a multipart upload). `abort()` removes what
   * was written.
   */
  create(name: string): Promise<ObjectUpload>;
  /** The object's size in bytes, or undefined when there is none. */
  size(name: string): Promise<number | undefined>;
  /** Bytes [start, end) of the object (end clipped to its size). Rejects RecordingNotFound when there is no such object. */
  read(name: string, start: number, end: number): Promise<Uint8Array>;
  /** Remove the object; one that is not there is not an error. */
  delete(name: string): Promise<void>;
  /** Every object name that starts with `prefix` (e.g. `2026/09/`), in no set order. */
  list(prefix: string): AsyncIterable<string>;
}

export interface ObjectUpload {
  append(bytes: Uint8Array): Promise<void>;
  complete(): Promise<void>;
  abort(): Promise<void>;
}

export class RecordingNotFound extends Error {
  constructor(name: string) {
    super(`no recording ${name}`);
    this.name = 'RecordingNotFound';
  }
}

/** A recording file that does not open: wrong or missing key, tampered, truncated or reordered chunks. Never half-played. */
export class RecordingCorrupt extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RecordingCorrupt';
  }
}

/**
 * The recording file being written: takes plaintext (interleaved stereo
 * µ-law, caller then heard, one byte each per sample) in any sizes, seals it
 * in fixed-size chunks, and appends them to the upload. `finish()` seals the
 * last chunk (marked final) and completes the upload; `abort()` removes it.
 * Calls are serialised by the caller: one at a time, each awaited.
 */
export interface RecordingWriter {
  write(plain: Uint8Array): Promise<void>;
  /** Resolves with the object's size once it is complete. */
  finish(): Promise<{ bytes: number }>;
  abort(): Promise<void>;
}

/**
 * One call's recording tap, fed from the audio path. Every method returns at
 * once (copies what it is given into the call's bounded timeline; writing is
 * done later, off the audio path) and never throws.
 */
export interface CallRecordingTap {
  /** One inbound frame from the caller (µ-law), at its media timestamp (ms since the stream's start). */
  caller(ulaw: Uint8Array, atMs: number): void;
  /** Bytes [start, end) of `buf` (µ-law) were sent to Twilio and start playing at `playAtMs` (ms since the stream's start, the relay's clock). */
  heard(buf: Uint8Array, start: number, end: number, playAtMs: number): void;
  /** Twilio was told to `clear` at `atMs`: what was sent but had not played by then is never heard. */
  cleared(atMs: number): void;
  /** The caller opted out: everything is dropped and nothing more is kept (the record says `opted_out`). */
  optOut(): void;
  /** The call ended at `atMs`: write what is left; resolves with what the record keeps. Never rejects. */
  finish(atMs: number): Promise<RecordingInfo>;
}
