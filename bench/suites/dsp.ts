/**
 * DSP suite: the wasm audio core per 20 ms frame (160 µ-law bytes at 8 kHz,
 * 480 PCM16 samples at 24 kHz) against peers doing the same work in the
 * same run, plus the cost of handing a frame to a piscina worker.
 *
 * The other rate pairs (issue 19: 8 <-> 16, 8 <-> 48, 22.05 / 44.1 -> 8 kHz)
 * are measured per 20 ms frame through Resampler.process (copy in and out
 * included) beside speex-resampler q3 doing the same pair, and the pcm16k
 * Transcoder (µ-law fused) beside the pcm24k one.
 *
 * Input is 1 s of synthetic speech-like audio (tones + noise, 50 frames)
 * cycled frame by frame, so no task sees one frame over and over.
 */
import alawmulaw from 'alawmulaw';
import { Resampler, Transcoder, loadDsp, pcm16ToUlaw, ulawToPcm16 } from '../../src/dsp/index.js';
import { measureFrames, type FrameTask } from '../measure.js';
import { jsUlawDecode, jsUlawEncodeG191, jsUlawEncodeTable } from '../peers/g711.js';
import { libsamplerate, speex, SPEEX_QUALITY } from '../peers/resamplers.js';
import type { Result, RunOptions, Suite } from '../types.js';
import { measureHandoff } from './handoff.js';

import { FRAME_MS } from '../../src/dsp/format.js';

export { FRAME_MS };
export const FRAME_8K = 160;
export const FRAME_24K = 480;
const FRAMES = 50;

/** Deterministic speech-ish PCM16: a few harmonics with a slow envelope plus noise, peak ~ -6 dBFS. */
export function syntheticPcm(samples: number, rate: number, seed = 1): Int16Array {
  const out = new Int16Array(samples);
  let s = seed >>> 0;
  const rand = (): number => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
  for (let i = 0; i < samples; i++) {
    const t = i / rate;
    const env = 0.55 + 0.45 * Math.sin(2 * Math.PI * 3 * t);
    const f0 = 140 + 30 * Math.sin(2 * Math.PI * 0.7 * t);
    let v = 0;
    for (let h = 1; h <= 8; h++) v += Math.sin(2 * Math.PI * f0 * h * t) / h;
    v = (v / 2.7) * env * 16000 + rand() * 600;
    out[i] = Math.max(-32768, Math.min(32767, Math.round(v)));
  }
  return out;
}

function bytesOf(x: Int16Array): Buffer {
  return Buffer.from(x.buffer, x.byteOffset, x.byteLength);
}

