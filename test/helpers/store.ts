/** Fixtures the call-store tests share: prices, call and account SIDs, and how a call ends. */
import type { Prices } from '../../src/store/prices.js';
import type { CallEndInfo } from '../../src/records.js';

/** Round per-million prices, so expected costs can be worked out by hand. */
export const prices: Prices = { audioInPerMTok: 32, audioCachedInPerMTok: 0.4, audioOutPerMTok: 64, textInPerMTok: 4, textCachedInPerMTok: 0.4, textOutPerMTok: 16, telephonyPerMin: 0.0125 };
export const SID = 'CA00000000000000000000000000000001';
export const ACCOUNT = 'AC00000000000000000000000000000001';

export const endInfo = (endedAt: Date, reason = 'caller_hangup'): CallEndInfo => ({
  endedAt,
  reason,
  relay: { inbound: { p50Ms: 0.05, p99Ms: 0.2 }, outbound: { p50Ms: 0.04, p99Ms: 0.1 } },
  protocolErrors: 0,
});
