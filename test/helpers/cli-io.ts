/** A CliIO over in-memory streams, for running `callbridge` commands in-process and reading what they printed. */
import { PassThrough } from 'node:stream';
import type { CliIO } from '../../src/cli/io.js';

export function memoryIO(env: Record<string, string> = {}): { io: CliIO; out: () => string; err: () => string } {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d) => (out += d));
  stderr.on('data', (d) => (err += d));
  return { io: { stdin: new PassThrough(), stdout, stderr, env }, out: () => out, err: () => err };
}
