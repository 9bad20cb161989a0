// /v1/collections/:collection/documents: upload (JSON text or multipart file), get, list (cursor
// pagination, status filter), update attributes, raw content, delete.
//
// Upload: validated before anything is written (upload-body.ts); identical content already in the
// collection returns that document (200, not 201); otherwise src/documents/add.ts stores it (blob, then
// row + `ingest` outbox row in one transaction; nothing left behind on failure). Delete:
// src/documents/remove.ts (row + `gc` outbox row in one transaction, then the blob).
import { and, eq, inArray, sql } from 'drizzle-orm';
import { Hono } from 'hono';
import { z } from 'zod';
import { chunks, type Document, DOCUMENT_STATUSES, documents, kvArtifacts } from '../db/schema.ts';
import type { Database } from '../db/types.ts';
import type { AppEnv } from '../services.ts';
import { api, requireTenant } from './auth.ts';
import { findCollection } from './collections.ts';
import { isForeignKeyViolation, isUniqueViolation } from '../db/errors.ts';
import { addDocuments } from '../documents/add.ts';
import { removeDocuments } from '../documents/remove.ts';
import { ingestJobId } from '../queue/job-outbox.ts';
import { sha256Hex } from './keys.ts';
import { listQuerySchema, paginate, toPage } from './pagination.ts';
import { readUpload } from './upload-body.ts';
import { notFound } from '../db/ids.ts';
import { attributesSchema, jsonBody, pathId, queryParams, unixSeconds } from './validate.ts';

export const listDocumentsQuerySchema = listQuerySchema.extend({
  status: z.enum(DOCUMENT_STATUSES).optional(),
});

export const updateDocumentSchema = z.strictObject({ attributes: attributesSchema });

/** What ingestion produced for a document: its chunks, and the bytes of their stored KV artifacts. */
export interface DocumentStats {
  chunks: number;
  artifactBytes: number;
}

/**
 * Chunk counts and ready KV artifact bytes (every served model's; an artifact shared by two chunks of a
 * document counted once) of the tenant's documents `ids`.
 */
export async function documentStats(
  db: Database,
  tenantId: string,
  ids: readonly string[],
): Promise<Map<string, DocumentStats>> {
  const out = new Map(ids.map((id) => [id, { chunks: 0, artifactBytes: 0 }]));
  if (ids.length === 0) return out;
  const mine = and(eq(chunks.tenantId, tenantId), inArray(chunks.documentId, [...ids]));
  const counts = await db
    .select({ doc: chunks.documentId, n: sql<number>`count(*)::int` })
    .from(chunks)
    .where(mine)
    .groupBy(chunks.documentId);
  for (const r of counts) out.get(r.doc)!.chunks = Number(r.n);
  const artifacts = await db
    .selectDistinct({ doc: chunks.documentId, id: kvArtifacts.id, bytes: kvArtifacts.bytes })
    .from(chunks)
    .innerJoin(
      kvArtifacts,
      and(eq(kvArtifacts.chunkHash, chunks.contentHash), eq(kvArtifacts.status, 'ready')),
    )
    .where(mine);
  for (const a of artifacts) out.get(a.doc)!.artifactBytes += Number(a.bytes ?? 0);
  return out;
}

export function documentObject(d: Document, stats: DocumentStats = { chunks: 0, artifactBytes: 0 }) {
  return {
    id: d.id,
    object: 'document' as const,
    collection_id: d.collectionId,
    filename: d.filename,
    content_type: d.contentType,
    bytes: d.bytes,
    sha256: d.contentHash,
    status: d.status,
    last_error: d.error ? { message: d.error } : null,
    attributes: d.attributes,
    /** Follow ingestion with GET /v1/jobs/ingest/{ingest_job_id}. */
    ingest_job_id: ingestJobId(d.id),
    chunk_count: stats.chunks,
    artifact_bytes: stats.artifactBytes,
    created_at: unixSeconds(d.createdAt),
    updated_at: unixSeconds(d.updatedAt),
  };
}

