/**
 * RFC 6455 client → server frames for the model socket's hot path: one
 * masked text frame per `input_audio_buffer.append`, built in one reused
 * buffer, so an append costs one socket write and no allocation beyond what
 * the socket keeps when it cannot write at once. Pure: no sockets here.
 *
 * Contract:
 * - `frameBase64(b64)` returns one complete frame: FIN +
 *   opcode 1 (text), MASK bit, 7-, 16- or 64-bit payload length (§5.2), a
 *   fresh 4-byte masking key per frame drawn from a pooled CSPRNG buffer
 *   (§5.3, as `ws` does), and the masked payload
 *   `{"type":"input_audio_buffer.append","audio":"<base64>"}` (UTF-8 = ASCII).
 * - The returned Buffer is a view of the writer's scratch memory and is valid
 *   until the next frame is built. Hand it to the socket at once; if the socket
 *   kept a reference (the write did not complete synchronously) call
 *   `release()`, and the next frame goes into fresh memory.
 * - `frameBase64(b64)`: `b64` MUST be standard base64 (it is embedded in the
 *   JSON unescaped). It is not re-checked here, on the hot path: caller audio
 *   is validated where it enters (twilio/media-stream `isMediaPayload`) or is
 *   produced by Buffer#toString('base64').
 */
import { randomFillSync } from 'node:crypto';

export const APPEND_PREFIX = '{"type":"input_audio_buffer.append","audio":"';
export const APPEND_SUFFIX = '"}';
const PREFIX_BYTES = Buffer.from(APPEND_PREFIX, 'latin1');
const SUFFIX_0 = 0x22; // "
const SUFFIX_1 = 0x7d; // }

/** Where the payload starts in scratch memory: 4-aligned, with room for the longest header (14 bytes) before it. */
const PAYLOAD_OFF = 16;
/** Random bytes drawn at once for masking keys: 2048 frames per refill. */
const MASK_POOL_BYTES = 8192;



/** Frame header length for a payload of `n` bytes, masked (client → server). */
export function maskedHeaderLength(n: number): number {
  return n < 126 ? 6 : n < 65536 ? 8 : 14;
}

export class AppendFrameWriter {
  private buf: Buffer = Buffer.alloc(0);
  /** A word view of the whole ArrayBuffer under `buf` (Node's pool slab or buf's own), re-made only when that changes. */
  private u32 = new Uint32Array(0);
  /** Index in `u32` of the payload's first word. */
  private word0 = 0;
  /** `buf` is still referenced by a socket: the next frame must go elsewhere. */
  private held = true;
  private readonly pool = Buffer.allocUnsafeSlow(MASK_POOL_BYTES);
  private readonly pool32 = new Uint32Array(this.pool.buffer, this.pool.byteOffset, MASK_POOL_BYTES >> 2);
  private poolAt = MASK_POOL_BYTES >> 2;
  /** Frames whose memory a socket kept (each cost the next frame one allocation). For tests and stats. */
  released = 0;

  /** The frame for audio already in base64 (passthrough, or a caller that has the string anyway). */
  frameBase64(b64: string): Buffer {
    const n = PREFIX_BYTES.length + b64.length + 2;
    this.reserve(n);
    const buf = this.buf;
    PREFIX_BYTES.copy(buf, PAYLOAD_OFF);
    buf.write(b64, PAYLOAD_OFF + PREFIX_BYTES.length, 'latin1');
    buf[PAYLOAD_OFF + n - 2] = SUFFIX_0;
    buf[PAYLOAD_OFF + n - 1] = SUFFIX_1;
    return this.finish(n);
  }

  /**
   * The last frame's memory is still referenced by a socket (its write did not
   * complete at once: kernel buffer full, or TLS, whose writes always complete
   * later): build the next one elsewhere.
   */
  release(): void {
    this.released++;
    this.held = true;
  }

  private reserve(payloadBytes: number): void {
    const need = PAYLOAD_OFF + payloadBytes + 4; // + 4: the masking loop may touch one word past the end
    if (this.held) this.allocate(need);
    else if (need > this.buf.length) this.allocate(Math.max(need, 2 * this.buf.length));
  }

  /** Right-sized memory: from Node's buffer pool when small (cheap), its own ArrayBuffer when large. */
  private allocate(bytes: number): void {
    const size = (bytes + 7) & ~7;
    let buf = Buffer.allocUnsafe(size);
    if ((buf.byteOffset & 3) !== 0 || (buf.buffer.byteLength & 3) !== 0) buf = Buffer.allocUnsafeSlow(size);
    this.buf = buf;
    this.held = false;
    if (buf.buffer !== this.u32.buffer) this.u32 = new Uint32Array(buf.buffer, 0, buf.buffer.byteLength >> 2);
    this.word0 = (buf.byteOffset + PAYLOAD_OFF) >> 2;
  }

  /** Write the header before the payload and mask the payload in place; returns the whole frame. */
  private finish(n: number): Buffer {
    const buf = this.buf;
    const h = maskedHeaderLength(n);
    const start = PAYLOAD_OFF - h;
    buf[start] = 0x81; // FIN | text
    if (n < 126) {
      buf[start + 1] = 0x80 | n;
    } else if (n < 65536) {
      buf[start + 1] = 0x80 | 126;
      buf[start + 2] = n >>> 8;
      buf[start + 3] = n & 0xff;
    } else {
      buf[start + 1] = 0x80 | 127;
      buf.writeUInt32BE(Math.floor(n / 2 ** 32), start + 2);
      buf.writeUInt32BE(n >>> 0, start + 6);
    }
    if (this.poolAt === this.pool32.length) {
      randomFillSync(this.pool);
      this.poolAt = 0;
    }
    const key = this.pool32[this.poolAt++]!;
    // The key's bytes in memory order are the masking key; XORing whole words with the same word applies
    // key octet i % 4 to payload octet i (§5.3) on any endianness, because the payload starts on a word.
    const u32 = this.u32;
    const w0 = this.word0;
    u32[w0 - 1] = key;
    const end = w0 + ((n + 3) >> 2);
    for (let j = w0; j < end; j++) u32[j] ^= key;
    return buf.subarray(start, PAYLOAD_OFF + n);
  }
}
