/**
 * Pipeline suite (issue 19): PROVIDER=pipeline (Deepgram → chat LLM →
 * ElevenLabs, src/pipeline/) measured end to end through the real relay,
 * beside the Realtime path in the same run.
 *
 * Set-up per path: callbridge in a child process (bench/relay-server.ts, as
 * the relay and latency suites run it), passthrough µ-law, CALLS calls
 * (quick: QUICK_CALLS) started STAGGER_MS apart, TURNS caller turns each
 * (relay.ts's scenario, no tools). The pipeline path talks to the three
 * stand-ins (src/sim/pipeline-standins.ts), the Realtime path to
 * src/sim/model-server.ts; both stand-ins run in this process.
 *
 * Stand-in timings: the vendors' published first-byte times (below, with
 * sources), no jitter.
 *
 * Figures, from each call's record (turnLatencies, read from the relay's
 * store once it has stopped):
 * - turn latency: speech_stopped → first frame sent to Twilio (the record's
 *   latencyMs), p50/p95, and the stage split (parts.stages: final transcript,
 *   first LLM token, first TTS audio; then first frame), ms after
 *   speech_stopped;
 * - the pipeline's own share per turn: the turn's total less the time spent
 *   waiting on a vendor, p50/p99. Vendor waits are what the stand-ins took:
 *   Deepgram's from its session record (Finalize arrival → the final or
 *   UtteranceEnd it sent next; 0 when the turn closed on an endpoint final
 *   that came before speech_stopped); the LLM's from its request record:
 *   arrival → the write that completed the first text the TTS can speak (or
 *   its last write); ElevenLabs' from its session record: the first text's
 *   arrival → the first audio frame it sent. Every time is the stand-in's
 *   own, so a late timer of theirs counts as the vendor's, not ours; this
 *   process's event-loop delay p99 is printed beside the own share;
 * - CPU per call-second of the callbridge process (/proc, all threads),
 *   pipeline ÷ Realtime in the same run.
 * The resampler pairs' ns per 20 ms frame are the dsp suite's (dsp.up16 …
 * dsp.down44): not measured again here.
 *
 * Matching: calls start STAGGER_MS apart, so the Deepgram stand-in's
 * sessions (connect order) are the calls in start order; a turn's Finalize
 * is the one nearest its speech_stopped (record time + the caller's stream
 * start on this process's clock), within MATCH_MS; its LLM request the one
 * that arrived nearest after its final transcript, and its ElevenLabs session
 * the one whose first text arrived nearest after that request's first
 * speakable write, each within MATCH_MS (a turn left unmatched is counted and
 * printed, not guessed).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../../src/config.js';
import { silentLogger } from '../../src/log.js';
import { TextChunker, speakable } from '../../src/pipeline/tts.js';
import type { TurnLatency } from '../../src/records.js';
import { placeCall, type CallResult, type Utterance } from '../../src/sim/caller.js';
import type { DeepgramStandInSession } from '../../src/sim/deepgram-server.js';
import type { ElevenSession } from '../../src/sim/elevenlabs-server.js';
import type { LlmStandInRequest } from '../../src/sim/llm-server.js';
import { startModelStandIn } from '../../src/sim/model-server.js';
import { startPipelineStandIns } from '../../src/sim/pipeline-standins.js';
import { openCallStore } from '../../src/store/open.js';
import { pct } from '../measure.js';
import { ask, processCpuUs, RELAY_CHILD_ENV, stopChild } from '../proc.js';
import type { Result, RunOptions, Suite } from '../types.js';
import { GENERATION_MS, SYNTHESIS_MS } from './latency.js';
import { burstEnv, scenario } from './relay.js';

// ── Vendors' published first-byte times (ms) ─────────────────────────────
/**
 * Deepgram streaming (Nova): final transcript after the endpoint. Deepgram
 * states sub-300 ms streaming latency for Nova-3; integrators measure ~150 ms
 * (https://www.eachlabs.ai/deepgram/nova-3/deepgram-nova-3-speech-to-text,
 * https://edesy.in/docs/voice-agent/providers/deepgram). The stand-in answers
 * a Finalize at once; this delay applies to its own endpoint finals.
 */
