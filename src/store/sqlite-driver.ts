/**
 * The SQLite driver under the call store, chosen once per process:
 *   - `node:sqlite` (built into Node, nothing to compile) where the running
 *     Node has it without a flag: 22.13+, 23.4+, 24, 26;
 *   - better-sqlite3 elsewhere (Node 20). npm installs it only there: it comes
 *     with the optional dependency scripts/sqlite-node20, whose `engines` makes
 *     npm skip it (and so never compile it) on a Node that has node:sqlite.
 *
 * Both are synchronous and open the same file format; this module gives the
 * store the few operations it uses, with the same meaning on either driver:
 * exec, prepare → run/get/all (positional `?` or named `@name` parameters,
 * bound from an object without the `@`), transaction, pragma, close.
 * Integers come back as JS numbers (the store keeps none above 2^53).
 * Defaults that differ between the two do not matter to this schema:
 * node:sqlite turns foreign-key enforcement on (the schema has no foreign
 * keys); both refuse double-quoted string literals (the SQL uses '…').
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';

/** A value SQLite can store; `undefined` is not one (bind null instead). */
export type SqlValue = null | number | bigint | string | Uint8Array;
/** Parameters: positional values, or one object of named values (`@name` in the SQL, `name` in the object). */
export type SqlParams = SqlValue[] | [Record<string, SqlValue>];

export interface SqlStatement {
  run(...params: SqlParams): { changes: number };
  /** The first row, or undefined when there is none. */
  get(...params: SqlParams): unknown;
  all(...params: SqlParams): unknown[];
}

export interface SqliteDriverInfo {
  name: 'node:sqlite' | 'better-sqlite3';
  /** The SQLite library version the driver runs, e.g. "3.54.1". */
  sqliteVersion: string;
  /** One line for the start-up log: why this driver. */
  why: string;
}

export interface SqliteDb {
  readonly driver: SqliteDriverInfo;
  exec(sql: string): void;
  prepare(sql: string): SqlStatement;
  /**
   * Run fn inside BEGIN … COMMIT. If fn or the COMMIT throws, the transaction
   * is rolled back (nothing of it is written) and the error is rethrown.
   * Not nestable.
   */
  transaction(fn: () => void): void;
  /** `PRAGMA <p>`; returns the first column of the first row it yields (e.g. user_version), else undefined. */
  pragma(p: string): unknown;
  close(): void;
}

export interface OpenOptions {
  /** Fail with an error instead of creating a new, empty database file. */
  fileMustExist?: boolean;
  /** Open the file read-only (implies fileMustExist). */
  readOnly?: boolean;
}

/** The surface of `node:sqlite` used here (its types are not in @types/node 20). */
interface NodeSqlite {
  DatabaseSync: new (path: string, opts?: { readOnly?: boolean }) => {
    exec(sql: string): void;
    prepare(sql: string): SqlStatement;
    close(): void;
  };
}

/** The surface of better-sqlite3 used here. */
type BetterSqlite3 = new (path: string, opts?: { readonly?: boolean; fileMustExist?: boolean }) => {
  exec(sql: string): void;
  prepare(sql: string): SqlStatement;
  close(): void;
};

/** An open connection of either driver. */
interface Raw {
  exec(sql: string): void;
  prepare(sql: string): SqlStatement & { reader?: boolean };
  close(): void;
}

let chosen: { info: SqliteDriverInfo; open: (path: string, o: OpenOptions) => Raw } | undefined;

/**
 * Which driver this process uses (decided on first use, then fixed).
 * Throws an Error saying what to install when neither is available.
 */
export function sqliteDriver(): SqliteDriverInfo {
  return load().info;
}

/** Open (or create) a database file, or ':memory:'. Errors from SQLite are thrown as they are. */
export function openSqlite(path: string, opts: OpenOptions = {}): SqliteDb {
  const d = load();
  const raw = d.open(path, opts);
  return wrap(raw, d.info);
}

