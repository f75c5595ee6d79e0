// The Transcoder contract: streaming with any chunking, remainders and odd
// bytes, slot lifecycle and limits, isolation between calls, buffer reuse.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { prng } from './helpers/prng.js';
import { afterEach, describe, expect, it } from 'vitest';
import { Dsp, DspError, Transcoder, loadDsp, pcm16ToAlaw, pcm16ToUlaw } from '../src/dsp/index.js';
import type { DspExports } from '../src/dsp/wasm.js';

const dsp = loadDsp();
const opened: Transcoder[] = [];
function openT(phone?: 'ulaw' | 'alaw' | 'pcm16'): Transcoder {
  const t = Transcoder.open(phone ? { phone } : {});
  opened.push(t);
  return t;
}
afterEach(() => {
  opened.splice(0).forEach((t) => t.close());
  expect(dsp.exports.openSlots()).toBe(0);
});


function speechLike(samples: number, seed: number): Int16Array {
  const rand = prng(seed);
  let walk = 0;
  return Int16Array.from({ length: samples }, (_, i) => {
    walk = 0.95 * walk + (rand() - 0.5) * 4000;
    return Math.max(-32768, Math.min(32767, Math.round(walk + 8000 * Math.sin(i / 7))));
  });
}

function pcmBytes(x: Int16Array): Uint8Array {
  return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Feeds `input` in chunks of random size (0..maxChunk bytes) and concatenates copies of the outputs. */
function chunked(input: Uint8Array, step: (chunk: Uint8Array) => Uint8Array, seed: number, maxChunk: number): Uint8Array {
  const rand = prng(seed);
  const parts: Uint8Array[] = [];
  for (let at = 0; at < input.length;) {
    const n = Math.min(input.length - at, Math.floor(rand() * (maxChunk + 1)));
    parts.push(step(input.subarray(at, at + n)).slice());
    at += n;
  }
  return concat(parts);
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.length), Buffer.from(b.buffer, b.byteOffset, b.length)) === 0;
}

const ulawStream = pcm16ToUlaw(speechLike(40_000, 11)); // 5 s of µ-law
const pcm24Stream = pcmBytes(speechLike(120_000, 12)); // 5 s of PCM16LE at 24 kHz

