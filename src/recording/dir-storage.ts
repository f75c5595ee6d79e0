/**
 * Recording files in a directory (RECORDING_DIR).
 *
 * Contract:
 * - Object names are relative '/'-paths (`2026/09/14/CA….cbrec`); `..`, `.`,
 *   an absolute path, a backslash, a NUL or an empty segment is refused with
 *   a clear Error, so no name reaches outside the directory.
 * - `create` writes `<name>.part-<random>` through one file handle opened for
 *   appending; `complete` fsyncs it, closes it and renames it into place (then
 *   fsyncs the folder), so a name is either absent or whole. `abort` closes
 *   and removes the part file. Folders are made as needed; `delete` removes
 *   folders it leaves empty.
 * - `list` walks the folders under the prefix and never shows part files.
 * - Every failure rejects with an Error naming the operation, the object and
 *   the errno code (ENOSPC, EACCES, …); `read` of a missing object rejects
 *   RecordingNotFound; nothing throws synchronously.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, rmdir, stat, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { RecordingNotFound, type ObjectUpload, type RecordingStorage } from './types.js';

const PART = /\.part-[0-9a-f]{16}$/;

const ERRNO_TEXT: Record<string, string> = {
  ENOSPC: 'no space left on the device',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  EDQUOT: 'disk quota exceeded',
  EIO: 'input/output error',
  EMFILE: 'too many open files',
  ENOTDIR: 'a part of the path is a file, not a folder',
  EISDIR: 'it is a folder',
};

function codeOf(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && typeof (e as { code?: unknown }).code === 'string' ? (e as { code: string }).code : undefined;
}

/** Why a name is refused, or undefined when it is a proper object name. */
export function objectNameProblem(name: string, what: 'name' | 'prefix' = 'name'): string | undefined {
  if (what === 'name' && name.length === 0) return 'an object name is empty';
  if (name.startsWith('/')) return `object ${what} ${JSON.stringify(name)} is absolute (names are relative '/'-paths)`;
  if (name.includes('\\')) return `object ${what} ${JSON.stringify(name)} holds a backslash (names are '/'-paths)`;
  if (name.includes('\0')) return `object ${what} ${JSON.stringify(name)} holds a NUL byte`;
  const segments = name.split('/');
  // A prefix may end with '/' (all of a folder) or in the middle of a segment.
  const checked = what === 'prefix' ? segments.slice(0, -1) : segments;
  for (const s of checked) {
    if (s === '') return `object ${what} ${JSON.stringify(name)} has an empty path segment`;
    if (s === '.' || s === '..') return `object ${what} ${JSON.stringify(name)} has a '${s}' segment`;
  }
  if (what === 'prefix' && (segments.at(-1) === '..' || segments.at(-1) === '.')) return `object prefix ${JSON.stringify(name)} has a '${segments.at(-1)}' segment`;
  if (what === 'name' && PART.test(name)) return `object name ${JSON.stringify(name)} looks like a part file being written`;
  return undefined;
}

