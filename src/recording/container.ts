/**
 * The recording file (`.cbrec`): interleaved stereo µ-law at 8 kHz (byte 0
 * what the caller said, byte 1 what the caller heard, …), sealed in
 * fixed-size chunks with AES-256-GCM, and read back as a plain WAV.
 *
 * Layout (all integers big-endian; docs/recordings.md has the table):
 *
 *   header  40 bytes: magic "CBREC\r\n\x1a" | version u16 (1) | format u16 (1 = stereo µ-law 8 kHz, caller|heard)
 *                     | chunk size u32 (plaintext bytes per chunk, 65536) | key id (8 ASCII hex: store/crypto.ts keyId)
 *                     | file id (16 random bytes)
 *   chunk i          : nonce (12 random bytes) | ciphertext | tag (16 bytes)
 *
 * Contract:
 * - Every chunk holds exactly `chunk size` plaintext bytes except the last,
 *   which holds fewer (possibly none: a file whose plaintext is a multiple of
 *   the chunk size, or empty, ends with an empty chunk). So chunk i starts at
 *   40 + i × (chunk size + 28), computed, never scanned, and the file's size
 *   alone tells how many chunks and how much audio it holds.
 * - Each file has its own key: HKDF-SHA256(master key, salt = file id,
 *   info = "callbridge recording v1"), derived once per file.
 * - Associated data of chunk i: the 40 header bytes | i (u64) | final (u8, 1
 *   for the last chunk only). An altered header, a chunk moved to another
 *   place or taken from another file, dropped trailing chunks and a cut
 *   inside a chunk all fail the tag: RecordingCorrupt, never wrong audio.
 * - `openRecording` checks the header, the key and the LAST chunk (which must
 *   be the final one): a truncated file fails at open, never part-way
 *   through playback. `read` decrypts only the chunks a range covers, and
 *   rejects (returns nothing) when one of them does not authenticate.
 * - Nothing personal is in clear: the header holds no CallSid, number or date.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import type { Keyring } from '../store/crypto.js';
import { RecordingCorrupt, RecordingNotFound, type ObjectUpload, type RecordingStorage, type RecordingWriter } from './types.js';

const MAGIC = Buffer.from('CBREC\r\n\x1a', 'latin1');
const VERSION = 1;
/** Stereo µ-law, 8 kHz, channel 1 the caller, channel 2 what the caller heard. */
const FORMAT_STEREO_ULAW_8K = 1;
export const HEADER_BYTES = 40;
/** Plaintext bytes per chunk (the last holds fewer). */
export const CHUNK_PLAIN_BYTES = 64 * 1024;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
/** What a chunk adds to its plaintext: nonce and tag. */
export const CHUNK_OVERHEAD_BYTES = NONCE_BYTES + TAG_BYTES;
/** Chunk sizes a reader accepts from a header (the size is only authenticated once a chunk opens). */
const MAX_CHUNK_PLAIN_BYTES = 16 * 1024 * 1024;
const HKDF_INFO = Buffer.from('callbridge recording v1', 'utf8');
/** Stereo µ-law at 8 kHz: 2 bytes per sample frame, 8000 frames a second. */
const BYTES_PER_MS = 16;
/** Chunks decrypted per storage read while serving a range (bounds memory to about 1 MiB beyond the answer). */
const CHUNKS_PER_READ = 16;

/** A per-file key: HKDF-SHA256 of the master key, salted with the file id. */
function fileKey(master: Buffer, fileId: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', master, fileId, HKDF_INFO, 32));
}

function chunkAad(header: Buffer, index: number, final: boolean): Buffer {
  const aad = Buffer.allocUnsafe(HEADER_BYTES + 9);
  header.copy(aad, 0, 0, HEADER_BYTES);
  aad.writeBigUInt64BE(BigInt(index), HEADER_BYTES);
  aad[HEADER_BYTES + 8] = final ? 1 : 0;
  return aad;
}

function buildHeader(kid: string, fileId: Buffer, chunkPlainBytes: number): Buffer {
  const h = Buffer.alloc(HEADER_BYTES);
  MAGIC.copy(h, 0);
  h.writeUInt16BE(VERSION, 8);
  h.writeUInt16BE(FORMAT_STEREO_ULAW_8K, 10);
  h.writeUInt32BE(chunkPlainBytes, 12);
  h.write(kid, 16, 8, 'latin1');
  fileId.copy(h, 24);
  return h;
}

