// OpenAI Files (/v1/files): uploads kept on their own under the tenant (`uploads/<tenant>/files/<id>`,
// storage/upload-keys.ts) until attached to vector stores. Attaching copies the bytes into a document of
// the collection (vector-store-files.ts), which then lives its own life: its own blob, chunks and gc.
// Deleting a file also removes it from every vector store, as OpenAI's API does: the file row, its
// documents (with their gc jobs) and a gc job for its blob go in one transaction, then the blobs.
import { and, eq, inArray } from 'drizzle-orm';
import { isUuid, notFound } from '../db/ids.ts';
import { documents, type FileRow, files } from '../db/schema.ts';
import type { Database } from '../db/types.ts';
import type { DocumentStore } from '../documents/add.ts';
import { deleteDocumentBlobs, deleteDocumentRows } from '../documents/remove.ts';
import { scheduleGc } from '../queue/job-outbox.ts';
import { fileKey } from '../storage/upload-keys.ts';

/** What a file may be uploaded for; kvrag reads every purpose's file the same way. */
export const FILE_PURPOSES = ['assistants', 'batch', 'fine-tune', 'vision', 'user_data', 'evals'] as const;
export type FilePurpose = (typeof FILE_PURPOSES)[number];

export interface NewFile {
  bytes: Uint8Array;
  filename: string;
  /** What the parsers will be told when the file is attached (charset included). */
  contentType: string;
  /** sha256 hex of the bytes. */
  contentHash: string;
  purpose: FilePurpose;
}

/** Stores the bytes, then the row; a failed insert removes the blob again. */
export async function createFile(store: DocumentStore, tenantId: string, f: NewFile): Promise<FileRow> {
  const id = crypto.randomUUID();
  const objectKey = fileKey(tenantId, id);
  await store.blobs.put(objectKey, f.bytes, { contentType: f.contentType });
  try {
    const [row] = await store.db
      .insert(files)
      .values({
        id,
        tenantId,
        filename: f.filename,
        purpose: f.purpose,
        contentType: f.contentType,
        bytes: f.bytes.byteLength,
        contentHash: f.contentHash,
        objectKey,
      })
      .returning();
    return row;
  } catch (err) {
    await store.blobs.delete(objectKey).catch((e: unknown) => {
      store.log?.('warn', 'orphan file blob left', { key: objectKey, err: String(e) });
    });
    throw err;
  }
}

/** The tenant's files with these ids, in the order asked; 404 naming the first that is not the tenant's. */
export async function findFiles(db: Database, tenantId: string, ids: readonly string[]): Promise<FileRow[]> {
  const wanted = [...new Set(ids.map((id) => id.toLowerCase()))];
  for (const id of wanted) if (!isUuid(id)) throw notFound('file', id);
  const rows =
    wanted.length === 0
      ? []
      : await db
          .select()
          .from(files)
          .where(and(eq(files.tenantId, tenantId), inArray(files.id, wanted)));
  const byId = new Map(rows.map((r) => [r.id, r]));
  return wanted.map((id) => {
    const row = byId.get(id);
    if (!row) throw notFound('file', id);
    return row;
  });
}

export async function findFile(db: Database, tenantId: string, id: string): Promise<FileRow> {
  const [row] = await findFiles(db, tenantId, [id]);
  return row;
}

/** Deletes the file and removes it from every vector store; 404 when the tenant has no such file. */
export async function deleteFile(store: DocumentStore, tenantId: string, id: string): Promise<void> {
  const file = await findFile(store.db, tenantId, id);
  const attached = await store.db.transaction(async (tx) => {
    // the row lock waits for attaches in flight (their foreign-key check holds a key-share lock on it):
    // every document attached before it is seen below, every attach after it fails on the missing file
    const [locked] = await tx
      .select({ id: files.id })
      .from(files)
      .where(and(eq(files.id, file.id), eq(files.tenantId, tenantId)))
      .for('update');
    if (!locked) throw notFound('file', id);
    const docs = await tx
      .select()
      .from(documents)
      .where(and(eq(documents.tenantId, tenantId), eq(documents.fileId, file.id)));
    await deleteDocumentRows(tx, docs);
    await tx.delete(files).where(eq(files.id, file.id));
    await scheduleGc(tx, { tenantId, fileId: file.id, blobKeys: [file.objectKey] });
    return docs;
  });
  await deleteDocumentBlobs(store, attached);
  await store.blobs.delete(file.objectKey).catch((err: unknown) => {
    store.log?.('warn', 'file blob left for gc', { key: file.objectKey, err: String(err) });
  });
}
