// Migrations against a real Postgres (PGlite + pgvector) reached through postgres.js, like production:
// `kvrag migrate` applies them from empty (extension first), re-running is a no-op.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPostgresDb, type DbHandle, queryRows } from '../../src/db/client.ts';
import { listMigrations, migrateDatabase, pendingMigrations } from '../../src/db/migrate.ts';
import { type PgliteServer, startPgliteServer, TEST_POOL } from '../helpers/pglite-server.ts';

const execFileP = promisify(execFile);
const kvrag = (env: Record<string, string>) =>
  execFileP(process.execPath, ['bin/kvrag.js', 'migrate'], { env: { ...process.env, ...env } });

describe('migrations over postgres.js', () => {
  let server: PgliteServer;
  let handle: DbHandle;
  const count = async () =>
    (
      await queryRows<{ n: number }>(
        handle.db,
        sql`select count(*)::int as n from drizzle.__drizzle_migrations`,
      )
    )[0].n;

  beforeAll(async () => {
    server = await startPgliteServer({ migrate: false });
    handle = createPostgresDb(server.url, TEST_POOL);
  });
  afterAll(async () => {
    await handle?.close();
    await server?.stop();
  });

  it('`kvrag migrate` applies every migration to an empty database and prints each', async () => {
    const tables = sql`select table_name from information_schema.tables where table_schema = 'public' order by 1`;
    expect(await queryRows(handle.db, tables)).toEqual([]);

    const tags = listMigrations().map((m) => m.tag);
    expect(await pendingMigrations(handle.db)).toEqual(tags);

    const { stdout } = await kvrag({ KVRAG_DATABASE_URL: server.url });
    expect(tags[0]).toBe('0000_pgvector');
    expect(stdout).toContain(`applied ${tags.length} migration(s)`);
    for (const tag of tags) expect(stdout).toContain(tag);
    expect(stdout).not.toContain(':postgres@'); // the password is masked

    expect((await queryRows<{ table_name: string }>(handle.db, tables)).map((r) => r.table_name)).toEqual([
      'api_keys',
      'chunks',
      'collections',
      'document_jobs',
      'documents',
      'file_batches',
      'files',
      'kv_artifacts',
      'outbox',
      'query_log',
      'responses',
      'tenants',
      'vector_stores',
    ]);
    const ext = await queryRows(handle.db, sql`select extname from pg_extension where extname = 'vector'`);
    expect(ext).toEqual([{ extname: 'vector' }]);
    expect(await count()).toBe(tags.length);
  });

  it('re-running is a no-op, from the library and from the CLI', async () => {
    expect(await pendingMigrations(handle.db)).toEqual([]);
    expect(await migrateDatabase(handle)).toEqual([]);
    const { stdout } = await kvrag({ KVRAG_DATABASE_URL: server.url });
    expect(stdout).toContain(`up to date (${listMigrations().length} migrations)`);
    expect(await count()).toBe(listMigrations().length);
  });

  it('`kvrag migrate` refuses a non-postgres URL with a clear message and exit code 2', async () => {
    const err = await kvrag({ KVRAG_DATABASE_URL: 'mysql://localhost/db' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 2 });
    expect((err as { stderr: string }).stderr).toContain('KVRAG_DATABASE_URL');
  });
});
