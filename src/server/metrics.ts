/**
 * Prometheus metrics (prom-client), one Registry per server instance so tests
 * can run many servers in one process. Importing this file does not load
 * uWebSockets.js. `call` is the CallMetrics face the call layer records into.
 *
 * What the alerts (deploy/prometheus/alerts.yaml) and the dashboard
 * (deploy/grafana/dashboards/callbridge.json) read, besides the call layer's
 * latency and error series:
 * - `callbridge_calls_ended_total{reason}`: every EndReason a series at 0
 *   from start-up; a call with a stream also observes
 *   `callbridge_call_duration_seconds` (stream `start` to end) and
 *   `callbridge_call_cost_usd` (the store's estimate: tokens at its model's
 *   prices plus telephony per started minute), and adds that cost to
 *   `callbridge_cost_usd_total`. A call that never streamed (refused,
 *   unauthorized before `start`) is counted by reason only.
 * - `callbridge_recordings_total{status}` (complete, incomplete, opted_out;
 *   each at 0 from start-up). The reason an incomplete recording stopped is
 *   free text: it stays in the call's record, never in a label.
 * - Read on scrape from the sources main.ts sets: the call store's queue
 *   (`callbridge_store_queue_entries`, `callbridge_store_dropped_total`,
 *   `callbridge_store_reachable` 1/0 — PostgreSQL only, absent for SQLite,
 *   which has no queue: its queue and drops read 0) and how long this
 *   instance has been draining (`callbridge_draining_seconds`, 0 when not).
 *   Without a source those series are absent.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type Metric } from 'prom-client';
import type { CallEndFigures, CallMetrics, StartRefusal, StoreHealth } from '../call/ports.js';
import type { EndReason } from '../call/session.js';
import { LatencyHistogram } from '../call/stats.js';
import type { RecordingStatus } from '../recording/types.js';
import { estimateCostUsd } from '../store/cost.js';
import { MODEL_PRICES, modelPrices, type Prices } from '../store/prices.js';
import type { ToolOutcomeKind, ToolOutcomeObserver } from '../tools/registry.js';

const RELAY_LATENCY_BUCKETS_S = [0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05];
/** Call durations, seconds: up to an hour (MAX_CALL_MS defaults to one); longer calls land in +Inf. */
const CALL_DURATION_BUCKETS_S = [10, 30, 60, 120, 180, 300, 600, 900, 1200, 1800, 2700, 3600];
/** Estimated cost of one call, USD (a minute of gpt-realtime audio both ways is about $0.10–0.20). */
const CALL_COST_BUCKETS_USD = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * Telephony, USD per started minute, when createMetrics is given no prices:
 * the default of config.ts's PRICE_TELEPHONY_PER_MIN (Twilio US inbound voice
 * plus Media Streams). test/metrics-calls.test.ts checks the two agree.
 */
export const DEFAULT_TELEPHONY_PER_MIN = 0.0085 + 0.004;

/** Every end reason of a call (session.ts's EndReason): the compiler fails here when one is added there and not here. */
const END_REASONS: Readonly<Record<EndReason, true>> = {
  caller_hangup: true,
  stream_closed: true,
  model_disconnected: true,
  model_unavailable: true,
  silence_timeout: true,
  max_duration: true,
  unauthorized: true,
  shutdown: true,
  error: true,
  transferred: true,
  agent_hangup: true,
};

const RECORDING_STATUSES: Readonly<Record<RecordingStatus, true>> = { complete: true, incomplete: true, opted_out: true };

/**
 * List prices of `model` (prices.ts; an unknown or absent model takes gpt-realtime's, as
 * config.ts does) plus the default telephony price: what a cost is estimated at when
 * createMetrics is given no `prices`.
 */
export function listPrices(model: string | undefined): Prices {
  const base = (model !== undefined ? modelPrices(model) : undefined) ?? MODEL_PRICES['gpt-realtime']!;
  return { ...base, telephonyPerMin: DEFAULT_TELEPHONY_PER_MIN };
}

/**
 * A metric without labels whose value is read when scraped: `read()` returning undefined
 * leaves the series out of the scrape (rather than a misleading 0).
 */
