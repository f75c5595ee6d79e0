/**
 * Which call store a process uses: PostgreSQL when a database URL is given
 * (DATABASE_URL=postgres://…, shared by several instances), else the
 * embedded SQLite file (CALLBRIDGE_DB). Serving opens it for writing and, on
 * PostgreSQL, holds this instance's lease; the CLI opens it read-only.
 */
import type { Logger } from '../log.js';
import { PostgresCallStore } from './postgres.js';
import type { Prices } from './prices.js';
import { SqliteCallStore } from './sqlite.js';

/** What the call store needs to know of the settings: the composition root (main.ts) or the CLI fills it in from the Config. */
export interface StoreSettings {
  /** postgres:// or postgresql:// URL; absent or empty: SQLite at dbPath. */
  databaseUrl?: string;
  dbPath: string;
  transcriptKey?: Buffer;
  /** Earlier transcript keys, for reading only (TRANSCRIPT_KEY_OLD). */
  transcriptKeysOld?: Buffer[];
  prices: Prices;
  /** PostgreSQL only: this instance's name in call rows and leases (default hostname-pid). */
  instanceId?: string;
  /** PostgreSQL only: a dead instance's calls are marked interrupted within this, ms (default 30 000). */
  leaseMs?: number;
  /** PostgreSQL only: the schema to use (default: the connection's search_path). */
  schema?: string;
  /** PostgreSQL only: bound on entries held while the database is away (default 100 000). */
  maxQueued?: number;
}

export interface OpenCallStoreOptions extends StoreSettings {
  log: Logger;
  /** Read only (CLI): no writes, no timers, no lease. */
  readOnly?: boolean;
}

export type OpenedStore = { kind: 'sqlite'; store: SqliteCallStore } | { kind: 'postgres'; store: PostgresCallStore };

/** True when `url` selects the PostgreSQL store. */
export function isPostgresUrl(url: string | undefined): url is string {
  return !!url && /^postgres(ql)?:\/\//i.test(url);
}

/**
 * Open the configured store. PostgreSQL: connects, migrates under an
 * advisory lock and (unless read-only) starts the lease heartbeat before
 * returning, so the caller's markInterrupted() already counts as a live
 * instance. Rejects with a PostgresStoreError when the database cannot be
 * reached or has a newer schema, or when another live process holds this
 * INSTANCE_ID's lease (a start-up failure, not a call-path one).
 */
export async function openCallStore(o: OpenCallStoreOptions): Promise<OpenedStore> {
  if (!isPostgresUrl(o.databaseUrl)) {
    return {
      kind: 'sqlite',
      store: new SqliteCallStore({ path: o.dbPath, transcriptKey: o.transcriptKey, transcriptKeysOld: o.transcriptKeysOld, prices: o.prices, log: o.log, readOnly: o.readOnly }),
    };
  }
  const store = await PostgresCallStore.open({
    url: o.databaseUrl,
    schema: o.schema,
    transcriptKey: o.transcriptKey,
    transcriptKeysOld: o.transcriptKeysOld,
    prices: o.prices,
    log: o.log,
    instanceId: o.instanceId,
    readOnly: o.readOnly,
    maxQueued: o.maxQueued,
  });
  if (!o.readOnly) {
    try {
      await store.startLeases({ leaseMs: o.leaseMs });
    } catch (err) {
      await store.close();
      throw err;
    }
  }
  return { kind: 'postgres', store };
}
