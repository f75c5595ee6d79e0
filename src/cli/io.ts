/**
 * What a `callbridge` command may touch of its process: its three standard
 * streams and its environment. Commands take it as a parameter so tests run
 * them in-process over in-memory streams; `main.ts` passes the real ones.
 */
export interface CliIO {
  stdin: NodeJS.ReadableStream;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  env: NodeJS.ProcessEnv;
}

/** The process's own streams and environment. */
export function processIO(): CliIO {
  return { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, env: process.env };
}
