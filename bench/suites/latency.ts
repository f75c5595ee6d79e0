/**
 * Latency suite: the seed's ~1.2 s voice-to-voice budget, measured end to
 * end through the real relay (issue 21).
 *
 * Set-up per run: callbridge in a child process (bench/relay-server.ts, as
 * the relay suite runs it); the network legs simulated by a delay proxy in a
 * process of its own (bench/delay-proxy-server.ts, a TCP proxy per side):
 * the simulated Twilio callers reach the relay through the caller leg
 * (TWILIO_LEG_MS each way), the relay reaches the model stand-in through the
 * model leg (MODEL_LEG_MS each way), each chunk ± LEG_JITTER_MS, never
 * reordered. The stand-in (src/sim/model-server.ts) is set to the seed's
 * processing times: the relay's VAD silence (VAD_SILENCE_DURATION_MS, the
 * stand-in's speech_stopped) = VAD_STT_MS, first reply audio
 * GENERATION_MS + SYNTHESIS_MS after speech_stopped (its responseDelayMs).
 *
 * Measured per caller turn (src/sim/caller.ts `turnLatenciesMs`): end of
 * the caller's speech → first voiced frame received, i.e. heard (a frame
 * plays as it arrives when nothing is queued, as at a turn's start).
 * Split of it, per run, at p50 and at p95:
 * - network legs: a turn crosses each leg once each way; their sum's
 *   distribution is drawn from the delays the proxy actually applied
 *   (delay + jitter + waits behind earlier chunks) plus its measured timing
 *   error (p50 per crossing; its p50/p99 are printed beside the figures);
 * - the stand-in's processing: VAD_STT_MS (the VAD silence, counted in
 *   audio time) + speech_stopped → first delta as the stand-in measured it
 *   (GENERATION_MS + SYNTHESIS_MS plus its own timer's lateness);
 * - the relay's share = total − legs − processing at the same percentile:
 *   what the relay (hops, capacity-mode batching, pacing/playout lead of the
 *   first frame) and the simulated ends' 20 ms frame clocks add. It is a
 *   residual: a few ms of noise either way; a negative one reads as 0 in
 *   the ratio (the raw value is in `extra.rawMs`);
 * - what the relay reports itself (bench/relay-server.ts histograms):
 *   relay-added p50/p99 per audio message each way (handler entry → send
 *   done), and its own turn figure (speech_stopped received → first frame
 *   sent) less the stand-in's measured speech_stopped → first delta (both
 *   cross the model leg) = relay out + pacing of the first frame + the leg's
 *   jitter between the two. That histogram has 8 buckets an octave (~65 ms
 *   wide at 800 ms) and clamps percentiles to its max, so its mean (exact)
 *   and max are used.
 *
 * Runs: passthrough and transcode on the default edge, transcode in
 * capacity mode (INBOUND_BATCH_MS=100), and passthrough and transcode on the
 * node:http edge when uWebSockets.js is the default (availableEdges()).
 * CALLS calls (quick: QUICK_CALLS), TURNS caller turns each.
 *
 * Regression check (proposed for thresholds.json): latency.<run>.relayShare.p95
 * ÷ latency.<run>.total.p95 ≤ 0.01 — the relay's share of the budget at p95
 * as a ratio to the measured total in the same run.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { LatencySummary } from '../../src/call/stats.js';
import { availableEdges } from '../../src/server/edge.js';
import { placeCall, type CallResult, type Utterance } from '../../src/sim/caller.js';
import { startModelStandIn } from '../../src/sim/model-server.js';
import type { ProxyTimingStats } from '../delay-proxy.js';
import { pct } from '../measure.js';
import { burstEnv, scenario } from './relay.js';
import { ask, processRunqWaitNs, RELAY_CHILD_ENV, stopChild } from '../proc.js';
import type { Result, RunOptions, Suite } from '../types.js';

// ── The seed's budget (ms): change here ──────────────────────────────────
/** Twilio ↔ server, each way. */
export const TWILIO_LEG_MS = 30;
/** server ↔ model, each way. */
export const MODEL_LEG_MS = 40;
/** Uniform jitter on every chunk of every leg, ± ms (never reordering a connection's bytes). */
export const LEG_JITTER_MS = 5;
/** The model's VAD + speech-to-text: the VAD silence before speech_stopped. */
export const VAD_STT_MS = 200;
/** Generation and synthesis: speech_stopped → first reply audio sent by the stand-in. */
export const GENERATION_MS = 500;
export const SYNTHESIS_MS = 300;
/** The budget the relay's share is read against. */
export const BUDGET_MS = 1200;