function scrapedMetric(name: string, help: string, type: 'gauge' | 'counter', read: () => number | undefined): Metric {
  const metric = {
    name,
    help,
    type,
    aggregator: 'sum',
    async get() {
      const value = read();
      const values = value === undefined || !Number.isFinite(value) ? [] : [{ labels: {}, value }];
      return { name, help, type, values, aggregator: 'sum' };
    },
  };
  return metric as unknown as Metric;
}

/**
 * A Prometheus histogram (cumulative `_bucket`, `_sum`, `_count`, label `direction`) whose
 * values are read from LatencyHistograms when scraped, so nothing is observed per message.
 */
function latencyHistogramMetric(name: string, help: string, bucketsS: number[], source: () => RelayLatencySource): Metric {
  const metric = {
    name,
    help,
    type: 'histogram',
    aggregator: 'sum',
    async get() {
      const values: { metricName: string; labels: Record<string, string | number>; value: number }[] = [];
      const src = source();
      for (const direction of ['inbound', 'outbound'] as const) {
        const h = src[direction];
        for (const le of bucketsS) values.push({ metricName: `${name}_bucket`, labels: { direction, le }, value: h.countAtMost(le * 1000) });
        values.push({ metricName: `${name}_bucket`, labels: { direction, le: '+Inf' }, value: h.count });
        values.push({ metricName: `${name}_sum`, labels: { direction }, value: h.sumMs / 1000 });
        values.push({ metricName: `${name}_count`, labels: { direction }, value: h.count });
      }
      return { name, help, type: 'histogram', values, aggregator: 'sum' };
    },
  };
  return metric as unknown as Metric;
}

export interface RelayLatencySource {
  inbound: LatencyHistogram;
  outbound: LatencyHistogram;
}

export interface Metrics {
  registry: Registry;
  /** Where the relay-latency histogram is read from on scrape (ended calls merged, plus live ones). */
  setRelayLatencySource(fn: () => RelayLatencySource): void;
  /** What CallSession records into (relay/turn latency, protocol errors, barge-ins, ends). */
  call: CallMetrics;
  httpRequests: Counter<'route' | 'status'>;
  signatureRejections: Counter<'route'>;
  streamsOpened: Counter;
  /** reason: rate_limited | signature | capacity | draining | error | awaiting_start (an opened stream closed 1013 past MAX_STREAMS_AWAITING_START) */
  streamsRefused: Counter<'reason'>;
  /** Malformed stream input by reason; the same series CallSession's protocolError() feeds. The server adds `oversize_frame` and `ws_protocol`. */
  malformed: Counter<'reason'>;
  /** result: backpressure (queued over the soft limit, wait for drain) | dropped (over maxBackpressure, not sent). */
  backpressure: Counter<'result'>;
  rateLimited: Counter<'kind'>;
  /** Exceptions caught around VoiceApp/StreamHandler calls (each is a bug in the call layer, never a crash). */
  handlerErrors: Counter<'handler'>;
  /** Calls' model session connects that failed for good (the call layer reports them through `call.modelConnect`). */
  modelConnectFailures: Counter;
  activeStreams: Gauge;
  /** Streams admitted, by whether the pre-warmed model session was on this instance (`hit`) or had to be opened (`miss`). */
  prewarm: Counter<'result'>;
  /** Streams admitted on their token and this instance's claim alone: the call store could not answer the claim. */
  admissionsWithoutStore: Counter;
  /** Tool calls by tool and outcome (ok, error, timeout, invalid_arguments, circuit_open). */
  toolCalls: Counter<'tool' | 'outcome'>;
  /** Tool call durations by tool, seconds. */
  toolDuration: Histogram<'tool'>;
  /** What a ToolRegistry reports into (its `onOutcome`): counts the call and observes its duration (ms). */
  toolOutcome: ToolOutcomeObserver;
  /** Every outcome of these tools a series at 0 before their first call (main.ts: the agents' tool names at start-up). */
  seedTools: (names: string[]) => void;
  /**
   * Where the call store's state is read from on scrape (main.ts: the same function as the relay's
   * `storeHealth`): `callbridge_store_queue_entries`, `callbridge_store_dropped_total`,
   * `callbridge_store_reachable` (PostgreSQL only). undefined from `fn` = those series are absent.
   */
  setStoreSource(fn: () => StoreHealth | undefined): void;
  /**
   * Where the drain's start is read from on scrape: epoch ms at which this instance began
   * draining (the first SIGTERM, or a last-resort fault), or null while it is not.
   * `callbridge_draining_seconds` is the time since then, 0 when not draining.
   */
  setDrainSource(fn: () => number | null): void;
}

