// Removing documents and collections: the rows go (chunks cascade) together with a `gc` outbox row in one
// transaction, then the blobs are deleted at once, best effort (the gc job retries whatever is left and
// collects the KV artifacts no remaining chunk uses).
import { and, eq, inArray } from 'drizzle-orm';
import { chunks, collections, type Document, documents } from '../db/schema.ts';
import type { Database } from '../db/types.ts';
import { scheduleGc } from '../queue/job-outbox.ts';
import { uploadPrefix } from '../storage/upload-keys.ts';
import type { DocumentStore } from './add.ts';

type Tx = Pick<Database, 'insert' | 'select' | 'selectDistinct' | 'delete'>;

/** Deletes the documents (of one tenant) inside `tx` and writes one gc job per document. */
export async function deleteDocumentRows(tx: Tx, docs: readonly Document[]): Promise<void> {
  for (const doc of docs) {
    const hashes = await tx
      .selectDistinct({ h: chunks.contentHash })
      .from(chunks)
      .where(and(eq(chunks.tenantId, doc.tenantId), eq(chunks.documentId, doc.id)));
    await tx.delete(documents).where(and(eq(documents.id, doc.id), eq(documents.tenantId, doc.tenantId)));
    await scheduleGc(tx, {
      tenantId: doc.tenantId,
      collectionId: doc.collectionId,
      documentId: doc.id,
      blobKeys: doc.objectKey ? [doc.objectKey] : [],
      chunkHashes: hashes.map((h) => h.h),
    });
  }
}

/** Deletes the blobs of documents whose rows are gone; failures are left to their gc jobs. */
export async function deleteDocumentBlobs(store: DocumentStore, docs: readonly Document[]): Promise<void> {
  for (const doc of docs) {
    if (!doc.objectKey) continue;
    await store.blobs.delete(doc.objectKey).catch((err: unknown) => {
      store.log?.('warn', 'document blob left for gc', { key: doc.objectKey, err: String(err) });
    });
  }
}

/** Removes documents of one tenant: rows and gc jobs in one transaction, then their blobs. */
export async function removeDocuments(store: DocumentStore, docs: readonly Document[]): Promise<void> {
  if (docs.length === 0) return;
  await store.db.transaction((tx) => deleteDocumentRows(tx, docs));
  await deleteDocumentBlobs(store, docs);
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

/** Deletes a collection of the tenant (documents and chunks cascade); false when it does not exist. */
export async function removeCollection(
  store: DocumentStore,
  tenantId: string,
  collectionId: string,
): Promise<boolean> {
  const scope = and(eq(collections.id, collectionId), eq(collections.tenantId, tenantId));
  const found = await store.db.transaction(async (tx) => {
    const [row] = await tx.select({ id: collections.id }).from(collections).where(scope).for('update');
    if (!row) return false;
    await scheduleCollectionGc(tx, tenantId, collectionId);
    await tx.delete(collections).where(scope);
    return true;
  });
  if (!found) return false;
  // Best effort now; the gc job retries whatever is left.
  try {
    for await (const b of store.blobs.list(uploadPrefix(tenantId, collectionId)))
      await store.blobs.delete(b.key);
  } catch (err) {
    store.log?.('warn', 'collection blobs left for gc', { collection: collectionId, err: String(err) });
  }
  return true;
}

/** Documents of the tenant by id (for callers that hold ids only). */
export async function documentsById(
  db: Database,
  tenantId: string,
  ids: readonly string[],
): Promise<Document[]> {
  if (ids.length === 0) return [];
  return db
    .select()
    .from(documents)
    .where(and(eq(documents.tenantId, tenantId), inArray(documents.id, [...ids])));
}
