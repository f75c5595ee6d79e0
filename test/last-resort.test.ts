/**
 * The serve process's last resort (issue 22, item 8): an uncaught exception or
 * unhandled rejection is logged with its stack and starts the drain, once.
 * A unit test on a fake process (an EventEmitter), then `callbridge serve`
 * from build/ as a child with a real fault in it: a test-only preload
 * (test/fixtures/fault-injector.mjs, given with node --import) rejects a
 * promise or throws from a timer on SIGUSR2; production code has no hook.
 */
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { installLastResort } from '../src/cli/last-resort.js';
import { loadConfig } from '../src/config.js';
import { createLogger, silentLogger } from '../src/log.js';
import { placeCall } from '../src/sim/caller.js';
import { startModelStandIn, type ModelStandIn } from '../src/sim/model-server.js';
import { SqliteCallStore } from '../src/store/sqlite.js';
import { ensureBuilt, killServeProcesses, ROOT, serveProcess } from './helpers/serve.js';

function capturing() {
  const lines: Record<string, any>[] = [];
  return { lines, log: createLogger('info', { write: (s: string) => void lines.push(JSON.parse(s)) }) };
}

describe('installLastResort', () => {
  it('logs each fault at error level with its stack, drains on the first only, and uninstalls', () => {
    const proc = new EventEmitter();
    const { lines, log } = capturing();
    let drains = 0;
    const lr = installLastResort(proc, log, () => drains++);
    proc.emit('unhandledRejection', new Error('first'), Promise.resolve());
    expect(drains).toBe(1);
    expect(lines[0]).toMatchObject({ level: 50, kind: 'unhandled rejection', faults: 1, msg: 'unhandled rejection: draining (as on SIGTERM)' });
    expect(lines[0]!.err).toMatchObject({ type: 'Error', message: 'first' });
    expect(lines[0]!.err.stack).toMatch(/Error: first\n\s+at /);
    proc.emit('uncaughtException', new TypeError('second'), 'uncaughtException');
    proc.emit('unhandledRejection', 'a bare string', Promise.resolve());
    expect(drains).toBe(1);
    expect(lr.faults).toBe(3);
    expect(lines.map((l) => [l.level, l.msg])).toEqual([
      [50, 'unhandled rejection: draining (as on SIGTERM)'],
      [50, 'uncaught exception (already draining)'],
      [50, 'unhandled rejection (already draining)'],
    ]);
    expect(lines[2]).toMatchObject({ reason: 'a bare string', reasonType: 'string' });
    lr.uninstall();
    expect(proc.listenerCount('uncaughtException') + proc.listenerCount('unhandledRejection')).toBe(0);
  });

  it('a flood of faults is logged in part (the first ten, then every 100th), and a drain that throws is logged', () => {
    const proc = new EventEmitter();
    const { lines, log } = capturing();
    installLastResort(proc, log, () => {
      throw new Error('drain broke');
    });
    for (let i = 0; i < 250; i++) proc.emit('uncaughtException', new Error(`f${i}`));
    expect(lines.find((l) => l.msg === 'starting the drain after a fault failed')?.err.message).toBe('drain broke');
    expect(lines.filter((l) => l.kind).map((l) => l.faults)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 100, 200]);
  });
});

describe('callbridge serve with a real fault in it', () => {
  const TOKEN = 'last-resort-auth-token';
  const PUBLIC = 'https://last-resort.example.test';
  const dir = mkdtempSync(join(tmpdir(), 'callbridge-last-resort-'));
  let standIn: ModelStandIn;
  beforeAll(async () => {
    ensureBuilt();
    standIn = await startModelStandIn();
  }, 180_000);
  afterEach(killServeProcesses);
  afterAll(async () => {
    await standIn?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  let n = 0;
  async function serve(faultKind: 'rejection' | 'exception') {
    const db = join(dir, `lr${++n}.db`);
    const env = { PUBLIC_URL: PUBLIC, OPENAI_BASE_URL: standIn.baseUrl, TWILIO_AUTH_TOKEN: TOKEN, CALLBRIDGE_DB: db, FAULT_KIND: faultKind };
    return { ...(await serveProcess(env, ['--import', join(ROOT, 'test/fixtures/fault-injector.mjs')])), db };
  }
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const errorLines = (out: string) =>
    out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)).filter((l) => l.level === 50);

  for (const kind of ['rejection', 'exception'] as const) {
    it(`${kind === 'rejection' ? 'an unhandled rejection' : 'an uncaught exception'} mid-call: logged with its stack, health 503 draining, the call completes, its record is complete, exit 1`, async () => {
      const s = await serve(kind);
      const live = placeCall({ baseUrl: s.base, publicUrl: PUBLIC, authToken: TOKEN, utterances: [{ durationMs: 1200 }, { durationMs: 1100 }] });
      await sleep(1500); // the call is streaming
      s.child.kill('SIGUSR2');
      await sleep(300);
      const health = await fetch(`${s.base}/voice/health`);
      expect(health.status, s.output()).toBe(503);
      expect(await health.json()).toMatchObject({ status: 'draining', activeCalls: 1 });
      const result = await live;
      expect(result.turnLatenciesMs).toHaveLength(2); // the call went on to its end
      expect(await s.exit, s.output()).toBe(1);
      const [fault] = errorLines(s.output());
      expect(fault).toMatchObject({ kind: kind === 'rejection' ? 'unhandled rejection' : 'uncaught exception', faults: 1 });
      expect(fault.err.stack).toMatch(new RegExp(`Error: injected (unhandled rejection|uncaught exception)\\n\\s+at `));
      const store = new SqliteCallStore({ path: s.db, prices: loadConfig({}).prices, log: silentLogger, readOnly: true });
      try {
        expect(store.get(result.callSid)).toMatchObject({ state: 'completed', endReason: 'caller_hangup' });
      } finally {
        store.close();
      }
    }, 60_000);
  }
});
