/** Estimated cost of a call: model tokens at per-million prices plus telephony minutes (USD). */
import type { Prices } from '../config.js';
import type { Usage } from '../call/voice-model.js';

export function estimateCostUsd(usage: Usage, durationMs: number, prices: Prices): number {
  const uncachedText = Math.max(0, usage.inputTextTokens - usage.inputCachedTokens);
  const model =
    (usage.inputAudioTokens * prices.audioInPerMTok +
      uncachedText * prices.textInPerMTok +
      Math.min(usage.inputCachedTokens, usage.inputTextTokens) * prices.cachedInPerMTok +
      usage.outputAudioTokens * prices.audioOutPerMTok +
      usage.outputTextTokens * prices.textOutPerMTok) /
    1e6;
  // Twilio bills per started minute.
  const minutes = durationMs > 0 ? Math.ceil(durationMs / 60_000) : 0;
  return Math.round((model + minutes * prices.telephonyPerMin) * 1e6) / 1e6;
}
