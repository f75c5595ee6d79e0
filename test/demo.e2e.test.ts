/**
 * `callbridge demo`, the README's main job: simulated eligibility calls end to
 * end, and their records printed — call 1 in the 2026 shapes (a preamble and
 * two parallel tool calls), call 2 one question at a time — and two calls
 * through Twilio's whole call flow (agents/demo.yaml): one transferred to
 * member services, one the agent hangs up; then call 1's script on GPT-Live
 * and on the STT → LLM → TTS pipeline, and the three side by side.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { main } from '../src/cli/main.js';
import { memoryIO } from './helpers/cli-io.js';

const dir = mkdtempSync(join(tmpdir(), 'callbridge-demo-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('places calls through the real relay and prints their records and the caller\'s view', async () => {
  const t = memoryIO({ CALLBRIDGE_DB: join(dir, 'demo.db') });
  expect(await main(['demo', '--calls', '2'], t.io), t.err()).toBe(0);
  const out = t.out();
  expect(out).toMatch(/^edge: (uWebSockets\.js .* native|node:http \+ ws)/m);
  expect(out.match(/state completed .* end reason caller_hangup/g)).toHaveLength(4); // two on Realtime, one on GPT-Live, one on the pipeline
  const live = section(out, 'GPT-Live');
  expect(live).toContain('assistant Let me check both of those for you.');
  expect(live).toMatch(/check_eligibility ok in \d+ ms/);
  expect(live).toContain('protocol violations: 0');
  expect(out).toMatch(/OpenAI Realtime +turn latency \(caller view\) p50 \d+ ms; cost \$[0-9.]+ \(\$[0-9.]+\/min\)/);
  expect(out).toMatch(/GPT-Live +turn latency \(caller view\) p50 \d+ ms; cost \$[0-9.]+ \(\$[0-9.]+\/min, [0-9.]+ active min\)/);
  expect(out).toMatch(/STT → LLM → TTS +turn latency \(caller view\) p50 \d+ ms; cost \$[0-9.]+ \(\$[0-9.]+\/min, STT \$[0-9.]+ \+ LLM \$[0-9.]+ \+ TTS \$[0-9.]+\)/);
  // The pipeline: call 1's preamble, the parallel round answered once, each turn's stage split.
  const pipeline = section(out, 'STT → LLM → TTS');
  expect(pipeline).toContain('passthrough   gpt-4o-mini');
  expect(pipeline).toContain('assistant Let me check both of those for you.');
  expect(pipeline.match(/check_eligibility ok in \d+ ms/g)).toHaveLength(2);
  expect(pipeline).toMatch(/turn 1: \d+ ms → \d+ ms → \d+ ms → \d+ ms/);
  expect(pipeline).toMatch(/pipeline STT: [0-9.]+ min of audio/);
  expect(pipeline).not.toContain('response_failed');
  expect(pipeline).toContain('protocol violations: 0');
  // Call 1: the preamble, both members checked in one round, the summary heard once.
  expect(out).toContain('assistant Let me check both of those for you.');
  expect(out.match(/The first member is eligible .* The second member is eligible/g)).toHaveLength(3); // call 1 on each provider
  expect(out).toContain('assistant Sure. Can I get the Member ID?');
  expect(out.match(/check_eligibility ok in \d+ ms/g)!.length).toBeGreaterThanOrEqual(3);
  expect(out).toMatch(/relay-added latency per frame: in p50 \d+ µs/);
  expect(out).toMatch(/caller view \(end of speech → first audio heard\) \d+, \d+, \d+, \d+/);
  expect(out).toContain('protocol violations: 0');
  // The transferred call: the handoff sentence heard, the stream closed by the relay, the <Connect action>
  // answered with a <Dial> to member services (whisper fetched once answered), the dial's action answered.
  const transfer = section(out, 'asks for a person');
  expect(transfer).toMatch(/end reason transferred/);
  expect(transfer).toContain('assistant Let me connect you to member services.');
  expect(transfer).toMatch(/Twilio's side: Connect → Dial → (?:Say → )?Hangup; call ended: hangup/);
  expect(transfer).toMatch(/dialled (?:member_services|number) at \+15550100200: completed, 95 s/);
  expect(transfer).toMatch(/webhooks: incoming 200, action 200, (?:whisper 200, )?dial-action 200/);
  expect(transfer).toContain('protocol violations: 0');
  // The agent's hang-up: the goodbye heard, then the stream closed and the action answered <Hangup/>.
  const hangUp = section(out, 'says goodbye');
  expect(hangUp).toMatch(/end reason agent_hangup/);
  expect(hangUp).toContain('assistant Goodbye!');
  expect(hangUp).toMatch(/Twilio's side: Connect → Hangup; call ended: hangup/);
  expect(hangUp).toMatch(/webhooks: incoming 200, action 200$/m);
  expect(hangUp).toContain('protocol violations: 0');
}, 150_000);

/** One call's block of the demo's output, found by the label after its heading. */
function section(out: string, label: string): string {
  const start = out.indexOf(`(${label})`);
  expect(start, `no call labelled ${label}`).toBeGreaterThanOrEqual(0);
  const end = out.indexOf('── call ', start);
  return out.slice(start, end === -1 ? undefined : end);
}

it('--drop-model: call 2 loses the model while the assistant speaks, holds, reconnects and finishes; its record shows the reconnect', async () => {
  const t = memoryIO({ CALLBRIDGE_DB: join(dir, 'drop.db') });
  // Realtime only: the reconnect is the Realtime path's (GPT-Live's and the pipeline's have their own e2e tests).
  expect(await main(['demo', '--calls', '2', '--drop-model', '--realtime-only', '--quiet'], t.io), t.err()).toBe(0);
  const out = t.out();
  expect(out).not.toContain('GPT-Live');
  expect(out.match(/state completed .* end reason caller_hangup/g)).toHaveLength(2);
  expect(out.match(/model_reconnected: model socket closed \(1011[^)]*\); 1 attempt\(s\); gap \d+ ms/g)).toHaveLength(1);
  expect(out).not.toContain('model_unavailable');
  expect(out.match(/protocol violations: 0/g)).toHaveLength(4); // the two eligibility calls, the transfer, the hang-up
}, 90_000);
