/**
 * The pipeline end to end (issue 19): the real relay, store and eligibility tool with PROVIDER=pipeline
 * against the Deepgram, Chat Completions and ElevenLabs stand-ins (src/sim/pipeline-standins.ts) and
 * simulated callers on loopback. A full eligibility call on every edge (greeting,
 * caller turns, the tool round, goodbye; the record's transcript, tool call, stage usage, cost and each
 * turn's stage split); barge-in during TTS (the clear leaves within one frame of the VAD's decision,
 * nothing of the old answer is heard after it, the line keeps the words heard); and stages failing
 * mid-call (STT socket dropped, LLM 429 then OK, LLM 500 on every retry, TTS error) never leave the
 * caller in silence. The pipeline has one audio mode: µ-law end to end (config.ts refuses transcode
 * for it), so every case runs passthrough.
 *
 * Clocks: the record counts from the relay's stream `start`, the caller from its socket opening, a
 * little earlier (same process, both performance.now()). A caller-clock time minus a record time is so
 * an upper bound of the true interval, which is what the barge-in bound needs.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { defaultPromptPath } from '../src/call/prompts.js';
import { FRAME_MS } from '../src/dsp/format.js';
import { placeCall, type CallResult } from '../src/sim/caller.js';
import { eligibilityScenario, scenarioOf, type Scenario } from '../src/sim/scenarios.js';
import type { PipelineStandInOptions } from '../src/sim/pipeline-standins.js';
import { estimateCostUsd } from '../src/store/cost.js';
import { availableEdges, type EdgeKind } from '../src/server/app.js';
import type { CallRecord } from '../src/store/types.js';
import { usePipelineCallbridge } from './helpers/e2e.js';

const callbridge = usePipelineCallbridge('pipeline');
const PUBLIC_URL = 'https://pipeline.invalid';
const REPEAT = readFileSync(defaultPromptPath('repeat'));
/** TTS stand-in speech per character (ms): shorter than its 60 ms default, to keep the calls short. */
const MS_PER_CHAR = 25;

type Mode = 'passthrough';

function start(mode: Mode, edge: EdgeKind, stages: PipelineStandInOptions = {}) {
  return callbridge({
    edge,
    stages: { ...stages, eleven: { msPerChar: MS_PER_CHAR, ...stages.eleven } },
    env: { ALLOW_UNSIGNED: 'true', PUBLIC_URL, AUDIO_MODE: mode, RESPONSE_RETRY_MS: '100,100' },
  });
}

/** When (caller clock, ms) the caller first heard a frame of `prompt` after `afterMs`. */
function firstHeard(result: CallResult, prompt: Uint8Array, afterMs: number): number | undefined {
  const chunks = new Set<string>();
  for (let i = 0; i + 160 <= prompt.length; i += 160) chunks.add(Buffer.from(prompt.subarray(i, i + 160)).toString('hex'));
  return result.heard!.find((f) => f.atMs >= afterMs && chunks.has(Buffer.from(f.bytes).toString('hex')))?.atMs;
}

const assistantLines = (rec: CallRecord) => rec.transcript.filter((t) => t.speaker === 'assistant');
const callerLines = (rec: CallRecord) => rec.transcript.filter((t) => t.speaker === 'caller');

/** A scenario of short spoken turns, for the failure cases. */
const talk: Scenario = scenarioOf(
  [
    { callerTranscript: 'first question', reply: 'First answer.' },
    { callerTranscript: 'second question', reply: 'Second answer.' },
    { callerTranscript: 'third question', reply: 'Third answer.' },
  ],
  'Hello.',
);

const edges = availableEdges();
const cases: [Mode, EdgeKind][] = edges.map((edge) => ['passthrough', edge]);

