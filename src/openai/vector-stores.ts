// OpenAI vector stores over kvrag collections. Every collection of a tenant is a vector store (its id is
// the collection id); one created through /v1/vector_stores also has a `vector_stores` row holding what
// OpenAI adds: a name that need not be unique, the expiry policy and the last use. Creating one with
// file_ids writes the collection, its row and the attached documents in one transaction.
//
// Expiry (`expires_after: {anchor: "last_active_at", days}`): a store unused for that long reports
// `status: "expired"` and is refused by search and file_search (400); it is not deleted by itself.
import { and, eq, inArray, sql } from 'drizzle-orm';
import { AppError } from '../../contracts/errors.ts';
import { isUuid, notFound } from '../db/ids.ts';
import { type Collection, collections, documents, fileBatches, vectorStores } from '../db/schema.ts';
import type { VectorStoreRow } from '../db/schema.ts';
import type { Database } from '../db/types.ts';
import type { DocumentStore } from '../documents/add.ts';
import { collectionValues, insertCollection, type NewCollection } from '../documents/collection.ts';
import { documentCounts } from '../documents/counts.ts';
import type { EmbeddingResolver } from '../embeddings/resolver.ts';
import { type FileCounts, fileCountsOf } from './statuses.ts';
import { type AttachItem, attachFiles } from './vector-store-files.ts';

const DAY_MS = 86_400_000;

export interface VectorStoreView {
  collection: Collection;
  /** Absent for a collection made through /v1/collections. */
  store: VectorStoreRow | null;
}

export interface VectorStoreStats {
  fileCounts: FileCounts;
  usageBytes: number;
}

/** When the store expires (last use + days), or null when it never does. */
export function expiresAt(v: VectorStoreView): Date | null {
  const days = v.store?.expiresAfterDays;
  return days == null || !v.store ? null : new Date(v.store.lastActiveAt.getTime() + days * DAY_MS);
}

export const isExpired = (v: VectorStoreView, now: Date) => {
  const at = expiresAt(v);
  return at !== null && at.getTime() <= now.getTime();
};

/** The tenant's vector stores with these ids, in the order asked; 404 naming the first that is not. */
export async function findVectorStores(
  db: Database,
  tenantId: string,
  ids: readonly string[],
): Promise<VectorStoreView[]> {
  const wanted = [...new Set(ids.map((id) => id.toLowerCase()))];
  for (const id of wanted) if (!isUuid(id)) throw notFound('vector store', id);
  const rows =
    wanted.length === 0
      ? []
      : await db
          .select({ collection: collections, store: vectorStores })
          .from(collections)
          .leftJoin(vectorStores, eq(vectorStores.collectionId, collections.id))
          .where(and(eq(collections.tenantId, tenantId), inArray(collections.id, wanted)));
  const byId = new Map(rows.map((r) => [r.collection.id, r]));
  return wanted.map((id) => {
    const row = byId.get(id);
    if (!row) throw notFound('vector store', id);
    return row;
  });
}

export async function findVectorStore(db: Database, tenantId: string, id: string): Promise<VectorStoreView> {
  const [v] = await findVectorStores(db, tenantId, [id]);
  return v;
}

/** The stores a search or an answer may use: 400 for an expired one. */
export function assertUsable(views: readonly VectorStoreView[], now: Date): void {
  for (const v of views)
    if (isExpired(v, now))
      throw new AppError(
        'bad_request',
        `vector store ${v.collection.id} has expired; update its expires_after`,
      );
}

/** Marks the stores used now (their expiry counts from here). */
export async function touchVectorStores(
  db: Database,
  tenantId: string,
  ids: readonly string[],
  now: Date,
): Promise<void> {
  for (const id of ids)
    await db
      .insert(vectorStores)
      .values({ collectionId: id, tenantId, lastActiveAt: now })
      .onConflictDoUpdate({ target: vectorStores.collectionId, set: { lastActiveAt: now } });
}

export interface NewVectorStore {
  name?: string;
  metadata: Record<string, string | number | boolean>;
  expiresAfterDays?: number;
  embedding: NewCollection['embedding'];
  chunking: NewCollection['chunking'];
}