export const DEEPGRAM_FINAL_MS = 150;
/** gpt-4o-mini time to first token, ~0.3-0.4 s (https://apikeyhealth.com/blogs/the-latency-tradeoff: ~0.4 s). */
export const FIRST_TOKEN_MS = 400;
/** Between streamed chunks (the stand-in's default: ~100 tokens/s). */
export const TOKEN_MS = 10;
/** ElevenLabs Flash v2.5 "~75ms" (https://elevenlabs.io/docs/overview/models). */
export const FIRST_AUDIO_MS = 75;
/** The Realtime stand-in's speech_stopped → first audio: the latency suite's seed budget. */
const REALTIME_RESPONSE_MS = GENERATION_MS + SYNTHESIS_MS;

const CALLS = 30;
const QUICK_CALLS = 5;
const TURNS = 3;
const STAGGER_MS = 150;
/** A Finalize this far from a turn's speech_stopped (this process's clock) is another turn's. */
const MATCH_MS = 60;
/** The bound on the pipeline's own share per turn, p99. */
export const OWN_SHARE_P99_MS = 20;

const AUTH = 'bench-auth-token';
const PUBLIC = 'https://relay.bench.invalid';
const relayScript = fileURLToPath(new URL('../relay-server.js', import.meta.url));

type PathKey = 'pipeline' | 'realtime';

const asc = (xs: number[]) => [...xs].sort((a, b) => a - b);

interface CallTurns {
  result: CallResult;
  turns: TurnLatency[];
}

interface PathFigures {
  key: PathKey;
  calls: CallTurns[];
  /** Relay CPU µs over the calls, and the calls' total duration, s. */
  cpuUs: number;
  callSeconds: number;
  /** Pipeline only: the stand-ins' records (LLM times are ms after llmStartedAt; the others performance.now()). */
  deepgram?: DeepgramStandInSession[];
  llm?: { startedAt: number; requests: LlmStandInRequest[] };
  eleven?: ElevenSession[];
  /** This process's event-loop delay while the calls ran, p99 ms. */
  loopDelayP99Ms: number;
}

// ── Pure arithmetic (test/bench-pipeline.test.ts) ─────────────────────────

