// /v1/vector_stores/{id}/file_batches (src/openai/file-batches.ts): create (file_ids with shared
// attributes and chunking, or `files` each with its own), retrieve (with the SDK's poll hint), cancel,
// and list the batch's files.
import { eq } from 'drizzle-orm';
import type { Context } from 'hono';
import { Hono } from 'hono';
import { z } from 'zod';
import { AppError } from '../../../contracts/errors.ts';
import { documents, type FileBatch } from '../../db/schema.ts';
import {
  batchCounts,
  batchStatus,
  cancelFileBatch,
  createFileBatch,
  findFileBatch,
} from '../../openai/file-batches.ts';
import { findFiles } from '../../openai/files.ts';
import type { FileCounts } from '../../openai/statuses.ts';
import type { AppEnv } from '../../services.ts';
import { api, requireTenant } from '../auth.ts';
import { attributesSchema, jsonBody, unixSeconds } from '../validate.ts';
import { chunkingOf, chunkingStrategySchema, nowOf, POLL_AFTER_MS, pathVectorStore } from './common.ts';
import { listVectorStoreFiles } from './vector-store-files.ts';

/** Files in one batch: each is copied into a document in one transaction. */
export const MAX_BATCH_FILES = 100;

export const createFileBatchSchema = z
  .strictObject({
    file_ids: z.array(z.string().max(64)).min(1).max(MAX_BATCH_FILES).optional(),
    files: z
      .array(
        z.strictObject({
          file_id: z.string().max(64),
          attributes: attributesSchema.nullish(),
          chunking_strategy: chunkingStrategySchema.optional(),
        }),
      )
      .min(1)
      .max(MAX_BATCH_FILES)
      .optional(),
    attributes: attributesSchema.nullish(),
    chunking_strategy: chunkingStrategySchema.optional(),
  })
  .refine((b) => (b.file_ids === undefined) !== (b.files === undefined), {
    message: 'pass either file_ids or files',
    path: ['file_ids'],
  });

export function fileBatchObject(b: FileBatch, counts: FileCounts) {
  return {
    id: b.id,
    object: 'vector_store.files_batch' as const,
    created_at: unixSeconds(b.createdAt),
    vector_store_id: b.collectionId,
    status: batchStatus(b, counts),
    file_counts: counts,
  };
}

export function fileBatchRoutes(): Hono<AppEnv> {
  const r = new Hono<AppEnv>();

  const find = async (c: Context<AppEnv>) => {
    const tenantId = requireTenant(c);
    const v = await pathVectorStore(c, tenantId);
    const batch = await findFileBatch(api(c).db, tenantId, v.collection.id, c.req.param('batch') ?? '');
    return { collection: v.collection, batch };
  };
  const shaped = async (c: Context<AppEnv>, b: FileBatch) =>
    fileBatchObject(b, await batchCounts(api(c).db, b));

  r.post('/:vector_store/file_batches', async (c) => {
    const tenantId = requireTenant(c);
    const v = await pathVectorStore(c, tenantId);
    const body = await jsonBody(c, createFileBatchSchema);
    const deps = { ...api(c), log: c.get('services').log };
    const listed =
      body.files ??
      (body.file_ids ?? []).map((file_id) => ({
        file_id,
        attributes: body.attributes,
        chunking_strategy: body.chunking_strategy,
      }));
    const found = await findFiles(
      deps.db,
      tenantId,
      listed.map((f) => f.file_id),
    );
    if (found.length !== listed.length) throw new AppError('bad_request', 'a file is listed twice');
    const batch = await createFileBatch(
      deps,
      tenantId,
      v.collection.id,
      listed.map((f, i) => ({
        file: found[i],
        attributes: f.attributes ?? {},
        chunking: chunkingOf(f.chunking_strategy),
      })),
    );
    return c.json(await shaped(c, batch));
  });

  r.get('/:vector_store/file_batches/:batch', async (c) => {
    const { batch } = await find(c);
    c.header('openai-poll-after-ms', String(POLL_AFTER_MS));
    return c.json(await shaped(c, batch));
  });

  r.post('/:vector_store/file_batches/:batch/cancel', async (c) => {
    const { batch } = await find(c);
    // no body is taken (the SDKs send none); one that is sent must be an empty JSON object
    if ((await c.req.raw.clone().text()) !== '') await jsonBody(c, z.strictObject({}));
    const cancelled = await cancelFileBatch({ ...api(c), log: c.get('services').log }, batch, nowOf(c));
    return c.json(await shaped(c, cancelled));
  });

  r.get('/:vector_store/file_batches/:batch/files', async (c) => {
    const { collection, batch } = await find(c);
    return c.json(await listVectorStoreFiles(c, collection, eq(documents.batchId, batch.id)));
  });

  return r;
}
