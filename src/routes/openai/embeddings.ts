// POST /v1/embeddings (OpenAI's shape): `input` one text or several, `model` a vector store id (its
// provider) or the hash model, `dimensions`, `encoding_format` float | base64 (the SDK's default).
// `usage` counts UTF-8 bytes, an upper bound of the tokens of byte-level tokenizers.
import { Hono } from 'hono';
import { z } from 'zod';
import { countTokens } from '../../answer/prompt.ts';
import { base64Floats, embeddingProviderFor } from '../../openai/embeddings.ts';
import type { AppEnv } from '../../services.ts';
import { api, requireTenant } from '../auth.ts';
import { jsonBody } from '../validate.ts';

const text = z.string().min(1).max(100_000);
export const embeddingsBodySchema = z.object({
  input: z.union([text, z.array(text).min(1).max(256)]),
  model: z.string().min(1).max(256),
  dimensions: z.number().int().min(1).max(4096).optional(),
  encoding_format: z.enum(['float', 'base64']).default('float'),
  user: z.string().max(256).optional(),
});

export function embeddingRoutes(): Hono<AppEnv> {
  const r = new Hono<AppEnv>();
  r.post('/', async (c) => {
    const tenantId = requireTenant(c);
    const body = await jsonBody(c, embeddingsBodySchema);
    const { db, embeddings } = api(c);
    const provider = await embeddingProviderFor(db, embeddings, tenantId, body.model, body.dimensions);
    const texts = typeof body.input === 'string' ? [body.input] : body.input;
    const vectors = await provider.embed(texts, 'document');
    const tokens = texts.reduce((n, t) => n + countTokens(t), 0);
    return c.json({
      object: 'list' as const,
      data: vectors.map((v, index) => ({
        object: 'embedding' as const,
        index,
        embedding: body.encoding_format === 'base64' ? base64Floats(v) : Array.from(v),
      })),
      model: body.model,
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    });
  });
  return r;
}
