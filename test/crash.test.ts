/**
 * Records survive a crash. The first test kills a process that is writing a
 * call with SIGKILL and checks what the next process finds.
 *
 * That one sits at the store, on purpose: what a crash may lose is the store's
 * contract (entries queued since the last flush, ≤ FLUSH_MS; a flush is one
 * transaction, all or nothing) and the SQLite driver's (a committed WAL
 * transaction survives the process). So the child is the real store on the
 * driver of the Node running the tests — node:sqlite or better-sqlite3 — with
 * encryption on, in its own process, run from the TypeScript sources (no
 * build, no server edge), which lets it run on every supported Node.
 *
 * The second is the whole relay: `callbridge serve` from build/ with the model
 * stand-in and a simulated caller, killed mid-call once the greeting has been
 * heard: the assistant's line is in the record the next process reads (a line
 * is written when it has been heard, not at barge-in or the call's end).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { silentLogger } from '../src/log.js';
import { placeCall } from '../src/sim/caller.js';
import { startModelStandIn } from '../src/sim/model-server.js';
import { ensureBuilt, killServeProcesses, serveProcess } from './helpers/serve.js';
import { openSqlite, sqliteDriver } from '../src/store/sqlite-driver.js';
import { SqliteCallStore } from '../src/store/sqlite.js';
import { prices } from './helpers/store.js';

const SID = 'CA0000000000000000000000000000c0de';
const KEY = Buffer.alloc(32, 9);
/** Lines the child saw committed before it said "ready" (crash-child.mjs). */
const MIN_COMMITTED = 200;
const fixtures = join(process.cwd(), 'test/fixtures/store');

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'callbridge-crash-'));
});
afterEach(() => {
  killServeProcesses();
  rmSync(dir, { recursive: true, force: true });
});

it('a process killed with SIGKILL while writing a call: every flushed line survives, in order, and the call is marked interrupted', async () => {
  const path = join(dir, 'calls.db');
  const child = spawn(process.execPath, ['--import', join(fixtures, 'ts-loader.mjs'), join(fixtures, 'crash-child.mjs'), path, SID, KEY.toString('hex')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<NodeJS.Signals | null>((r) => child.on('exit', (_code, sig) => r(sig)));
  const driver = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /ready (\S+)\n/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.on('exit', (code) => reject(new Error(`child exited early (${code}): ${stderr}`)));
  });
  child.kill('SIGKILL'); // while it is still appending and flushing
  expect(await exited).toBe('SIGKILL');
  expect(driver).toBe(sqliteDriver().name);
  expect(stderr).toBe(''); // no warning, deprecation or error from the child

  const raw = openSqlite(path, { readOnly: true });
  expect(raw.pragma('integrity_check')).toBe('ok');
  raw.close();

  const s = new SqliteCallStore({ path, prices, log: silentLogger, transcriptKey: KEY });
  try {
    const before = s.get(SID)!;
    expect(before.state).toBe('in_progress'); // as the killed process left it
    expect(before.from).toBe('+15550001111');
    expect(before.streamSid).toBe('MZcrash');
    // All or nothing per flush: the lines that survive are exactly the first n written.
    const n = before.transcript.length;
    expect(n).toBeGreaterThanOrEqual(MIN_COMMITTED);
    expect(before.transcript.map((l) => l.text)).toEqual(Array.from({ length: n }, (_, i) => `line ${i}`));
    expect(before.transcript.map((l) => l.atMs)).toEqual(Array.from({ length: n }, (_, i) => i * 10));
    // Latencies were queued with the lines, so they were flushed with them.
    expect(before.turnLatencies).toEqual(Array.from({ length: Math.floor(n / 50) }, (_, t) => ({ turn: t + 1, latencyMs: 600 })));

    expect(s.markInterrupted()).toBe(1);
    const after = s.get(SID)!;
    expect(after.state).toBe('interrupted');
    expect(after.endReason).toBe('process_exit');
    expect(after.transcript).toHaveLength(n);
  } finally {
    s.close();
  }
}, 60_000);

it('callbridge serve killed with SIGKILL mid-call: the greeting the caller heard is in the record', async () => {
  ensureBuilt();
  const standIn = await startModelStandIn({ scenario: { greeting: 'Thanks for calling the test line.', turns: [] } });
  try {
    const path = join(dir, 'serve.db');
    const TOKEN = 'crash-test-auth-token';
    const PUBLIC = 'https://crash.example.test';
    const s = await serveProcess({ PUBLIC_URL: PUBLIC, OPENAI_BASE_URL: standIn.baseUrl, TWILIO_AUTH_TOKEN: TOKEN, CALLBRIDGE_DB: path, TRANSCRIPT_KEY: KEY.toString('hex') });
    const callSid = 'CA00000000000000000000000000c0de02';
    // A caller who stays on the line, silent, long after the greeting.
    const live = placeCall({ baseUrl: s.base, publicUrl: PUBLIC, authToken: TOKEN, callSid, utterances: [{ durationMs: 20, pauseMs: 60_000 }], maxCallMs: 60_000 }).catch(() => undefined);
    // The greeting is heard (its last mark echoed), written and flushed while the call goes on.
    const read = () => {
      const store = new SqliteCallStore({ path, prices, log: silentLogger, transcriptKey: KEY, readOnly: true });
      try {
        return store.get(callSid);
      } catch {
        return undefined; // not created yet
      } finally {
        store.close();
      }
    };
    let live1 = read();
    for (let i = 0; i < 300 && !live1?.transcript.some((l) => l.speaker === 'assistant'); i++) {
      await new Promise((r) => setTimeout(r, 50));
      live1 = read();
    }
    expect(live1?.state, s.output()).toBe('in_progress');
    expect(live1!.transcript.filter((l) => l.speaker === 'assistant').map((l) => l.text)).toEqual(['Thanks for calling the test line.']);

    s.child.kill('SIGKILL');
    await s.exit;
    await live;
    const after = read()!;
    expect(after.state).toBe('in_progress'); // as the killed process left it: no end was written
    expect(after.transcript.filter((l) => l.speaker === 'assistant')).toEqual([
      { atMs: expect.any(Number), speaker: 'assistant', text: 'Thanks for calling the test line.' },
    ]);
  } finally {
    await standIn.close();
  }
}, 180_000);
