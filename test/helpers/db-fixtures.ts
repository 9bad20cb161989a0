// Rows for database tests: a tenant with a collection and a document, deterministic vectors and hashes.
import { createHash } from 'node:crypto';
import type { Database } from '../../src/db/client.ts';
import { chunks, collections, documents, tenants } from '../../src/db/schema.ts';

export const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

/** Deterministic PRNG (mulberry32) so vectors are the same on every run. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A random unit vector of `dim` components in [-1, 1) before normalisation. */
export function unitVector(dim: number, next: () => number): number[] {
  const v = Array.from({ length: dim }, () => next() * 2 - 1);
  const norm = Math.hypot(...v);
  return v.map((x) => x / norm);
}

export interface Seeded {
  tenantId: string;
  collectionId: string;
  documentId: string;
}

/** One tenant, one collection of dimension `dim`, one document. */
export async function seedDocument(db: Database, dim: number, name = 'seed'): Promise<Seeded> {
  const [tenant] = await db.insert(tenants).values({ name }).returning({ id: tenants.id });
  const [collection] = await db
    .insert(collections)
    .values({
      tenantId: tenant.id,
      name: `${name}-collection`,
      embeddingProvider: 'hash',
      embeddingModel: 'fnv1a',
      embeddingDim: dim,
    })
    .returning({ id: collections.id });
  const [document] = await db
    .insert(documents)
    .values({
      tenantId: tenant.id,
      collectionId: collection.id,
      filename: `${name}.txt`,
      contentType: 'text/plain',
      bytes: 10,
      contentHash: sha256(name),
    })
    .returning({ id: documents.id });
  return { tenantId: tenant.id, collectionId: collection.id, documentId: document.id };
}

/** Inserts `texts.length` chunks with the given embeddings into the seeded document. */
export async function insertChunks(
  db: Database,
  s: Seeded,
  texts: string[],
  vectors: number[][],
): Promise<void> {
  const rows = texts.map((text, i) => ({
    tenantId: s.tenantId,
    collectionId: s.collectionId,
    documentId: s.documentId,
    ordinal: i,
    text,
    tokenCount: text.split(/\s+/).length,
    contentHash: sha256(text),
    embedding: vectors[i],
    embeddingDim: vectors[i].length,
  }));
  for (let i = 0; i < rows.length; i += 200) await db.insert(chunks).values(rows.slice(i, i + 200));
}