describe.each(cases)('pipeline, %s, %s edge', (mode, edge) => {
  it('a full eligibility call: greeting, caller turns, the tool round, goodbye; the record has the stages, their usage and cost', async () => {
    const { app, stages, baseUrl, config } = await start(mode, edge);
    expect(app.server.edge.kind).toBe(edge);
    const utterances = [{ durationMs: 900 }, { durationMs: 800 }, { durationMs: 800 }, { durationMs: 700 }].map((u) => ({ ...u, pauseMs: 250 }));
    const result = await placeCall({ baseUrl, publicUrl: PUBLIC_URL, utterances, hangupAfterMs: 800 });
    await app.store.flush();
    const rec = (await app.store.get(result.callSid))!;

    const said = [
      eligibilityScenario.greeting,
      'Sure. Can I get the Member ID?',
      'Thank you. And the date of birth?',
      'You are eligible on the Gold PPO plan. Is there anything else I can help with?',
      'Goodbye!',
    ];
    expect(assistantLines(rec).map((t) => t.text)).toEqual(said);
    expect(assistantLines(rec).some((t) => t.interrupted)).toBe(false);
    expect(callerLines(rec).map((t) => t.text)).toEqual(eligibilityScenario.turns.map((t) => t.callerTranscript));
    expect(rec.transcript.map((t) => t.speaker)).toEqual(['assistant', 'caller', 'assistant', 'caller', 'assistant', 'caller', 'tool', 'assistant', 'caller', 'assistant']);
    const at = rec.transcript.map((t) => t.atMs);
    expect(at).toEqual([...at].sort((a, b) => a - b));
    expect(rec.toolCalls).toHaveLength(1);
    expect(rec.toolCalls[0]).toMatchObject({ name: 'check_eligibility', ok: true });
    expect(JSON.parse(rec.toolCalls[0]!.args)).toEqual(eligibilityScenario.turns[2]!.tool!.arguments);
    // Every LLM request answered (greeting, four turns, the tool round's follow-up), one TTS stream per spoken answer.
    expect(stages.llm.requests.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
    expect(stages.eleven.sessions.map((s) => s.generations.map((g) => g.text).join('').trim())).toEqual(said);

    // Usage: the STT heard the whole call and the record bills all of it (the tail after the last answer is
    // reported as the session closes); LLM tokens; TTS characters are the spoken text's.
    const p = rec.usage.pipeline!;
    const durationMs = rec.durationMs!;
    const sttHeardS = stages.deepgram.sessions.reduce((n, s) => n + s.audioBytes, 0) / 8000;
    expect(Math.abs(sttHeardS - durationMs / 1000), 'Deepgram gets the call as µ-law 8 kHz').toBeLessThan(0.3);
    expect(p.sttAudioSeconds).toBeCloseTo(sttHeardS, 6);
    expect(p.llmInputTokens).toBeGreaterThan(0);
    expect(p.llmOutputTokens).toBeGreaterThan(0);
    expect(p.ttsCharacters).toBe(said.join('').length);
    expect(rec.usage.inputAudioTokens + rec.usage.outputAudioTokens).toBe(0);
    expect(rec.estimatedCostUsd).toBeGreaterThan(0);
    expect(rec.estimatedCostUsd).toBeCloseTo(estimateCostUsd(rec.usage, durationMs, config.prices), 9);

    // Each answered turn's stages, in order on the call's clock.
    expect(rec.turnLatencies).toHaveLength(4);
    for (const t of rec.turnLatencies) {
      const { speechStoppedMs, firstFrameMs, stages: s } = t.parts!;
      expect(s, `turn ${t.turn}`).toBeDefined();
      const chain = [speechStoppedMs, s!.finalTranscriptMs!, s!.firstTokenMs!, s!.firstTtsAudioMs!, firstFrameMs];
      expect(chain.every(Number.isFinite), `turn ${t.turn}: ${chain.join(' ')}`).toBe(true);
      // Each stage is rounded to the ms on its own: ±1 ms.
      for (let i = 1; i < chain.length; i++) expect(chain[i]! - chain[i - 1]!, `turn ${t.turn}: ${chain.join(' ')}`).toBeGreaterThanOrEqual(-1);
    }
    expect(rec.endReason).toBe('caller_hangup');
    expect(rec.events).toEqual([]);
    expect(result.protocolViolations).toEqual([]);
  });
});

describe('pipeline, barge-in during TTS', () => {
  it('the clear leaves within one frame of the VAD deciding, nothing of the old answer is heard after it, and its line keeps the words heard', async () => {
    const long = 'Here is a long answer that goes on for a while, so that the caller has something to talk over while it plays out.';
    const scenario = scenarioOf([{ callerTranscript: 'tell me', reply: long }, { callerTranscript: 'wait', reply: 'Yes?' }], 'Hi.');
    // Speech at 60 ms a character: the long answer plays for about 7 s when the caller talks over it.
    const { app, stages, baseUrl } = await start('passthrough', edges.at(-1)!, { scenario, eleven: { msPerChar: 60 } });
    const result = await placeCall({
      baseUrl,
      publicUrl: PUBLIC_URL,
      utterances: [{ durationMs: 700, pauseMs: 250 }, { durationMs: 700, bargeInAfterMs: 1500 }],
      recordHeard: true,
      hangupAfterMs: 2000,
    });
    await app.store.flush();
    const rec = (await app.store.get(result.callSid))!;

    // The VAD's decision: the pipeline's speech_started, the interrupting caller line's time (record clock).
    const [, interrupting] = callerLines(rec);
    expect(interrupting?.text).toBe('wait');
    const decidedAtMs = interrupting!.atMs;
    expect(decidedAtMs).toBeGreaterThan(result.bargeIns[0]!.speechStartMs - 1);
    // One clear, within a frame of it (caller clock minus record clock: an upper bound; ±1 for rounding).
    expect(result.clears).toHaveLength(1);
    const clearAtMs = result.clears[0]!.atMs;
    expect(clearAtMs - decidedAtMs).toBeGreaterThanOrEqual(-1);
    expect(clearAtMs - decidedAtMs).toBeLessThanOrEqual(FRAME_MS + 1);
    // The old answer was playing then, and stopped at the clear.
    const oldRun = result.playback.filter((r) => r.startMs <= decidedAtMs).at(-1)!;
    expect(oldRun.endMs).toBeGreaterThanOrEqual(decidedAtMs);
    expect(Math.min(oldRun.endMs, clearAtMs) - decidedAtMs).toBeLessThanOrEqual(FRAME_MS + 1);
    // Nothing heard after the clear comes before the new answer's first frame.
    const answer = rec.turnLatencies.at(-1)!;
    const after = result.heard!.filter((f) => f.atMs > clearAtMs);
    expect(after.length).toBeGreaterThan(0);
    expect(after[0]!.atMs).toBeGreaterThanOrEqual(answer.parts!.firstFrameMs);

    // The line is the start of the reply, cut at what was heard: the words whose speech began before the
    // heard time (the TTS stand-in's alignment: 60 ms a character), give or take one word.
    const lines = assistantLines(rec);
    const cut = lines.find((l) => l.interrupted);
    expect(cut).toBeDefined();
    const text = cut!.text.replace(/…$/, '');
    expect(text.length).toBeGreaterThan(0);
    expect(text.length).toBeLessThan(long.length);
    expect(long.startsWith(text)).toBe(true);
    const heardMs = Math.min(oldRun.endMs, clearAtMs) - oldRun.startMs;
    const words = long.split(' ');
    const heardWords = text.split(' ').length;
    const expected = words.filter((_, i) => words.slice(0, i).join(' ').length + (i > 0 ? 1 : 0) < heardMs / 60).length;
    expect(Math.abs(heardWords - expected)).toBeLessThanOrEqual(1);
    // The interruption is answered and the caller hears all of it (its line may still read as cut: the
    // simulated caller's mark echoes after a clear lag, as in live.e2e.test.ts).
    expect(stages.llm.requests.map((r) => r.answer?.text).at(-1)).toBe('Yes?');
    const yes = result.playback.find((r) => r.startMs >= answer.parts!.firstFrameMs);
    expect(yes!.endMs - yes!.startMs).toBeGreaterThanOrEqual('Yes?'.length * 60);
    expect(result.protocolViolations).toEqual([]);
  });
});

describe('pipeline, a stage failing mid-call', () => {
  it('STT socket dropped mid-utterance: the stream is reopened and the caller is answered', async () => {
    // The drop falls in the second utterance (greeting ~0.2 s, first turn and answer, then the second).
    const { app, stages, baseUrl } = await start('passthrough', edges[0]!, { scenario: talk, deepgram: { faults: [{ kind: 'drop', afterAudioMs: 3300, session: 0 }] } });
    const result = await placeCall({
      baseUrl,
      publicUrl: PUBLIC_URL,
      utterances: [{ durationMs: 800, pauseMs: 250 }, { durationMs: 900, pauseMs: 250 }, { durationMs: 700, pauseMs: 250 }],
      recordHeard: true,
      hangupAfterMs: 1000,
    });
    await app.store.flush();
    const rec = (await app.store.get(result.callSid))!;
    expect(stages.deepgram.sessions.length).toBe(2);
    expect(stages.deepgram.sessions[0]!.closedWith).toBe(-1);
    // Every caller turn is answered, the one the drop fell in too.
    expect(callerLines(rec)).toHaveLength(3);
    expect(assistantLines(rec).map((l) => l.text)).toEqual(['Hello.', 'First answer.', 'Second answer.', 'Third answer.']);
    expect(rec.endReason).toBe('caller_hangup');
    expect(result.protocolViolations).toEqual([]);
  });

  it('LLM 429 then OK: the turn is answered after the Retry-After', async () => {
    const { app, stages, baseUrl } = await start('passthrough', edges.at(-1)!, { scenario: talk, llm: { faults: [{ kind: '429', request: 1, retryAfterMs: 300 }] } });
    const result = await placeCall({ baseUrl, publicUrl: PUBLIC_URL, utterances: [{ durationMs: 800, pauseMs: 250 }, { durationMs: 700, pauseMs: 250 }], hangupAfterMs: 800 });
    await app.store.flush();
    const rec = (await app.store.get(result.callSid))!;
    expect(stages.llm.requests.map((r) => r.status)).toEqual([200, 429, 200, 200]);
    expect(stages.llm.requests[2]!.atMs - stages.llm.requests[1]!.atMs).toBeGreaterThanOrEqual(300);
    expect(assistantLines(rec).map((l) => l.text)).toEqual(['Hello.', 'First answer.', 'Second answer.']);
    expect(rec.events).toEqual([]);
    expect(rec.turnLatencies).toHaveLength(2);
    expect(result.protocolViolations).toEqual([]);
  });

  it('OpenAI TTS instead of ElevenLabs: its PCM 24 kHz is resampled in the audio core, and the caller hears each answer whole', async () => {
    const { app, stages, baseUrl, config } = await start('passthrough', edges.at(-1)!, { scenario: talk, tts: 'openai', openaiTts: { msPerChar: MS_PER_CHAR } });
    expect(config.pipeline.tts).toMatchObject({ vendor: 'openai', format: 'pcm_24000' });
    const result = await placeCall({ baseUrl, publicUrl: PUBLIC_URL, utterances: [{ durationMs: 800, pauseMs: 250 }, { durationMs: 700, pauseMs: 250 }], hangupAfterMs: 800 });
    await app.store.flush();
    const rec = (await app.store.get(result.callSid))!;
    const said = assistantLines(rec).map((l) => l.text);
    expect(said).toEqual(['Hello.', 'First answer.', 'Second answer.']);
    expect(stages.eleven.sessions).toHaveLength(0);
    const tts = stages.openaiTts!.requests;
    expect(tts.map((r) => r.status)).toEqual([200, 200, 200]);
    expect(tts.map((r) => (r.body.input as string).trim())).toEqual(said);
    expect(tts.every((r) => r.body.response_format === 'pcm')).toBe(true);
    // What the stand-in spoke (MS_PER_CHAR a character), heard as µ-law 8 kHz: within a frame per answer (the resampler's edges).
    const spokenMs = tts.reduce((n, r) => n + (r.body.input as string).length * MS_PER_CHAR, 0);
    expect(Math.abs(result.heardMs - spokenMs)).toBeLessThanOrEqual(3 * FRAME_MS);
    expect(rec.usage.pipeline!.ttsCharacters).toBe(said.join('').length);
    expect(rec.turnLatencies).toHaveLength(2);
    expect(result.protocolViolations).toEqual([]);
  });

  it('LLM 500 on every retry: the caller hears the relay asking to repeat, and the call goes on', async () => {
    // Three tries per answer, two relay retries (RESPONSE_RETRY_MS 100,100): nine failed requests for the first turn.
    const faults = Array.from({ length: 9 }, (_, i) => ({ kind: '500' as const, request: i + 1 }));
    const { app, stages, baseUrl } = await start('passthrough', edges.at(-1)!, { scenario: talk, llm: { faults } });
    const result = await placeCall({
      baseUrl,
      publicUrl: PUBLIC_URL,
      utterances: [{ durationMs: 800, pauseMs: 250 }, { durationMs: 700, pauseMs: 250 }],
      recordHeard: true,
      hangupAfterMs: 800,
      maxCallMs: 20_000,
    });
    await app.store.flush();
    const rec = (await app.store.get(result.callSid))!;
    expect(stages.llm.requests.slice(1, 10).map((r) => r.status)).toEqual(Array(9).fill(500));
    expect(rec.events.map((e) => e.detail)).toEqual(['failed (500) → retry', 'failed (500) → retry', 'failed (500) → apologize']);
    const apologizedAt = rec.events.at(-1)!.atMs;
    const heardAt = firstHeard(result, REPEAT, apologizedAt);
    expect(heardAt).toBeDefined();
    expect(heardAt! - apologizedAt).toBeLessThan(500);
    // The call goes on: the caller's next turn is answered.
    const [, second] = callerLines(rec);
    expect(second).toBeDefined();
    expect(assistantLines(rec).some((l) => l.atMs > second!.atMs)).toBe(true);
    expect(rec.endReason).toBe('caller_hangup');
    expect(result.protocolViolations).toEqual([]);
  });

  it('TTS error mid-answer: a new stream speaks the rest and the caller hears the whole answer', async () => {
    const reply = 'Here is the first answer, which is long enough to be cut.';
    const scenario = scenarioOf([{ callerTranscript: 'first question', reply }, { callerTranscript: 'second question', reply: 'Second answer.' }], 'Hello.');
    const { app, stages, baseUrl } = await start('passthrough', edges[0]!, { scenario, eleven: { faults: [{ kind: 'error', session: 1, afterFrames: 2 }] } });
    const result = await placeCall({ baseUrl, publicUrl: PUBLIC_URL, utterances: [{ durationMs: 800, pauseMs: 250 }, { durationMs: 700, pauseMs: 250 }], recordHeard: true, hangupAfterMs: 800 });
    await app.store.flush();
    const rec = (await app.store.get(result.callSid))!;
    const [, failed, retried] = stages.eleven.sessions;
    expect(failed!.errorsSent.length).toBe(1);
    // The new stream got the rest of the reply, from where the first stopped speaking.
    const rest = retried!.messages.map((m) => m.text).join('').trim();
    expect(rest.length).toBeGreaterThan(0);
    expect(reply.endsWith(rest)).toBe(true);
    expect(assistantLines(rec).map((l) => l.text)).toEqual(['Hello.', reply, 'Second answer.']);
    expect(rec.events).toEqual([]);
    expect(result.protocolViolations).toEqual([]);
  });
});
