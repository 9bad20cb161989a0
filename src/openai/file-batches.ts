// Vector store file batches: many files attached in one transaction (vector-store-files.ts), their
// documents carrying the batch id. Cancelling removes the batch's files still in progress — their
// documents are deleted as a vector store file delete would (gc jobs for blobs and artifacts; a queued
// ingest job then finds nothing to do) — and counts them in the batch row; files already completed or
// failed stay.
import { and, eq, inArray } from 'drizzle-orm';
import { isUuid, notFound } from '../db/ids.ts';
import { documents, type FileBatch, fileBatches } from '../db/schema.ts';
import type { Database } from '../db/types.ts';
import type { DocumentStore } from '../documents/add.ts';
import { documentCounts } from '../documents/counts.ts';
import { deleteDocumentBlobs, deleteDocumentRows } from '../documents/remove.ts';
import { documentStatusesOf, type FileCounts, fileCountsOf } from './statuses.ts';
import { type AttachItem, attachFiles } from './vector-store-files.ts';

export type BatchStatus = 'in_progress' | 'completed' | 'cancelled' | 'failed';

export async function createFileBatch(
  store: DocumentStore,
  tenantId: string,
  collectionId: string,
  items: readonly AttachItem[],
): Promise<FileBatch> {
  const id = crypto.randomUUID();
  await attachFiles(store, tenantId, collectionId, items, {
    batchId: id,
    first: async (tx) => {
      await tx.insert(fileBatches).values({ id, tenantId, collectionId });
    },
  });
  return findFileBatch(store.db, tenantId, collectionId, id);
}

export async function findFileBatch(
  db: Database,
  tenantId: string,
  collectionId: string,
  id: string,
): Promise<FileBatch> {
  if (!isUuid(id)) throw notFound('file batch', id);
  const [row] = await db
    .select()
    .from(fileBatches)
    .where(
      and(
        eq(fileBatches.id, id.toLowerCase()),
        eq(fileBatches.tenantId, tenantId),
        eq(fileBatches.collectionId, collectionId),
      ),
    );
  if (!row) throw notFound('file batch', id);
  return row;
}

/** The batch's file counts, cancelled files included. */
export async function batchCounts(db: Database, batch: FileBatch): Promise<FileCounts> {
  const counts = await documentCounts(db, batch.tenantId, [batch.id], 'batch');
  return fileCountsOf(counts.get(batch.id)!, batch.cancelledFiles);
}

export function batchStatus(batch: FileBatch, c: FileCounts): BatchStatus {
  if (c.in_progress > 0) return 'in_progress';
  if (batch.cancelledAt) return 'cancelled';
  return c.total > 0 && c.failed === c.total ? 'failed' : 'completed';
}

/** Removes the batch's files still in progress and marks it cancelled (again: nothing more happens). */
export async function cancelFileBatch(store: DocumentStore, batch: FileBatch, now: Date): Promise<FileBatch> {
  const removed = await store.db.transaction(async (tx) => {
    const [locked] = await tx
      .select()
      .from(fileBatches)
      .where(and(eq(fileBatches.id, batch.id), eq(fileBatches.tenantId, batch.tenantId)))
      .for('update');
    if (!locked) throw notFound('file batch', batch.id);
    const docs = await tx
      .select()
      .from(documents)
      .where(
        and(
          eq(documents.tenantId, batch.tenantId),
          eq(documents.batchId, batch.id),
          inArray(documents.status, documentStatusesOf('in_progress')),
        ),
      )
      .for('update');
    await deleteDocumentRows(tx, docs);
    await tx
      .update(fileBatches)
      .set({ cancelledAt: locked.cancelledAt ?? now, cancelledFiles: locked.cancelledFiles + docs.length })
      .where(eq(fileBatches.id, batch.id));
    return docs;
  });
  await deleteDocumentBlobs(store, removed);
  return findFileBatch(store.db, batch.tenantId, batch.collectionId, batch.id);
}
