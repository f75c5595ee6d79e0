/**
 * Prices, USD: the one definition of the figures a call's cost estimate uses
 * (store/cost.ts). Three tables, one per way a model bills:
 * - MODEL_PRICES: the OpenAI Realtime models, per 1M tokens, as published on
 *   each model's page (developers.openai.com/api/docs/models/<model>), read
 *   PRICES_AS_OF. Cached input is priced apart for text and audio.
 * - LIVE_MODEL_PRICES: the GPT-Live models, per active minute of audio (they
 *   bill time, not tokens), each entry with its own date and source.
 * - PIPELINE_PRICES: the STT → LLM → TTS pipeline's stage vendors, one table
 *   per stage in that stage's billing unit (STT per audio minute, LLM per 1M
 *   tokens, TTS per 1K characters), each entry with its own date and source.
 *   Where no vendor page was found, the source says whose figure it is.
 * A snapshot name (`gpt-realtime-2-2026-05-07`) takes its model's prices.
 */

/** One model's prices: tokens, USD per 1M, and (time-billed models) audio, USD per active minute. */
export interface ModelPrices {
  textInPerMTok: number;
  textCachedInPerMTok: number;
  textOutPerMTok: number;
  audioInPerMTok: number;
  audioCachedInPerMTok: number;
  audioOutPerMTok: number;
  /**
   * USD per minute of Usage.activeAudioSeconds. Absent (a token model, or prices built without it):
   * those seconds are priced at REFERENCE_LIVE_MODEL's, as an unknown model's tokens are at gpt-realtime's.
   */
  activeAudioPerMin?: number;
}

/** The pipeline's per-unit prices (Usage.pipeline): STT per audio minute, LLM per 1M tokens, TTS per 1K characters. */
export interface PipelinePrices {
  sttPerMin: number;
  llmInPerMTok: number;
  /** Cached input tokens (a part of the input tokens) are priced at this instead of llmInPerMTok. */
  llmCachedInPerMTok: number;
  llmOutPerMTok: number;
  ttsPer1kChars: number;
}

/**
 * What a call costs: its model's prices (with any PRICE_* overrides) plus telephony, USD per started minute;
 * a pipeline call also its stages' (absent: Usage.pipeline is priced at REFERENCE_PIPELINE_PRICES).
 */
export interface Prices extends ModelPrices {
  telephonyPerMin: number;
  pipeline?: PipelinePrices;
}

export const PRICES_AS_OF = '2026-11-30';

export const MODEL_PRICES: Readonly<Record<string, ModelPrices>> = {
  'gpt-realtime': { textInPerMTok: 4, textCachedInPerMTok: 0.4, textOutPerMTok: 16, audioInPerMTok: 32, audioCachedInPerMTok: 0.4, audioOutPerMTok: 64 },
  'gpt-realtime-1.5': { textInPerMTok: 4, textCachedInPerMTok: 0.4, textOutPerMTok: 16, audioInPerMTok: 32, audioCachedInPerMTok: 0.4, audioOutPerMTok: 64 },
  'gpt-realtime-2': { textInPerMTok: 4, textCachedInPerMTok: 0.4, textOutPerMTok: 24, audioInPerMTok: 32, audioCachedInPerMTok: 0.4, audioOutPerMTok: 64 },
  'gpt-realtime-2.1': { textInPerMTok: 4, textCachedInPerMTok: 0.4, textOutPerMTok: 24, audioInPerMTok: 32, audioCachedInPerMTok: 0.4, audioOutPerMTok: 64 },
  'gpt-realtime-2.1-mini': { textInPerMTok: 0.6, textCachedInPerMTok: 0.06, textOutPerMTok: 2.4, audioInPerMTok: 10, audioCachedInPerMTok: 0.3, audioOutPerMTok: 20 },
  'gpt-realtime-mini': { textInPerMTok: 0.6, textCachedInPerMTok: 0.06, textOutPerMTok: 2.4, audioInPerMTok: 10, audioCachedInPerMTok: 0.3, audioOutPerMTok: 20 },
};

