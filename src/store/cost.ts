/**
 * Estimated cost of a call, USD: model tokens at per-million prices, plus
 * audio billed by time (GPT-Live) at a price per active minute, pro rata,
 * plus telephony per started minute. Cached input is priced apart for text
 * and audio; usage without a cached-audio count treats all cached tokens as
 * text. Active seconds at prices that name no per-minute price take the
 * reference Live model's (prices.ts), as an unknown model's tokens take
 * gpt-realtime's. A pipeline call's stages (Usage.pipeline) add STT audio
 * minutes pro rata, LLM tokens per million (cached input apart) and TTS
 * characters per thousand, at prices.pipeline or, where it is absent, the
 * reference stage models'. Usage without `pipeline` costs what it did before.
 */
import type { PipelineUsage, Usage } from '../records.js';
import { REFERENCE_ACTIVE_AUDIO_PER_MIN, REFERENCE_PIPELINE_PRICES, type PipelinePrices, type Prices } from './prices.js';

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
  const stages = usage.pipeline ? pipelineStageCostsUsd(usage.pipeline, prices.pipeline ?? REFERENCE_PIPELINE_PRICES) : undefined;
  const pipeline = stages ? stages.stt + stages.llm + stages.tts : 0;
  // Twilio bills per started minute.
  const minutes = durationMs > 0 ? Math.ceil(durationMs / 60_000) : 0;
  return Math.round((tokens + active + pipeline + minutes * prices.telephonyPerMin) * 1e6) / 1e6;
}

/** Each pipeline stage's cost, unrounded USD; cached input tokens are a part of the input tokens. */
export function pipelineStageCostsUsd(p: PipelineUsage, prices: PipelinePrices): { stt: number; llm: number; tts: number } {
  const cached = Math.min(p.llmCachedInputTokens, p.llmInputTokens);
  return {
    stt: (p.sttAudioSeconds / 60) * prices.sttPerMin,
    llm: ((p.llmInputTokens - cached) * prices.llmInPerMTok + cached * prices.llmCachedInPerMTok + p.llmOutputTokens * prices.llmOutPerMTok) / 1e6,
    tts: (p.ttsCharacters / 1000) * prices.ttsPer1kChars,
  };
}
