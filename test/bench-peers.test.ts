// The bench's plain-JS µ-law peers must do the same work as the wasm codec:
// bit-exact with it (and so with ITU-T G.191) on every input, or the speed
// comparison in `npm run bench` would compare different things.
import { describe, expect, it } from 'vitest';
import { jsUlawDecode, jsUlawEncodeG191, jsUlawEncodeTable } from '../bench/peers/g711.js';
import { pcm16ToUlaw, ulawToPcm16 } from '../src/dsp/index.js';

describe('bench µ-law peers', () => {
  it('decode all 256 codes exactly like the wasm codec', () => {
    const codes = Uint8Array.from({ length: 256 }, (_, i) => i);
    expect(Array.from(jsUlawDecode(codes, new Int16Array(256)))).toEqual(Array.from(ulawToPcm16(codes)));
  });

  it('encode all 65,536 inputs exactly like the wasm codec (table and arithmetic)', () => {
    const pcm = Int16Array.from({ length: 65536 }, (_, i) => i - 32768);
    const wasm = pcm16ToUlaw(pcm);
    const table = jsUlawEncodeTable(pcm, new Uint8Array(pcm.length));
    const arith = jsUlawEncodeG191(pcm, new Uint8Array(pcm.length));
    const firstDiff = (a: Uint8Array): number => a.findIndex((v, i) => v !== wasm[i]);
    expect(firstDiff(table)).toBe(-1);
    expect(firstDiff(arith)).toBe(-1);
  });
});
