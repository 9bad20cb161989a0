// One factory for the database: a drizzle db over postgres.js (distributed/edge: a postgres:// URL) or
// over embedded PGlite with pgvector (embedded mode: a data dir on disk; tests: in memory). Both use the
// same schema, so code above this file sees one Database type and never knows which it got.
import { mkdirSync } from 'node:fs';
import { PGlite } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite-pgvector';
import type { SQL } from 'drizzle-orm';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import type { Config } from '../config.ts';
import * as schema from './schema.ts';

export type Schema = typeof schema;
/** The drizzle database every caller uses, whatever the driver underneath. */
export type Database = PgDatabase<PgQueryResultHKT, Schema>;

export type DbHandle =
  | { kind: 'postgres'; db: Database; url: string; client: postgres.Sql; close(): Promise<void> }
  | { kind: 'pglite'; db: Database; dataDir: string | null; client: PGlite; close(): Promise<void> };

export interface PostgresOptions {
  /** Pool size (default 10). Against the PGlite socket test server use 1 (see test/helpers/pglite-server.ts). */
  max?: number;
  /** Named prepared statements (default true; Hyperdrive wants true, transaction-mode PgBouncer false). */
  prepare?: boolean;
}

/** A drizzle db over postgres.js for a postgres:// URL. */
export function createPostgresDb(url: string, options: PostgresOptions = {}): DbHandle {
  const client = postgres(url, {
    max: options.max ?? 10,
    prepare: options.prepare ?? true,
    // NOTICEs (e.g. "extension already exists") are not errors; keep them off stdout.
    onnotice: () => {},
  });
  const db = drizzlePostgres(client, { schema });
  return { kind: 'postgres', db, url, client, close: () => client.end({ timeout: 5 }) };
}

/**
 * Embedded PGlite (real Postgres compiled to WASM) with the pgvector extension loaded.
 * `dataDir` null or undefined: in memory (tests). pgvector comes from @electric-sql/pglite-pgvector:
 * PGlite 0.5 no longer ships it as `@electric-sql/pglite/vector`.
 */
export async function createPgliteDb(dataDir?: string | null): Promise<DbHandle> {
  if (dataDir) mkdirSync(dataDir, { recursive: true });
  const client = await PGlite.create(dataDir ?? undefined, { extensions: { vector } });
  const db = drizzlePglite(client, { schema });
  return { kind: 'pglite', db, dataDir: dataDir ?? null, client, close: () => client.close() };
}

/** The database of a configuration: config.databaseUrl via postgres.js, else PGlite under `${dataDir}/pg`. */
export async function openDatabase(config: Config): Promise<DbHandle> {
  if (config.databaseUrl) return createPostgresDb(config.databaseUrl);
  return createPgliteDb(`${config.dataDir.replace(/\/+$/, '')}/pg`);
}

/**
 * Runs raw SQL and returns its rows. db.execute() returns an array under postgres.js and `{rows}` under
 * PGlite; this hides the difference.
 */
export async function queryRows<T extends Record<string, unknown>>(db: Database, query: SQL): Promise<T[]> {
  const result = (await db.execute(query)) as unknown;
  if (Array.isArray(result)) return result as T[];
  return (result as { rows: T[] }).rows;
}
