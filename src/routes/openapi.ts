// GET /openapi.json — OpenAPI 3.1, generated from the same zod schemas the routes validate with (request
// bodies and query strings) plus the response shapes below, through zod's JSON Schema output (draft
// 2020-12, which OpenAPI 3.1 uses). Named schemas become components; recursion (filters) becomes $ref.
import { Hono } from 'hono';
import { z } from 'zod';
import type { AppEnv } from '../services.ts';
import { createKeySchema, createTenantSchema } from './admin.ts';
import { createCollectionSchema } from './collections.ts';
import { chatBodySchema } from './chat.ts';
import { listDocumentsQuerySchema, updateDocumentSchema } from './documents.ts';
import {
  ApiKey,
  Chunk,
  Collection,
  Deleted,
  Document,
  ErrorEnvelope,
  Job,
  listOf,
  NewApiKey,
  QueryAnswer,
  RunnerList,
  reg,
  SearchPage,
  Tenant,
} from './openapi-schemas.ts';
import { listQuerySchema } from './pagination.ts';
import { queryBodySchema } from './query.ts';
import { searchBodySchema } from './search.ts';
import { jsonUploadSchema } from './upload-body.ts';
import { openAiPaths } from './openai/openapi.ts';

function build() {
  const { schemas } = z.toJSONSchema(reg, {
    target: 'draft-2020-12',
    io: 'input',
    uri: (n) => `#/components/schemas/${n}`,
  });
  for (const s of Object.values(schemas)) {
    delete (s as Record<string, unknown>).$schema;
    delete (s as Record<string, unknown>).$id;
  }
  const ref = (s: z.ZodType) => ({ $ref: `#/components/schemas/${reg.get(s)!.id}` });
  const inline = (s: z.ZodType) => {
    const { $schema: _s, ...rest } = z.toJSONSchema(s, { target: 'draft-2020-12', io: 'input' }) as Record<
      string,
      unknown
    >;
    return rest;
  };
  const json = (schema: unknown) => ({ content: { 'application/json': { schema } } });
  const ok = (schema: unknown, description = 'OK', status = '200') => ({
    [status]: { description, ...json(schema) },
  });
  const errors = (...codes: number[]) =>
    Object.fromEntries(codes.map((c) => [String(c), { $ref: `#/components/responses/E${c}` }]));
  const query = (s: z.ZodObject) =>
    Object.entries(inline(s).properties as Record<string, unknown>).map(([name, schema]) => ({
      name,
      in: 'query',
      schema,
    }));
  const path = (...names: string[]) =>
    names.map((name) => ({ name, in: 'path', required: true, schema: { type: 'string' } }));

  const tenant = ['tenant API key'];
  function op(summary: string, security: string[], o: Record<string, unknown>) {
    return { summary, security: security.map(() => ({ bearer: [] })), ...o };
  }

  return {
    openapi: '3.1.0',
    info: {
      title: 'kvrag',
      version: '1',
      description:
        'RAG with precomputed chunk KV caches: collections, documents, search, answers; OpenAI’s Files, Vector Stores, Responses (file_search) and Embeddings.',
    },
    components: {
      schemas,
      securitySchemes: {
        bearer: {
          type: 'http',
          scheme: 'bearer',
          description: 'A tenant API key, or the admin key for /v1/admin.',
        },
      },
      responses: Object.fromEntries(
        [400, 401, 403, 404, 409, 413, 415, 502, 503].map((c) => [
          `E${c}`,
          { description: `error ${c}`, ...json(ref(ErrorEnvelope)) },
        ]),
      ),
    },
    paths: {
      '/v1/admin/tenants': {
        post: op('Create a tenant (admin)', ['admin'], {
          requestBody: json(ref(createTenantSchema)),
          responses: { ...ok(ref(Tenant), 'Created', '201'), ...errors(400, 401, 403) },
        }),
        get: op('List tenants (admin)', ['admin'], {
          parameters: query(listQuerySchema),
          responses: { ...ok(listOf(Tenant)), ...errors(400, 401, 403) },
        }),
      },
      '/v1/admin/tenants/{tenant}': {
        delete: op('Delete a tenant and all its data; storage is collected by gc jobs (admin)', ['admin'], {
          parameters: path('tenant'),
          responses: { ...ok(Deleted('tenant.deleted')), ...errors(401, 403, 404) },
        }),
        get: op('Get a tenant (admin)', ['admin'], {
          parameters: path('tenant'),
          responses: { ...ok(ref(Tenant)), ...errors(401, 403, 404) },
        }),
      },
      '/v1/admin/tenants/{tenant}/keys': {
        post: op('Create an API key; the key is returned only here (admin)', ['admin'], {
          parameters: path('tenant'),
          requestBody: json(ref(createKeySchema)),
          responses: { ...ok(ref(NewApiKey), 'Created', '201'), ...errors(400, 401, 403, 404) },
        }),
        get: op('List API keys (admin)', ['admin'], {
          parameters: [...path('tenant'), ...query(listQuerySchema)],
          responses: { ...ok(listOf(ApiKey)), ...errors(400, 401, 403, 404) },
        }),
      },
      '/v1/admin/tenants/{tenant}/keys/{key}': {
        delete: op('Revoke an API key (admin)', ['admin'], {
          parameters: path('tenant', 'key'),
          responses: { ...ok(ref(ApiKey)), ...errors(401, 403, 404) },
        }),
      },
      '/v1/collections': {
        post: op('Create a collection', tenant, {
          requestBody: json(ref(createCollectionSchema)),
          responses: { ...ok(ref(Collection), 'Created', '201'), ...errors(400, 401, 403, 409) },
        }),
        get: op('List collections', tenant, {
          parameters: query(listQuerySchema),
          responses: { ...ok(listOf(Collection)), ...errors(400, 401, 403) },
        }),
      },
      '/v1/collections/{collection}': {
        get: op('Get a collection', tenant, {
          parameters: path('collection'),
          responses: { ...ok(ref(Collection)), ...errors(401, 403, 404) },
        }),
        delete: op(
          'Delete a collection, its documents and chunks; storage is collected by a gc job',
          tenant,
          {
            parameters: path('collection'),
            responses: { ...ok(Deleted('collection.deleted')), ...errors(401, 403, 404) },
          },
        ),
      },
      '/v1/collections/{collection}/documents': {
        post: op(
          'Upload a document (JSON text or multipart file: txt, md, html, json, jsonl, pdf); identical content returns the existing document with 200',
          tenant,
          {
            parameters: path('collection'),
            requestBody: {
              content: {
                'application/json': { schema: ref(jsonUploadSchema) },
                'multipart/form-data': {
                  schema: {
                    type: 'object',
                    required: ['file'],
                    properties: {
                      file: { type: 'string', contentMediaType: 'application/octet-stream' },
                      attributes: { type: 'string', description: 'JSON object of attributes.' },
                      filename: { type: 'string' },
                    },
                  },
                },
              },
            },
            responses: {
              ...ok(ref(Document), 'Created (queued for ingestion)', '201'),
              ...ok(ref(Document), 'Identical content already in the collection'),
              ...errors(400, 401, 403, 404, 413, 415),
            },
          },
        ),
        get: op('List documents', tenant, {
          parameters: [...path('collection'), ...query(listDocumentsQuerySchema)],
          responses: { ...ok(listOf(Document)), ...errors(400, 401, 403, 404) },
        }),
      },
      '/v1/collections/{collection}/documents/{document}': {
        get: op('Get a document', tenant, {
          parameters: path('collection', 'document'),
          responses: { ...ok(ref(Document)), ...errors(401, 403, 404) },
        }),
        post: op('Replace a document’s attributes', tenant, {
          parameters: path('collection', 'document'),
          requestBody: json(ref(updateDocumentSchema)),
          responses: { ...ok(ref(Document)), ...errors(400, 401, 403, 404) },
        }),
        delete: op(
          'Delete a document and its chunks; blob and KV artifacts are collected by a gc job',
          tenant,
          {
            parameters: path('collection', 'document'),
            responses: { ...ok(Deleted('document.deleted')), ...errors(401, 403, 404) },
          },
        ),
      },
      '/v1/collections/{collection}/documents/{document}/content': {
        get: op('Download the uploaded bytes', tenant, {
          parameters: path('collection', 'document'),
          responses: { '200': { description: 'The original upload' }, ...errors(401, 403, 404) },
        }),
      },
      '/v1/collections/{collection}/search': {
        post: op('Hybrid search (vector + full-text, RRF)', tenant, {
          parameters: path('collection'),
          requestBody: json(ref(searchBodySchema)),
          responses: { ...ok(ref(SearchPage)), ...errors(400, 401, 403, 404) },
        }),
      },
      '/v1/query': {
        post: op(
          'RAG answer over collections: plan → retrieve → route → generate. stream=true (default): SSE events plan, citations, token, done (usage, timings, plan, reuse) or error; stream=false: the done object with citations',
          tenant,
          {
            requestBody: json(inline(queryBodySchema)),
            responses: {
              '200': {
                description: 'The answer (SSE stream, or JSON when stream=false)',
                content: {
                  'text/event-stream': {
                    schema: {
                      type: 'string',
                      description:
                        'Events: plan (the Plan), citations ([{n, chunk_id, document_id, filename, score, ordinal}]), token ({text}), then done (QueryAnswer without object and citations) or error (the error object).',
                    },
                  },
                  'application/json': { schema: ref(QueryAnswer) },
                },
              },
              ...errors(400, 401, 403, 404, 415, 502, 503),
            },
          },
        ),
      },
      '/v1/chat/completions': {
        post: op(
          'OpenAI-compatible chat completion (stream or not); RAG over collections through the `kvrag` extension field',
          tenant,
          {
            requestBody: json(inline(chatBodySchema)),
            responses: {
              '200': {
                description:
                  'A chat.completion object, or chat.completion.chunk SSE data lines ending with [DONE]',
                content: {
                  'application/json': { schema: { type: 'object' } },
                  'text/event-stream': { schema: { type: 'string' } },
                },
              },
              ...errors(400, 401, 403, 404, 415, 502, 503),
            },
          },
        ),
      },
      '/v1/models': {
        get: op('Served models (OpenAI list format)', tenant, {
          responses: {
            ...ok({
              type: 'object',
              required: ['object', 'data'],
              properties: {
                object: { const: 'list' },
                data: {
                  type: 'array',
                  items: {
                    type: 'object',
                    required: ['id', 'object', 'created', 'owned_by'],
                    properties: {
                      id: { type: 'string' },
                      object: { const: 'model' },
                      created: { type: 'integer' },
                      owned_by: { type: 'string' },
                    },
                  },
                },
              },
            }),
            ...errors(401, 403, 503),
          },
        }),
      },
      '/v1/chunks/{chunk}': {
        get: op('A chunk of your documents with its text (what citations and search hits point at)', tenant, {
          parameters: path('chunk'),
          responses: { ...ok(ref(Chunk)), ...errors(401, 403, 404) },
        }),
      },
      '/v1/runners': {
        get: op(
          "Runners the API routes to: models, load, KV memory, artifact tier occupancy and hit rates (each runner's /metrics); URLs for the admin key only",
          ['tenant API key or admin key'],
          { responses: { ...ok(inline(RunnerList)), ...errors(401, 503) } },
        ),
      },
      '/v1/jobs/{queue}/{id}': {
        get: op('Status of a job the API scheduled (ingest, gc)', tenant, {
          parameters: path('queue', 'id'),
          responses: { ...ok(ref(Job)), ...errors(401, 403, 404) },
        }),
      },
      ...openAiPaths({ ref, inline, json, query, path, op }),
    },
  };
}

let cached: ReturnType<typeof build> | undefined;
/** Built on first request, then kept. */
export function openApiDocument(): ReturnType<typeof build> {
  cached ??= build();
  return cached;
}

export function openApiRoutes(): Hono<AppEnv> {
  const r = new Hono<AppEnv>();
  r.get('/openapi.json', (c) => c.json(openApiDocument()));
  return r;
}
