// Which embedding providers a deployment offers to collections. A collection stores only
// {provider, model, dimension}; endpoints and secrets are the deployment's (configuration, bindings), so
// a tenant cannot make the service call an address of its choosing. Web APIs only (runs on Workers).
import { AppError } from '../../contracts/errors.ts';
import { createEmbeddingProvider, type EmbeddingDeps } from './factory.ts';
import { HASH_MODEL } from './hash.ts';
import type { EmbeddingProvider, EmbeddingProviderId } from './types.ts';
import { WORKERS_AI_DEFAULT_MODEL } from './workers-ai.ts';

/** A collection's embedding settings as stored in its row. */
export interface EmbeddingChoice {
  provider: EmbeddingProviderId;
  /** Absent on create = the provider's default model. */
  model?: string;
  dimension: number;
}

/** Builds the provider for a collection's settings; AppError('bad_request') for one not offered. */
export type EmbeddingResolver = (choice: EmbeddingChoice) => EmbeddingProvider;

export interface ResolverOptions {
  /** An OpenAI-compatible embeddings server the deployment pays for; absent = provider not offered. */
  openai?: { baseUrl: string; apiKey?: string; defaultModel: string; models?: string[] };
  /** Workers AI binding; absent = provider not offered. */
  ai?: EmbeddingDeps['ai'];
  fetch?: typeof fetch;
}

export function createEmbeddingResolver(opts: ResolverOptions = {}): EmbeddingResolver {
  return (choice) => {
    switch (choice.provider) {
      case 'hash':
        if (choice.model !== undefined && choice.model !== HASH_MODEL) {
          throw new AppError('bad_request', `the hash provider has one model, ${HASH_MODEL}`);
        }
        return createEmbeddingProvider({ provider: 'hash', dimension: choice.dimension });
      case 'openai': {
        const o = opts.openai;
        if (!o)
          throw new AppError('bad_request', 'embedding provider "openai" is not configured on this server');
        const model = choice.model ?? o.defaultModel;
        if (o.models && !o.models.includes(model)) {
          throw new AppError('bad_request', `embedding model ${JSON.stringify(model)} is not offered`, {
            offered: o.models,
          });
        }
        return createEmbeddingProvider(
          { provider: 'openai', baseUrl: o.baseUrl, model, dimension: choice.dimension, apiKey: o.apiKey },
          { fetch: opts.fetch },
        );
      }
      case 'workers-ai':
        if (!opts.ai)
          throw new AppError('bad_request', 'embedding provider "workers-ai" is not available here');
        return createEmbeddingProvider(
          {
            provider: 'workers-ai',
            model: choice.model ?? WORKERS_AI_DEFAULT_MODEL,
            dimension: choice.dimension,
          },
          { ai: opts.ai },
        );
    }
  };
}
