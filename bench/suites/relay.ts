/**
 * Relay suite: callbridge's relay against a naive relay (bench/peers/
 * naive-relay.ts) under the same load, in the same run, with a floor relay
 * (bench/peers/floor-relay.ts: callbridge's edge and model writer, no call
 * logic) beside them: what this design costs before any call logic.
 *
 * Load: N concurrent simulated Twilio calls (src/sim/caller.ts: one 20 ms
 * µ-law frame every 20 ms, marks echoed, received audio played in real time)
 * against the model stand-in (src/sim/model-server.ts: server VAD, scripted
 * replies streamed 4× faster than real time), both in this process; the
 * relay under test in its own child process, so what is read about it
 * (bench/proc.ts) is its own: CPU of all its threads, write syscalls.
 *
 * Runs (full): for each of passthrough and transcode, the naive relay and
 * callbridge at 100 calls, interleaved, ROUNDS times (the order flips each
 * round), the floor relay in each round too (passthrough per frame beside
 * the passthrough pair; transcode per frame and capacity mode = transcode
 * with 100 ms appends beside the transcode pair); callbridge in capacity
 * mode (INBOUND_BATCH_MS=100, transcode);
 * callbridge at 300 calls in transcode (one turn per call) with the relay
 * pinned to CPU 0 and this process (the load generator) to CPU 1; callbridge
 * in transcode at 100 calls while a flood of forged webhooks arrives
 * (bench/flood.ts, its own process: FLOOD_PER_S a second from 127.0.0.2,
 * bounded in count and time), read against the transcode runs without it;
 * callbridge in transcode with every call recorded (RECORDING=on, issue 17)
 * and with the console's live view open (issue 18), in each round beside
 * the transcode pair, read against cb.tc;
 * callbridge with PROVIDER=live against the GPT-Live stand-in in each round,
 * each mode beside the Realtime pair (issue 20: CPU per call-second Live ÷
 * Realtime, relay-added latency both providers); after the rounds, barge-in
 * calls on each provider, audio at real time (caller's onset → last frame of
 * the old answer heard, see bargeInFigure);
 * in each round, callbridge and the floor relay side by side (measurePair:
 * both at 100 calls in the same seconds, each with its own caller workers and
 * stand-in process), passthrough and transcode per frame: issue 21's
 * callbridge ÷ floor is read from these, since this box's CPU time moves
 * more between runs minutes apart than the ratio's margin;
 * then one more run of any configuration that had no clean run (isClean:
 * nothing else on the box starved the callers or the relay), twice at most
 * (not the pinned or the flood run).
 *
 * Figures per relay and mode, from its clean runs (all runs, flagged, if none):
 * - CPU per call-second: relay process CPU (user+sys of all threads, from
 *   /proc) over call-seconds = caller frames sent / 50; median over runs.
 *   Ratio = callbridge (or floor) ÷ naive, same mode (capacity: ÷ naive
 *   transcode), same bench run; and callbridge ÷ floor, same mode and batch
 *   (issue 21's restated targets, in the conclusions: see floorLine; per
 *   frame, from the side-by-side runs).
 * - relay-added latency per audio message, each way, measured inside each
 *   relay at the same points (message handler entry → outgoing send done)
 *   with the same histogram; p50/p99 = median over runs of each run's.
 * - messages per call-second, per direction, counted at the simulated ends
 *   (bench/wire-count.ts): caller→relay, relay→model, model→relay, relay→caller.
 * - write syscalls per call-second of the relay process (perf, bench/proc.ts).
 * - stalls: responses cancelled by an unscripted barge-in (see RunFigures.cancelled).
 * - under flood: relay-added p99 each way with the flood ÷ without it (the
 *   cb.tc runs of the same bench run), the denominator at least
 *   FLOOD_P99_FLOOR_MS (see bench/thresholds.json relay.flood.*); the
 *   flood's own figures (sent, answered by status, skipped) beside them.
 * - frames lost: inbound, caller media frames sent vs audio the stand-in
 *   received; outbound, audio the stand-in sent vs audio the callers
 *   received; in 20 ms frames, summed over calls, each call's remainder
 *   under one frame not counted (resampler delay lines hold a few ms back).
 */
import { availableEdges } from '../../src/server/edge.js';
import { fork } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { placeCall, type CallResult, type Utterance } from '../../src/sim/caller.js';
import { startModelStandIn, type StandInResponse, type StandInSession } from '../../src/sim/model-server.js';
import { startLiveStandIn } from '../../src/sim/live-server.js';
import { scenarioOf, type Scenario } from '../../src/sim/scenarios.js';
import type { LatencySummary } from '../../src/call/stats.js';
import { countWriteSyscalls, perfAvailable, pin, processCpuUs, processRunqWaitNs, processSyscw, RELAY_CHILD_ENV, stopChild } from '../proc.js';
import { median, pct } from '../measure.js';
import { installWireCounter, resetWireCounts, wireCounts, type WireCounts } from '../wire-count.js';
import { watchConsole } from '../console-watcher.js';
import { loadgenPool } from '../loadgen.js';
import { standInProcess } from '../loadgen-model.js';
import type { Result, RunOptions, Suite } from '../types.js';
import { FRAME_MS } from '../../src/dsp/format.js';

/** Forged webhooks a second in the flood run (issue 22 item 3). */
export const FLOOD_PER_S = 1000;

const AUTH = 'bench-auth-token';
/** ADMIN_TOKEN of the console runs: the watcher signs in with it. */
const CONSOLE_TOKEN = 'bench-console-token-0123456789';
const PUBLIC = 'https://relay.bench.invalid';

/** The relay bench's conversation (three turns after a greeting); the latency suite holds calls to the same one. */
export const scenario: Scenario = {
  greeting: 'Hello, how can I help?',
  turns: [
    { callerTranscript: 'check my coverage please', reply: 'Sure, can I get the member ID?' },
    { callerTranscript: 'M B 1 2 3 4 5 6', reply: 'Thanks, and the date of birth?' },
    { callerTranscript: 'March fifth 1980', reply: 'You are covered. Anything else?' },
  ],
};

export type RelayKind = 'callbridge' | 'naive' | 'floor';
export type AudioMode = 'passthrough' | 'transcode';

export interface RunSpec {
  relay: RelayKind;
  mode: AudioMode;
  calls: number;
  utterances: number;
  /** Capacity mode: INBOUND_BATCH_MS for callbridge's and the floor relay (ignored by the naive relay). */
  inboundBatchMs?: number;
  /** Pin the relay to CPU 0 and this process to CPU 1 for the run. */
  pinned?: boolean;
  /**
   * Calls placed (one utterance each, from this process) before the measured window opens, and not
   * counted in it: a relay in production is a long-running process whose code has long been compiled
   * and optimised, so CPU per call-second is read at that steady state, not over a fresh process's
   * first calls (V8's lazy parsing, baseline code and optimising compiles, seen on this box as 0.15x of
   * callbridge's CPU in a cold 100-call run; the floor relay, with less code, pays less of it).
   */
  warmupCalls?: number;
  /** callbridge's server edge (EDGE): default = the best that loads (native uWS where it does). */
  edge?: 'node';
  /** Forged webhooks a second (bench/flood.ts) for the length of the calls. */
  flood?: number;
  /** Record every call (RECORDING=on, a directory in the run's temporary folder): issue 17's cost figures. */
  recording?: boolean;
  /** An operator has the console's live view open for the whole run (bench/console-watcher.ts): issue 18's cost. */
  console?: boolean;
  /**
   * One of two runs measured at the same time (measurePair): each awaits this once its warm-up is
   * quiet, and both measured windows open together. The pair's callers and stand-ins are processes
   * of their own (the wire counts of this process are shared by both runs).
   */
  gate?: () => Promise<void>;
  /** Who places the calls (default: src/sim/caller.ts placeCall for each, in this process; bench/loadgen.ts: worker processes). */
  callers?: CallerPool;
  /** Starts the model stand-in for the run (default: startModelStandIn in this process; bench/loadgen-model.ts: its own process). */
  standIn?: (scenario: Scenario) => Promise<StandInView>;
  /**
   * The voice model (issue 20): default the Realtime stand-in (src/sim/model-server.ts); 'live' =
   * PROVIDER=live against the GPT-Live stand-in (src/sim/live-server.ts, same scenario, same 4× audio).
   */
  provider?: 'live';
  /**
   * Barge-in calls (issue 20) instead of the relay script: the caller talks over a long answer
   * (bargeInScenario, bargeInUtterances); both stand-ins send audio at real time, so the Live model
   * itself yields. Read for RunFigures.bargeInMs, not for CPU (runs with barge-ins are not in the table).
   */
  bargeIn?: boolean;
}

/**
 * What measureRelay reads of the model stand-in (a ModelStandIn is one). A
 * stand-in in another process brings its figures up to date in `refresh`
 * and adds the model-side wire counts this process's counter cannot see.
 */
export interface StandInView {
  baseUrl: string;
  sessions: readonly (Pick<StandInSession, 'closed' | 'audioMsReceived'> & { events: { length: number }; responses: readonly Pick<StandInResponse, 'status' | 'audioMsSent'>[] })[];
  counts?: Pick<WireCounts, 'modelSent' | 'modelReceived'>;
  refresh?(): Promise<void>;
  close(): Promise<void>;
}

