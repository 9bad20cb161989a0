// Applies the committed drizzle-kit migrations (migrations/, journalled in migrations/meta/_journal.json)
// to either client. Applying is idempotent: drizzle records each applied migration in
// drizzle.__drizzle_migrations and skips those at or before the last one recorded.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { sql } from 'drizzle-orm';
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import { migrate as migratePostgres } from 'drizzle-orm/postgres-js/migrator';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import postgres from 'postgres';
import { type Database, type DbHandle, queryRows } from './types.ts';
import * as schema from './schema.ts';

export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations', import.meta.url));

/** Any constant works; it only has to be the same in every process that migrates this database. */
const MIGRATION_LOCK_KEY = 0x6b767261; // 'kvra'

interface JournalEntry {
  idx: number;
  when: number;
  tag: string;
}

/** The migrations in the journal, in order. */
export function listMigrations(dir = MIGRATIONS_DIR): JournalEntry[] {
  const journal = JSON.parse(readFileSync(`${dir}/meta/_journal.json`, 'utf8')) as {
    entries: JournalEntry[];
  };
  return journal.entries;
}

/** created_at (journal `when`) of the last applied migration, or null on a fresh database. */
async function lastApplied(db: Database): Promise<number | null> {
  const [exists] = await queryRows<{ t: string | null }>(
    db,
    sql`select to_regclass('drizzle.__drizzle_migrations')::text as t`,
  );
  if (!exists?.t) return null;
  const [row] = await queryRows<{ m: string | number | null }>(
    db,
    sql`select max(created_at) as m from drizzle.__drizzle_migrations`,
  );
  return row?.m == null ? null : Number(row.m);
}

/** Tags of the committed migrations not yet applied to `db` (for readiness checks). */
export async function pendingMigrations(db: Database, dir = MIGRATIONS_DIR): Promise<string[]> {
  const before = await lastApplied(db);
  return listMigrations(dir)
    .filter((m) => before === null || m.when > before)
    .map((m) => m.tag);
}

/**
 * Applies pending migrations and returns the tags it applied (empty when the database was current).
 * On Postgres it holds a session advisory lock on a dedicated connection so that concurrent `kvrag
 * migrate` runs (several pods starting at once) apply each migration exactly once.
 */
export async function migrateDatabase(handle: DbHandle, dir = MIGRATIONS_DIR): Promise<string[]> {
  const all = listMigrations(dir);
  if (handle.kind === 'pglite') {
    const before = await lastApplied(handle.db);
    await migratePglite(drizzlePglite(handle.client), { migrationsFolder: dir });
    return all.filter((m) => before === null || m.when > before).map((m) => m.tag);
  }
  // One connection: the advisory lock is per session, so lock, migrate and unlock must share it.
  const client = postgres(handle.url, { max: 1, onnotice: () => {} });
  try {
    const db = drizzlePostgres(client, { schema });
    await client`select pg_advisory_lock(${MIGRATION_LOCK_KEY})`;
    try {
      const before = await lastApplied(db);
      await migratePostgres(db, { migrationsFolder: dir });
      return all.filter((m) => before === null || m.when > before).map((m) => m.tag);
    } finally {
      await client`select pg_advisory_unlock(${MIGRATION_LOCK_KEY})`;
    }
  } finally {
    await client.end({ timeout: 5 });
  }
}
