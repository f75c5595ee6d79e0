/**
 * The console's page and assets, from `webRoot` (src/console/web/, built).
 *
 * - Every file of webRoot is read once at start (it is small) and hashed:
 *   `hash` = the first 12 hex of SHA-256 over every file's relative path and
 *   bytes, in path order (the vendored uPlot files included). A deploy that
 *   changes any file changes every asset URL, so assets can be cached forever.
 * - GET /console and /console/ → index.html with each `./` URL in a `src=`,
 *   `href=` or `url(` rewritten to `/console/assets/<hash>/…`;
 *   `cache-control: no-store` (it names the current hash).
 * - GET /console/assets/<hash>/<path> → the file, its type by extension,
 *   `cache-control: public, max-age=31536000, immutable`. Another hash, a
 *   path with `.`/`..`/empty segments or a backslash, or an unknown file → 404.
 * - `vendor/uPlot.esm.js` and `vendor/uPlot.min.css` come from the `uplot`
 *   package (node_modules/uplot/dist), resolved with createRequire; when the
 *   package is missing they are skipped with a logged warning (the page's
 *   charts then fail to load; everything else works).
 * - Reads nothing from disk after start; never throws on a request.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, sep } from 'node:path';
import type { Logger } from '../log.js';
import { fileURLToPath } from 'node:url';

export interface StaticFile {
  status: number;
  headers: Record<string, string>;
  type: string;
  body: string | Uint8Array;
}

export interface StaticSite {
  /** 12 hex characters naming this build of the assets. */
  readonly hash: string;
  /** The answer for a GET of `path` (under /console, not /console/api), or undefined when it is not a page or asset path. */
  get(path: string): StaticFile | undefined;
}

export const IMMUTABLE = 'public, max-age=31536000, immutable';
const VENDOR_FILES = ['uPlot.esm.js', 'uPlot.min.css'] as const;

const TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  mjs: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
  json: 'application/json',
  map: 'application/json',
  svg: 'image/svg+xml',
  png: 'image/png',
  ico: 'image/x-icon',
  webp: 'image/webp',
  woff2: 'font/woff2',
  txt: 'text/plain; charset=utf-8',
};

export function contentType(path: string): string {
  const ext = /\.([a-z0-9]+)$/i.exec(path)?.[1]?.toLowerCase() ?? '';
  return TYPES[ext] ?? 'application/octet-stream';
}

/** Every regular file under `dir`, as '/'-separated relative paths. */
function walk(dir: string, root = dir): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return walk(path, root);
    return e.isFile() ? [relative(root, path).split(sep).join('/')] : [];
  });
}

/** node_modules/uplot/dist, or undefined when the package is not installed. */
function uplotDist(): string | undefined {
  try {
    const require = createRequire(import.meta.url);
    let dir = dirname(require.resolve('uplot'));
    for (let i = 0; i < 4; i++) {
      if (existsSync(join(dir, VENDOR_FILES[0]))) return dir;
      if (existsSync(join(dir, 'dist', VENDOR_FILES[0]))) return join(dir, 'dist');
      dir = dirname(dir);
    }
    return undefined;
  } catch {
    return undefined;
  }
}

/** A path (after `/console/assets/<hash>/`) that names a file plainly: no `.`/`..`/empty segments, no backslash, no NUL. */
function safeAssetPath(raw: string): string | undefined {
  let path: string;
  try {
    path = decodeURIComponent(raw);
  } catch {
    return undefined;
  }
  if (path.includes('\\') || path.includes('\0')) return undefined;
  const segments = path.split('/');
  if (segments.some((s) => s === '' || s === '.' || s === '..')) return undefined;
  return path;
}

export function createStaticSite(webRoot: string, log: Logger): StaticSite {
  const files = new Map<string, Buffer>();
  if (existsSync(webRoot) && statSync(webRoot).isDirectory()) {
    for (const rel of walk(webRoot)) files.set(rel, readFileSync(join(webRoot, rel)));
  } else {
    log.warn({ webRoot }, 'console: the page directory does not exist; /console answers 404 until it is built');
  }
  const dist = uplotDist();
  if (dist) {
    for (const name of VENDOR_FILES) {
      const path = join(dist, name);
      if (existsSync(path)) files.set(`vendor/${name}`, readFileSync(path));
      else log.warn({ path }, 'console: a uPlot file is missing; the charts will not load');
    }
  } else {
    log.warn('console: the uplot package is not installed; vendor/uPlot.* are not served and the charts will not load');
  }

  const h = createHash('sha256');
  for (const rel of [...files.keys()].sort()) {
    const bytes = files.get(rel)!;
    h.update(`${rel}\0${bytes.length}\0`, 'utf8');
    h.update(bytes);
  }
  const hash = h.digest('hex').slice(0, 12);
  const prefix = `/console/assets/${hash}/`;

  const indexSource = files.get('index.html');
  const index = indexSource?.toString('utf8').replace(/(\b(?:src|href)\s*=\s*["']|url\(\s*["']?)\.\//g, `$1${prefix}`);

  return {
    hash,
    get(path) {
      if (path === '/console' || path === '/console/') {
        if (index === undefined) return { status: 404, headers: { 'cache-control': 'no-store' }, type: 'text/plain; charset=utf-8', body: 'the console page is not built' };
        return { status: 200, headers: { 'cache-control': 'no-store' }, type: TYPES.html!, body: index };
      }
      const m = /^\/console\/assets\/([^/]+)\/(.+)$/.exec(path);
      if (!m) return undefined;
      const rel = m[1] === hash ? safeAssetPath(m[2]!) : undefined;
      const bytes = rel === undefined ? undefined : files.get(rel);
      if (!bytes) return { status: 404, headers: { 'cache-control': 'no-store' }, type: 'text/plain; charset=utf-8', body: 'not found' };
      return { status: 200, headers: { 'cache-control': IMMUTABLE }, type: contentType(rel!), body: bytes };
    },
  };
}

/**
 * Where the console's page lives: src/console/web under the nearest ancestor
 * holding package.json — the same from src/ (tests) and build/src/ (built;
 * tsc does not copy the page, which is served as written).
 */
export function consoleWebRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return join(dir, 'src', 'console', 'web');
    const parent = dirname(dir);
    if (parent === dir) return join('src', 'console', 'web');
    dir = parent;
  }
}
