/**
 * Stall suite: playout under a starved event loop (issue 21), the fixed lead
 * against the adaptive one in the same run.
 *
 * The relay (bench/relay-server.ts, its own process) gets an injected stall
 * pattern (bench/stall-injector.ts via NODE_OPTIONS --import: the loop
 * busy-waits STALL_MIN_MS–STALL_MAX_MS every STALL_EVERY_MS, the same seeded
 * lengths in every run) and serves CALLS concurrent simulated callers
 * (src/sim/caller.ts) against the model stand-in (src/sim/model-server.ts,
 * this process), passthrough, each call: the greeting, a question and its
 * answer, a question whose answer the caller interrupts (barge-in) after
 * BARGE_IN_AFTER_MS of it, one more answer, and a short last word (the
 * stand-in's "Okay." back) so the third answer is heard whole. Once with the fixed lead
 * (PLAYOUT_LEAD_MAX_MS = PLAYOUT_LEAD_MS = LEAD_MS) and once adaptive
 * (PLAYOUT_LEAD_MAX_MS = LEAD_MAX_MS), alternating, ROUNDS times each (the
 * order flips each round). Call starts are spread evenly over one stall
 * period, so the barge-ins of a run meet every phase of the pattern (started
 * together, they would all land inside a stall in one run and between stalls
 * in the other: seen, 170 ms vs 42 ms p50).
 *
 * Figures, per lead, median over its rounds:
 * - playback gaps per call-minute, at the callers: a break between two
 *   playback runs (CallResult.playback) shorter than ANSWER_BREAK_MAX_MS and
 *   not caused by a `clear` — a break inside an answer. The callers wait
 *   PAUSE_MS of quiet before speaking, more than any break counted, so a
 *   counted break is never between an answer and the next question.
 *   Call-minutes = the calls' summed stream durations. The gap time (ms per
 *   call-minute) goes in `extra`.
 * - barge-in latency: the caller's speech start → the `clear` it received
 *   (CallResult.bargeIns), p50 (medianNs) and p99 over all calls of the
 *   round; a barge-in never cleared is counted in `extra.unanswered`.
 * - the deepest buffer a caller held (CallResult.maxBufferedMs, median over
 *   calls): how far the lead grew, in `extra`.
 *
 * The suite fails (throws) when the relay did not print the injector's line
 * (the stalls were not on): a comparison without stalls proves nothing.
 */
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { placeCall, type CallResult, type Utterance } from '../../src/sim/caller.js';
import { startModelStandIn } from '../../src/sim/model-server.js';
import type { Scenario } from '../../src/sim/scenarios.js';
import { median, pct } from '../measure.js';
import { RELAY_CHILD_ENV, stopChild } from '../proc.js';
import { burstEnv } from './relay.js';
import type { Result, RunOptions, Suite } from '../types.js';

const AUTH = 'bench-auth-token';
const PUBLIC = 'https://relay.bench.invalid';
/** PLAYOUT_LEAD_MS of both runs (the product's default). */
export const LEAD_MS = 100;
/** PLAYOUT_LEAD_MAX_MS of the adaptive run (the product's default). */
export const LEAD_MAX_MS = 500;
/** The injected pattern: a stall of STALL_MIN_MS–STALL_MAX_MS every STALL_EVERY_MS. */
export const STALL = { everyMs: 2000, minMs: 150, maxMs: 400, seed: 21 };
/** Quiet the caller waits for before its next question, ms: longer than any break counted as a gap. */
const PAUSE_MS = 1000;
/** A break between playback runs shorter than this, with no clear, is a gap inside an answer. */
const ANSWER_BREAK_MAX_MS = PAUSE_MS;
const BARGE_IN_AFTER_MS = 1500;

/** Long answers (~4–6 s of audio each at the stand-in's 65 ms a character), so each spans several stalls. */
const scenario: Scenario = {
  greeting: 'Thanks for calling the benefits line. I can check coverage, claims and referrals for you today.',
  turns: [
    { callerTranscript: 'check my coverage please', reply: 'Sure, I can help with that. Can I get the member ID on the card, please?' },
    { callerTranscript: 'it is M B 1 2 3', reply: 'Thanks. And the date of birth of the member, month, day and year, please?' },
    { callerTranscript: 'March fifth 1980', reply: 'You are covered for this visit. Is there anything else I can help with?' },
  ],
};

const utterances: Utterance[] = [
  { durationMs: 900, pauseMs: PAUSE_MS },
  { durationMs: 900, pauseMs: PAUSE_MS, bargeInAfterMs: BARGE_IN_AFTER_MS },
  { durationMs: 900, pauseMs: PAUSE_MS },
  // A short last word ("Okay." back): the caller hangs up at the first quiet after its last
  // utterance, so without it a gap in the third answer would end the call mid-answer.
  { durationMs: 600, pauseMs: PAUSE_MS },
];

