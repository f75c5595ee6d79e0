/**
 * The one WAV reader (src/dsp/wav.ts): the in-memory driver (prompts) and
 * the streaming driver (the transcode CLI) walk the same RIFF chunks to the
 * same answers and error texts, however the stream is cut.
 */
import { describe, expect, it } from 'vitest';
import { readWav, readWavHeader, wavFileHeader, wavFormatProblems, type WavSource } from '../src/dsp/wav.js';

function chunk(id: string, body: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.write(id, 0, 'latin1');
  head.writeUInt32LE(body.length, 4);
  return Buffer.concat([head, body, Buffer.alloc(body.length & 1)]);
}

function fmtBody(tag: number, bits: number, rateHz = 8000, channels = 1, extensible = false): Buffer {
  const b = Buffer.alloc(extensible ? 40 : 16);
  b.writeUInt16LE(extensible ? 0xfffe : tag, 0);
  b.writeUInt16LE(channels, 2);
  b.writeUInt32LE(rateHz, 4);
  b.writeUInt16LE(bits, 14);
  if (extensible) b.writeUInt16LE(tag, 24);
  return b;
}

const riff = (...chunks: Buffer[]): Buffer => {
  const body = Buffer.concat([Buffer.from('WAVE'), ...chunks]);
  const head = Buffer.alloc(8);
  head.write('RIFF', 0, 'latin1');
  head.writeUInt32LE(body.length, 4);
  return Buffer.concat([head, body]);
};

/** A stream over `bytes` handing out at most `piece` bytes per read. */
function source(bytes: Uint8Array, piece: number): WavSource & { position: number } {
  const s = {
    position: 0,
    async take(n: number) {
      const parts: Uint8Array[] = [];
      let got = 0;
      while (got < n && s.position < bytes.length) {
        const k = Math.min(piece, n - got, bytes.length - s.position);
        parts.push(bytes.subarray(s.position, s.position + k));
        s.position += k;
        got += k;
      }
      return Buffer.concat(parts);
    },
    async skip(n: number) {
      const k = Math.min(n, bytes.length - s.position);
      s.position += k;
      return k;
    },
  };
  return s;
}

const audio = Buffer.from([1, 2, 3, 4, 5, 6]);
const withDataSize = (b: Buffer, size: number): Buffer => {
  const out = Buffer.from(b);
  out.writeUInt32LE(size >>> 0, out.indexOf('data', 12, 'latin1') + 4);
  return out;
};

const CASES: [string, Buffer][] = [
  ['plain µ-law', riff(chunk('fmt ', fmtBody(7, 8)), chunk('data', audio))],
  ['extensible PCM, a LIST chunk of odd length first', riff(chunk('LIST', Buffer.alloc(5, 9)), chunk('fmt ', fmtBody(1, 16, 8000, 1, true)), chunk('data', audio))],
  ['data runs to the end (0xFFFFFFFF)', withDataSize(riff(chunk('fmt ', fmtBody(7, 8)), chunk('data', audio)), 0xffffffff)],
  ['not RIFF', Buffer.from('RIFX\x04\x00\x00\x00WAVE')],
  ['no fmt chunk', Buffer.from('RIFF\x04\x00\x00\x00WAVE')],
  ['no data chunk', riff(chunk('fmt ', fmtBody(7, 8)))],
  ['short fmt chunk', riff(chunk('fmt ', Buffer.alloc(12)))],
  ['data before fmt', riff(chunk('data', audio), chunk('fmt ', fmtBody(7, 8)))],
  ['a skipped chunk longer than the file', riff(chunk('fmt ', fmtBody(7, 8))).subarray(0, 40)],
];

describe('dsp/wav', () => {
  it('reads the header the same way from memory and from a stream cut anywhere', async () => {
    for (const [name, bytes] of CASES) {
      const whole = readWav(bytes);
      for (const piece of [1, 3, 7, 4096]) {
        const s = source(bytes, piece);
        const header = await readWavHeader(s);
        if (!whole.ok) {
          expect(header, `${name} / ${piece}`).toEqual(whole);
          continue;
        }
        expect(header.ok && header.fmt, `${name} / ${piece}`).toEqual(whole.fmt);
        // The stream stops at the first byte of audio.
        expect(bytes.subarray(s.position, s.position + whole.data.length)).toEqual(whole.data);
      }
    }
    const extensible = readWav(CASES[1]![1]);
    expect(extensible.ok && extensible.fmt).toEqual({ tag: 1, channels: 1, rateHz: 8000, bits: 16 });
    expect(readWav(CASES[2]![1])).toMatchObject({ ok: true, data: audio });
    expect(readWav(CASES[3]![1])).toEqual({ ok: false, error: 'not a WAV file (no RIFF/WAVE header)' });
    expect(readWav(CASES[5]![1])).toEqual({ ok: false, error: 'truncated WAV: no data chunk' });
    expect(readWav(CASES[7]![1])).toEqual({ ok: false, error: 'bad WAV: data chunk before fmt chunk' });
  });

  it('checks the data is all there in memory; refuses a long fmt chunk only when asked to', async () => {
    const short = withDataSize(riff(chunk('fmt ', fmtBody(7, 8)), chunk('data', audio)), 400);
    expect(readWav(short)).toEqual({ ok: false, error: 'truncated WAV: data chunk declares 400 bytes, 6 present' });
    const big = riff(chunk('fmt ', Buffer.concat([fmtBody(7, 8), Buffer.alloc(2000)])), chunk('data', audio));
    expect(readWav(big).ok).toBe(true);
    expect(await readWavHeader(source(big, 64), { maxFmtBytes: 1024 })).toEqual({ ok: false, error: 'bad WAV: fmt chunk of 2016 bytes' });
  });

  it('names each format problem', () => {
    const want = { encodings: [{ tag: 7, bits: 8 }, { tag: 1, bits: 16 }], rateHz: 8000 };
    expect(wavFormatProblems({ tag: 7, bits: 8, rateHz: 8000, channels: 1 }, want)).toEqual([]);
    expect(wavFormatProblems({ tag: 3, bits: 32, rateHz: 44100, channels: 2 }, want)).toEqual([
      'float 32-bit, not µ-law 8-bit or PCM 16-bit',
      '44100 Hz, not 8000 Hz',
      '2 channels, not mono',
    ]);
    expect(wavFormatProblems({ tag: 9, bits: 8, rateHz: 8000, channels: 1 }, { encodings: [{ tag: 6, bits: 8 }], rateHz: 8000 })).toEqual(['format tag 9 8-bit, not A-law 8-bit']);
  });

  it('a header it writes reads back (µ-law with its fact chunk, and PCM)', () => {
    for (const format of [{ wavTag: 7, rateHz: 8000, bytesPerSample: 1 as const }, { wavTag: 1, rateHz: 24000, bytesPerSample: 2 as const }]) {
      const file = Buffer.concat([wavFileHeader(format, audio.length), audio]);
      const r = readWav(file);
      expect(r).toEqual({ ok: true, fmt: { tag: format.wavTag, channels: 1, rateHz: format.rateHz, bits: format.bytesPerSample * 8 }, data: audio });
    }
  });
});
