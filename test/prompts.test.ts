/**
 * Prompt assets and their loader: the committed prompts are real speech in
 * 8 kHz µ-law; WAV and raw files are read or refused with a clear error.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MAX_PROMPT_MS, defaultPromptPath, loadPrompt, parsePrompt, type PromptName } from '../src/call/prompts.js';
import { ulawToPcm16 } from '../src/dsp/index.js';

const dir = mkdtempSync(join(tmpdir(), 'prompts-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function dbfs(pcm: Int16Array): number {
  let sum = 0;
  for (const s of pcm) sum += s * s;
  return 10 * Math.log10(sum / Math.max(1, pcm.length) / 32768 ** 2);
}

function peakDbfs(pcm: Int16Array): number {
  let peak = 0;
  for (const s of pcm) peak = Math.max(peak, Math.abs(s));
  return 20 * Math.log10(peak / 32768);
}

/** A WAV file: fmt chunk (optionally WAVE_FORMAT_EXTENSIBLE) then data. */
function wavFile(o: { tag: number; rateHz?: number; channels?: number; bits: number; data: Uint8Array; extensible?: boolean; declaredData?: number }): Buffer {
  const rate = o.rateHz ?? 8000;
  const ch = o.channels ?? 1;
  const fmtSize = o.extensible ? 40 : 16;
  const fmt = Buffer.alloc(8 + fmtSize);
  fmt.write('fmt ', 0, 'ascii');
  fmt.writeUInt32LE(fmtSize, 4);
  fmt.writeUInt16LE(o.extensible ? 0xfffe : o.tag, 8);
  fmt.writeUInt16LE(ch, 10);
  fmt.writeUInt32LE(rate, 12);
  fmt.writeUInt32LE((rate * ch * o.bits) / 8, 16);
  fmt.writeUInt16LE((ch * o.bits) / 8, 20);
  fmt.writeUInt16LE(o.bits, 22);
  if (o.extensible) {
    fmt.writeUInt16LE(22, 24);
    fmt.writeUInt16LE(o.bits, 26);
    fmt.writeUInt32LE(4, 28);
    fmt.writeUInt16LE(o.tag, 32); // sub-format GUID starts with the tag
  }
  const data = Buffer.alloc(8);
  data.write('data', 0, 'ascii');
  data.writeUInt32LE(o.declaredData ?? o.data.length, 4);
  const body = Buffer.concat([Buffer.from('WAVE'), fmt, data, Buffer.from(o.data)]);
  const riff = Buffer.alloc(8);
  riff.write('RIFF', 0, 'ascii');
  riff.writeUInt32LE(body.length, 4);
  return Buffer.concat([riff, body]);
}

function committed(name: PromptName) {
  const r = loadPrompt(defaultPromptPath(name));
  if (!r.ok) throw new Error(r.error);
  return r.prompt;
}

describe('committed prompts (assets/prompts, made by scripts/make-prompts.sh)', () => {
  const texts: Record<PromptName, string> = {
    hold: 'One moment, please.',
    repeat: "Sorry, I didn't catch that. Could you say it again?",
    apology: "I'm sorry, we're having technical difficulties. Please call again later. Goodbye.",
    goodbye: 'We need to end this call now. Goodbye.',
  };

  for (const name of ['hold', 'repeat', 'apology', 'goodbye'] as const) {
    it(`${name}: 8 kHz µ-law speech, loud enough, starting at once`, () => {
      const p = committed(name);
      expect(p.durationMs).toBe(p.ulaw.length / 8);
      const pcm = ulawToPcm16(p.ulaw);
      // Peak normalised to -6 dBFS by the script (µ-law quantisation moves it a little).
      expect(peakDbfs(pcm)).toBeGreaterThan(-7.5);
      expect(peakDbfs(pcm)).toBeLessThan(-5);
      // Speech, not silence or noise: the loudest 100 ms windows are far above the quietest.
      const win = 800;
      const levels: number[] = [];
      for (let off = 0; off + win <= pcm.length; off += win) levels.push(dbfs(pcm.subarray(off, off + win)));
      levels.sort((a, b) => a - b);
      expect(levels[levels.length - 1]!).toBeGreaterThan(-30);
      expect(levels[levels.length - 1]! - levels[0]!).toBeGreaterThan(30);
      // The synthesiser's leading silence is trimmed: sound within the first 100 ms.
      expect(dbfs(pcm.subarray(0, 800))).toBeGreaterThan(-50);
      // About as long as the words take (espeak-ng at 150 words/min ≈ 65–90 ms per character).
      const chars = texts[name].length;
      expect(p.durationMs).toBeGreaterThan(chars * 45);
      expect(p.durationMs).toBeLessThan(chars * 110 + 500);
    });
  }
});

