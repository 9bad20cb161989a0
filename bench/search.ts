// `kvrag bench search [--chunks 2000] [--queries 100] [--dim 384] [--ef 40,100,200] [--json]`: hybrid search on embedded
// PGlite (real Postgres + pgvector in-process, the embedded mode's database) over a synthetic corpus
// embedded with the hash provider. Reports per-query latency of the vector list (HNSW), the full-text
// list (GIN) and the whole hybridSearch (both lists, RRF, row fetch; embedding excluded), unfiltered and
// with an attribute filter keeping ~1/4 of the chunks, and the recall@10 of the HNSW list against an
// exact scan (index scans off) — the price of the approximate index — swept over hnsw.ef_search.
import { sql } from 'drizzle-orm';
import { numberOption, parseOptions } from '../cli/args.ts';
import { createPgliteDb } from '../src/db/pglite.ts';
import { migrateDatabase } from '../src/db/migrate.ts';
import { chunks, collections, documents, type SupportedDimension, tenants } from '../src/db/schema.ts';
import { type Database, queryRows } from '../src/db/types.ts';
import { assertSupportedDimension } from '../src/db/vector.ts';
import { createEmbeddingProvider } from '../src/embeddings/factory.ts';
import type { AttributeFilter } from '../src/retrieval/filters.ts';
import {
  type HybridQuery,
  hybridSearch,
  textCandidatesSql,
  vectorCandidatesSql,
} from '../src/retrieval/hybrid.ts';
import { emit, formatTable, percentile, rng } from './_report.ts';

/** Pseudo-words: consonant-vowel syllables, a vocabulary with a Zipf-like draw. */
function corpus(n: number, next: () => number): string[] {
  const syl = [
    'ka',
    'to',
    'mi',
    're',
    'su',
    'la',
    'po',
    'ne',
    'vi',
    'do',
    'ga',
    'zu',
    'fe',
    'ri',
    'mo',
    'ta',
  ];
  const vocab = Array.from({ length: 3000 }, (_, i) => {
    let w = '';
    for (let x = i + 7; w.length < 6 || x > 0; x = Math.floor(x / 16)) w += syl[x % 16];
    return w;
  });
  const word = () => vocab[Math.floor(vocab.length * next() ** 2.5)];
  return Array.from({ length: n }, () => Array.from({ length: 60 }, word).join(' '));
}

async function timed<T>(f: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const r = await f();
  return [r, performance.now() - t0];
}

const stats = (ms: number[]) => {
  const s = [...ms].sort((a, b) => a - b);
  return { p50: percentile(s, 50), p95: percentile(s, 95), mean: s.reduce((a, b) => a + b, 0) / s.length };
};

