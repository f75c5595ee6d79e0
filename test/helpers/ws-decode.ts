/**
 * A tiny RFC 6455 frame decoder written for the tests, independent of `ws`
 * and of src/realtime: reads complete frames from a byte stream and unmasks them.
 */
export interface DecodedFrame {
  fin: boolean;
  rsv: number;
  opcode: number;
  masked: boolean;
  /** Which length encoding the header used: 7, 16 or 64 bits. */
  lengthBits: 7 | 16 | 64;
  mask: Buffer | undefined;
  payload: Buffer;
}

/** Decode every complete frame in `bytes`; `rest` is what is left of an incomplete last frame. */
export function decodeFrames(bytes: Buffer): { frames: DecodedFrame[]; rest: Buffer } {
  const frames: DecodedFrame[] = [];
  let p = 0;
  for (;;) {
    if (bytes.length - p < 2) break;
    const b0 = bytes[p]!;
    const b1 = bytes[p + 1]!;
    let len = b1 & 0x7f;
    let h = 2;
    let lengthBits: 7 | 16 | 64 = 7;
    if (len === 126) {
      if (bytes.length - p < 4) break;
      len = bytes.readUInt16BE(p + 2);
      h = 4;
      lengthBits = 16;
    } else if (len === 127) {
      if (bytes.length - p < 10) break;
      len = Number(bytes.readBigUInt64BE(p + 2));
      h = 10;
      lengthBits = 64;
    }
    const masked = (b1 & 0x80) !== 0;
    const mask = masked ? Buffer.from(bytes.subarray(p + h, p + h + 4)) : undefined;
    if (masked) h += 4;
    if (bytes.length - p < h + len) break;
    const payload = Buffer.from(bytes.subarray(p + h, p + h + len));
    if (mask) for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[i & 3]!;
    frames.push({ fin: (b0 & 0x80) !== 0, rsv: (b0 >> 4) & 7, opcode: b0 & 0x0f, masked, lengthBits, mask, payload });
    p += h + len;
  }
  return { frames, rest: bytes.subarray(p) };
}
