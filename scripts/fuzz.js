#!/usr/bin/env node
// Thin runner for `npm run fuzz`: the fuzzer is compiled TypeScript under build/ (src/sim/fuzz.ts).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = new URL('../build/src/sim/fuzz.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  process.stderr.write('fuzz: not built yet; run `npm run build` in the repository first\n');
  process.exit(2);
}
const { fuzzCli } = await import(entry.href);
const code = await fuzzCli(process.argv.slice(2));
// Exit now: the run closed what it opened, and the verdict is printed.
process.exit(code);
