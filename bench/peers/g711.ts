/**
 * Plain-JS µ-law peers: what a careful JS programmer would write without
 * WebAssembly. Both follow ITU-T G.191 (g711.c ulaw_expand / ulaw_compress),
 * so they are bit-exact, and they are what the wasm codec has to beat.
 *
 * - decode: one 256-entry Int16Array lookup per byte.
 * - encodeTable: one lookup per sample in a 16,384-entry table indexed by the
 *   sample's top 14 bits (G.191 drops the 2 low bits first, so that is exact).
 * - encodeG191: the G.191 arithmetic, segment found with Math.clz32.
 */

/** G.191 ulaw_expand of one code. */
function expand(code: number): number {
  const sign = code < 0x80 ? -1 : 1;
  let mantissa = ~code;
  const exponent = (mantissa >> 4) & 0x07;
  const segment = exponent + 1;
  mantissa &= 0x0f;
  const step = 4 << segment;
  return sign * ((0x80 << exponent) + step * mantissa + step / 2 - 4 * 33);
}

/** G.191 ulaw_compress of one int16 sample. */
export function compressG191(x: number): number {
  let absno = (x < 0 ? ~x >> 2 : x >> 2) + 33;
  if (absno > 0x1fff) absno = 0x1fff;
  const segno = 33 - Math.clz32(absno >> 6); // 1 + bit length of absno >> 6
  const code = ((8 - segno) << 4) | (0x0f - ((absno >> segno) & 0x0f));
  return x >= 0 ? code | 0x80 : code;
}

const DECODE = new Int16Array(256);
for (let c = 0; c < 256; c++) DECODE[c] = expand(c);

/** Index: (x >> 2) & 0x3fff, i.e. the 14-bit two's-complement top of the sample. */
const ENCODE14 = new Uint8Array(1 << 14);
for (let i = 0; i < 1 << 14; i++) ENCODE14[i] = compressG191(((i << 18) >> 18) << 2);

export function jsUlawDecode(ulaw: Uint8Array, out: Int16Array): Int16Array {
  const n = ulaw.length;
  for (let i = 0; i < n; i++) out[i] = DECODE[ulaw[i]];
  return out;
}

export function jsUlawEncodeTable(pcm: Int16Array, out: Uint8Array): Uint8Array {
  const n = pcm.length;
  for (let i = 0; i < n; i++) out[i] = ENCODE14[(pcm[i] >> 2) & 0x3fff];
  return out;
}

export function jsUlawEncodeG191(pcm: Int16Array, out: Uint8Array): Uint8Array {
  const n = pcm.length;
  for (let i = 0; i < n; i++) out[i] = compressG191(pcm[i]);
  return out;
}
