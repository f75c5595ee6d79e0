/**
 * Records survive a crash: the real `callbridge serve` runs in a child
 * process, a simulated call is in progress, the child is killed with
 * SIGKILL, and the next process finds the call marked interrupted with the
 * transcript it had. Needs the build (npm test builds first).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { silentLogger } from '../src/log.js';
import { placeCall } from '../src/sim/caller.js';
import { startModelStandIn } from '../src/sim/model-server.js';
import { SqliteCallStore } from '../src/store/sqlite.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'callbridge-crash-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function serve(env: Record<string, string>): Promise<{ child: ChildProcess; port: number }> {
  if (!existsSync(join(root, 'build/src/cli/main.js'))) throw new Error('build/ is missing: run `npm run build` (npm test does)');
  const child = spawn(process.execPath, [join(root, 'bin/callbridge.js'), 'serve'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /"port":(\d+)[^\n]*callbridge listening/.exec(out);
      if (m) resolve({ child, port: Number(m[1]) });
    });
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', (code) => reject(new Error(`serve exited (${code}) before listening:\n${out}`)));
    setTimeout(() => reject(new Error(`serve did not start:\n${out}`)), 15_000);
  });
}

it('a call in progress when the server is killed -9 is marked interrupted on restart, with its transcript so far', async () => {
  const model = await startModelStandIn({
    scenario: { greeting: 'Hello there.', turns: [{ callerTranscript: 'I need to check my coverage', reply: 'Sure, I can help with that right away, just a moment please.' }] },
    audioSpeedup: 8,
    responseDelayMs: 50,
    transcriptDelayMs: 50,
  });
  const db = join(dir, 'calls.db');
  const env = { PORT: '0', HOST: '127.0.0.1', OPENAI_BASE_URL: model.baseUrl, OPENAI_API_KEY: 'k', CALLBRIDGE_DB: db, LOG_LEVEL: 'info', PUBLIC_URL: 'https://crash.invalid', VAD_SILENCE_DURATION_MS: '300' };
  const { child, port } = await serve(env);
  try {
    const call = placeCall({ baseUrl: `http://127.0.0.1:${port}`, publicUrl: 'https://crash.invalid', utterances: [{ durationMs: 900 }, { durationMs: 900 }], maxCallMs: 20_000 });
    // Wait until the caller's first turn is transcribed, then give the store one flush interval.
    const t0 = Date.now();
    while ((model.sessions[0]?.responses.length ?? 0) < 2 && Date.now() - t0 < 15_000) await new Promise((r) => setTimeout(r, 50));
    expect(model.sessions[0]!.responses.length).toBeGreaterThanOrEqual(2);
    await new Promise((r) => setTimeout(r, 600));
    child.kill('SIGKILL');
    const result = await call;
    expect(result.closeCode).not.toBe(1000); // the server vanished: no clean close
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    await model.close();
  }

  // The next process: same database.
  const config = loadConfig({ CALLBRIDGE_DB: db });
  const store = new SqliteCallStore({ path: db, prices: config.prices, log: silentLogger });
  try {
    expect(store.markInterrupted()).toBe(1);
    const [summary] = store.list();
    const record = store.get(summary!.callSid)!;
    expect(record.state).toBe('interrupted');
    expect(record.endReason).toBe('process_exit');
    expect(record.transcript.some((t) => t.speaker === 'caller' && t.text === 'I need to check my coverage')).toBe(true);
    expect(record.transcript.some((t) => t.speaker === 'assistant' && t.text === 'Hello there.')).toBe(true);
  } finally {
    store.close();
  }
}, 40_000);