function load(): NonNullable<typeof chosen> {
  if (chosen) return chosen;
  const nodeSqlite = loadNodeSqlite();
  if (nodeSqlite) {
    const { DatabaseSync } = nodeSqlite;
    chosen = {
      info: { name: 'node:sqlite', sqliteVersion: '', why: `built into Node ${process.versions.node}` },
      open: (path, o) => {
        if ((o.fileMustExist || o.readOnly) && path !== ':memory:' && !existsSync(path)) {
          throw new Error(`unable to open database file: ${path} does not exist`);
        }
        return new DatabaseSync(path, o.readOnly ? { readOnly: true } : {});
      },
    };
  } else {
    let Database: BetterSqlite3;
    try {
      Database = createRequire(import.meta.url)('better-sqlite3') as BetterSqlite3;
    } catch (err) {
      throw new Error(
        `no SQLite driver: Node ${process.versions.node} has no node:sqlite (it needs 22.13 or later) and better-sqlite3 ` +
          `did not load (${err instanceof Error ? err.message.split('\n')[0] : String(err)}); run \`npm ci\` with this Node, or use Node 22.13+`,
      );
    }
    chosen = {
      info: { name: 'better-sqlite3', sqliteVersion: '', why: `Node ${process.versions.node} has no node:sqlite (needs 22.13+)` },
      open: (path, o) => new Database(path, { readonly: o.readOnly === true, fileMustExist: o.fileMustExist === true || o.readOnly === true }),
    };
  }
  const probe = chosen.open(':memory:', {});
  chosen.info.sqliteVersion = String((probe.prepare('SELECT sqlite_version() AS v').get() as { v: string }).v);
  probe.close();
  return chosen;
}

/**
 * node:sqlite if this Node has it without a flag, else undefined. Node 22
 * prints a one-time "SQLite is an experimental feature" warning on load; the
 * store's start-up log line already names the driver, so that warning (and
 * only that one) is not repeated on stderr.
 */
function loadNodeSqlite(): NodeSqlite | undefined {
  const getBuiltin = (process as { getBuiltinModule?: (id: string) => unknown }).getBuiltinModule;
  if (typeof getBuiltin !== 'function') return undefined;
  const emitWarning = process.emitWarning;
  process.emitWarning = function (this: NodeJS.Process, warning: string | Error, ...rest: unknown[]) {
    const text = typeof warning === 'string' ? warning : warning.message;
    if (/^SQLite is an experimental feature/.test(text)) return;
    return (emitWarning as (...a: unknown[]) => void).call(this, warning, ...rest);
  } as typeof process.emitWarning;
  try {
    const m = getBuiltin.call(process, 'node:sqlite') as NodeSqlite | undefined;
    return m && typeof m.DatabaseSync === 'function' ? m : undefined;
  } catch {
    return undefined;
  } finally {
    process.emitWarning = emitWarning;
  }
}

function wrap(raw: Raw, driver: SqliteDriverInfo): SqliteDb {
  return {
    driver,
    exec: (sql) => raw.exec(sql),
    prepare: (sql) => raw.prepare(sql),
    transaction(fn) {
      raw.exec('BEGIN');
      try {
        fn();
        raw.exec('COMMIT');
      } catch (err) {
        try {
          raw.exec('ROLLBACK');
        } catch {
          // SQLite already rolled it back (some errors end the transaction themselves).
        }
        throw err;
      }
    },
    pragma(p) {
      const stmt = raw.prepare(`PRAGMA ${p}`);
      if (stmt.reader === false) {
        // better-sqlite3 refuses get() on a statement that yields no rows (e.g. `synchronous = NORMAL`).
        stmt.run();
        return undefined;
      }
      const row = stmt.get() as Record<string, unknown> | undefined;
      return row === undefined ? undefined : Object.values(row)[0];
    },
    close: () => raw.close(),
  };
}
