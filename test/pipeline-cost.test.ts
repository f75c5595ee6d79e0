/**
 * The STT → LLM → TTS pipeline in the call record: Usage.pipeline summed (the
 * stores' sumUsage and the session's own total), its per-stage prices
 * (PIPELINE_PRICES, pipelinePrices) and cost (estimateCostUsd, worked out by
 * hand), a record written through both real stores (SQLite file, PostgreSQL
 * schema when the server is up) and read back with usage.pipeline and
 * parts.stages, `calls show`'s lines for them, and the CallSession placing a
 * turn_stages report in the answered turn's parts (fake socket and model,
 * manual clock and timers, as turn-parts.test.ts).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NO_RECORDING, type CallAgent } from '../src/call/agent.js';
import { noMetrics, type CallMetrics } from '../src/call/ports.js';
import { CallSession, type CallOptions } from '../src/call/session.js';
import type { ModelEvent } from '../src/call/voice-model.js';
import { formatRecord } from '../src/cli/calls.js';
import { silentLogger } from '../src/log.js';
import type { PipelineUsage, Usage } from '../src/records.js';
import { estimateCostUsd } from '../src/store/cost.js';
import { PIPELINE_PRICES, pipelinePrices, REFERENCE_PIPELINE, REFERENCE_PIPELINE_PRICES, type Prices } from '../src/store/prices.js';
import { createStoreRecorder } from '../src/store/recorder.js';
import { sumUsage } from '../src/store/rows.js';
import type { CallStore } from '../src/store/types.js';
import { ToolRegistry } from '../src/tools/registry.js';
import { FakeModel, FakeSocket, ManualClock, MemoryRecorder } from './helpers/call-fakes.js';
import { ManualTimers, flush } from './helpers/manual-timers.js';
import { postgresAvailable } from './helpers/postgres.js';
import { postgresKind, sqliteKind } from './helpers/store-kinds.js';
import { endInfo, prices, SID } from './helpers/store.js';

const TOKENS_ZERO: Usage = { inputTextTokens: 0, inputAudioTokens: 0, inputCachedTokens: 0, inputCachedAudioTokens: 0, outputTextTokens: 0, outputAudioTokens: 0 };
const stage = (sttAudioSeconds: number, llmInputTokens: number, llmCachedInputTokens: number, llmOutputTokens: number, ttsCharacters: number): PipelineUsage => ({
  sttAudioSeconds,
  llmInputTokens,
  llmCachedInputTokens,
  llmOutputTokens,
  ttsCharacters,
});

describe('Usage.pipeline summed', () => {
  it('sumUsage adds the stages field by field; a total without them stays without them', () => {
    const a: Usage = { ...TOKENS_ZERO, pipeline: stage(30, 500, 200, 100, 400) };
    const b: Usage = { ...TOKENS_ZERO, inputTextTokens: 7, pipeline: stage(60.5, 1500, 800, 200, 800) };
    expect(sumUsage(a, b)).toEqual({ ...TOKENS_ZERO, inputTextTokens: 7, pipeline: stage(90.5, 2000, 1000, 300, 1200) });
    expect(sumUsage({ ...TOKENS_ZERO }, b).pipeline).toEqual(b.pipeline); // the first report of a call
    expect(sumUsage(a, { ...TOKENS_ZERO }).pipeline).toEqual(a.pipeline); // a Realtime-style report after it keeps it
    expect(sumUsage({ ...TOKENS_ZERO }, { ...TOKENS_ZERO, inputTextTokens: 3 })).not.toHaveProperty('pipeline');
  });
});

describe('PIPELINE_PRICES and pipelinePrices', () => {
  it('lists the stage vendors the pipeline uses, each price positive, dated and sourced', () => {
    expect(Object.keys(PIPELINE_PRICES.stt)).toContain('nova-3');
    expect(Object.keys(PIPELINE_PRICES.llm)).toEqual(expect.arrayContaining(['gpt-4o-mini', 'gpt-4.1-mini', 'gpt-5-mini']));
    expect(Object.keys(PIPELINE_PRICES.tts)).toEqual(expect.arrayContaining(['eleven_flash_v2_5', 'eleven_turbo_v2_5', 'gpt-4o-mini-tts', 'tts-1']));
    const entries = [...Object.values(PIPELINE_PRICES.stt), ...Object.values(PIPELINE_PRICES.llm), ...Object.values(PIPELINE_PRICES.tts)];
    for (const e of entries) {
      expect(e.asOf).toMatch(/^\d{4}(-\d{2}){0,2}$/);
      expect(e.source.length).toBeGreaterThan(10);
      for (const [k, v] of Object.entries(e)) if (typeof v === 'number') expect(v, k).toBeGreaterThan(0);
    }
    for (const l of Object.values(PIPELINE_PRICES.llm)) expect(l.cachedInPerMTok).toBeLessThan(l.inPerMTok);
  });

  it('a known model takes its entry, a dated snapshot its model\'s, an unknown or unnamed one its stage\'s reference', () => {
    expect(pipelinePrices({ stt: 'nova-3', llm: 'gpt-5-mini', tts: 'tts-1' })).toEqual({
      sttPerMin: PIPELINE_PRICES.stt['nova-3']!.perMin,
      llmInPerMTok: 0.25,
      llmCachedInPerMTok: 0.025,
      llmOutPerMTok: 2,
      ttsPer1kChars: 0.015,
    });
    const snap = pipelinePrices({ llm: 'gpt-4o-mini-2024-07-18', tts: 'gpt-4o-mini-tts-2025-12-15' });
    expect([snap.llmInPerMTok, snap.llmCachedInPerMTok, snap.llmOutPerMTok]).toEqual([0.15, 0.075, 0.6]);
    expect(snap.ttsPer1kChars).toBe(PIPELINE_PRICES.tts['gpt-4o-mini-tts']!.per1kChars);
    const ref = PIPELINE_PRICES.llm[REFERENCE_PIPELINE.llm]!;
    const unknown = pipelinePrices({ stt: 'whisper-9', llm: 'some-local-llm', tts: 'eleven_v9' });
    expect(unknown).toEqual({
      sttPerMin: PIPELINE_PRICES.stt[REFERENCE_PIPELINE.stt]!.perMin,
      llmInPerMTok: ref.inPerMTok,
      llmCachedInPerMTok: ref.cachedInPerMTok,
      llmOutPerMTok: ref.outPerMTok,
      ttsPer1kChars: PIPELINE_PRICES.tts[REFERENCE_PIPELINE.tts]!.per1kChars,
    });
    expect(pipelinePrices({})).toEqual(unknown);
    expect(REFERENCE_PIPELINE_PRICES).toEqual(unknown);
    expect(pipelinePrices({ llm: 'gpt-5-mini-fast' }).llmInPerMTok).toBe(ref.inPerMTok); // not a dated snapshot: not gpt-5-mini's
  });
});

describe('estimateCostUsd with the pipeline', () => {
  const roundPipeline: Prices = { ...prices, pipeline: { sttPerMin: 0.01, llmInPerMTok: 1, llmCachedInPerMTok: 0.1, llmOutPerMTok: 4, ttsPer1kChars: 0.05 } };
  const usage: Usage = { ...TOKENS_ZERO, pipeline: stage(90, 2000, 1000, 300, 1200) };

  it('prices each stage in its unit, worked out by hand', () => {
    // STT 1.5 min × 0.01 = 0.015; LLM (1000 × 1 + 1000 × 0.1 + 300 × 4) / 1e6 = 0.0023; TTS 1.2 × 0.05 = 0.06; 65 s = 2 started minutes × 0.0125 = 0.025.
    expect(estimateCostUsd(usage, 65_000, roundPipeline)).toBe(0.1023);
  });

  it('prices without pipeline figures take the reference stage models\'', () => {
    const r = REFERENCE_PIPELINE_PRICES;
    const byHand = 1.5 * r.sttPerMin + (1000 * r.llmInPerMTok + 1000 * r.llmCachedInPerMTok + 300 * r.llmOutPerMTok) / 1e6 + 1.2 * r.ttsPer1kChars + 0.025;
    expect(estimateCostUsd(usage, 65_000, prices)).toBeCloseTo(byHand, 6);
    expect(estimateCostUsd(usage, 65_000, prices)).not.toBe(estimateCostUsd(usage, 65_000, roundPipeline));
  });

  it('cached tokens beyond the input are not priced twice', () => {
    const odd: Usage = { ...TOKENS_ZERO, pipeline: stage(0, 100, 500, 0, 0) };
    expect(estimateCostUsd(odd, 0, roundPipeline)).toBe(0.00001); // 100 cached × 0.1 / 1e6
  });

  it('a Realtime call costs what it did: no pipeline in its usage, pipeline prices or not', () => {
    const realtime: Usage = { inputTextTokens: 100, inputAudioTokens: 1000, inputCachedTokens: 50, outputTextTokens: 20, outputAudioTokens: 2000 };
    // audio in 1000 × 32 + text in 50 × 4 + cached text 50 × 0.4 + audio out 2000 × 64 + text out 20 × 16 = 160540 / 1e6, + 0.025.
    expect(estimateCostUsd(realtime, 65_000, prices)).toBe(0.18554);
    expect(estimateCostUsd(realtime, 65_000, roundPipeline)).toBe(0.18554);
  });
});

const pgOk = await postgresAvailable();
const KEY = Buffer.alloc(32, 9);
const kinds = [sqliteKind(), ...(pgOk ? [postgresKind()] : [])].flatMap((kind) => [
  { kind, label: `${kind.name}, no key`, key: undefined as Buffer | undefined },
  { kind, label: `${kind.name}, TRANSCRIPT_KEY set`, key: KEY },
]);

describe.each(kinds)('a pipeline call through the store: $label', ({ kind, key }) => {
  const opened: CallStore[] = [];
  beforeEach(() => kind.setup());
  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close();
    await kind.teardown();
  });

  it('keeps usage.pipeline (summed) and each turn\'s parts.stages, priced and shown by calls show', async () => {
    const writer = await kind.open({ identity: 'a', key });
    opened.push(writer);
    const rec = createStoreRecorder(writer, SID, { From: '+15551230000', To: '+15559870000' });
    const t0 = new Date('2026-12-01T09:00:00.000Z');
    rec.started({ callSid: SID, streamSid: 'MZ1', audioMode: 'transcode', startedAt: t0, model: 'pipeline' });
    const stages = { finalTranscriptMs: 1150, firstTokenMs: 1420, firstTtsAudioMs: 1610 };
    rec.turnLatency({ turn: 1, latencyMs: 650, parts: { callerEndMs: 900, speechStoppedMs: 1000, firstDeltaMs: 1640, firstFrameMs: 1650, heardMs: 1700, stages } });
    rec.turnLatency({ turn: 2, latencyMs: 700, parts: { speechStoppedMs: 5000, firstFrameMs: 5700, stages: { firstTokenMs: 5400 } } });
    rec.usage({ ...TOKENS_ZERO, pipeline: stage(30, 500, 200, 100, 400) });
    rec.usage({ ...TOKENS_ZERO, pipeline: stage(60, 1500, 800, 200, 800) });
    rec.ended(endInfo(new Date(t0.getTime() + 65_000)));
    await writer.close();

    const reader = await kind.open({ key });
    opened.push(reader);
    const r = (await reader.get(SID))!;
    expect(r.usage.pipeline).toEqual(stage(90, 2000, 1000, 300, 1200));
    expect(r.turnLatencies.map((t) => t.parts?.stages)).toEqual([stages, { firstTokenMs: 5400 }]);
    expect(r.estimatedCostUsd).toBeCloseTo(estimateCostUsd({ ...TOKENS_ZERO, pipeline: stage(90, 2000, 1000, 300, 1200) }, 65_000, prices), 6);
    expect(r.estimatedCostUsd).toBeGreaterThan(estimateCostUsd(TOKENS_ZERO, 65_000, prices)); // the stages are in it

    const shown = formatRecord(r);
    expect(shown).toContain('pipeline STT: 1.50 min of audio (90.0 s), billed per minute');
    expect(shown).toContain('pipeline LLM: 2000 input (1000 cached) + 300 output tokens');
    expect(shown).toContain('pipeline TTS: 1200 characters');
    expect(shown).toContain('  turn 1: 150 ms → 420 ms → 610 ms → 650 ms');
    expect(shown).toContain('  turn 2: - → 400 ms → - → 700 ms');
  });
});

describe('calls show for a Realtime call', () => {
  it('has no pipeline lines', () => {
    const r = {
      callSid: SID, streamSid: null, from: null, to: null, startedAt: null, answeredAt: null, endedAt: null, durationMs: null, endReason: null, outcome: null,
      audioMode: null, model: null, agent: null, direction: null, state: 'completed' as const, relay: null, protocolErrors: 0, usage: { ...TOKENS_ZERO },
      estimatedCostUsd: 0, recording: null, transcript: [], toolCalls: [], turnLatencies: [{ turn: 1, latencyMs: 500, parts: { speechStoppedMs: 100, firstFrameMs: 600 } }],
      events: [], status: null, statusEvents: [], transfer: null,
    };
    const shown = formatRecord(r);
    expect(shown).toContain('turn latency');
    expect(shown).not.toContain('pipeline');
  });
});

// ── The session: turn_stages into the answered turn, pipeline usage into its total ──

const STREAM = 'MZ00000000000000000000000000000001';
const OPTIONS: CallOptions = {
  audioMode: 'passthrough',
  playoutLeadMs: 100,
  outboundChunkMs: 20,
  inboundBatchMs: 20,
  vadSilenceMs: 500,
  toolTimeoutMs: 1000,
  toolFillerMs: 500,
  dtmfGapMs: 50,
  responseRetryMs: [250, 1000],
  prompts: { repeat: new Uint8Array(1600).fill(0x7f), hold: new Uint8Array(800).fill(0x7e), apology: new Uint8Array(800).fill(0x7d), goodbye: new Uint8Array(800).fill(0x7c) },
};
const AGENT: CallAgent = {
  name: 'front-desk',
  instructions: 'Be brief.',
  greeting: '',
  voice: 'alloy',
  tools: new ToolRegistry([]),
  policies: {
    transfer: undefined,
    endCall: { enabled: false, goodbyeWaitMs: 5000 },
    silence: { repromptAfterMs: undefined, reprompt: 'Ask if they are still there.', maxReprompts: 2, timeoutMs: 600_000 },
    maxDuration: { maxCallMs: 3_600_000, warnBeforeMs: undefined, warning: '' },
    recording: NO_RECORDING,
  },
};

/** MemoryRecorder keeping the usage reports too (its own `usage` takes none). */
class UsageRecorder extends MemoryRecorder {
  usages: Usage[] = [];
  override usage(u?: Usage) {
    if (u) this.usages.push(u);
  }
}

