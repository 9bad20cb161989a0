// Schema invariants other components rely on, checked in a real Postgres through postgres.js: tenancy
// columns, idempotent uploads, lifecycle and vector checks, cascades, and the exact outbox contract.
import { and, eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPostgresDb, type DbHandle, queryRows } from '../../src/db/client.ts';
import { chunks, DOCUMENT_STATUSES, documents, kvArtifacts, outbox, tenants } from '../../src/db/schema.ts';
import { insertChunks, rng, type Seeded, seedDocument, sha256, unitVector } from '../helpers/db-fixtures.ts';
import { type PgliteServer, startPgliteServer, TEST_POOL } from '../helpers/pglite-server.ts';

/** Tables no tenant owns: the tenants themselves, shared content-addressed artifacts, the outbox. */
const NOT_TENANT_OWNED = ['tenants', 'kv_artifacts', 'outbox'];

/** The Postgres error code (SQLSTATE) of a failed statement; drizzle wraps driver errors in `cause`. */
async function sqlState(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    const e = err as { code?: string; cause?: { code?: string } };
    return e.cause?.code ?? e.code;
  }
}

describe('schema', () => {
  let server: PgliteServer;
  let handle: DbHandle;
  let seeded: Seeded;

  beforeAll(async () => {
    server = await startPgliteServer();
    handle = createPostgresDb(server.url, TEST_POOL);
    seeded = await seedDocument(handle.db, 256, 'schema');
  });
  afterAll(async () => {
    await handle?.close();
    await server?.stop();
  });

  it('every tenant-owned table has tenant_id uuid NOT NULL referencing tenants ON DELETE CASCADE', async () => {
    const tables = await queryRows<{ table_name: string }>(
      handle.db,
      sql`select table_name from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE'`,
    );
    const owned = tables.map((t) => t.table_name).filter((t) => !NOT_TENANT_OWNED.includes(t));
    expect(owned.sort()).toEqual([
      'api_keys',
      'chunks',
      'collections',
      'document_jobs',
      'documents',
      'file_batches',
      'files',
      'query_log',
      'responses',
      'vector_stores',
    ]);
    const cols = await queryRows<{ table_name: string; data_type: string; is_nullable: string }>(
      handle.db,
      sql`select table_name, data_type, is_nullable from information_schema.columns
          where table_schema = 'public' and column_name = 'tenant_id'`,
    );
    const fks = await queryRows<{ table_name: string; delete_rule: string }>(
      handle.db,
      sql`select kcu.table_name, rc.delete_rule
          from information_schema.referential_constraints rc
          join information_schema.key_column_usage kcu on kcu.constraint_name = rc.constraint_name
          join information_schema.constraint_column_usage ccu on ccu.constraint_name = rc.constraint_name
          where kcu.column_name = 'tenant_id' and ccu.table_name = 'tenants'`,
    );
    for (const t of owned) {
      expect(cols.find((c) => c.table_name === t)).toEqual({
        table_name: t,
        data_type: 'uuid',
        is_nullable: 'NO',
      });
      expect(fks.find((f) => f.table_name === t)?.delete_rule).toBe('CASCADE');
    }
  });

  it('identical content in one collection is one document; onConflictDoNothing makes re-upload idempotent', async () => {
    const row = {
      tenantId: seeded.tenantId,
      collectionId: seeded.collectionId,
      filename: 'a.txt',
      contentType: 'text/plain',
      bytes: 5,
      contentHash: sha256('hello'),
    };
    const [first] = await handle.db.insert(documents).values(row).returning({ id: documents.id });
    expect(await sqlState(handle.db.insert(documents).values({ ...row, filename: 'b.txt' }))).toBe('23505');
    const again = await handle.db.insert(documents).values(row).onConflictDoNothing().returning();
    expect(again).toEqual([]);
    const found = await handle.db
      .select({ id: documents.id, status: documents.status })
      .from(documents)
      .where(
        and(eq(documents.collectionId, seeded.collectionId), eq(documents.contentHash, row.contentHash)),
      );
    expect(found).toEqual([{ id: first.id, status: 'queued' }]);

    // The same bytes in another collection are another document.
    const other = await seedDocument(handle.db, 256, 'schema-other');
    await handle.db
      .insert(documents)
      .values({ ...row, tenantId: other.tenantId, collectionId: other.collectionId });
  });

  it('document status accepts the lifecycle and nothing else; updated_at moves', async () => {
    const stamp = async () =>
      (await handle.db.select().from(documents).where(eq(documents.id, seeded.documentId)))[0].updatedAt;
    let last = await stamp();
    for (const status of DOCUMENT_STATUSES) {
      await new Promise((r) => setTimeout(r, 5));
      await handle.db.update(documents).set({ status }).where(eq(documents.id, seeded.documentId));
      const now = await stamp();
      expect(now.getTime()).toBeGreaterThan(last.getTime()); // updated_at follows every update
      last = now;
    }
    const bad = handle.db
      .update(documents)
      .set({ status: 'done' as never })
      .where(eq(documents.id, seeded.documentId));
    expect(await sqlState(bad)).toBe('23514');
  });

  it('a chunk embedding must have the dimension its row claims', async () => {
    const v = unitVector(256, rng(1));
    const base = { ...seeded, ordinal: 1000, text: 'x', tokenCount: 1, contentHash: sha256('x') };
    expect(
      await sqlState(handle.db.insert(chunks).values({ ...base, embedding: v, embeddingDim: 384 })),
    ).toBe('23514');
  });

  it('deleting a document deletes its chunks; deleting a tenant deletes everything it owns', async () => {
    const s = await seedDocument(handle.db, 256, 'cascade');
    const next = rng(3);
    const vs = [unitVector(256, next), unitVector(256, next)];
    await insertChunks(handle.db, s, ['one', 'two'], vs);
    const countChunks = async () =>
      (await handle.db.select({ id: chunks.id }).from(chunks).where(eq(chunks.documentId, s.documentId)))
        .length;
    expect(await countChunks()).toBe(2);
    await handle.db.delete(documents).where(eq(documents.id, s.documentId));
    expect(await countChunks()).toBe(0);

    const t = await seedDocument(handle.db, 256, 'tenant-cascade');
    await insertChunks(handle.db, t, ['three'], [vs[0]]);
    await handle.db.delete(tenants).where(eq(tenants.id, t.tenantId));
    const left = await queryRows<{ n: number }>(
      handle.db,
      sql`select (select count(*) from collections where tenant_id = ${t.tenantId})
               + (select count(*) from documents where tenant_id = ${t.tenantId})
               + (select count(*) from chunks where tenant_id = ${t.tenantId}) as n`,
    );
    expect(Number(left[0].n)).toBe(0);
  });

  it('one kv artifact per (model fingerprint, chunk hash)', async () => {
    const a = {
      chunkHash: sha256('c'),
      modelFingerprint: 'fp1',
      objectKey: 'kv/fp1/ab/x.kv',
      formatVersion: 1,
    };
    await handle.db.insert(kvArtifacts).values(a);
    expect(await sqlState(handle.db.insert(kvArtifacts).values(a))).toBe('23505');
    await handle.db.insert(kvArtifacts).values({ ...a, modelFingerprint: 'fp2' });
  });

  it('outbox has exactly the agreed columns and a partial index on undelivered rows', async () => {
    const cols = await queryRows<{
      column_name: string;
      data_type: string;
      is_nullable: string;
      d: string | null;
    }>(
      handle.db,
      sql`select column_name, data_type, is_nullable, column_default as d from information_schema.columns
          where table_schema = 'public' and table_name = 'outbox' order by ordinal_position`,
    );
    expect(cols.map((c) => [c.column_name, c.data_type, c.is_nullable])).toEqual([
      ['id', 'bigint', 'NO'],
      ['queue', 'text', 'NO'],
      ['job_id', 'text', 'NO'],
      ['payload', 'jsonb', 'NO'],
      ['created_at', 'timestamp with time zone', 'NO'],
      ['delivered_at', 'timestamp with time zone', 'YES'],
      ['attempts', 'integer', 'NO'],
      ['last_error', 'text', 'YES'],
    ]);
    expect(cols[0].d).toMatch(/^nextval\(/);
    expect(cols.find((c) => c.column_name === 'attempts')?.d).toBe('0');
    const idx = await queryRows<{ indexdef: string }>(
      handle.db,
      sql`select indexdef from pg_indexes where tablename = 'outbox' and indexdef like '%WHERE%'`,
    );
    expect(idx.map((i) => i.indexdef)).toEqual([
      expect.stringMatching(/USING btree \(id\) WHERE \(delivered_at IS NULL\)$/),
    ]);
    await handle.db.insert(outbox).values({ queue: 'ingest', jobId: 'doc-1', payload: { v: 1 } });
    expect(
      await sqlState(handle.db.insert(outbox).values({ queue: 'ingest', jobId: 'doc-1', payload: { v: 1 } })),
    ).toBe('23505');
  });
});
