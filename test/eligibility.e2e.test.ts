/**
 * Eligibility conversations end to end: the simulated caller, the real relay,
 * the real tool (mock or HTTP back end), the model stand-in scripting the
 * model's side. What the caller hears comes from what the tool returned.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { availableEdges, type EdgeKind } from '../src/server/app.js';
import { placeCall, type Utterance } from '../src/sim/caller.js';
import { eligibilityScenario, type Scenario } from '../src/sim/scenarios.js';
import { useCallbridge } from './helpers/e2e.js';

const callbridge = useCallbridge('elig');
const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0).reverse()) await new Promise<void>((r) => s.close(() => r()));
});

/** One turn: the caller speaks, the model calls check_eligibility with `args`, then speaks from the tool's output. */
function scenario(args: Record<string, unknown>): Scenario {
  return {
    greeting: 'Hi.',
    turns: [
      {
        callerTranscript: 'check me please',
        tool: {
          name: 'check_eligibility',
          arguments: args,
          reply: (output) => {
            const o = JSON.parse(output) as Record<string, string>;
            if (o.error === 'invalid_arguments') return `Sorry, ${o.ask_again}.`;
            if (o.error) return o.error;
            return `You are ${o.status}.`;
          },
        },
      },
    ],
  };
}

async function run(
  script: Scenario,
  { env = {}, edge, utterances = [{ durationMs: 900 }] }: { env?: Record<string, string>; edge?: EdgeKind; utterances?: Utterance[] } = {},
) {
  const { app, model, baseUrl } = await callbridge({
    edge,
    model: { scenario: script, transcriptDelayMs: 50 },
    env: { ALLOW_UNSIGNED: 'true', PUBLIC_URL: 'https://e.invalid', ...env },
  });
  if (edge) expect(app.server.edge.kind).toBe(edge);
  const result = await placeCall({ baseUrl, publicUrl: 'https://e.invalid', utterances, hangupAfterMs: 800 });
  await app.store.flush();
  const record = (await app.store.get(result.callSid))!;
  const said = record.transcript.filter((t) => t.speaker === 'assistant').map((t) => t.text);
  return { record, said, model, result };
}

async function localApi(handler: (res: import('node:http').ServerResponse) => void): Promise<string> {
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => handler(res));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  servers.push(server);
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/check`;
}

describe.each(availableEdges())('the eligibility call (%s edge)', (edge) => {
  it('asks for the member ID and date of birth, runs check_eligibility once on the spoken arguments, and the caller hears the coverage', async () => {
    const { record, said, result } = await run(eligibilityScenario, {
      edge,
      utterances: [{ durationMs: 900 }, { durationMs: 900 }, { durationMs: 900 }, { durationMs: 700 }],
    });
    expect(record.toolCalls).toHaveLength(1);
    expect(record.toolCalls[0]).toMatchObject({ name: 'check_eligibility', ok: true });
    expect(said.join(' ')).toMatch(/Member ID/);
    expect(said.join(' ')).toMatch(/date of birth/);
    expect(said).toContain('You are eligible on the Gold PPO plan. Is there anything else I can help with?');
    expect(result.turnLatenciesMs.length).toBeGreaterThanOrEqual(1);
  });
});

describe('eligibility conversations', () => {
  it('an invalid member ID goes back to the model, which asks again', async () => {
    const { record, said } = await run(scenario({ member_id: 'twelve', date_of_birth: 'March fifth, 1980' }));
    expect(record.toolCalls[0]).toMatchObject({ ok: false, record: { error: 'invalid_arguments' } });
    expect(said.join(' ')).toMatch(/two letters followed by six digits/);
  });

  it('API down: the caller hears the trouble message, not silence', async () => {
    const url = await localApi((res) => res.writeHead(503).end());
    const { record, said } = await run(scenario({ member_id: 'MB123456', date_of_birth: '1980-03-05' }), { env: { ELIGIBILITY_API_URL: url, ELIGIBILITY_RETRIES: '1' } });
    expect(record.toolCalls[0]).toMatchObject({ ok: false });
    expect(said.join(' ')).toMatch(/trouble accessing the system/);
  });

  it('API slow: the lookup times out and the caller hears the trouble message', async () => {
    const url = await localApi((res) => setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"eligible"}'), 2000));
    const { record, said } = await run(scenario({ member_id: 'MB123456', date_of_birth: '1980-03-05' }), { env: { ELIGIBILITY_API_URL: url, ELIGIBILITY_TIMEOUT_MS: '200', ELIGIBILITY_RETRIES: '0' } });
    expect(record.toolCalls[0]).toMatchObject({ ok: false, record: { error: 'timeout' } });
    expect(said.join(' ')).toMatch(/trouble accessing the system/);
  });
});
