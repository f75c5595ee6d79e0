/** The PostgreSQL store's typed error (postgres.ts, postgres-leases.ts): `retryable` says whether trying again later can help. */
export class PostgresStoreError extends Error {
  constructor(message: string, readonly retryable: boolean) {
    super(message);
    this.name = 'PostgresStoreError';
  }
}

export const errText = (err: unknown): string => (err instanceof Error ? err.message : String(err));
