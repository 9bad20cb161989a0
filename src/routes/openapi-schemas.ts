// The response shapes of the API as zod schemas, and the registry that names request and response
// schemas for /openapi.json (components). Documentation only: routes build their responses with the
// *Object functions beside them, and the API tests check those against what is documented here.
import { z } from 'zod';
import { DOCUMENT_STATUSES } from '../db/schema.ts';
import { ERROR_STATUS } from '../../contracts/errors.ts';
import { attributeFilterSchema } from '../retrieval/filters.ts';
import { createKeySchema, createTenantSchema } from './admin.ts';
import { createCollectionSchema } from './collections.ts';
import { updateDocumentSchema } from './documents.ts';
import { searchBodySchema } from './search.ts';
import { jsonUploadSchema } from './upload-body.ts';

export const reg = z.registry<{ id: string }>();
export const named = <S extends z.ZodType>(id: string, s: S): S => {
  reg.add(s, { id });
  return s;
};

named('AttributeFilter', attributeFilterSchema);
const id = z.string().describe('Object id (uuid).');
const unix = z.number().int().describe('Unix seconds.');
export const listOf = (item: z.ZodType) =>
  z.object({
    object: z.literal('list'),
    data: z.array(item),
    first_id: id.nullable(),
    last_id: id.nullable(),
    has_more: z.boolean(),
  });

export const ErrorEnvelope = named(
  'Error',
  z.object({
    error: z.object({
      code: z.enum(Object.keys(ERROR_STATUS) as [string, ...string[]]),
      message: z.string(),
      request_id: z.string(),
      retryable: z.boolean().optional().describe('5xx only: whether retrying the same request can help.'),
      details: z.unknown().optional(),
    }),
  }),
);
export const Tenant = named(
  'Tenant',
  z.object({ id, object: z.literal('tenant'), name: z.string(), created_at: unix }),
);
export const ApiKey = named(
  'ApiKey',
  z.object({
    id,
    object: z.literal('api_key'),
    tenant_id: id,
    name: z.string(),
    prefix: z.string().describe('The visible start of the key.'),
    created_at: unix,
    revoked_at: unix.nullable(),
  }),
);
export const NewApiKey = named(
  'NewApiKey',
  ApiKey.extend({ key: z.string().describe('The key; shown only here, once.') }),
);
const Counts = z.object(
  Object.fromEntries([...DOCUMENT_STATUSES, 'total'].map((s) => [s, z.number().int()])),
);
export const Collection = named(
  'Collection',
  z.object({
    id,
    object: z.literal('collection'),
    name: z.string(),
    created_at: unix,
    embedding: z.object({ provider: z.string(), model: z.string(), dimension: z.number().int() }),
    chunking: z.object({ size: z.number().int(), overlap: z.number().int() }),
    metadata: z.record(z.string(), z.unknown()),
    document_counts: Counts,
  }),
);
export const Document = named(
  'Document',
  z.object({
    id,
    object: z.literal('document'),
    collection_id: id,
    filename: z.string(),
    content_type: z.string(),
    bytes: z.number().int(),
    sha256: z.string(),
    status: z.enum(DOCUMENT_STATUSES),
    last_error: z.object({ message: z.string() }).nullable(),
    attributes: z.record(z.string(), z.unknown()),
    ingest_job_id: z.string().describe('GET /v1/jobs/ingest/{ingest_job_id} follows ingestion.'),
    created_at: unix,
    updated_at: unix,
  }),
);
export const Deleted = (object: string) =>
  z.object({ id, object: z.literal(object), deleted: z.literal(true) });
export const SearchPage = named(
  'SearchResultsPage',
  z.object({
    object: z.literal('vector_store.search_results.page'),
    search_query: z.string(),
    data: z.array(
      z.object({
        file_id: id.describe('The document id.'),
        filename: z.string(),
        score: z.number().describe('Normalised RRF score in (0, 1].'),
        attributes: z.record(z.string(), z.unknown()),
        content: z.array(z.object({ type: z.literal('text'), text: z.string() })),
        chunk_id: id,
      }),
    ),
    has_more: z.boolean(),
    next_page: z.string().nullable(),
  }),
);
export const Job = named(
  'Job',
  z.object({
    id: z.string(),
    object: z.literal('job'),
    queue: z.enum(['ingest', 'gc']),
    state: z
      .enum(['pending', 'delivered', 'waiting', 'delayed', 'active', 'completed', 'failed', 'unknown'])
      .describe('pending: in the outbox, not yet relayed to the queue.'),
    attempts: z.number().int(),
    last_error: z.object({ message: z.string() }).nullable(),
    created_at: unix,
    delivered_at: unix.nullable(),
    document: z
      .object({
        id,
        status: z.enum(DOCUMENT_STATUSES),
        last_error: z.object({ message: z.string() }).nullable(),
      })
      .nullable()
      .optional()
      .describe('ingest jobs: the document (null once deleted).'),
  }),
);
named('CreateTenant', createTenantSchema);
named('CreateApiKey', createKeySchema);
named('CreateCollection', createCollectionSchema);
named('UploadDocumentJson', jsonUploadSchema);
named('UpdateDocument', updateDocumentSchema);
named('SearchRequest', searchBodySchema);
