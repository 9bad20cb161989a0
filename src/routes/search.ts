// POST /v1/collections/:collection/search — hybrid search (src/retrieval/hybrid.ts) shaped like OpenAI's
// vector store search: {object: "vector_store.search_results.page", search_query, data: [{file_id,
// filename, score, attributes, content: [{type: "text", text}]}], has_more, next_page}. One page: at most
// max_num_results (1–50) results, so has_more is false and next_page null. rewrite_query searches the
// query's content words (src/planning/iterative.ts searchQuery), and search_query is what was searched.
import { Hono } from 'hono';
import { z } from 'zod';
import { searchQuery } from '../planning/iterative.ts';
import { searchCollection } from '../retrieval/collection-search.ts';
import { attributeFilterSchema, parseAttributeFilter } from '../retrieval/filters.ts';
import type { AppEnv } from '../services.ts';
import { api, requireTenant } from './auth.ts';
import { findCollection } from './collections.ts';
import { jsonBody } from './validate.ts';

/** `rewrite_query` of both search routes (this one and vector store search): planning/iterative.ts searchQuery. */
export const rewriteQueryField = z
  .boolean()
  .default(false)
  .describe(
    "Search with the query's content words only (question words and fillers dropped); search_query says what was searched.",
  );

const searchFields = {
  query: z.string().trim().min(1).max(4096),
  max_num_results: z.number().int().min(1).max(50).default(10),
  ranking_options: z
    .strictObject({
      ranker: z.enum(['auto', 'hybrid']).default('auto'),
      score_threshold: z
        .number()
        .min(0)
        .max(1)
        .default(0)
        .describe('Drop results below this normalised RRF score (1 = first in both rankings).'),
    })
    .default({ ranker: 'auto', score_threshold: 0 }),
  rewrite_query: rewriteQueryField,
};

/** The documented body (filters as their schema). */
export const searchBodySchema = z.strictObject({
  ...searchFields,
  filters: attributeFilterSchema.optional(),
});
/** What the route parses: filters go through parseAttributeFilter, which bounds depth before recursing. */
const searchBodyInput = z.strictObject({ ...searchFields, filters: z.unknown().optional() });

export function searchRoutes(): Hono<AppEnv> {
  const r = new Hono<AppEnv>();
  r.post('/:collection/search', async (c) => {
    const tenantId = requireTenant(c);
    const collection = await findCollection(c, tenantId);
    const body = await jsonBody(c, searchBodyInput);
    const filter =
      body.filters === undefined || body.filters === null ? undefined : parseAttributeFilter(body.filters);
    const { db, embeddings } = api(c);
    const query = body.rewrite_query ? searchQuery(body.query) : body.query;
    const hits = await searchCollection(db, embeddings, tenantId, collection, {
      query,
      filter,
      limit: body.max_num_results,
      scoreThreshold: body.ranking_options.score_threshold,
    });
    return c.json({
      object: 'vector_store.search_results.page' as const,
      search_query: query,
      data: hits.map((h) => ({
        file_id: h.documentId,
        filename: h.filename,
        score: h.score,
        attributes: h.attributes,
        content: [{ type: 'text' as const, text: h.text }],
        chunk_id: h.chunkId,
      })),
      has_more: false,
      next_page: null,
    });
  });
  return r;
}
