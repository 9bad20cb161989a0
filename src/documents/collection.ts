// Creating a collection: the embedding choice checked against what the deployment offers (the provider is
// built once, which also names its model), then one row. Shared by POST /v1/collections and by OpenAI
// vector store creation (src/openai/vector-stores.ts), which writes the row inside its own transaction.
import { AppError } from '../../contracts/errors.ts';
import { isUniqueViolation } from '../db/errors.ts';
import { type Collection, collections } from '../db/schema.ts';
import type { Database } from '../db/types.ts';
import { assertSupportedDimension } from '../db/vector.ts';
import type { EmbeddingChoice, EmbeddingResolver } from '../embeddings/resolver.ts';

export interface NewCollection {
  /** Chosen by the caller when other rows must name it in the same transaction. */
  id?: string;
  name: string;
  embedding: EmbeddingChoice;
  /** {size, overlap, slack?} (src/ingest/chunking.ts), already validated. */
  chunking: Record<string, unknown>;
  metadata: Record<string, unknown>;
}

/** The row's values; AppError('bad_request') for an embedding choice the deployment does not offer. */
export function collectionValues(embeddings: EmbeddingResolver, tenantId: string, c: NewCollection) {
  const dimension = assertSupportedDimension(c.embedding.dimension);
  const provider = embeddings({ ...c.embedding, dimension });
  return {
    ...(c.id ? { id: c.id } : {}),
    tenantId,
    name: c.name,
    embeddingProvider: provider.id,
    embeddingModel: provider.model,
    embeddingDim: provider.dimension,
    chunkSettings: c.chunking,
    metadata: c.metadata,
  };
}

/** Inserts the collection (through `tx` when given); a taken name is a 409 `conflict`. */
export async function insertCollection(
  tx: Pick<Database, 'insert'>,
  values: ReturnType<typeof collectionValues>,
): Promise<Collection> {
  try {
    const [row] = await tx.insert(collections).values(values).returning();
    return row;
  } catch (err) {
    if (isUniqueViolation(err))
      throw new AppError('conflict', `a collection named ${JSON.stringify(values.name)} exists`);
    throw err;
  }
}
