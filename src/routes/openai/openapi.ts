// The OpenAI platform routes in /openapi.json: their response shapes (documentation only — the routes build
// their objects beside them, and test/integration/api-openai.test.ts checks those against these) and
// their paths, built with the document's own helpers (src/routes/openapi.ts).
import { z } from 'zod';
import { listOf, named } from '../openapi-schemas.ts';
import { embeddingsBodySchema } from './embeddings.ts';
import { createFileBatchSchema } from './file-batches.ts';
import { listFilesQuery } from './files.ts';
import { responseBodySchema } from './responses.ts';
import {
  attachFileSchema,
  listVectorStoreFilesQuery,
  updateVectorStoreFileSchema,
} from './vector-store-files.ts';
import {
  createVectorStoreSchema,
  updateVectorStoreSchema,
  vectorStoreSearchSchema,
} from './vector-stores.ts';
import { openAiListQuery } from './common.ts';

const id = z.string().describe('Object id (uuid).');
const unix = z.number().int().describe('Unix seconds.');
const counts = z.object({
  in_progress: z.number().int(),
  completed: z.number().int(),
  failed: z.number().int(),
  cancelled: z.number().int(),
  total: z.number().int(),
});
const staticChunking = z.object({
  type: z.literal('static'),
  static: z.object({ max_chunk_size_tokens: z.number().int(), chunk_overlap_tokens: z.number().int() }),
});

export const FileObject = named(
  'File',
  z.object({
    id,
    object: z.literal('file'),
    bytes: z.number().int(),
    created_at: unix,
    filename: z.string(),
    purpose: z.string(),
    status: z.literal('processed'),
    expires_at: z.null(),
    status_details: z.null(),
  }),
);
export const VectorStore = named(
  'VectorStore',
  z.object({
    id: id.describe('The collection id: every collection is a vector store.'),
    object: z.literal('vector_store'),
    created_at: unix,
    name: z.string(),
    usage_bytes: z.number().int().describe('Bytes of the files in the store.'),
    file_counts: counts,
    status: z.enum(['expired', 'in_progress', 'completed']),
    last_active_at: unix.nullable(),
    metadata: z.record(z.string(), z.unknown()),
    expires_after: z.object({ anchor: z.literal('last_active_at'), days: z.number().int() }).optional(),
    expires_at: unix.nullable(),
  }),
);
export const VectorStoreFile = named(
  'VectorStoreFile',
  z.object({
    id: id.describe('The file id; the document id for a document uploaded through /v1/collections.'),
    object: z.literal('vector_store.file'),
    created_at: unix,
    usage_bytes: z.number().int(),
    vector_store_id: id,
    status: z.enum(['in_progress', 'completed', 'failed', 'cancelled']),
    last_error: z
      .object({ code: z.enum(['server_error', 'unsupported_file', 'invalid_file']), message: z.string() })
      .nullable(),
    attributes: z.record(z.string(), z.unknown()),
    chunking_strategy: staticChunking,
  }),
);
export const FileBatch = named(
  'VectorStoreFileBatch',
  z.object({
    id,
    object: z.literal('vector_store.files_batch'),
    created_at: unix,
    vector_store_id: id,
    status: z.enum(['in_progress', 'completed', 'cancelled', 'failed']),
    file_counts: counts,
  }),
);
export const VectorStoreSearchPage = named(
  'VectorStoreSearchResultsPage',
  z.object({
    object: z.literal('vector_store.search_results.page'),
    search_query: z.array(z.string()),
    data: z.array(
      z.object({
        file_id: id,
        filename: z.string(),
        score: z.number().describe('Normalised RRF score in (0, 1].'),
        attributes: z.record(z.string(), z.unknown()),
        content: z.array(z.object({ type: z.literal('text'), text: z.string() })),
      }),
    ),
    has_more: z.literal(false),
    next_page: z.null(),
  }),
);
export const ResponseObject = named(
  'Response',
  z
    .object({
      id,
      object: z.literal('response'),
      created_at: unix,
      status: z.enum(['in_progress', 'completed', 'incomplete', 'failed']),
      error: z.object({ code: z.string(), message: z.string() }).nullable(),
      incomplete_details: z.object({ reason: z.literal('max_output_tokens') }).nullable(),
      model: z.string(),
      output: z
        .array(z.record(z.string(), z.unknown()))
        .describe('A file_search_call item (when the tool ran), then the assistant message.'),
      previous_response_id: id.nullable(),
      usage: z.record(z.string(), z.unknown()).nullable(),
      kvrag: z
        .record(z.string(), z.unknown())
        .optional()
        .describe('kvrag extension: plan, citations (with file_id), cached_answer, runner, timings.'),
    })
    .passthrough(),
);
export const ResponseInputItem = named(
  'ResponseInputItem',
  z
    .object({
      id: z.string().describe('The id given with the item, or msg_… / fs_… when it had none.'),
      type: z.enum(['message', 'file_search_call']),
      role: z.enum(['user', 'system', 'developer', 'assistant']).optional(),
      status: z.string().optional(),
      content: z
        .array(z.object({ type: z.enum(['input_text', 'output_text']), text: z.string() }).passthrough())
        .optional(),
    })
    .passthrough(),
);
export const OpenAiErrorObject = named(
  'OpenAIError',
  z.object({
    error: z.object({
      message: z.string(),
      type: z.string(),
      param: z.string().nullable(),
      code: z.string().describe('kvrag’s error code.'),
      request_id: z.string(),
    }),
  }),
);

