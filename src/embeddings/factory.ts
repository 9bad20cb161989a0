// createEmbeddingProvider(spec): the one place a provider is built from plain data (a collection's
// embedding settings, configuration). The spec is validated with zod; secrets (API keys) and bindings
// are passed in by the entry, never stored in the spec a collection keeps.
import { z } from 'zod';
import { AppError } from '../../contracts/errors.ts';
import { HASH_DEFAULT_DIMENSION, HashEmbeddingProvider } from './hash.ts';
import { OpenAiEmbeddingProvider } from './openai.ts';
import type { EmbeddingProvider } from './types.ts';
import { WORKERS_AI_DEFAULT_MODEL, type WorkersAiBinding, WorkersAiEmbeddingProvider } from './workers-ai.ts';

const dimension = z.number().int().min(2).max(16384);

export const hashSpecSchema = z.object({
  provider: z.literal('hash'),
  dimension: dimension.default(HASH_DEFAULT_DIMENSION),
});

export const openAiSpecSchema = z.object({
  provider: z.literal('openai'),
  baseUrl: z.url({ protocol: /^https?$/ }),
  model: z.string().trim().min(1).max(200),
  dimension,
  /** Optional here so a collection's stored spec carries no secret; the entry may supply it instead. */
  apiKey: z.string().min(1).optional(),
  sendDimensions: z.boolean().default(false),
  maxBatchInputs: z.number().int().min(1).max(2048).default(96),
  maxBatchTokens: z.number().int().min(1).max(1_000_000).default(100_000),
  maxRetries: z.number().int().min(0).max(10).default(5),
  initialBackoffMs: z.number().int().min(0).max(60_000).default(500),
  maxBackoffMs: z.number().int().min(0).max(300_000).default(20_000),
  timeoutMs: z.number().int().min(100).max(600_000).default(60_000),
  queryPrefix: z.string().max(200).optional(),
  documentPrefix: z.string().max(200).optional(),
});

export const workersAiSpecSchema = z.object({
  provider: z.literal('workers-ai'),
  model: z.string().trim().min(1).max(200).default(WORKERS_AI_DEFAULT_MODEL),
  dimension: dimension.optional(),
  queryPrefix: z.string().max(200).optional(),
});

export const embeddingSpecSchema = z.discriminatedUnion('provider', [
  hashSpecSchema,
  openAiSpecSchema,
  workersAiSpecSchema,
]);

/** What callers write (defaults optional). */
export type EmbeddingSpecInput = z.input<typeof embeddingSpecSchema>;
/** After validation and defaults. */
export type EmbeddingSpec = z.output<typeof embeddingSpecSchema>;

export interface EmbeddingDeps {
  /** Workers AI binding (env.AI); required for provider 'workers-ai'. */
  ai?: WorkersAiBinding;
  /** Used when the spec has no apiKey (keeps keys out of stored specs). */
  openAiApiKey?: string;
  fetch?: typeof fetch;
}

/** Validates a spec; throws AppError('invalid_config') naming each bad field. */
export function parseEmbeddingSpec(input: unknown): EmbeddingSpec {
  const r = embeddingSpecSchema.safeParse(input);
  if (!r.success) {
    const msg = r.error.issues.map((i) => `${i.path.join('.') || '(spec)'}: ${i.message}`).join('; ');
    throw new AppError('invalid_config', `invalid embedding settings: ${msg}`, { issues: r.error.issues });
  }
  return r.data;
}

export function createEmbeddingProvider(
  spec: EmbeddingSpecInput,
  deps: EmbeddingDeps = {},
): EmbeddingProvider {
  const s = parseEmbeddingSpec(spec);
  switch (s.provider) {
    case 'hash':
      return new HashEmbeddingProvider({ dimension: s.dimension });
    case 'openai': {
      const { provider: _p, apiKey, ...rest } = s;
      return new OpenAiEmbeddingProvider({ ...rest, apiKey: apiKey ?? deps.openAiApiKey, fetch: deps.fetch });
    }
    case 'workers-ai': {
      if (!deps.ai)
        throw new AppError(
          'invalid_config',
          'embedding provider "workers-ai" needs the Workers AI binding (AI)',
        );
      return new WorkersAiEmbeddingProvider({
        ai: deps.ai,
        model: s.model,
        dimension: s.dimension,
        queryPrefix: s.queryPrefix,
      });
    }
  }
}
