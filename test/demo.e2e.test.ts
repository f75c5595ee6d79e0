/** `callbridge demo`, the README's main job: one simulated eligibility call end to end, and its record printed. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { main } from '../src/cli/main.js';
import { memoryIO } from './helpers/cli-io.js';

const dir = mkdtempSync(join(tmpdir(), 'callbridge-demo-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('places a call through the real relay and prints its record and the caller\'s view', async () => {
  const t = memoryIO({ CALLBRIDGE_DB: join(dir, 'demo.db') });
  expect(await main(['demo', '--calls', '1'], t.io), t.err()).toBe(0);
  const out = t.out();
  expect(out).toMatch(/state completed .* end reason caller_hangup/);
  expect(out).toContain('assistant Sure. Can I get the Member ID?');
  expect(out).toMatch(/check_eligibility ok in \d+ ms/);
  expect(out).toMatch(/relay-added latency per frame: in p50 \d+ µs/);
  expect(out).toMatch(/caller view \(end of speech → first audio heard\) \d+, \d+, \d+, \d+/);
  expect(out).toContain('protocol violations: 0');
}, 60_000);
