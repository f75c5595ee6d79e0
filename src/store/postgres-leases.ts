/**
 * Instance leases of the PostgreSQL store (postgres.ts): one row per
 * instance (`instances`) holding a random token of its process. An
 * INSTANCE_ID whose lease another live process holds is refused at start;
 * only the token's holder renews or releases it. Any live instance marks
 * the in-progress calls of an instance whose lease has expired as
 * 'interrupted' (reapExpired). Lease times use the database's clock, so
 * instance clocks need not agree. Times in ms.
 */
import { randomBytes } from 'node:crypto';
import type postgres from 'postgres';
import type { Logger } from '../log.js';
import { PostgresStoreError } from './postgres-error.js';

/** What the leases need of their store. */
export interface LeaseDb {
  readonly instanceId: string;
  readonly log: Logger;
  /** One database operation on the store's current connections, bounded by its write timeout (past it: a retryable PostgresStoreError). */
  run<T>(what: string, work: (sql: postgres.Sql) => Promise<T>): Promise<T>;
  /** How a heartbeat went (no error: well), for the store's health. */
  beat(err?: unknown): void;
}

export class Leases {
  /** This process's lease token (random per process): only its holder renews or releases the lease. */
  private readonly token = randomBytes(12).toString('hex');
  private lost = false;
  private timer: NodeJS.Timeout | undefined;
  private leaseMs = 0;
  private beating = false;

  constructor(private readonly db: LeaseDb) {}

  /**
   * Take this instance's lease, then heartbeat it every leaseMs/6; each beat
   * also reaps the calls of instances whose lease expired. A lease is valid
   * for 2/3 leaseMs after a beat, so a dead instance's calls are marked
   * 'interrupted' at most leaseMs after its last beat, and a live one can
   * miss three beats before another instance considers it gone.
   *
   * The lease of this INSTANCE_ID may be held by another process's token:
   * released (a clean exit) or expired, it is taken at once; still valid, it
   * is watched until it expires (the holder died: a restart after kill -9
   * waits at most 2/3 of the holder's leaseMs) or is renewed — then another
   * live process uses this INSTANCE_ID, and this rejects with a
   * non-retryable PostgresStoreError, having touched nothing of its calls.
   */
  async start(leaseMs: number): Promise<void> {
    if (!Number.isFinite(leaseMs) || leaseMs < 300) throw new PostgresStoreError(`call store: leaseMs must be at least 300 (got ${leaseMs})`, false);
    this.leaseMs = leaseMs;
    await this.acquire();
    this.timer = setInterval(() => void this.beatAndReap(), Math.max(10, Math.round(this.leaseMs / 6)));
    this.timer.unref();
  }

  /** Stop heartbeating (the lease then expires and other instances reap this one's calls). */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Give the lease up now (a clean exit: other instances may reap at once). Never rejects. */
  async release(): Promise<void> {
    if (this.leaseMs === 0) return;
    await this.db
      .run('release lease', (sql) => sql.unsafe('UPDATE instances SET expires_at = now() WHERE instance_id = $1 AND token = $2', [this.db.instanceId, this.token]))
      .catch(() => {});
  }

  /** Mark 'interrupted' the in-progress calls of every other instance whose lease expired. Returns how many. */
  async reapExpired(): Promise<number> {
    const rows = await this.db.run('reap', (sql) =>
      sql.unsafe<{ call_sid: string; instance_id: string }[]>(
        `UPDATE calls c SET state = 'interrupted', end_reason = coalesce(c.end_reason, 'instance_lost'), updated_at = now()
         FROM instances i
         WHERE c.state = 'in_progress' AND c.instance_id = i.instance_id AND i.expires_at < now() AND i.instance_id <> $1
         RETURNING c.call_sid, c.instance_id`,
        [this.db.instanceId],
        { prepare: true },
      ),
    );
    // Leases long expired whose calls are all settled are history: forget them (instance ids change with every restart by default).
    await this.db.run('forget old leases', (sql) =>
      sql.unsafe(
        `DELETE FROM instances i WHERE i.expires_at < now() - interval '1 hour'
         AND NOT EXISTS (SELECT 1 FROM calls c WHERE c.instance_id = i.instance_id AND c.state = 'in_progress')`,
        [],
        { prepare: true },
      ),
    );
    if (rows.length > 0) {
      const byInstance: Record<string, number> = {};
      for (const r of rows) byInstance[r.instance_id] = (byInstance[r.instance_id] ?? 0) + 1;
      this.db.log.warn({ count: rows.length, instances: byInstance }, 'calls of instances whose lease expired marked interrupted');
    }
    return rows.length;
  }