export async function run(args: string[]): Promise<number> {
  const { values } = parseOptions(args, {
    chunks: { type: 'string' },
    queries: { type: 'string' },
    dim: { type: 'string' },
    ef: { type: 'string', default: '40,100,200' },
    json: { type: 'boolean', default: false },
  });
  const n = numberOption('chunks', values.chunks, 2000);
  const nq = numberOption('queries', values.queries, 100);
  const dim = assertSupportedDimension(numberOption('dim', values.dim, 384)) as SupportedDimension;
  const efs = values.ef.split(',').map((v) => numberOption('ef', v, 40));
  const next = rng(5);
  const texts = corpus(n, next);
  const embedder = createEmbeddingProvider({ provider: 'hash', dimension: dim });

  const handle = await createPgliteDb(null);
  try {
    await migrateDatabase(handle);
    const db: Database = handle.db;
    const [t] = await db.insert(tenants).values({ name: 'bench' }).returning();
    const [c] = await db
      .insert(collections)
      .values({
        tenantId: t.id,
        name: 'bench',
        embeddingProvider: 'hash',
        embeddingModel: embedder.model,
        embeddingDim: dim,
      })
      .returning();
    const docs = await db
      .insert(documents)
      .values(
        ['a', 'b', 'c', 'd'].map((g, i) => ({
          tenantId: t.id,
          collectionId: c.id,
          filename: `${g}.txt`,
          contentType: 'text/plain',
          bytes: 1,
          contentHash: String(i).repeat(64),
          attributes: { group: g },
        })),
      )
      .returning();
    const [, insertMs] = await timed(async () => {
      for (let i = 0; i < n; i += 200) {
        const batch = texts.slice(i, i + 200);
        const vecs = await embedder.embed(batch, 'document');
        await db.insert(chunks).values(
          batch.map((text, j) => ({
            tenantId: t.id,
            collectionId: c.id,
            documentId: docs[(i + j) % 4].id,
            ordinal: i + j,
            text,
            tokenCount: 60,
            contentHash: String(i + j).padStart(64, '0'),
            embedding: Array.from(vecs[j]),
            embeddingDim: dim,
          })),
        );
      }
    });
    await db.execute(sql`analyze chunks`);

    // queries: three words of a random chunk
    const queries = Array.from({ length: nq }, () => {
      const words = texts[Math.floor(next() * n)].split(' ');
      const s = Math.floor(next() * (words.length - 3));
      return words.slice(s, s + 3).join(' ');
    });
    const qvecs = await embedder.embed(queries, 'query');
    const filter: AttributeFilter = { type: 'eq', key: 'group', value: 'b' };
    const base = (i: number, f?: AttributeFilter): HybridQuery => ({
      tenantId: t.id,
      collectionId: c.id,
      dimension: dim,
      vector: Array.from(qvecs[i]),
      text: queries[i],
      filter: f,
      limit: 10,
    });
    const inTx = (q: ReturnType<typeof sql>, exact: boolean, ef = 40) =>
      db.transaction(async (tx) => {
        await tx.execute(sql.raw(`SET LOCAL hnsw.ef_search = ${ef}`));
        await tx.execute(sql.raw('SET LOCAL hnsw.iterative_scan = relaxed_order'));
        if (exact) await tx.execute(sql.raw('SET LOCAL enable_indexscan = off'));
        return queryRows<{ id: string }>(tx, q);
      });

    // which plan the vector list gets at this size (small tables: collection btree + sort, exact)
    const usesHnsw: Record<string, boolean> = {};
    for (const [name, f] of [
      ['unfiltered', undefined],
      ['filter 1/4', filter],
    ] as const) {
      const plan = await inTx(sql`EXPLAIN ${vectorCandidatesSql(base(0, f), 10)}`, false);
      usesHnsw[name] = JSON.stringify(plan).includes(`chunks_embedding_hnsw_${dim}`);
    }
    const rows: { case: string; p50: number; p95: number; mean: number }[] = [];
    const recall: Record<string, number> = {};
    for (const [name, f] of [
      ['unfiltered', undefined],
      ['filter 1/4', filter],
    ] as const) {
      const vec: number[] = [];
      const txt: number[] = [];
      const hyb: number[] = [];
      let hits = 0;
      for (let i = 0; i < nq; i++) {
        const q = base(i, f);
        const [approx, vms] = await timed(() => inTx(vectorCandidatesSql(q, 10), false));
        vec.push(vms);
        const exact = await inTx(vectorCandidatesSql(q, 10), true);
        const truth = new Set(exact.map((r) => r.id));
        hits += approx.filter((r) => truth.has(r.id)).length / Math.max(1, truth.size);
        txt.push((await timed(() => inTx(textCandidatesSql(q, 40), false)))[1]);
        hyb.push((await timed(() => hybridSearch(db, q)))[1]);
      }
      recall[name] = hits / nq;
      rows.push({ case: `vector top-10, ${name}`, ...stats(vec) });
      rows.push({ case: `full-text top-40, ${name}`, ...stats(txt) });
      rows.push({ case: `hybridSearch k=10, ${name}`, ...stats(hyb) });
    }
    // recall and latency of the vector top-10 against ef_search (hybridSearch uses max(40, candidates))
    const sweep: { efSearch: number; recall: number; p50: number }[] = [];
    for (const ef of efs) {
      let hits = 0;
      const ms: number[] = [];
      for (let i = 0; i < nq; i++) {
        const q = base(i);
        const [approx, t] = await timed(() => inTx(vectorCandidatesSql(q, 10), false, ef));
        ms.push(t);
        const truth = new Set((await inTx(vectorCandidatesSql(q, 10), true)).map((r) => r.id));
        hits += approx.filter((r) => truth.has(r.id)).length / Math.max(1, truth.size);
      }
      sweep.push({ efSearch: ef, recall: hits / nq, p50: stats(ms).p50 });
    }
    const result = {
      benchmark: 'search',
      chunks: n,
      queries: nq,
      dim,
      insertMs,
      usesHnsw,
      recallAt10: recall,
      rows,
    };
    emit(values.json, result, () =>
      [
        `Hybrid search on embedded PGlite: ${n} chunks × 60 words, dim ${dim} (hash embeddings), ${nq} queries of 3 words`,
        `insert + index: ${(insertMs / 1000).toFixed(1)} s; vector plan uses HNSW: unfiltered ${usesHnsw.unfiltered}, filter 1/4 ${usesHnsw['filter 1/4']}`,
        `vector top-10 recall vs exact scan: unfiltered ${recall.unfiltered.toFixed(3)}, filter 1/4 ${recall['filter 1/4'].toFixed(3)}`,
        '',
        formatTable(
          ['case', 'p50 ms', 'p95 ms', 'mean ms'],
          rows.map((r) => [r.case, r.p50, r.p95, r.mean]),
        ),
        '',
        formatTable(
          ['ef_search', 'vector top-10 recall', 'p50 ms'],
          sweep.map((r) => [String(r.efSearch), r.recall, r.p50]),
        ),
      ].join('\n'),
    );
    return 0;
  } finally {
    await handle.close();
  }
}
