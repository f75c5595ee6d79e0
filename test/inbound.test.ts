/**
 * Caller audio on its way to the model (src/call/inbound.ts): per-frame
 * appends by default, capacity-mode batching with speech onset and end of
 * turn going out frame by frame, audio held until the model is attached,
 * and batched transcode output identical to per-frame output.
 */
import { describe, expect, it } from 'vitest';
import { Inbound, MAX_EARLY_BYTES, VOICE_DBFS } from '../src/call/inbound.js';
import { ulawMeanSquare } from '../src/dsp/format.js';
import { Transcoder } from '../src/dsp/index.js';
import { pcm16ToUlaw } from '../src/dsp/index.js';

const SILENCE = Buffer.alloc(160, 0xff).toString('base64'); // µ-law digital silence
function voicedFrame(k = 0): string {
  const pcm = new Int16Array(160);
  for (let i = 0; i < 160; i++) pcm[i] = Math.round(8000 * Math.sin((2 * Math.PI * 440 * (i + 160 * k)) / 8000));
  return Buffer.from(pcm16ToUlaw(pcm)).toString('base64');
}

function harness(batchMs: number, transcode = false) {
  const appends: string[] = [];
  const t = transcode ? Transcoder.open() : undefined;
  const inb = new Inbound({ transcoder: t, batchMs, vadSilenceMs: 500 });
  inb.attach((b64) => appends.push(b64));
  const frames = (b64: string) => appends.map((a) => Buffer.from(a, 'base64').length / (transcode ? 960 : 160));
  return { inb, appends, frames, t };
}

