// The hybrid search SQL can use the retrieval indexes, filtered or not: the per-dimension partial HNSW
// index for the vector list and the GIN index on chunks.tsv for the full-text list (enable_seqscan = off
// makes "can an index serve this query" the planner's only question). And hybridSearch itself: fusion
// of the two lists, tenant scoping, normalised scores.
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPostgresDb, type Database, type DbHandle, queryRows } from '../../src/db/client.ts';
import {
  type HybridQuery,
  hybridSearch,
  textCandidatesSql,
  vectorCandidatesSql,
} from '../../src/retrieval/hybrid.ts';
import { insertChunks, rng, type Seeded, seedDocument, unitVector } from '../helpers/db-fixtures.ts';
import { type PgliteServer, startPgliteServer, TEST_POOL } from '../helpers/pglite-server.ts';

const WORDS = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel', 'india', 'juliet'];
const N = 300;

/**
 * EXPLAIN of `query` where only the retrieval indexes could serve it: sequential scans off, and the btree
 * indexes on tenant, collection and document dropped inside the transaction (DDL is transactional; rolled back).
 * On a small table the planner rightly prefers the collection btree + sort; at scale it is the HNSW/GIN
 * scan, which is what this checks the SQL allows.
 */
async function explain(db: Database, query: ReturnType<typeof sql>): Promise<string> {
  let plan = '';
  await db
    .transaction(async (tx) => {
      await tx.execute(sql`set local enable_seqscan = off`);
      await tx.execute(sql`drop index chunks_collection_idx, chunks_tenant_idx, chunks_document_ordinal_uq`);
      const rows = await queryRows<{ 'QUERY PLAN': string }>(tx, sql`explain ${query}`);
      plan = rows.map((r) => r['QUERY PLAN']).join('\n');
      tx.rollback();
    })
    .catch((err: unknown) => {
      if (!plan) throw err;
    });
  return plan;
}

let server: PgliteServer;
let handle: DbHandle;
let seeded: Seeded;
let other: Seeded;
let vectors: number[][];

beforeAll(async () => {
  server = await startPgliteServer();
  handle = createPostgresDb(server.url, TEST_POOL);
  const next = rng(11);
  seeded = await seedDocument(handle.db, 256, 'hy');
  vectors = Array.from({ length: N }, () => unitVector(256, next));
  await insertChunks(
    handle.db,
    seeded,
    vectors.map(
      (_, i) => `chunk ${i} about ${WORDS[i % 10]} and ${WORDS[(i * 7) % 10]}${i === 123 ? ' zanzibar' : ''}`,
    ),
    vectors,
  );
  // another tenant with the same vectors and words: must never show up
  other = await seedDocument(handle.db, 256, 'other');
  await insertChunks(
    handle.db,
    other,
    vectors.slice(0, 50).map((_, i) => `other ${i} zanzibar alpha`),
    vectors.slice(0, 50),
  );
  await handle.db.execute(sql`analyze chunks`);
});
afterAll(async () => {
  await handle?.close();
  await server?.stop();
});

const query = (over: Partial<HybridQuery> = {}): HybridQuery => ({
  tenantId: seeded.tenantId,
  collectionId: seeded.collectionId,
  dimension: 256,
  vector: vectors[42],
  text: 'alpha',
  limit: 10,
  ...over,
});

describe('hybrid search SQL', () => {
  it('the vector list uses the HNSW index, with and without a filter', async () => {
    expect(await explain(handle.db, vectorCandidatesSql(query(), 40))).toContain('chunks_embedding_hnsw_256');
    const filtered = query({ filter: { type: 'eq', key: 'lang', value: 'en' } });
    expect(await explain(handle.db, vectorCandidatesSql(filtered, 40))).toContain(
      'chunks_embedding_hnsw_256',
    );
  });

  it('the full-text list uses the GIN index on tsv', async () => {
    expect(await explain(handle.db, textCandidatesSql(query(), 40))).toContain('chunks_tsv_gin');
  });
});

describe('hybridSearch', () => {
  it('fuses both lists: the exact vector and the only text match lead, scores normalised', async () => {
    const hits = await hybridSearch(handle.db, query({ vector: vectors[123], text: 'zanzibar' }));
    expect(hits[0].ordinal).toBe(123);
    expect(hits[0].vectorRank).toBe(1);
    expect(hits[0].textRank).toBe(1);
    expect(hits[0].score).toBeCloseTo(1, 12);
    expect(hits[0].similarity).toBeCloseTo(1, 5);
    expect(hits.slice(1).every((h) => h.score <= 0.5 && h.textRank === null)).toBe(true);
    expect(hits.every((h) => h.documentId === seeded.documentId)).toBe(true);
  });

  it('a text-only match still ranks when the vector points elsewhere', async () => {
    const hits = await hybridSearch(handle.db, query({ vector: vectors[0], text: 'zanzibar', limit: 50 }));
    const z = hits.find((h) => h.ordinal === 123);
    expect(z?.textRank).toBe(1);
    expect(hits[0].ordinal).toBe(0); // vector rank 1
  });

  it('weights and threshold shape the result', async () => {
    const textHeavy = await hybridSearch(
      handle.db,
      query({ vector: vectors[0], text: 'zanzibar', weights: { vector: 1, text: 5 } }),
    );
    expect(textHeavy[0].ordinal).toBe(123);
    const strict = await hybridSearch(
      handle.db,
      query({ vector: vectors[123], text: 'zanzibar', scoreThreshold: 0.6 }),
    );
    expect(strict.map((h) => h.ordinal)).toEqual([123]);
  });
});
