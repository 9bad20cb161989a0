// Adding documents to a collection: the raw bytes go to the blob store first (one object per document,
// named by the id chosen here), then the rows (status `queued`) and their `ingest` jobs' outbox rows in ONE
// transaction. If the transaction fails every blob written for it is removed again, so a failed add
// leaves neither rows nor objects. Callers decide what identical content means (the document upload
// route returns the existing document; the OpenAI surface answers a conflict) before calling.
import type { BlobStore } from '../../contracts/blob-store.ts';
import { AppError } from '../../contracts/errors.ts';
import type { Log } from '../../contracts/log.ts';
import { type Document, documents } from '../db/schema.ts';
import type { Database } from '../db/types.ts';
import { scheduleIngest } from '../queue/job-outbox.ts';
import { uploadKey } from '../storage/upload-keys.ts';

export interface DocumentStore {
  db: Database;
  blobs: BlobStore;
  log?: Log;
}

/** Content already in the blob store (an OpenAI File's upload): copied by streaming, never held whole. */
export interface BlobCopy {
  copyOf: string;
  size: number;
}

export interface NewDocument {
  tenantId: string;
  collectionId: string;
  bytes: Uint8Array | BlobCopy;
  filename: string;
  /** What the parsers will be told (charset included). */
  contentType: string;
  /** sha256 hex of the bytes. */
  contentHash: string;
  attributes: Record<string, unknown>;
  /** The OpenAI File it was attached from. */
  fileId?: string;
  /** The file batch attaching it. */
  batchId?: string;
  /** Chunking when it differs from the collection's ({size, overlap}). */
  chunkSettings?: Record<string, unknown>;
}

async function bodyOf(blobs: BlobStore, b: Uint8Array | BlobCopy) {
  if (b instanceof Uint8Array) return b;
  const stream = await blobs.getStream(b.copyOf);
  if (!stream) throw new AppError('internal', `the content to copy is missing from storage (${b.copyOf})`);
  return stream;
}

/** A transaction of the database (what addDocuments hands `first`). */
export type Tx = Parameters<Parameters<Database['transaction']>[0]>[0];

/**
 * Stores the documents and schedules their ingestion, all or nothing. `first` runs at the start of the
 * same transaction (a new vector store writes its collection there, a file batch its row). Throws the
 * database's error (a unique violation: identical content or the same file is already in the
 * collection; a foreign-key violation: the collection or file is gone) after removing the blobs it wrote.
 */
export async function addDocuments(
  store: DocumentStore,
  docs: readonly NewDocument[],
  first?: (tx: Tx) => Promise<void>,
): Promise<Document[]> {
  const placed: { id: string; objectKey: string }[] = [];
  try {
    for (const d of docs) {
      const id = crypto.randomUUID();
      const objectKey = uploadKey(d.tenantId, d.collectionId, id);
      placed.push({ id, objectKey });
      await store.blobs.put(objectKey, await bodyOf(store.blobs, d.bytes), { contentType: d.contentType });
    }
    return await store.db.transaction(async (tx) => {
      await first?.(tx);
      const rows: Document[] = [];
      for (const [i, d] of docs.entries()) {
        const { id, objectKey } = placed[i];
        const [row] = await tx
          .insert(documents)
          .values({
            id,
            tenantId: d.tenantId,
            collectionId: d.collectionId,
            filename: d.filename,
            contentType: d.contentType,
            bytes: d.bytes instanceof Uint8Array ? d.bytes.byteLength : d.bytes.size,
            contentHash: d.contentHash,
            objectKey,
            status: 'queued',
            attributes: d.attributes,
            fileId: d.fileId ?? null,
            batchId: d.batchId ?? null,
            chunkSettings: d.chunkSettings ?? null,
          })
          .returning();
        await scheduleIngest(tx, {
          tenantId: d.tenantId,
          collectionId: d.collectionId,
          documentId: id,
          objectKey,
          contentType: d.contentType,
          filename: d.filename,
        });
        rows.push(row);
      }
      return rows;
    });
  } catch (err) {
    for (const { objectKey } of placed) {
      await store.blobs.delete(objectKey).catch((e: unknown) => {
        store.log?.('warn', 'orphan upload blob left', { key: objectKey, err: String(e) });
      });
    }
    throw err;
  }
}
