// /v1/vector_stores/{id}/files (src/openai/vector-store-files.ts): attach a file (attributes, chunking),
// list (cursor, `filter` by status), retrieve (with the SDK's poll hint), update attributes, delete
// (the file stays in /v1/files) and `/content`, the parsed chunks. Status in_progress / completed /
// failed with `last_error` comes from the document's ingest lifecycle (src/openai/statuses.ts).
import { and, eq, inArray, type SQL } from 'drizzle-orm';
import type { Context } from 'hono';
import { Hono } from 'hono';
import { z } from 'zod';
import { type Collection, type Document, documents } from '../../db/schema.ts';
import { removeDocuments } from '../../documents/remove.ts';
import { findFile } from '../../openai/files.ts';
import { documentStatusesOf, fileStatusOf, lastErrorOf } from '../../openai/statuses.ts';
import {
  attachFiles,
  fileChunkTexts,
  findVectorStoreFile,
  setFileAttributes,
  vectorStoreFileId,
  vectorStoreFileIdOf,
} from '../../openai/vector-store-files.ts';
import type { AppEnv } from '../../services.ts';
import { api, requireTenant } from '../auth.ts';
import { paginate, toPage } from '../pagination.ts';
import { attributesSchema, jsonBody, queryParams, unixSeconds } from '../validate.ts';
import {
  chunkingOf,
  chunkingStrategyOf,
  chunkingStrategySchema,
  openAiListQuery,
  POLL_AFTER_MS,
  pathVectorStore,
} from './common.ts';

export const attachFileSchema = z.strictObject({
  file_id: z.string().max(64),
  attributes: attributesSchema.nullish(),
  chunking_strategy: chunkingStrategySchema.optional(),
});
export const updateVectorStoreFileSchema = z.strictObject({ attributes: attributesSchema.nullable() });
export const listVectorStoreFilesQuery = openAiListQuery.extend({
  filter: z.enum(['in_progress', 'completed', 'failed', 'cancelled']).optional(),
});

export function vectorStoreFileObject(d: Document, collection: Collection) {
  return {
    id: vectorStoreFileIdOf(d),
    object: 'vector_store.file' as const,
    created_at: unixSeconds(d.createdAt),
    usage_bytes: d.bytes,
    vector_store_id: d.collectionId,
    status: fileStatusOf(d.status),
    last_error: lastErrorOf(d.status, d.error),
    attributes: d.attributes,
    chunking_strategy: chunkingStrategyOf(d.chunkSettings ?? collection.chunkSettings),
  };
}

/** One page of the collection's vector store files within `scope` (a batch's), filtered by status. */
export async function listVectorStoreFiles(c: Context<AppEnv>, collection: Collection, scope?: SQL) {
  const q = queryParams(c, listVectorStoreFilesQuery);
  const { db } = api(c);
  const where = and(
    eq(documents.tenantId, collection.tenantId),
    eq(documents.collectionId, collection.id),
    scope,
    q.filter ? inArray(documents.status, documentStatusesOf(q.filter)) : undefined,
  )!;
  const { rows, hasMore } = await paginate(
    db,
    documents,
    where,
    q,
    (w, order, limit) =>
      db
        .select()
        .from(documents)
        .where(w)
        .orderBy(...order)
        .limit(limit),
    { id: vectorStoreFileId, createdAt: documents.createdAt },
  );
  return toPage(
    rows.map((d) => ({ id: vectorStoreFileIdOf(d), d })),
    hasMore,
    ({ d }) => vectorStoreFileObject(d, collection),
  );
}

export function vectorStoreFileRoutes(): Hono<AppEnv> {
  const r = new Hono<AppEnv>();

  const find = async (c: Context<AppEnv>) => {
    const tenantId = requireTenant(c);
    const v = await pathVectorStore(c, tenantId);
    const doc = await findVectorStoreFile(api(c).db, tenantId, v.collection.id, c.req.param('file') ?? '');
    return { collection: v.collection, doc };
  };

  r.post('/:vector_store/files', async (c) => {
    const tenantId = requireTenant(c);
    const v = await pathVectorStore(c, tenantId);
    const body = await jsonBody(c, attachFileSchema);
    const deps = { ...api(c), log: c.get('services').log };
    const file = await findFile(deps.db, tenantId, body.file_id);
    const [doc] = await attachFiles(deps, tenantId, v.collection.id, [
      { file, attributes: body.attributes ?? {}, chunking: chunkingOf(body.chunking_strategy) },
    ]);
    return c.json(vectorStoreFileObject(doc, v.collection));
  });

  r.get('/:vector_store/files', async (c) => {
    const v = await pathVectorStore(c, requireTenant(c));
    return c.json(await listVectorStoreFiles(c, v.collection));
  });

  r.get('/:vector_store/files/:file', async (c) => {
    const { collection, doc } = await find(c);
    c.header('openai-poll-after-ms', String(POLL_AFTER_MS));
    return c.json(vectorStoreFileObject(doc, collection));
  });

  r.post('/:vector_store/files/:file', async (c) => {
    const { collection, doc } = await find(c);
    const body = await jsonBody(c, updateVectorStoreFileSchema);
    const row = await setFileAttributes(api(c).db, doc, body.attributes ?? {});
    return c.json(vectorStoreFileObject(row, collection));
  });

  r.delete('/:vector_store/files/:file', async (c) => {
    const { doc } = await find(c);
    await removeDocuments({ ...api(c), log: c.get('services').log }, [doc]);
    return c.json({
      id: vectorStoreFileIdOf(doc),
      object: 'vector_store.file.deleted' as const,
      deleted: true,
    });
  });

  r.get('/:vector_store/files/:file/content', async (c) => {
    const { doc } = await find(c);
    const texts = await fileChunkTexts(api(c).db, doc);
    return c.json({
      object: 'vector_store.file_content.page' as const,
      data: texts.map((text) => ({ type: 'text' as const, text })),
      has_more: false,
      next_page: null,
    });
  });

  return r;
}