/** The LLM stand-in's chunks of `text`: a word with its leading space, or a run of punctuation (llm-server.ts). */
export function llmPieces(text: string): string[] {
  return text.match(/\s*[\w'’]+|\s*[^\w\s]+|\s+/g) ?? [];
}

/**
 * Which of the LLM stand-in's writes completes the first text a TTS stream
 * can speak: write i carries piece i (the first also the role chunk), so the
 * first piece after which TextChunker cuts a speakable chunk; undefined when
 * none does (the client ends the TTS input after the stream's last write).
 */
export function llmFirstSpeakableWrite(text: string): number | undefined {
  const pieces = llmPieces(text);
  const chunker = new TextChunker();
  for (let i = 0; i < pieces.length; i++) {
    if (chunker.push(pieces[i]!).some(speakable)) return i;
  }
  return undefined;
}

/** The LLM's wait in a turn: the request's arrival → the write that let the TTS start (ms; its own clock). */
export function llmWaitMs(req: Pick<LlmStandInRequest, 'atMs' | 'sentAtMs' | 'answer'>): number | undefined {
  const k = llmFirstSpeakableWrite(req.answer?.text ?? '');
  const at = k === undefined ? req.sentAtMs.at(-1) : req.sentAtMs[k];
  return at === undefined ? undefined : at - req.atMs;
}

/** ElevenLabs' wait for one answer: its first text's arrival → its first audio frame (ms). */
export function ttsWaitMs(session: Pick<ElevenSession, 'messages' | 'generations'>): number | undefined {
  const first = session.messages.find((m) => /\S/.test(m.text));
  const frame = session.generations.find((g) => g.firstFrameAt !== undefined)?.firstFrameAt;
  return first && frame !== undefined ? Math.max(0, frame - first.at) : undefined;
}

/**
 * Deepgram's wait in a turn: from the Finalize that arrived nearest `stoppedAt`
 * (within matchMs) to the next final or UtteranceEnd the stand-in sent, at
 * most `stageMs` (the turn's speech_stopped → final transcript); 0 when no
 * Finalize matches (the turn closed on an endpoint final already in).
 */
export function deepgramWaitMs(session: Pick<DeepgramStandInSession, 'texts' | 'sent'>, stoppedAt: number, stageMs: number, matchMs: number): number {
  const finalize = session.texts
    .filter((t) => t.message?.type === 'Finalize' && Math.abs(t.at - stoppedAt) <= matchMs)
    .sort((a, b) => Math.abs(a.at - stoppedAt) - Math.abs(b.at - stoppedAt))[0];
  if (!finalize) return 0;
  const answer = session.sent.find((s) => s.at >= finalize.at && ((s.message?.type === 'Results' && s.message.is_final) || s.message?.type === 'UtteranceEnd'));
  if (!answer) return 0;
  return Math.min(Math.max(0, stageMs), answer.at - finalize.at);
}

/** The turn's total less the vendors' waits, never below 0 (ms). */
export function ownShareMs(totalMs: number, vendorWaitsMs: readonly number[]): number {
  return Math.max(0, totalMs - vendorWaitsMs.reduce((s, w) => s + w, 0));
}

// ── One path ───────────────────────────────────────────────────────────────

async function runPath(key: PathKey, calls: number, log: (s: string) => void): Promise<PathFigures> {
  const dir = mkdtempSync(join(tmpdir(), `callbridge-pbench-${key}-`));
  const stands =
    key === 'pipeline'
      ? await startPipelineStandIns({
          scenario,
          deepgram: { finalDelayMs: DEEPGRAM_FINAL_MS },
          llm: { firstTokenMs: FIRST_TOKEN_MS, tokenMs: TOKEN_MS },
          eleven: { firstAudioDelayMs: FIRST_AUDIO_MS },
        })
      : undefined;
  const model = key === 'realtime' ? await startModelStandIn({ scenario, responseDelayMs: REALTIME_RESPONSE_MS }) : undefined;
  const dbPath = join(dir, 'bench.db');
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: '0',
    HOST: '127.0.0.1',
    PUBLIC_URL: PUBLIC,
    TWILIO_AUTH_TOKEN: AUTH,
    OPENAI_BASE_URL: model ? `http://127.0.0.1:${model.port}/v1` : stands!.baseUrl,
    OPENAI_API_KEY: 'bench',
    AUDIO_MODE: 'passthrough',
    CALLBRIDGE_DB: dbPath,
    LOG_LEVEL: 'error',
    RECORDING: 'off',
    ...burstEnv(calls),
    ...(stands?.env ?? {}),
    ...RELAY_CHILD_ENV,
  };
  for (const k of ['INBOUND_BATCH_MS', 'EDGE', 'RECORDING_S3_URL', 'ADMIN_TOKEN', 'CONSOLE_TOKENS', 'DATABASE_URL']) delete env[k];
  if (key === 'realtime') delete env.PROVIDER;
  let relay: ChildProcess | undefined;
  try {
    relay = fork(relayScript, [], { env, stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
    createInterface({ input: relay.stdout! }).on('line', (line) => {
      if (!line.startsWith('edge:')) process.stderr.write(`[callbridge] ${line}\n`);
    });
    const ready = await ask<{ port: number }>(relay, {}, 'ready', `callbridge (${key})`);
    log(`pipeline: ${calls} calls on ${key}, ${STAGGER_MS} ms apart…`);
    const loop = monitorEventLoopDelay({ resolution: 5 });
    loop.enable();
    const cpu0 = processCpuUs(relay.pid!);
    const utterances: Utterance[] = Array.from({ length: TURNS }, () => ({ durationMs: 900 }));
    const results = await Promise.all(
      Array.from({ length: calls }, async (_, i) => {
        await new Promise((r) => setTimeout(r, i * STAGGER_MS));
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
    const cpuUs = processCpuUs(relay.pid!) - cpu0;
    loop.disable();
    const stopped = ask(relay, {}, 'stats', `callbridge (${key})`);
    relay.send({ type: 'stop' });
    await stopped;
    await stopChild(relay);
    relay = undefined;
    const store = (await openCallStore({ dbPath, prices: loadConfig(env).prices, log: silentLogger, readOnly: true })).store;
    const withTurns: CallTurns[] = [];
    try {
      for (const result of results) withTurns.push({ result, turns: (await store.get(result.callSid))?.turnLatencies ?? [] });
    } finally {
      await store.close();
    }
    return {
      key,
      calls: withTurns,
      cpuUs,
      callSeconds: results.reduce((s, r) => s + r.durationMs, 0) / 1000,
      ...(stands ? { deepgram: stands.deepgram.sessions, llm: { startedAt: stands.llm.startedAt, requests: stands.llm.requests }, eleven: stands.eleven.sessions } : {}),
      loopDelayP99Ms: loop.percentile(99) / 1e6,
    };
  } finally {
    if (relay) await stopChild(relay);
    await stands?.close();
    await model?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}


// ── Figures ──────────────────────────────────────────────────────────────

interface TurnSplit {
  totalMs: number;
  /** Cumulative, ms after speech_stopped. */
  finalTranscriptMs?: number;
  firstTokenMs?: number;
  firstTtsAudioMs?: number;
  deepgramMs: number;
  llmMs: number;
  ttsMs: number;
  ownMs: number;
  /** |Finalize arrival − speech_stopped on this clock| for a matched Finalize, ms. */
  matchErrMs?: number;
}

/** Every pipeline turn with its stages and vendor waits. */
function splitTurns(f: PathFigures): { turns: TurnSplit[]; unmatched: number } {
  const sessions = f.deepgram ?? [];
  if (sessions.length !== f.calls.length) {
    throw new Error(`pipeline bench: ${sessions.length} Deepgram sessions for ${f.calls.length} calls (a reconnect?): turns cannot be matched to sessions`);
  }
  const out: TurnSplit[] = [];
  let unmatched = 0;
  const llm = f.llm!;
  const requests = llm.requests.filter((r) => r.status === 200);
  const eleven = f.eleven ?? [];
  const nearestAfter = <T>(xs: readonly T[], at: (x: T) => number | undefined, from: number): T | undefined => {
    let best: T | undefined;
    let bestD = Infinity;
    for (const x of xs) {
      const t = at(x);
      if (t === undefined) continue;
      const d = t - from;
      if (d >= -1 && d <= MATCH_MS && d < bestD) [best, bestD] = [x, d];
    }
    return best;
  };
  // Calls started STAGGER_MS apart connect in order: session i is call i.
  f.calls.forEach(({ result, turns }, i) => {
    const session = sessions[i]!;
    const ordered = [...turns].sort((a, b) => (a.parts?.speechStoppedMs ?? 0) - (b.parts?.speechStoppedMs ?? 0));
    ordered.forEach((t, k) => {
      const p = t.parts;
      if (!p?.stages) return;
      const after = (ms: number | undefined) => (ms === undefined ? undefined : ms - p.speechStoppedMs);
      const finalTranscriptMs = after(p.stages.finalTranscriptMs);
      const stoppedAt = result.startedAtPerfMs + p.speechStoppedMs;
      const deepgramMs = deepgramWaitMs(session, stoppedAt, finalTranscriptMs ?? 0, MATCH_MS);
      const fin = session.texts.filter((x) => x.message?.type === 'Finalize').map((x) => Math.abs(x.at - stoppedAt));
      void k;
      // The turn's LLM request: arrived nearest after its final transcript; its TTS session: first text nearest after the speakable write.
      const finalAt = stoppedAt + (finalTranscriptMs ?? 0);
      const req = nearestAfter(requests, (r) => llm.startedAt + r.atMs, finalAt);
      const llmMs = req ? llmWaitMs(req) : undefined;
      const speakAt = req && llmMs !== undefined ? llm.startedAt + req.atMs + llmMs : undefined;
      const tts = speakAt === undefined ? undefined : nearestAfter(eleven, (e) => e.messages.find((m) => /\S/.test(m.text))?.at, speakAt);
      const ttsMs = tts ? ttsWaitMs(tts) : undefined;
      if (llmMs === undefined || ttsMs === undefined) {
        unmatched++;
        return;
      }
      const split: TurnSplit = { totalMs: t.latencyMs, deepgramMs, llmMs, ttsMs, ownMs: ownShareMs(t.latencyMs, [deepgramMs, llmMs, ttsMs]) };
      if (finalTranscriptMs !== undefined) split.finalTranscriptMs = finalTranscriptMs;
      const token = after(p.stages.firstTokenMs);
      if (token !== undefined) split.firstTokenMs = token;
      const audio = after(p.stages.firstTtsAudioMs);
      if (audio !== undefined) split.firstTtsAudioMs = audio;
      const nearest = Math.min(...fin);
      if (nearest <= MATCH_MS) split.matchErrMs = nearest;
      out.push(split);
    });
  });
  return { turns: out, unmatched };
}

const ns = (ms: number) => Math.round(ms * 1e6);

function latencyResult(id: string, name: string, msAll: number[], extra: Record<string, number | string> = {}): Result {
  const s = asc(msAll);
  return {
    id,
    suite: 'pipeline',
    name,
    group: 'pipeline: speech_stopped → first frame out (record), ms after speech_stopped',
    per: 'turn',
    medianNs: ns(pct(s, 0.5)),
    p99Ns: ns(pct(s, 0.99)),
    samples: s.length,
    extra: { p95Ms: Number(pct(s, 0.95).toFixed(1)), ...extra },
  };
}

function cpuResult(f: PathFigures, peer?: string): Result {
  return {
    id: f.key === 'pipeline' ? 'pipeline.cpu' : 'pipeline.realtime.cpu',
    suite: 'pipeline',
    name: `callbridge CPU, ${f.key === 'pipeline' ? 'PROVIDER=pipeline (3 stand-ins)' : 'Realtime (model stand-in)'}, passthrough`,
    group: 'pipeline: callbridge CPU per call-second, same run',
    per: 'call-second',
    medianNs: f.callSeconds > 0 ? Math.round((f.cpuUs * 1000) / f.callSeconds) : NaN,
    samples: f.calls.length,
    ours: f.key === 'pipeline',
    ...(peer ? { peer } : {}),
    extra: { cpuMs: Math.round(f.cpuUs / 1000), callSeconds: Number(f.callSeconds.toFixed(1)), loopDelayP99Ms: Number(f.loopDelayP99Ms.toFixed(1)) },
  };
}

export const pipelineSuite: Suite = {
  name: 'pipeline',
  description: 'PROVIDER=pipeline vs Realtime through the relay: turn latency and its stage split, the pipeline\'s own share (≤ 20 ms p99), CPU per call-second (issue 19)',
  async run(opts: RunOptions): Promise<Result[]> {
    const calls = opts.quick ? QUICK_CALLS : CALLS;
    const pipeline = await runPath('pipeline', calls, opts.log);
    const realtime = await runPath('realtime', calls, opts.log);
    const { turns, unmatched } = splitTurns(pipeline);
    if (turns.length === 0) throw new Error('pipeline bench: no pipeline turn has a stage split in its record');
    const pick = (k: keyof TurnSplit) => turns.map((t) => t[k]).filter((v): v is number => v !== undefined);
    const rtTurns = realtime.calls.flatMap((c) => c.turns.map((t) => t.latencyMs));
    const matchErr = asc(pick('matchErrMs'));
    return [
      latencyResult('pipeline.turn', 'pipeline turn latency (total)', pick('totalMs'), {
        expectedTurns: calls * TURNS,
        deepgramFinalMs: DEEPGRAM_FINAL_MS,
        firstTokenMs: FIRST_TOKEN_MS,
        tokenMs: TOKEN_MS,
        firstAudioMs: FIRST_AUDIO_MS,
      }),
      latencyResult('pipeline.stage.finalTranscript', '  final transcript', pick('finalTranscriptMs')),
      latencyResult('pipeline.stage.firstToken', '  first LLM token', pick('firstTokenMs')),
      latencyResult('pipeline.stage.firstTtsAudio', '  first TTS audio', pick('firstTtsAudioMs')),
      latencyResult('pipeline.vendorWait', 'waiting on vendors (Deepgram + LLM to first speakable text + TTS first audio)', turns.map((t) => t.deepgramMs + t.llmMs + t.ttsMs), {
        deepgramP50Ms: Number(pct(asc(pick('deepgramMs')), 0.5).toFixed(2)),
        deepgramMaxMs: Number(Math.max(...pick('deepgramMs')).toFixed(2)),
        llmP50Ms: Number(pct(asc(pick('llmMs')), 0.5).toFixed(2)),
        ttsP50Ms: Number(pct(asc(pick('ttsMs')), 0.5).toFixed(2)),
        turnsUnmatched: unmatched,
      }),
      {
        ...latencyResult('pipeline.ownShare', "pipeline's own share (total − vendor waits)", pick('ownMs'), {
          finalizeMatched: matchErr.length,
          finalizeMatchErrP50Ms: matchErr.length ? Number(pct(matchErr, 0.5).toFixed(2)) : '-',
          benchLoopDelayP99Ms: Number(pipeline.loopDelayP99Ms.toFixed(1)),
        }),
        ours: true,
      },
      latencyResult('pipeline.realtime.turn', 'Realtime turn latency (total, model stand-in at the seed budget)', rtTurns, { responseDelayMs: REALTIME_RESPONSE_MS }),
      cpuResult(pipeline, 'pipeline.realtime.cpu'),
      cpuResult(realtime),
    ];
  },
  conclusions(results: Result[]): string[] {
    const by = new Map(results.map((r) => [r.id, r]));
    const turn = by.get('pipeline.turn');
    const own = by.get('pipeline.ownShare');
    if (!turn || !own) return [];
    const ms = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? '-' : (v / 1e6).toFixed(v < 1e7 ? 1 : 0));
    const p50p95 = (id: string) => {
      const r = by.get(id);
      return r ? `${ms(r.medianNs)}/${r.extra?.p95Ms ?? '-'}` : '-';
    };
    const cpu = by.get('pipeline.cpu')?.medianNs;
    const rtCpu = by.get('pipeline.realtime.cpu')?.medianNs;
    const ownP99 = (own.p99Ns ?? NaN) / 1e6;
    return [
      `pipeline: turn p50/p95 ${p50p95('pipeline.turn')} ms (Realtime ${p50p95('pipeline.realtime.turn')} ms); ` +
        `stages p50/p95 ms after speech_stopped: final transcript ${p50p95('pipeline.stage.finalTranscript')}, first token ${p50p95('pipeline.stage.firstToken')}, ` +
        `first TTS audio ${p50p95('pipeline.stage.firstTtsAudio')}, first frame ${p50p95('pipeline.turn')}; vendor waits p50 ${ms(by.get('pipeline.vendorWait')?.medianNs)} ms; ` +
        `own share p50/p99 ${ms(own.medianNs)}/${ownP99.toFixed(1)} ms ${ownP99 <= OWN_SHARE_P99_MS ? 'PASS' : 'FAIL'} (≤ ${OWN_SHARE_P99_MS} ms; this process's loop delay p99 ${own.extra?.benchLoopDelayP99Ms ?? '-'} ms counts in it); ` +
        `CPU per call-second ${ms(cpu)} vs ${ms(rtCpu)} ms = ${cpu !== undefined && rtCpu ? (cpu / rtCpu).toFixed(2) : '-'}× Realtime; ` +
        `resampler pairs' ns per 20 ms frame: the dsp suite's dsp.up16/down16/up48/down48/down22/down44 rows (ElevenLabs ulaw_8000 here needs none)`,
    ];
  },
};
