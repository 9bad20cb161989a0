// drizzle over postgres.js for a postgres:// URL: distributed mode, and the edge (Hyperdrive) where it is
// created per request. No Node-only imports, so the Workers build may reach this file.
import { drizzle } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import * as schema from './schema.ts';
import type { DbHandle } from './types.ts';

export interface PostgresOptions {
  /** Pool size (default 10; on Workers use a handful per request). */
  max?: number;
  /** Named prepared statements (default true; Hyperdrive wants true, transaction-mode PgBouncer false). */
  prepare?: boolean;
  /**
   * Postgres statement_timeout of every connection, ms (KVRAG_DB_STATEMENT_TIMEOUT_MS): a runaway query
   * is cancelled instead of holding its connection (and its locks) forever. 0 or absent: the server's.
   */
  statementTimeoutMs?: number;
}

export function createPostgresDb(url: string, options: PostgresOptions = {}): DbHandle {
  const client = postgres(url, {
    max: options.max ?? 10,
    prepare: options.prepare ?? true,
    // NOTICEs (e.g. "extension already exists") are not errors; keep them off stdout.
    onnotice: () => {},
    // sent in the startup message, so it holds for every statement of every connection of the pool
    ...(options.statementTimeoutMs
      ? { connection: { statement_timeout: Math.floor(options.statementTimeoutMs) } }
      : {}),
  });
  const db = drizzle(client, { schema });
  return { kind: 'postgres', db, url, client, close: () => client.end({ timeout: 5 }) };
}
