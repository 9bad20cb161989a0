// /v1/files (OpenAI Files): upload (multipart `file` + `purpose`; the document upload's size limit,
// formats and checks, upload-body.ts), list (cursor, `purpose`, `order`), retrieve, content, delete
// (which also removes the file from every vector store). Use cases in src/openai/files.ts.
import { and, eq } from 'drizzle-orm';
import { Hono } from 'hono';
import { z } from 'zod';
import { AppError, parseWith } from '../../../contracts/errors.ts';
import { type FileRow, files } from '../../db/schema.ts';
import { parseContentType } from '../../ingest/parse/index.ts';
import { createFile, deleteFile, FILE_PURPOSES, findFile } from '../../openai/files.ts';
import type { AppEnv } from '../../services.ts';
import { api, requireTenant } from '../auth.ts';
import { sha256Hex } from '../keys.ts';
import { paginate, toPage } from '../pagination.ts';
import { readUpload } from '../upload-body.ts';
import { queryParams, unixSeconds } from '../validate.ts';
import { openAiListQuery } from './common.ts';

export const listFilesQuery = openAiListQuery.extend({ purpose: z.string().max(64).optional() });
const purposeSchema = z.object({ purpose: z.enum(FILE_PURPOSES) });

export function fileObject(f: FileRow) {
  return {
    id: f.id,
    object: 'file' as const,
    bytes: f.bytes,
    created_at: unixSeconds(f.createdAt),
    filename: f.filename,
    purpose: f.purpose,
    status: 'processed' as const,
    expires_at: null,
    status_details: null,
  };
}

export function fileRoutes(): Hono<AppEnv> {
  const r = new Hono<AppEnv>();

  r.post('/', async (c) => {
    const tenantId = requireTenant(c);
    if (parseContentType(c.req.header('content-type')).mediaType !== 'multipart/form-data')
      throw new AppError(
        'unsupported_media_type',
        'upload a file as multipart/form-data with fields "file" and "purpose"',
      );
    const services = c.get('services');
    const upload = await readUpload(c, services.config.maxUploadBytes);
    const { purpose } = parseWith(purposeSchema, upload.fields, 'form fields');
    const row = await createFile({ ...api(c), log: services.log }, tenantId, {
      bytes: upload.bytes,
      filename: upload.filename,
      contentType: upload.contentType,
      contentHash: await sha256Hex(upload.bytes),
      purpose,
    });
    return c.json(fileObject(row));
  });

  r.get('/', async (c) => {
    const tenantId = requireTenant(c);
    const q = queryParams(c, listFilesQuery);
    const { db } = api(c);
    const scope = and(eq(files.tenantId, tenantId), q.purpose ? eq(files.purpose, q.purpose) : undefined)!;
    const { rows, hasMore } = await paginate(db, files, scope, q, (where, order, limit) =>
      db
        .select()
        .from(files)
        .where(where)
        .orderBy(...order)
        .limit(limit),
    );
    return c.json(toPage(rows, hasMore, fileObject));
  });

  r.get('/:file', async (c) =>
    c.json(fileObject(await findFile(api(c).db, requireTenant(c), c.req.param('file')))),
  );

  r.get('/:file/content', async (c) => {
    const file = await findFile(api(c).db, requireTenant(c), c.req.param('file'));
    const stream = await api(c).blobs.getStream(file.objectKey);
    if (!stream) throw new AppError('internal', `the bytes of file ${file.id} are missing from storage`);
    return new Response(stream, {
      headers: {
        'content-type': file.contentType,
        'content-length': String(file.bytes),
        'content-disposition': `attachment; filename*=UTF-8''${encodeURIComponent(file.filename)}`,
        'x-request-id': c.get('requestId'),
      },
    });
  });

  r.delete('/:file', async (c) => {
    const tenantId = requireTenant(c);
    const id = c.req.param('file');
    await deleteFile({ ...api(c), log: c.get('services').log }, tenantId, id);
    return c.json({ id: id.toLowerCase(), object: 'file' as const, deleted: true });
  });

  return r;
}
