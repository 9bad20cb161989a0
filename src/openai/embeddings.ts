// /v1/embeddings: the embedding provider of a vector store (name its id as the `model`, and the vectors
// are those its search compares against), or the built-in hash model by name. Texts are embedded as
// documents, as ingestion does.
import { AppError } from '../../contracts/errors.ts';
import { isUuid } from '../db/ids.ts';
import type { Database } from '../db/types.ts';
import type { EmbeddingResolver } from '../embeddings/resolver.ts';
import { HASH_DEFAULT_DIMENSION, HASH_MODEL } from '../embeddings/hash.ts';
import type { EmbeddingProvider } from '../embeddings/types.ts';
import { collectionEmbedder } from '../retrieval/collection-search.ts';
import { findVectorStores } from './vector-stores.ts';

/** The provider a `model` names; 400 for a dimension it does not produce, 404 for an unknown model. */
export async function embeddingProviderFor(
  db: Database,
  embeddings: EmbeddingResolver,
  tenantId: string,
  model: string,
  dimensions?: number,
): Promise<EmbeddingProvider> {
  let provider: EmbeddingProvider;
  if (isUuid(model)) {
    const [v] = await findVectorStores(db, tenantId, [model]);
    provider = collectionEmbedder(embeddings, v.collection);
  } else if (model === HASH_MODEL) {
    provider = embeddings({ provider: 'hash', dimension: dimensions ?? HASH_DEFAULT_DIMENSION });
  } else {
    throw new AppError(
      'not_found',
      `embedding model ${JSON.stringify(model)} is not offered: name a vector store id, or ${HASH_MODEL}`,
    );
  }
  if (dimensions !== undefined && dimensions !== provider.dimension)
    throw new AppError(
      'bad_request',
      `model ${model} produces ${provider.dimension} dimensions, not ${dimensions}`,
      {
        issues: [{ path: ['dimensions'] }],
      },
    );
  return provider;
}

/** A vector as OpenAI's base64 encoding: its float32 little-endian bytes. */
export function base64Floats(v: Float32Array): string {
  const bytes = new Uint8Array(v.length * 4);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < v.length; i++) view.setFloat32(i * 4, v[i], true);
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}
