/**
 * What the relay bench reads about a relay process from outside it, the
 * same way for every relay (Linux only):
 * - CPU: utime + stime of all its threads from /proc/<pid>/stat, in µs
 *   (clock-tick resolution, 10 ms on Linux);
 * - write syscalls: `perf stat` counting the syscall tracepoints write,
 *   writev, sendto, sendmsg and sendmmsg on the process (all threads) — in-kernel
 *   counters, no ptrace, a few hundred ns per syscall for every relay alike.
 *   Needs `perf` (Debian: linux-perf) and root or perf_event_paranoid ≤ -1.
 *   Without it the figure falls back to /proc/<pid>/io `syscw`, which counts
 *   write/writev but NOT send/sendto (what uWebSockets.js uses), so it is
 *   labelled as such and not comparable between relays.
 * - run-queue wait of its event-loop thread (/proc/<pid>/schedstat): time
 *   it was starved by other processes;
 * - pinning: `taskset -a -p -c CPUS PID` (util-linux).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';

let clkTck: number | undefined;
function ticksPerSecond(): number {
  if (clkTck === undefined) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

/** CPU time (user + system, all threads) of a live process, µs. */
export function processCpuUs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the parenthesised command name (which may contain spaces).
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(f[11]);
  const stime = Number(f[12]);
  return ((utime + stime) * 1e6) / ticksPerSecond();
}

/**
 * Time the process's main thread (the event loop) spent runnable but waiting
 * for a CPU, ns (/proc/<pid>/schedstat, 2nd field): how much other work on
 * the box starved it. undefined when the kernel does not expose it.
 */
export function processRunqWaitNs(pid: number): number | undefined {
  try {
    const f = readFileSync(`/proc/${pid}/schedstat`, 'utf8').trim().split(/\s+/);
    const v = Number(f[1]);
    return Number.isFinite(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/** /proc/<pid>/io `syscw` (write-family syscalls through the VFS: write, writev; not send*). */
export function processSyscw(pid: number): number | undefined {
  try {
    const m = /^syscw:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

export const WRITE_SYSCALLS = ['write', 'writev', 'sendto', 'sendmsg', 'sendmmsg'] as const;

export interface SyscallCounter {
  /** Stops counting; per-syscall counts, or undefined when perf could not count. */
  stop(): Promise<Record<string, number> | undefined>;
}

let perfUsable: boolean | undefined;

/** Whether `perf stat` can count syscall tracepoints here (checked once, on this process). */
export function perfAvailable(): boolean {
  if (perfUsable === undefined) {
    try {
      const out = execFileSync('perf', ['stat', '-x,', '-e', 'syscalls:sys_enter_write', '--', 'true'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
      perfUsable = out !== undefined;
    } catch {
      perfUsable = false;
    }
  }
  return perfUsable;
}

/** Counts the write-family syscalls of `pid` (all threads) until stop(). */
export function countWriteSyscalls(pid: number): SyscallCounter {
  if (!perfAvailable()) return { stop: async () => undefined };
  const events = WRITE_SYSCALLS.map((s) => `syscalls:sys_enter_${s}`).join(',');
  const perf: ChildProcess = spawn('perf', ['stat', '-x,', '-e', events, '-p', String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  perf.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => perf.once('exit', (code) => resolve(code)));
  return {
    async stop() {
      // perf prints its counts on SIGINT.
      perf.kill('SIGINT');
      const t = setTimeout(() => perf.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
      const counts: Record<string, number> = {};
      for (const line of err.split('\n')) {
        // CSV: value,unit,event,…
        const [value, , event] = line.split(',');
        const m = /^syscalls:sys_enter_(\w+)$/.exec(event ?? '');
        if (m && value !== undefined && /^\d+$/.test(value)) counts[m[1]!] = Number(value);
      }
      return Object.keys(counts).length ? counts : undefined;
    },
  };
}

/** Pins every thread of `pid` to the given CPU list (e.g. '0', '1', '0-1'). Throws when taskset fails. */
export function pin(pid: number, cpus: string): void {
  execFileSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' });
}

/**
 * Stop a bench child: send `msg` when it is still connected (its own stop
 * message), wait for it to exit, and kill it if it has not within 5 s.
 */
export async function stopChild(child: ChildProcess, msg?: object): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  if (msg && child.connected) child.send(msg);
  const t = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(t);
}

/** Ask a child for one message of `type` (after sending `msg`); rejects if it exits first. */
export function ask<T>(child: ChildProcess, msg: object, type: string, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onMsg = (m: { type: string; message?: string }) => {
      if (m.type === type) {
        cleanup();
        resolve(m as T);
      } else if (m.type === 'error') {
        cleanup();
        reject(new Error(`${what}: ${m.message}`));
      }
    };
    const onExit = (code: number | null) => {
      cleanup();
      reject(new Error(`${what}: the process exited (${code}) before answering`));
    };
    const cleanup = () => {
      child.off('message', onMsg);
      child.off('exit', onExit);
    };
    child.on('message', onMsg);
    child.once('exit', onExit);
    if (Object.keys(msg).length) child.send(msg);
  });
}

/**
 * Environment of a relay child (callbridge and its peers alike): as the production image runs
 * (Dockerfile: `npm prune --omit=dev`), `ws` without the dev dependency `bufferutil`, which the
 * stand-ins and callers load to unmask their input natively. The relays' figures stay comparable
 * with each other and with earlier runs; only the load generator gets cheaper.
 */
export const RELAY_CHILD_ENV = { WS_NO_BUFFER_UTIL: '1' } as const;
