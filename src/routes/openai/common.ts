// What the OpenAI routes share: list queries as OpenAI's SDKs send them, chunking strategies, the poll
// hint, and the vector store in the path.
import type { Context } from 'hono';
import { z } from 'zod';
import { CHUNK_SIZE_MAX, parseChunkingOptions } from '../../ingest/chunking.ts';
import type { FileChunking } from '../../openai/vector-store-files.ts';
import { findVectorStore, type VectorStoreView } from '../../openai/vector-stores.ts';
import type { AppEnv } from '../../services.ts';
import { api } from '../auth.ts';
import { listQuerySchema } from '../pagination.ts';

/** How soon the SDKs' poll helpers (createAndPoll, uploadAndPoll) ask again (`openai-poll-after-ms`). */
export const POLL_AFTER_MS = 200;

/**
 * OpenAI's list query: its SDKs may ask for up to 10 000 items a page; a page here holds at most 100 and
 * says `has_more`, which their auto-pagination follows.
 */
export const openAiListQuery = listQuerySchema.extend({
  limit: z.coerce
    .number()
    .int()
    .min(1)
    .max(10_000)
    .default(20)
    .transform((n) => Math.min(n, 100)),
});

/** `chunking_strategy`: `auto` (the collection's chunking) or `static` sizes, in the model's tokens. */
export const chunkingStrategySchema = z.union([
  z.strictObject({ type: z.literal('auto') }),
  z.strictObject({
    type: z.literal('static'),
    static: z
      .strictObject({
        max_chunk_size_tokens: z.number().int().min(100).max(CHUNK_SIZE_MAX),
        chunk_overlap_tokens: z.number().int().min(0),
      })
      .refine((s) => s.chunk_overlap_tokens <= s.max_chunk_size_tokens / 2, {
        message: 'chunk_overlap_tokens must be at most half of max_chunk_size_tokens',
        path: ['chunk_overlap_tokens'],
      }),
  }),
]);

export function chunkingOf(s: z.infer<typeof chunkingStrategySchema> | undefined): FileChunking | undefined {
  return s?.type === 'static'
    ? { size: s.static.max_chunk_size_tokens, overlap: s.static.chunk_overlap_tokens }
    : undefined;
}

/** Chunking settings ({size, overlap}, defaults filled in) as OpenAI's static strategy object. */
export function chunkingStrategyOf(settings: Record<string, unknown>) {
  const { size, overlap } = parseChunkingOptions(settings);
  return { type: 'static' as const, static: { max_chunk_size_tokens: size, chunk_overlap_tokens: overlap } };
}

/** The caller's vector store named by the `:vector_store` path parameter, or 404. */
export async function pathVectorStore(c: Context<AppEnv>, tenantId: string): Promise<VectorStoreView> {
  return findVectorStore(api(c).db, tenantId, c.req.param('vector_store') ?? '');
}

/** The clock of the request's services (tests may pin it). */
export const nowOf = (c: Context<AppEnv>) => (api(c).now ?? (() => new Date()))();
