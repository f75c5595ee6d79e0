// G.711 µ-law and A-law, bit-exact with ITU-T G.191 (STL module g711):
// encode takes any int16, decode any code 0..255. Verified in
// test/g711.test.ts against ITU's own sweep vectors (all 65,536 inputs).

/** Decoded value of each code, int16, built once at start-up from G.191's expand formulas. */
const ULAW_DECODE: usize = memory.data(256 * 2, 16);
const ALAW_DECODE: usize = memory.data(256 * 2, 16);

/**
 * Code for each input, built once from G.191's compress formulas. µ-law
 * depends only on x >> 2 (14 bits), A-law only on x >> 4 (12 bits), since
 * ~(x >> k) == (~x) >> k and the sign survives the shift.
 */
const ULAW_ENCODE: usize = memory.data(1 << 14, 16); // index (x >> 2) + 8192
const ALAW_ENCODE: usize = memory.data(1 << 12, 16); // index (x >> 4) + 2048

export function initG711(): void {
  for (let code = 0; code < 256; code++) {
    store<i16>(ULAW_DECODE + (<usize>code << 1), ulawExpand(code));
    store<i16>(ALAW_DECODE + (<usize>code << 1), alawExpand(code));
  }
  for (let i = 0; i < 1 << 14; i++) store<u8>(ULAW_ENCODE + <usize>i, ulawCompress((i - 8192) << 2));
  for (let i = 0; i < 1 << 12; i++) store<u8>(ALAW_ENCODE + <usize>i, alawCompress((i - 2048) << 4));
}

/** G.191 ulaw_expand for one code. */
function ulawExpand(code: i32): i16 {
  const sign = code < 0x80 ? -1 : 1;
  const inverted = ~code;
  const exponent = (inverted >> 4) & 7;
  const mantissa = inverted & 0xf;
  const step = 4 << (exponent + 1);
  return <i16>(sign * ((0x80 << exponent) + step * mantissa + (step >> 1) - 4 * 33));
}

/** G.191 alaw_expand for one code. */
function alawExpand(code: i32): i16 {
  const ix = (code ^ 0x55) & 0x7f;
  const exponent = ix >> 4;
  let mantissa = ix & 0xf;
  if (exponent > 0) mantissa += 16;
  mantissa = (mantissa << 4) + 8;
  if (exponent > 1) mantissa <<= exponent - 1;
  return <i16>(code > 127 ? mantissa : -mantissa);
}

@inline export function ulawDecode(code: u32): i32 {
  return load<i16>(ULAW_DECODE + (<usize>code << 1));
}

@inline export function alawDecode(code: u32): i32 {
  return load<i16>(ALAW_DECODE + (<usize>code << 1));
}

/** int16 -> µ-law code. */
@inline export function ulawEncode(x: i32): u8 {
  return load<u8>(ULAW_ENCODE + <usize>((x >> 2) + 8192));
}

/** int16 -> A-law code. */
@inline export function alawEncode(x: i32): u8 {
  return load<u8>(ALAW_ENCODE + <usize>((x >> 4) + 2048));
}

/** G.191 ulaw_compress: magnitude >> 2 (one's complement for negatives), +33 bias, 13-bit clamp. */
function ulawCompress(x: i32): u8 {
  let magnitude = ((x < 0 ? ~x : x) >> 2) + 33;
  if (magnitude > 0x1fff) magnitude = 0x1fff;
  const segment = 33 - clz<i32>(magnitude >> 6); // 1 + bit length of magnitude >> 6
  const code = ((8 - segment) << 4) | (15 - ((magnitude >> segment) & 15));
  return <u8>(x >= 0 ? code | 0x80 : code);
}

/** G.191 alaw_compress: magnitude >> 4 (one's complement for negatives), even bits inverted. */
function alawCompress(x: i32): u8 {
  let ix = (x < 0 ? ~x : x) >> 4;
  if (ix > 15) {
    const bits = 32 - clz<i32>(ix); // 5..11
    const exponent = bits - 4;
    ix = (ix >> (bits - 5)) - 16 + (exponent << 4);
  }
  if (x >= 0) ix |= 0x80;
  return <u8>(ix ^ 0x55);
}

export function ulawDecodeBlock(src: usize, dst: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    store<i16>(dst + (<usize>i << 1), ulawDecode(load<u8>(src + <usize>i)));
  }
}

export function alawDecodeBlock(src: usize, dst: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    store<i16>(dst + (<usize>i << 1), alawDecode(load<u8>(src + <usize>i)));
  }
}

export function ulawEncodeBlock(src: usize, dst: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    store<u8>(dst + <usize>i, ulawEncode(load<i16>(src + (<usize>i << 1))));
  }
}

export function alawEncodeBlock(src: usize, dst: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    store<u8>(dst + <usize>i, alawEncode(load<i16>(src + (<usize>i << 1))));
  }
}
