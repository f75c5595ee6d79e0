/**
 * The 2026 Realtime shapes end to end, in both audio modes: a response that
 * speaks a preamble and then issues two or three function calls whose
 * arguments stream one after another, a tool failing inside such a round,
 * barge-in during the preamble, a slow round with the "still checking"
 * filler, and a failed response that is asked again. The real relay, store
 * and eligibility tool against the model stand-in and simulated callers.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { placeCall } from '../src/sim/caller.js';
import type { StandInSession } from '../src/sim/model-server.js';
import { failingTurn, parallelToolsTurn, scenarioOf, type Scenario } from '../src/sim/scenarios.js';
import { useCallbridge } from './helpers/e2e.js';

const callbridge = useCallbridge('2026');
function start(scenario: Scenario, env: Record<string, string> = {}) {
  return callbridge({
    model: { scenario, transcriptDelayMs: 50 },
    env: { ALLOW_UNSIGNED: 'true', PUBLIC_URL: 'https://e.invalid', ...env }, // placeCall signs nothing without an auth token
  });
}

const MEMBERS = [
  { member_id: 'M B 1 2 3 4 5 6', date_of_birth: 'March fifth, 1980' },
  { member_id: 'K T 6 5 4 3 2 1', date_of_birth: 'November twenty-second, 1975' },
  { member_id: 'Z Z 9 9 9 9 9 9', date_of_birth: 'January first, 1990' },
];
const calls = (k: number) => MEMBERS.slice(0, k).map((args) => ({ name: 'check_eligibility', arguments: args }));
const summary = (outputs: string[]) => `I have ${outputs.length} results: ${outputs.map((o) => (o.includes('error') ? 'trouble' : 'checked')).join(' and ')}.`;

/** response.create events sent after the round's calls were issued, and the round's last output. */
function afterRound(s: StandInSession) {
  const firstCall = Math.min(...s.toolCalls.map((c) => c.argsDoneAt));
  const lastOutput = Math.max(...s.toolOutputs.map((o) => o.at));
  return { creates: s.responseCreates.filter((c) => c.at >= firstCall), lastOutput };
}