async function run(opts: RunOptions): Promise<Result[]> {
  const dsp = loadDsp();
  const ex = dsp.exports;

  // Inputs: FRAMES frames of each shape, cycled.
  const pcm8All = syntheticPcm(FRAME_8K * FRAMES, 8000);
  const pcm24All = syntheticPcm(FRAME_24K * FRAMES, 24000, 2);
  const ulawAll = jsUlawEncodeTable(pcm8All, new Uint8Array(pcm8All.length));
  const ulaw = Array.from({ length: FRAMES }, (_, f) => ulawAll.slice(f * FRAME_8K, (f + 1) * FRAME_8K));
  const pcm8 = Array.from({ length: FRAMES }, (_, f) => pcm8All.slice(f * FRAME_8K, (f + 1) * FRAME_8K));
  const pcm24 = Array.from({ length: FRAMES }, (_, f) => pcm24All.slice(f * FRAME_24K, (f + 1) * FRAME_24K));
  const pcm8Bytes = pcm8.map(bytesOf);
  const pcm24Bytes = pcm24.map((x) => new Uint8Array(x.buffer, x.byteOffset, x.byteLength));
  const pcm24Buf = pcm24.map(bytesOf);
  let k = 0;
  const next = (): number => (k = k + 1 === FRAMES ? 0 : k + 1);

  // Outputs reused across calls, as the relay would.
  const out16 = new Int16Array(FRAME_24K * 2);
  const outU8 = new Uint8Array(FRAME_24K * 2);
  const out24 = new Uint8Array(FRAME_24K * 2);
  const out8 = new Uint8Array(FRAME_8K * 2);

  // wasm per-stage figures go through the raw exports (src/dsp exposes no
  // resample-only call): copy in, run, copy out, like Transcoder does.
  const upSlot = ex.open();
  const downSlot = ex.open();
  const t = Transcoder.open();
  const tIn = Transcoder.open();
  const tOut = Transcoder.open();
  const ioIn16 = dsp.ioIn >> 1;
  const PCM16 = 0;

  const speexUp = await speex(8000, 24000);
  const speexDown = await speex(24000, 8000);
  const speexUpIn = await speex(8000, 24000);
  const speexDownOut = await speex(24000, 8000);
  const speexUpFd = await speex(8000, 24000);
  const speexDownFd = await speex(24000, 8000);
  const lsrUp = await libsamplerate(8000, 24000);
  const lsrDown = await libsamplerate(24000, 8000);

  // JS peer of the Transcoder: table decode + speex up, speex down + table encode.
  const jsDecBuf = Buffer.alloc(FRAME_8K * 2);
  const jsDec16 = new Int16Array(jsDecBuf.buffer, jsDecBuf.byteOffset, FRAME_8K);
  const jsInbound = (frame: Uint8Array, up: typeof speexUp): ArrayBufferView => {
    jsUlawDecode(frame, jsDec16);
    return up.process(jsDecBuf);
  };
  const jsOutbound = (pcm: Buffer, down: typeof speexDown): Uint8Array => {
    const y = down.process(pcm);
    return jsUlawEncodeTable(new Int16Array(y.buffer, y.byteOffset, y.byteLength >> 1), out8);
  };

  const speexName = `speex-resampler q${SPEEX_QUALITY}`;

  // The other rate pairs: one Resampler and one speex peer each, 20 ms frames cycled.
  const pairDefs = [
    { key: 'up16', from: 8000, to: 16000 }, { key: 'down16', from: 16000, to: 8000 },
    { key: 'up48', from: 8000, to: 48000 }, { key: 'down48', from: 48000, to: 8000 },
    { key: 'down22', from: 22050, to: 8000 }, { key: 'down44', from: 44100, to: 8000 },
  ];
  const pairs = await Promise.all(pairDefs.map(async (d) => {
    const inFrame = (d.from * FRAME_MS) / 1000;
    const all = syntheticPcm(inFrame * FRAMES, d.from, 5);
    const frames = Array.from({ length: FRAMES }, (_, f) => all.slice(f * inFrame, (f + 1) * inFrame));
    const resampler = Resampler.open({ from: d.from, to: d.to });
    return {
      ...d, inFrame, frames, resampler,
      bufs: frames.map(bytesOf),
      out: new Int16Array(resampler.maxOutput(inFrame)),
      peer: await speex(d.from, d.to),
    };
  }));
  const t16In = Transcoder.open({ model: 'pcm16k' });
  const t16Out = Transcoder.open({ model: 'pcm16k' });
  const pcm16Bytes = pairs[1]!.frames.map((x) => new Uint8Array(x.buffer, x.byteOffset, x.byteLength));
  const pairTasks: FrameTask[] = pairs.flatMap((p) => {
    const group = `${p.key.startsWith('up') ? 'upsample' : 'downsample'} ${p.from / 1000}k->${p.to / 1000}k ` +
      `${p.inFrame}->${(p.to * FRAME_MS) / 1000}`;
    return [
      { id: `dsp.${p.key}.wasm`, group, name: 'wasm Resampler.process incl. copy in/out', ours: true, peer: `dsp.${p.key}.speex`,
        fn: () => p.resampler.process(p.frames[next()]!, p.inFrame, p.out) },
      { id: `dsp.${p.key}.speex`, group, name: speexName,
        fn: () => p.peer.process(p.bufs[next()]!) },
    ];
  });
  pairTasks.push(
    { id: 'dsp.inbound16.wasm', group: 'inbound: µ-law 160 B -> PCM16 16k', name: 'wasm Transcoder { model: pcm16k }.inbound', ours: true, peer: 'dsp.inbound.wasm',
      fn: () => t16In.inbound(ulaw[next()]) },
    { id: 'dsp.outbound16.wasm', group: 'outbound: PCM16 16k 640 B -> µ-law', name: 'wasm Transcoder { model: pcm16k }.outbound', ours: true, peer: 'dsp.outbound.wasm',
      fn: () => t16Out.outbound(pcm16Bytes[next()]!) },
  );

  const tasks: FrameTask[] = [
    // µ-law decode, 160 B -> 160 samples
    { id: 'dsp.decode.wasm', group: 'µ-law decode 160 B', name: 'wasm ulawToPcm16(frame, out)', ours: true, peer: 'dsp.decode.jsTable',
      fn: () => ulawToPcm16(ulaw[next()], out16) },
    { id: 'dsp.decode.wasmKernel', group: 'µ-law decode 160 B', name: 'wasm kernel only (exports.ulawToPcm, no copies)', ours: true,
      fn: () => ex.ulawToPcm(FRAME_8K) },
    { id: 'dsp.decode.jsTable', group: 'µ-law decode 160 B', name: 'JS 256-entry table',
      fn: () => jsUlawDecode(ulaw[next()], out16) },
    { id: 'dsp.decode.alawmulaw', group: 'µ-law decode 160 B', name: 'npm alawmulaw mulaw.decode',
      fn: () => alawmulaw.mulaw.decode(ulaw[next()]) },
    // µ-law encode, 160 samples -> 160 B
    { id: 'dsp.encode.wasm', group: 'µ-law encode 160 samples', name: 'wasm pcm16ToUlaw(pcm, out)', ours: true, peer: 'dsp.encode.jsTable',
      fn: () => pcm16ToUlaw(pcm8[next()], outU8) },
    { id: 'dsp.encode.wasmKernel', group: 'µ-law encode 160 samples', name: 'wasm kernel only (exports.pcmToUlaw, no copies)', ours: true,
      fn: () => ex.pcmToUlaw(FRAME_8K) },
    { id: 'dsp.encode.jsTable', group: 'µ-law encode 160 samples', name: 'JS 16K-entry table (G.191-exact)',
      fn: () => jsUlawEncodeTable(pcm8[next()], outU8) },
    { id: 'dsp.encode.jsG191', group: 'µ-law encode 160 samples', name: 'JS G.191 arithmetic (clz32)',
      fn: () => jsUlawEncodeG191(pcm8[next()], outU8) },
    { id: 'dsp.encode.alawmulaw', group: 'µ-law encode 160 samples', name: 'npm alawmulaw mulaw.encode',
      fn: () => alawmulaw.mulaw.encode(pcm8[next()]) },
    // Upsample 160 -> 480 PCM16
    { id: 'dsp.upsample.wasm', group: 'upsample 8k->24k 160->480', name: 'wasm up() incl. copy in/out', ours: true, peer: 'dsp.upsample.speex',
      fn: () => {
        dsp.i16.set(pcm8[next()], ioIn16);
        const n = ex.up(upSlot, FRAME_8K, PCM16);
        out24.set(dsp.outView(n * 2));
        return out24;
      } },
    { id: 'dsp.upsample.speex', group: 'upsample 8k->24k 160->480', name: speexName,
      fn: () => speexUp.process(pcm8Bytes[next()]) },
    { id: 'dsp.upsample.libsamplerate', group: 'upsample 8k->24k 160->480', name: lsrUp.name,
      fn: () => lsrUp.process(pcm8Bytes[next()]) },
    // Downsample 480 -> 160 PCM16
    { id: 'dsp.downsample.wasm', group: 'downsample 24k->8k 480->160', name: 'wasm down() incl. copy in/out', ours: true, peer: 'dsp.downsample.speex',
      fn: () => {
        dsp.i16.set(pcm24[next()], ioIn16);
        const n = ex.down(downSlot, FRAME_24K, PCM16);
        out8.set(dsp.outView(n * 2));
        return out8;
      } },
    { id: 'dsp.downsample.speex', group: 'downsample 24k->8k 480->160', name: speexName,
      fn: () => speexDown.process(pcm24Buf[next()]) },
    { id: 'dsp.downsample.libsamplerate', group: 'downsample 24k->8k 480->160', name: lsrDown.name,
      fn: () => lsrDown.process(pcm24Buf[next()]) },
    // One direction of a call
    { id: 'dsp.inbound.wasm', group: 'inbound: µ-law 160 B -> PCM16 24k', name: 'wasm Transcoder.inbound', ours: true, peer: 'dsp.inbound.js',
      fn: () => tIn.inbound(ulaw[next()]) },
    { id: 'dsp.inbound.js', group: 'inbound: µ-law 160 B -> PCM16 24k', name: `JS table + ${speexName}`,
      fn: () => jsInbound(ulaw[next()], speexUpIn) },
    { id: 'dsp.outbound.wasm', group: 'outbound: PCM16 24k 960 B -> µ-law', name: 'wasm Transcoder.outbound', ours: true, peer: 'dsp.outbound.js',
      fn: () => tOut.outbound(pcm24Bytes[next()]) },
    { id: 'dsp.outbound.js', group: 'outbound: PCM16 24k 960 B -> µ-law', name: `${speexName} + JS table`,
      fn: () => jsOutbound(pcm24Buf[next()], speexDownOut) },
    // Both directions: what one call costs per 20 ms
    { id: 'dsp.fullDuplex.wasm', group: 'full duplex (in + out per frame)', name: 'wasm Transcoder inbound + outbound', ours: true, peer: 'dsp.fullDuplex.js',
      fn: () => {
        const f = next();
        t.inbound(ulaw[f]);
        return t.outbound(pcm24Bytes[f]);
      } },
    { id: 'dsp.fullDuplex.js', group: 'full duplex (in + out per frame)', name: `JS tables + ${speexName}`,
      fn: () => {
        const f = next();
        jsInbound(ulaw[f], speexUpFd);
        return jsOutbound(pcm24Buf[f], speexDownFd);
      } },
    ...pairTasks,
  ];

  try {
    const results = await measureFrames('dsp', `${FRAME_MS} ms frame`, tasks, opts);
    results.push(...(await measureHandoff(opts, ulaw)));
    return results;
  } finally {
    t.close();
    tIn.close();
    tOut.close();
    t16In.close();
    t16Out.close();
    for (const p of pairs) p.resampler.close();
    ex.close(upSlot);
    ex.close(downSlot);
    lsrUp.destroy();
    lsrDown.destroy();
  }
}