const sessions: CallSession[] = [];
afterEach(() => {
  for (const s of sessions.splice(0)) s.end('shutdown');
});

const ulawB64 = (bytes: number) => Buffer.alloc(bytes, 0x55).toString('base64');
const startMessage = JSON.stringify({
  event: 'start', sequenceNumber: '1', streamSid: STREAM,
  start: { accountSid: 'AC' + '0'.repeat(32), streamSid: STREAM, callSid: SID, tracks: ['inbound'], customParameters: {},
    mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 } },
});
const markMessage = (name: string) => JSON.stringify({ event: 'mark', sequenceNumber: '9', streamSid: STREAM, mark: { name } });

async function liveCall() {
  let t = 0;
  const model = new FakeModel('ulaw8k');
  const recorder = new UsageRecorder();
  const clock = new ManualClock();
  let ended: Usage | undefined;
  const metrics: CallMetrics = { ...noMetrics, callEnded: (_reason, figures) => (ended = figures?.usage) };
  const session = new CallSession({
    socket: new FakeSocket(),
    options: OPTIONS,
    log: silentLogger,
    agent: AGENT,
    transfers: { saveTransfer: async () => {}, transfer: async () => undefined },
    clock,
    metrics,
    admit: () => ({ model: Promise.resolve(model), recorder }),
    openTranscoder: () => {
      throw new Error('passthrough: no transcoder');
    },
    onEnded: () => {},
    now: () => t,
    timers: new ManualTimers(),
  });
  sessions.push(session);
  session.onText(startMessage);
  await flush();
  expect(session.state).toBe('live');
  const at = (ms: number) => {
    t = ms;
    clock.tick(ms);
  };
  const emit = (ms: number, ev: ModelEvent) => {
    at(ms);
    model.emit(ev);
  };
  const echo = (ms: number, name: string) => {
    at(ms);
    session.onText(markMessage(name));
  };
  return { session, recorder, emit, echo, endedUsage: () => ended };
}

