// `callbridge transcode`: round trips through run() with fake streams and
// through the real launcher (node bin/callbridge.js), WAV headers, errors.
import { execFileSync, spawnSync } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CliIO } from '../src/cli/io.js';
import { BLOCK_BYTES, run } from '../src/cli/transcode.js';
import { Resampler, Transcoder, pcm16ToAlaw, pcm16ToUlaw, ulawToPcm16, type PhoneCodec } from '../src/dsp/index.js';
import { prng } from './helpers/prng.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'cb-transcode-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Ran { code: number; stdout: Buffer; stderr: string }

/** Runs the command in-process; stdin arrives as one chunk, or in the chunks given. */
async function cli(args: string[], stdin: Uint8Array | Uint8Array[] = new Uint8Array(0)): Promise<Ran> {
  const out: Buffer[] = [];
  let err = '';
  const io: CliIO = {
    stdin: Readable.from((Array.isArray(stdin) ? stdin : [stdin]).map((c) => Buffer.from(c))),
    stdout: new Writable({ write(chunk, _enc, done) { out.push(Buffer.from(chunk)); done(); } }),
    stderr: new Writable({ write(chunk, _enc, done) { err += String(chunk); done(); } }),
    env: {},
  };
  const code = await run(args, io);
  return { code, stdout: Buffer.concat(out), stderr: err };
}

function tone(n: number, hz: number, rate: number, amp = 16000): Int16Array {
  return Int16Array.from({ length: n }, (_, i) => Math.round(amp * Math.cos((2 * Math.PI * hz * i) / rate + 0.3)));
}

function bytes(x: Int16Array): Buffer {
  return Buffer.from(x.buffer, x.byteOffset, x.byteLength);
}

function int16(b: Uint8Array): Int16Array {
  const copy = new Uint8Array(b.length);
  copy.set(b);
  return new Int16Array(copy.buffer);
}

/** Reads the fields of a canonical WAV header written by the CLI. */
function wavInfo(file: Buffer): { tag: number; channels: number; rate: number; bits: number; fmtSize: number; dataBytes: number; dataAt: number } {
  expect(file.toString('latin1', 0, 4)).toBe('RIFF');
  expect(file.readUInt32LE(4)).toBe(file.length - 8);
  expect(file.toString('latin1', 8, 16)).toBe('WAVEfmt ');
  const fmtSize = file.readUInt32LE(16);
  const dataAt = file.indexOf('data', 36, 'latin1');
  return {
    tag: file.readUInt16LE(20), channels: file.readUInt16LE(22), rate: file.readUInt32LE(24), bits: file.readUInt16LE(34),
    fmtSize, dataBytes: file.readUInt32LE(dataAt + 4), dataAt: dataAt + 8,
  };
}

const speech8k = tone(8000, 1000, 8000); // 1 s