const CALLS = 100;
const QUICK_CALLS = 20;
const TURNS = 3;
/**
 * A run is clean when nothing else on the box starved its parts: callers kept real time (≥ 0.9), the relay's
 * loop waited for a CPU ≤ 15 % of the time (as the relay suite), and the delay proxy forwarded 99 % of chunks
 * within PROXY_ERR_MAX_MS of their time. A disturbed run is run once more; the cleaner of the two is kept.
 */
const PROXY_ERR_MAX_MS = 5;
/** Capacity mode's INBOUND_BATCH_MS. */
const CAPACITY_BATCH_MS = 100;

const AUTH = 'bench-auth-token';
const PUBLIC = 'https://relay.bench.invalid';
const LEGS_MS = 2 * TWILIO_LEG_MS + 2 * MODEL_LEG_MS;
const PROCESSING_MS = VAD_STT_MS + GENERATION_MS + SYNTHESIS_MS;


export interface LatencySpec {
  /** Short key in result ids: pt, tc, cap, node.pt, node.tc. */
  key: string;
  mode: 'passthrough' | 'transcode';
  inboundBatchMs?: number;
  edge?: 'node';
  calls: number;
}

interface RelayStats {
  callsEnded: number;
  inbound: LatencySummary;
  outbound: LatencySummary;
  turn?: LatencySummary;
}

export interface LatencyFigures {
  spec: LatencySpec;
  edge: string;
  /** Caller turns, end of speech → first audio heard, ascending, ms. */
  turnsMs: number[];
  stats: RelayStats;
  proxy: { caller: ProxyTimingStats; model: ProxyTimingStats };
  /** Caller audio time over wall time (< 0.9: the load generator fell behind). */
  realtime: number;
  /** Share of the run the relay's loop thread waited for a CPU. */
  relayRunqShare: number;
  /** The stand-in's speech_stopped → first reply audio sent, per caller turn, ascending (its timer's own lateness included), ms. */
  generationMs: number[];
  violations: number;
}

const relayScript = fileURLToPath(new URL('../relay-server.js', import.meta.url));
const proxyScript = fileURLToPath(new URL('../delay-proxy-server.js', import.meta.url));




