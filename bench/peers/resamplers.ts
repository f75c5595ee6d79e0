/**
 * npm resampler peers, wrapped to the bench's frame shapes (PCM16 8 kHz
 * 160 samples <-> 24 kHz 480 samples). Both are stateful (one object per
 * stream) and wasm (emscripten) inside; the figures include their own JS
 * API cost (speex-resampler copies each result into a fresh Buffer,
 * libsamplerate-js takes and returns Float32Array), because that is what a
 * user of the package pays.
 *
 * Quality, for "comparable": speex quality 3 is a 48-tap-per-phase Kaiser
 * windowed sinc with ~80 dB stopband (speexdsp resample.c quality_map);
 * libsamplerate SRC_SINC_FASTEST has ~97 dB SNR. callbridge's own is 96 taps
 * (32 a phase) with >= 80 dB image/alias rejection.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

interface SpeexResamplerInstance {
  processChunk(chunk: Buffer): Buffer;
}
interface SpeexResamplerClass {
  new (channels: number, inRate: number, outRate: number, quality?: number): SpeexResamplerInstance;
  initPromise: Promise<unknown>;
}
interface LibSampleRate {
  create(channels: number, inRate: number, outRate: number, opts: { converterType: number }): Promise<LsrConverter>;
  ConverterType: Record<'SRC_SINC_BEST_QUALITY' | 'SRC_SINC_MEDIUM_QUALITY' | 'SRC_SINC_FASTEST' | 'SRC_ZERO_ORDER_HOLD' | 'SRC_LINEAR', number>;
}
interface LsrConverter {
  full(data: Float32Array): Float32Array;
  destroy(): void;
}

/** One direction of one stream: PCM16 in, PCM16 out (little-endian bytes). */
export interface PeerResampler {
  name: string;
  process(pcm: Buffer): ArrayBufferView;
}

export const SPEEX_QUALITY = 3;

export async function speex(inRate: number, outRate: number, quality = SPEEX_QUALITY): Promise<PeerResampler> {
  const mod = require('speex-resampler') as { default: SpeexResamplerClass };
  const Speex = mod.default;
  await Speex.initPromise;
  const r = new Speex(1, inRate, outRate, quality);
  return { name: `speex-resampler q${quality}`, process: (pcm) => r.processChunk(pcm) };
}

/**
 * libsamplerate-js full API (stateful). It takes float32; the int16 <-> float
 * conversion both ways is done in JS around it and counted, since callbridge's frames are int16.
 */
export async function libsamplerate(
  inRate: number, outRate: number, type: 'SRC_SINC_FASTEST' | 'SRC_SINC_MEDIUM_QUALITY' = 'SRC_SINC_FASTEST',
): Promise<PeerResampler & { destroy(): void }> {
  const lsr = require('@alexanderolsen/libsamplerate-js') as LibSampleRate;
  const src = await lsr.create(1, inRate, outRate, { converterType: lsr.ConverterType[type] });
  const inF = new Float32Array(8192);
  const out16 = new Int16Array(8192 * 3);
  return {
    name: `libsamplerate-js ${type.replace('SRC_SINC_', '').toLowerCase()}`,
    process(pcm: Buffer): Int16Array {
      const n = pcm.length >> 1;
      const f = inF.subarray(0, n);
      for (let i = 0; i < n; i++) f[i] = pcm.readInt16LE(i << 1) / 32768;
      const y = src.full(f);
      const m = y.length;
      for (let i = 0; i < m; i++) {
        const v = Math.round(y[i] * 32768);
        out16[i] = v > 32767 ? 32767 : v < -32768 ? -32768 : v;
      }
      return out16.subarray(0, m);
    },
    destroy: () => src.destroy(),
  };
}