type Lead = 'fixed' | 'adaptive';

interface RoundFigures {
  lead: Lead;
  calls: number;
  callMinutes: number;
  gaps: number;
  gapMs: number;
  bargeInMs: number[];
  unanswered: number;
  maxBufferedMs: number[];
  violations: number;
}

const relayScript = fileURLToPath(new URL('../relay-server.js', import.meta.url));
const injector = fileURLToPath(new URL('../stall-injector.js', import.meta.url));

/** Breaks inside answers of one call (see the file comment). */
export function answerGaps(r: Pick<CallResult, 'playback' | 'clears'>): { count: number; ms: number } {
  let count = 0;
  let ms = 0;
  for (let i = 1; i < r.playback.length; i++) {
    const prev = r.playback[i - 1]!;
    const run = r.playback[i]!;
    const breakMs = run.startMs - prev.endMs;
    if (breakMs <= 0 || breakMs >= ANSWER_BREAK_MAX_MS) continue;
    if (r.clears.some((c) => c.atMs > prev.startMs && c.atMs <= run.startMs)) continue; // a barge-in ended the run
    count++;
    ms += breakMs;
  }
  return { count, ms };
}

async function runOnce(lead: Lead, calls: number, log: (s: string) => void): Promise<RoundFigures> {
  const dir = mkdtempSync(join(tmpdir(), 'callbridge-stall-'));
  const model = await startModelStandIn({ scenario });
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${injector}`.trim(),
    STALL_EVERY_MS: String(STALL.everyMs),
    STALL_MIN_MS: String(STALL.minMs),
    STALL_MAX_MS: String(STALL.maxMs),
    STALL_SEED: String(STALL.seed),
    PLAYOUT_LEAD_MS: String(LEAD_MS),
    PLAYOUT_LEAD_MAX_MS: String(lead === 'fixed' ? LEAD_MS : LEAD_MAX_MS),
    PORT: '0',
    HOST: '127.0.0.1',
    PUBLIC_URL: PUBLIC,
    TWILIO_AUTH_TOKEN: AUTH,
    OPENAI_BASE_URL: model.baseUrl,
    OPENAI_API_KEY: 'bench',
    AUDIO_MODE: 'passthrough',
    CALLBRIDGE_DB: join(dir, 'bench.db'),
    LOG_LEVEL: 'error',
    RECORDING: 'off',
    ...burstEnv(calls),
    ...RELAY_CHILD_ENV,
  };
  for (const k of ['INBOUND_BATCH_MS', 'EDGE', 'RECORDING_S3_URL', 'ADMIN_TOKEN', 'CONSOLE_TOKENS']) delete env[k];
  const child = fork(relayScript, [], { env, stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  let injected = false;
  createInterface({ input: child.stdout! }).on('line', (line) => {
    if (line.startsWith('stall-injector:')) injected = true;
    else if (!line.startsWith('edge:')) process.stderr.write(`[relay] ${line}\n`);
  });
  try {
    const ready = await new Promise<{ port: number }>((resolve, reject) => {
      child.once('message', (m: { type: string; port: number }) => (m.type === 'ready' ? resolve(m) : reject(new Error('the relay sent a bad ready message'))));
      child.once('exit', (code) => reject(new Error(`the relay exited early (${code})`)));
    });
    if (!injected) throw new Error(`stall suite: the relay did not load the stall injector (${injector}); the comparison would have no stalls`);
    log(`stall: ${calls} calls, ${lead} lead…`);
    // Starts spread evenly over one stall period: all calls starting together would put every
    // barge-in at the same phase of the pattern (inside a stall in one run, between stalls in the other).
    const results = await Promise.all(
      Array.from({ length: calls }, async (_, i) => {
        await new Promise((r) => setTimeout(r, (i * STALL.everyMs) / calls));
        return placeCall({
          baseUrl: `http://127.0.0.1:${ready.port}`,
          publicUrl: PUBLIC,
          authToken: AUTH,
          from: `+1555${String(i).padStart(7, '0')}`,
          utterances,
          hangupAfterMs: 500,
          maxCallMs: 60_000,
        });
      }),
    );
    await new Promise<void>((resolve) => {
      child.once('message', () => resolve());
      child.send({ type: 'stop' });
    });
    let gaps = 0;
    let gapMs = 0;
    for (const r of results) {
      const g = answerGaps(r);
      gaps += g.count;
      gapMs += g.ms;
    }
    const bargeIns = results.flatMap((r) => r.bargeIns);
    return {
      lead,
      calls,
      callMinutes: results.reduce((s, r) => s + r.durationMs, 0) / 60_000,
      gaps,
      gapMs,
      bargeInMs: bargeIns.filter((b) => b.clearAtMs !== undefined).map((b) => b.clearAtMs! - b.speechStartMs).sort((a, b) => a - b),
      unanswered: bargeIns.filter((b) => b.clearAtMs === undefined).length,
      maxBufferedMs: results.map((r) => r.maxBufferedMs).sort((a, b) => a - b),
      violations: results.reduce((s, r) => s + r.protocolViolations.length, 0),
    };
  } finally {
    await stopChild(child);
    await model.close();
    rmSync(dir, { recursive: true, force: true });
  }
}


