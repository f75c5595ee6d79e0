// G.711 bit-exactness against ITU-T G.191's own vectors (test/fixtures/g711-itu).
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DspError, alawToPcm16, pcm16ToAlaw, pcm16ToUlaw, ulawToPcm16 } from '../src/dsp/index.js';

const FIXTURES = new URL('./fixtures/g711-itu/', import.meta.url);

/** A vector file as 65,536 int16 words (little-endian on disk). */
function words(name: string): Int16Array {
  const bytes = readFileSync(new URL(name, FIXTURES));
  expect(bytes.length).toBe(131072);
  const out = new Int16Array(65536);
  for (let i = 0; i < out.length; i++) out[i] = bytes.readInt16LE(2 * i);
  return out;
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function firstMismatch(a: ArrayLike<number>, b: ArrayLike<number>): string {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return `index ${i}: got ${a[i]}, want ${b[i]}`;
  return a.length === b.length ? 'none' : `lengths ${a.length} vs ${b.length}`;
}

const sweep = words('sweep.src');
const allCodes = Uint8Array.from({ length: 256 }, (_, i) => i);

describe('G.711 against ITU-T G.191', () => {
  it('the source vector is every int16 in order', () => {
    for (let i = 0; i < 65536; i++) if (sweep[i] !== i - 32768) throw new Error(`sweep.src[${i}] = ${sweep[i]}`);
  });

  it('µ-law encodes all 65,536 inputs exactly as G.191', () => {
    const want = Uint8Array.from(words('sweep-r.u'), (w) => w & 0xff);
    const got = pcm16ToUlaw(sweep);
    expect(firstMismatch(got, want)).toBe('none');
    expect(sha256(got)).toBe('90c29de505fb68e766118303bd552a16005dcf810873698bee1d8f3b247ce28c');
  });

  it('A-law encodes all 65,536 inputs exactly as G.191', () => {
    const want = Uint8Array.from(words('sweep-r.a'), (w) => w & 0xff);
    const got = pcm16ToAlaw(sweep);
    expect(firstMismatch(got, want)).toBe('none');
    expect(sha256(got)).toBe('38488f6fd710f4686360edc4d38639f96c491595ef93f8eb8d62d5e07ca6ce7b');
  });

  it('µ-law decodes all 256 codes exactly as G.191', () => {
    const got = ulawToPcm16(allCodes);
    expect(sha256(new Uint8Array(got.buffer, got.byteOffset, got.byteLength))).toBe(
      '3dab54339e520bb2c924826e3b72a917a2b612e9fd12fc867500f1d983a75827',
    );
    // and the encode-then-decode vector, which exercises every code G.191 emits
    const codes = Uint8Array.from(words('sweep-r.u'), (w) => w & 0xff);
    expect(firstMismatch(ulawToPcm16(codes), words('sweep-r.u-u'))).toBe('none');
  });

  it('A-law decodes every code exactly as G.191', () => {
    const codes = Uint8Array.from(words('sweep-r.a'), (w) => w & 0xff);
    expect(new Set(codes).size).toBe(256); // the sweep reaches all 256 codes
    expect(firstMismatch(alawToPcm16(codes), words('sweep-r.a-a'))).toBe('none');
  });

  it('decoding then re-encoding every code is the identity (except µ-law negative zero)', () => {
    expect(firstMismatch(pcm16ToAlaw(alawToPcm16(allCodes)), allCodes)).toBe('none');
    const ulaw = pcm16ToUlaw(ulawToPcm16(allCodes));
    for (let c = 0; c < 256; c++) expect(ulaw[c]).toBe(c === 0x7f ? 0xff : c);
  });

  it('accepts Buffers at any pool offset and fills a caller-supplied output', () => {
    const pool = Buffer.alloc(300);
    const slice = pool.subarray(37, 37 + 256);
    slice.set(allCodes);
    const out = new Int16Array(300).fill(123);
    const got = ulawToPcm16(slice, out);
    expect(got.length).toBe(256);
    expect(got.buffer).toBe(out.buffer);
    expect(Array.from(got)).toEqual(Array.from(ulawToPcm16(allCodes)));
    expect(out[256]).toBe(123);

    const pcm = new Int16Array(new ArrayBuffer(1000), 10, 256);
    pcm.set(ulawToPcm16(allCodes));
    const enc = pcm16ToUlaw(pcm);
    expect(enc.length).toBe(256);
    expect(Array.from(enc)).toEqual(Array.from(pcm16ToUlaw(ulawToPcm16(allCodes))));
  });

  it('handles inputs longer than one wasm block, and empty input', () => {
    const long = new Int16Array(100_003);
    for (let i = 0; i < long.length; i++) long[i] = sweep[(i * 7919) % 65536];
    const enc = pcm16ToAlaw(long);
    const byOne = pcm16ToAlaw(sweep);
    for (let i = 0; i < long.length; i++) if (enc[i] !== byOne[(i * 7919) % 65536]) throw new Error(`at ${i}`);
    expect(ulawToPcm16(new Uint8Array(0)).length).toBe(0);
  });

  it('rejects wrong argument types and short outputs with DspError bad_input', () => {
    expect(() => ulawToPcm16([1, 2] as unknown as Uint8Array)).toThrowError(DspError);
    expect(() => pcm16ToUlaw(new Uint8Array(4) as unknown as Int16Array)).toThrow(/Int16Array/);
    try {
      alawToPcm16(new Uint8Array(10), new Int16Array(9));
      expect.unreachable();
    } catch (err) {
      expect((err as DspError).code).toBe('bad_input');
    }
  });
});