describe('transcode via run()', () => {
  it('pcm8k -> ulaw8k on stdin/stdout equals the G.711 encoder', async () => {
    const r = await cli(['--from', 'pcm8k', '--to', 'ulaw8k'], bytes(speech8k));
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect(Buffer.compare(r.stdout, Buffer.from(pcm16ToUlaw(speech8k)))).toBe(0);
  });

  it('ulaw8k -> pcm24k equals the call Transcoder fed 20 ms frames', async () => {
    const ulaw = pcm16ToUlaw(speech8k);
    const r = await cli(['--from=ulaw8k', '--to=pcm24k', '-', '-'], ulaw);
    expect(r.code).toBe(0);
    const t = Transcoder.open();
    const want = Buffer.concat(Array.from({ length: 50 }, (_, f) => Buffer.from(t.inbound(ulaw.subarray(160 * f, 160 * f + 160)))));
    t.close();
    expect(r.stdout.length).toBe(6 * ulaw.length);
    expect(Buffer.compare(r.stdout, want)).toBe(0);
  });

  it('round trip pcm8k -> pcm24k.wav -> pcm8k returns the signal, 31 samples (3.875 ms) later', async () => {
    const rawIn = join(dir, 'in.raw');
    const wav = join(dir, 'mid.wav');
    const rawOut = join(dir, 'out.raw');
    writeFileSync(rawIn, bytes(speech8k));
    expect((await cli(['--from', 'pcm8k', '--to', 'pcm24k', rawIn, wav])).code).toBe(0);
    const info = wavInfo(readFileSync(wav));
    expect(info).toMatchObject({ tag: 1, channels: 1, rate: 24000, bits: 16, fmtSize: 16, dataBytes: 6 * speech8k.length });
    expect((await cli(['--from', 'pcm24k', '--to', 'pcm8k', wav, rawOut])).code).toBe(0);
    const back = int16(readFileSync(rawOut));
    expect(back.length).toBe(speech8k.length);
    let signal = 0;
    let error = 0;
    for (let n = 200; n < back.length; n++) {
      signal += speech8k[n - 31] ** 2;
      error += (back[n] - speech8k[n - 31]) ** 2;
    }
    expect(10 * Math.log10(signal / error)).toBeGreaterThan(50); // limited by the 0.01 dB passband ripple
  });

  it('writes µ-law and A-law WAVs with format tags 7 and 6, and reads them back', async () => {
    const rawIn = join(dir, 'tone.raw');
    writeFileSync(rawIn, bytes(speech8k));
    for (const [fmt, tag] of [['ulaw8k', 7], ['alaw8k', 6]] as const) {
      const wav = join(dir, `${fmt}.WAV`);
      expect((await cli(['--from', 'pcm8k', '--to', fmt, rawIn, wav])).code).toBe(0);
      const file = readFileSync(wav);
      const info = wavInfo(file);
      expect(info).toMatchObject({ tag, channels: 1, rate: 8000, bits: 8, fmtSize: 18, dataBytes: 8000 });
      expect(file.toString('latin1', 38, 42)).toBe('fact');
      expect(file.readUInt32LE(46)).toBe(8000);
      const r = await cli(['--from', fmt, '--to', 'pcm8k', wav]);
      expect(r.code).toBe(0);
      const decoded = int16(r.stdout);
      expect(decoded.length).toBe(8000);
      for (let i = 0; i < 8000; i++) expect(Math.abs(decoded[i] - speech8k[i])).toBeLessThanOrEqual(512);
    }
    // µ-law via WAV decodes exactly as the codec does
    const r = await cli(['--from', 'ulaw8k', '--to', 'pcm8k', join(dir, 'ulaw8k.WAV')]);
    expect(Array.from(int16(r.stdout))).toEqual(Array.from(ulawToPcm16(pcm16ToUlaw(speech8k))));
  });

  it('accepts a WAV with extra chunks and an odd-sized chunk before the data', async () => {
    const audio = bytes(speech8k.subarray(0, 100));
    const list = Buffer.concat([Buffer.from('LIST'), Buffer.from([3, 0, 0, 0]), Buffer.from('abc'), Buffer.from([0])]);
    const fmt = Buffer.alloc(24);
    fmt.write('fmt ', 0, 'latin1');
    fmt.writeUInt32LE(16, 4);
    fmt.writeUInt16LE(1, 8);
    fmt.writeUInt16LE(1, 10);
    fmt.writeUInt32LE(8000, 12);
    fmt.writeUInt32LE(16000, 16);
    fmt.writeUInt16LE(2, 20);
    fmt.writeUInt16LE(16, 22);
    const data = Buffer.concat([Buffer.from('data'), Buffer.from([200, 0, 0, 0]), audio]);
    const body = Buffer.concat([Buffer.from('WAVE'), fmt, list, data]);
    const head = Buffer.alloc(8);
    head.write('RIFF', 0, 'latin1');
    head.writeUInt32LE(body.length, 4);
    const file = join(dir, 'extra.wav');
    writeFileSync(file, Buffer.concat([head, body]));
    const r = await cli(['--from', 'pcm8k', '--to', 'pcm8k', file]);
    expect(r.code).toBe(0);
    expect(Buffer.compare(r.stdout, audio)).toBe(0);
  });
});

