// Hybrid retrieval over one collection: pgvector cosine (through the per-dimension HNSW index, see
// src/db/vector.ts) and Postgres full-text (chunks.tsv, GIN, websearch_to_tsquery), each taking its best
// `candidates`, fused by reciprocal rank fusion. Both lists are scoped by tenant and collection and
// filtered by attributes — a chunk's attributes merged over its document's (chunk keys win) — inside the
// SQL, with pgvector's iterative index scan so selective filters still fill the list.
//
// Score: the weighted RRF score divided by its maximum (rank 1 in every list), so it lies in (0, 1]:
// 1 = first in both rankings; ≈ 0.5 = first in one list only (equal weights). Thresholds apply to it.
// Used by POST /v1/collections/:id/search and by the query route.
import { and, eq, inArray, type SQL, sql } from 'drizzle-orm';
import { chunks, documents, type SupportedDimension } from '../db/schema.ts';
import { type Database, queryRows } from '../db/types.ts';
import { cosineDistance, dimensionIs } from '../db/vector.ts';
import type { AttributeFilter } from './filters.ts';
import { filterSql } from './filters-drizzle.ts';
import { reciprocalRankFusion } from './rrf.ts';

export interface HybridQuery {
  tenantId: string;
  collectionId: string;
  dimension: SupportedDimension;
  /** The query embedded with the collection's provider (kind 'query'). */
  vector: readonly number[];
  /** The query text for full-text search (websearch syntax: "phrases", -exclusions, or). */
  text: string;
  filter?: AttributeFilter;
  /** Results wanted after fusion. */
  limit: number;
  /** Drop results whose normalised score is below this (0–1). */
  scoreThreshold?: number;
  /** Per-list candidates before fusion (default max(4·limit, 40), at most 1000). */
  candidates?: number;
  /**
   * hnsw.ef_search for the vector list (default max(40, candidates)). Higher buys recall with time: on
   * low-contrast hash embeddings (bench/search.ts, 3000 chunks) top-10 recall was 0.69 at 40, 0.79 at
   * 64 and 1.0 at 100, at ~5× the latency of 40.
   */
  efSearch?: number;
  /** RRF rank constant (default 60). */
  rrfK?: number;
  /** List weights (default 1 : 1). */
  weights?: { vector: number; text: number };
}

export interface HybridHit {
  chunkId: string;
  documentId: string;
  /** The OpenAI File the document was attached from (its vector store file id); null for uploads. */
  fileId: string | null;
  filename: string;
  ordinal: number;
  text: string;
  tokenCount: number;
  /** sha256 of the chunk text (kv_artifacts.chunk_hash). */
  contentHash: string;
  /** Document attributes with the chunk's over them. */
  attributes: Record<string, unknown>;
  /** Normalised RRF score in (0, 1]. */
  score: number;
  /** 1-based rank in the vector and full-text lists; null where absent. */
  vectorRank: number | null;
  textRank: number | null;
  /** Cosine similarity to the query vector, where the chunk was in the vector list. */
  similarity: number | null;
}

/** Chunks of the collection, with the merged attributes exposed as `merged.attributes` for filters. */
function scopedFrom(q: HybridQuery): { from: SQL; where: SQL } {
  const base = and(eq(chunks.tenantId, q.tenantId), eq(chunks.collectionId, q.collectionId))!;
  if (!q.filter) return { from: sql`${chunks}`, where: base };
  return {
    from: sql`${chunks} JOIN ${documents} ON ${documents.id} = ${chunks.documentId}
      CROSS JOIN LATERAL (SELECT ${documents.attributes} || ${chunks.attributes} AS attributes) AS merged`,
    where: and(base, filterSql(q.filter, { column: 'merged.attributes' }))!,
  };
}

/** The vector list: `id`, `distance` of the nearest `n` chunks (cosine), through the HNSW index. */
export function vectorCandidatesSql(q: HybridQuery, n: number): SQL {
  const { from, where } = scopedFrom(q);
  const distance = cosineDistance(q.dimension, q.vector);
  return sql`SELECT ${chunks.id} AS id, ${distance} AS distance FROM ${from}
    WHERE ${where} AND ${dimensionIs(q.dimension)}
    ORDER BY ${distance} LIMIT ${n}`;
}

