/**
 * The import rules a newcomer can check by reading the imports (issue 23,
 * "Done when"), asserted over the sources: every relative import of
 * src/**\/*.ts (static, type-only, re-exports and literal dynamic imports).
 * - Only main.ts and what stands above it (src/cli/*, src/sim/fuzz.ts)
 *   import config.ts; every other module takes its own settings.
 * - src/call/ imports nothing from src/store/ or src/server/.
 * - No import circle in src/.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SRC = join(ROOT, 'src');

const MAY_IMPORT_CONFIG = new Set(['src/main.ts', 'src/sim/fuzz.ts']);
const mayImportConfig = (file: string) => MAY_IMPORT_CONFIG.has(file) || file.startsWith('src/cli/');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sources(path);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [path] : [];
  });
}

/** Relative imports of one file, as repository paths of .ts files (`./x.js` → `src/…/x.ts`). */
function importsOf(file: string, text: string): string[] {
  const specs = new Set<string>();
  const patterns = [
    /^\s*(?:import|export)\s[^;]*?\sfrom\s+['"]([^'"]+)['"]/gms,
    /^\s*import\s+['"]([^'"]+)['"]/gm,
    /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  for (const re of patterns) for (const m of text.matchAll(re)) if (m[1]!.startsWith('.')) specs.add(m[1]!);
  return [...specs].map((spec) => relative(ROOT, resolve(dirname(join(ROOT, file)), spec.replace(/\.js$/, '.ts'))));
}

const graph = new Map<string, string[]>();
for (const path of sources(SRC)) {
  const file = relative(ROOT, path);
  graph.set(file, importsOf(file, readFileSync(path, 'utf8')));
}

/** Every circle (strongly connected component of more than one file, or a file importing itself), Tarjan's algorithm. */
function circles(g: Map<string, string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of g.get(v) ?? []) {
      if (!g.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || (g.get(v) ?? []).includes(v)) out.push(scc.sort());
    }
  };
  for (const v of [...g.keys()].sort()) if (!index.has(v)) visit(v);
  return out;
}

describe('import rules (issue 23)', () => {
  it('reads the sources it judges', () => {
    expect(graph.get('src/main.ts')).toContain('src/config.ts');
    expect(graph.get('src/server/app.ts')).toContain('src/server/uws-edge.ts'); // the dynamic import
    expect(circles(new Map([['a', ['b']], ['b', ['c']], ['c', ['a']], ['d', ['a']]]))).toEqual([['a', 'b', 'c']]);
  });

  it('only main.ts, the CLI and the fuzzer import config.ts', () => {
    const importers = [...graph].filter(([file, imports]) => imports.includes('src/config.ts') && !mayImportConfig(file)).map(([file]) => file);
    expect(importers.sort()).toEqual([]);
  });

  it('src/call/ imports nothing from src/store/ or src/server/', () => {
    const offenders = [...graph]
      .filter(([file]) => file.startsWith('src/call/'))
      .flatMap(([file, imports]) => imports.filter((i) => i.startsWith('src/store/') || i.startsWith('src/server/')).map((i) => `${file} -> ${i}`));
    expect(offenders).toEqual([]);
  });

  it('no import circle in src/', () => {
    expect(circles(graph).map((c) => c.join(' '))).toEqual([]);
  });
});