describe('Transcoder streaming', () => {
  it('inbound: 6 bytes out per µ-law byte, identical for any chunking', () => {
    const whole = openT().inbound(ulawStream).slice();
    expect(whole.length).toBe(6 * ulawStream.length);
    expect(whole.some((b) => b !== 0)).toBe(true);
    for (const [seed, maxChunk] of [[1, 7], [2, 333], [3, 9000]]) {
      const t = openT();
      expect(equalBytes(chunked(ulawStream, (c) => t.inbound(c), seed, maxChunk), whole)).toBe(true);
    }
    // and in 20 ms frames, as a call does
    const t = openT();
    const frames: Uint8Array[] = [];
    for (let at = 0; at < ulawStream.length; at += 160) frames.push(t.inbound(ulawStream.subarray(at, at + 160)).slice());
    expect(equalBytes(concat(frames), whole)).toBe(true);
  });

  it('outbound: identical for any chunking, including odd byte counts and sample counts not a multiple of 3', () => {
    const whole = openT().outbound(pcm24Stream).slice();
    expect(whole.length).toBe(pcm24Stream.length / 6);
    for (const [seed, maxChunk] of [[5, 5], [6, 101], [7, 30001]]) {
      const t = openT();
      expect(equalBytes(chunked(pcm24Stream, (c) => t.outbound(c), seed, maxChunk), whole)).toBe(true);
    }
  });

  it('outbound carries remainders: never drops or duplicates a sample', () => {
    const t = openT('pcm16');
    const reference = openT('pcm16').outbound(pcm24Stream.subarray(0, 96)).slice(); // 48 samples -> 16
    const sizes = [1, 1, 1, 2, 3, 5, 7, 0, 11, 13, 17, 19, 16]; // 96 bytes in total
    // 8 kHz samples out per call = Δ floor(floor(bytes so far / 2) / 3)
    const lengths = [0, 0, 0, 0, 1, 1, 1, 0, 2, 2, 3, 3, 3];
    const parts: Uint8Array[] = [];
    let at = 0;
    sizes.forEach((n, i) => {
      const out = t.outbound(pcm24Stream.subarray(at, at + n));
      expect([i, out.length / 2]).toEqual([i, lengths[i]]);
      parts.push(out.slice());
      at += n;
    });
    expect(equalBytes(concat(parts), reference)).toBe(true);
  });

  it('pcm16 phone side carries odd inbound bytes too', () => {
    const pcm8 = pcmBytes(speechLike(1000, 13));
    const whole = openT('pcm16').inbound(pcm8).slice();
    expect(whole.length).toBe(3 * pcm8.length);
    const t = openT('pcm16');
    expect(equalBytes(chunked(pcm8, (c) => t.inbound(c), 8, 9), whole)).toBe(true);
  });

  it('A-law phone side matches µ-law on the same signal to within G.711 quantisation', () => {
    const pcm = speechLike(8000, 14);
    const viaU = new Int16Array(openT('ulaw').inbound(pcm16ToUlaw(pcm)).slice().buffer);
    const viaA = new Int16Array(openT('alaw').inbound(pcm16ToAlaw(pcm)).slice().buffer);
    let err = 0;
    for (let i = 0; i < viaU.length; i++) err = Math.max(err, Math.abs(viaU[i] - viaA[i]));
    expect(err).toBeGreaterThan(0);
    expect(err).toBeLessThan(2000);
  });

  it('resetOutbound forgets history and carry: output then equals a fresh transcoder', () => {
    const t = openT();
    t.outbound(pcm24Stream.subarray(0, 1001)); // leaves an odd byte and a pending sample
    t.resetOutbound();
    const after = t.outbound(pcm24Stream.subarray(2000, 2960)).slice();
    expect(equalBytes(after, openT().outbound(pcm24Stream.subarray(2000, 2960)))).toBe(true);
    // the inbound direction is untouched by it
    const u = openT();
    u.inbound(ulawStream.subarray(0, 160));
    t.inbound(ulawStream.subarray(0, 160));
    t.resetOutbound();
    expect(equalBytes(t.inbound(ulawStream.subarray(160, 320)).slice(), u.inbound(ulawStream.subarray(160, 320)))).toBe(true);
  });

  it('reuses its output buffers: the steady state allocates no new buffers or views', () => {
    const t = openT();
    const frame = ulawStream.subarray(0, 160);
    const pcmFrame = pcm24Stream.subarray(0, 960);
    const a = t.inbound(frame);
    const b = t.outbound(pcmFrame);
    for (let i = 0; i < 100; i++) {
      expect(t.inbound(frame)).toBe(a);
      expect(t.outbound(pcmFrame)).toBe(b);
    }
  });

  it('reads Node Buffers that sit at an offset inside a shared pool', () => {
    const pooled = Buffer.from(ulawStream.subarray(0, 800)); // small Buffers share a pool: byteOffset != 0
    const slice = pooled.subarray(3, 643);
    expect(equalBytes(openT().inbound(slice).slice(), openT().inbound(ulawStream.subarray(3, 643)))).toBe(true);
  });
});