/** The full-text list: `id` of the best `n` chunks by ts_rank_cd, through the GIN index on tsv. */
export function textCandidatesSql(q: HybridQuery, n: number): SQL {
  const { from, where } = scopedFrom(q);
  return sql`SELECT ${chunks.id} AS id FROM ${from}, websearch_to_tsquery('english', ${q.text}) AS tsq(q)
    WHERE ${where} AND ${chunks.tsv} @@ tsq.q
    ORDER BY ts_rank_cd(${chunks.tsv}, tsq.q) DESC, ${chunks.id} LIMIT ${n}`;
}

export async function hybridSearch(db: Database, q: HybridQuery): Promise<HybridHit[]> {
  const candidates = Math.min(1000, q.candidates ?? Math.max(4 * q.limit, 40));
  const [vectorRows, textRows] = await db.transaction(async (tx) => {
    // per transaction: candidate list depth, and keep scanning the index past filtered-out rows
    const ef = Math.round(Math.min(1000, Math.max(1, q.efSearch ?? Math.max(40, candidates))));
    await tx.execute(sql.raw(`SET LOCAL hnsw.ef_search = ${ef}`));
    await tx.execute(sql.raw(`SET LOCAL hnsw.iterative_scan = relaxed_order`));
    const v = await queryRows<{ id: string; distance: number }>(tx, vectorCandidatesSql(q, candidates));
    const t = await queryRows<{ id: string }>(tx, textCandidatesSql(q, candidates));
    return [v, t];
  });
  // relaxed_order may return the vector list slightly out of order
  vectorRows.sort((a, b) => Number(a.distance) - Number(b.distance) || (a.id < b.id ? -1 : 1));

  const w = q.weights ?? { vector: 1, text: 1 };
  const k = q.rrfK ?? 60;
  const best = (w.vector + w.text) / (k + 1);
  const fused = reciprocalRankFusion([vectorRows.map((r) => r.id), textRows.map((r) => r.id)], {
    k,
    weights: [w.vector, w.text],
  })
    .map((f) => ({ ...f, score: best > 0 ? f.score / best : 0 }))
    .filter((f) => f.score >= (q.scoreThreshold ?? 0))
    .slice(0, q.limit);
  if (fused.length === 0) return [];

  const ids = fused.map((f) => String(f.key));
  const rows = await db
    .select({
      id: chunks.id,
      documentId: chunks.documentId,
      ordinal: chunks.ordinal,
      text: chunks.text,
      tokenCount: chunks.tokenCount,
      contentHash: chunks.contentHash,
      chunkAttributes: chunks.attributes,
      documentAttributes: documents.attributes,
      filename: documents.filename,
      fileId: documents.fileId,
    })
    .from(chunks)
    .innerJoin(documents, eq(documents.id, chunks.documentId))
    .where(and(eq(chunks.tenantId, q.tenantId), inArray(chunks.id, ids)));
  const byId = new Map(rows.map((r) => [r.id, r]));
  const distances = new Map(vectorRows.map((r) => [r.id, Number(r.distance)]));
  const hits: HybridHit[] = [];
  for (const f of fused) {
    const r = byId.get(String(f.key));
    if (!r) continue; // deleted between the two reads
    const d = distances.get(r.id);
    hits.push({
      chunkId: r.id,
      documentId: r.documentId,
      fileId: r.fileId,
      filename: r.filename,
      ordinal: r.ordinal,
      text: r.text,
      tokenCount: r.tokenCount,
      contentHash: r.contentHash,
      attributes: { ...r.documentAttributes, ...r.chunkAttributes },
      score: f.score,
      vectorRank: f.ranks[0],
      textRank: f.ranks[1],
      similarity: d === undefined ? null : 1 - d,
    });
  }
  return hits;
}
