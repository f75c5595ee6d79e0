/**
 * Estimated cost of a call: model tokens at per-million prices plus
 * telephony minutes (USD). Cached input is priced apart for text and audio;
 * usage without a cached-audio count treats all cached tokens as text.
 */
import type { Usage } from '../records.js';
import type { Prices } from './prices.js';

export function estimateCostUsd(usage: Usage, durationMs: number, prices: Prices): number {
  const cachedAudio = Math.min(usage.inputCachedAudioTokens ?? 0, usage.inputCachedTokens, usage.inputAudioTokens);
  const cachedText = Math.min(usage.inputCachedTokens - cachedAudio, usage.inputTextTokens);
  const model =
    ((usage.inputAudioTokens - cachedAudio) * prices.audioInPerMTok +
      cachedAudio * prices.audioCachedInPerMTok +
      (usage.inputTextTokens - cachedText) * prices.textInPerMTok +
      cachedText * prices.textCachedInPerMTok +
      usage.outputAudioTokens * prices.audioOutPerMTok +
      usage.outputTextTokens * prices.textOutPerMTok) /
    1e6;
  // Twilio bills per started minute.
  const minutes = durationMs > 0 ? Math.ceil(durationMs / 60_000) : 0;
  return Math.round((model + minutes * prices.telephonyPerMin) * 1e6) / 1e6;
}