/** One run: `spec.calls` concurrent calls through relay + delay proxies against the stand-in. */
export async function measureLatency(spec: LatencySpec, log: (s: string) => void): Promise<LatencyFigures> {
  const dir = mkdtempSync(join(tmpdir(), 'callbridge-latency-'));
  const model = await startModelStandIn({ scenario, responseDelayMs: GENERATION_MS + SYNTHESIS_MS });
  const proxy = fork(proxyScript, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  let relay: ChildProcess | undefined;
  try {
    const legs = [
      { name: 'model', targetPort: model.port, delayMs: MODEL_LEG_MS, jitterMs: LEG_JITTER_MS, seed: 11 },
      // The caller leg's target port is known only once the relay listens: started below.
    ];
    const modelLeg = await ask<{ ports: Record<string, number> }>(proxy, { type: 'start', legs }, 'ready', 'delay proxy (model leg)');
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PORT: '0',
      HOST: '127.0.0.1',
      PUBLIC_URL: PUBLIC,
      TWILIO_AUTH_TOKEN: AUTH,
      OPENAI_BASE_URL: `http://127.0.0.1:${modelLeg.ports.model}/v1`,
      OPENAI_API_KEY: 'bench',
      AUDIO_MODE: spec.mode,
      VAD_SILENCE_DURATION_MS: String(VAD_STT_MS),
      CALLBRIDGE_DB: join(dir, 'bench.db'),
      LOG_LEVEL: 'error',
      RECORDING: 'off',
      ...burstEnv(spec.calls),
      ...RELAY_CHILD_ENV,
    };
    for (const k of ['INBOUND_BATCH_MS', 'EDGE', 'RECORDING_S3_URL', 'ADMIN_TOKEN', 'CONSOLE_TOKENS']) delete env[k];
    if (spec.inboundBatchMs !== undefined) env.INBOUND_BATCH_MS = String(spec.inboundBatchMs);
    if (spec.edge) env.EDGE = spec.edge;
    relay = fork(relayScript, [], { env, stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
    let edge = 'uWebSockets.js (default)';
    createInterface({ input: relay.stdout! }).on('line', (line) => {
      if (line.startsWith('edge:')) edge = line.slice('edge:'.length).trim();
      else process.stderr.write(`[callbridge] ${line}\n`);
    });
    const ready = await ask<{ port: number; config: Record<string, string> }>(relay, {}, 'ready', 'callbridge relay');
    if (spec.inboundBatchMs !== undefined && ready.config.inboundBatchMs !== String(spec.inboundBatchMs)) {
      throw new Error(`latency bench (${spec.key}): the relay did not take INBOUND_BATCH_MS=${spec.inboundBatchMs} (it loaded ${ready.config.inboundBatchMs ?? 'no such setting'})`);
    }
    const callerLeg = await ask<{ ports: Record<string, number> }>(
      proxy,
      { type: 'start', legs: [{ name: 'caller', targetPort: ready.port, delayMs: TWILIO_LEG_MS, jitterMs: LEG_JITTER_MS, seed: 7 }] },
      'ready',
      'delay proxy (caller leg)',
    );
    log(`latency: ${spec.calls} calls, ${spec.key} (${spec.mode}${spec.inboundBatchMs ? `, INBOUND_BATCH_MS=${spec.inboundBatchMs}` : ''}${spec.edge ? `, EDGE=${spec.edge}` : ''})…`);
    const runq0 = processRunqWaitNs(relay.pid!);
    const t0 = performance.now();
    const utterances: Utterance[] = Array.from({ length: TURNS }, () => ({ durationMs: 900 }));
    const results: CallResult[] = await Promise.all(
      Array.from({ length: spec.calls }, (_, i) =>
        placeCall({
          baseUrl: `http://127.0.0.1:${callerLeg.ports.caller}`,
          publicUrl: PUBLIC,
          authToken: AUTH,
          from: `+1555${String(i).padStart(7, '0')}`,
          utterances,
          hangupAfterMs: 500,
          maxCallMs: 60_000,
        }),
      ),
    );
    const runq1 = processRunqWaitNs(relay.pid!);
    const settleUntil = performance.now() + 3000;
    while (model.sessions.some((s) => !s.closed) && performance.now() < settleUntil) await new Promise((r) => setTimeout(r, 50));
    const proxyStats = await ask<{ legs: { caller: ProxyTimingStats; model: ProxyTimingStats } }>(proxy, { type: 'stats' }, 'stats', 'delay proxy');
    const stats = await ask<RelayStats>(relay, { type: 'stop' }, 'stats', 'callbridge relay');
    const audioMs = results.reduce((s, r) => s + r.durationMs, 0);
    // A VAD-created response starts at speech_stopped (the stand-in creates it in the same tick).
    const generationMs = model.sessions
      .flatMap((x) => x.responses.filter((r) => r.createdBy === 'vad' && r.firstDeltaAt !== undefined).map((r) => r.firstDeltaAt! - r.createdAt))
      .sort((a, b) => a - b);
    return {
      spec,
      edge,
      turnsMs: results.flatMap((r) => r.turnLatenciesMs).sort((a, b) => a - b),
      stats,
      proxy: proxyStats.legs,
      // Frames the callers skipped because this process was late: the share of call time that kept real time.
      realtime: audioMs > 0 ? 1 - results.reduce((s, r) => s + r.framesSkippedLate, 0) * 20 / audioMs : 0,
      relayRunqShare: runq0 !== undefined && runq1 !== undefined ? (runq1 - runq0) / 1e6 / (performance.now() - t0) : 0,
      violations: results.reduce((s, r) => s + r.protocolViolations.length, 0),
      generationMs,
    };
  } finally {
    if (relay) await stopChild(relay, undefined);
    await stopChild(proxy, { type: 'stop' });
    await model.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The runs of one bench: both modes on the default edge, capacity mode, and the node:http edge when uWS is the default. */
export function latencyPlan(quick: boolean): LatencySpec[] {
  const calls = quick ? QUICK_CALLS : CALLS;
  const specs: LatencySpec[] = [
    { key: 'pt', mode: 'passthrough', calls },
    { key: 'tc', mode: 'transcode', calls },
    { key: 'cap', mode: 'transcode', inboundBatchMs: CAPACITY_BATCH_MS, calls },
  ];
  if (availableEdges().includes('uws')) {
    specs.push({ key: 'node.pt', mode: 'passthrough', edge: 'node', calls }, { key: 'node.tc', mode: 'transcode', edge: 'node', calls });
  }
  return specs;
}

const LABELS: Record<string, string> = {
  pt: 'passthrough',
  tc: 'transcode',
  cap: `capacity (transcode, ${CAPACITY_BATCH_MS} ms batches)`,
  'node.pt': 'passthrough, node:http edge',
  'node.tc': 'transcode, node:http edge',
};

/**
 * The network legs of one turn, as a distribution: a turn crosses each leg
 * once each way, so its legs are the sum of two caller-leg and two model-leg
 * chunk delays. Drawn (seeded, 20,000 draws) from the delays the proxy
 * applied (delay + jitter + any wait behind an earlier chunk) plus its
 * p50 timing error per crossing; ascending, ms.
 */
function legsDistribution(f: LatencyFigures): number[] {
  const c = f.proxy.caller.appliedSample;
  const m = f.proxy.model.appliedSample;
  if (!c.length || !m.length) return [];
  let a = 0x9e3779b9;
  const rand = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const draw = (xs: number[]) => xs[Math.floor(rand() * xs.length)]!;
  const err = 2 * f.proxy.caller.errP50Ms + 2 * f.proxy.model.errP50Ms;
  const out: number[] = [];
  for (let i = 0; i < 20_000; i++) out.push(draw(c) + draw(c) + draw(m) + draw(m) + err);
  return out.sort((x, y) => x - y);
}

function resultsFor(f: LatencyFigures): Result[] {
  const k = f.spec.key;
  const label = LABELS[k] ?? k;
  const group = 'latency: end of speech → first audio heard (1.2 s budget)';
  const ns = (ms: number) => Math.round(ms * 1e6);
  const base = { suite: 'latency', group, per: 'turn', samples: f.turnsMs.length };
  const extraCommon = {
    edge: f.edge,
    realtime: Number(f.realtime.toFixed(3)),
    relayRunqShare: Number(f.relayRunqShare.toFixed(3)),
    proxyCallerErrP50Ms: Number(f.proxy.caller.errP50Ms.toFixed(3)),
    proxyCallerErrP99Ms: Number(f.proxy.caller.errP99Ms.toFixed(3)),
    proxyModelErrP50Ms: Number(f.proxy.model.errP50Ms.toFixed(3)),
    proxyModelErrP99Ms: Number(f.proxy.model.errP99Ms.toFixed(3)),
    callerLegP50Ms: Number(f.proxy.caller.appliedP50Ms.toFixed(2)),
    callerLegP95Ms: Number(f.proxy.caller.appliedP95Ms.toFixed(2)),
    modelLegP50Ms: Number(f.proxy.model.appliedP50Ms.toFixed(2)),
    modelLegP95Ms: Number(f.proxy.model.appliedP95Ms.toFixed(2)),
    generationP50Ms: Number(pct(f.generationMs, 0.5).toFixed(2)),
    generationP95Ms: Number(pct(f.generationMs, 0.95).toFixed(2)),
  };
  const out: Result[] = [];
  const legs = legsDistribution(f);
  for (const [q, name] of [
    [0.5, 'p50'],
    [0.95, 'p95'],
  ] as const) {
    const total = pct(f.turnsMs, q);
    const legsQ = pct(legs, q);
    const processingQ = VAD_STT_MS + pct(f.generationMs, q);
    const raw = total - legsQ - processingQ;
    out.push(
      { ...base, id: `latency.${k}.total.${name}`, name: `${label}: total ${name}`, medianNs: ns(total), ours: true, extra: { ...extraCommon, ms: Number(total.toFixed(1)) } },
      {
        ...base,
        id: `latency.${k}.relayShare.${name}`,
        name: `${label}: relay's share ${name}`,
        medianNs: ns(Math.max(0, raw)),
        ours: true,
        extra: { rawMs: Number(raw.toFixed(1)), legsMs: Number(legsQ.toFixed(1)), processingMs: Number(processingQ.toFixed(1)), pctOfBudget: Number(((100 * Math.max(0, raw)) / BUDGET_MS).toFixed(2)) },
        note: 'total − network legs (as the proxy applied them, + its timing error) − the stand-in’s processing (as measured), same percentile',
      },
    );
  }
  const s = f.stats;
  // speech_stopped and the first delta both cross the model leg: what is left is the stand-in's processing and the relay.
  // The relay's histogram has 8 buckets an octave (~65 ms wide at 800 ms) and clamps to its max, so its
  // percentiles are coarse here: the mean (exact) and the max are used.
  const genMean = f.generationMs.reduce((a, b) => a + b, 0) / Math.max(1, f.generationMs.length);
  const firstFrame = s.turn ? s.turn.meanMs - genMean : NaN;
  const firstFrameWorst = s.turn ? s.turn.maxMs - pct(f.generationMs, 0.5) : NaN;
  out.push(
    {
      ...base,
      id: `latency.${k}.relayHops`,
      name: `${label}: relay-added per hop (in + out)`,
      per: 'audio message',
      samples: s.inbound.count + s.outbound.count,
      medianNs: ns(s.inbound.p50Ms + s.outbound.p50Ms),
      p99Ns: ns(s.inbound.p99Ms + s.outbound.p99Ms),
      ours: true,
      extra: { inP50Ms: s.inbound.p50Ms, inP99Ms: s.inbound.p99Ms, outP50Ms: s.outbound.p50Ms, outP99Ms: s.outbound.p99Ms },
      note: 'the relay’s own histograms: handler entry → send done, each way',
    },
    {
      ...base,
      id: `latency.${k}.relayFirstFrame`,
      name: `${label}: relay speech_stopped → first frame sent, less the stand-in's measured processing`,
      samples: s.turn?.count ?? 0,
      medianNs: ns(firstFrame),
      p99Ns: ns(firstFrameWorst),
      ours: true,
      extra: {
        relayTurnMeanMs: s.turn?.meanMs ?? NaN,
        relayTurnMaxMs: s.turn?.maxMs ?? NaN,
        generationP50Ms: Number(pct(f.generationMs, 0.5).toFixed(2)),
        generationP99Ms: Number(pct(f.generationMs, 0.99).toFixed(2)),
      },
      note: 'mean (medianNs) and worst (p99Ns) of the relay’s turn histogram (speech_stopped in → first frame out) − the stand-in’s speech_stopped → first delta (mean; p50 for the worst): relay out + pacing of the first frame + the model leg’s jitter between the two',
    },
    {
      ...base,
      id: `latency.${k}.proxyError`,
      name: `${label}: delay proxy timing error per crossing (caller leg)`,
      per: 'chunk',
      samples: f.proxy.caller.chunks + f.proxy.model.chunks,
      medianNs: ns(Math.max(f.proxy.caller.errP50Ms, f.proxy.model.errP50Ms)),
      p99Ns: ns(Math.max(f.proxy.caller.errP99Ms, f.proxy.model.errP99Ms)),
      extra: { ...extraCommon },
      note: 'actual − scheduled forward time, worse of the two legs',
    },
  );
  return out;
}

async function measureOne(spec: LatencySpec, log: (s: string) => void): Promise<LatencyFigures> {
  const f = await measureLatency(spec, log);
  if (f.violations > 0) throw new Error(`latency bench (${spec.key}): simulated callers saw ${f.violations} protocol violations`);
  if (f.stats.callsEnded < spec.calls) throw new Error(`latency bench (${spec.key}): only ${f.stats.callsEnded} of ${spec.calls} calls ended`);
  if (f.turnsMs.length < spec.calls * TURNS) throw new Error(`latency bench (${spec.key}): only ${f.turnsMs.length} caller turns were answered (${spec.calls * TURNS} expected)`);
  return f;
}

const proxyErrP99 = (f: LatencyFigures) => Math.max(f.proxy.caller.errP99Ms, f.proxy.model.errP99Ms);
function isClean(f: LatencyFigures): boolean {
  return f.realtime >= 0.9 && f.relayRunqShare <= 0.15 && proxyErrP99(f) <= PROXY_ERR_MAX_MS;
}
/** How far past the clean limits a run was (0 when clean): to keep the less disturbed of two runs. */
function disturbanceScore(f: LatencyFigures): number {
  return Math.max(0, 0.9 - f.realtime) / 0.9 + Math.max(0, f.relayRunqShare - 0.15) / 0.15 + Math.max(0, proxyErrP99(f) - PROXY_ERR_MAX_MS) / PROXY_ERR_MAX_MS;
}
function disturbance(f: LatencyFigures): string {
  return `callers' realtime ${f.realtime.toFixed(2)}, relay run-queue ${f.relayRunqShare.toFixed(2)}, proxy error p99 ${proxyErrP99(f).toFixed(1)} ms`;
}

const f1 = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '—' : x.toFixed(1));

export const latencySuite: Suite = {
  name: 'latency',
  description: `the seed's 1.2 s budget end to end: callers → ${TWILIO_LEG_MS} ms leg → callbridge → ${MODEL_LEG_MS} ms leg → stand-in (VAD ${VAD_STT_MS} + generation ${GENERATION_MS} + synthesis ${SYNTHESIS_MS} ms), legs by a delay proxy process; the relay's share as ms and % of the budget; both modes, capacity mode, both edges`,
  async run(opts: RunOptions): Promise<Result[]> {
    const out: Result[] = [];
    for (const spec of latencyPlan(opts.quick)) {
      let f = await measureOne(spec, opts.log);
      if (!isClean(f)) {
        opts.log(`latency: ${spec.key} was disturbed (${disturbance(f)}); running it once more`);
        const again = await measureOne(spec, opts.log);
        if (isClean(again) || disturbanceScore(again) < disturbanceScore(f)) f = again;
      }
      const clean = isClean(f);
      opts.log(
        `latency: ${spec.key} on ${f.edge}: ${f.turnsMs.length} turns, total p50 ${f1(pct(f.turnsMs, 0.5))} p95 ${f1(pct(f.turnsMs, 0.95))} ms; proxy error p50/p99 caller ${f.proxy.caller.errP50Ms.toFixed(2)}/${f.proxy.caller.errP99Ms.toFixed(2)}, model ${f.proxy.model.errP50Ms.toFixed(2)}/${f.proxy.model.errP99Ms.toFixed(2)} ms${clean ? '' : ` (DISTURBED: ${disturbance(f)})`}`,
      );
      const rs = resultsFor(f);
      if (!clean) for (const r of rs) r.note = `DISTURBED run (${disturbance(f)}); ${r.note ?? ''}`;
      out.push(...rs);
    }
    return out;
  },
  conclusions(results: Result[]): string[] {
    const by = new Map(results.filter((r) => r.suite === 'latency').map((r) => [r.id, r]));
    const keys = ['pt', 'tc', 'cap', 'node.pt', 'node.tc'].filter((k) => by.has(`latency.${k}.total.p50`));
    if (keys.length === 0) return [];
    const ms = (id: string) => (by.get(id)?.medianNs ?? NaN) / 1e6;
    const ex = (id: string, field: string) => Number(by.get(id)?.extra?.[field]);
    const lines: string[] = [];
    lines.push(`latency: the seed's budget, measured (ms, p50 / p95; ${keys.map((k) => `${k} = ${LABELS[k]}`).join('; ')})`);
    const cols = keys.map((k) => k.padStart(13)).join(' ');
    lines.push(`  ${'leg'.padEnd(46)} ${'budget'.padStart(6)} ${cols}`);
    const row = (name: string, budget: string, cell: (k: string) => string) => lines.push(`  ${name.padEnd(46)} ${budget.padStart(6)} ${keys.map((k) => cell(k).padStart(13)).join(' ')}`);
    const pair = (k: string, id: string, f50: string, f95: string) => `${f1(ex(`latency.${k}.${id}`, f50))} / ${f1(ex(`latency.${k}.${id}`, f95))}`;
    const callerLeg = (k: string) => pair(k, 'proxyError', 'callerLegP50Ms', 'callerLegP95Ms');
    const modelLeg = (k: string) => pair(k, 'proxyError', 'modelLegP50Ms', 'modelLegP95Ms');
    row('Twilio → server (proxy, delay applied)', String(TWILIO_LEG_MS), callerLeg);
    row('server → model (proxy)', String(MODEL_LEG_MS), modelLeg);
    row('VAD + STT (stand-in VAD silence)', String(VAD_STT_MS), () => `${VAD_STT_MS} (set)`);
    row('generation + synthesis (stand-in, measured)', `${GENERATION_MS}+${SYNTHESIS_MS}`, (k) => pair(k, 'proxyError', 'generationP50Ms', 'generationP95Ms'));
    row('model → server (proxy)', String(MODEL_LEG_MS), modelLeg);
    row('server → Twilio (proxy)', String(TWILIO_LEG_MS), callerLeg);
    row('network legs of a turn (4 crossings + proxy err)', String(LEGS_MS), (k) => pair(k, 'relayShare.p50', 'legsMs', 'legsMs').replace(/ \/ .*/, '') + ` / ${f1(ex(`latency.${k}.relayShare.p95`, 'legsMs'))}`);
    row('proxy timing error per crossing (p50 / p99)', '', (k) => `${f1(ms(`latency.${k}.proxyError`))} / ${f1((by.get(`latency.${k}.proxyError`)?.p99Ns ?? NaN) / 1e6)}`);
    row('relay, reported: per hop in+out (p50 / p99)', '', (k) => `${f1(ms(`latency.${k}.relayHops`))} / ${f1((by.get(`latency.${k}.relayHops`)?.p99Ns ?? NaN) / 1e6)}`);
    row('relay, reported: first frame wait (mean / worst)', '', (k) => `${f1(ms(`latency.${k}.relayFirstFrame`))} / ${f1((by.get(`latency.${k}.relayFirstFrame`)?.p99Ns ?? NaN) / 1e6)}`);
    row("relay's share = total − legs − processing", '', (k) => `${f1(ex(`latency.${k}.relayShare.p50`, 'rawMs'))} / ${f1(ex(`latency.${k}.relayShare.p95`, 'rawMs'))}`);
    row("relay's share, % of the 1.2 s budget", '', (k) => `${ex(`latency.${k}.relayShare.p50`, 'pctOfBudget').toFixed(2)}% / ${ex(`latency.${k}.relayShare.p95`, 'pctOfBudget').toFixed(2)}%`);
    row('total: end of speech → first audio heard', String(LEGS_MS + PROCESSING_MS), (k) => `${f1(ms(`latency.${k}.total.p50`))} / ${f1(ms(`latency.${k}.total.p95`))}`);
    lines.push(
      `  relay's share p95 ÷ total p95 (target ≤ 1 %, check ≤ 2.5 %): ${keys.map((k) => `${k} ${((100 * ms(`latency.${k}.relayShare.p95`)) / ms(`latency.${k}.total.p95`)).toFixed(2)}%`).join(', ')}`,
    );
    return lines;
  },
};
