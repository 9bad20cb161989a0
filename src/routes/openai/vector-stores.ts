// /v1/vector_stores (OpenAI vector stores over kvrag collections, src/openai/vector-stores.ts): create
// (name, file_ids, metadata, chunking_strategy, expires_after; kvrag's `embedding` choice as an
// extension), list, retrieve (status, file_counts, usage_bytes), update, delete, and search (the hybrid
// search; `query` a string or several, compound filters, score threshold, rewrite_query). Any collection of the tenant
// is a vector store here.
import { eq } from 'drizzle-orm';
import { Hono } from 'hono';
import { z } from 'zod';
import { AppError } from '../../../contracts/errors.ts';
import { collections, vectorStores } from '../../db/schema.ts';
import { removeCollection } from '../../documents/remove.ts';
import { chunkingOptionsSchema } from '../../ingest/chunking.ts';
import { findFiles } from '../../openai/files.ts';
import { searchVectorStores } from '../../openai/search.ts';
import { fileCountsOf } from '../../openai/statuses.ts';
import { fileIdOfHit } from '../../openai/vector-store-files.ts';
import {
  assertUsable,
  createVectorStore,
  expiresAt,
  isExpired,
  touchVectorStores,
  updateVectorStore,
  type VectorStoreStats,
  type VectorStoreView,
  vectorStoreStats,
} from '../../openai/vector-stores.ts';
import { searchQuery } from '../../planning/iterative.ts';
import { parseAttributeFilter } from '../../retrieval/filters.ts';
import type { AppEnv } from '../../services.ts';
import { api, requireTenant } from '../auth.ts';
import { rewriteQueryField } from '../search.ts';
import { DEFAULT_EMBEDDING, embeddingChoiceSchema } from '../collections.ts';
import { paginate, toPage } from '../pagination.ts';
import { jsonBody, metadataSchema, queryParams, unixSeconds } from '../validate.ts';
import { chunkingOf, chunkingStrategySchema, nowOf, openAiListQuery, pathVectorStore } from './common.ts';
import { emptyCounts } from '../../documents/counts.ts';

const expiresAfterSchema = z.strictObject({
  anchor: z.literal('last_active_at'),
  days: z.number().int().min(1).max(365),
});

export const createVectorStoreSchema = z.strictObject({
  name: z.string().max(256).optional(),
  description: z.string().max(512).optional().describe('Accepted for compatibility; not kept.'),
  file_ids: z.array(z.string().max(64)).max(100).default([]),
  metadata: metadataSchema.nullish(),
  chunking_strategy: chunkingStrategySchema.optional(),
  expires_after: expiresAfterSchema.optional(),
  embedding: embeddingChoiceSchema
    .default(DEFAULT_EMBEDDING)
    .describe('kvrag extension: the embedding provider of the store, as for collections.'),
});

export const updateVectorStoreSchema = z.strictObject({
  name: z.string().max(256).nullish(),
  metadata: metadataSchema.nullish(),
  expires_after: expiresAfterSchema.nullish(),
});

const searchFields = {
  query: z.union([
    z.string().trim().min(1).max(4096),
    z.array(z.string().trim().min(1).max(4096)).min(1).max(8),
  ]),
  max_num_results: z.number().int().min(1).max(50).default(10),
  ranking_options: z
    .strictObject({
      ranker: z
        .enum(['none', 'auto', 'default-2024-11-15'])
        .optional()
        .describe('Every ranker is the hybrid RRF ranking; there is no reranker.'),
      score_threshold: z.number().min(0).max(1).default(0),
    })
    .default({ score_threshold: 0 }),
  rewrite_query: rewriteQueryField,
};
/** What the route parses: filters go through parseAttributeFilter, which bounds depth before recursing. */
export const vectorStoreSearchSchema = z.strictObject({ ...searchFields, filters: z.unknown().optional() });

export function vectorStoreObject(v: VectorStoreView, stats: VectorStoreStats | undefined, now: Date) {
  const s = stats ?? { fileCounts: fileCountsOf(emptyCounts()), usageBytes: 0 };
  const at = expiresAt(v);
  const days = v.store?.expiresAfterDays;
  return {
    id: v.collection.id,
    object: 'vector_store' as const,
    created_at: unixSeconds(v.collection.createdAt),
    name: v.store?.name ?? v.collection.name,
    usage_bytes: s.usageBytes,
    file_counts: s.fileCounts,
    status: isExpired(v, now) ? 'expired' : s.fileCounts.in_progress > 0 ? 'in_progress' : 'completed',
    last_active_at: v.store ? unixSeconds(v.store.lastActiveAt) : null,
    metadata: v.collection.metadata,
    ...(days != null ? { expires_after: { anchor: 'last_active_at' as const, days } } : {}),
    expires_at: at ? unixSeconds(at) : null,
  };
}