describe.each(['transcode', 'passthrough'] as const)('2026 shapes, %s', (mode) => {
  for (const k of [2, 3]) {
    it(`preamble + ${k} parallel calls: one response.create after every output, the answer heard once`, async () => {
      const { app, model, baseUrl } = await start(scenarioOf([parallelToolsTurn(calls(k), summary, { preamble: 'Let me check those for you.' })], 'Hi.'), { AUDIO_MODE: mode });
      const result = await placeCall({ baseUrl, publicUrl: 'https://e.invalid', utterances: [{ durationMs: 900 }], hangupAfterMs: 1200 });
      await app.store.flush();
      const s = model.sessions[0]!;
      expect(s.toolOutputs).toHaveLength(k);
      const { creates, lastOutput } = afterRound(s);
      expect(creates).toHaveLength(1);
      expect(creates[0]!.at).toBeGreaterThanOrEqual(lastOutput);
      expect(creates[0]).toMatchObject({ active: false, pendingOutputs: 0 });
      expect(s.errorsSent).toEqual([]);
      const said = (await app.store.get(result.callSid))!.transcript.filter((t) => t.speaker === 'assistant').map((t) => t.text);
      expect(said).toContain('Let me check those for you.');
      expect(said.filter((t) => t.startsWith(`I have ${k} results`))).toHaveLength(1);
      expect(result.protocolViolations).toEqual([]);
    });
  }

  it('a tool failing in a parallel round: both calls answered, one response.create, the trouble spoken', async () => {
    const bad = [{ name: 'check_eligibility', arguments: MEMBERS[0]! }, { name: 'check_eligibility', arguments: { member_id: '??', date_of_birth: 'never' } }];
    const { app, model, baseUrl } = await start(scenarioOf([parallelToolsTurn(bad, summary, { preamble: 'One moment.' })], 'Hi.'), { AUDIO_MODE: mode });
    const result = await placeCall({ baseUrl, publicUrl: 'https://e.invalid', utterances: [{ durationMs: 900 }], hangupAfterMs: 1200 });
    await app.store.flush();
    const s = model.sessions[0]!;
    expect(s.toolOutputs).toHaveLength(2);
    expect(afterRound(s).creates).toHaveLength(1);
    const record = (await app.store.get(result.callSid))!;
    expect(record.toolCalls.map((t) => t.ok).sort()).toEqual([false, true]);
    expect(record.transcript.some((t) => t.speaker === 'assistant' && t.text.includes('checked and trouble'))).toBe(true);
  });

  it('barge-in during the preamble truncates the preamble at what was heard', async () => {
    const long = 'Let me check both of those for you, it will only take a moment while I look them up in the system.';
    const { app, model, baseUrl } = await start(scenarioOf([parallelToolsTurn(calls(2), summary, { preamble: long }), { callerTranscript: 'wait', reply: 'Yes?' }], 'Hi.'), { AUDIO_MODE: mode });
    const result = await placeCall({ baseUrl, publicUrl: 'https://e.invalid', utterances: [{ durationMs: 900 }, { durationMs: 700, bargeInAfterMs: 600 }], hangupAfterMs: 1000 });
    await app.store.flush();
    const s = model.sessions[0]!;
    expect(result.clears.length).toBeGreaterThanOrEqual(1);
    const preambleItem = s.responses.find((r) => r.text === long)?.itemId;
    expect(preambleItem).toBeDefined();
    const t = s.truncates.find((x) => x.item_id === preambleItem);
    expect(t).toBeDefined();
    expect(t!.audio_end_ms).toBeGreaterThan(300);
    expect(t!.audio_end_ms).toBeLessThan(long.length * 65);
    const lines = (await app.store.get(result.callSid))!.transcript.filter((l) => l.speaker === 'assistant' && l.interrupted);
    expect(lines.length).toBeGreaterThanOrEqual(1);
  });

  it('a failed response after the caller turn is asked again within 3 s, and the answer is heard', async () => {
    const { app, model, baseUrl } = await start(scenarioOf([failingTurn('Here is your answer.', 1)], 'Hi.'), { AUDIO_MODE: mode });
    const result = await placeCall({ baseUrl, publicUrl: 'https://e.invalid', utterances: [{ durationMs: 900 }], hangupAfterMs: 1200 });
    await app.store.flush();
    const s = model.sessions[0]!;
    const failed = s.responses.find((r) => r.status === 'failed');
    expect(failed).toBeDefined();
    const retry = s.responseCreates.find((c) => c.at > failed!.doneAt!);
    expect(retry).toBeDefined();
    expect(retry!.at - failed!.doneAt!).toBeLessThan(3000);
    const record = (await app.store.get(result.callSid))!;
    expect(record.transcript.filter((l) => l.speaker === 'assistant' && l.text === 'Here is your answer.')).toHaveLength(1);
    expect(record.events.map((e) => e.detail)).toEqual(['failed (server_error) → retry']);
  });
});

describe.each(['transcode', 'passthrough'] as const)('2026 shapes with a slow tool, %s', (mode) => {
  let api: Server | undefined;
  afterEach(() => api?.close());

  it('a slow parallel round gets the "still checking" filler, and the answer still comes from exactly one response.create after both outputs', async () => {
    api = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ status: 'active', plan: 'Gold' })), 3200));
    });
    await new Promise<void>((r) => api!.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(api.address() as AddressInfo).port}/eligibility`;
    const { app, model, baseUrl } = await start(scenarioOf([parallelToolsTurn(calls(2), summary, { preamble: 'Checking.' })], 'Hi.'), {
      ELIGIBILITY_API_URL: url,
      ELIGIBILITY_TIMEOUT_MS: '6000',
      AUDIO_MODE: mode,
    });
    const result = await placeCall({ baseUrl, publicUrl: 'https://e.invalid', utterances: [{ durationMs: 900 }], hangupAfterMs: 6000, maxCallMs: 20_000 });
    await app.store.flush();
    const s = model.sessions[0]!;
    expect(s.toolOutputs).toHaveLength(2);
    const { creates, lastOutput } = afterRound(s);
    const fillers = creates.filter((c) => c.at < lastOutput);
    const answers = creates.filter((c) => c.at >= lastOutput);
    expect(fillers).toHaveLength(1); // "still checking", never while a response is active
    expect(fillers[0]!.active).toBe(false);
    expect(answers).toHaveLength(1);
    expect(answers[0]!.active).toBe(false);
    const said = (await app.store.get(result.callSid))!.transcript.filter((t) => t.speaker === 'assistant').map((t) => t.text);
    expect(said.filter((t) => t.startsWith('I have 2 results'))).toHaveLength(1);
  }, 30_000);
});