describe('Inbound', () => {
  it('energy: silence is far below the voice threshold, a 440 Hz tone at −12 dBFS far above', () => {
    const toDb = (b64: string) => 10 * Math.log10(ulawMeanSquare(Buffer.from(b64, 'base64')) || 1e-12);
    expect(toDb(SILENCE)).toBeLessThan(VOICE_DBFS - 20);
    expect(toDb(voicedFrame())).toBeGreaterThan(VOICE_DBFS + 20);
  });

  it('default (20 ms): one append per frame, the passthrough payload untouched', () => {
    const { inb, appends } = harness(20);
    const v = voicedFrame(3);
    inb.frame(SILENCE);
    inb.frame(v);
    expect(appends).toEqual([SILENCE, v]);
    expect(inb.appends).toBe(2);
  });

  it('capacity mode: silence in batches; onset at once and frame by frame; speech batched; end of turn frame by frame around the VAD deadline', () => {
    const { inb, appends, frames } = harness(100);
    for (let i = 0; i < 10; i++) inb.frame(SILENCE);
    expect(frames(SILENCE)).toEqual([5, 5]); // 200 ms of silence: two appends
    inb.frame(SILENCE);
    inb.frame(voicedFrame(0)); // onset: the held silence and the voiced frame go now
    expect(frames(SILENCE).slice(2)).toEqual([2]);
    for (let k = 1; k < 10; k++) inb.frame(voicedFrame(k)); // 9 more: frame by frame for the onset window
    expect(frames(SILENCE).slice(3, 12)).toEqual([1, 1, 1, 1, 1, 1, 1, 1, 1]);
    const beforeSpeech = appends.length;
    for (let k = 10; k < 30; k++) inb.frame(voicedFrame(k)); // 400 ms of speech: batched
    expect(appends.length - beforeSpeech).toBe(4);
    const beforeEnd = appends.length;
    inb.frame(SILENCE);
    inb.frame(SILENCE);
    expect(appends.length).toBe(beforeEnd); // two quiet frames: still speech
    inb.frame(SILENCE); // third: the caller stopped, what is held goes now
    expect(appends.length).toBe(beforeEnd + 1);
    const settleStart = appends.length;
    for (let i = 0; i < 12; i++) inb.frame(SILENCE); // settling: batched (deadline far)
    expect(appends.length - settleStart).toBeLessThanOrEqual(3);
    const tailStart = appends.length;
    for (let i = 0; i < 15; i++) inb.frame(SILENCE); // around the 500 ms deadline: one append each
    expect(appends.length - tailStart).toBe(15);
    const quietStart = appends.length;
    for (let i = 0; i < 10; i++) inb.frame(SILENCE);
    expect(appends.length - quietStart).toBe(2);
    expect(inb.frames).toBe(11 + 30 + 3 + 12 + 15 + 10);
  });

  it('capacity mode: a pause between words (voice again before the end-of-turn window) keeps batching', () => {
    const { inb, appends, frames } = harness(100);
    for (let k = 0; k < 30; k++) inb.frame(voicedFrame(k)); // onset window, then speech
    for (let i = 0; i < 4; i++) inb.frame(SILENCE); // a 80 ms gap between words: offset (held audio goes), then settling
    expect(inb.speechPhase).toBe('settle');
    const resumed = appends.length;
    for (let k = 30; k < 50; k++) inb.frame(voicedFrame(k)); // the caller goes on: not a new onset
    expect(inb.speechPhase).toBe('speech');
    expect(appends.length - resumed).toBeLessThanOrEqual(4); // 400 ms in batches of up to 100 ms
    inb.flush();
    expect(frames(SILENCE).reduce((a, b) => a + b, 0)).toBe(54); // nothing lost
  });

  it('capacity mode: voice inside the end-of-turn window is a new onset, frame by frame', () => {
    const { inb, appends } = harness(100);
    for (let k = 0; k < 30; k++) inb.frame(voicedFrame(k));
    for (let i = 0; i < 3 + 12; i++) inb.frame(SILENCE); // offset + settling
    inb.frame(SILENCE); // first frame of the window
    expect(inb.speechPhase).toBe('tail');
    const before = appends.length;
    for (let k = 0; k < 5; k++) inb.frame(voicedFrame(k));
    expect(inb.speechPhase).toBe('onset');
    expect(appends.length - before).toBe(5);
  });

  it('flush sends what is held; nothing is lost over a whole call', () => {
    const { inb, frames } = harness(100);
    for (let i = 0; i < 7; i++) inb.frame(SILENCE);
    inb.flush();
    inb.flush();
    expect(frames(SILENCE)).toEqual([5, 2]);
  });

  it('audio before the model is attached is held (up to 3 s) and sent first, in order', () => {
    const appends: string[] = [];
    const inb = new Inbound({ transcoder: undefined, batchMs: 20, vadSilenceMs: 500 });
    const sent = Array.from({ length: 200 }, (_, k) => voicedFrame(k));
    for (const f of sent) inb.frame(f);
    inb.attach((b64) => appends.push(b64));
    expect(appends).toEqual(sent.slice(200 - 150)); // the most recent 3 s
    inb.frame(SILENCE);
    expect(appends.at(-1)).toBe(SILENCE);
  });

  it('transcode: batched output is byte-identical to per-frame output', () => {
    const a = harness(20, true);
    const b = harness(100, true);
    const input = [...Array.from({ length: 12 }, () => SILENCE), ...Array.from({ length: 40 }, (_, k) => voicedFrame(k)), ...Array.from({ length: 40 }, () => SILENCE)];
    for (const f of input) {
      a.inb.frame(f);
      b.inb.frame(f);
    }
    a.inb.flush();
    b.inb.flush();
    const bytes = (x: string[]) => Buffer.concat(x.map((s) => Buffer.from(s, 'base64')));
    expect(b.appends.length).toBeLessThan(a.appends.length * 0.8);
    expect(Buffer.compare(bytes(a.appends), bytes(b.appends))).toBe(0);
    a.t!.close();
    b.t!.close();
  });
});

describe('Inbound before the model is attached (issue 22, item 11)', () => {
  it('many 1-byte payloads: what is held stays under MAX_EARLY_BYTES, the oldest are dropped and counted, the newest go in order', () => {
    const inb = new Inbound({ transcoder: undefined, batchMs: 20, vadSilenceMs: 500 });
    const N = 50_000;
    const payload = (k: number) => Buffer.from([k & 0xff]).toString('base64');
    for (let k = 0; k < N; k++) {
      inb.frame(payload(k));
      expect(inb.earlyHeldBytes).toBeLessThanOrEqual(MAX_EARLY_BYTES);
    }
    expect(inb.earlyDropped).toBeGreaterThan(N / 2);
    const appends: string[] = [];
    inb.attach((b64) => appends.push(b64));
    expect(appends.length + inb.earlyDropped).toBe(N);
    expect(appends).toEqual(Array.from({ length: appends.length }, (_, i) => payload(N - appends.length + i)));
    expect(inb.earlyHeldBytes).toBe(0);
  });
});