describe('Transcoder lifecycle and isolation', () => {
  it('opening and closing 10,000 transcoders reuses slots and leaves memory flat', () => {
    const wasmBytes = dsp.exports.memory.buffer.byteLength;
    const warm = (): void => {
      for (let i = 0; i < 1000; i++) {
        const t = Transcoder.open();
        t.inbound(ulawStream.subarray(0, 160));
        t.outbound(pcm24Stream.subarray(0, 960));
        t.close();
      }
    };
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const used = (): number => {
      gc();
      gc();
      const m = process.memoryUsage();
      return m.heapUsed + m.arrayBuffers;
    };
    warm();
    const heapBefore = used();
    const before = dsp.exports.openSlots();
    for (let i = 0; i < 10_000; i++) {
      const t = Transcoder.open();
      t.inbound(ulawStream.subarray(0, 160));
      t.close();
    }
    expect(dsp.exports.openSlots()).toBe(before);
    expect(dsp.exports.memory.buffer.byteLength).toBe(wasmBytes);
    // 10,000 retained transcoders would hold ~45 MB of output buffers
    expect(used() - heapBefore).toBeLessThan(2 * 1024 * 1024);
  });

  it(`throws DspError('no_slots') when all ${dsp.maxSlots} slots are open, and recovers on close`, () => {
    const first = Transcoder.open();
    const fresh = first.inbound(ulawStream.subarray(0, 160)).slice();
    first.close();
    const all: Transcoder[] = [];
    try {
      for (let i = 0; i < dsp.maxSlots; i++) all.push(Transcoder.open());
      let caught: unknown;
      try {
        Transcoder.open();
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(DspError);
      expect((caught as DspError).code).toBe('no_slots');
      all.pop()!.close();
      all[0].inbound(ulawStream.subarray(5000, 6000)); // leave history in other slots
      const again = Transcoder.open();
      // a reused slot starts from silence, not the previous call's history
      expect(equalBytes(again.inbound(ulawStream.subarray(0, 160)), fresh)).toBe(true);
      again.close();
    } finally {
      all.forEach((t) => t.close());
    }
  });

  it('close is idempotent; any later use throws DspError closed', () => {
    const t = Transcoder.open();
    t.close();
    t.close();
    expect(t.closed).toBe(true);
    for (const use of [() => t.inbound(new Uint8Array(160)), () => t.outbound(new Uint8Array(960)), () => t.resetOutbound()]) {
      expect(use).toThrowError(expect.objectContaining({ code: 'closed' }));
    }
  });

  it('bad input gets a clear error and corrupts nothing, neither its own call nor another', () => {
    const solo = openT();
    const soloOut = [solo.inbound(ulawStream.subarray(0, 160)).slice(), solo.outbound(pcm24Stream.subarray(0, 961)).slice()];
    const soloNext = [solo.inbound(ulawStream.subarray(160, 320)).slice(), solo.outbound(pcm24Stream.subarray(961, 1921)).slice()];

    const victim = openT();
    const attacker = openT();
    const bad: unknown[] = [null, undefined, 'x', 42, [1, 2, 3], new Int16Array(10), { length: 5 }];
    const out1 = [victim.inbound(ulawStream.subarray(0, 160)).slice()];
    for (const b of bad) {
      expect(() => attacker.inbound(b as Uint8Array)).toThrowError(expect.objectContaining({ code: 'bad_input' }));
      expect(() => attacker.outbound(b as Uint8Array)).toThrowError(expect.objectContaining({ code: 'bad_input' }));
      expect(() => victim.outbound(b as Uint8Array)).toThrowError(/Uint8Array/);
    }
    attacker.outbound(pcm24Stream.subarray(0, 99_999)); // huge odd input on the other call
    attacker.inbound(new Uint8Array(50_000).fill(0));
    out1.push(victim.outbound(pcm24Stream.subarray(0, 961)).slice());
    attacker.close();
    const out2 = [victim.inbound(ulawStream.subarray(160, 320)).slice(), victim.outbound(pcm24Stream.subarray(961, 1921)).slice()];
    expect(out1.every((o, i) => equalBytes(o, soloOut[i]))).toBe(true);
    expect(out2.every((o, i) => equalBytes(o, soloNext[i]))).toBe(true);
  });

  it('rejects an unknown phone codec', () => {
    for (const phone of ['gsm', 'toString']) {
      expect(() => Transcoder.open({ phone: phone as 'ulaw' })).toThrowError(expect.objectContaining({ code: 'bad_input' }));
    }
  });

  it('the wasm side refuses bad slots and lengths with status codes', () => {
    const x = dsp.exports;
    expect(x.up(-1, 10, 1)).toBe(-2);
    expect(x.up(dsp.maxSlots, 10, 1)).toBe(-2);
    expect(x.down(5, 10, 1)).toBe(-2); // not open
    const slot = x.open();
    expect(slot).toBeGreaterThanOrEqual(0);
    expect(x.up(slot, dsp.maxUpIn + 1, 1)).toBe(-3);
    expect(x.down(slot, -1, 1)).toBe(-3);
    expect(x.up(slot, 1, 9)).toBe(-4);
    expect(x.close(slot)).toBe(0);
    expect(x.close(slot)).toBe(-2);
  });
});

describe('passthrough and memory views', () => {
  it('a passthrough transcoder copies bytes both ways and takes no slot', () => {
    const before = dsp.exports.openSlots();
    const t = Transcoder.open({ passthrough: true });
    expect(dsp.exports.openSlots()).toBe(before);
    const frame = ulawStream.subarray(0, 160);
    const out = t.inbound(frame);
    expect(equalBytes(out, frame)).toBe(true);
    expect(out.buffer).not.toBe(frame.buffer);
    expect(equalBytes(t.outbound(ulawStream.subarray(7, 19)), ulawStream.subarray(7, 19))).toBe(true);
    t.close();
    expect(() => t.inbound(frame)).toThrowError(expect.objectContaining({ code: 'closed' }));
  });

  it('re-makes its typed-array views when wasm memory grows', () => {
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 2 });
    const fake = {
      memory, ioIn: () => 0, ioOut: () => 1024, ioBytes: () => 512, maxSlots: () => 1, maxUpIn: () => 1, maxDownIn: () => 1, maxCodecIn: () => 1,
    } as unknown as DspExports;
    const d = new Dsp(fake);
    const before = d.u8;
    const out = d.outView(4);
    expect(before.length).toBe(65536);
    memory.grow(1); // detaches the old ArrayBuffer
    expect(before.length).toBe(0);
    expect(d.u8.length).toBe(131072);
    expect(d.i16.length).toBe(65536);
    d.u8[1024] = 7;
    expect(d.outView(4) === out).toBe(false);
    expect(d.outView(4)[0]).toBe(7);
  });
});