/** The helpers of the document being built (src/routes/openapi.ts). */
export interface DocHelpers {
  ref(s: z.ZodType): unknown;
  inline(s: z.ZodType): unknown;
  json(schema: unknown): Record<string, unknown>;
  query(s: z.ZodObject): unknown[];
  path(...names: string[]): unknown[];
  op(summary: string, security: string[], o: Record<string, unknown>): unknown;
}

export function openAiPaths(d: DocHelpers): Record<string, Record<string, unknown>> {
  const tenant = ['tenant API key'];
  const ok = (schema: unknown, description = 'OK') => ({ '200': { description, ...d.json(schema) } });
  const errors = (...codes: number[]) =>
    Object.fromEntries(
      codes.map((c) => [String(c), { description: `error ${c}`, ...d.json(d.ref(OpenAiErrorObject)) }]),
    );
  const deleted = (object: string) =>
    ok({ type: 'object', properties: { id: {}, object: { const: object }, deleted: { const: true } } });
  const vs = d.path('vector_store');
  return {
    '/v1/files': {
      post: d.op('Upload a file (multipart: file, purpose)', tenant, {
        requestBody: {
          content: {
            'multipart/form-data': {
              schema: {
                type: 'object',
                required: ['file', 'purpose'],
                properties: {
                  file: { type: 'string', contentMediaType: 'application/octet-stream' },
                  purpose: { type: 'string' },
                },
              },
            },
          },
        },
        responses: { ...ok(d.ref(FileObject)), ...errors(400, 401, 403, 413, 415) },
      }),
      get: d.op('List files', tenant, {
        parameters: d.query(listFilesQuery),
        responses: { ...ok(listOf(FileObject)), ...errors(400, 401, 403) },
      }),
    },
    '/v1/files/{file}': {
      get: d.op('Retrieve a file', tenant, {
        parameters: d.path('file'),
        responses: { ...ok(d.ref(FileObject)), ...errors(401, 403, 404) },
      }),
      delete: d.op('Delete a file and remove it from every vector store', tenant, {
        parameters: d.path('file'),
        responses: { ...deleted('file'), ...errors(401, 403, 404) },
      }),
    },
    '/v1/files/{file}/content': {
      get: d.op('The uploaded bytes', tenant, {
        parameters: d.path('file'),
        responses: { '200': { description: 'The file as uploaded' }, ...errors(401, 403, 404) },
      }),
    },
    '/v1/vector_stores': {
      post: d.op('Create a vector store (a collection), optionally with files', tenant, {
        requestBody: d.json(d.inline(createVectorStoreSchema)),
        responses: { ...ok(d.ref(VectorStore)), ...errors(400, 401, 403, 404, 409) },
      }),
      get: d.op('List vector stores (every collection)', tenant, {
        parameters: d.query(openAiListQuery),
        responses: { ...ok(listOf(VectorStore)), ...errors(400, 401, 403) },
      }),
    },
    '/v1/vector_stores/{vector_store}': {
      get: d.op('Retrieve a vector store', tenant, {
        parameters: vs,
        responses: { ...ok(d.ref(VectorStore)), ...errors(401, 403, 404) },
      }),
      post: d.op('Update name, metadata, expires_after', tenant, {
        parameters: vs,
        requestBody: d.json(d.inline(updateVectorStoreSchema)),
        responses: { ...ok(d.ref(VectorStore)), ...errors(400, 401, 403, 404) },
      }),
      delete: d.op('Delete a vector store (its collection, documents and chunks)', tenant, {
        parameters: vs,
        responses: { ...deleted('vector_store.deleted'), ...errors(401, 403, 404) },
      }),
    },
    '/v1/vector_stores/{vector_store}/search': {
      post: d.op('Hybrid search; query a string or several, compound filters', tenant, {
        parameters: vs,
        requestBody: d.json(d.inline(vectorStoreSearchSchema)),
        responses: { ...ok(d.ref(VectorStoreSearchPage)), ...errors(400, 401, 403, 404) },
      }),
    },
    '/v1/vector_stores/{vector_store}/files': {
      post: d.op('Attach a file (a copy becomes a document, queued for ingestion)', tenant, {
        parameters: vs,
        requestBody: d.json(d.inline(attachFileSchema)),
        responses: { ...ok(d.ref(VectorStoreFile)), ...errors(400, 401, 403, 404, 409) },
      }),
      get: d.op('List vector store files', tenant, {
        parameters: [...vs, ...d.query(listVectorStoreFilesQuery)],
        responses: { ...ok(listOf(VectorStoreFile)), ...errors(400, 401, 403, 404) },
      }),
    },
    '/v1/vector_stores/{vector_store}/files/{file}': {
      get: d.op('Retrieve a vector store file (openai-poll-after-ms header)', tenant, {
        parameters: d.path('vector_store', 'file'),
        responses: { ...ok(d.ref(VectorStoreFile)), ...errors(401, 403, 404) },
      }),
      post: d.op('Replace its attributes', tenant, {
        parameters: d.path('vector_store', 'file'),
        requestBody: d.json(d.inline(updateVectorStoreFileSchema)),
        responses: { ...ok(d.ref(VectorStoreFile)), ...errors(400, 401, 403, 404) },
      }),
      delete: d.op('Remove it from the store (the file stays)', tenant, {
        parameters: d.path('vector_store', 'file'),
        responses: { ...deleted('vector_store.file.deleted'), ...errors(401, 403, 404) },
      }),
    },
    '/v1/vector_stores/{vector_store}/files/{file}/content': {
      get: d.op('The parsed chunks', tenant, {
        parameters: d.path('vector_store', 'file'),
        responses: { ...ok({ type: 'object' }), ...errors(401, 403, 404) },
      }),
    },
    '/v1/vector_stores/{vector_store}/file_batches': {
      post: d.op('Attach many files in one transaction', tenant, {
        parameters: vs,
        requestBody: d.json(d.inline(createFileBatchSchema)),
        responses: { ...ok(d.ref(FileBatch)), ...errors(400, 401, 403, 404, 409) },
      }),
    },
    '/v1/vector_stores/{vector_store}/file_batches/{batch}': {
      get: d.op('Retrieve a file batch (openai-poll-after-ms header)', tenant, {
        parameters: d.path('vector_store', 'batch'),
        responses: { ...ok(d.ref(FileBatch)), ...errors(401, 403, 404) },
      }),
    },
    '/v1/vector_stores/{vector_store}/file_batches/{batch}/cancel': {
      post: d.op('Cancel: remove its files still in progress', tenant, {
        parameters: d.path('vector_store', 'batch'),
        responses: { ...ok(d.ref(FileBatch)), ...errors(400, 401, 403, 404) },
      }),
    },
    '/v1/vector_stores/{vector_store}/file_batches/{batch}/files': {
      get: d.op('List the batch’s files', tenant, {
        parameters: [...d.path('vector_store', 'batch'), ...d.query(listVectorStoreFilesQuery)],
        responses: { ...ok(listOf(VectorStoreFile)), ...errors(400, 401, 403, 404) },
      }),
    },
    '/v1/responses': {
      post: d.op(
        'Create a response (file_search over vector stores); stream=true sends OpenAI’s events as SSE',
        tenant,
        {
          requestBody: d.json(d.inline(responseBodySchema)),
          responses: {
            '200': {
              description: 'The response, or its events (text/event-stream)',
              content: {
                'application/json': { schema: d.ref(ResponseObject) },
                'text/event-stream': { schema: { type: 'string' } },
              },
            },
            ...errors(400, 401, 403, 404, 415, 502, 503),
          },
        },
      ),
    },
    '/v1/responses/{response}': {
      get: d.op('Retrieve a stored response', tenant, {
        parameters: d.path('response'),
        responses: { ...ok(d.ref(ResponseObject)), ...errors(400, 401, 403, 404) },
      }),
      delete: d.op('Delete a stored response', tenant, {
        parameters: d.path('response'),
        responses: { ...deleted('response'), ...errors(401, 403, 404) },
      }),
    },
    '/v1/responses/{response}/input_items': {
      get: d.op(
        'List the input items of a stored response (this turn’s own; not the earlier turns’)',
        tenant,
        {
          parameters: [...d.path('response'), ...d.query(openAiListQuery)],
          responses: { ...ok(listOf(ResponseInputItem)), ...errors(400, 401, 403, 404) },
        },
      ),
    },
    '/v1/embeddings': {
      post: d.op('Embeddings with a vector store’s provider (model = its id) or the hash model', tenant, {
        requestBody: d.json(d.inline(embeddingsBodySchema)),
        responses: { ...ok({ type: 'object' }), ...errors(400, 401, 403, 404) },
      }),
    },
  };
}