function sealChunk(key: Buffer, header: Buffer, index: number, final: boolean, plain: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(NONCE_BYTES + plain.length + TAG_BYTES);
  const nonce = randomBytes(NONCE_BYTES);
  nonce.copy(out, 0);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(chunkAad(header, index, final));
  const body = cipher.update(plain);
  body.copy(out, NONCE_BYTES);
  const rest = cipher.final(); // GCM: empty
  rest.copy(out, NONCE_BYTES + body.length);
  cipher.getAuthTag().copy(out, NONCE_BYTES + plain.length);
  return out;
}

/** The chunk's plaintext, or undefined when its tag fails (altered, moved, from another file, or cut). */
function openChunk(key: Buffer, header: Buffer, index: number, final: boolean, sealed: Uint8Array): Buffer | undefined {
  if (sealed.length < CHUNK_OVERHEAD_BYTES) return undefined;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, NONCE_BYTES));
    decipher.setAAD(chunkAad(header, index, final));
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    const plain = decipher.update(sealed.subarray(NONCE_BYTES, sealed.length - TAG_BYTES));
    decipher.final();
    return plain;
  } catch {
    return undefined;
  }
}

/**
 * A writer that seals what it is given into `upload`, under `key` (the
 * RECORDING_KEY: `kid` is its store/crypto.ts keyId). The header goes out
 * with the first chunk; each full chunk is appended as soon as it fills.
 * After a failed append the writer is broken: every later call rejects with
 * that failure (the caller aborts).
 */
export function createRecordingWriter(upload: ObjectUpload, key: { kid: string; key: Buffer }, meta: { callSid: string }): RecordingWriter {
  if (!/^[0-9a-f]{8}$/.test(key.kid)) throw new Error(`recording key id ${JSON.stringify(key.kid)} is not 8 hex characters (store/crypto.ts keyId)`);
  if (key.key.length !== 32) throw new Error(`a recording key is 32 bytes (64 hex), not ${key.key.length}`);
  const fileId = randomBytes(16);
  const header = buildHeader(key.kid, fileId, CHUNK_PLAIN_BYTES);
  const perFile = fileKey(key.key, fileId);
  const pending = Buffer.allocUnsafe(CHUNK_PLAIN_BYTES);
  let filled = 0;
  let index = 0;
  let headerSent = false;
  let bytes = 0;
  let state: 'open' | 'finished' | 'aborted' = 'open';
  let failure: unknown;

  const send = async (final: boolean): Promise<void> => {
    const sealed = sealChunk(perFile, header, index, final, pending.subarray(0, filled));
    const part = headerSent ? sealed : Buffer.concat([header, sealed]);
    index += 1;
    filled = 0;
    try {
      await upload.append(part);
    } catch (e) {
      failure = e;
      throw e;
    }
    headerSent = true;
    bytes += part.length;
  };
  const usable = (what: string): void => {
    if (failure !== undefined) throw failure;
    if (state !== 'open') throw new Error(`recording of call ${meta.callSid}: ${what} after the writer was ${state}`);
  };

  return {
    async write(plain) {
      usable('write');
      let at = 0;
      while (at < plain.length) {
        const n = Math.min(CHUNK_PLAIN_BYTES - filled, plain.length - at);
        pending.set(plain.subarray(at, at + n), filled);
        filled += n;
        at += n;
        // A full chunk goes out at once; the final chunk (sealed at finish) may then be empty.
        if (filled === CHUNK_PLAIN_BYTES) await send(false);
      }
    },
    async finish() {
      usable('finish');
      await send(true);
      try {
        await upload.complete();
      } catch (e) {
        failure = e; // still abortable: abort() asks the upload to remove what is left
        throw e;
      }
      state = 'finished';
      return { bytes };
    },
    async abort() {
      if (state === 'aborted' || state === 'finished') return;
      state = 'aborted';
      await upload.abort();
    },
  };
}

/** A recording opened for playback, as a WAV file. */
export interface RecordingReader {
  /** Id of the key that sealed it. */
  keyId: string;
  /** Bytes of audio (both channels, interleaved). */
  audioBytes: number;
  /** Audio length, ms. */
  durationMs: number;
  /** Size of the WAV file `read` serves: header, audio and a pad byte when the audio is odd. */
  wavBytes: number;
  /** Bytes [start, end) of the WAV (end clipped to `wavBytes`); rejects RecordingCorrupt when a chunk it covers does not authenticate. */
  read(start: number, end: number): Promise<Uint8Array>;
  readAll(): Promise<Uint8Array>;
}