/** Recording storage in directory `dir` (made on first write). */
export function createDirStorage(dir: string): RecordingStorage {
  const root = resolve(dir);
  const where = root;

  const failure = (action: string, name: string, e: unknown): Error => {
    const code = codeOf(e);
    const text = code ? `${code}${ERRNO_TEXT[code] ? ` (${ERRNO_TEXT[code]})` : ''}` : e instanceof Error ? e.message : String(e);
    return new Error(`recording storage ${where}: cannot ${action} ${name}: ${text}`, { cause: e });
  };
  const pathOf = (name: string): string => {
    const problem = objectNameProblem(name);
    if (problem) throw new Error(`recording storage ${where}: ${problem}`);
    return join(root, ...name.split('/'));
  };

  /** Open a new part file next to `path`, making its folders (again, when a concurrent delete removed them meanwhile). */
  const openPart = async (path: string): Promise<{ fh: FileHandle; part: string }> => {
    for (let attempt = 0; ; attempt++) {
      const part = `${path}.part-${randomBytes(8).toString('hex')}`;
      try {
        await mkdir(dirname(path), { recursive: true });
        return { fh: await open(part, 'ax', 0o600), part };
      } catch (e) {
        if (codeOf(e) === 'ENOENT' && attempt < 3) continue;
        throw e;
      }
    }
  };

  const fsyncDir = async (path: string): Promise<void> => {
    const fh = await open(path, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  };

  return {
    kind: 'dir',
    where,

    async create(name) {
      const path = pathOf(name);
      let opened: { fh: FileHandle; part: string };
      try {
        opened = await openPart(path);
      } catch (e) {
        throw failure('create', name, e);
      }
      const { fh, part } = opened;
      let state: 'open' | 'complete' | 'aborted' = 'open';
      const upload: ObjectUpload = {
        async append(bytes) {
          if (state !== 'open') throw new Error(`recording storage ${where}: append to ${name} after it was ${state === 'complete' ? 'completed' : 'aborted'}`);
          try {
            let at = 0;
            while (at < bytes.length) {
              const { bytesWritten } = await fh.write(bytes, at, bytes.length - at);
              at += bytesWritten;
            }
          } catch (e) {
            throw failure('write', name, e);
          }
        },
        async complete() {
          if (state !== 'open') throw new Error(`recording storage ${where}: complete ${name} after it was ${state === 'complete' ? 'completed' : 'aborted'}`);
          try {
            await fh.sync();
            await fh.close();
            state = 'complete';
            await rename(part, path);
          } catch (e) {
            state = 'complete';
            await fh.close().catch(() => undefined);
            await unlink(part).catch(() => undefined);
            throw failure('complete', name, e);
          }
          // The rename is durable once the folder is synced; a failure here does not undo a complete file.
          await fsyncDir(dirname(path)).catch(() => undefined);
        },
        async abort() {
          if (state !== 'open') return;
          state = 'aborted';
          await fh.close().catch(() => undefined);
          try {
            await unlink(part);
          } catch (e) {
            if (codeOf(e) !== 'ENOENT') throw failure('remove the unfinished', name, e);
          }
        },
      };
      return upload;
    },

    async size(name) {
      const path = pathOf(name);
      try {
        const s = await stat(path);
        return s.isFile() ? s.size : undefined;
      } catch (e) {
        if (codeOf(e) === 'ENOENT' || codeOf(e) === 'ENOTDIR') return undefined;
        throw failure('stat', name, e);
      }
    },

    async read(name, start, end) {
      const path = pathOf(name);
      let fh: FileHandle;
      try {
        fh = await open(path, 'r');
      } catch (e) {
        if (codeOf(e) === 'ENOENT' || codeOf(e) === 'ENOTDIR') throw new RecordingNotFound(name);
        throw failure('open', name, e);
      }
      try {
        const size = (await fh.stat()).size;
        const s = Math.max(0, Math.min(start, size));
        const e = Math.max(s, Math.min(end, size));
        const out = new Uint8Array(e - s);
        let at = 0;
        while (at < out.length) {
          const { bytesRead } = await fh.read(out, at, out.length - at, s + at);
          if (bytesRead === 0) break; // the file shrank meanwhile
          at += bytesRead;
        }
        return at === out.length ? out : out.subarray(0, at);
      } catch (e) {
        throw failure('read', name, e);
      } finally {
        await fh.close().catch(() => undefined);
      }
    },

    async delete(name) {
      const path = pathOf(name);
      try {
        await unlink(path);
      } catch (e) {
        if (codeOf(e) === 'ENOENT' || codeOf(e) === 'ENOTDIR') return;
        throw failure('delete', name, e);
      }
      // Folders left empty go too (retention empties whole days); a folder still in use stays.
      let folder = dirname(path);
      while (folder !== root && folder.startsWith(root)) {
        try {
          await rmdir(folder);
        } catch {
          break;
        }
        folder = dirname(folder);
      }
    },

    list(prefix) {
      return listUnder(root, where, prefix);
    },
  };
}

async function* listUnder(root: string, where: string, prefix: string): AsyncGenerator<string> {
  const problem = objectNameProblem(prefix, 'prefix');
  if (problem) throw new Error(`recording storage ${where}: ${problem}`);
  const slash = prefix.lastIndexOf('/');
  const base = slash < 0 ? '' : prefix.slice(0, slash + 1);
  const stack: string[] = [base];
  while (stack.length > 0) {
    const rel = stack.pop()!;
    let entries;
    try {
      entries = await readdir(join(root, ...rel.split('/').filter(Boolean)), { withFileTypes: true });
    } catch (e) {
      const code = codeOf(e);
      if (code === 'ENOENT' || code === 'ENOTDIR') continue;
      throw new Error(`recording storage ${where}: cannot list ${rel || '/'}: ${code ?? (e instanceof Error ? e.message : String(e))}`, { cause: e });
    }
    for (const entry of entries) {
      const name = rel + entry.name;
      if (entry.isDirectory()) {
        const folder = `${name}/`;
        if (folder.startsWith(prefix) || prefix.startsWith(folder)) stack.push(folder);
      } else if (entry.isFile() && !PART.test(entry.name) && name.startsWith(prefix)) {
        yield name;
      }
    }
  }
}
