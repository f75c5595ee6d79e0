/**
 * piscina task for the hand-off figure in bench/suites/handoff.ts: one
 * inbound frame (µ-law 8 kHz) -> PCM16LE 24 kHz, the same work the inline
 * figure does. The transcoder lives as long as the worker, like a call's.
 */
import { Transcoder } from '../src/dsp/index.js';

const transcoder = Transcoder.open();

export default function inbound(frame: Uint8Array): Uint8Array {
  // Copy out of the reused view: structured clone would otherwise ship its whole buffer.
  return transcoder.inbound(frame).slice();
}