const LABEL: Record<Lead, string> = {
  fixed: `fixed lead (PLAYOUT_LEAD_MAX_MS = PLAYOUT_LEAD_MS = ${LEAD_MS})`,
  adaptive: `adaptive lead (${LEAD_MS}–${LEAD_MAX_MS} ms)`,
};

function resultsFor(lead: Lead, rounds: RoundFigures[]): Result[] {
  const ours = lead === 'adaptive';
  const common = { suite: 'stall', ours, samples: rounds.length };
  const rates = rounds.map((r) => r.gaps / r.callMinutes);
  const stall = `stalls of ${STALL.minMs}–${STALL.maxMs} ms every ${STALL.everyMs} ms`;
  return [
    {
      ...common,
      id: `stall.${lead}.gaps`,
      name: `playback gaps per call-minute, ${LABEL[lead]}`,
      group: `playout under a starved loop (${stall}; ${rounds[0]!.calls} calls, median of rounds)`,
      per: 'call-minute',
      unit: 'count',
      medianNs: median(rates),
      peer: ours ? 'stall.fixed.gaps' : undefined,
      extra: {
        rounds: rates.map((x) => x.toFixed(2)).join(' '),
        gapMsPerCallMinute: rounds.map((r) => (r.gapMs / r.callMinutes).toFixed(0)).join(' '),
        gaps: rounds.map((r) => r.gaps).join(' '),
        callMinutes: rounds.map((r) => r.callMinutes.toFixed(1)).join(' '),
        maxBufferedMsMedian: rounds.map((r) => median(r.maxBufferedMs).toFixed(0)).join(' '),
        violations: rounds.reduce((s, r) => s + r.violations, 0),
      },
    },
    {
      ...common,
      id: `stall.${lead}.bargeIn`,
      name: `barge-in latency (speech start → clear), ${LABEL[lead]}`,
      group: `playout under a starved loop (${stall}; ${rounds[0]!.calls} calls, median of rounds)`,
      per: 'barge-in',
      medianNs: median(rounds.map((r) => pct(r.bargeInMs, 0.5))) * 1e6,
      p99Ns: median(rounds.map((r) => pct(r.bargeInMs, 0.99))) * 1e6,
      peer: ours ? 'stall.fixed.bargeIn' : undefined,
      extra: {
        p50Ms: rounds.map((r) => pct(r.bargeInMs, 0.5).toFixed(0)).join(' '),
        p95Ms: rounds.map((r) => pct(r.bargeInMs, 0.95).toFixed(0)).join(' '),
        unanswered: rounds.reduce((s, r) => s + r.unanswered, 0),
      },
    },
  ];
}

export const stallSuite: Suite = {
  name: 'stall',
  description: 'playout under an injected stall pattern in the relay: playback gaps per call-minute and barge-in latency, fixed vs adaptive lead, same run',
  async run(opts: RunOptions): Promise<Result[]> {
    const calls = opts.quick ? 20 : 40;
    const roundsN = opts.quick ? 1 : 2;
    const by: Record<Lead, RoundFigures[]> = { fixed: [], adaptive: [] };
    for (let i = 0; i < roundsN; i++) {
      const order: Lead[] = i % 2 === 0 ? ['fixed', 'adaptive'] : ['adaptive', 'fixed'];
      for (const lead of order) by[lead].push(await runOnce(lead, calls, opts.log));
    }
    return [...resultsFor('fixed', by.fixed), ...resultsFor('adaptive', by.adaptive)];
  },
  conclusions(results: Result[]): string[] {
    const get = (id: string) => results.find((r) => r.id === id)?.medianNs;
    const [gf, ga, bf, ba] = [get('stall.fixed.gaps'), get('stall.adaptive.gaps'), get('stall.fixed.bargeIn'), get('stall.adaptive.bargeIn')];
    if (gf === undefined || ga === undefined || bf === undefined || ba === undefined) return [];
    const lines = [
      `stall: playback gaps per call-minute, adaptive ${ga.toFixed(2)} vs fixed ${gf.toFixed(2)} (${gf > 0 ? `${(ga / gf).toFixed(2)}x` : 'fixed had none: the stalls did not bite'}); ` +
        `barge-in p50 adaptive ${(ba / 1e6).toFixed(0)} ms vs fixed ${(bf / 1e6).toFixed(0)} ms (${(ba / bf).toFixed(2)}x)`,
    ];
    return lines;
  },
};
