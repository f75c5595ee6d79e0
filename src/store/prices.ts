/**
 * Prices, USD: the one definition of the figures a call's cost estimate uses
 * (store/cost.ts). Two tables, one per way a model bills:
 * - MODEL_PRICES: the OpenAI Realtime models, per 1M tokens, as published on
 *   each model's page (developers.openai.com/api/docs/models/<model>), read
 *   PRICES_AS_OF. Cached input is priced apart for text and audio.
 * - LIVE_MODEL_PRICES: the GPT-Live models, per active minute of audio (they
 *   bill time, not tokens), each entry with its own date and source.
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

/** What a call costs: its model's prices (with any PRICE_* overrides) plus telephony, USD per started minute. */
export interface Prices extends ModelPrices {
  telephonyPerMin: number;
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