describe('CallSession and the pipeline', () => {
  it('a turn_stages report lands in the answered turn\'s parts, each stage on the call clock (speech_stopped + its ms)', async () => {
    const c = await liveCall();
    c.emit(1000, { type: 'speech_stopped', itemId: 'c1', audioEndMs: 900 });
    c.emit(1100, { type: 'response_started', responseId: 'r1' });
    c.emit(1610, { type: 'turn_stages', responseId: 'r1', finalTranscriptMs: 150, firstTokenMs: 420.4, firstTtsAudioMs: 610 });
    c.emit(1650, { type: 'audio', responseId: 'r1', itemId: 'a1', audio: ulawB64(160) });
    c.echo(1700, '1');
    expect(c.recorder.turns).toEqual([
      {
        turn: 1,
        latencyMs: 650,
        parts: { callerEndMs: 900, speechStoppedMs: 1000, firstDeltaMs: 1650, firstFrameMs: 1650, heardMs: 1700, stages: { finalTranscriptMs: 1150, firstTokenMs: 1420, firstTtsAudioMs: 1610 } },
      },
    ]);
  });

  it('only the answering response\'s stages count; a stage not reported is left out; stages with no turn waiting, or of a turn left unanswered, are dropped', async () => {
    const c = await liveCall();
    c.emit(200, { type: 'turn_stages', responseId: 'r1', firstTokenMs: 10 }); // no caller turn yet
    c.emit(1000, { type: 'speech_stopped', itemId: 'c1', audioEndMs: 900 });
    c.emit(1100, { type: 'turn_stages', responseId: 'r1', firstTokenMs: 300 }); // turn 1 is never answered
    c.emit(1500, { type: 'speech_started', itemId: 'c2', audioStartMs: 1400 });
    c.emit(2000, { type: 'speech_stopped', itemId: 'c2', audioEndMs: 1900 });
    c.emit(2100, { type: 'response_started', responseId: 'r1' });
    c.emit(2200, { type: 'audio', responseId: 'r1', itemId: 'a1', audio: ulawB64(160) }); // answers turn 2: turn 1's stages are not its
    c.echo(2250, '1');
    c.emit(3000, { type: 'speech_stopped', itemId: 'c3', audioEndMs: 2950 });
    c.emit(3050, { type: 'response_started', responseId: 'r2' });
    c.emit(3060, { type: 'response_started', responseId: 'r3' });
    c.emit(3100, { type: 'turn_stages', responseId: 'r3', finalTranscriptMs: 50, firstTokenMs: 90, firstTtsAudioMs: 150 });
    c.emit(3300, { type: 'turn_stages', responseId: 'r2', firstTokenMs: 250 });
    c.emit(3400, { type: 'audio', responseId: 'r2', itemId: 'a2', audio: ulawB64(160) }); // r2 answers turn 3
    c.echo(3450, '2');
    expect(c.recorder.turns.map((t) => [t.turn, t.parts?.stages])).toEqual([
      [2, undefined],
      [3, { firstTokenMs: 3250 }],
    ]);
    expect(c.recorder.turns[0]!.parts).not.toHaveProperty('stages');
  });

  it('pipeline usage reports go to the record as they come and are summed into the call\'s total; a call without them has none', async () => {
    const c = await liveCall();
    c.emit(500, { type: 'usage', usage: { ...TOKENS_ZERO, pipeline: stage(10, 300, 100, 40, 120) } });
    c.emit(900, { type: 'usage', usage: { ...TOKENS_ZERO, pipeline: stage(2.5, 700, 600, 60, 80) } });
    c.emit(950, { type: 'usage', usage: { ...TOKENS_ZERO, activeAudioSeconds: 1 } });
    expect(c.recorder.usages.map((u) => u.pipeline)).toEqual([stage(10, 300, 100, 40, 120), stage(2.5, 700, 600, 60, 80), undefined]);
    c.session.end('caller_hangup');
    expect(c.endedUsage()?.pipeline).toEqual(stage(12.5, 1000, 700, 100, 200));

    const realtime = await liveCall();
    realtime.emit(500, { type: 'usage', usage: { ...TOKENS_ZERO, inputAudioTokens: 40 } });
    realtime.session.end('caller_hangup');
    expect(realtime.endedUsage()).not.toHaveProperty('pipeline');
    expect(realtime.endedUsage()?.inputAudioTokens).toBe(40);
  });
});
