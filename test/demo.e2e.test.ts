/**
 * `callbridge demo`, the README's main job: simulated eligibility calls end to
 * end, and their records printed — call 1 in the 2026 shapes (a preamble and
 * two parallel tool calls), call 2 one question at a time.
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
  expect(out.match(/state completed .* end reason caller_hangup/g)).toHaveLength(2);
  // Call 1: the preamble, both members checked in one round, the summary heard once.
  expect(out).toContain('assistant Let me check both of those for you.');
  expect(out.match(/The first member is eligible .* The second member is eligible/g)).toHaveLength(1);
  expect(out).toContain('assistant Sure. Can I get the Member ID?');
  expect(out.match(/check_eligibility ok in \d+ ms/g)!.length).toBeGreaterThanOrEqual(3);
  expect(out).toMatch(/relay-added latency per frame: in p50 \d+ µs/);
  expect(out).toMatch(/caller view \(end of speech → first audio heard\) \d+, \d+, \d+, \d+/);
  expect(out).toContain('protocol violations: 0');
}, 60_000);

it('--drop-model: call 2 loses the model while the assistant speaks, holds, reconnects and finishes; its record shows the reconnect', async () => {
  const t = memoryIO({ CALLBRIDGE_DB: join(dir, 'drop.db') });
  expect(await main(['demo', '--calls', '2', '--drop-model', '--quiet'], t.io), t.err()).toBe(0);
  const out = t.out();
  expect(out.match(/state completed .* end reason caller_hangup/g)).toHaveLength(2);
  expect(out.match(/model_reconnected: model socket closed \(1011[^)]*\); 1 attempt\(s\); gap \d+ ms/g)).toHaveLength(1);
  expect(out).not.toContain('model_unavailable');
  expect(out.match(/protocol violations: 0/g)).toHaveLength(2);
}, 60_000);
