/**
 * A lost model connection, end to end: the real relay (ModelLink over the
 * real OpenAI provider), the model stand-in dropping or refusing sockets, and
 * simulated callers that record what they heard. The hold prompt reaches the
 * caller within 1.5 s of the drop, the conversation is replayed into the new
 * session, a bystander call is untouched, and a model that never comes back
 * ends the call with the apology and `model_unavailable`. The new socket is
 * open within 3 s of the drop.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { defaultPromptPath } from '../src/call/prompts.js';
import { availableEdges, type EdgeKind } from '../src/server/app.js';
import { placeCall, type CallResult } from '../src/sim/caller.js';
import { scenarioOf, type Scenario } from '../src/sim/scenarios.js';
import { useCallbridge } from './helpers/e2e.js';
import { until } from './helpers/until.js';

const callbridge = useCallbridge('reconnect');

const HOLD = readFileSync(defaultPromptPath('hold'));
const APOLOGY = readFileSync(defaultPromptPath('apology'));

function start(scenario: Scenario, env: Record<string, string> = {}, edge?: EdgeKind) {
  return callbridge({
    edge,
    model: { scenario, transcriptDelayMs: 50 },
    env: {
      ALLOW_UNSIGNED: 'true', // placeCall signs nothing without an auth token
      PUBLIC_URL: 'https://r.invalid',
      MODEL_BACKOFF_BASE_MS: '100',
      MODEL_BACKOFF_MAX_MS: '400',
      ...env,
    },
  });
}

const talk: Scenario = scenarioOf(
  [
    { callerTranscript: 'first question', reply: 'Here is a fairly long first answer, so that there is something to interrupt while it plays.' },
    { callerTranscript: 'second question', reply: 'And the second answer.' },
    { callerTranscript: 'third question', reply: 'The third answer.' },
  ],
  'Hello there.',
);

/** When (caller clock, ms) the caller first heard a frame of `prompt` after `afterMs`. */
function firstHeard(result: CallResult, prompt: Uint8Array, afterMs: number): number | undefined {
  const chunks = new Set<string>();
  for (let i = 0; i + 160 <= prompt.length; i += 160) chunks.add(Buffer.from(prompt.subarray(i, i + 160)).toString('hex'));
  return result.heard!.find((f) => f.atMs >= afterMs && chunks.has(Buffer.from(f.bytes).toString('hex')))?.atMs;
}

/** How long a wait on the call may take (the bound the file's waits had). */
const WAIT = { timeoutMs: 10_000 };

