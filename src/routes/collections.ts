// /v1/collections: create (embedding provider + dimension, chunking), get, list (cursor pagination),
// delete (documents and chunks cascade; blobs and KV artifacts are collected by a `gc` job written to the
// outbox in the same transaction). Every query is scoped by the caller's tenant; another tenant's
// collection is a 404, exactly like a missing one.
import { and, eq, inArray, sql } from 'drizzle-orm';
import type { Context } from 'hono';
import { Hono } from 'hono';
import { z } from 'zod';
import {
  type Collection,
  chunks,
  collections,
  DOCUMENT_STATUSES,
  type DocumentStatus,
  documents,
} from '../db/schema.ts';
import type { Database } from '../db/types.ts';
import { assertSupportedDimension } from '../db/vector.ts';
import { chunkingOptionsSchema } from '../ingest/chunking.ts';
import { AppError } from '../../contracts/errors.ts';
import type { AppEnv } from '../services.ts';
import { api, requireTenant } from './auth.ts';
import { scheduleGc } from './job-outbox.ts';
import { listQuerySchema, paginate, toPage } from './pagination.ts';
import { uploadPrefix } from '../storage/upload-keys.ts';
import { notFound } from '../db/ids.ts';
import { jsonBody, metadataSchema, pathId, queryParams, unixSeconds } from './validate.ts';

export const embeddingChoiceSchema = z.strictObject({
  provider: z.enum(['hash', 'openai', 'workers-ai']).default('hash'),
  /** Default: the provider's default model. */
  model: z.string().trim().min(1).max(200).optional(),
  dimension: z.number().int().default(384).describe('One of 256, 384, 512, 768, 1024, 1536.'),
});

export const createCollectionSchema = z.strictObject({
  name: z.string().trim().min(1).max(200),
  embedding: embeddingChoiceSchema.default({ provider: 'hash', dimension: 384 }),
  chunking: chunkingOptionsSchema.default({ size: 512, overlap: 64 }),
  metadata: metadataSchema.default({}),
});

type Counts = Record<DocumentStatus, number> & { total: number };

export function collectionObject(c: Collection, counts?: Counts) {
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

const emptyCounts = (): Counts =>
  Object.fromEntries([...DOCUMENT_STATUSES.map((s) => [s, 0]), ['total', 0]]) as Counts;

/** Documents per status of each collection. */
async function documentCounts(db: Database, tenantId: string, ids: string[]): Promise<Map<string, Counts>> {
  const out = new Map(ids.map((id) => [id, emptyCounts()]));
  if (ids.length === 0) return out;
  const rows = await db
    .select({ collectionId: documents.collectionId, status: documents.status, n: sql<number>`count(*)::int` })
    .from(documents)
    .where(and(eq(documents.tenantId, tenantId), inArray(documents.collectionId, ids)))
    .groupBy(documents.collectionId, documents.status);
  for (const r of rows) {
    const c = out.get(r.collectionId)!;
    c[r.status] = Number(r.n);
    c.total += Number(r.n);
  }
  return out;
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

/**
 * Writes the `gc` job for a collection about to be deleted (same transaction as the delete): its upload
 * blobs and the chunk hashes whose KV artifacts may now be unreferenced.
 */
export async function scheduleCollectionGc(
  tx: Pick<Database, 'insert' | 'select' | 'selectDistinct'>,
  tenantId: string,
  collectionId: string,
): Promise<void> {
  const hashes = await tx
    .selectDistinct({ h: chunks.contentHash })
    .from(chunks)
    .where(and(eq(chunks.tenantId, tenantId), eq(chunks.collectionId, collectionId)));
  const keys = await tx
    .select({ k: documents.objectKey })
    .from(documents)
    .where(and(eq(documents.tenantId, tenantId), eq(documents.collectionId, collectionId)));
  await scheduleGc(tx, {
    tenantId,
    collectionId,
    blobKeys: keys.flatMap((k) => (k.k ? [k.k] : [])),
    blobPrefix: uploadPrefix(tenantId, collectionId),
    chunkHashes: hashes.map((h) => h.h),
  });
}

/** The SQLSTATE of a failed statement (drizzle wraps the driver error in `cause`). */
function sqlState(err: unknown): string | undefined {
  const e = err as { code?: string; cause?: { code?: string } };
  return e?.cause?.code ?? e?.code;
}
export const isUniqueViolation = (err: unknown) => sqlState(err) === '23505';
export const isForeignKeyViolation = (err: unknown) => sqlState(err) === '23503';

export function collectionRoutes(): Hono<AppEnv> {
  const r = new Hono<AppEnv>();

  r.post('/', async (c) => {
    const tenantId = requireTenant(c);
    const body = await jsonBody(c, createCollectionSchema);
    const dimension = assertSupportedDimension(body.embedding.dimension);
    const deps = api(c);
    // builds the provider once to check the deployment offers it, and to learn its model name
    const provider = deps.embeddings({ ...body.embedding, dimension });
    try {
      const [row] = await deps.db
        .insert(collections)
        .values({
          tenantId,
          name: body.name,
          embeddingProvider: provider.id,
          embeddingModel: provider.model,
          embeddingDim: provider.dimension,
          chunkSettings: body.chunking,
          metadata: body.metadata,
        })
        .returning();
      return c.json(collectionObject(row), 201);
    } catch (err) {
      if (isUniqueViolation(err))
        throw new AppError('conflict', `a collection named ${JSON.stringify(body.name)} exists`);
      throw err;
    }
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
    const { db, blobs, log } = { ...api(c), log: c.get('services').log };
    await db.transaction(async (tx) => {
      await scheduleCollectionGc(tx, tenantId, row.id);
      await tx.delete(collections).where(and(eq(collections.id, row.id), eq(collections.tenantId, tenantId)));
    });
    // Best effort now; the gc job retries whatever is left.
    try {
      for await (const b of blobs.list(uploadPrefix(tenantId, row.id))) await blobs.delete(b.key);
    } catch (err) {
      log?.('warn', 'collection blobs left for gc', { collection: row.id, err: String(err) });
    }
    return c.json({ id: row.id, object: 'collection.deleted' as const, deleted: true });
  });

  return r;
}
