/**
 * The real PostgreSQL server for tests (TEST_DATABASE_URL, default the local
 * trust-auth server): each test gets a schema of its own, dropped after, so
 * parallel runs never collide.
 */
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';

export const PG_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** A fresh schema name: unique per process and call. */
export function freshSchema(): string {
  return `cbt_${process.pid}_${randomBytes(4).toString('hex')}`;
}

/** An admin connection for checks the store does not offer (raw rows, dropping schemas). */
export function adminSql(url = PG_URL): postgres.Sql {
  return postgres(url, { max: 2, onnotice: () => {} });
}

export async function dropSchema(schema: string, url = PG_URL): Promise<void> {
  const sql = adminSql(url);
  try {
    await sql.unsafe(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await sql.end({ timeout: 2 });
  }
}

/**
 * Whether the PostgreSQL tests can run here. CI sets CALLBRIDGE_REQUIRE_POSTGRES=1:
 * then they always run (and fail loudly if the server is down). Elsewhere a
 * machine without PostgreSQL skips them, saying so once.
 */
export async function postgresAvailable(url = PG_URL): Promise<boolean> {
  if (process.env.CALLBRIDGE_REQUIRE_POSTGRES === '1') return true;
  const sql = postgres(url, { max: 1, connect_timeout: 2, onnotice: () => {} });
  try {
    await sql`select 1`;
    return true;
  } catch (err) {
    console.warn(`PostgreSQL tests skipped: no server at ${url.replace(/\/\/[^@]*@/, '//')} (${err instanceof Error ? err.message : String(err)}); set TEST_DATABASE_URL, or CALLBRIDGE_REQUIRE_POSTGRES=1 to make this a failure`);
    return false;
  } finally {
    await sql.end({ timeout: 1 }).catch(() => {});
  }
}