/** One GPT-Live model's list price, and where and when it was read. */
export interface LiveModelPrice {
  /** USD per active minute of audio (pro rata: Usage.activeAudioSeconds / 60). */
  activeAudioPerMin: number;
  /** When the price was read (as precise as the source). */
  asOf: string;
  source: string;
}

/**
 * GPT-Live list prices. Standby time ($0.02 a minute for gpt-live-1.1) is not in the estimate: Usage
 * reports active audio only. gpt-live-1 has no published figure in our notes, so it is not listed
 * (it is priced at the reference's, like any unknown model).
 */
export const LIVE_MODEL_PRICES: Readonly<Record<string, LiveModelPrice>> = {
  'gpt-live-1.1': { activeAudioPerMin: 0.05, asOf: '2026-11', source: 'developers.openai.com/api/docs/models/gpt-live-1.1' },
};

/** The Live model whose per-minute price stands in where none is known (as gpt-realtime does for tokens). */
export const REFERENCE_LIVE_MODEL = 'gpt-live-1.1';

/** USD per active minute where prices name none: the reference Live model's. */
export const REFERENCE_ACTIVE_AUDIO_PER_MIN = LIVE_MODEL_PRICES[REFERENCE_LIVE_MODEL]!.activeAudioPerMin;

/** Where and when a pipeline price was read. */
interface Sourced {
  /** When the price was read (as precise as the source). */
  asOf: string;
  source: string;
}

export interface SttPrice extends Sourced {
  /** USD per minute of audio streamed to the STT (Usage.pipeline.sttAudioSeconds / 60). */
  perMin: number;
}

export interface LlmPrice extends Sourced {
  inPerMTok: number;
  cachedInPerMTok: number;
  outPerMTok: number;
}

export interface TtsPrice extends Sourced {
  /** USD per 1,000 characters sent to the TTS. */
  per1kChars: number;
}

/**
 * The pipeline stages' list prices, pay-as-you-go (no plan discounts, no commitments). Figures found on a
 * vendor's own page say so; others name the page that quoted them.
 */
export const PIPELINE_PRICES: Readonly<{
  stt: Readonly<Record<string, SttPrice>>;
  llm: Readonly<Record<string, LlmPrice>>;
  tts: Readonly<Record<string, TtsPrice>>;
}> = {
  stt: {
    // Streaming, English (monolingual); pre-recorded audio is cheaper, but the pipeline streams.
    'nova-3': {
      perMin: 0.0048,
      asOf: '2026-08-01',
      source:
        'deepgram.com/pricing (Pay-As-You-Go, streaming, monolingual) as quoted by github.com/D3velop-llc/open-gauntlet-leaderboard data/asr.json (and hail-hq/hail costs/stt.json, 2026-05-05); the vendor page itself was not found',
    },
  },
  llm: {
    'gpt-4o-mini': {
      inPerMTok: 0.15,
      cachedInPerMTok: 0.075,
      outPerMTok: 0.6,
      asOf: '2026-05',
      source: 'openai.com/api/pricing as quoted by github.com/CommitBrief/commitbrief wiki Provider-OpenAI; developers.openai.com/api/docs/models/gpt-4o-mini itself was not found',
    },
    'gpt-4.1-mini': {
      inPerMTok: 0.4,
      cachedInPerMTok: 0.1,
      outPerMTok: 1.6,
      asOf: '2026',
      source: 'vercel.com/ai-gateway/models/gpt-4.1-mini/api (its OpenAI provider row, at list price); developers.openai.com/api/docs/models/gpt-4.1-mini itself was not found',
    },
    'gpt-5-mini': {
      inPerMTok: 0.25,
      cachedInPerMTok: 0.025,
      outPerMTok: 2,
      asOf: '2026',
      source: 'developers.openai.com/api/docs/models/gpt-5-mini',
    },
  },
  tts: {
    eleven_flash_v2_5: {
      per1kChars: 0.05,
      asOf: '2026-06',
      source: 'developer.puter.com/tutorials/elevenlabs-api-pricing (Flash/Turbo, per 1,000 characters; Business tier $0.06); elevenlabs.io/pricing/api itself was not found',
    },
    eleven_turbo_v2_5: {
      per1kChars: 0.05,
      asOf: '2026-06',
      source: 'developer.puter.com/tutorials/elevenlabs-api-pricing (Flash/Turbo, per 1,000 characters; Business tier $0.06); elevenlabs.io/pricing/api itself was not found',
    },
    // Billed in tokens ($0.60 per 1M text in, $12 per 1M audio out: developers.openai.com/api/docs/models/gpt-4o-mini-tts);
    // per character, a measured bill: 4,096 characters cost $0.0652.
    'gpt-4o-mini-tts': {
      per1kChars: 0.0159,
      asOf: '2025-11',
      source: 'measured by github.com/sanand0/blog posts/2025/openai-tts-cost.md ($15.9 per 1M characters) from the token prices on developers.openai.com/api/docs/models/gpt-4o-mini-tts',
    },
    'tts-1': {
      per1kChars: 0.015,
      asOf: '2026',
      source: 'developers.openai.com/api/docs/models/tts-1 ($15.00 per 1M characters)',
    },
  },
};

