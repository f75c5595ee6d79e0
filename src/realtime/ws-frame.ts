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
/** Scratch memory for a 20 ms transcode frame (1280 base64 chars) with room to spare; grows for bigger appends. */
const INITIAL_BYTES = 4096;
/** Random bytes drawn at once for masking keys: 2048 frames per refill. */
const MASK_POOL_BYTES = 8192;



/** Frame header length for a payload of `n` bytes, masked (client → server). */
export function maskedHeaderLength(n: number): number {
  return n < 126 ? 6 : n < 65536 ? 8 : 14;
}

export class AppendFrameWriter {
  private buf: Buffer;
  private u32: Uint32Array;
  private readonly pool = Buffer.allocUnsafeSlow(MASK_POOL_BYTES);
  private readonly pool32 = new Uint32Array(this.pool.buffer, this.pool.byteOffset, MASK_POOL_BYTES >> 2);
  private poolAt = MASK_POOL_BYTES >> 2;
  /** Frames built into memory a socket kept (allocations the socket needed); for tests and stats. */
  released = 0;

  constructor() {
    this.buf = Buffer.allocUnsafeSlow(INITIAL_BYTES);
    this.u32 = new Uint32Array(this.buf.buffer, 0, INITIAL_BYTES >> 2);
  }

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

  /** The last frame's memory is still referenced by a socket: build the next one elsewhere. */
  release(): void {
    this.released++;
    this.allocate(INITIAL_BYTES);
  }

  private reserve(payloadBytes: number): void {
    const need = PAYLOAD_OFF + payloadBytes + 4; // + 4: the masking loop may touch one word past the end
    if (need > this.buf.length) this.allocate(Math.max(need, this.buf.length * 2));
  }

  private allocate(bytes: number): void {
    const size = (bytes + 7) & ~7;
    this.buf = Buffer.allocUnsafeSlow(size);
    this.u32 = new Uint32Array(this.buf.buffer, 0, size >> 2);
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
    // The key's bytes in memory order are the masking key (§5.3: octet i is XORed with key[i % 4]).
    const keyAt = PAYLOAD_OFF - 4;
    this.u32[keyAt >> 2] = key;
    // XOR whole words: the payload starts 4-aligned, so word j covers key octets 0..3 in memory order on any endianness.
    const u32 = this.u32;
    const first = PAYLOAD_OFF >> 2;
    const words = (n + 3) >> 2;
    for (let j = first; j < first + words; j++) u32[j] ^= key;
    return buf.subarray(start, PAYLOAD_OFF + n);
  }
}
