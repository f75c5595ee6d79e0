/**
 * Relay suite: N concurrent simulated calls through the real server on
 * loopback (real uWS, real wasm transcoder, real SQLite store), the model
 * stand-in answering every turn with real audio.
 *
 * The relay runs in a child process (bench/relay-server.ts) so its CPU is
 * measured alone; callers and the stand-in run here. Figures:
 * - relay-added latency per audio message, each direction: message in →
 *   message out inside the relay (parse, transcode, serialize, send), p50/p99
 *   over every frame of every call;
 * - relay CPU per call-second, and per 20 ms frame pair (one in, one out),
 *   which the regression check compares with the DSP suite's full-duplex
 *   figure from the same run (the relay's overhead multiple over its DSP).
 */
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { placeCall, type CallResult } from '../../src/sim/caller.js';
import { startModelStandIn, type Scenario } from '../../src/sim/model-server.js';
import type { LatencySummary } from '../../src/call/stats.js';
import type { Result, RunOptions, Suite } from '../types.js';

const AUTH = 'bench-auth-token';
const PUBLIC = 'https://relay.bench.invalid';

const scenario: Scenario = {
  greeting: 'Hello, how can I help?',
  turns: [
    { callerTranscript: 'check my coverage please', reply: 'Sure, can I get the member ID?' },
    { callerTranscript: 'M B 1 2 3 4 5 6', reply: 'Thanks, and the date of birth?' },
    { callerTranscript: 'March fifth 1980', reply: 'You are covered. Anything else?' },
  ],
};

interface RelayStats {
  cpuUs: number;
  wallMs: number;
  callsEnded: number;
  inbound: LatencySummary;
  outbound: LatencySummary;
  turn: LatencySummary;
}

export async function measureRelay(calls: number, mode: 'transcode' | 'passthrough', log: (s: string) => void) {
  const dir = mkdtempSync(join(tmpdir(), 'callbridge-bench-'));
  const model = await startModelStandIn({ scenario });
  const serverJs = fileURLToPath(new URL('../relay-server.js', import.meta.url));
  const child = fork(serverJs, [], {
    env: {
      ...process.env,
      PORT: '0',
      HOST: '127.0.0.1',
      PUBLIC_URL: PUBLIC,
      TWILIO_AUTH_TOKEN: AUTH,
      OPENAI_BASE_URL: model.baseUrl,
      OPENAI_API_KEY: 'bench',
      AUDIO_MODE: mode,
      CALLBRIDGE_DB: join(dir, 'bench.db'),
      LOG_LEVEL: 'error',
      MAX_CONCURRENT_CALLS: String(calls * 2),
    },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.once('message', (m: { type: string; port: number }) => (m.type === 'ready' ? resolve(m.port) : reject(new Error('bad ready'))));
      child.once('exit', (code) => reject(new Error(`relay server exited early (${code})`)));
    });
    log(`relay: ${calls} concurrent calls (${mode}) on port ${port}…`);
    const t0 = performance.now();
    const results: CallResult[] = await Promise.all(
      Array.from({ length: calls }, (_, i) =>
        placeCall({
          baseUrl: `http://127.0.0.1:${port}`,
          publicUrl: PUBLIC,
          authToken: AUTH,
          from: `+1555${String(i).padStart(7, '0')}`,
          utterances: [{ durationMs: 900 }, { durationMs: 900 }, { durationMs: 900 }],
          hangupAfterMs: 500,
          maxCallMs: 60_000,
        }),
      ),
    );
    const wallMs = performance.now() - t0;
    const stats = await new Promise<RelayStats>((resolve, reject) => {
      child.once('message', (m: RelayStats & { type: string }) => (m.type === 'stats' ? resolve(m) : reject(new Error('bad stats'))));
      child.send({ type: 'stop' });
    });
    const callSeconds = results.reduce((s, r) => s + r.durationMs, 0) / 1000;
    const violations = results.reduce((s, r) => s + r.protocolViolations.length, 0);
    const callerTurns = results.flatMap((r) => r.turnLatenciesMs).sort((a, b) => a - b);
    return { stats, callSeconds, wallMs, violations, callerTurns, calls: results.length };
  } finally {
    // Let the server exit on its own (it closes its store); kill it only if it hangs.
    if (child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    }
    await model.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function pct(sorted: number[], q: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]! : NaN;
}

