/**
 * The model stand-in (src/sim/model-server.ts) in its own process, for the
 * calls-per-core suite (issue 21): the stand-in shares CPU 1 with the caller
 * workers (bench/loadgen.ts), not the event loop of the process that runs
 * the bench, and its CPU is its own to read.
 *
 * measureRelay (RunSpec.standIn) reads the stand-in's sessions and its side
 * of the wire counts; `refresh` fetches them by IPC (bench/loadgen-model-worker.ts).
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Scenario } from '../src/sim/scenarios.js';
import { pin, stopChild } from './proc.js';
import type { StandInView } from './suites/relay.js';

/** One stand-in session as the worker reports it (what measureRelay reads). */
export interface SessionFigures {
  closed: boolean;
  events: number;
  audioMsReceived: number;
  responses: { status: 'in_progress' | 'completed' | 'cancelled' | 'failed' | 'incomplete'; audioMsSent: number }[];
}

/** Parent → worker. */
export type ModelWorkerRequest = { type: 'start'; scenario: Scenario } | { type: 'figures' } | { type: 'stop' };
/** Worker → parent. */
export type ModelWorkerReply =
  | { type: 'ready' }
  | { type: 'started'; baseUrl: string }
  | { type: 'figures'; sessions: SessionFigures[]; modelSent: number; modelReceived: number; cpuUs: number; loopDelayMs: LoopDelay };

/** How late a process's event loop ran, ms (p99 and max of node:perf_hooks monitorEventLoopDelay). */
export interface LoopDelay {
  p99: number;
  max: number;
}

const workerScript = fileURLToPath(new URL('./loadgen-model-worker.js', import.meta.url));

/** The stand-in process's figures of its last run. */
export interface StandInFigures {
  /** Its CPU from listening to the last refresh, µs (user + system). */
  cpuUs: number;
  sessions: number;
  /** Its event loop's delay from listening to the last refresh (warm-up and run): late here is late to every call. */
  loopDelayMs: LoopDelay;
}

/**
 * A RunSpec.standIn: each run forks one stand-in process (pinned to `cpu`
 * when given) and stops it when the run closes it. `last` holds the figures
 * of the last run.
 */
export function standInProcess(opts: { cpu?: string } = {}): ((scenario: Scenario) => Promise<StandInView>) & { last?: StandInFigures } {
  const start: ((scenario: Scenario) => Promise<StandInView>) & { last?: StandInFigures } = async (scenario) => {
    const child = fork(workerScript, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    // A broken IPC pipe (EPIPE) surfaces as the exit below, not as an unhandled error.
    child.on('error', () => {});
    let waiting: { type: ModelWorkerReply['type']; resolve: (m: ModelWorkerReply) => void; reject: (e: Error) => void } | undefined;
    const exited = (code: number | null) => waiting?.reject(new Error(`model stand-in process exited (${code})`));
    child.on('exit', exited);
    child.on('message', (m: ModelWorkerReply) => {
      if (waiting && m.type === waiting.type) {
        const w = waiting;
        waiting = undefined;
        w.resolve(m);
      }
    });
    const ask = <T extends ModelWorkerReply['type']>(type: T, req?: ModelWorkerRequest): Promise<Extract<ModelWorkerReply, { type: T }>> =>
      new Promise((resolve, reject) => {
        if (child.exitCode !== null) return reject(new Error(`model stand-in process exited (${child.exitCode})`));
        waiting = { type, resolve: resolve as (m: ModelWorkerReply) => void, reject };
        if (req) child.send(req);
      });
    try {
      await ask('ready');
      if (opts.cpu !== undefined) pin(child.pid!, opts.cpu);
      const { baseUrl } = await ask('started', { type: 'start', scenario });
      const view: StandInView & { sessions: StandInView['sessions'] } = {
        baseUrl,
        sessions: [],
        counts: { modelSent: 0, modelReceived: 0 },
        async refresh() {
          const f = await ask('figures', { type: 'figures' });
          view.sessions = f.sessions.map((s) => ({ closed: s.closed, audioMsReceived: s.audioMsReceived, events: { length: s.events }, responses: s.responses }));
          view.counts = { modelSent: f.modelSent, modelReceived: f.modelReceived };
          start.last = { cpuUs: f.cpuUs, sessions: f.sessions.length, loopDelayMs: f.loopDelayMs };
        },
        async close() {
          await stopChild(child, { type: 'stop' } satisfies ModelWorkerRequest);
        },
      };
      return view;
    } catch (e) {
      await stopChild(child, { type: 'stop' } satisfies ModelWorkerRequest);
      throw e;
    }
  };
  return start;
}
