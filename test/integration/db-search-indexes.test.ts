// The retrieval indexes are usable by the queries the service will send: the per-dimension partial HNSW
// index for cosine search (through the helpers in src/db/vector.ts) and the GIN index on chunks.tsv for
// full-text search. enable_seqscan = off makes "the index can serve this query" the planner's only
// question; the negative case shows the same search without the index predicate cannot use it.
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPostgresDb, type Database, type DbHandle, queryRows } from '../../src/db/client.ts';
import { chunks } from '../../src/db/schema.ts';
import { cosineDistance, dimensionIs, embeddingAs } from '../../src/db/vector.ts';
import { insertChunks, rng, seedDocument, unitVector } from '../helpers/db-fixtures.ts';
import { type PgliteServer, startPgliteServer, TEST_POOL } from '../helpers/pglite-server.ts';

const WORDS = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel', 'india', 'juliet'];
const N = 300;

/** EXPLAIN of `query` with sequential scans disabled, inside a transaction so SET LOCAL stays local. */
async function explain(db: Database, query: ReturnType<typeof sql>): Promise<string> {
  return db.transaction(async (tx) => {
    await tx.execute(sql`set local enable_seqscan = off`);
    const rows = await queryRows<{ 'QUERY PLAN': string }>(tx as unknown as Database, sql`explain ${query}`);
    return rows.map((r) => r['QUERY PLAN']).join('\n');
  });
}

describe('search indexes', () => {
  let server: PgliteServer;
  let handle: DbHandle;
  let vectors: number[][];

  beforeAll(async () => {
    server = await startPgliteServer();
    handle = createPostgresDb(server.url, TEST_POOL);
    const next = rng(7);
    // 256-dim collection: the one searched; a 384-dim one shares the table and must stay out of the way.
    const s256 = await seedDocument(handle.db, 256, 'a');
    vectors = Array.from({ length: N }, () => unitVector(256, next));
    const texts = vectors.map(
      (_, i) => `chunk ${i} about ${WORDS[i % WORDS.length]} and ${WORDS[(i * 7) % 10]}`,
    );
    await insertChunks(handle.db, s256, texts, vectors);
    const s384 = await seedDocument(handle.db, 384, 'b');
    const v384 = Array.from({ length: 50 }, () => unitVector(384, next));
    await insertChunks(
      handle.db,
      s384,
      v384.map((_, i) => `other ${i} alpha`),
      v384,
    );
    await handle.db.execute(sql`analyze chunks`);
  });
  afterAll(async () => {
    await handle?.close();
    await server?.stop();
  });

  const vectorSearch = (q: number[]) =>
    sql`select ${chunks.ordinal} from ${chunks} where ${dimensionIs(256)}
        order by ${cosineDistance(256, q)} limit 5`;

  it('cosine search uses the 256-dim HNSW index and finds the nearest chunk', async () => {
    const q = vectors[42];
    const plan = await explain(handle.db, vectorSearch(q));
    expect(plan).toContain('Index Scan using chunks_embedding_hnsw_256 on chunks');
    const rows = await queryRows<{ ordinal: number }>(handle.db, vectorSearch(q));
    expect(rows[0].ordinal).toBe(42);
    expect(rows).toHaveLength(5);
  });

  it('the same search without the dimension predicate cannot use it', async () => {
    const q = sql`select ${chunks.ordinal} from ${chunks} order by ${cosineDistance(256, vectors[0])} limit 5`;
    expect(await explain(handle.db, q)).not.toContain('hnsw');
  });

  it('the predicate keeps other dimensions out of the results', async () => {
    const q = sql`select ${chunks.embeddingDim} as dim from ${chunks} where ${dimensionIs(256)}
                  order by ${embeddingAs(256)} <=> ${JSON.stringify(vectors[1])}::vector(256) limit 400`;
    const rows = await queryRows<{ dim: number }>(handle.db, q);
    expect(rows.length).toBeGreaterThan(0);
    expect(new Set(rows.map((r) => r.dim))).toEqual(new Set([256]));
  });

  it('full-text search uses the GIN index on tsv and matches stemmed words', async () => {
    const q = sql`select ${chunks.ordinal} from ${chunks}
                  where ${chunks.tsv} @@ websearch_to_tsquery('english', 'deltas')`;
    const plan = await explain(handle.db, q);
    expect(plan).toMatch(/Bitmap Index Scan on chunks_tsv_gin/);
    const rows = await queryRows<{ ordinal: number }>(handle.db, q);
    const expected = Array.from({ length: N }, (_, i) => i).filter(
      (i) => WORDS[i % 10] === 'delta' || WORDS[(i * 7) % 10] === 'delta',
    );
    expect(rows.map((r) => r.ordinal).sort((a, b) => a - b)).toEqual(expected);
  });

  it('embeddings round-trip through postgres.js as numbers', async () => {
    const [row] = await handle.db
      .select({ embedding: chunks.embedding, tsv: chunks.tsv })
      .from(chunks)
      .where(sql`${chunks.ordinal} = 3 and ${dimensionIs(256)}`);
    expect(row.embedding).toHaveLength(256);
    row.embedding.forEach((x, i) => {
      expect(x).toBeCloseTo(vectors[3][i], 6);
    });
    expect(row.tsv).toContain("'chunk'");
  });
});