export function documentRoutes(): Hono<AppEnv> {
  const r = new Hono<AppEnv>();

  r.post('/:collection/documents', async (c) => {
    const tenantId = requireTenant(c);
    const collection = await findCollection(c, tenantId);
    const services = c.get('services');
    const { db, blobs } = api(c);
    const upload = await readUpload(c, services.config.maxUploadBytes);
    const contentHash = await sha256Hex(upload.bytes);
    const sameContent = and(
      eq(documents.tenantId, tenantId),
      eq(documents.collectionId, collection.id),
      eq(documents.contentHash, contentHash),
    );
    const existing = async () => (await db.select().from(documents).where(sameContent))[0];
    const found = await existing();
    if (found) return c.json(documentObject(found), 200);

    try {
      const [row] = await addDocuments({ db, blobs, log: services.log }, [
        {
          tenantId,
          collectionId: collection.id,
          bytes: upload.bytes,
          filename: upload.filename,
          contentType: upload.contentType,
          contentHash,
          attributes: upload.attributes,
        },
      ]);
      return c.json(documentObject(row), 201);
    } catch (err) {
      // an identical upload committed first: that one is the document
      if (isUniqueViolation(err)) {
        const winner = await existing();
        if (winner) return c.json(documentObject(winner), 200);
      }
      // the collection was deleted while the upload was in flight
      if (isForeignKeyViolation(err)) throw notFound('collection', collection.id);
      throw err;
    }
  });

  r.get('/:collection/documents', async (c) => {
    const tenantId = requireTenant(c);
    const collection = await findCollection(c, tenantId);
    const q = queryParams(c, listDocumentsQuerySchema);
    const { db } = api(c);
    const scope = and(
      eq(documents.tenantId, tenantId),
      eq(documents.collectionId, collection.id),
      q.status ? eq(documents.status, q.status) : undefined,
    )!;
    const { rows, hasMore } = await paginate(db, documents, scope, q, (where, order, limit) =>
      db
        .select()
        .from(documents)
        .where(where)
        .orderBy(...order)
        .limit(limit),
    );
    const stats = await documentStats(
      db,
      tenantId,
      rows.map((d) => d.id),
    );
    return c.json(toPage(rows, hasMore, (d) => documentObject(d, stats.get(d.id))));
  });

  const findDocument = async (c: Parameters<typeof findCollection>[0]) => {
    const tenantId = requireTenant(c);
    const collection = await findCollection(c, tenantId);
    const id = pathId(c, 'document', 'document');
    const [row] = await api(c)
      .db.select()
      .from(documents)
      .where(
        and(
          eq(documents.id, id),
          eq(documents.tenantId, tenantId),
          eq(documents.collectionId, collection.id),
        ),
      );
    if (!row) throw notFound('document', id);
    return row;
  };

  r.get('/:collection/documents/:document', async (c) => {
    const doc = await findDocument(c);
    const stats = await documentStats(api(c).db, doc.tenantId, [doc.id]);
    return c.json(documentObject(doc, stats.get(doc.id)));
  });

  // Replaces the document's attributes; search filters see them at once (merged under chunk attributes).
  r.post('/:collection/documents/:document', async (c) => {
    const doc = await findDocument(c);
    const body = await jsonBody(c, updateDocumentSchema);
    const [row] = await api(c)
      .db.update(documents)
      .set({ attributes: body.attributes })
      .where(and(eq(documents.id, doc.id), eq(documents.tenantId, doc.tenantId)))
      .returning();
    if (!row) throw notFound('document', doc.id);
    return c.json(documentObject(row));
  });

  r.get('/:collection/documents/:document/content', async (c) => {
    const doc = await findDocument(c);
    const stream = doc.objectKey ? await api(c).blobs.getStream(doc.objectKey) : null;
    if (!stream) throw notFound('content of document', doc.id);
    return new Response(stream, {
      headers: {
        'content-type': doc.contentType,
        'content-length': String(doc.bytes),
        'content-disposition': `attachment; filename*=UTF-8''${encodeURIComponent(doc.filename)}`,
        // the uploader chose the content and its type: a browser must not sniff HTML or script into it
        'x-content-type-options': 'nosniff',
        'x-request-id': c.get('requestId'),
      },
    });
  });

  r.delete('/:collection/documents/:document', async (c) => {
    const doc = await findDocument(c);
    await removeDocuments({ ...api(c), log: c.get('services').log }, [doc]);
    return c.json({ id: doc.id, object: 'document.deleted' as const, deleted: true });
  });

  return r;
}