/** Size of a recording file holding `audioBytes` of audio. */
export function recordingFileBytes(audioBytes: number, chunkPlainBytes: number = CHUNK_PLAIN_BYTES): number {
  const chunks = Math.floor(audioBytes / chunkPlainBytes) + 1;
  return HEADER_BYTES + audioBytes + chunks * CHUNK_OVERHEAD_BYTES;
}

/**
 * Open `name` in `storage` with the keys of `ring` (RECORDING_KEY and the
 * RECORDING_KEY_OLD keys). Rejects RecordingNotFound when there is no such
 * object, RecordingCorrupt when it is not a recording, cannot be opened with
 * the ring, or is truncated or altered (its last chunk is checked here).
 */
export async function openRecording(storage: RecordingStorage, name: string, ring: Keyring): Promise<RecordingReader> {
  const fileBytes = await storage.size(name);
  if (fileBytes === undefined) throw new RecordingNotFound(name);
  const header = Buffer.from(await storage.read(name, 0, HEADER_BYTES));
  if (header.length < MAGIC.length || !header.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new RecordingCorrupt(`recording ${name} is not a callbridge recording file (no CBREC header)`);
  }
  if (header.length < HEADER_BYTES) throw new RecordingCorrupt(`recording ${name} is truncated: its header is cut short (${header.length} of ${HEADER_BYTES} bytes)`);
  const version = header.readUInt16BE(8);
  if (version !== VERSION) throw new RecordingCorrupt(`recording ${name} is in format version ${version}, which this callbridge does not know (it reads version ${VERSION})`);
  const format = header.readUInt16BE(10);
  if (format !== FORMAT_STEREO_ULAW_8K) throw new RecordingCorrupt(`recording ${name} holds audio format ${format}, which this callbridge does not know`);
  const chunkPlain = header.readUInt32BE(12);
  if (chunkPlain < 1 || chunkPlain > MAX_CHUNK_PLAIN_BYTES) throw new RecordingCorrupt(`recording ${name} has a damaged header (chunk size ${chunkPlain})`);
  const kid = header.toString('latin1', 16, 24);
  const fileId = header.subarray(24, 40);

  if (ring.keys.length === 0) throw new RecordingCorrupt(`recording ${name} is encrypted: set RECORDING_KEY to read it`);
  const candidates = ring.keys.filter((k) => k.kid === kid);
  if (candidates.length === 0) {
    const shown = /^[0-9a-f]{8}$/.test(kid) ? kid : '(damaged)';
    throw new RecordingCorrupt(
      `recording ${name} is sealed with key ${shown}, which is neither RECORDING_KEY nor a RECORDING_KEY_OLD: set the key it was written with (as RECORDING_KEY_OLD after a rotation)`,
    );
  }

  const chunkSealed = chunkPlain + CHUNK_OVERHEAD_BYTES;
  const body = fileBytes - HEADER_BYTES;
  const fullChunks = Math.floor(body / chunkSealed);
  const lastSealed = body - fullChunks * chunkSealed;
  if (lastSealed === 0) throw new RecordingCorrupt(`recording ${name} is truncated: it ends at a chunk boundary without its final chunk`);
  if (lastSealed < CHUNK_OVERHEAD_BYTES) throw new RecordingCorrupt(`recording ${name} is truncated: its last chunk is cut short`);
  const lastIndex = fullChunks;
  const lastAt = HEADER_BYTES + lastIndex * chunkSealed;
  const lastBytes = await storage.read(name, lastAt, lastAt + lastSealed);
  if (lastBytes.length !== lastSealed) throw new RecordingCorrupt(`recording ${name} changed while it was being opened (its size no longer matches)`);
  let key: Buffer | undefined;
  let lastPlain: Buffer | undefined;
  for (const k of candidates) {
    const perFile = fileKey(k.key, fileId);
    lastPlain = openChunk(perFile, header, lastIndex, true, lastBytes);
    if (lastPlain) {
      key = perFile;
      break;
    }
  }
  if (!key || !lastPlain) {
    throw new RecordingCorrupt(`recording ${name} does not authenticate: it was truncated or altered (its last chunk, or its header, fails the check)`);
  }
  const sealedKey = key;
  const finalPlain = lastPlain;

  const audioBytes = fullChunks * chunkPlain + finalPlain.length;
  const wavHeader = stereoUlawWavHeader(audioBytes);
  const wavBytes = wavHeader.length + audioBytes + (audioBytes & 1);

  /** Plaintext bytes [from, to) of the audio into `out` at `outAt`, decrypting only the chunks they lie in. */
  const readAudio = async (from: number, to: number, out: Uint8Array, outAt: number): Promise<void> => {
    let first = Math.floor(from / chunkPlain);
    const last = Math.floor((to - 1) / chunkPlain);
    while (first <= last) {
      const upTo = Math.min(last, first + CHUNKS_PER_READ - 1);
      // The final chunk was opened at open; only full chunks are fetched.
      const fetchTo = Math.min(upTo, lastIndex - 1);
      const sealed = fetchTo >= first ? await storage.read(name, HEADER_BYTES + first * chunkSealed, HEADER_BYTES + (fetchTo + 1) * chunkSealed) : undefined;
      for (let i = first; i <= upTo; i++) {
        let plain: Buffer | undefined;
        if (i === lastIndex) plain = finalPlain;
        else {
          const at = (i - first) * chunkSealed;
          const one = sealed!.subarray(at, at + chunkSealed);
          if (one.length !== chunkSealed) throw new RecordingCorrupt(`recording ${name} changed while it was being read (chunk ${i} is cut short)`);
          plain = openChunk(sealedKey, header, i, false, one);
          if (!plain) throw new RecordingCorrupt(`recording ${name} does not authenticate at chunk ${i}: the file was altered or its chunks reordered`);
        }
        const chunkStart = i * chunkPlain;
        const a = Math.max(from, chunkStart) - chunkStart;
        const b = Math.min(to, chunkStart + plain.length) - chunkStart;
        if (b > a) out.set(plain.subarray(a, b), outAt + (chunkStart + a - from));
      }
      first = upTo + 1;
    }
  };

  const read = async (start: number, end: number): Promise<Uint8Array> => {
    const s = Math.max(0, Math.min(Math.floor(start), wavBytes));
    const e = Math.max(s, Math.min(Math.floor(end), wavBytes));
    const out = new Uint8Array(e - s); // zeroed: the pad byte, when there is one, stays 0
    if (s < wavHeader.length) out.set(wavHeader.subarray(s, Math.min(e, wavHeader.length)), 0);
    const from = Math.max(s, wavHeader.length) - wavHeader.length;
    const to = Math.min(e - wavHeader.length, audioBytes);
    if (to > from) await readAudio(from, to, out, from + wavHeader.length - s);
    return out;
  };

  return {
    keyId: kid,
    audioBytes,
    durationMs: Math.round(audioBytes / BYTES_PER_MS),
    wavBytes,
    read,
    readAll: () => read(0, wavBytes),
  };
}

