// Vector store files: a file attached to a vector store is a document of its collection, made from a copy
// of the file's bytes (documents/add.ts: blob, then row + `ingest` job in one transaction). A vector
// store file's id is its file's id; a document uploaded through /v1/collections (no file) is listed under
// its own id, so every document of a collection is a file of its vector store.
//
// One file is attached to a store at most once, and a collection holds identical content once
// (documents_collection_content_hash_uq): either repeat is a 409 `conflict` naming what is already there.
import { and, eq, inArray, or, type SQL, sql } from 'drizzle-orm';
import { AppError } from '../../contracts/errors.ts';
import { isForeignKeyViolation, isUniqueViolation } from '../db/errors.ts';
import { isUuid, notFound } from '../db/ids.ts';
import { chunks, type Document, documents, type FileRow } from '../db/schema.ts';
import type { Database } from '../db/types.ts';
import type { HybridHit } from '../retrieval/hybrid.ts';
import { addDocuments, type DocumentStore, type NewDocument, type Tx } from '../documents/add.ts';

/** A vector store file's id in SQL: its file's id, or the document's own for a plain upload. */
export const vectorStoreFileId: SQL<string> = sql<string>`coalesce(${documents.fileId}, ${documents.id})`;

export const vectorStoreFileIdOf = (d: Pick<Document, 'fileId' | 'id'>) => d.fileId ?? d.id;

/** The vector store file a retrieved chunk belongs to. */
export const fileIdOfHit = (h: Pick<HybridHit, 'fileId' | 'documentId'>) => h.fileId ?? h.documentId;

/** Chunking of a file: OpenAI's `static` strategy in kvrag's terms; absent = the collection's. */
export interface FileChunking {
  size: number;
  overlap: number;
}

export interface AttachItem {
  file: FileRow;
  attributes: Record<string, string | number | boolean>;
  chunking?: FileChunking;
}

export interface AttachOptions {
  /** The file batch attaching them. */
  batchId?: string;
  /** Runs first in the same transaction (a new vector store's collection row, a batch's row). */
  first?: (tx: Tx) => Promise<void>;
}

/** The tenant's document in this collection that is the vector store file `id`; 404 otherwise. */
export async function findVectorStoreFile(
  db: Database,
  tenantId: string,
  collectionId: string,
  id: string,
): Promise<Document> {
  if (!isUuid(id)) throw notFound('vector store file', id);
  const [row] = await db
    .select()
    .from(documents)
    .where(
      and(
        eq(documents.tenantId, tenantId),
        eq(documents.collectionId, collectionId),
        eq(vectorStoreFileId, id.toLowerCase()),
      ),
    );
  if (!row) throw notFound('vector store file', id);
  return row;
}

/** What already holds a file or its content in the collection, as a 409 naming it. */
async function conflictOf(
  db: Database,
  tenantId: string,
  collectionId: string,
  items: readonly AttachItem[],
) {
  const rows = await db
    .select({ id: documents.id, fileId: documents.fileId, contentHash: documents.contentHash })
    .from(documents)
    .where(
      and(
        eq(documents.tenantId, tenantId),
        eq(documents.collectionId, collectionId),
        or(
          inArray(
            documents.fileId,
            items.map((i) => i.file.id),
          ),
          inArray(
            documents.contentHash,
            items.map((i) => i.file.contentHash),
          ),
        ),
      ),
    );
  for (const i of items) {
    if (rows.some((r) => r.fileId === i.file.id))
      return new AppError('conflict', `file ${i.file.id} is already in vector store ${collectionId}`);
    const same = rows.find((r) => r.contentHash === i.file.contentHash);
    if (same)
      return new AppError(
        'conflict',
        `file ${i.file.id} has the same content as vector store file ${vectorStoreFileIdOf(same)} of vector store ${collectionId}`,
      );
  }
  return null;
}

/**
 * Attaches files to the collection as documents queued for ingestion, all or nothing. 400 for a file
 * listed twice, 409 for a file or content already there (or listed twice), 404 when a file or the
 * collection went away meanwhile.
 */
export async function attachFiles(
  store: DocumentStore,
  tenantId: string,
  collectionId: string,
  items: readonly AttachItem[],
  opts: AttachOptions = {},
): Promise<Document[]> {
  const ids = new Set<string>();
  const hashes = new Map<string, string>();
  for (const i of items) {
    if (ids.has(i.file.id)) throw new AppError('bad_request', `file ${i.file.id} is listed twice`);
    ids.add(i.file.id);
    const twin = hashes.get(i.file.contentHash);
    if (twin) throw new AppError('conflict', `files ${twin} and ${i.file.id} have the same content`);
    hashes.set(i.file.contentHash, i.file.id);
  }
  const docs: NewDocument[] = items.map((i) => ({
    tenantId,
    collectionId,
    // the File's bytes, copied object to object
    bytes: { copyOf: i.file.objectKey, size: i.file.bytes },
    filename: i.file.filename,
    contentType: i.file.contentType,
    contentHash: i.file.contentHash,
    attributes: i.attributes,
    fileId: i.file.id,
    batchId: opts.batchId,
    chunkSettings: i.chunking ? { ...i.chunking } : undefined,
  }));
  try {
    return await addDocuments(store, docs, opts.first);
  } catch (err) {
    if (isUniqueViolation(err)) {
      const conflict = await conflictOf(store.db, tenantId, collectionId, items);
      if (conflict) throw conflict;
    }
    if (isForeignKeyViolation(err))
      throw new AppError('not_found', `the vector store or one of the files was deleted meanwhile`);
    throw err;
  }
}

/** Replaces a vector store file's attributes (search filters see them at once). */
export async function setFileAttributes(
  db: Database,
  doc: Document,
  attributes: Record<string, string | number | boolean>,
): Promise<Document> {
  const [row] = await db
    .update(documents)
    .set({ attributes })
    .where(and(eq(documents.id, doc.id), eq(documents.tenantId, doc.tenantId)))
    .returning();
  if (!row) throw notFound('vector store file', vectorStoreFileIdOf(doc));
  return row;
}

/** The parsed text of a vector store file: its chunks in order (empty until it is indexed). */
export async function fileChunkTexts(db: Database, doc: Document): Promise<string[]> {
  const rows = await db
    .select({ text: chunks.text })
    .from(chunks)
    .where(and(eq(chunks.tenantId, doc.tenantId), eq(chunks.documentId, doc.id)))
    .orderBy(chunks.ordinal);
  return rows.map((r) => r.text);
}
