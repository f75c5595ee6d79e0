/**
 * Estimated cost of a call, USD: model tokens at per-million prices, plus
 * audio billed by time (GPT-Live) at a price per active minute, pro rata,
 * plus telephony per started minute. Cached input is priced apart for text
 * and audio; usage without a cached-audio count treats all cached tokens as
 * text. Active seconds at prices that name no per-minute price take the
 * reference Live model's (prices.ts), as an unknown model's tokens take
 * gpt-realtime's.
 */
import type { Usage } from '../records.js';
import { REFERENCE_ACTIVE_AUDIO_PER_MIN, type Prices } from './prices.js';

export function estimateCostUsd(usage: Usage, durationMs: number, prices: Prices): number {
  const cachedAudio = Math.min(usage.inputCachedAudioTokens ?? 0, usage.inputCachedTokens, usage.inputAudioTokens);
  const cachedText = Math.min(usage.inputCachedTokens - cachedAudio, usage.inputTextTokens);
  const tokens =
    ((usage.inputAudioTokens - cachedAudio) * prices.audioInPerMTok +
      cachedAudio * prices.audioCachedInPerMTok +
      (usage.inputTextTokens - cachedText) * prices.textInPerMTok +
      cachedText * prices.textCachedInPerMTok +
      usage.outputAudioTokens * prices.audioOutPerMTok +
      usage.outputTextTokens * prices.textOutPerMTok) /
    1e6;
  const active = ((usage.activeAudioSeconds ?? 0) / 60) * (prices.activeAudioPerMin ?? REFERENCE_ACTIVE_AUDIO_PER_MIN);
  // Twilio bills per started minute.
  const minutes = durationMs > 0 ? Math.ceil(durationMs / 60_000) : 0;
  return Math.round((tokens + active + minutes * prices.telephonyPerMin) * 1e6) / 1e6;
}
