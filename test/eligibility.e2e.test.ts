/**
 * Eligibility conversations end to end: the simulated caller, the real relay,
 * the real tool (mock or HTTP back end), the model stand-in scripting the
 * model's side. What the caller hears comes from what the tool returned.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { silentLogger } from '../src/log.js';
import { startCallbridge, type Callbridge } from '../src/main.js';
import { placeCall } from '../src/sim/caller.js';
import { startModelStandIn, type ModelStandIn } from '../src/sim/model-server.js';
import type { Scenario } from '../src/sim/scenarios.js';

const dir = mkdtempSync(join(tmpdir(), 'callbridge-elig-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
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

let n = 0;
async function run(args: Record<string, unknown>, env: Record<string, string> = {}) {
  const model: ModelStandIn = await startModelStandIn({ scenario: scenario(args), audioSpeedup: 8, responseDelayMs: 50, transcriptDelayMs: 50 });
  cleanup.push(() => model.close());
  const config = loadConfig({ ALLOW_UNSIGNED: 'true', PORT: '0', HOST: '127.0.0.1', PUBLIC_URL: 'https://e.invalid', OPENAI_BASE_URL: model.baseUrl, OPENAI_API_KEY: 'k', CALLBRIDGE_DB: join(dir, `e${++n}.db`), VAD_SILENCE_DURATION_MS: '300', ...env });
  const app: Callbridge = await startCallbridge(config, silentLogger);
  cleanup.push(() => app.close());
  const result = await placeCall({ baseUrl: `http://127.0.0.1:${app.port}`, publicUrl: 'https://e.invalid', utterances: [{ durationMs: 900 }], hangupAfterMs: 800 });
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
  cleanup.push(() => new Promise<void>((r) => server.close(() => r())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/check`;
}

describe('eligibility conversations', () => {
  it('happy path with spoken arguments: the caller hears the coverage', async () => {
    const { record, said, result } = await run({ member_id: 'M B 1 2 3 4 5 6', date_of_birth: 'March fifth, 1980' });
    expect(record.toolCalls[0]).toMatchObject({ name: 'check_eligibility', ok: true });
    expect(said).toContain('You are eligible.');
    expect(result.turnLatenciesMs.length).toBeGreaterThanOrEqual(1);
  });

  it('an invalid member ID goes back to the model, which asks again', async () => {
    const { record, said } = await run({ member_id: 'twelve', date_of_birth: 'March fifth, 1980' });
    expect(record.toolCalls[0]).toMatchObject({ ok: false, record: { error: 'invalid_arguments' } });
    expect(said.join(' ')).toMatch(/two letters followed by six digits/);
  });

  it('API down: the caller hears the trouble message, not silence', async () => {
    const url = await localApi((res) => res.writeHead(503).end());
    const { record, said } = await run({ member_id: 'MB123456', date_of_birth: '1980-03-05' }, { ELIGIBILITY_API_URL: url, ELIGIBILITY_RETRIES: '1' });
    expect(record.toolCalls[0]).toMatchObject({ ok: false });
    expect(said.join(' ')).toMatch(/trouble accessing the system/);
  });

  it('API slow: the lookup times out and the caller hears the trouble message', async () => {
    const url = await localApi((res) => setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"eligible"}'), 2000));
    const { record, said } = await run({ member_id: 'MB123456', date_of_birth: '1980-03-05' }, { ELIGIBILITY_API_URL: url, ELIGIBILITY_TIMEOUT_MS: '200', ELIGIBILITY_RETRIES: '0' });
    expect(record.toolCalls[0]).toMatchObject({ ok: false, record: { error: 'timeout' } });
    expect(said.join(' ')).toMatch(/trouble accessing the system/);
  });
});
