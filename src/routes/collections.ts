// /v1/collections: create (embedding provider + dimension, chunking), get, list (cursor pagination),
// delete (documents and chunks cascade; blobs and KV artifacts are collected by a `gc` job written to the
// outbox in the same transaction). Every query is scoped by the caller's tenant; another tenant's
// collection is a 404, exactly like a missing one.
import { and, eq } from 'drizzle-orm';
import type { Context } from 'hono';
import { Hono } from 'hono';
import { z } from 'zod';
import { type Collection, collections } from '../db/schema.ts';
import { chunkingOptionsSchema } from '../ingest/chunking.ts';
import type { AppEnv } from '../services.ts';
import { api, requireTenant } from './auth.ts';
import { listQuerySchema, paginate, toPage } from './pagination.ts';
import { notFound } from '../db/ids.ts';
import { collectionValues, insertCollection } from '../documents/collection.ts';
import { HASH_DEFAULT_DIMENSION } from '../embeddings/hash.ts';
import { removeCollection } from '../documents/remove.ts';
import { documentCounts, emptyCounts, type StatusCounts } from '../documents/counts.ts';
import { jsonBody, metadataSchema, pathId, queryParams, unixSeconds } from './validate.ts';

export const embeddingChoiceSchema = z.strictObject({
  provider: z.enum(['hash', 'openai', 'workers-ai']).default('hash'),
  /** Default: the provider's default model. */
  model: z.string().trim().min(1).max(200).optional(),
  dimension: z
    .number()
    .int()
    .default(HASH_DEFAULT_DIMENSION)
    .describe('One of 256, 384, 512, 768, 1024, 1536.'),
});

/** A collection's (and a vector store's) embedding when the request names none. */
export const DEFAULT_EMBEDDING = { provider: 'hash', dimension: HASH_DEFAULT_DIMENSION } as const;

export const createCollectionSchema = z.strictObject({
  name: z.string().trim().min(1).max(200),
  embedding: embeddingChoiceSchema.default(DEFAULT_EMBEDDING),
  chunking: chunkingOptionsSchema.default({ size: 512, overlap: 64 }),
  metadata: metadataSchema.default({}),
});

export function collectionObject(c: Collection, counts?: StatusCounts) {
  return {
    id: c.id,
    object: 'collection' as const,
    name: c.name,
    created_at: unixSeconds(c.createdAt),
    embedding: { provider: c.embeddingProvider, model: c.embeddingModel, dimension: c.embeddingDim },
    chunking: c.chunkSettings,
    metadata: c.metadata,
    document_counts: counts ?? emptyCounts(),
  };
}

/** The caller's collection named by the `:collection` path parameter, or 404. */
export async function findCollection(c: Context<AppEnv>, tenantId: string): Promise<Collection> {
  const id = pathId(c, 'collection', 'collection');
  const [row] = await api(c)
    .db.select()
    .from(collections)
    .where(and(eq(collections.id, id), eq(collections.tenantId, tenantId)));
  if (!row) throw notFound('collection', id);
  return row;
}

export function collectionRoutes(): Hono<AppEnv> {
  const r = new Hono<AppEnv>();

  r.post('/', async (c) => {
    const tenantId = requireTenant(c);
    const body = await jsonBody(c, createCollectionSchema);
    const { db, embeddings } = api(c);
    const row = await insertCollection(db, collectionValues(embeddings, tenantId, body));
    return c.json(collectionObject(row), 201);
  });

  r.get('/', async (c) => {
    const tenantId = requireTenant(c);
    const q = queryParams(c, listQuerySchema);
    const { db } = api(c);
    const { rows, hasMore } = await paginate(
      db,
      collections,
      eq(collections.tenantId, tenantId),
      q,
      (where, order, limit) =>
        db
          .select()
          .from(collections)
          .where(where)
          .orderBy(...order)
          .limit(limit),
    );
    const counts = await documentCounts(
      db,
      tenantId,
      rows.map((x) => x.id),
    );
    return c.json(toPage(rows, hasMore, (x) => collectionObject(x, counts.get(x.id))));
  });

  r.get('/:collection', async (c) => {
    const tenantId = requireTenant(c);
    const row = await findCollection(c, tenantId);
    const counts = await documentCounts(api(c).db, tenantId, [row.id]);
    return c.json(collectionObject(row, counts.get(row.id)));
  });

  r.delete('/:collection', async (c) => {
    const tenantId = requireTenant(c);
    const row = await findCollection(c, tenantId);
    if (!(await removeCollection({ ...api(c), log: c.get('services').log }, tenantId, row.id)))
      throw notFound('collection', row.id);
    return c.json({ id: row.id, object: 'collection.deleted' as const, deleted: true });
  });

  return r;
}
