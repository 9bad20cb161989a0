// `kvrag migrate`: applies the committed migrations to the configured database (KVRAG_DATABASE_URL, or
// embedded PGlite under KVRAG_DATA_DIR/pg) and prints what it applied. Safe to run repeatedly and, on
// Postgres, from several processes at once.
import { loadConfig } from '../../src/config.ts';
import { openDatabase } from '../../src/db/client.ts';
import { listMigrations, migrateDatabase } from '../../src/db/migrate.ts';
import { parseOptions } from '../args.ts';
import type { Command } from '../command.ts';

/** The URL without its password, for printing. */
function describe(url: string | undefined, dataDir: string): string {
  if (!url) return `embedded PGlite at ${dataDir.replace(/\/+$/, '')}/pg`;
  const u = new URL(url);
  if (u.password) u.password = '***';
  return u.toString();
}

export const command: Command = {
  summary: 'Apply pending database migrations (idempotent).',
  usage: 'kvrag migrate',
  async run(args) {
    parseOptions(args, {});
    const config = loadConfig(process.env);
    const target = describe(config.databaseUrl, config.dataDir);
    const db = await openDatabase(config);
    try {
      const applied = await migrateDatabase(db);
      if (applied.length === 0) {
        console.log(`${target}: up to date (${listMigrations().length} migrations)`);
      } else {
        console.log(`${target}: applied ${applied.length} migration(s)`);
        for (const tag of applied) console.log(`  ${tag}`);
      }
      return 0;
    } finally {
      await db.close();
    }
  },
};
