// The embedding interface every provider implements. Files under src/embeddings/ are reachable from the
// Workers entry: Web APIs only (fetch, TextEncoder, crypto.subtle), never node:* modules.

/** Documents and queries may be embedded differently (instruction prefixes of asymmetric models). */
export type EmbeddingKind = 'document' | 'query';

export type EmbeddingProviderId = 'hash' | 'openai' | 'workers-ai';

export interface EmbeddingProvider {
  /** Which implementation: 'hash', 'openai' (any OpenAI-compatible server) or 'workers-ai'. */
  readonly id: EmbeddingProviderId;
  /** The model name as the provider knows it (e.g. 'text-embedding-3-small', 'kvrag-hash-v1'). */
  readonly model: string;
  /** Length of every returned vector; a collection's vector column is declared with it. */
  readonly dimension: number;
  /** One vector per input text, in input order. */
  embed(texts: string[], kind: EmbeddingKind): Promise<Float32Array[]>;
}

/**
 * Identity of the vector space a provider produces: vectors are comparable only when fingerprints match
 * (a collection stores it and refuses to mix spaces).
 */
export function embeddingFingerprint(p: Pick<EmbeddingProvider, 'id' | 'model' | 'dimension'>): string {
  return `${p.id}:${p.model}:${p.dimension}`;
}

/** Scales v to unit L2 norm in place; a zero vector stays zero. Returns v. */
export function l2Normalize(v: Float32Array): Float32Array {
  let ss = 0;
  for (let i = 0; i < v.length; i++) ss += v[i] * v[i];
  if (ss > 0) {
    const inv = 1 / Math.sqrt(ss);
    for (let i = 0; i < v.length; i++) v[i] *= inv;
  }
  return v;
}