export const relaySuite: Suite = {
  name: 'relay',
  description: 'N concurrent simulated calls through the real server on loopback: relay-added latency per frame, relay CPU per call-second',
  async run(opts: RunOptions): Promise<Result[]> {
    const calls = opts.quick ? 20 : 100;
    const m = await measureRelay(calls, 'transcode', opts.log);
    if (m.violations > 0) throw new Error(`relay bench: simulated callers saw ${m.violations} protocol violations`);
    if (m.stats.callsEnded < calls) throw new Error(`relay bench: only ${m.stats.callsEnded} of ${calls} calls ended`);
    const cpuNsPerCallSecond = (m.stats.cpuUs * 1000) / m.callSeconds;
    const common = { suite: 'relay', ours: true };
    return [
      {
        ...common,
        id: 'relay.inbound',
        name: `relay-added latency, Twilio → model (${calls} calls)`,
        group: 'relay latency per frame',
        per: 'frame',
        medianNs: m.stats.inbound.p50Ms * 1e6,
        p99Ns: m.stats.inbound.p99Ms * 1e6,
        samples: m.stats.inbound.count,
      },
      {
        ...common,
        id: 'relay.outbound',
        name: `relay-added latency, model → Twilio (${calls} calls)`,
        group: 'relay latency per frame',
        per: 'audio delta',
        medianNs: m.stats.outbound.p50Ms * 1e6,
        p99Ns: m.stats.outbound.p99Ms * 1e6,
        samples: m.stats.outbound.count,
      },
      {
        ...common,
        id: 'relay.cpuPerCallSecond',
        name: `relay CPU per call-second (${calls} calls, server process only)`,
        group: 'relay CPU',
        per: 'call-second',
        medianNs: cpuNsPerCallSecond,
        samples: m.calls,
        extra: { callSeconds: m.callSeconds, cpuMs: m.stats.cpuUs / 1000, wallMs: Math.round(m.wallMs), cpuShareOfOneCore: (m.stats.cpuUs / 1000) / m.stats.wallMs },
      },
      {
        ...common,
        id: 'relay.cpuPerFramePair',
        name: 'relay CPU per 20 ms of call (one frame each way)',
        group: 'relay CPU',
        per: '20 ms of call',
        medianNs: cpuNsPerCallSecond / 50,
        samples: m.calls,
        peer: 'dsp.fullDuplex.wasm',
      },
      {
        ...common,
        id: 'relay.turnLatency',
        name: 'per-turn latency, relay view (speech_stopped → first frame out)',
        group: 'turn latency',
        per: 'turn',
        medianNs: m.stats.turn.p50Ms * 1e6,
        p99Ns: m.stats.turn.p99Ms * 1e6,
        samples: m.stats.turn.count,
        note: `caller view p50 ${Math.round(pct(m.callerTurns, 0.5))} ms, p99 ${Math.round(pct(m.callerTurns, 0.99))} ms (includes the stand-in's VAD silence and think time)`,
      },
    ];
  },
  conclusions(results: Result[]): string[] {
    const by = new Map(results.map((r) => [r.id, r]));
    const inb = by.get('relay.inbound');
    const out = by.get('relay.outbound');
    const cpu = by.get('relay.cpuPerCallSecond');
    if (!inb || !out || !cpu) return [];
    const callsPerCore = 1e9 / cpu.medianNs;
    return [
      `relay: p99 relay-added latency ${((inb.p99Ns ?? NaN) / 1e6).toFixed(3)} ms in, ${((out.p99Ns ?? NaN) / 1e6).toFixed(3)} ms out ` +
        `(target ≤ 2 ms at 100 calls); CPU ${(cpu.medianNs / 1e6).toFixed(2)} ms per call-second → about ${Math.floor(callsPerCore)} concurrent calls per core.`,
    ];
  },
};