describe('the model connection is lost mid-call', () => {
  // A clean close on every edge that loads here (the hold prompt goes out through it); an abrupt drop on the default one.
  const cases = [...availableEdges().map((edge) => ['close 1011', edge] as const), ['abrupt', undefined] as const];
  for (const [how, edge] of cases) {
    it(`${how}${edge ? ` (${edge} edge)` : ''}: the caller hears the hold prompt within 1.5 s, the new session gets the conversation, the call carries on; a bystander call is untouched`, async () => {
      const { app, model, baseUrl } = await start(talk, {}, edge);
      if (edge) expect(app.server.edge.kind).toBe(edge);
      const utterances = [{ durationMs: 900 }, { durationMs: 900, pauseMs: 2500 }, { durationMs: 900 }];
      const victim = placeCall({ baseUrl, publicUrl: 'https://r.invalid', utterances, recordHeard: true, hangupAfterMs: 1500 });
      await until(() => model.sessions.length >= 1, WAIT);
      const bystander = placeCall({ baseUrl, publicUrl: 'https://r.invalid', utterances, hangupAfterMs: 1500 });
      await until(() => model.sessions.length >= 2, WAIT);
      const first = model.sessions[0]!;
      // Drop while the first answer is playing.
      await until(() => first.responses.some((r) => r.text.startsWith('Here is') && r.audioMsSent > 500), WAIT);
      const droppedAt = performance.now();
      if (how === 'abrupt') first.dropSocketAbruptly();
      else first.dropSocket(1011);
      await until(() => model.sessions.length >= 3, { timeoutMs: 5000, what: 'the new model session' });
      expect(model.sessions.length).toBe(3);
      expect(performance.now() - droppedAt).toBeLessThan(3000); // the new socket is open within 3 s
      const [v, b] = await Promise.all([victim, bystander]);
      await app.store.flush();
      expect(app.relay.activeCalls).toBe(0);

      const heldAt = firstHeard(v, HOLD, droppedAt - v.startedAtPerfMs);
      expect(heldAt).toBeDefined();
      expect(heldAt! - (droppedAt - v.startedAtPerfMs)).toBeLessThan(1500);

      const renewed = model.sessions[2]!;
      // The conversation so far, in order: the greeting the caller heard, then the caller's first turn.
      // (The answer the drop cut off had no transcript yet: it cannot be replayed; the module comment says so.)
      const replayed = renewed.items.filter((i) => i.type === 'message').map((i) => [i.role, i.text]);
      expect(replayed.slice(0, 2)).toEqual([
        ['assistant', 'Hello there.'],
        ['user', 'first question'],
      ]);
      expect(renewed.audioMsReceived).toBeGreaterThan(500); // the caller's next turns reached the new socket

      const rec = (await app.store.get(v.callSid))!;
      expect(rec.events.map((e) => e.type)).toEqual(['model_reconnected']);
      expect(rec.endReason).toBe('caller_hangup');
      expect(v.protocolViolations).toEqual([]);
      expect(v.closeCode).toBe(1000);
      // The conversation carried on: the new session answered the caller's next turn, and the caller heard it.
      const reconnectAt = rec.events[0]!.atMs;
      expect(rec.transcript.some((t) => t.speaker === 'assistant' && t.atMs > reconnectAt && !t.interrupted)).toBe(true);
      expect(renewed.responses.some((r) => r.status === 'completed' && r.createdBy === 'vad')).toBe(true);

      const other = (await app.store.get(b.callSid))!;
      expect(other.events).toEqual([]);
      expect(b.protocolViolations).toEqual([]);
      await until(() => model.sessions[1]!.closed, { timeoutMs: 3000 });
      expect(model.sessions[1]!.closed).toBe(true); // it ended with its own call, on its own socket
      expect(other.endReason).toBe('caller_hangup');
    }, 60_000);
  }

  it('refused 3 times, then accepted: reconnects, and the record counts the attempts', async () => {
    const { app, model, baseUrl } = await start(talk);
    const call = placeCall({ baseUrl, publicUrl: 'https://r.invalid', utterances: [{ durationMs: 900 }, { durationMs: 900, pauseMs: 3000 }], hangupAfterMs: 1500 });
    await until(() => (model.sessions[0]?.responses.length ?? 0) >= 2, WAIT);
    model.refuseNextConnections(3, 503);
    model.sessions[0]!.dropSocket(1011);
    const r = await call;
    await app.store.flush();
    expect(model.refused.length).toBe(3);
    const ev = (await app.store.get(r.callSid))!.events;
    expect(ev).toHaveLength(1);
    expect(ev[0]!.detail).toMatch(/4 attempt\(s\)/);
  }, 60_000);

  it('refused for ever: the caller hears the apology and the call ends as model_unavailable', async () => {
    const { app, model, baseUrl } = await start(talk, { MODEL_RECONNECT_BUDGET_MS: '1500' });
    const call = placeCall({ baseUrl, publicUrl: 'https://r.invalid', utterances: [{ durationMs: 900 }, { durationMs: 900, pauseMs: 8000 }], recordHeard: true, maxCallMs: 30_000 });
    await until(() => (model.sessions[0]?.responses.length ?? 0) >= 2, WAIT);
    model.refuseAll(true, 503);
    const droppedAt = performance.now();
    model.sessions[0]!.dropSocket(1011);
    const r = await call;
    await app.store.flush();
    const rec = (await app.store.get(r.callSid))!;
    expect(rec.endReason).toBe('model_unavailable');
    expect(rec.events.map((e) => e.type)).toEqual(['model_unavailable']);
    expect(rec.events[0]!.detail).toMatch(/attempt/);
    expect(firstHeard(r, APOLOGY, droppedAt - r.startedAtPerfMs)).toBeDefined();
    expect(r.closeCode).toBe(1000);
  }, 60_000);
});