export function vectorStoreRoutes(): Hono<AppEnv> {
  const r = new Hono<AppEnv>();

  r.post('/', async (c) => {
    const tenantId = requireTenant(c);
    const body = await jsonBody(c, createVectorStoreSchema);
    const deps = { ...api(c), log: c.get('services').log };
    const now = nowOf(c);
    const found = await findFiles(deps.db, tenantId, body.file_ids);
    const chunking = chunkingOf(body.chunking_strategy);
    const view = await createVectorStore(
      deps,
      tenantId,
      {
        name: body.name,
        metadata: body.metadata ?? {},
        expiresAfterDays: body.expires_after?.days,
        embedding: body.embedding,
        chunking: chunkingOptionsSchema.parse({}),
      },
      found.map((file) => ({ file, attributes: {}, chunking })),
      now,
    );
    const stats = await vectorStoreStats(deps.db, tenantId, [view.collection.id]);
    return c.json(vectorStoreObject(view, stats.get(view.collection.id), now));
  });

  r.get('/', async (c) => {
    const tenantId = requireTenant(c);
    const q = queryParams(c, openAiListQuery);
    const { db } = api(c);
    const { rows, hasMore } = await paginate(
      db,
      collections,
      eq(collections.tenantId, tenantId),
      q,
      (where, order, limit) =>
        db
          .select({ collection: collections, store: vectorStores })
          .from(collections)
          .leftJoin(vectorStores, eq(vectorStores.collectionId, collections.id))
          .where(where)
          .orderBy(...order)
          .limit(limit),
    );
    const stats = await vectorStoreStats(
      db,
      tenantId,
      rows.map((v) => v.collection.id),
    );
    const now = nowOf(c);
    return c.json(
      toPage(
        rows.map((v) => ({ id: v.collection.id, v })),
        hasMore,
        ({ v }) => vectorStoreObject(v, stats.get(v.collection.id), now),
      ),
    );
  });

  r.get('/:vector_store', async (c) => {
    const tenantId = requireTenant(c);
    const v = await pathVectorStore(c, tenantId);
    const stats = await vectorStoreStats(api(c).db, tenantId, [v.collection.id]);
    return c.json(vectorStoreObject(v, stats.get(v.collection.id), nowOf(c)));
  });

  r.post('/:vector_store', async (c) => {
    const tenantId = requireTenant(c);
    const v = await pathVectorStore(c, tenantId);
    const body = await jsonBody(c, updateVectorStoreSchema);
    const { db } = api(c);
    const now = nowOf(c);
    const updated = await updateVectorStore(
      db,
      v,
      {
        name: body.name,
        metadata: body.metadata,
        expiresAfterDays: body.expires_after === undefined ? undefined : (body.expires_after?.days ?? null),
      },
      now,
    );
    const stats = await vectorStoreStats(db, tenantId, [v.collection.id]);
    return c.json(vectorStoreObject(updated, stats.get(v.collection.id), now));
  });

  r.delete('/:vector_store', async (c) => {
    const tenantId = requireTenant(c);
    const v = await pathVectorStore(c, tenantId);
    if (!(await removeCollection({ ...api(c), log: c.get('services').log }, tenantId, v.collection.id)))
      throw new AppError('not_found', `vector store ${JSON.stringify(v.collection.id)} not found`);
    return c.json({ id: v.collection.id, object: 'vector_store.deleted' as const, deleted: true });
  });

  r.post('/:vector_store/search', async (c) => {
    const tenantId = requireTenant(c);
    const v = await pathVectorStore(c, tenantId);
    const body = await jsonBody(c, vectorStoreSearchSchema);
    const filter = body.filters == null ? undefined : parseAttributeFilter(body.filters);
    const now = nowOf(c);
    assertUsable([v], now);
    const { db, embeddings } = api(c);
    const asked = typeof body.query === 'string' ? [body.query] : body.query;
    const queries = body.rewrite_query ? asked.map(searchQuery) : asked;
    const hits = await searchVectorStores(db, embeddings, tenantId, [v], {
      queries,
      filter,
      limit: body.max_num_results,
      scoreThreshold: body.ranking_options.score_threshold,
    });
    await touchVectorStores(db, tenantId, [v.collection.id], now);
    return c.json({
      object: 'vector_store.search_results.page' as const,
      search_query: queries,
      data: hits.map((h) => ({
        file_id: fileIdOfHit(h),
        filename: h.filename,
        score: h.score,
        attributes: h.attributes,
        content: [{ type: 'text' as const, text: h.text }],
      })),
      has_more: false,
      next_page: null,
    });
  });

  return r;
}
