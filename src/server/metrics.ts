/**
 * Prometheus metrics (prom-client), one Registry per server instance so tests
 * can run many servers in one process. Importing this file does not load
 * uWebSockets.js. `call` is the CallMetrics face the call layer records into.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type Metric } from 'prom-client';
import type { CallMetrics, StartRefusal } from '../call/ports.js';
import { LatencyHistogram } from '../call/stats.js';
import type { ToolOutcomeKind, ToolOutcomeObserver } from '../tools/registry.js';

const RELAY_LATENCY_BUCKETS_S = [0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05];

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
  /** Model session connects that failed (timeout, refused, handshake error): for the call layer to record. */
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
}

const TOOL_OUTCOMES: readonly ToolOutcomeKind[] = ['ok', 'error', 'timeout', 'invalid_arguments', 'circuit_open'];

export function createMetrics(opts: { processMetrics?: boolean } = {}): Metrics {
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
  const bargeIns = new Counter({ name: 'callbridge_barge_ins_total', help: 'Caller interruptions that cleared playback', ...reg });
  const callsEnded = new Counter({
    name: 'callbridge_calls_ended_total',
    help: 'Calls ended, by reason',
    labelNames: ['reason'] as const,
    ...reg,
  });
  const modelLink = new Counter({
    name: 'callbridge_model_link_total',
    help: 'Model connections lost mid-call (drop), restored with the conversation replayed (reconnect), or given up on (give_up)',
    labelNames: ['what'] as const,
    ...reg,
  });
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
      callEnded: (reason) => callsEnded.inc({ reason }),
      responseFailed: (status, action) => responsesFailed.inc({ status, action }),
      modelLink: (what) => modelLink.inc({ what }),
      streamStartRefused: (reason) => startsRefused.inc({ reason }),
    },
    httpRequests: new Counter({ name: 'callbridge_http_requests_total', help: 'HTTP requests by route and status', labelNames: ['route', 'status'] as const, ...reg }),
    signatureRejections: new Counter({ name: 'callbridge_signature_rejections_total', help: 'Requests refused for a missing or bad X-Twilio-Signature', labelNames: ['route'] as const, ...reg }),
    streamsOpened: new Counter({ name: 'callbridge_streams_opened_total', help: 'Media Stream websockets accepted', ...reg }),
    streamsRefused: new Counter({ name: 'callbridge_streams_refused_total', help: 'Media Stream websockets refused, by reason (awaiting_start: opened, then closed as the oldest of more than MAX_STREAMS_AWAITING_START without a start)', labelNames: ['reason'] as const, ...reg }),
    malformed: protocolErrors,
    backpressure: new Counter({ name: 'callbridge_ws_backpressure_total', help: 'Media Stream sends that met backpressure, by result (backpressure = queued, dropped = over the limit)', labelNames: ['result'] as const, ...reg }),
    rateLimited: new Counter({ name: 'callbridge_rate_limited_total', help: 'Requests refused by a rate limit, by kind (http, upgrade: per client address; unsigned: failed signatures per client address; signed: signed upgrades and status callbacks per client address; caller: call set-ups per calling number)', labelNames: ['kind'] as const, ...reg }),
    handlerErrors: new Counter({ name: 'callbridge_handler_errors_total', help: 'Exceptions caught around call-layer handlers, by handler', labelNames: ['handler'] as const, ...reg }),
    modelConnectFailures: new Counter({ name: 'callbridge_model_connect_failures_total', help: 'Realtime model sessions that failed to connect', ...reg }),
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
  };
}