export interface MetricsOptions {
  /** Node process metrics (CPU, memory, event loop) under `callbridge_`; default true. */
  processMetrics?: boolean;
  /**
   * The prices a call's cost is estimated at, by the model that served it (main.ts: config's
   * prices, PRICE_* overrides included). Default: listPrices (prices.ts plus default telephony).
   */
  prices?: (model: string | undefined) => Prices;
  /** Clock for `callbridge_draining_seconds`, epoch ms; default Date.now. */
  now?: () => number;
}

const TOOL_OUTCOMES: readonly ToolOutcomeKind[] = ['ok', 'error', 'timeout', 'invalid_arguments', 'circuit_open'];

export function createMetrics(opts: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  if (opts.processMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'callbridge_' });
  const reg = { registers: [registry] };
  // Relay-added latency is recorded once per message, in each call's own histogram; this
  // Prometheus histogram is computed from those on scrape (relayLatencySource), not fed per message.
  let relayLatencySource: () => RelayLatencySource = () => ({ inbound: new LatencyHistogram(), outbound: new LatencyHistogram() });
  registry.registerMetric(
    latencyHistogramMetric(
      'callbridge_relay_latency_seconds',
      'Relay-added latency per audio message (message in to message out), by direction; from the calls\' own histograms, accurate to 12.5 %',
      RELAY_LATENCY_BUCKETS_S,
      () => relayLatencySource(),
    ),
  );
  const turnLatency = new Histogram({
    name: 'callbridge_turn_latency_seconds',
    help: 'Caller stops speaking (speech_stopped) to the first audio frame of the answer sent to Twilio',
    buckets: [0.2, 0.4, 0.6, 0.8, 1, 1.2, 1.5, 2, 3, 5],
    ...reg,
  });
  const protocolErrors = new Counter({
    name: 'callbridge_twilio_protocol_errors_total',
    help: 'Malformed or unexpected Twilio stream messages, by reason',
    labelNames: ['reason'] as const,
    ...reg,
  });
  const modelConnectFailures = new Counter({
    name: 'callbridge_model_connect_failures_total',
    help: "Calls' model sessions that failed to connect for good (refused, timed out or unreachable after the dial's retries)",
    ...reg,
  });
  const modelConnect = new Histogram({
    name: 'callbridge_model_connect_seconds',
    help: "Calls' model session connects that succeeded, dial to a configured session (back-off retries included), seconds: the first part of a call's time to its greeting",
    buckets: [0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10],
    ...reg,
  });
  const bargeIns = new Counter({ name: 'callbridge_barge_ins_total', help: 'Caller interruptions that cleared playback', ...reg });
  const callsEnded = new Counter({
    name: 'callbridge_calls_ended_total',
    help: 'Calls ended, by reason',
    labelNames: ['reason'] as const,
    ...reg,
  });
  // Every reason is a series from the start, so the first failure shows in rate()/increase().
  for (const reason of Object.keys(END_REASONS)) callsEnded.inc({ reason }, 0);
  const callDuration = new Histogram({
    name: 'callbridge_call_duration_seconds',
    help: "Calls with a stream, from the stream's start to the call's end, seconds",
    buckets: CALL_DURATION_BUCKETS_S,
    ...reg,
  });
  const callCost = new Histogram({
    name: 'callbridge_call_cost_usd',
    help: "Estimated cost of each call with a stream, USD: its tokens at its model's prices (PRICE_* overrides included) plus telephony per started minute",
    buckets: CALL_COST_BUCKETS_USD,
    ...reg,
  });
  const costTotal = new Counter({
    name: 'callbridge_cost_usd_total',
    help: 'Estimated cost of the calls ended on this instance since start, USD (the sum of callbridge_call_cost_usd)',
    ...reg,
  });
  const pricesOf = opts.prices ?? listPrices;
  const callEnded = (reason: string, figures?: CallEndFigures) => {
    callsEnded.inc({ reason });
    if (!figures) return;
    const durationMs = Math.max(0, figures.durationMs);
    callDuration.observe(durationMs / 1000);
    const cost = estimateCostUsd(figures.usage, durationMs, pricesOf(figures.model));
    // A cost that is not a number (a broken usage report) is left out rather than poisoning the sums.
    if (!Number.isFinite(cost) || cost < 0) return;
    callCost.observe(cost);
    costTotal.inc(cost);
  };
  const recordings = new Counter({
    name: 'callbridge_recordings_total',
    help: "What became of calls' recordings, by status: complete, incomplete (cut short or not stored: the call's record says why), opted_out (the caller declined)",
    labelNames: ['status'] as const,
    ...reg,
  });
  for (const status of Object.keys(RECORDING_STATUSES)) recordings.inc({ status }, 0);
  let storeSource: () => StoreHealth | undefined = () => undefined;
  const storeHealth = (): StoreHealth | undefined => {
    try {
      return storeSource();
    } catch {
      // A source that throws must not break the scrape: its series are left out.
      return undefined;
    }
  };
  const queueOf = (h: StoreHealth | undefined) => (h === undefined ? undefined : h.kind === 'postgres' ? h.queued : 0);
  const droppedOf = (h: StoreHealth | undefined) => (h === undefined ? undefined : h.kind === 'postgres' ? h.dropped : 0);
  registry.registerMetric(
    scrapedMetric('callbridge_store_queue_entries', 'Call-store entries and status callbacks waiting to be written (PostgreSQL; 0 for SQLite, which writes at once)', 'gauge', () => queueOf(storeHealth())),
  );
  registry.registerMetric(
    scrapedMetric('callbridge_store_dropped_total', 'Call-store entries and status callbacks refused because the write queue was full, since start', 'counter', () => droppedOf(storeHealth())),
  );
  registry.registerMetric(
    scrapedMetric('callbridge_store_reachable', 'Whether the last PostgreSQL write or heartbeat succeeded (1) or failed (0); absent for SQLite', 'gauge', () => {
      const h = storeHealth();
      return h?.kind === 'postgres' ? (h.reachable ? 1 : 0) : undefined;
    }),
  );
  const now = opts.now ?? Date.now;
  let drainSource: (() => number | null) | undefined;
  registry.registerMetric(
    scrapedMetric('callbridge_draining_seconds', 'Seconds since this instance began draining (SIGTERM or a last-resort fault), 0 while it is not', 'gauge', () => {
      if (!drainSource) return undefined;
      let since: number | null;
      try {
        since = drainSource();
      } catch {
        return undefined;
      }
      return since === null ? 0 : Math.max(0, (now() - since) / 1000);
    }),
  );
  const modelLink = new Counter({
    name: 'callbridge_model_link_total',
    help: 'Model connections lost mid-call (drop), restored with the conversation replayed (reconnect), or given up on (give_up)',
    labelNames: ['what'] as const,
    ...reg,
  });
  // Seeded so that the first drop or give-up after start shows in increase() (the alerts watch both).
  for (const what of ['drop', 'reconnect', 'give_up'] satisfies Parameters<CallMetrics['modelLink']>[0][]) modelLink.inc({ what }, 0);
  const responsesFailed = new Counter({
    name: 'callbridge_responses_failed_total',
    help: "Model responses that ended failed or incomplete with the caller's turn unanswered, by status and what the call did (retry, apologize)",
    labelNames: ['status', 'action'] as const,
    ...reg,
  });
  const startsRefused = new Counter({
    name: 'callbridge_stream_starts_refused_total',
    help: 'Media Streams closed 1008 at admission, by reason: token (malformed or not for this call), expired, replayed (the call was already taken), timeout (no valid start within START_TIMEOUT_MS)',
    labelNames: ['reason'] as const,
    ...reg,
  });
  // Every reason is a series from the start, so the first refusal shows in rate()/increase().
  for (const reason of ['token', 'expired', 'replayed', 'timeout'] satisfies StartRefusal[]) startsRefused.inc({ reason }, 0);
  const toolCalls = new Counter({
    name: 'callbridge_tool_calls_total',
    help: 'Tool calls by tool and outcome: ok, error (the back end failed or answered garbage), timeout, invalid_arguments (answered to the model, never sent), circuit_open (refused while the tool\'s breaker is open); unknown tool names count as _unknown',
    labelNames: ['tool', 'outcome'] as const,
    ...reg,
  });
  const toolDuration = new Histogram({
    name: 'callbridge_tool_duration_seconds',
    help: 'Tool call durations, from dispatch to outcome, by tool',
    labelNames: ['tool'] as const,
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10],
    ...reg,
  });
  // A tool's every outcome is a series from its first call (or seedTools), so the first failure shows in rate()/increase().
  const seenTools = new Set<string>();
  const seedTool = (tool: string) => {
    if (seenTools.has(tool)) return;
    seenTools.add(tool);
    for (const o of TOOL_OUTCOMES) toolCalls.inc({ tool, outcome: o }, 0);
  };
  return {
    registry,
    setRelayLatencySource: (fn) => {
      relayLatencySource = fn;
    },
    call: {
      turnLatency: (ms) => turnLatency.observe(ms / 1000),
      protocolError: (reason) => protocolErrors.inc({ reason }),
      bargeIn: () => bargeIns.inc(),
      callEnded,
      recording: ({ status }) => recordings.inc({ status }),
      responseFailed: (status, action) => responsesFailed.inc({ status, action }),
      modelLink: (what) => modelLink.inc({ what }),
      streamStartRefused: (reason) => startsRefused.inc({ reason }),
      modelConnect: (ms, ok) => (ok ? modelConnect.observe(ms / 1000) : modelConnectFailures.inc()),
    },
    httpRequests: new Counter({ name: 'callbridge_http_requests_total', help: 'HTTP requests by route and status', labelNames: ['route', 'status'] as const, ...reg }),
    signatureRejections: new Counter({ name: 'callbridge_signature_rejections_total', help: 'Requests refused for a missing or bad X-Twilio-Signature', labelNames: ['route'] as const, ...reg }),
    streamsOpened: new Counter({ name: 'callbridge_streams_opened_total', help: 'Media Stream websockets accepted', ...reg }),
    streamsRefused: new Counter({ name: 'callbridge_streams_refused_total', help: 'Media Stream websockets refused, by reason (awaiting_start: opened, then closed as the oldest of more than MAX_STREAMS_AWAITING_START without a start)', labelNames: ['reason'] as const, ...reg }),
    malformed: protocolErrors,
    backpressure: new Counter({ name: 'callbridge_ws_backpressure_total', help: 'Media Stream sends that met backpressure, by result (backpressure = queued, dropped = over the limit)', labelNames: ['result'] as const, ...reg }),
    rateLimited: new Counter({ name: 'callbridge_rate_limited_total', help: 'Requests refused by a rate limit, by kind (http, upgrade: per client address; unsigned: failed signatures per client address; signed: signed upgrades and status callbacks per client address; caller: call set-ups per calling number)', labelNames: ['kind'] as const, ...reg }),
    handlerErrors: new Counter({ name: 'callbridge_handler_errors_total', help: 'Exceptions caught around call-layer handlers, by handler', labelNames: ['handler'] as const, ...reg }),
    modelConnectFailures,
    activeStreams: new Gauge({ name: 'callbridge_active_streams', help: 'Open Media Stream websockets', ...reg }),
    prewarm: new Counter({
      name: 'callbridge_prewarm_total',
      help: 'Streams admitted, by result: hit = the model session pre-warmed at the webhook was on this instance; miss = the stream landed elsewhere and opened its own',
      labelNames: ['result'] as const,
      ...reg,
    }),
    admissionsWithoutStore: new Counter({
      name: 'callbridge_admissions_without_store_total',
      help: 'Streams admitted on their token and this instance\'s own claim alone, because the call store could not answer the claim (single use per instance only; across instances for the outage)',
      ...reg,
    }),
    toolCalls,
    toolDuration,
    toolOutcome: (tool, outcome, durationMs) => {
      seedTool(tool);
      toolCalls.inc({ tool, outcome });
      toolDuration.observe({ tool }, durationMs / 1000);
    },
    seedTools: (names) => names.forEach(seedTool),
    setStoreSource: (fn) => {
      storeSource = fn;
    },
    setDrainSource: (fn) => {
      drainSource = fn;
    },
  };
}