/** What measureRelay reads of each call (src/sim/caller.ts CallResult has these and more). */
export type CallOutcome = Pick<CallResult, 'durationMs' | 'protocolViolations' | 'turnLatenciesMs' | 'frameSizes'>;
/** Where and how the calls of a run go. */
export interface PlaceTarget {
  baseUrl: string;
  publicUrl: string;
  authToken: string;
  calls: number;
  /** Each utterance's length, ms. */
  utterances: number[];
  hangupAfterMs: number;
  maxCallMs: number;
}
/** Places a run's calls outside this process: their outcomes and the caller-side wire counts (this process's counter does not see them). */
export interface CallerPool {
  place(target: PlaceTarget): Promise<{ results: CallOutcome[]; counts: Pick<WireCounts, 'callerSent' | 'callerMediaSent' | 'callerReceived'> }>;
}

/** Barge-in calls (spec.bargeIn): greeting, a question with a ~6 s answer, then the caller talks over it. */
export const bargeInScenario: Scenario = scenarioOf(
  [
    { callerTranscript: 'tell me', reply: 'Here is a long answer that goes on for a while, so that the caller has something to talk over while it plays out to the end.' },
    { callerTranscript: 'wait', reply: 'Yes?' },
  ],
  'Hi.',
);
/** The caller of a barge-in call: a question, then 0.7 s of speech 1.2 s into the answer (caller clock). */
export const bargeInUtterances: Utterance[] = [{ durationMs: 700 }, { durationMs: 700, bargeInAfterMs: 1200 }];

/** What the flood process reports (bench/flood.ts). */
export interface FloodFigures {
  sent: number;
  answered: number;
  statuses: Record<string, number>;
  errors: number;
  lastError: string;
  skipped: number;
  elapsedMs: number;
}

interface ChildStats {
  callsEnded: number;
  inbound: LatencySummary;
  outbound: LatencySummary;
  turn?: LatencySummary;
  /** Model session connects, dial to answer, ms (src/call/relay.ts Relay.modelConnect; the floor relay times its model socket the same way). */
  modelConnect?: LatencySummary;
}

export interface RunFigures {
  spec: RunSpec;
  node: string;
  edge: string;
  /** Settings the relay reported it loaded (see bench/relay-server.ts). */
  config: Record<string, string>;
  /** Caller media frames sent × 20 ms, s (see measureRelay). */
  callSeconds: number;
  /** callSeconds over the calls' summed wall durations: < 1 when the load generator fell behind real time. */
  realtime: number;
  /** Share of the measured wall time the relay's event-loop thread waited for a CPU (starved by other work); 0 if unknown. */
  relayRunqShare: number;
  wallMs: number;
  cpuUs: number;
  /** Write-family syscalls by name (perf), or undefined without perf. */
  syscalls?: Record<string, number>;
  /** /proc/<pid>/io syscw delta (write/writev only). */
  syscw?: number;
  counts: WireCounts;
  stats: ChildStats;
  violations: number;
  callerTurnsMs: number[];
  framesLostIn: number;
  framesLostOut: number;
  /**
   * Responses the stand-in cancelled on barge-in. The script has none: the
   * caller only speaks after 400 ms of silence from the relay, so each one
   * is an outbound stall ≥ 400 ms (e.g. a starved relay).
   */
  cancelled: number;
  /** The flood process's figures (flood runs only). */
  flood?: FloodFigures;
  /**
   * Barge-in runs: per barge-in, the caller's speech onset → the last frame it heard of the old
   * answer (the clear's arrival, or the end of its playback if that came first), ms; see bargeInFigure.
   */
  bargeInMs?: number[];
  /** Barge-ins during which no old answer was playing (it had ended before the caller spoke). */
  bargeInNothingPlaying?: number;
  /** Live barge-in runs: the stand-in's own onset → yield per yield (its VAD + yieldMs), ms. */
  modelYieldMs?: number[];
}

/**
 * One barge-in from the caller's side: onset (bargeIns[].speechStartMs) → the last frame of the old
 * answer heard: the end of the playback run(s) that were playing at the onset or started before the
 * clear, capped at the clear's arrival. undefined when nothing of the old answer played after the onset.
 */
export function bargeInFigure(r: Pick<CallResult, 'playback' | 'bargeIns'>, b: CallResult['bargeIns'][number]): number | undefined {
  const until = b.clearAtMs ?? Infinity;
  // Runs of the old answer: playing at the onset, or started after it but before the clear (a gap in pacing).
  const old = r.playback.filter((p) => p.endMs > b.speechStartMs && p.startMs < until && (b.clearAtMs !== undefined || p.startMs <= b.speechStartMs));
  if (!old.length) return undefined;
  return Math.min(until, Math.max(...old.map((p) => p.endMs))) - b.speechStartMs;
}

/** What a run reads from either stand-in, the same way for both (see measureRelay). */
export interface StandInReader {
  /** OPENAI_BASE_URL for the relay. */
  baseUrl: string;
  anyOpen(): boolean;
  /** Client events the stand-in recorded (the wire counter must agree). */
  eventsRecorded(): number;
  /** Caller audio received, ms. */
  audioMsReceived(): number;
  /** Audio of answers spoken to the end (not cut by a barge-in), ms. */
  completedAudioMs(): number;
  /** Answers cut short: Realtime responses cancelled; Live utterances the model yielded. */
  cancelled(): number;
  /** Live: onset → yield per yield, ms. */
  yieldsMs?(): number[];
  /** A stand-in in another process: bring its figures up to date, and its model-side wire counts. */
  refresh?(): Promise<void>;
  counts?: Pick<WireCounts, 'modelSent' | 'modelReceived'>;
  close(): Promise<void>;
}

/** A StandInView (the Realtime stand-in, here or in another process: spec.standIn) read as the run reads either stand-in. */
function readerOf(view: StandInView): StandInReader {
  const ss = () => view.sessions;
  return {
    baseUrl: view.baseUrl,
    anyOpen: () => ss().some((s) => !s.closed),
    eventsRecorded: () => ss().reduce((n, s) => n + s.events.length, 0),
    audioMsReceived: () => ss().reduce((n, s) => n + s.audioMsReceived, 0),
    completedAudioMs: () => ss().reduce((n, s) => n + s.responses.reduce((a, r) => a + (r.status === 'completed' ? r.audioMsSent : 0), 0), 0),
    cancelled: () => ss().reduce((n, s) => n + s.responses.filter((r) => r.status === 'cancelled').length, 0),
    refresh: view.refresh ? () => view.refresh!() : undefined,
    get counts() {
      return view.counts;
    },
    close: () => view.close(),
  };
}

async function startStandIn(spec: RunSpec): Promise<StandInReader> {
  const scen = spec.bargeIn ? bargeInScenario : scenario;
  // Barge-in runs: audio at real time, so the answer is still being generated when the caller talks over it.
  const audioSpeedup = spec.bargeIn ? 1 : undefined;
  if (spec.provider === 'live') {
    const live = await startLiveStandIn({ scenario: scen, audioSpeedup });
    const ss = live.sessions;
    return {
      baseUrl: live.url,
      anyOpen: () => ss.some((s) => !s.closed),
      eventsRecorded: () => ss.reduce((n, s) => n + s.events.length, 0),
      audioMsReceived: () => ss.reduce((n, s) => n + s.audioMsReceived, 0),
      completedAudioMs: () => ss.reduce((n, s) => n + s.spoken.reduce((a, u) => a + (u.yielded ? 0 : u.audioMs), 0), 0),
      cancelled: () => ss.reduce((n, s) => n + s.spoken.filter((u) => u.yielded).length, 0),
      yieldsMs: () => ss.flatMap((s) => s.yields.map((y) => y.at - y.onsetAt)),
      close: () => live.close(),
    };
  }
  const model = await startModelStandIn({ scenario: scen, audioSpeedup });
  const ss = model.sessions;
  return {
    baseUrl: model.baseUrl,
    anyOpen: () => ss.some((s) => !s.closed),
    eventsRecorded: () => ss.reduce((n, s) => n + s.events.length, 0),
    audioMsReceived: () => ss.reduce((n, s) => n + s.audioMsReceived, 0),
    completedAudioMs: () => ss.reduce((n, s) => n + s.responses.reduce((a, r) => a + (r.status === 'completed' ? r.audioMsSent : 0), 0), 0),
    cancelled: () => ss.reduce((n, s) => n + s.responses.filter((r) => r.status === 'cancelled').length, 0),
    close: () => model.close(),
  };
}

const RELAY_SCRIPTS: Record<RelayKind, string> = {
  callbridge: '../relay-server.js',
  naive: '../peers/naive-relay-server.js',
  floor: '../peers/floor-relay-server.js',
};
const relayScript = (relay: RelayKind): string => fileURLToPath(new URL(RELAY_SCRIPTS[relay], import.meta.url));
const floodScript = fileURLToPath(new URL('../flood.js', import.meta.url));

