/**
 * The two call stores as one test fixture, so a test file runs the same
 * cases on SQLite (a file in a temp dir) and PostgreSQL (a fresh schema):
 * open a store on the shared storage, read everything it holds as text (what
 * someone with the disk or the database could read), and run raw SQL on it.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../src/log.js';
import { PostgresCallStore } from '../../src/store/postgres.js';
import { openSqlite } from '../../src/store/sqlite-driver.js';
import { SqliteCallStore } from '../../src/store/sqlite.js';
import type { CallStore } from '../../src/store/types.js';
import { adminSql, dropSchema, freshSchema, PG_URL } from './postgres.js';
import { prices } from './store.js';

export interface OpenOptions {
  key?: Buffer;
  oldKeys?: Buffer[];
  /** The process the store stands for (PostgreSQL instance id; same identity = a restart). */
  identity?: string;
  /** PostgreSQL: connect here instead (e.g. through a proxy). */
  url?: string;
  readOnly?: boolean;
  /** PostgreSQL: give up on a write or a connect after 1 s (tests of an unreachable database). */
  shortTimeouts?: boolean;
}

export interface StoreKind {
  name: 'sqlite' | 'postgres';
  setup(): void;
  teardown(): Promise<void>;
  /** A store on the shared storage. */
  open(o?: OpenOptions): Promise<CallStore>;
  /** Everything the storage holds (calls, entries, transfer decisions), as text. */
  rawText(): Promise<string>;
  /** One SQL statement straight on the storage (literals only). */
  raw(text: string): Promise<Record<string, unknown>[]>;
}

export function sqliteKind(): StoreKind {
  let dir = '';
  let path = '';
  return {
    name: 'sqlite',
    setup() {
      dir = mkdtempSync(join(tmpdir(), 'callbridge-store-'));
      path = join(dir, 'calls.db');
    },
    async teardown() {
      rmSync(dir, { recursive: true, force: true });
    },
    async open(o = {}) {
      return new SqliteCallStore({ path, prices, log: silentLogger, transcriptKey: o.key, transcriptKeysOld: o.oldKeys, readOnly: o.readOnly });
    },
    async rawText() {
      const wal = existsSync(`${path}-wal`) ? readFileSync(`${path}-wal`) : Buffer.alloc(0);
      return Buffer.concat([readFileSync(path), wal]).toString('latin1');
    },
    async raw(text) {
      const db = openSqlite(path);
      try {
        const st = db.prepare(text);
        return /^\s*select/i.test(text) ? (st.all() as Record<string, unknown>[]) : (st.run(), []);
      } finally {
        db.close();
      }
    },
  };
}

export function postgresKind(): StoreKind {
  let schema = '';
  let n = 0;
  return {
    name: 'postgres',
    setup() {
      schema = freshSchema();
    },
    async teardown() {
      await dropSchema(schema);
    },
    async open(o = {}) {
      return PostgresCallStore.open({
        url: o.url ?? PG_URL,
        schema,
        prices,
        log: silentLogger,
        transcriptKey: o.key,
        transcriptKeysOld: o.oldKeys,
        instanceId: o.identity ?? `reader-${++n}`,
        readOnly: o.readOnly,
        ...(o.shortTimeouts ? { writeTimeoutMs: 1_000, connectTimeoutMs: 1_000 } : {}),
      });
    },
    async rawText() {
      const [r] = await this.raw(
        `SELECT coalesce((SELECT string_agg(e::text, '|') FROM call_entries e), '') || coalesce((SELECT string_agg(c::text, '|') FROM calls c), '') || coalesce((SELECT string_agg(t::text, '|') FROM call_transfers t), '') AS t`,
      );
      return String(r?.t ?? '');
    },
    async raw(text) {
      const sql = adminSql(`${PG_URL}?search_path=${schema}`);
      try {
        return [...(await sql.unsafe<Record<string, unknown>[]>(text))];
      } finally {
        await sql.end({ timeout: 2 });
      }
    },
  };
}
