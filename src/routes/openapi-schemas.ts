// The response shapes of the API as zod schemas, and the registry that names request and response
// schemas for /openapi.json (components). Documentation only: routes build their responses with the
// *Object functions beside them, and the API tests check those against what is documented here.
import { z } from 'zod';
import { DOCUMENT_STATUSES } from '../db/schema.ts';
import { ERROR_STATUS } from '../../contracts/errors.ts';
import { planSchema } from '../planning/plan.ts';
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
    chunk_count: z.number().int().describe('Chunks ingestion made of it (0 until chunked).'),
    artifact_bytes: z
      .number()
      .int()
      .describe('Bytes of the ready KV artifacts of its chunks (every served model; shared ones once).'),
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
export const Chunk = named(
  'Chunk',
  z.object({
    id,
    object: z.literal('chunk'),
    collection_id: id,
    document_id: id,
    filename: z.string(),
    ordinal: z.number().int().describe('Position of the chunk in its document, from 0.'),
    text: z.string(),
    token_count: z.number().int(),
  }),
);
const bytes = z.number().describe('Bytes.');
const ms = z.number().describe('Milliseconds.');
export const Runner = named(
  'Runner',
  z.object({
    id: z.string(),
    object: z.literal('runner'),
    url: z.string().optional().describe('Admin key only.'),
    models: z.array(z.object({ fingerprint: z.string(), id: z.string().nullable() })),
    load: z.number().int().describe('Requests at the runner as the router counts them.'),
    heartbeat: z
      .object({
        running: z.number().int(),
        waiting: z.number().int(),
        max_running: z.number().int(),
        kv_free_bytes: bytes,
        age_ms: ms,
      })
      .nullable()
      .describe('Its last registry heartbeat (distributed mode); null for static and in-process runners.'),
    metrics: z
      .object({
        running: z.number(),
        waiting: z.number(),
        kv_bytes_in_use: bytes,
        kv_bytes_capacity: bytes,
        tokens_per_second: z.number(),
        requests: z.number(),
        mean_ttft_ms: ms.nullable(),
        prompt_tokens: z.number(),
        cached_tokens: z.number(),
        tiers: z.array(
          z.object({
            name: z.string().describe('engine, host, disk, object'),
            hits: z.number(),
            misses: z.number(),
            hit_rate: z.number().nullable(),
            resident_bytes: bytes,
            capacity_bytes: bytes.nullable().describe('null: unbounded'),
          }),
        ),
      })
      .nullable()
      .describe("From the runner's /metrics; null when it could not be read (metrics_error says why)."),
    metrics_error: z.string().nullable(),
  }),
);
export const RunnerList = z.object({ object: z.literal('list'), data: z.array(Runner) });
const Citation = z.object({
  n: z.number().int().describe('The source number [n] in the prompt.'),
  chunk_id: id.describe('GET /v1/chunks/{chunk_id} gives its text.'),
  document_id: id,
  filename: z.string(),
  score: z.number(),
  ordinal: z.number().int(),
});
export const QueryAnswer = named(
  'QueryAnswer',
  z.object({
    object: z.literal('query.answer').optional().describe('stream=false only (the SSE done event lacks it).'),
    text: z.string(),
    finish_reason: z.string(),
    cited: z.array(z.number().int()).describe('The [n] markers of the answer that name a source.'),
    usage: z.object({
      prompt_tokens: z.number().int(),
      completion_tokens: z.number().int(),
      total_tokens: z.number().int(),
      cached_tokens: z.number().int().describe('Prompt tokens whose K/V came from stored artifacts.'),
    }),
    timings: z.object({ retrieval_ms: ms, ttft_ms: ms, total_ms: ms }),
    ttft_split_ms: z
      .object({
        retrieval: ms,
        queue: ms.describe("Waiting for the runner's scheduler."),
        load: ms.describe('Reading chunk KV artifacts from their tiers.'),
        rotate: ms.describe("Re-rotating the artifacts' keys to their positions."),
        recompute: ms.describe('Selective recompute (blend, link) and chunks without artifacts.'),
        squeeze: ms.describe('Preparing squeezed attention over the fixed context.'),
        prefill: ms.describe('Live prefill up to the first token (the question; everything in full mode).'),
        other: ms.describe(
          "The rest: planning, routing, transport, and the runner reading the request (artifacts' token ids) before its sequence starts.",
        ),
      })
      .nullable()
      .describe('ttft_ms split by where it went (the parts add up to it); null for a cached answer.'),
    plan: planSchema,
    reuse: z.object({
      mode: z.string(),
      cached_tokens: z.number().int(),
      prefill_tokens: z.number().int().describe('Prompt tokens computed live.'),
      keys_attended: z.number().nullable(),
      bytes_loaded: z.record(z.string(), bytes).describe('KV bytes read per artifact tier.'),
      squeezed: z
        .object({
          keysAttended: z.number(),
          fraction: z.number().describe('Of the fixed-context keys (1 = dense).'),
          bytesTouched: bytes,
          unindexedTokens: z.number().int(),
          note: z.string().optional(),
        })
        .nullable()
        .describe("The runner's squeezed attention stats; null when the plan did not ask for it."),
      sparse: z
        .object({
          pattern: z.string(),
          density: z.number().describe('Attended ÷ dense causal pairs.'),
          dense: z.boolean(),
          note: z.string().optional(),
        })
        .nullable()
        .describe("The runner's sparse prefill stats; null when the plan did not ask for it."),
      runner_timings_ms: z.record(z.string(), ms),
    }),
    runner: z.object({ id: z.string(), failed_over: z.array(z.string()) }).nullable(),
    cached: z.boolean().describe('Answered from the answer cache.'),
    citations: z.array(Citation).optional().describe('stream=false only (streamed: the citations event).'),
  }),
);
named('CreateTenant', createTenantSchema);
named('CreateApiKey', createKeySchema);
named('CreateCollection', createCollectionSchema);
named('UploadDocumentJson', jsonUploadSchema);
named('UpdateDocument', updateDocumentSchema);
named('SearchRequest', searchBodySchema);