/** Start the flood process against `port`: its stop() resolves with its figures. Bounded to `maxMs` whatever happens here. */
async function startFlood(port: number, ratePerS: number, maxMs: number): Promise<{ stop(): Promise<FloodFigures> }> {
  const child = fork(floodScript, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const done = new Promise<FloodFigures>((resolve, reject) => {
    child.on('message', (m: FloodFigures & { type: string }) => m.type === 'done' && resolve(m));
    child.once('exit', (code) => reject(new Error(`flood process exited (${code}) before reporting`)));
  });
  done.catch(() => {}); // awaited in stop()
  await new Promise<void>((resolve, reject) => {
    child.on('message', (m: { type: string }) => m.type === 'started' && resolve());
    child.once('exit', (code) => reject(new Error(`flood process exited early (${code})`)));
    child.send({ type: 'start', port, ratePerS, maxMs });
  });
  return {
    async stop() {
      if (child.connected) child.send({ type: 'stop' });
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      try {
        return await done;
      } finally {
        clearTimeout(t);
      }
    },
  };
}

/**
 * measurePair's gate: `gate()` resolves for both callers once the second has called it; `fail(e)`
 * rejects every call, waiting or to come (a run that failed releases its partner). Exported for its test.
 */
export function pairGate(): { gate: () => Promise<void>; fail: (e: Error) => void } {
  let arrived = 0;
  let open!: () => void;
  let reject!: (e: Error) => void;
  const opened = new Promise<void>((res, rej) => {
    open = res;
    reject = rej;
  });
  opened.catch(() => {});
  return {
    gate: () => {
      if (++arrived === 2) open();
      return opened;
    },
    fail: (e) => reject(e),
  };
}

/**
 * Two runs measured side by side: both relays take their calls at the same time, their windows
 * opened together (RunSpec.gate), each with its own caller workers and stand-in process. CPU time on
 * this box moves with what else its host runs (the same configuration read 1.66 and then 2.72 ms per
 * call-second in consecutive runs); two relays measured in the same seconds see the same host, so
 * their ratio holds to a few percent where consecutive runs' ratios spread by a third. If one run
 * fails, the other is released from the gate and fails too; the first error is thrown once both
 * have cleaned up.
 */
export async function measurePair(a: RunSpec, b: RunSpec, log: (s: string) => void): Promise<[RunFigures, RunFigures]> {
  const g = pairGate();
  const run = (spec: RunSpec): Promise<RunFigures> =>
    measureRelay({ ...spec, gate: g.gate, callers: loadgenPool(), standIn: standInProcess() }, log).catch((e: unknown) => {
      g.fail(new Error(`the other run of the pair failed (${describe(spec)})`));
      throw e;
    });
  const [ra, rb] = await Promise.allSettled([run(a), run(b)]);
  if (ra.status === 'rejected') throw ra.reason;
  if (rb.status === 'rejected') throw rb.reason;
  return [ra.value, rb.value];
}

/**
 * The relay child's caps for `calls` calls set up at once from one address: the
 * concurrent-call cap, the calls waiting for their stream, the streams awaiting
 * `start` (all open in one burst) and the per-address limiter must not refuse
 * the load. Shared by every suite that forks a relay.
 */
export function burstEnv(calls: number): Record<string, string> {
  return {
    MAX_CONCURRENT_CALLS: String(calls * 2),
    MAX_PENDING_CALLS: String(calls * 2),
    MAX_STREAMS_AWAITING_START: String(calls * 2),
    RATE_LIMIT_BURST: String(Math.max(500, calls * 4)),
    RATE_LIMIT_PER_SECOND: String(Math.max(200, calls * 4)),
  };
}

/** One bench run: `spec.calls` concurrent calls through one relay process. */
export async function measureRelay(spec: RunSpec, log: (s: string) => void): Promise<RunFigures> {
  installWireCounter();
  resetWireCounts();
  const dir = mkdtempSync(join(tmpdir(), 'callbridge-bench-'));
  let model: StandInReader = spec.standIn ? readerOf(await spec.standIn(scenario)) : await startStandIn(spec);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: '0',
    HOST: '127.0.0.1',
    PUBLIC_URL: PUBLIC,
    TWILIO_AUTH_TOKEN: AUTH,
    OPENAI_BASE_URL: model.baseUrl,
    OPENAI_API_KEY: 'bench',
    PROVIDER: spec.provider ?? 'realtime',
    AUDIO_MODE: spec.mode,
    CALLBRIDGE_DB: join(dir, 'bench.db'),
    LOG_LEVEL: 'error',
    ...burstEnv(spec.calls),
    ...RELAY_CHILD_ENV,
  };
  if (spec.inboundBatchMs !== undefined) env.INBOUND_BATCH_MS = String(spec.inboundBatchMs);
  else delete env.INBOUND_BATCH_MS;
  if (spec.edge) env.EDGE = spec.edge;
  else delete env.EDGE;
  delete env.RECORDING_S3_URL;
  if (spec.recording) Object.assign(env, { RECORDING: 'on', RECORDING_KEY: '6b'.repeat(32), RECORDING_DIR: join(dir, 'recordings') });
  else env.RECORDING = 'off';
  delete env.CONSOLE_TOKENS;
  if (spec.console) env.ADMIN_TOKEN = CONSOLE_TOKEN;
  else delete env.ADMIN_TOKEN;
  const child = fork(relayScript(spec.relay), [], { env, stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  // The floor relay prints its edge line as callbridge does.
  let edge = spec.relay === 'naive' ? 'ws (npm) on node:http' : 'uWebSockets.js (default)';
  createInterface({ input: child.stdout! }).on('line', (line) => {
    if (line.startsWith('edge:')) edge = line.slice('edge:'.length).trim();
    else process.stderr.write(`[${spec.relay}] ${line}\n`);
  });
  let pinnedSelf = false;
  try {
    const ready = await new Promise<{ port: number; node: string; config: Record<string, string> }>((resolve, reject) => {
      child.once('message', (m: { type: string; port: number; node: string; config: Record<string, string> }) =>
        m.type === 'ready' ? resolve(m) : reject(new Error('bad ready')),
      );
      child.once('exit', (code) => reject(new Error(`${spec.relay} relay exited early (${code})`)));
    });
    const pid = child.pid!;
    if (spec.pinned) {
      pin(pid, '0');
      pin(process.pid, '1');
      pinnedSelf = true;
    }
    if (spec.warmupCalls) await warmUp(spec, ready.port, model);
    // The window opens once the warm-up is quiet and, side by side, once the partner is there too:
    // this process's wire counts start again and the reader counts from here on.
    if (spec.warmupCalls || spec.gate) {
      await spec.gate?.();
      model = await countingFromNow(model);
    }
    const label = `${spec.relay} ${spec.mode}${spec.inboundBatchMs ? ` INBOUND_BATCH_MS=${spec.inboundBatchMs}` : ''}${spec.pinned ? ' pinned' : ''}`;
    log(`relay: ${spec.calls} calls, ${label}…`);
    const cpu0 = processCpuUs(pid);
    const syscw0 = processSyscw(pid);
    const runq0 = processRunqWaitNs(pid);
    const perf = countWriteSyscalls(pid);
    // Bounded: at most the calls' own limit (maxCallMs below) plus set-up.
    const flood = spec.flood ? await startFlood(ready.port, spec.flood, 70_000) : undefined;
    const watch = spec.console ? await watchConsole(ready.port, CONSOLE_TOKEN) : undefined;
    const t0 = performance.now();
    const utterances: Utterance[] = spec.bargeIn ? bargeInUtterances : Array.from({ length: spec.utterances }, () => ({ durationMs: 900 }));
    const placed = spec.callers
      ? await spec.callers.place({ baseUrl: `http://127.0.0.1:${ready.port}`, publicUrl: PUBLIC, authToken: AUTH, calls: spec.calls, utterances: utterances.map((u) => u.durationMs!), hangupAfterMs: 500, maxCallMs: 60_000 })
      : undefined;
    // Calls placed here (not by a pool) give full CallResults: barge-in runs read their playback.
    const local: CallResult[] | undefined = placed ? undefined : await Promise.all(
      Array.from({ length: spec.calls }, (_, i) =>
        placeCall({
          baseUrl: `http://127.0.0.1:${ready.port}`,
          publicUrl: PUBLIC,
          authToken: AUTH,
          from: `+1555${String(i).padStart(7, '0')}`,
          utterances,
          hangupAfterMs: spec.bargeIn ? 1200 : 500,
          maxCallMs: 60_000,
        }),
      ),
    );
    const results: CallOutcome[] = placed?.results ?? local!;
    const wallMs = performance.now() - t0;
    const floodFigures = await flood?.stop();
    const watched = await watch?.stop();
    if (watch && (!watched || watched.events < Math.floor(wallMs / 1000) - 2)) {
      throw new Error(`relay bench (${describe(spec)}): the console live view got ${watched?.events ?? 0} events in ${Math.round(wallMs / 1000)} s`);
    }
    // Let the relay finish each call's teardown (model sockets, records) inside the measured window.
    await settle(model);
    await model.refresh?.();
    const cpuUs = processCpuUs(pid) - cpu0;
    const runq1 = processRunqWaitNs(pid);
    const measuredMs = performance.now() - t0;
    const syscw1 = processSyscw(pid);
    const syscalls = await perf.stop();
    const counts = wireCounts();
    if (placed) for (const k of ['callerSent', 'callerMediaSent', 'callerReceived'] as const) counts[k] += placed.counts[k];
    if (model.counts) for (const k of ['modelSent', 'modelReceived'] as const) counts[k] += model.counts[k];
    const stats = await new Promise<ChildStats>((resolve, reject) => {
      child.once('message', (m: ChildStats & { type: string }) => (m.type === 'stats' ? resolve(m) : reject(new Error('bad stats'))));
      child.send({ type: 'stop' });
    });

    // A call-second is 50 caller frames: the audio the relay actually had to carry. A starved
    // load generator sends fewer frames than wall time (and stretches the calls); dividing by
    // wall time would then make every relay look cheaper.
    const callSeconds = (counts.callerMediaSent * FRAME_MS) / 1000;
    if (counts.callerMediaSent === 0) throw new Error('wire counter saw no caller media frames (does src/sim/caller.ts still send {"event":"media",…} first-key JSON?)');
    // The counter must agree with what the stand-in itself recorded (every client event it parsed).
    const standInEvents = model.eventsRecorded();
    if (counts.modelReceived !== standInEvents) {
      throw new Error(`wire counter saw ${counts.modelReceived} messages reach the stand-in, the stand-in recorded ${standInEvents}`);
    }
    const wallCallSeconds = results.reduce((s, r) => s + r.durationMs, 0) / 1000;
    const violations = results.reduce((s, r) => s + r.protocolViolations.length, 0);
    const callerTurnsMs = results.flatMap((r) => r.turnLatenciesMs).sort((a, b) => a - b);
    // Frame loss from totals: pairing a caller with its stand-in session is not possible
    // from outside, so each call's sub-frame remainder is allowed once (calls × 1 frame).
    const sentInMs = counts.callerMediaSent * FRAME_MS;
    const gotInMs = model.audioMsReceived();
    // Outbound: only completed responses. A cancelled one (barge-in) is cut short on purpose; its
    // audio the caller did receive still counts as received, so a loss can hide behind a barge-in,
    // which is why unscripted barge-ins are reported on their own (`cancelled`).
    const sentOutMs = model.completedAudioMs();
    const cancelled = model.cancelled();
    const gotOutMs = results.reduce((s, r) => s + Object.entries(r.frameSizes).reduce((a, [size, n]) => a + Number(size) * n, 0), 0) / 8;
    const lost = (sent: number, got: number): number => Math.max(0, Math.floor((sent - got) / FRAME_MS) - spec.calls);
    return {
      spec,
      node: ready.node,
      edge,
      config: ready.config,
      callSeconds,
      realtime: callSeconds / wallCallSeconds,
      relayRunqShare: runq0 !== undefined && runq1 !== undefined ? (runq1 - runq0) / 1e6 / measuredMs : 0,
      wallMs,
      cpuUs,
      syscalls,
      syscw: syscw0 !== undefined && syscw1 !== undefined ? syscw1 - syscw0 : undefined,
      counts,
      stats,
      violations,
      callerTurnsMs,
      framesLostIn: lost(sentInMs, gotInMs),
      framesLostOut: lost(sentOutMs, gotOutMs),
      cancelled,
      flood: floodFigures,
      ...(spec.bargeIn && local ? bargeInFigures(local, model) : {}),
    };
  } finally {
    if (pinnedSelf) pin(process.pid, `0-${os.cpus().length - 1}`);
    // Let the relay exit on its own (it closes its store); kill it only if it hangs.
    await stopChild(child);
    await model.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * spec.warmupCalls calls through the relay on `port`, each to its end, the stand-in's sessions
 * closed and the relay's after-work done (WARMUP_QUIET_MS); measureRelay then counts from there
 * (countingFromNow), so nothing of the warm-up is in the run's figures. Bounded by the calls' own limit.
 */
async function warmUp(spec: RunSpec, port: number, model: StandInReader): Promise<void> {
  const results = await Promise.all(
    Array.from({ length: spec.warmupCalls! }, (_, i) =>
      placeCall({
        baseUrl: `http://127.0.0.1:${port}`,
        publicUrl: PUBLIC,
        authToken: AUTH,
        from: `+1666${String(i).padStart(7, '0')}`,
        utterances: [{ durationMs: 900 }],
        hangupAfterMs: 500,
        maxCallMs: 30_000,
      }),
    ),
  );
  const violations = results.reduce((n, r) => n + r.protocolViolations.length, 0);
  if (violations > 0) throw new Error(`relay bench (${describe(spec)}): the warm-up calls saw ${violations} protocol violations`);
  await settle(model);
  // The warm-up's own after-work (records flushed every 250 ms, recordings sealed and written) finishes
  // before the window opens, so none of it is counted against the run.
  await new Promise((r) => setTimeout(r, WARMUP_QUIET_MS));
}

/** Quiet time between the warm-up's last session closing and the measured window, ms. */
const WARMUP_QUIET_MS = 1000;

/** Until the stand-in has no session open (the relay has torn every call down), at most 3 s, then 200 ms more. */
async function settle(model: StandInReader): Promise<void> {
  const until = performance.now() + 3000;
  for (;;) {
    await model.refresh?.();
    if (!model.anyOpen() || performance.now() >= until) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  await new Promise((r) => setTimeout(r, 200));
}

/** `r` as it reads from now on: what it has recorded so far is taken off each figure. */
export async function countingFromNow(r: StandInReader): Promise<StandInReader> {
  await r.refresh?.();
  resetWireCounts();
  const events0 = r.eventsRecorded();
  const audio0 = r.audioMsReceived();
  const completed0 = r.completedAudioMs();
  const cancelled0 = r.cancelled();
  const yields0 = r.yieldsMs?.().length ?? 0;
  const sent0 = r.counts?.modelSent ?? 0;
  const received0 = r.counts?.modelReceived ?? 0;
  return {
    baseUrl: r.baseUrl,
    anyOpen: () => r.anyOpen(),
    eventsRecorded: () => r.eventsRecorded() - events0,
    audioMsReceived: () => r.audioMsReceived() - audio0,
    completedAudioMs: () => r.completedAudioMs() - completed0,
    cancelled: () => r.cancelled() - cancelled0,
    yieldsMs: r.yieldsMs && (() => r.yieldsMs!().slice(yields0)),
    refresh: r.refresh && (() => r.refresh!()),
    get counts() {
      const c = r.counts;
      return c && { modelSent: c.modelSent - sent0, modelReceived: c.modelReceived - received0 };
    },
    close: () => r.close(),
  };
}

/** A barge-in run's figures: per barge-in the caller's figure (bargeInFigure), sorted. */
function bargeInFigures(results: CallResult[], model: StandInReader): Pick<RunFigures, 'bargeInMs' | 'bargeInNothingPlaying' | 'modelYieldMs'> {
  const all = results.flatMap((r) => r.bargeIns.map((b) => bargeInFigure(r, b)));
  return {
    bargeInMs: all.filter((v): v is number => v !== undefined).sort((a, b) => a - b),
    bargeInNothingPlaying: all.filter((v) => v === undefined).length,
    modelYieldMs: model.yieldsMs?.().sort((a, b) => a - b),
  };
}

/**
 * Least real-time share of caller frames for a run to count as undisturbed.
 * Seen on this 2-core box (2026-11-30): quiet, 1.00 at 100 calls and 0.94 at
 * 300 pinned calls (the generator's own limit on one core); at load 10,
 * 0.55-0.92.
 */
export const MIN_REALTIME = 0.9;
/**
 * Most run-queue wait of the relay's event loop, as a share of wall time, for
 * a run to count as undisturbed. Seen: quiet box 0.07-0.10 (the load
 * generator shares the 2 cores); at load 10, 0.13-0.67.
 */
export const MAX_RELAY_RUNQ = 0.15;

/**
 * A run is clean when nothing else on the box starved either side: the load
 * generator kept real time (≥ MIN_REALTIME of its frames on time) and the
 * relay's event loop waited for a CPU ≤ MAX_RELAY_RUNQ of the time. On a
 * shared box a starved run is not just noisier but biased: a late relay or
 * caller handles several messages per wake-up, each cheaper, and a relay
 * that paces its output stalls. Stalls and lost frames are not part of the
 * test, so a relay that causes them itself still fails its checks.
 */
export function isClean(f: Pick<RunFigures, 'realtime' | 'relayRunqShare'>): boolean {
  return f.realtime >= MIN_REALTIME && f.relayRunqShare <= MAX_RELAY_RUNQ;
}

const cpuPerCallSecondNs = (f: RunFigures): number => (f.cpuUs * 1000) / f.callSeconds;
const writesOf = (f: RunFigures): number | undefined =>
  f.syscalls ? Object.values(f.syscalls).reduce((a, b) => a + b, 0) : undefined;

/** Per-direction messages per call-second. */
function rates(f: RunFigures) {
  const c = f.counts;
  const per = (n: number) => n / f.callSeconds;
  return { callerToRelay: per(c.callerSent), relayToModel: per(c.modelReceived), modelToRelay: per(c.modelSent), relayToCaller: per(c.callerReceived) };
}

/** Short key of a configuration: cb|naive|floor . pt|tc|cap|tcpin (pinned, whatever the plan's count: quick and full runs share ids) */
function key(spec: RunSpec): string {
  const k = spec.relay === 'callbridge' ? 'cb' : spec.relay;
  const m = spec.inboundBatchMs !== undefined ? 'cap' : spec.mode === 'passthrough' ? 'pt' : 'tc';
  // 'gl' = the GPT-Live provider ('live' was taken by the console's live view).
  return `${k}.${m}${spec.pinned ? 'pin' : ''}${spec.edge ? spec.edge : ''}${spec.flood ? 'flood' : ''}${spec.recording ? 'rec' : ''}${spec.console ? 'live' : ''}${spec.bargeIn ? 'barge' : ''}${spec.provider === 'live' ? 'gl' : ''}${spec.gate ? 'pair' : ''}`;
}

function describe(spec: RunSpec): string {
  const who = spec.relay;
  const mode = spec.inboundBatchMs !== undefined ? `capacity (${spec.mode}, INBOUND_BATCH_MS=${spec.inboundBatchMs})` : spec.mode;
  return `${who} ${mode}, ${spec.calls} calls${spec.pinned ? ', relay pinned to 1 core' : ''}${spec.edge ? `, ${spec.edge === 'node' ? 'node:http + ws' : spec.edge} edge` : ''}${spec.flood ? `, ${spec.flood} forged webhooks/s` : ''}${spec.recording ? ', every call recorded' : ''}${spec.console ? ', the console live view open' : ''}${spec.provider === 'live' ? ', GPT-Live' : ''}${spec.bargeIn ? ', barge-in calls' : ''}${spec.gate ? ', side by side with the other relay' : ''}`;
}

/**
 * The runs of one configuration its figures come from: the clean ones when there is one (see
 * isClean), else all (flagged DISTURBED). Side-by-side runs (RunSpec.gate) always give all their
 * runs: a disturbance hits both relays of a pair alike, which is what the pair is for, and keeping
 * one relay's clean run against the other's every run would compare different seconds (a CI run
 * read 1.79× that way from pairs of 1.45× and 1.49×: two relays two rounds each, the floor's one
 * clean round against both of callbridge's). Exported for its test.
 */
export function runsForFigures<T extends Pick<RunFigures, 'realtime' | 'relayRunqShare'> & { spec: Pick<RunSpec, 'gate'> }>(runs: T[]): T[] {
  if (runs[0]?.spec.gate) return runs;
  const clean = runs.filter(isClean);
  return clean.length ? clean : runs;
}

/** Turns the runs of one configuration (several rounds) into results. */
function resultsFor(runs: RunFigures[], peerKey: string | undefined): Result[] {
  const spec = runs[0]!.spec;
  const k = key(spec);
  const ours = spec.relay === 'callbridge';
  const allCpus = runs.map(cpuPerCallSecondNs);
  const clean = runs.filter(isClean);
  const used = runsForFigures(runs);
  const cpus = used.map(cpuPerCallSecondNs);
  const cpu = median(cpus);
  // The run whose CPU is nearest the median supplies the per-direction counts.
  const best = used[cpus.map((c) => Math.abs(c - cpu)).indexOf(Math.min(...cpus.map((c) => Math.abs(c - cpu))))]!;
  const r = rates(best);
  const writes = used.filter((f) => f.syscalls).map((f) => writesOf(f)! / f.callSeconds);
  const label = describe(spec);
  const common = { suite: 'relay', ours, samples: runs.length };
  const turnP99 = median(used.map((f) => pct(f.callerTurnsMs, 0.99)));
  const out: Result[] = [
    {
      ...common,
      id: `relay.${k}.cpu`,
      name: `CPU per call-second, ${label}`,
      group: 'relay CPU per call-second (relay process, median of clean rounds)',
      per: 'call-second',
      medianNs: cpu,
      peer: peerKey ? `relay.${peerKey}.cpu` : undefined,
      note: clean.length || spec.gate ? undefined : 'DISTURBED: no clean run (load generator behind real time, or relay starved by other work); figures from all runs',
      extra: {
        rounds: allCpus.map((c) => (c / 1e6).toFixed(3)).join(' '),
        realtime: runs.map((f) => f.realtime.toFixed(3)).join(' '),
        relayRunqShare: runs.map((f) => f.relayRunqShare.toFixed(3)).join(' '),
        cleanRuns: clean.length,
        callSeconds: Math.round(best.callSeconds),
        wallMs: Math.round(best.wallMs),
        edge: best.edge,
        node: best.node,
        config: JSON.stringify(best.config),
      },
    },
    {
      ...common,
      id: `relay.${k}.in`,
      name: `relay-added latency Twilio → model, ${label}`,
      group: 'relay-added latency per audio message (p50/p99: median over rounds)',
      per: 'frame',
      medianNs: median(used.map((f) => f.stats.inbound.p50Ms)) * 1e6,
      p99Ns: median(used.map((f) => f.stats.inbound.p99Ms)) * 1e6,
      samples: best.stats.inbound.count,
    },
    {
      ...common,
      id: `relay.${k}.out`,
      name: `relay-added latency model → Twilio, ${label}`,
      group: 'relay-added latency per audio message (p50/p99: median over rounds)',
      per: 'audio delta',
      medianNs: median(used.map((f) => f.stats.outbound.p50Ms)) * 1e6,
      p99Ns: median(used.map((f) => f.stats.outbound.p99Ms)) * 1e6,
      samples: best.stats.outbound.count,
    },
    {
      ...common,
      id: `relay.${k}.msgs`,
      name: `messages per call-second, 4 directions, ${label}`,
      group: 'relay messages and writes per call-second (counts)',
      per: 'call-second',
      unit: 'count',
      medianNs: r.callerToRelay + r.relayToModel + r.modelToRelay + r.relayToCaller,
      extra: Object.fromEntries(Object.entries(r).map(([d, v]) => [d, Number(v.toFixed(2))])),
    },
    {
      ...common,
      id: `relay.${k}.toModel`,
      name: `messages relay → model per call-second, ${label}`,
      group: 'relay messages and writes per call-second (counts)',
      per: 'call-second',
      unit: 'count',
      medianNs: r.relayToModel,
    },
    {
      ...common,
      id: `relay.${k}.toCaller`,
      name: `messages relay → caller per call-second, ${label}`,
      group: 'relay messages and writes per call-second (counts)',
      per: 'call-second',
      unit: 'count',
      medianNs: r.relayToCaller,
    },
    {
      ...common,
      id: `relay.${k}.lost`,
      name: `frames lost (in + out), ${label}`,
      group: 'frames lost (count, worst round)',
      per: 'run',
      unit: 'count',
      medianNs: Math.max(...used.map((f) => f.framesLostIn + f.framesLostOut)),
      extra: {
        in: Math.max(...used.map((f) => f.framesLostIn)),
        out: Math.max(...used.map((f) => f.framesLostOut)),
        stalls: Math.max(...used.map((f) => f.cancelled)),
      },
    },
    {
      ...common,
      id: `relay.${k}.stalls`,
      name: `outbound stalls ≥ 400 ms (unscripted barge-ins), ${label}`,
      group: 'frames lost (count, worst round)',
      per: 'run',
      unit: 'count',
      medianNs: Math.max(...used.map((f) => f.cancelled)),
    },
    {
      ...common,
      id: `relay.${k}.turn`,
      name: `turn latency, caller view (end of speech → first voiced frame heard), ${label}`,
      group: 'turn latency (caller view; includes the stand-in VAD 500 ms + 150 ms think time)',
      per: 'turn',
      medianNs: median(used.map((f) => pct(f.callerTurnsMs, 0.5))) * 1e6,
      p99Ns: turnP99 * 1e6,
      samples: best.callerTurnsMs.length,
    },
  ];
  if (writes.length) {
    out.push({
      ...common,
      id: `relay.${k}.writes`,
      name: `write syscalls per call-second (perf), ${label}`,
      group: 'relay messages and writes per call-second (counts)',
      per: 'call-second',
      unit: 'count',
      medianNs: Math.min(...writes),
      extra: best.syscalls ? Object.fromEntries(Object.entries(best.syscalls).map(([s, n]) => [s, Number((n / best.callSeconds).toFixed(2))])) : undefined,
    });
  } else if (best.syscw !== undefined) {
    out.push({
      ...common,
      id: `relay.${k}.syscw`,
      name: `write/writev syscalls per call-second (/proc syscw; no send*, perf unavailable), ${label}`,
      group: 'relay messages and writes per call-second (counts)',
      per: 'call-second',
      unit: 'count',
      medianNs: best.syscw / best.callSeconds,
    });
  }
  return out;
}

export interface RelayPlan {
  calls: number;
  rounds: number;
  utterances: number;
  capacityBatchMs: number;
  pinnedCalls: number;
  pinnedUtterances: number;
  /** Extra runs allowed for configurations without a clean run. */
  retries: number;
  /** Audio modes of the GPT-Live runs in each round (issue 20), each beside callbridge on Realtime in that mode. */
  liveModes: AudioMode[];
  /** Calls in each barge-in run (one per provider per bench run), and their audio mode. */
  bargeInCalls: number;
  bargeInMode: AudioMode;
  /** Barge-in runs per provider, alternating which goes first. */
  bargeInRounds: number;
  /** Warm-up calls before each CPU run's measured window (RunSpec.warmupCalls); not the pinned or barge-in runs. */
  warmupCalls: number;
}

export function plan(quick: boolean): RelayPlan {
  return quick
    ? { calls: 20, rounds: 1, utterances: 1, capacityBatchMs: 100, pinnedCalls: 60, pinnedUtterances: 1, retries: 0, liveModes: ['passthrough', 'transcode'], bargeInCalls: 20, bargeInMode: 'transcode', bargeInRounds: 1, warmupCalls: 10 }
    : { calls: 100, rounds: 2, utterances: 3, capacityBatchMs: 100, pinnedCalls: 300, pinnedUtterances: 1, retries: 2, liveModes: ['passthrough', 'transcode'], bargeInCalls: 100, bargeInMode: 'transcode', bargeInRounds: 2, warmupCalls: 30 };
}

let lastRuns: RunFigures[] = [];

export const relaySuite: Suite = {
  name: 'relay',
  description:
    'callbridge vs a naive ws relay, same load, same run: CPU per call-second (ratio), relay-added latency, messages and write syscalls per call-second, frames lost; capacity mode; 300 calls on one core; a floor relay (callbridge edge + model writer, no call logic) beside them; relay-added p99 under a flood of forged webhooks; GPT-Live beside Realtime (CPU, relay-added latency, barge-in)',
  async run(opts: RunOptions): Promise<Result[]> {
    const p = plan(opts.quick);
    if (!perfAvailable()) opts.log('relay: perf cannot count syscalls here; write syscalls fall back to /proc syscw (write/writev only)');
    const runs: RunFigures[] = [];
    const accept = (f: RunFigures): void => {
      const spec = f.spec;
      if (f.violations > 0) throw new Error(`relay bench (${describe(spec)}): simulated callers saw ${f.violations} protocol violations`);
      if (f.stats.callsEnded < spec.calls) throw new Error(`relay bench (${describe(spec)}): only ${f.stats.callsEnded} of ${spec.calls} calls ended`);
      runs.push(f);
    };
    const go = async (spec: RunSpec) => accept(await measureRelay(spec, opts.log));
    const base = { calls: p.calls, utterances: p.utterances, warmupCalls: p.warmupCalls };
    for (let round = 0; round < p.rounds; round++) {
      // The floor runs beside the pair it is read against: passthrough per frame beside the passthrough
      // pair; transcode per frame and capacity mode (transcode, one append per capacityBatchMs) beside
      // the transcode pair (issue 21: callbridge ÷ floor in both modes, same run).
      const groups: RunSpec[][] = [
        [
          { ...base, relay: 'naive', mode: 'passthrough' },
          { ...base, relay: 'callbridge', mode: 'passthrough' },
          { ...base, relay: 'floor', mode: 'passthrough' },
          // Issue 20: the same load on GPT-Live (its stand-in), read against cb.pt of the same round.
          ...(p.liveModes.includes('passthrough') ? [{ ...base, relay: 'callbridge', mode: 'passthrough', provider: 'live' } as const] : []),
        ],
        [
          { ...base, relay: 'naive', mode: 'transcode' },
          { ...base, relay: 'callbridge', mode: 'transcode' },
          { ...base, relay: 'floor', mode: 'transcode' },
          { ...base, relay: 'floor', mode: 'transcode', inboundBatchMs: p.capacityBatchMs },
          ...(p.liveModes.includes('transcode') ? [{ ...base, relay: 'callbridge', mode: 'transcode', provider: 'live' } as const] : []),
        ],
        // Issue 17: the same transcode load with every call recorded, read against the cb.tc runs beside it;
        // issue 18: the same with the console's live view open.
        [{ ...base, relay: 'callbridge', mode: 'transcode', recording: true }, { ...base, relay: 'callbridge', mode: 'transcode', console: true }],
      ];
      // Alternate who goes first, so a drift in background load hits every relay alike.
      for (const group of groups) for (const spec of round % 2 === 0 ? group : [...group].reverse()) await go(spec);
      // Issue 21's ratio, callbridge ÷ floor, from the two relays side by side (measurePair): the
      // runs above are minutes apart, and this box's CPU time moves more than the ratio's margin.
      for (const mode of ['passthrough', 'transcode'] as const) {
        for (const f of await measurePair({ ...base, relay: 'callbridge', mode }, { ...base, relay: 'floor', mode }, opts.log)) accept(f);
      }
    }
    await go({ ...base, relay: 'callbridge', mode: 'transcode', inboundBatchMs: p.capacityBatchMs });
    // The portable edge (what Node 24/26 get without an upstream uWS build): its cost is a number too.
    if (availableEdges().includes('uws')) await go({ ...base, relay: 'callbridge', mode: 'transcode', edge: 'node' });
    // Issue 22: the same transcode load while forged webhooks flood in (read against the cb.tc runs above).
    await go({ ...base, relay: 'callbridge', mode: 'transcode', flood: FLOOD_PER_S });
    await go({ calls: p.pinnedCalls, utterances: p.pinnedUtterances, relay: 'callbridge', mode: 'transcode', pinned: true });
    // Issue 20: barge-in in both providers, same run (audio at real time), p.bargeInRounds times in
    // ABBA order (Realtime, Live, Live, Realtime): the caller's audio reaches the model later whenever
    // the box is busy (seen 40-340 ms p50 at 100 calls), so one run of each would compare two loads.
    for (let i = 0; i < p.bargeInRounds; i++) {
      for (const provider of i % 2 === 0 ? ([undefined, 'live'] as const) : (['live', undefined] as const)) {
        await go({ calls: p.bargeInCalls, utterances: 2, relay: 'callbridge', mode: p.bargeInMode, bargeIn: true, provider });
      }
    }
    // A configuration with no clean run gets one more try (a burst of other work on the box),
    // up to p.retries in all, so one noisy minute does not decide a ratio.
    let retries = p.retries;
    for (const [, fs] of byKey(runs)) {
      if (retries <= 0) break;
      // Not the pinned run: the longest, and on a shared box the one least likely to come out clean.
      // Nor the flood run: the flood is meant to disturb it.
      // Nor the barge-in runs: they are not read for CPU.
      // Nor a side-by-side run: alone it would not be what its figure says.
      if (fs[0]!.spec.pinned || fs[0]!.spec.flood || fs[0]!.spec.bargeIn || fs[0]!.spec.gate || fs.some(isClean)) continue;
      retries--;
      opts.log(`relay: no clean run of ${describe(fs[0]!.spec)} (realtime ${fs.map((f) => f.realtime.toFixed(2)).join('/')}, relay run-queue wait ${fs.map((f) => f.relayRunqShare.toFixed(2)).join('/')}); once more`);
      await go(fs[0]!.spec);
    }
    lastRuns = runs;

    const groups = byKey(runs);
    const peerOf = (k: string): string | undefined =>
      k === 'cb.pt' || k === 'floor.pt' ? 'naive.pt' : k === 'cb.tc' || k === 'cb.cap' || k === 'cb.tcnode' || k === 'floor.tc' || k === 'floor.cap' ? 'naive.tc' : k === 'cb.tcrec' || k === 'cb.tclive' || k === 'cb.tcgl' ? 'cb.tc' : k === 'cb.ptgl' ? 'cb.pt' : undefined;
    const results = [...groups.entries()].flatMap(([k, rs]) => (rs[0]!.spec.bargeIn ? bargeInResults(rs) : resultsFor(rs, peerOf(k))));
    const by = new Map(results.map((r) => [r.id, r]));
    // The relay's overhead multiple over its own DSP (check relay.cpu.vsDsp, with the dsp suite).
    results.push({
      suite: 'relay',
      ours: true,
      id: 'relay.cpuPerFramePair',
      name: `callbridge CPU per 20 ms of call (transcode, ${p.calls} calls)`,
      group: 'relay CPU per call-second (relay process, median of clean rounds)',
      per: '20 ms of call',
      medianNs: by.get('relay.cb.tc.cpu')!.medianNs / 50,
      samples: by.get('relay.cb.tc.cpu')!.samples,
      peer: 'dsp.fullDuplex.wasm',
    });
    const floodRun = runs.find((f) => f.flood);
    if (floodRun?.flood) {
      const fl = floodRun.flood;
      results.push({
        suite: 'relay',
        ours: true,
        id: 'relay.cb.tcflood.floodRate',
        name: `forged webhooks answered per second during the flood run (target ${floodRun.spec.flood}/s)`,
        group: 'relay under a flood of forged webhooks (issue 22)',
        per: 'second',
        unit: 'count',
        medianNs: fl.answered / (fl.elapsedMs / 1000),
        samples: fl.sent,
        extra: { sent: fl.sent, answered: fl.answered, errors: fl.errors, skipped: fl.skipped, elapsedMs: Math.round(fl.elapsedMs), statuses: JSON.stringify(fl.statuses), lastError: fl.lastError },
      });
    }
    results.push({
      suite: 'relay',
      ours: true,
      id: 'relay.cb.cap.turnP99Added',
      name: `capacity mode: caller-view p99 turn latency minus default's (transcode, ${p.calls} calls)`,
      group: 'turn latency (caller view; includes the stand-in VAD 500 ms + 150 ms think time)',
      per: 'turn',
      medianNs: Math.max(0, (by.get('relay.cb.cap.turn')!.p99Ns ?? NaN) - (by.get('relay.cb.tc.turn')!.p99Ns ?? NaN)),
      samples: by.get('relay.cb.cap.turn')!.samples,
    });
    return results;
  },
  conclusions(results: Result[]): string[] {
    const by = new Map(results.map((r) => [r.id, r]));
    const runs = lastRuns;
    if (!runs.length) return [];
    const lines: string[] = [];
    const first = runs.find((f) => f.spec.relay === 'callbridge') ?? runs[0]!;
    lines.push(`relay: callbridge edge: ${first.edge}; node ${first.node}; naive relay: ws ${wsVersion()} on node:http, transcode = alawmulaw + speex-resampler q3`);
    const cap = runs.find((f) => f.spec.relay === 'callbridge' && f.spec.inboundBatchMs !== undefined);
    if (cap && !Object.keys(cap.config).some((k) => /batch/i.test(k))) {
      lines.push(`relay: NOTE capacity mode: this build's config has no inbound batch setting, so INBOUND_BATCH_MS=${cap.spec.inboundBatchMs} had no effect (figures = default settings)`);
    }
    const writesNote = runs.some((f) => f.syscalls) ? 'write syscalls = write+writev+sendto+sendmsg+sendmmsg (perf)' : 'write syscalls: perf unavailable, /proc syscw counts write/writev only';
    lines.push(`relay: per call-second (median of clean runs; a call-second = 50 caller frames); messages counted at the simulated ends; ${writesNote}`);
    const hdr = ['configuration', 'CPU ms', '÷ naive', 'in p50/p99 ms', 'out p50/p99 ms', 'c→r', 'r→m', 'm→r', 'r→c', 'writes', 'lost in/out', 'stalls', 'turn p99', 'clean'];
    const rows: string[][] = [];
    const seen = new Set<string>();
    for (const f of runs) {
      const k = key(f.spec);
      if (seen.has(k) || f.spec.bargeIn) continue;
      seen.add(k);
      const cpu = by.get(`relay.${k}.cpu`);
      const peer = cpu?.peer ? by.get(cpu.peer) : undefined;
      const inn = by.get(`relay.${k}.in`);
      const out = by.get(`relay.${k}.out`);
      const msgs = by.get(`relay.${k}.msgs`)?.extra ?? {};
      const writes = by.get(`relay.${k}.writes`) ?? by.get(`relay.${k}.syscw`);
      const lost = by.get(`relay.${k}.lost`)?.extra ?? {};
      const turn = by.get(`relay.${k}.turn`);
      const ms = (ns: number | undefined, d = 3) => (ns === undefined ? '-' : (ns / 1e6).toFixed(d));
      rows.push([
        describe(f.spec),
        ms(cpu?.medianNs, 2),
        cpu && peer ? (cpu.medianNs / peer.medianNs).toFixed(2) : '',
        `${ms(inn?.medianNs)}/${ms(inn?.p99Ns)}`,
        `${ms(out?.medianNs)}/${ms(out?.p99Ns)}`,
        String(msgs.callerToRelay ?? '-'),
        String(msgs.relayToModel ?? '-'),
        String(msgs.modelToRelay ?? '-'),
        String(msgs.relayToCaller ?? '-'),
        writes ? writes.medianNs.toFixed(1) : '-',
        `${lost.in ?? '-'}/${lost.out ?? '-'}`,
        String(lost.stalls ?? '-'),
        `${ms(turn?.p99Ns, 0)}`,
        `${cpu?.extra?.cleanRuns ?? '-'}/${byKey(runs).get(k)?.length ?? '-'}`,
      ]);
    }
    const w = hdr.map((h, c) => Math.max([...h].length, ...rows.map((r) => [...r[c]!].length)));
    const fmt = (r: string[]) => r.map((cell, c) => (c === 0 ? cell.padEnd(w[c]!) : cell.padStart(w[c]!))).join('  ');
    lines.push(fmt(hdr), ...rows.map(fmt));
    const floor = floorLine(by, runs);
    if (floor) lines.push(floor);
    const flood = floodLine(by, runs);
    if (flood) lines.push(flood);
    const rec = recordingLine(by);
    if (rec) lines.push(rec);
    const live = consoleLine(by);
    if (live) lines.push(live);
    const gl = gptLiveLine(by);
    if (gl) lines.push(gl);
    const barge = bargeInLine(by);
    if (barge) lines.push(barge);
    lines.push(
      `relay: every run, CPU ms per call-second (caller realtime share, relay run-queue wait share; * = not clean): ${[...byKey(runs).entries()]
        .filter(([, fs]) => !fs[0]!.spec.bargeIn)
        .map(([k, fs]) => `${k} ${fs.map((f) => `${(cpuPerCallSecondNs(f) / 1e6).toFixed(2)}(${f.realtime.toFixed(2)},${f.relayRunqShare.toFixed(2)})${isClean(f) ? '' : '*'}`).join(' ')}`)
        .join(', ')}`,
    );
    return lines;
  },
};

/**
 * Issue 21's restated CPU targets beside the floor: callbridge ÷ floor CPU per
 * call-second in passthrough and transcode (per frame; the two relays side by
 * side, see measurePair) and capacity mode, each
 * against the floor at the same settings in the same run, with the target's
 * PASS/FAIL (bench/thresholds.json `targets`); capacity mode ÷ the naive
 * transcode relay; the floor's own ratio to the naive relay; and what the
 * call logic adds over the floor (callbridge − floor, ms per call-second). A
 * floor above a ÷ naive target means no call layer on this edge and writer
 * can meet that one on this machine.
 */
function floorLine(by: Map<string, Result>, runs: RunFigures[]): string | undefined {
  const cpu = (k: string): number | undefined => by.get(`relay.${k}.cpu`)?.medianNs;
  const ratio = (num: number | undefined, den: number | undefined) => (num !== undefined && den !== undefined ? num / den : undefined);
  if (![cpu('floor.pt'), cpu('floor.tc'), cpu('floor.cap')].some((v) => v !== undefined)) return undefined;
  const x = (v: number | undefined) => (v === undefined ? '-' : `${v.toFixed(2)}×`);
  const verdict = (v: number | undefined, limit: number | undefined) =>
    v === undefined || limit === undefined ? '' : ` ${v <= limit ? 'PASS' : 'FAIL'} (target ≤ ${limit})`;
  const added = (cb: number | undefined, fl: number | undefined) =>
    cb === undefined || fl === undefined ? '-' : `${cb >= fl ? '+' : '−'}${(Math.abs(cb - fl) / 1e6).toFixed(2)}`;
  // Passthrough and transcode are read side by side (measurePair: keys …pair); the runs minutes apart follow in brackets.
  const vsFloor = (k: string, targetId?: string) => {
    const v = ratio(cpu(`cb.${k}`), cpu(`floor.${k}`));
    return `${x(v)}${targetId ? verdict(v, issueTarget(targetId)) : ''}`;
  };
  const sideBySide = (k: string, targetId: string) =>
    cpu(`cb.${k}pair`) === undefined ? vsFloor(k, targetId) : `${vsFloor(`${k}pair`, targetId)} side by side (${vsFloor(k)} minutes apart)`;
  const capVsNaive = ratio(cpu('cb.cap'), cpu('naive.tc'));
  const floorCapVsNaive = ratio(cpu('floor.cap'), cpu('naive.tc'));
  const capTarget = issueTarget('target.relay.cap.cpuVsNaive');
  const cbEdge = runs.find((f) => f.spec.relay === 'callbridge')?.edge;
  const floorEdge = runs.find((f) => f.spec.relay === 'floor')?.edge;
  const out =
    `relay: callbridge ÷ floor (edge + model writer, no call logic${floorEdge && floorEdge !== cbEdge ? `; edge ${floorEdge}` : ''}; CPU per call-second, same run): ` +
    `passthrough ${sideBySide('pt', 'target.relay.pt.cpuVsFloor')}, transcode ${sideBySide('tc', 'target.relay.tc.cpuVsFloor')}, capacity ${vsFloor('cap')}; ` +
    `capacity ÷ naive tc ${x(capVsNaive)}${verdict(capVsNaive, capTarget)}; ` +
    `call logic adds ${added(cpu('cb.ptpair') ?? cpu('cb.pt'), cpu('floor.ptpair') ?? cpu('floor.pt'))} / ${added(cpu('cb.tcpair') ?? cpu('cb.tc'), cpu('floor.tcpair') ?? cpu('floor.tc'))} / ${added(cpu('cb.cap'), cpu('floor.cap'))} ms per call-second (pt/tc/cap); ` +
    `floor ÷ naive ${x(ratio(cpu('floor.pt'), cpu('naive.pt')))} pt, ${x(ratio(cpu('floor.tc'), cpu('naive.tc')))} tc, ${x(floorCapVsNaive)} cap`;
  const floorAbove = floorCapVsNaive !== undefined && capTarget !== undefined && floorCapVsNaive > capTarget;
  return out + (floorAbove ? `; the floor itself is above the capacity ÷ naive target: out of this design's reach on this machine` : '');
}

/** The flood run beside the runs without it: relay-added p99 each way, and what the flood got. */
function floodLine(by: Map<string, Result>, runs: RunFigures[]): string | undefined {
  const f = runs.find((r) => r.flood)?.flood;
  if (!f) return undefined;
  const p99 = (id: string) => by.get(id)?.p99Ns;
  const ms = (ns: number | undefined) => (ns === undefined ? '-' : (ns / 1e6).toFixed(3));
  const rate = (f.answered / (f.elapsedMs / 1000)).toFixed(0);
  return (
    `relay: flood of forged webhooks (${f.sent} sent in ${(f.elapsedMs / 1000).toFixed(1)} s, ${rate}/s answered: ${JSON.stringify(f.statuses)}` +
    `${f.errors ? `, ${f.errors} errors (${f.lastError})` : ''}${f.skipped ? `, ${f.skipped} skipped at the in-flight cap` : ''}): ` +
    `relay-added p99 in ${ms(p99('relay.cb.tc.in'))} → ${ms(p99('relay.cb.tcflood.in'))} ms, out ${ms(p99('relay.cb.tc.out'))} → ${ms(p99('relay.cb.tcflood.out'))} ms (without → with)`
  );
}

/** Recording every call (issue 17) beside the same load unrecorded: CPU per call-second and relay-added p99 each way. */
function recordingLine(by: Map<string, Result>): string | undefined {
  const rec = by.get('relay.cb.tcrec.cpu')?.medianNs;
  const plain = by.get('relay.cb.tc.cpu')?.medianNs;
  if (rec === undefined || plain === undefined) return undefined;
  const ms = (ns: number | undefined) => (ns === undefined ? '-' : (ns / 1e6).toFixed(3));
  const p99 = (id: string) => by.get(id)?.p99Ns;
  return (
    `relay: recording every call (transcode, stereo µ-law sealed in 64 KiB AES-256-GCM chunks, directory storage): CPU ${(rec / plain).toFixed(2)}× unrecorded ` +
    `(${ms(plain)} → ${ms(rec)} ms per call-second; target ≤ ${issueTarget('target.relay.rec.cpu<=1.10') ?? '?'}×), ` +
    `relay-added p99 in ${ms(p99('relay.cb.tc.in'))} → ${ms(p99('relay.cb.tcrec.in'))} ms, out ${ms(p99('relay.cb.tc.out'))} → ${ms(p99('relay.cb.tcrec.out'))} ms (unrecorded → recorded)`
  );
}

/** The console's live view open (issue 18) beside the same load without it: CPU per call-second and relay-added p99. */
function consoleLine(by: Map<string, Result>): string | undefined {
  const live = by.get('relay.cb.tclive.cpu')?.medianNs;
  const plain = by.get('relay.cb.tc.cpu')?.medianNs;
  if (live === undefined || plain === undefined) return undefined;
  const ms = (ns: number | undefined) => (ns === undefined ? '-' : (ns / 1e6).toFixed(3));
  const p99 = (id: string) => by.get(id)?.p99Ns;
  return (
    `relay: the console's live view open (one event a second with every call): CPU ${(live / plain).toFixed(2)}× without it ` +
    `(target ≤ ${issueTarget('target.relay.console.cpu<=1.03') ?? '?'}×), relay-added p99 in ${ms(p99('relay.cb.tc.in'))} → ${ms(p99('relay.cb.tclive.in'))} ms, ` +
    `out ${ms(p99('relay.cb.tc.out'))} → ${ms(p99('relay.cb.tclive.out'))} ms (without → with)`
  );
}

/**
 * GPT-Live (issue 20) beside Realtime, callbridge, same load, same rounds: CPU per call-second Live ÷
 * Realtime per mode with the target's PASS/FAIL, and relay-added latency p50/p99 each way, both providers.
 */
function gptLiveLine(by: Map<string, Result>): string | undefined {
  const ms = (ns: number | undefined) => (ns === undefined ? '-' : (ns / 1e6).toFixed(3));
  const parts: string[] = [];
  for (const [m, label] of [['pt', 'passthrough'], ['tc', 'transcode']] as const) {
    const gl = by.get(`relay.cb.${m}gl.cpu`)?.medianNs;
    const rt = by.get(`relay.cb.${m}.cpu`)?.medianNs;
    if (gl === undefined || rt === undefined) continue;
    const target = issueTarget(`target.relay.live.${m}.cpu<=1.1`);
    const v = gl / rt;
    const lat = (dir: 'in' | 'out') => {
      const a = by.get(`relay.cb.${m}.${dir}`);
      const b = by.get(`relay.cb.${m}gl.${dir}`);
      return `${dir} ${ms(a?.medianNs)}/${ms(a?.p99Ns)} → ${ms(b?.medianNs)}/${ms(b?.p99Ns)}`;
    };
    parts.push(
      `${label} CPU ${v.toFixed(2)}× (${ms(rt)} → ${ms(gl)} ms per call-second)${target === undefined ? '' : ` ${v <= target ? 'PASS' : 'FAIL'} (target ≤ ${target})`}, ` +
        `relay-added p50/p99 ms ${lat('in')}, ${lat('out')}`,
    );
  }
  return parts.length ? `relay: GPT-Live ÷ Realtime (callbridge, same load and rounds; Realtime → Live): ${parts.join('; ')}` : undefined;
}

/** Barge-in (issue 20), both providers in the same run: caller onset → last frame of the old answer heard. */
function bargeInLine(by: Map<string, Result>): string | undefined {
  const rows = (['', 'gl'] as const)
    .map((suffix) => [suffix, [...by.values()].find((r) => r.id.endsWith(`barge${suffix}.bargeIn`))] as const)
    .filter(([, r]) => r !== undefined);
  if (!rows.length) return undefined;
  const cell = ([suffix, r]: (typeof rows)[number]) => {
    const e = r!.extra ?? {};
    const who = suffix === 'gl' ? 'GPT-Live' : 'Realtime';
    const yieldPart = e.modelYieldP50Ms !== undefined ? `; the stand-in's own onset → yield p50 ${e.modelYieldP50Ms} ms` : '';
    return `${who} p50 ${(r!.medianNs / 1e6).toFixed(0)} / p95 ${e.p95Ms} ms over ${r!.samples} (${e.nothingPlaying} with nothing playing${yieldPart})`;
  };
  const [rt, gl] = [rows.find(([s]) => s === '')?.[1], rows.find(([s]) => s === 'gl')?.[1]];
  // The models decide differently: Realtime's VAD reports the onset, GPT-Live yields when it chooses (the stand-in:
  // yieldMs after its onset). What is left of the difference once the yield is taken out is the relay's.
  const yieldP50 = Number(gl?.extra?.modelYieldP50Ms);
  const diff = rt && gl ? (gl.medianNs - rt.medianNs) / 1e6 : undefined;
  const ratio =
    rt && gl
      ? `; Live ÷ Realtime p50 ${(gl.medianNs / rt.medianNs).toFixed(2)}×, Live − Realtime p50 ${diff!.toFixed(0)} ms` +
        (Number.isFinite(yieldP50) ? ` of which the model's own yield ${yieldP50.toFixed(0)} ms, the rest ${(diff! - yieldP50).toFixed(0)} ms` : '')
      : '';
  return `relay: barge-in, caller's speech onset → last frame heard of the old answer (clear's arrival or end of playback), audio at real time: ${rows.map(cell).join('; ')}${ratio}`;
}

/** A barge-in configuration's result: the caller's figure over all its runs' barge-ins. */
function bargeInResults(runs: RunFigures[]): Result[] {
  const spec = runs[0]!.spec;
  const k = key(spec);
  const all = runs.flatMap((f) => f.bargeInMs ?? []).sort((a, b) => a - b);
  const yields = runs.flatMap((f) => f.modelYieldMs ?? []).sort((a, b) => a - b);
  return [
    {
      suite: 'relay',
      ours: true,
      id: `relay.${k}.bargeIn`,
      name: `barge-in: caller's speech onset → last frame of the old answer heard, ${describe(spec)}`,
      group: 'barge-in, caller view (issue 20; audio at real time)',
      per: 'barge-in',
      medianNs: pct(all, 0.5) * 1e6,
      p99Ns: pct(all, 0.99) * 1e6,
      samples: all.length,
      extra: {
        p95Ms: all.length ? pct(all, 0.95).toFixed(0) : '-',
        nothingPlaying: runs.reduce((n, f) => n + (f.bargeInNothingPlaying ?? 0), 0),
        ...(yields.length ? { modelYieldP50Ms: pct(yields, 0.5).toFixed(0), modelYieldP95Ms: pct(yields, 0.95).toFixed(0) } : {}),
        realtime: runs.map((f) => f.realtime.toFixed(3)).join(' '),
        relayRunqShare: runs.map((f) => f.relayRunqShare.toFixed(3)).join(' '),
        cpuMsPerCallSecond: runs.map((f) => (cpuPerCallSecondNs(f) / 1e6).toFixed(3)).join(' '),
      },
    },
  ];
}

/** An issue target's limit from bench/thresholds.json (`targets`), undefined if it cannot be read. */
function issueTarget(id: string): number | undefined {
  try {
    const t = JSON.parse(readFileSync(new URL('../../../bench/thresholds.json', import.meta.url), 'utf8')) as { targets?: { id: string; max: number }[] };
    return t.targets?.find((r) => r.id === id)?.max;
  } catch {
    return undefined;
  }
}

function byKey(runs: RunFigures[]): Map<string, RunFigures[]> {
  const m = new Map<string, RunFigures[]>();
  for (const f of runs) m.set(key(f.spec), [...(m.get(key(f.spec)) ?? []), f]);
  return m;
}

function wsVersion(): string {
  try {
    return (JSON.parse(readPkg('ws')) as { version: string }).version;
  } catch {
    return '?';
  }
}

function readPkg(name: string): string {
  const req = createRequire(import.meta.url);
  return readFileSync(req.resolve(`${name}/package.json`), 'utf8');
}