/**
 * Creates the collection and its vector store row, attaching `files` in the same transaction (all or
 * nothing). 400 for an embedding choice the deployment does not offer.
 */
export async function createVectorStore(
  store: DocumentStore & { embeddings: EmbeddingResolver },
  tenantId: string,
  input: NewVectorStore,
  files: readonly AttachItem[],
  now: Date,
): Promise<VectorStoreView> {
  const id = crypto.randomUUID();
  // collection names are unique per tenant, vector store names are not: the collection gets its own
  const values = collectionValues(store.embeddings, tenantId, {
    id,
    name: `vector_store ${id}`,
    embedding: input.embedding,
    chunking: input.chunking,
    metadata: input.metadata,
  });
  const write = async (tx: Pick<Database, 'insert'>) => {
    await insertCollection(tx, values);
    await tx.insert(vectorStores).values({
      collectionId: id,
      tenantId,
      name: input.name ?? null,
      expiresAfterDays: input.expiresAfterDays ?? null,
      lastActiveAt: now,
    });
  };
  if (files.length > 0) await attachFiles(store, tenantId, id, files, { first: write });
  else await store.db.transaction(write);
  return findVectorStore(store.db, tenantId, id);
}

export interface VectorStorePatch {
  /** null clears it (the collection's name shows again). */
  name?: string | null;
  metadata?: Record<string, string | number | boolean> | null;
  /** null: never expires. */
  expiresAfterDays?: number | null;
}

export async function updateVectorStore(
  db: Database,
  v: VectorStoreView,
  patch: VectorStorePatch,
  now: Date,
): Promise<VectorStoreView> {
  const { id, tenantId } = v.collection;
  await db.transaction(async (tx) => {
    if (patch.metadata !== undefined)
      await tx
        .update(collections)
        .set({ metadata: patch.metadata ?? {} })
        .where(and(eq(collections.id, id), eq(collections.tenantId, tenantId)));
    const set = {
      ...(patch.name !== undefined ? { name: patch.name } : {}),
      ...(patch.expiresAfterDays !== undefined ? { expiresAfterDays: patch.expiresAfterDays } : {}),
    };
    // a collection made through /v1/collections gets its row on its first update
    const insert = tx
      .insert(vectorStores)
      .values({ collectionId: id, tenantId, lastActiveAt: v.store?.lastActiveAt ?? now, ...set });
    if (Object.keys(set).length > 0)
      await insert.onConflictDoUpdate({ target: vectorStores.collectionId, set });
    else await insert.onConflictDoNothing();
  });
  return findVectorStore(db, tenantId, id);
}

/** File counts (cancelled batch files included) and bytes of each store. */
export async function vectorStoreStats(
  db: Database,
  tenantId: string,
  ids: readonly string[],
): Promise<Map<string, VectorStoreStats>> {
  const counts = await documentCounts(db, tenantId, ids);
  const out = new Map<string, VectorStoreStats>();
  if (ids.length === 0) return out;
  const bytes = await db
    .select({ id: documents.collectionId, n: sql<number>`coalesce(sum(${documents.bytes}), 0)::float8` })
    .from(documents)
    .where(and(eq(documents.tenantId, tenantId), inArray(documents.collectionId, [...ids])))
    .groupBy(documents.collectionId);
  const cancelled = await db
    .select({ id: fileBatches.collectionId, n: sql<number>`sum(${fileBatches.cancelledFiles})::int` })
    .from(fileBatches)
    .where(and(eq(fileBatches.tenantId, tenantId), inArray(fileBatches.collectionId, [...ids])))
    .groupBy(fileBatches.collectionId);
  for (const id of ids) {
    const c = counts.get(id)!;
    out.set(id, {
      fileCounts: fileCountsOf(c, Number(cancelled.find((r) => r.id === id)?.n ?? 0)),
      usageBytes: Number(bytes.find((r) => r.id === id)?.n ?? 0),
    });
  }
  return out;
}
