/**
 * Prices, USD: the one definition of the figures a call's cost estimate uses
 * (store/cost.ts), and the list prices of the OpenAI Realtime models, per 1M
 * tokens, as published on each model's page
 * (developers.openai.com/api/docs/models/<model>), read 2026-11-30. Cached
 * input is priced apart for text and audio. A snapshot name
 * (`gpt-realtime-2-2026-05-07`) takes its model's prices.
 */

/** One model's token prices, USD per 1M tokens. */
export interface ModelPrices {
  textInPerMTok: number;
  textCachedInPerMTok: number;
  textOutPerMTok: number;
  audioInPerMTok: number;
  audioCachedInPerMTok: number;
  audioOutPerMTok: number;
}

/** What a call costs: its model's token prices (with any PRICE_* overrides) plus telephony, USD per started minute. */
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

/** Prices of `model`: an exact entry, else the longest entry that `model` extends with a dated snapshot suffix. */
export function modelPrices(model: string): ModelPrices | undefined {
  const exact = MODEL_PRICES[model];
  if (exact) return exact;
  let best: string | undefined;
  for (const name of Object.keys(MODEL_PRICES)) {
    if (model.startsWith(`${name}-`) && /^\d{4}-\d{2}-\d{2}$/.test(model.slice(name.length + 1)) && (!best || name.length > best.length)) best = name;
  }
  return best ? MODEL_PRICES[best] : undefined;
}
