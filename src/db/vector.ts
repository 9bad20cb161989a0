// SQL for the per-dimension HNSW indexes on chunks.embedding (see schema.ts). The planner uses a partial
// expression index only when the query repeats its expression, `(embedding::vector(N))`, and implies its
// predicate, `embedding_dim = N`, with N a literal in the SQL text (a bound parameter cannot prove the
// predicate under a generic plan). N is therefore validated against SUPPORTED_DIMENSIONS and inlined.
import { type SQL, sql } from 'drizzle-orm';
import { AppError } from '../../contracts/errors.ts';
import { chunks, SUPPORTED_DIMENSIONS, type SupportedDimension } from './schema.ts';

export function isSupportedDimension(n: number): n is SupportedDimension {
  return (SUPPORTED_DIMENSIONS as readonly number[]).includes(n);
}

/** Throws a bad_request AppError naming the supported dimensions. */
export function assertSupportedDimension(n: number): SupportedDimension {
  if (!isSupportedDimension(n)) {
    throw new AppError('bad_request', `embedding dimension ${n} is not supported`, {
      supported: SUPPORTED_DIMENSIONS,
    });
  }
  return n;
}

/** pgvector's text form of a vector: `[0.1,0.2,…]`. Rejects NaN/Infinity, which pgvector refuses too. */
export function toVectorLiteral(v: readonly number[]): string {
  for (const x of v)
    if (!Number.isFinite(x)) throw new AppError('bad_request', 'vector has a non-finite value');
  return `[${v.join(',')}]`;
}

/** The indexed expression: `(chunks.embedding::vector(N))`. */
export function embeddingAs(dim: SupportedDimension): SQL {
  return sql`(${chunks.embedding}::vector(${sql.raw(String(assertSupportedDimension(dim)))}))`;
}

/** The index predicate: `chunks.embedding_dim = N`; put it in the WHERE of every vector search. */
export function dimensionIs(dim: SupportedDimension): SQL {
  return sql`${chunks.embeddingDim} = ${sql.raw(String(assertSupportedDimension(dim)))}`;
}

/** Cosine distance (0 = same direction, 2 = opposite) from chunks.embedding to `query`; ORDER BY it ascending. */
export function cosineDistance(dim: SupportedDimension, query: readonly number[]): SQL {
  if (query.length !== dim) {
    throw new AppError('bad_request', `query vector has ${query.length} dimensions, collection has ${dim}`);
  }
  return sql`${embeddingAs(dim)} <=> ${toVectorLiteral(query)}::vector(${sql.raw(String(dim))})`;
}