  private async acquire(): Promise<void> {
    const validMs = Math.round((this.leaseMs * 2) / 3);
    const id = this.db.instanceId;
    let watched: { token: string | null; heartbeat: string } | undefined;
    for (;;) {
      // Take the lease if it is free (no row, released or expired): one statement, so two starting processes cannot both win.
      const taken = await this.db.run('take lease', (sql) =>
        sql.unsafe<{ instance_id: string }[]>(
          `INSERT INTO instances AS i (instance_id, started_at, heartbeat_at, expires_at, token)
           VALUES ($1, now(), now(), now() + $2 * interval '1 millisecond', $3)
           ON CONFLICT (instance_id) DO UPDATE SET started_at = now(), heartbeat_at = now(), expires_at = excluded.expires_at, token = excluded.token
           WHERE i.expires_at <= now()
           RETURNING instance_id`,
          [id, validMs, this.token],
          { prepare: true },
        ),
      );
      if (taken.length === 1) return;
      const [held] = await this.db.run('read lease', (sql) =>
        sql.unsafe<{ token: string | null; heartbeat: string; left_ms: number }[]>(
          `SELECT token, heartbeat_at::text AS heartbeat, greatest(0, extract(epoch FROM expires_at - now()) * 1000)::float8 AS left_ms
           FROM instances WHERE instance_id = $1`,
          [id],
          { prepare: true },
        ),
      );
      if (!held) continue; // forgotten meanwhile: try again
      if (watched && (held.token !== watched.token || held.heartbeat !== watched.heartbeat)) {
        throw new PostgresStoreError(
          `INSTANCE_ID ${id} is in use: another live process holds its lease (renewed while this one waited); give every instance its own INSTANCE_ID`,
          false,
        );
      }
      if (!watched) {
        this.db.log.warn({ instanceId: id, leftMs: Math.round(held.left_ms) }, 'the lease of this INSTANCE_ID is held: waiting for it to expire (a restart after a crash) or be renewed (another live process)');
      }
      watched = { token: held.token, heartbeat: held.heartbeat };
      // Look again before its holder's next beat could be missed: every leaseMs/6, and just after it expires.
      await sleep(Math.max(10, Math.min(Math.round(this.leaseMs / 6), Math.ceil(held.left_ms) + 10)));
    }
  }

  private async beatAndReap(): Promise<void> {
    if (this.beating) return; // the last beat is still waiting on the database
    this.beating = true;
    try {
      await this.heartbeat();
      await this.reapExpired();
      this.db.beat();
    } catch (err) {
      this.db.beat(err);
    } finally {
      this.beating = false;
    }
  }

  /** Renew this process's lease (its token's). Lost (another process took this INSTANCE_ID after it expired): a non-retryable error, logged by every failed beat. */
  private async heartbeat(): Promise<void> {
    if (this.lost) throw this.lostError();
    const validMs = Math.round((this.leaseMs * 2) / 3);
    const renewed = await this.db.run('heartbeat', (sql) =>
      sql.unsafe(
        `UPDATE instances SET heartbeat_at = now(), expires_at = now() + $2 * interval '1 millisecond' WHERE instance_id = $1 AND token = $3`,
        [this.db.instanceId, validMs, this.token],
        { prepare: true },
      ),
    );
    if (renewed.count === 0) {
      this.lost = true;
      throw this.lostError();
    }
  }

  private lostError(): PostgresStoreError {
    return new PostgresStoreError(`call store: the lease of INSTANCE_ID ${this.db.instanceId} was taken by another process after it expired here; two processes use this INSTANCE_ID`, false);
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