/** Each stage's model whose price stands in for a model the table does not list (as gpt-realtime does for Realtime tokens). */
export const REFERENCE_PIPELINE = { stt: 'nova-3', llm: 'gpt-4.1-mini', tts: 'eleven_flash_v2_5' } as const;

/**
 * The per-unit prices of a pipeline's stage models: each an exact entry or a dated snapshot of one (as
 * modelPrices), else (unknown or not named) its stage's REFERENCE_PIPELINE entry.
 */
export function pipelinePrices(models: { stt?: string; llm?: string; tts?: string }): PipelinePrices {
  const stt = pick(PIPELINE_PRICES.stt, models.stt, REFERENCE_PIPELINE.stt);
  const llm = pick(PIPELINE_PRICES.llm, models.llm, REFERENCE_PIPELINE.llm);
  const tts = pick(PIPELINE_PRICES.tts, models.tts, REFERENCE_PIPELINE.tts);
  return { sttPerMin: stt.perMin, llmInPerMTok: llm.inPerMTok, llmCachedInPerMTok: llm.cachedInPerMTok, llmOutPerMTok: llm.outPerMTok, ttsPer1kChars: tts.per1kChars };
}

/** Whether every stage's model is in PIPELINE_PRICES (else pipelinePrices gave that stage its reference's). */
export function pipelinePricesListed(models: { stt: string; llm: string; tts: string }): boolean {
  return lookup(PIPELINE_PRICES.stt, models.stt) !== undefined && lookup(PIPELINE_PRICES.llm, models.llm) !== undefined && lookup(PIPELINE_PRICES.tts, models.tts) !== undefined;
}

/** Pipeline prices where a call's Prices name none: every stage at its reference model's. */
export const REFERENCE_PIPELINE_PRICES: PipelinePrices = pipelinePrices({});

function pick<T>(table: Readonly<Record<string, T>>, model: string | undefined, reference: string): T {
  return (model !== undefined ? lookup(table, model) : undefined) ?? table[reference]!;
}

/**
 * Prices of `model`: an exact entry, else the longest entry that `model` extends with a dated snapshot
 * suffix; a Live model bills no tokens (its token prices are 0) and carries its per-minute price.
 * Undefined for a model in neither table.
 */
export function modelPrices(model: string): ModelPrices | undefined {
  const tokens = lookup(MODEL_PRICES, model);
  if (tokens) return tokens;
  const live = lookup(LIVE_MODEL_PRICES, model);
  if (!live) return undefined;
  return { textInPerMTok: 0, textCachedInPerMTok: 0, textOutPerMTok: 0, audioInPerMTok: 0, audioCachedInPerMTok: 0, audioOutPerMTok: 0, activeAudioPerMin: live.activeAudioPerMin };
}

function lookup<T>(table: Readonly<Record<string, T>>, model: string): T | undefined {
  if (Object.hasOwn(table, model)) return table[model];
  let best: string | undefined;
  for (const name of Object.keys(table)) {
    if (model.startsWith(`${name}-`) && /^\d{4}-\d{2}-\d{2}$/.test(model.slice(name.length + 1)) && (!best || name.length > best.length)) best = name;
  }
  return best ? table[best] : undefined;
}