describe('parsePrompt and loadPrompt', () => {
  const hold = committed('hold').ulaw;

  it('reads raw µ-law by extension and WAV by header, whatever the name', () => {
    for (const ext of ['.ulaw', '.mulaw', '.ul', '.pcmu', '.ULAW']) {
      const r = parsePrompt(hold, `x${ext}`);
      expect(r.ok && Buffer.from(r.prompt.ulaw).equals(Buffer.from(hold))).toBe(true);
    }
    for (const extensible of [false, true]) {
      const r = parsePrompt(wavFile({ tag: 7, bits: 8, data: hold, extensible }), 'hold.bin');
      expect(r.ok && Buffer.from(r.prompt.ulaw).equals(Buffer.from(hold))).toBe(true);
    }
  });

  it('converts an 8 kHz 16-bit PCM WAV to µ-law', () => {
    const pcm = ulawToPcm16(hold);
    const r = parsePrompt(wavFile({ tag: 1, bits: 16, data: new Uint8Array(pcm.buffer, pcm.byteOffset, pcm.byteLength) }), 'hold.wav');
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.prompt.durationMs).toBe(hold.length / 8);
    expect(Array.from(ulawToPcm16(r.prompt.ulaw))).toEqual(Array.from(pcm));
  });

  it('refuses what a phone line cannot play, saying what is wrong and how to fix it', () => {
    const cases: [Buffer | Uint8Array, string, RegExp][] = [
      [wavFile({ tag: 1, bits: 16, rateHz: 16000, data: new Uint8Array(320) }), 'a.wav', /16000 Hz, not 8000 Hz.*sox/],
      [wavFile({ tag: 7, bits: 8, channels: 2, data: new Uint8Array(320) }), 'a.wav', /2 channels, not mono/],
      [wavFile({ tag: 6, bits: 8, data: new Uint8Array(320) }), 'a.wav', /A-law 8-bit/],
      [wavFile({ tag: 3, bits: 32, data: new Uint8Array(320) }), 'a.wav', /float 32-bit/],
      [wavFile({ tag: 7, bits: 8, data: new Uint8Array(100), declaredData: 400 }), 'a.wav', /truncated WAV: data chunk declares 400 bytes, 100 present/],
      [wavFile({ tag: 7, bits: 8, data: new Uint8Array(0) }), 'a.wav', /no audio/],
      [wavFile({ tag: 1, bits: 16, data: new Uint8Array(3) }), 'a.wav', /mid-sample/],
      [Buffer.from('RIFF\x04\x00\x00\x00WAVE'), 'a.wav', /no fmt chunk/],
      [Buffer.from('RIFF\x04\x00\x00\x00AVI LIST'), 'a.wav', /not WAVE/],
      [new Uint8Array(0), 'a.ulaw', /no audio \(empty\)/],
      [Buffer.concat([Buffer.from('ID3\x03'), Buffer.alloc(100)]), 'a.ulaw', /holds MP3/],
      [Buffer.concat([Buffer.from('OggS'), Buffer.alloc(100)]), 'a.ulaw', /holds an Ogg stream/],
      [hold, 'hold.mp3', /unknown prompt type '\.mp3'/],
      [hold, 'hold', /unknown prompt type 'hold'/],
      [new Uint8Array(MAX_PROMPT_MS * 8 + 8), 'long.ulaw', /at most 60000 ms/],
    ];
    for (const [bytes, name, error] of cases) {
      const r = parsePrompt(bytes, name);
      expect(r.ok, name).toBe(false);
      if (!r.ok) expect(r.error).toMatch(error);
    }
  });

  it('loadPrompt reads a file, and names the file in every error', () => {
    const good = join(dir, 'hold.wav');
    writeFileSync(good, wavFile({ tag: 7, bits: 8, data: hold }));
    const r = loadPrompt(good);
    expect(r.ok && r.prompt.ulaw.length).toBe(hold.length);
    const missing = loadPrompt(join(dir, 'nope.ulaw'));
    expect(missing).toEqual({ ok: false, error: `prompt ${join(dir, 'nope.ulaw')}: cannot read (ENOENT)` });
    const bad = join(dir, 'bad.wav');
    writeFileSync(bad, wavFile({ tag: 1, bits: 16, rateHz: 44100, channels: 2, data: new Uint8Array(400) }));
    const e = loadPrompt(bad);
    expect(e.ok).toBe(false);
    if (!e.ok) expect(e.error).toMatch(new RegExp(`^prompt ${bad}: WAV is .*44100 Hz.*2 channels`));
    expect(loadPrompt(dir).ok).toBe(false); // a directory: EISDIR, not a throw
  });
});
