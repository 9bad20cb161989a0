// Search over vector stores: each query (OpenAI takes a string or several) over each store with the
// store's own embedding provider (retrieval/collection-search.ts), merged by chunk keeping its best score,
// best first. What POST /v1/vector_stores/{id}/search runs; file_search in responses retrieves through the
// RAG use case (src/answer/prepare.ts), which runs the same hybrid search per store.
import type { Database } from '../db/types.ts';
import type { EmbeddingResolver } from '../embeddings/resolver.ts';
import { searchCollection } from '../retrieval/collection-search.ts';
import type { AttributeFilter } from '../retrieval/filters.ts';
import type { HybridHit, HybridQuery } from '../retrieval/hybrid.ts';
import type { VectorStoreView } from './vector-stores.ts';

export interface VectorStoreQuery {
  queries: readonly string[];
  filter?: AttributeFilter;
  limit: number;
  scoreThreshold?: number;
  weights?: HybridQuery['weights'];
}

export async function searchVectorStores(
  db: Database,
  embeddings: EmbeddingResolver,
  tenantId: string,
  views: readonly VectorStoreView[],
  q: VectorStoreQuery,
): Promise<HybridHit[]> {
  const best = new Map<string, HybridHit>();
  for (const v of views)
    for (const query of q.queries) {
      const hits = await searchCollection(db, embeddings, tenantId, v.collection, {
        query,
        filter: q.filter,
        limit: q.limit,
        scoreThreshold: q.scoreThreshold,
        weights: q.weights,
      });
      for (const h of hits) {
        const seen = best.get(h.chunkId);
        if (!seen || seen.score < h.score) best.set(h.chunkId, h);
      }
    }
  return [...best.values()].sort((a, b) => b.score - a.score).slice(0, q.limit);
}
