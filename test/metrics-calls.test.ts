/**
 * The call-end, recording, store and drain metrics of src/server/metrics.ts:
 * a call's duration and estimated cost (figures worked by hand from the price
 * list, so a change to the cost formula or the prices shows here), series
 * seeded at 0, and the gauges read on scrape.
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_MODEL, loadConfig } from '../src/config.js';
import type { Usage } from '../src/records.js';
import { createMetrics, DEFAULT_TELEPHONY_PER_MIN, listPrices, type Metrics } from '../src/server/metrics.js';

const value = async (metrics: Metrics, name: string, labels: Record<string, string> = {}) => {
  const m = metrics.registry.getSingleMetric(name);
  if (!m) throw new Error(`no metric ${name}`);
  const got = await m.get();
  return got.values.find((v) => Object.entries(labels).every(([k, l]) => String(v.labels[k]) === l) && (v as { metricName?: string }).metricName !== `${name}_sum`)?.value;
};
const sample = async (metrics: Metrics, series: string) => {
  const line = (await metrics.registry.metrics()).split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
};

// 10k audio in, 1k text in, 5k audio out, 200 text out, nothing cached; 90 s = 2 started minutes.
const usage: Usage = { inputTextTokens: 1000, inputAudioTokens: 10_000, inputCachedTokens: 0, outputTextTokens: 200, outputAudioTokens: 5000 };
const DURATION_MS = 90_000;

describe('call end metrics', () => {
  it('every end reason, recording status and model-link event is a series at 0 from the start', async () => {
    const metrics = createMetrics({ processMetrics: false });
    const reasons = ['caller_hangup', 'stream_closed', 'model_disconnected', 'model_unavailable', 'silence_timeout', 'max_duration', 'unauthorized', 'shutdown', 'error', 'transferred', 'agent_hangup'];
    for (const reason of reasons) expect(await value(metrics, 'callbridge_calls_ended_total', { reason })).toBe(0);
    for (const status of ['complete', 'incomplete', 'opted_out']) expect(await value(metrics, 'callbridge_recordings_total', { status })).toBe(0);
    for (const what of ['drop', 'reconnect', 'give_up']) expect(await value(metrics, 'callbridge_model_link_total', { what })).toBe(0);
    expect(await sample(metrics, 'callbridge_cost_usd_total')).toBe(0);
    expect(await sample(metrics, 'callbridge_call_duration_seconds_count')).toBe(0);
  });

  it('a call with figures: its duration, and its cost at list prices plus telephony per started minute', async () => {
    const metrics = createMetrics({ processMetrics: false });
    metrics.call.callEnded('caller_hangup', { durationMs: DURATION_MS, model: 'gpt-realtime', usage });
    // gpt-realtime: (10000×32 + 1000×4 + 5000×64 + 200×16) / 1e6 = 0.6472; 2 min × 0.0125 = 0.025.
    const expected = 0.6722;
    expect(await value(metrics, 'callbridge_calls_ended_total', { reason: 'caller_hangup' })).toBe(1);
    expect(await sample(metrics, 'callbridge_call_duration_seconds_sum')).toBeCloseTo(90, 9);
    expect(await sample(metrics, 'callbridge_call_duration_seconds_bucket{le="60"}')).toBe(0);
    expect(await sample(metrics, 'callbridge_call_duration_seconds_bucket{le="120"}')).toBe(1);
    expect(await sample(metrics, 'callbridge_call_cost_usd_sum')).toBeCloseTo(expected, 9);
    expect(await sample(metrics, 'callbridge_call_cost_usd_bucket{le="0.5"}')).toBe(0);
    expect(await sample(metrics, 'callbridge_call_cost_usd_bucket{le="1"}')).toBe(1);
    expect(await sample(metrics, 'callbridge_cost_usd_total')).toBeCloseTo(expected, 9);

    // A mini model's snapshot takes its model's list prices: (10000×10 + 1000×0.6 + 5000×20 + 200×2.4) / 1e6 + 0.025.
    metrics.call.callEnded('agent_hangup', { durationMs: DURATION_MS, model: 'gpt-realtime-mini-2025-10-06', usage });
    expect(await sample(metrics, 'callbridge_cost_usd_total')).toBeCloseTo(expected + 0.22608, 9);
    expect(await sample(metrics, 'callbridge_call_cost_usd_count')).toBe(2);
  });

  it('the prices given to createMetrics win (config with PRICE_* overrides), asked by the call\'s model', async () => {
    const asked: (string | undefined)[] = [];
    const metrics = createMetrics({
      processMetrics: false,
      prices: (model) => {
        asked.push(model);
        return { textInPerMTok: 1, textCachedInPerMTok: 1, textOutPerMTok: 1, audioInPerMTok: 1, audioCachedInPerMTok: 1, audioOutPerMTok: 1, telephonyPerMin: 0.5 };
      },
    });
    metrics.call.callEnded('transferred', { durationMs: DURATION_MS, model: 'some-model', usage });
    expect(asked).toEqual(['some-model']);
    // 16,200 tokens at $1/M + 2 minutes at $0.50.
    expect(await sample(metrics, 'callbridge_cost_usd_total')).toBeCloseTo(1.0162, 9);
  });

  it('a call without figures (no stream) is counted by reason only', async () => {
    const metrics = createMetrics({ processMetrics: false });
    metrics.call.callEnded('unauthorized');
    expect(await value(metrics, 'callbridge_calls_ended_total', { reason: 'unauthorized' })).toBe(1);
    expect(await sample(metrics, 'callbridge_call_duration_seconds_count')).toBe(0);
    expect(await sample(metrics, 'callbridge_call_cost_usd_count')).toBe(0);
  });

  it('the default prices are the ones config uses when nothing is overridden', () => {
    const config = loadConfig({});
    expect(listPrices(DEFAULT_MODEL)).toEqual(config.prices);
    expect(DEFAULT_TELEPHONY_PER_MIN).toBe(config.prices.telephonyPerMin);
    expect(listPrices(undefined)).toEqual(listPrices('gpt-realtime'));
  });

  it('recordings are counted by status; the free-text reason is no label', async () => {
    const metrics = createMetrics({ processMetrics: false });
    metrics.call.recording({ status: 'complete' });
    metrics.call.recording({ status: 'incomplete', reason: 'storage too slow' });
    metrics.call.recording({ status: 'incomplete', reason: 'write failed' });
    expect(await value(metrics, 'callbridge_recordings_total', { status: 'complete' })).toBe(1);
    expect(await value(metrics, 'callbridge_recordings_total', { status: 'incomplete' })).toBe(2);
    expect(await value(metrics, 'callbridge_recordings_total', { status: 'opted_out' })).toBe(0);
    expect(await metrics.registry.metrics()).not.toMatch(/storage too slow/);
  });
});

describe('store and drain gauges, read on scrape', () => {
  it('absent without a source', async () => {
    const text = await createMetrics({ processMetrics: false }).registry.metrics();
    for (const name of ['callbridge_store_queue_entries', 'callbridge_store_dropped_total', 'callbridge_store_reachable', 'callbridge_draining_seconds']) {
      expect(text).not.toMatch(new RegExp(`^${name} `, 'm'));
    }
  });

  it('PostgreSQL: queue, drops and reachability as the health reports them at each scrape', async () => {
    const metrics = createMetrics({ processMetrics: false });
    let health = { kind: 'postgres' as const, reachable: true, queued: 3, dropped: 0, lastError: null as string | null };
    metrics.setStoreSource(() => health);
    expect(await sample(metrics, 'callbridge_store_queue_entries')).toBe(3);
    expect(await sample(metrics, 'callbridge_store_dropped_total')).toBe(0);
    expect(await sample(metrics, 'callbridge_store_reachable')).toBe(1);
    health = { ...health, reachable: false, queued: 1200, dropped: 7, lastError: 'connection refused' };
    expect(await sample(metrics, 'callbridge_store_queue_entries')).toBe(1200);
    expect(await sample(metrics, 'callbridge_store_dropped_total')).toBe(7);
    expect(await sample(metrics, 'callbridge_store_reachable')).toBe(0);
    expect(await metrics.registry.metrics()).toMatch(/# TYPE callbridge_store_dropped_total counter/);
  });

  it('SQLite: no queue (0), no reachability series; a source that throws leaves the series out', async () => {
    const metrics = createMetrics({ processMetrics: false });
    metrics.setStoreSource(() => ({ kind: 'sqlite' }));
    expect(await sample(metrics, 'callbridge_store_queue_entries')).toBe(0);
    expect(await sample(metrics, 'callbridge_store_dropped_total')).toBe(0);
    expect(await sample(metrics, 'callbridge_store_reachable')).toBeUndefined();
    metrics.setStoreSource(() => {
      throw new Error('closed');
    });
    expect(await sample(metrics, 'callbridge_store_queue_entries')).toBeUndefined();
  });

  it('draining seconds: 0 while not draining, then the time since the drain began', async () => {
    let now = 1_000_000;
    const metrics = createMetrics({ processMetrics: false, now: () => now });
    let since: number | null = null;
    metrics.setDrainSource(() => since);
    expect(await sample(metrics, 'callbridge_draining_seconds')).toBe(0);
    since = now;
    now += 754_500;
    expect(await sample(metrics, 'callbridge_draining_seconds')).toBe(754.5);
  });
});