function conclusions(results: Result[]): string[] {
  const byId = new Map(results.map((r) => [r.id, r]));
  const handoff = byId.get('dsp.handoff.piscina');
  const inline = byId.get('dsp.inbound.wasm');
  if (!handoff || !inline) return [];
  const x = handoff.medianNs / inline.medianNs;
  const share = (handoff.medianNs / 1e6) * 100;
  return [
    `piscina: handing one frame to a worker and back costs ${(handoff.medianNs / 1000).toFixed(1)} µs median` +
      `${handoff.p99Ns !== undefined ? ` (p99 ${(handoff.p99Ns / 1000).toFixed(1)} µs)` : ''}, ` +
      `${x.toFixed(0)}x the ${(inline.medianNs / 1000).toFixed(2)} µs of doing the work inline ` +
      `(${share.toFixed(1)}% of the 1 ms frame budget, and it adds a thread hop of latency).`,
    `  => piscina stays OFF the audio path: transcode inline on the socket's thread; use piscina only for ` +
      `coarse work (file transcodes, batch jobs) where one hand-off carries many frames.`,
  ];
}

export const dspSuite: Suite = {
  name: 'dsp',
  description: 'wasm G.711 + resampler per 20 ms frame vs JS/npm peers; piscina hand-off cost',
  run,
  conclusions,
};
