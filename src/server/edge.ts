/**
 * Which edge serves: native uWebSockets.js where a build loads for the
 * running Node, node:http + ws elsewhere. Resolved once at start-up.
 *
 * Order of uWS candidates:
 *   1. CALLBRIDGE_UWS_MODULE (a package name or path), when set — and then
 *      only it: a module named explicitly that does not load is a start-up
 *      error, never a silent fallback;
 *   2. `uWebSockets.js`: the upstream build, if the user installed it
 *      (npm install github:uNetworking/uWebSockets.js#v20.xx.0);
 *   3. `@based/uws` (optional dependency): native for Node 20, 22 (and 18, 23).
 * A candidate counts only if what loaded is native code: some packages fall
 * back to a partial JavaScript imitation on an unsupported Node, which cannot
 * serve a call (no upgrade, no backpressure) and is refused here.
 *
 * `EDGE=uws` forces uWS (no native build → start-up error naming every
 * attempt), `EDGE=node` forces node:http + ws, unset or `auto` picks.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type * as UWS from '@based/uws';

export type UwsModule = typeof UWS;
export type EdgeKind = 'uws' | 'node';
export type EdgeChoice = EdgeKind | 'auto';

export type ResolvedEdge =
  | { kind: 'uws'; uws: UwsModule; module: string; version: string; description: string }
  | { kind: 'node'; description: string };

/** Module names tried in order when CALLBRIDGE_UWS_MODULE is not set. */
export const UWS_CANDIDATES = ['uWebSockets.js', '@based/uws'] as const;

/** uWS versions of npm packages whose own version is not uWS's. */
const KNOWN_UWS_VERSIONS: Record<string, Record<string, string>> = {
  '@based/uws': { '6.0.1': '20.51.0', '6.0.0': '20.51.0' },
};

export class EdgeError extends Error {
  override readonly name = 'EdgeError';
}

const require = createRequire(import.meta.url);

/** Parse `EDGE`. Anything else than uws/node/auto/empty is a configuration error. */
export function parseEdgeChoice(value: string | undefined): EdgeChoice {
  const v = (value ?? '').trim().toLowerCase();
  if (v === '' || v === 'auto') return 'auto';
  if (v === 'uws' || v === 'node') return v;
  throw new EdgeError(`EDGE must be uws, node or auto (got '${value}')`);
}

/** "Node 24.1.0 (ABI 137), linux-x64, glibc 2.36": what decides which native builds can load. */
export function platformSummary(): string {
  const glibc = glibcVersion();
  return `Node ${process.versions.node} (ABI ${process.versions.modules}), ${process.platform}-${process.arch}${glibc ? `, glibc ${glibc}` : ''}`;
}

function glibcVersion(): string | undefined {
  try {
    const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
    return header?.glibcVersionRuntime;
  } catch {
    return undefined;
  }
}

/** Native functions print as `function App() { [native code] }`; a JavaScript imitation prints its source. */
function isNative(mod: unknown): mod is UwsModule {
  const app = (mod as { App?: unknown } | null)?.App;
  return typeof app === 'function' && /\{\s*\[native code\]\s*\}\s*$/.test(Function.prototype.toString.call(app));
}

function uwsVersion(name: string): string {
  try {
    const pkg = packageJsonOf(require.resolve(name));
    const known = pkg.name && pkg.version ? KNOWN_UWS_VERSIONS[pkg.name]?.[pkg.version] : undefined;
    if (known) return `v${known.replace(/\.0$/, '')}`;
    if (pkg.name === 'uWebSockets.js' && pkg.version) return `v${pkg.version.replace(/\.0$/, '')}`;
    return `${pkg.name ?? name} ${pkg.version ?? '?'}`;
  } catch {
    return 'version unknown';
  }
}

/** The package.json above a resolved entry file (packages whose `exports` hide their package.json). */
function packageJsonOf(entry: string): { name?: string; version?: string } {
  for (let dir = dirname(entry); dir !== dirname(dir); dir = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name) return pkg; // a nameless package.json (e.g. {"type":"commonjs"} in a subfolder) is not the package's
    } catch {
      /* not here: go up */
    }
  }
  return {};
}

type Attempt = { ok: true; uws: UwsModule } | { ok: false; why: string };

function tryLoad(name: string): Attempt {
  try {
    const mod: unknown = require(name);
    if (!isNative(mod)) return { ok: false, why: `${name}: loaded a JavaScript imitation, not native code` };
    return { ok: true, uws: mod };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'MODULE_NOT_FOUND' && String(e.message).includes(`'${name}'`)) return { ok: false, why: `${name}: not installed` };
    // Loaders wrap the real cause (e.g. "GLIBC_2.38 not found") under a generic first line: keep the last line.
    const lines = String(e.message).split('\n').map((l) => l.trim()).filter(Boolean);
    const cause = (lines.at(-1) ?? String(err)).replace(/^Error: /, '').replace(/\/\S*\/([^/\s)]+\.node)/g, '$1');
    return { ok: false, why: `${name}: ${cause}` };
  }
}

/**
 * Pick the edge. Throws EdgeError only for what the operator asked and cannot
 * have: EDGE=uws with no native build, or a CALLBRIDGE_UWS_MODULE that does
 * not load natively.
 */
export function resolveEdge(env: NodeJS.ProcessEnv = process.env, choice: EdgeChoice = parseEdgeChoice(env.EDGE)): ResolvedEdge {
  const platform = platformSummary();
  if (choice === 'node') return { kind: 'node', description: 'node:http + ws (EDGE=node)' };
  const explicit = env.CALLBRIDGE_UWS_MODULE?.trim();
  const names = explicit ? [explicit] : [...UWS_CANDIDATES];
  const failures: string[] = [];
  for (const name of names) {
    const a = tryLoad(name);
    if (a.ok) return { kind: 'uws', uws: a.uws, module: name, version: uwsVersion(name), description: `uWebSockets.js ${uwsVersion(name)} native (${name})` };
    failures.push(a.why);
  }
  if (explicit) {
    throw new EdgeError(
      `cannot load uWebSockets.js from CALLBRIDGE_UWS_MODULE='${explicit}' on ${platform}: ${failures.join('; ')}. ` +
        'Point it at a build with a binary for this Node, or unset it.',
    );
  }
  if (choice === 'uws') {
    throw new EdgeError(
      `EDGE=uws, but no native uWebSockets.js loads on ${platform} (${failures.join('; ')}). ` +
        'Install an upstream build for this Node (see docs/deploy-edges.md), or unset EDGE to use node:http + ws.',
    );
  }
  const glibc = glibcVersion();
  return {
    kind: 'node',
    description: `node:http + ws (no native uWebSockets.js for Node ${process.versions.node.split('.')[0]}${glibc ? ` / glibc ${glibc}` : ''})`,
  };
}

/** The edges that can run on this Node, for tests that run once per edge. */
export function availableEdges(env: NodeJS.ProcessEnv = process.env): EdgeKind[] {
  try {
    return resolveEdge(env, 'uws').kind === 'uws' ? ['uws', 'node'] : ['node'];
  } catch {
    return ['node'];
  }
}