/**
 * The WAV header of `audioBytes` of stereo µ-law at 8 kHz: RIFF/WAVE, a fmt
 * chunk of 18 bytes (tag 7, 2 channels, 8000 Hz, 16000 bytes/s, block
 * align 2, 8 bits, cbSize 0), a fact chunk (sample frames), then data. A size
 * that does not fit in 32 bits is written 0xFFFFFFFF ("to the end").
 */
export function stereoUlawWavHeader(audioBytes: number): Uint8Array {
  const out = Buffer.alloc(12 + 8 + 18 + 12 + 8);
  const u32 = (n: number): number => (n > 0xffffffff ? 0xffffffff : n);
  out.write('RIFF', 0, 'latin1');
  out.writeUInt32LE(u32(out.length + audioBytes + (audioBytes & 1) - 8), 4);
  out.write('WAVE', 8, 'latin1');
  out.write('fmt ', 12, 'latin1');
  out.writeUInt32LE(18, 16);
  out.writeUInt16LE(7, 20); // WAVE_FORMAT_MULAW
  out.writeUInt16LE(2, 22); // channels: caller, heard
  out.writeUInt32LE(8000, 24); // Hz
  out.writeUInt32LE(16000, 28); // bytes per second
  out.writeUInt16LE(2, 32); // block align
  out.writeUInt16LE(8, 34); // bits per sample
  out.writeUInt16LE(0, 36); // cbSize
  out.write('fact', 38, 'latin1');
  out.writeUInt32LE(4, 42);
  out.writeUInt32LE(u32(Math.floor(audioBytes / 2)), 46); // sample frames
  out.write('data', 50, 'latin1');
  out.writeUInt32LE(u32(audioBytes), 54);
  return out;
}
