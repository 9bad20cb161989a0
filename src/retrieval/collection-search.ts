// One search over one collection: the query embedded with the collection's own provider (kind 'query'),
// then the hybrid search (hybrid.ts). What the search routes, the RAG use case's retrieval steps and the
// OpenAI vector store search share.
import { AppError } from '../../contracts/errors.ts';
import type { Collection } from '../db/schema.ts';
import type { Database } from '../db/types.ts';
import { assertSupportedDimension } from '../db/vector.ts';
import type { EmbeddingResolver } from '../embeddings/resolver.ts';
import type { EmbeddingProviderId } from '../embeddings/types.ts';
import type { AttributeFilter } from './filters.ts';
import { type HybridHit, type HybridQuery, hybridSearch } from './hybrid.ts';

export interface CollectionQuery {
  /** Embedded for the vector list and, as it is, the full-text query. */
  query: string;
  filter?: AttributeFilter;
  limit: number;
  scoreThreshold?: number;
  weights?: HybridQuery['weights'];
}

/** The collection's provider, as its row names it. */
export function collectionEmbedder(embeddings: EmbeddingResolver, collection: Collection) {
  return embeddings({
    provider: collection.embeddingProvider as EmbeddingProviderId,
    model: collection.embeddingModel,
    dimension: assertSupportedDimension(collection.embeddingDim),
  });
}

export async function searchCollection(
  db: Database,
  embeddings: EmbeddingResolver,
  tenantId: string,
  collection: Collection,
  q: CollectionQuery,
): Promise<HybridHit[]> {
  const dimension = assertSupportedDimension(collection.embeddingDim);
  const [vector] = await collectionEmbedder(embeddings, collection).embed([q.query], 'query');
  if (!vector || vector.length !== dimension)
    throw new AppError('upstream_unavailable', 'the embedding provider returned no usable vector');
  return hybridSearch(db, {
    tenantId,
    collectionId: collection.id,
    dimension,
    vector: Array.from(vector),
    text: q.query,
    filter: q.filter,
    limit: q.limit,
    scoreThreshold: q.scoreThreshold,
    weights: q.weights,
  });
}