describe('transcode errors: one line on stderr, non-zero exit', () => {
  const wav8k = join(dir, 'err8k.wav');
  beforeAll(async () => {
    writeFileSync(join(dir, 'err.raw'), bytes(speech8k));
    expect((await cli(['--from', 'pcm8k', '--to', 'pcm8k', join(dir, 'err.raw'), wav8k])).code).toBe(0);
  });

  const cases: [string, () => Promise<Ran>, number, RegExp][] = [
    ['unknown format', () => cli(['--from', 'mp3', '--to', 'pcm8k']), 2, /unknown format 'mp3'/],
    ['missing --to', () => cli(['--from', 'pcm8k']), 2, /--from and --to are required/],
    ['unknown option', () => cli(['--from', 'pcm8k', '--to', 'pcm8k', '--fast']), 2, /unknown option '--fast'/],
    ['unreadable file', () => cli(['--from', 'pcm8k', '--to', 'ulaw8k', join(dir, 'missing.raw')]), 1, /cannot read .*missing\.raw: no such file/],
    ['a directory as input', () => cli(['--from', 'pcm8k', '--to', 'ulaw8k', dir]), 1, /cannot read .*: is a directory/],
    ['truncated WAV', async () => {
      const cut = join(dir, 'cut.wav');
      writeFileSync(cut, readFileSync(wav8k).subarray(0, 1000));
      return cli(['--from', 'pcm8k', '--to', 'ulaw8k', cut]);
    }, 1, /truncated WAV: data chunk declares 16000 bytes, 956 present/],
    ['WAV cut inside its header', async () => {
      const cut = join(dir, 'cut2.wav');
      writeFileSync(cut, readFileSync(wav8k).subarray(0, 30));
      return cli(['--from', 'pcm8k', '--to', 'ulaw8k', cut]);
    }, 1, /truncated WAV/],
    ['WAV rate differs from --from', () => cli(['--from', 'pcm24k', '--to', 'pcm8k', wav8k]), 1, /does not match --from pcm24k: 8000 Hz, not 24000 Hz/],
    ['WAV encoding differs from --from', () => cli(['--from', 'ulaw8k', '--to', 'pcm8k', wav8k]), 1, /PCM 16-bit, not µ-law 8-bit/],
    ['stereo WAV', async () => {
      const stereo = Buffer.from(readFileSync(wav8k));
      stereo.writeUInt16LE(2, 22);
      const file = join(dir, 'stereo.wav');
      writeFileSync(file, stereo);
      return cli(['--from', 'pcm8k', '--to', 'ulaw8k', file]);
    }, 1, /2 channels, not mono/],
    ['not a WAV', async () => {
      const file = join(dir, 'fake.wav');
      writeFileSync(file, 'hello world, this is text');
      return cli(['--from', 'pcm8k', '--to', 'ulaw8k', file]);
    }, 1, /not a WAV file/],
    ['raw PCM file ending mid-sample', async () => {
      const file = join(dir, 'odd.raw');
      writeFileSync(file, new Uint8Array(961));
      return cli(['--from', 'pcm24k', '--to', 'ulaw8k', file]);
    }, 1, /pcm24k input ends mid-sample \(961 bytes/],
    ['the output is the input file', async () => {
      const file = join(dir, 'same.raw');
      writeFileSync(file, bytes(speech8k));
      const r = await cli(['--from', 'pcm8k', '--to', 'ulaw8k', file, file]);
      expect(Buffer.compare(readFileSync(file), bytes(speech8k))).toBe(0); // untouched
      return r;
    }, 1, /same\.raw is also the input/],
    ['WAV data chunk ending mid-sample', async () => {
      const odd = Buffer.from(readFileSync(wav8k).subarray(0, 44 + 999));
      odd.writeUInt32LE(999, 40);
      odd.writeUInt32LE(odd.length - 8, 4);
      const file = join(dir, 'odd.wav');
      writeFileSync(file, odd);
      return cli(['--from', 'pcm8k', '--to', 'ulaw8k', file]);
    }, 1, /pcm8k input ends mid-sample \(999 bytes/],
  ];
  for (const [name, go, code, message] of cases) {
    it(name, async () => {
      const r = await go();
      expect(r.code).toBe(code);
      expect(r.stderr).toMatch(message);
      expect(r.stderr.startsWith('callbridge transcode: ')).toBe(true);
      expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
      expect(r.stdout.length).toBe(0);
    });
  }
});

/** A random walk plus a tone: every frequency present, -6 dBFS-ish peaks. */
function noisy(samples: number, seed: number): Int16Array {
  const rand = prng(seed);
  let walk = 0;
  return Int16Array.from({ length: samples }, (_, i) => {
    walk = 0.95 * walk + (rand() - 0.5) * 4000;
    return Math.max(-32768, Math.min(32767, Math.round(walk + 8000 * Math.sin(i / 7))));
  });
}

/** What a call's Transcoder gives for `input` fed 20 ms frames (160 phone samples up, 480 PCM16 samples down). */
function perFrame(input: Uint8Array, phone: PhoneCodec, dir: 'up' | 'down'): Buffer {
  const t = Transcoder.open({ phone });
  const frame = dir === 'up' ? 160 * (phone === 'pcm16' ? 2 : 1) : 960;
  const parts: Buffer[] = [];
  for (let at = 0; at < input.length; at += frame) {
    const chunk = input.subarray(at, at + frame);
    parts.push(Buffer.from(dir === 'up' ? t.inbound(chunk) : t.outbound(chunk)));
  }
  t.close();
  return Buffer.concat(parts);
}

/** Cuts `bytes` into chunks of 1..maxChunk bytes (so samples are split between chunks). */
function randomChunks(bytes: Uint8Array, seed: number, maxChunk: number): Uint8Array[] {
  const rand = prng(seed);
  const chunks: Uint8Array[] = [];
  for (let at = 0; at < bytes.length;) {
    const n = 1 + Math.floor(rand() * maxChunk);
    chunks.push(bytes.subarray(at, at + n));
    at += n;
  }
  return chunks;
}

describe('transcode streams in blocks, with the output of 20 ms frames', () => {
  // Longer than two read blocks and not a multiple of one, so block edges fall mid-frame.
  const samples8k = Math.floor((2.3 * BLOCK_BYTES) / 2);
  const pcm8 = noisy(samples8k, 7);
  const ulaw = pcm16ToUlaw(pcm8);
  const pcm24 = noisy(3 * samples8k + 2, 8); // 2 samples short of a whole 8 kHz sample: dropped, as a call drops them

  const cases: [string, string, string, Uint8Array, () => Uint8Array][] = [
    ['µ-law up', 'ulaw8k', 'pcm24k', ulaw, () => perFrame(ulaw, 'ulaw', 'up')],
    ['PCM16 up', 'pcm8k', 'pcm24k', bytes(pcm8), () => perFrame(bytes(pcm8), 'pcm16', 'up')],
    ['µ-law down', 'pcm24k', 'ulaw8k', bytes(pcm24), () => perFrame(bytes(pcm24), 'ulaw', 'down')],
    ['A-law down', 'pcm24k', 'alaw8k', bytes(pcm24), () => perFrame(bytes(pcm24), 'alaw', 'down')],
    ['PCM16 -> A-law at 8 kHz', 'pcm8k', 'alaw8k', bytes(pcm8), () => pcm16ToAlaw(pcm8)],
  ];
  for (const [name, from, to, input, want] of cases) {
    it(`${name}: a file bigger than a block, and stdin in sample-splitting chunks, give the per-frame bytes`, async () => {
      const expected = Buffer.from(want());
      const file = join(dir, `stream-${from}.raw`);
      writeFileSync(file, input);
      const viaFile = await cli(['--from', from, '--to', to, file]);
      expect([viaFile.code, viaFile.stderr]).toEqual([0, '']);
      expect(viaFile.stdout.length).toBe(expected.length);
      expect(Buffer.compare(viaFile.stdout, expected)).toBe(0);

      const head = input.subarray(0, 64_000); // small chunks are slow to feed: a prefix is enough to split every sample kind
      const viaChunks = await cli(['--from', from, '--to', to], randomChunks(head, 11, 333));
      expect(viaChunks.code).toBe(0);
      const headFile = await cli(['--from', from, '--to', to], head);
      expect(viaChunks.stdout.length).toBeGreaterThan(0);
      expect(Buffer.compare(viaChunks.stdout, headFile.stdout)).toBe(0);
      expect(Buffer.compare(headFile.stdout, expected.subarray(0, headFile.stdout.length))).toBe(0);
    });
  }

  it('raw stdin becomes a WAV file with the exact header, a G.711 data chunk padded to even length', async () => {
    const odd = pcm8.subarray(0, 8001); // 8001 µ-law bytes: an odd data chunk
    const wavOut = join(dir, 'odd-out.wav');
    const r = await cli(['--from', 'pcm8k', '--to', 'ulaw8k', '-', wavOut], randomChunks(bytes(odd), 3, 5000));
    expect([r.code, r.stderr]).toEqual([0, '']);
    const file = readFileSync(wavOut);
    expect(file.length % 2).toBe(0);
    const info = wavInfo(file);
    expect(info).toMatchObject({ tag: 7, rate: 8000, bits: 8, dataBytes: 8001 });
    expect(file.readUInt32LE(46)).toBe(8001); // fact: sample count
    expect(Buffer.compare(file.subarray(info.dataAt, info.dataAt + 8001), Buffer.from(pcm16ToUlaw(odd)))).toBe(0);
    expect(file.length).toBe(info.dataAt + 8002); // pad byte
  });

  // A WAV whose size is not known up front: a named pipe (what `mkfifo x.wav` or a
  // streaming recorder gives). Its checks happen as the data arrives.
  async function viaPipe(name: string, content: Uint8Array, args: string[]): Promise<Ran> {
    const fifo = join(dir, name);
    execFileSync('mkfifo', [fifo]);
    try {
      const writer = new Promise<void>((resolve) => {
        const w = createWriteStream(fifo);
        w.on('error', () => resolve()); // the reader may stop early (EPIPE): what it read is what is checked
        w.end(Buffer.from(content), () => resolve());
      });
      const [r] = await Promise.all([cli([...args, fifo]), writer]);
      return r;
    } finally {
      rmSync(fifo, { force: true });
    }
  }

  const pcmWav = (samples: Int16Array, dataBytes = samples.byteLength): Buffer => {
    const head = Buffer.alloc(44);
    head.write('RIFF', 0, 'latin1');
    head.writeUInt32LE(36 + samples.byteLength, 4);
    head.write('WAVEfmt ', 8, 'latin1');
    head.writeUInt32LE(16, 16);
    head.writeUInt16LE(1, 20);
    head.writeUInt16LE(1, 22);
    head.writeUInt32LE(8000, 24);
    head.writeUInt32LE(16000, 28);
    head.writeUInt16LE(2, 32);
    head.writeUInt16LE(16, 34);
    head.write('data', 36, 'latin1');
    head.writeUInt32LE(dataBytes, 40);
    return Buffer.concat([head, bytes(samples)]);
  };

  it('a WAV whose data chunk size is unknown (0xFFFFFFFF) is read to its end, from a file and from a pipe', async () => {
    const wav = pcmWav(pcm8.subarray(0, 8001), 0xffffffff);
    const file = join(dir, 'unsized.wav');
    writeFileSync(file, wav);
    const want = Buffer.from(pcm16ToUlaw(pcm8.subarray(0, 8001)));
    for (const r of [await cli(['--from', 'pcm8k', '--to', 'ulaw8k', file]), await viaPipe('unsized-pipe.wav', wav, ['--from', 'pcm8k', '--to', 'ulaw8k'])]) {
      expect([r.code, r.stderr]).toEqual([0, '']);
      expect(Buffer.compare(r.stdout, want)).toBe(0);
    }
  });

  it('from a pipe or stdin, a short WAV or a partial last sample is reported after the whole samples were converted', async () => {
    const cut = pcmWav(pcm8.subarray(0, 8001)).subarray(0, 44 + 1001); // 500 samples and half of one
    const r = await viaPipe('cut-pipe.wav', cut, ['--from', 'pcm8k', '--to', 'ulaw8k']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('callbridge transcode: truncated WAV: data chunk declares 16002 bytes, 1001 present\n');
    expect(Buffer.compare(r.stdout, Buffer.from(pcm16ToUlaw(pcm8.subarray(0, 500))))).toBe(0);

    const odd = await cli(['--from', 'pcm24k', '--to', 'ulaw8k'], randomChunks(bytes(pcm24).subarray(0, 961), 5, 100));
    expect(odd.code).toBe(1);
    expect(odd.stderr).toMatch(/^callbridge transcode: pcm24k input ends mid-sample \(961 bytes .*the last 1 not converted\)\n$/);
    expect(Buffer.compare(odd.stdout, perFrame(bytes(pcm24).subarray(0, 960), 'ulaw', 'down'))).toBe(0);
  });
});

/** Int16 `input` at `from` Hz through a Resampler fed 20 ms frames; 8 kHz output encoded as `phone`. */
function resampledPerFrame(input: Int16Array, from: number, to: number, phone: PhoneCodec = 'pcm16'): Buffer {
  const r = Resampler.open({ from, to, phone: to === 8000 ? phone : 'pcm16' });
  const frame = (from * 20) / 1000;
  const parts: Buffer[] = [];
  for (let at = 0; at < input.length; at += frame) {
    const n = Math.min(frame, input.length - at);
    const out = phone === 'pcm16' || to !== 8000 ? new Int16Array(r.maxOutput(n)) : new Uint8Array(r.maxOutput(n));
    const k = r.process(input.subarray(at, at + n), n, out);
    parts.push(Buffer.from(out.buffer, 0, k * out.BYTES_PER_ELEMENT));
  }
  r.close();
  return Buffer.concat(parts);
}

describe('transcode: every rate pair of the audio core', () => {
  const seconds = 1.3;
  const at = (rate: number, seed: number): Int16Array => noisy(Math.round(seconds * rate) + 7, seed);
  const pcm44 = at(44100, 21);
  const pcm22 = at(22050, 22);
  const pcm48 = at(48000, 23);
  const pcm16 = at(16000, 24);
  const pcm8 = at(8000, 25);
  const ulaw = pcm16ToUlaw(pcm8);

  const cases: [string, string, Uint8Array, () => Buffer, number][] = [
    ['pcm44k', 'ulaw8k', bytes(pcm44), () => resampledPerFrame(pcm44, 44100, 8000, 'ulaw'), 8000],
    ['pcm22k', 'alaw8k', bytes(pcm22), () => resampledPerFrame(pcm22, 22050, 8000, 'alaw'), 8000],
    ['pcm48k', 'pcm8k', bytes(pcm48), () => resampledPerFrame(pcm48, 48000, 8000), 8000],
    ['pcm8k', 'pcm48k', bytes(pcm8), () => resampledPerFrame(pcm8, 8000, 48000), 48000],
    ['pcm16k', 'ulaw8k', bytes(pcm16), () => resampledPerFrame(pcm16, 16000, 8000, 'ulaw'), 8000],
    ['ulaw8k', 'pcm16k', ulaw, () => resampledPerFrame(ulawToPcm16(ulaw), 8000, 16000), 16000],
    ['pcm44k', 'pcm16k', bytes(pcm44), () => {
      const mid = resampledPerFrame(pcm44, 44100, 8000);
      return resampledPerFrame(int16(mid), 8000, 16000);
    }, 16000],
  ];
  for (const [from, to, input, want, rate] of cases) {
    it(`--from ${from} --to ${to}: the per-frame output of the core, raw and as a WAV of the right length`, async () => {
      const expected = want();
      expect(expected.length).toBeGreaterThan(0);
      const raw = await cli(['--from', from, '--to', to], input);
      expect([raw.code, raw.stderr]).toEqual([0, '']);
      expect(raw.stdout.length).toBe(expected.length);
      expect(Buffer.compare(raw.stdout, expected)).toBe(0);
      // a file input announces its length: the WAV header is written for it, and must match
      const inFile = join(dir, `pair-${from}-${to}.raw`);
      const wav = join(dir, `pair-${from}-${to}.wav`);
      writeFileSync(inFile, input);
      const r = await cli(['--from', from, '--to', to, inFile, wav]);
      expect([r.code, r.stderr]).toEqual([0, '']);
      const file = readFileSync(wav);
      const info = wavInfo(file);
      expect(info.rate).toBe(rate);
      expect(info.dataBytes).toBe(expected.length);
      expect(Buffer.compare(file.subarray(info.dataAt, info.dataAt + expected.length), expected)).toBe(0);
    });
  }

  it('22.05 and 44.1 kHz are input rates only', async () => {
    const r = await cli(['--from', 'pcm8k', '--to', 'pcm44k'], bytes(pcm8));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/pcm44k: 44\.1 kHz is an input rate only/);
    expect(r.stdout.length).toBe(0);
  });
});

describe('transcode through the launcher (node bin/callbridge.js)', () => {
  beforeAll(() => {
    // The launcher runs compiled code: build it if it is missing or older than the sources.
    const built = join(ROOT, 'build/src/cli/transcode.js');
    const newest = Math.max(...['src/cli/transcode.ts', 'src/cli/main.ts', 'src/cli/io.ts', 'src/dsp/index.ts', 'src/dsp/wasm.ts'].map((f) => statSync(join(ROOT, f)).mtimeMs));
    let stale = true;
    try {
      stale = statSync(built).mtimeMs < newest;
    } catch { /* not built */ }
    if (stale) spawnSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: ROOT, stdio: 'ignore' }); // others' files may not compile yet; tsc still emits ours
    try {
      statSync(join(ROOT, 'build/dsp.wasm'));
    } catch {
      execFileSync('npm', ['run', 'build:wasm'], { cwd: ROOT, stdio: 'ignore' });
    }
  }, 120_000);

  it('round trips µ-law WAV -> pcm24k WAV -> µ-law on stdout, matching run()', async () => {
    const ulawWav = join(dir, 'launch-in.wav');
    const pcmWav = join(dir, 'launch-mid.wav');
    writeFileSync(join(dir, 'launch.raw'), bytes(speech8k));
    expect((await cli(['--from', 'pcm8k', '--to', 'ulaw8k', join(dir, 'launch.raw'), ulawWav])).code).toBe(0);

    const node = (args: string[]) => spawnSync(process.execPath, [join(ROOT, 'bin/callbridge.js'), 'transcode', ...args], { cwd: ROOT });
    const up = node(['--from', 'ulaw8k', '--to', 'pcm24k', ulawWav, pcmWav]);
    expect([up.status, up.stderr.toString()]).toEqual([0, '']);
    const down = node(['--from', 'pcm24k', '--to', 'ulaw8k', pcmWav]);
    expect(down.status).toBe(0);

    const viaRun = await cli(['--from', 'pcm24k', '--to', 'ulaw8k', pcmWav]);
    expect(down.stdout.length).toBe(8000);
    expect(Buffer.compare(down.stdout, viaRun.stdout)).toBe(0);
    const midFile = readFileSync(pcmWav);
    expect(wavInfo(midFile)).toMatchObject({ rate: 24000, dataBytes: 48000 });

    const bad = node(['--from', 'ulaw8k', '--to', 'nope', ulawWav]);
    expect(bad.status).toBe(2);
    expect(bad.stderr.toString()).toMatch(/^callbridge transcode: unknown format 'nope'/);
  });
});
