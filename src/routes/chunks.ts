// GET /v1/chunks/:chunk — one chunk of the caller's documents, with its text: what a citation (`chunk_id`
// of /v1/query's citations) or a search hit points at. Another tenant's chunk is a 404 like a missing one.
import { and, eq } from 'drizzle-orm';
import { Hono } from 'hono';
import { chunks, documents } from '../db/schema.ts';
import type { AppEnv } from '../services.ts';
import { api, requireTenant } from './auth.ts';
import { notFound } from '../db/ids.ts';
import { pathId } from './validate.ts';

export function chunkRoutes(): Hono<AppEnv> {
  const r = new Hono<AppEnv>();
  r.get('/:chunk', async (c) => {
    const tenantId = requireTenant(c);
    const id = pathId(c, 'chunk', 'chunk');
    const [row] = await api(c)
      .db.select({
        id: chunks.id,
        collectionId: chunks.collectionId,
        documentId: chunks.documentId,
        filename: documents.filename,
        ordinal: chunks.ordinal,
        text: chunks.text,
        tokenCount: chunks.tokenCount,
      })
      .from(chunks)
      .innerJoin(documents, eq(documents.id, chunks.documentId))
      .where(and(eq(chunks.id, id), eq(chunks.tenantId, tenantId)));
    if (!row) throw notFound('chunk', id);
    return c.json({
      id: row.id,
      object: 'chunk' as const,
      collection_id: row.collectionId,
      document_id: row.documentId,
      filename: row.filename,
      ordinal: row.ordinal,
      text: row.text,
      token_count: row.tokenCount,
    });
  });
  return r;
}
