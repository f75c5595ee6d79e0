/**
 * `callbridge serve` as a child process, the way it is deployed: compiled
 * code in build/ run by bin/callbridge.js. `ensureBuilt` in beforeAll,
 * `serveProcess` per server, `killServeProcesses` in afterEach.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

export const ROOT = join(import.meta.dirname, '..', '..');
export const LAUNCHER = join(ROOT, 'bin/callbridge.js');

/** Newest mtime of the .ts files under `d`. */
function newestSource(d: string): number {
  let newest = 0;
  for (const entry of readdirSync(d, { withFileTypes: true })) {
    const p = join(d, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(p));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

/** Compile build/ when it is missing or older than src/, and the wasm when it is missing (slow: give beforeAll minutes). */
export function ensureBuilt(): void {
  let stale = true;
  try {
    stale = statSync(join(ROOT, 'build/src/cli/serve.js')).mtimeMs < newestSource(join(ROOT, 'src'));
  } catch {
    /* not built */
  }
  if (stale) spawnSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: ROOT, stdio: 'ignore' });
  try {
    statSync(join(ROOT, 'build/dsp.wasm'));
  } catch {
    spawnSync('npm', ['run', 'build:wasm'], { cwd: ROOT, stdio: 'ignore' });
  }
}

export interface ServeProcess {
  child: ChildProcess;
  port: number;
  /** http://127.0.0.1:<port> */
  base: string;
  exit: Promise<number | null>;
  /** Everything it wrote so far, stdout and stderr. */
  output: () => string;
}

const running: ChildProcess[] = [];

/**
 * Start `callbridge serve` and resolve once it says where it listens. Its
 * environment is `env` over a loopback base (PORT 0, HOST 127.0.0.1, a test
 * OPENAI_API_KEY, LOG_LEVEL warn, VAD_SILENCE_DURATION_MS 300) and PATH:
 * nothing else of this process's environment leaks in. `nodeArgs` go to
 * node before the launcher (e.g. `--import` of a test preload).
 */
export async function serveProcess(env: Record<string, string>, nodeArgs: string[] = []): Promise<ServeProcess> {
  const child = spawn(process.execPath, [...nodeArgs, LAUNCHER, 'serve'], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH,
      PORT: '0',
      HOST: '127.0.0.1',
      OPENAI_API_KEY: 'test-key',
      LOG_LEVEL: 'warn',
      VAD_SILENCE_DURATION_MS: '300',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.push(child);
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const port = await new Promise<number>((resolve, reject) => {
    const check = () => {
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(out);
      if (m) return resolve(Number(m[1]));
      if (child.exitCode !== null) return reject(new Error(`serve exited ${child.exitCode}: ${out}`));
      setTimeout(check, 20);
    };
    check();
  });
  return { child, port, base: `http://127.0.0.1:${port}`, exit, output: () => out };
}

/** SIGKILL every serve process of this file still running (afterEach). */
export function killServeProcesses(): void {
  for (const c of running.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}
