// Embedded mode's database: PGlite with pgvector in a data directory on disk survives close and reopen,
// openDatabase(config) puts it under `${dataDir}/pg`, and only one process may hold it at a time.
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eq } from 'drizzle-orm';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { openDatabase } from '../../src/db/client.ts';
import { listMigrations, migrateDatabase } from '../../src/db/migrate.ts';
import { chunks, tenants } from '../../src/db/schema.ts';
import { cosineDistance, dimensionIs } from '../../src/db/vector.ts';
import { insertChunks, rng, seedDocument, unitVector } from '../helpers/db-fixtures.ts';

describe('embedded PGlite on disk', () => {
  const home = mkdtempSync(join(tmpdir(), 'kvrag-db-'));
  afterAll(() => rmSync(home, { recursive: true, force: true }));

  it('opens under dataDir/pg, migrates, writes, closes, reopens and reads', async () => {
    const config = loadConfig({ KVRAG_DATA_DIR: home });
    const v = unitVector(384, rng(11));

    const first = await openDatabase(config);
    expect(first.kind).toBe('pglite');
    expect(await migrateDatabase(first)).toEqual(listMigrations().map((m) => m.tag));
    const seeded = await seedDocument(first.db, 384, 'disk');
    await insertChunks(first.db, seeded, ['persisted text'], [v]);
    await first.close();
    expect(statSync(join(home, 'pg', 'PG_VERSION')).isFile()).toBe(true);

    const second = await openDatabase(config);
    try {
      // One process at a time: a second opener is refused while the first holds the directory.
      await expect(openDatabase(config)).rejects.toThrow(/is in use by process \d+ \(this one\)/);
      expect(await migrateDatabase(second)).toEqual([]);
      const [tenant] = await second.db.select().from(tenants).where(eq(tenants.id, seeded.tenantId));
      expect(tenant.name).toBe('disk');
      const [hit] = await second.db
        .select({ text: chunks.text, embedding: chunks.embedding })
        .from(chunks)
        .where(dimensionIs(384))
        .orderBy(cosineDistance(384, v))
        .limit(1);
      expect(hit.text).toBe('persisted text');
      hit.embedding.forEach((x, i) => {
        expect(x).toBeCloseTo(v[i], 6);
      });
    } finally {
      await second.close();
    }
    // Closing released the lock; a lock left by a dead process is taken over.
    writeFileSync(join(home, 'pg.lock'), '999999999');
    const third = await openDatabase(config);
    expect(readFileSync(join(home, 'pg.lock'), 'utf8')).toBe(String(process.pid));
    await third.close();
    expect(existsSync(join(home, 'pg.lock'))).toBe(false);
  });
});
