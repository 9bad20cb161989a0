// The database as the rest of kvrag sees it: one drizzle type over either driver. Type-only imports of
// the drivers, so this file is safe for every runtime (Workers included).
import type { PGlite } from '@electric-sql/pglite';
import type { SQL } from 'drizzle-orm';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import type postgres from 'postgres';
import type * as schema from './schema.ts';

export type Schema = typeof schema;
/** The drizzle database every caller uses, whatever the driver underneath. */
export type Database = PgDatabase<PgQueryResultHKT, Schema>;

export type DbHandle =
  | { kind: 'postgres'; db: Database; url: string; client: postgres.Sql; close(): Promise<void> }
  | { kind: 'pglite'; db: Database; dataDir: string | null; client: PGlite; close(): Promise<void> };

/**
 * Runs raw SQL and returns its rows. db.execute() returns an array under postgres.js and `{rows}` under
 * PGlite; this hides the difference.
 */
export async function queryRows<T extends Record<string, unknown>>(db: Database, query: SQL): Promise<T[]> {
  const result = (await db.execute(query)) as unknown;
  if (Array.isArray(result)) return result as T[];
  return (result as { rows: T[] }).rows;
}
