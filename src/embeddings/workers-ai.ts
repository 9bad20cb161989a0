// Embeddings through a Cloudflare Workers AI binding (env.AI): `ai.run(model, { text: [...] })` answers
// `{ shape: [n, d], data: number[][] }`. Only the binding's shape is assumed here, no Workers types and no
// Node-only imports, so the Workers build and Node tests both load this file.
import { z } from 'zod';
import { AppError } from '../../contracts/errors.ts';
import type { EmbeddingKind, EmbeddingProvider } from './types.ts';

/** The part of the Workers AI binding this provider uses. */
export interface WorkersAiBinding {
  run(model: string, inputs: { text: string[] }): Promise<unknown>;
}

export const WORKERS_AI_DEFAULT_MODEL = '@cf/baai/bge-base-en-v1.5';

/** Output sizes of the Workers AI text-embedding models we know; others need an explicit dimension. */
export const WORKERS_AI_DIMENSIONS: Readonly<Record<string, number>> = {
  '@cf/baai/bge-small-en-v1.5': 384,
  '@cf/baai/bge-base-en-v1.5': 768,
  '@cf/baai/bge-large-en-v1.5': 1024,
  '@cf/baai/bge-m3': 1024,
};

/** Workers AI takes at most 100 texts per embedding call. */
const MAX_BATCH = 100;

const outputSchema = z.object({ data: z.array(z.array(z.number())) });

export interface WorkersAiEmbeddingOptions {
  ai: WorkersAiBinding;
  model?: string;
  /** Required for models not in WORKERS_AI_DIMENSIONS. */
  dimension?: number;
  /** BGE's retrieval instruction for short queries, e.g. 'Represent this sentence for searching relevant passages: '. */
  queryPrefix?: string;
  maxBatch?: number;
}

export class WorkersAiEmbeddingProvider implements EmbeddingProvider {
  readonly id = 'workers-ai' as const;
  readonly model: string;
  readonly dimension: number;
  readonly #ai: WorkersAiBinding;
  readonly #queryPrefix: string;
  readonly #maxBatch: number;

  constructor(opts: WorkersAiEmbeddingOptions) {
    this.model = opts.model ?? WORKERS_AI_DEFAULT_MODEL;
    const dim = opts.dimension ?? WORKERS_AI_DIMENSIONS[this.model];
    if (!dim) {
      throw new AppError(
        'invalid_config',
        `Workers AI model "${this.model}" has no known dimension; set one`,
      );
    }
    this.dimension = dim;
    this.#ai = opts.ai;
    this.#queryPrefix = opts.queryPrefix ?? '';
    this.#maxBatch = Math.min(MAX_BATCH, Math.max(1, opts.maxBatch ?? MAX_BATCH));
  }

  async embed(texts: string[], kind: EmbeddingKind): Promise<Float32Array[]> {
    const inputs = kind === 'query' && this.#queryPrefix ? texts.map((t) => this.#queryPrefix + t) : texts;
    const out: Float32Array[] = [];
    for (let i = 0; i < inputs.length; i += this.#maxBatch) {
      const batch = inputs.slice(i, i + this.#maxBatch);
      let raw: unknown;
      try {
        raw = await this.#ai.run(this.model, { text: batch });
      } catch (err) {
        throw new AppError(
          'upstream_unavailable',
          `Workers AI ${this.model} failed: ${(err as Error).message}`,
          {
            provider: this.id,
            model: this.model,
          },
        );
      }
      const parsed = outputSchema.safeParse(raw);
      if (!parsed.success || parsed.data.data.length !== batch.length) {
        throw new AppError(
          'upstream_unavailable',
          `Workers AI ${this.model} returned ${parsed.success ? `${parsed.data.data.length} vectors for ${batch.length} texts` : 'an unexpected shape'}`,
        );
      }
      for (const v of parsed.data.data) {
        if (v.length !== this.dimension) {
          throw new AppError(
            'invalid_config',
            `Workers AI model "${this.model}" returned vectors of length ${v.length}, but the collection's dimension is ${this.dimension}`,
            { provider: this.id, model: this.model, expected: this.dimension, got: v.length },
          );
        }
        out.push(Float32Array.from(v));
      }
    }
    return out;
  }
}
