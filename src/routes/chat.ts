// OpenAI-compatible POST /v1/chat/completions and GET /v1/models. RAG over the tenant's collections through
// the extension field `kvrag: {collection_ids, filters?, quality?, reuse?, k?, iterative?}`: the last user
// message is the retrieval query and the chunks become the runner's fixed context. Streaming follows
// OpenAI's format:
// `data: {id, object: "chat.completion.chunk", created, model, choices: [{index, delta, finish_reason}]}`
// (id and created constant), with stream_options.include_usage one last chunk with `choices: []` and
// `usage`, then `data: [DONE]`. Non-stream: a `chat.completion` object. The citations and plan travel in
// a `kvrag` field of the final chunk / the completion.
import { Hono } from 'hono';
import { streamSSE } from 'hono/streaming';
import { z } from 'zod';
import { AppError, asAppError, toEnvelope } from '../../contracts/errors.ts';
import { REUSE_MODES } from '../../contracts/reuse.ts';
import { QUALITY } from '../planning/plan.ts';
import type { ChatMessage, RunnerUsage } from '../../contracts/runner-api.ts';
import { prepareAnswer, servedModels } from '../answer/prepare.ts';
import { deterministic, runnerRequest, stoppedEarly } from '../answer/prompt.ts';
import { answerCacheKey, runAnswer } from '../answer/run.ts';
import type { AppEnv } from '../services.ts';
import { answerDeps, logAnswer } from './answer-context.ts';
import { requireTenant } from './auth.ts';
import { iterativeOf, iterativeSchema, retrievalK } from './query.ts';
import { jsonBody } from './validate.ts';

const contentSchema = z.union([
  z.string().max(1_000_000),
  z.array(z.object({ type: z.literal('text'), text: z.string().max(1_000_000) })).max(64),
]);

export const chatBodySchema = z.object({
  model: z.string().min(1).max(256),
  messages: z
    .array(
      z.object({
        role: z.enum(['system', 'developer', 'user', 'assistant']),
        content: contentSchema.nullable(),
        name: z.string().max(256).optional(),
      }),
    )
    .min(1)
    .max(256),
  stream: z.boolean().default(false),
  stream_options: z.object({ include_usage: z.boolean().optional() }).nullish(),
  max_tokens: z.number().int().min(1).max(4096).nullish(),
  max_completion_tokens: z.number().int().min(1).max(4096).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  seed: z.number().int().min(0).max(0xffffffff).nullish(),
  stop: z.union([z.string().min(1).max(256), z.array(z.string().min(1).max(256)).max(4)]).nullish(),
  n: z.literal(1).nullish(),
  user: z.string().max(256).optional(),
  kvrag: z
    .strictObject({
      collection_ids: z.array(z.string().min(1).max(64)).min(1).max(16),
      filters: z.unknown().optional(),
      quality: z.enum(QUALITY).optional(),
      reuse: z.enum([...REUSE_MODES, 'auto']).optional(),
      k: retrievalK,
      iterative: iterativeSchema,
    })
    .optional(),
});

const textOf = (c: z.infer<typeof contentSchema> | null) =>
  c === null ? '' : typeof c === 'string' ? c : c.map((p) => p.text).join('');

function usageOf(u: RunnerUsage) {
  return {
    prompt_tokens: u.promptTokens,
    completion_tokens: u.completionTokens,
    total_tokens: u.promptTokens + u.completionTokens,
    prompt_tokens_details: { cached_tokens: u.cachedTokens },
  };
}

/** OpenAI finish reasons from the runner's. */
const finishOf = (r: string) => (stoppedEarly(r) ? 'length' : 'stop');

export function chatRoutes(): Hono<AppEnv> {
  const r = new Hono<AppEnv>();

  r.get('/models', async (c) => {
    requireTenant(c);
    const models = await servedModels(answerDeps(c).answer);
    return c.json({
      object: 'list' as const,
      data: models.map((m) => ({
        id: m.id,
        object: 'model' as const,
        created: m.created,
        owned_by: 'kvrag',
      })),
    });
  });

  r.post('/chat/completions', async (c) => {
    const t0 = performance.now();
    const tenantId = requireTenant(c);
    const body = await jsonBody(c, chatBodySchema);
    const deps = answerDeps(c);
    const model = (await servedModels(deps.answer)).find((m) => m.id === body.model);
    if (!model) throw new AppError('not_found', `model "${body.model}" is not served here`);
    const messages: ChatMessage[] = body.messages.map((m) => ({
      role: m.role === 'developer' ? 'system' : m.role,
      content: textOf(m.content),
    }));
    const lastUser = [...messages].reverse().find((m) => m.role === 'user');
    if (!lastUser?.content.trim())
      throw new AppError('bad_request', 'messages must contain a non-empty user message');
    const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? undefined;
    const sampling = {
      temperature: body.temperature ?? 1,
      topP: body.top_p ?? 1,
      seed: body.seed ?? undefined,
      stop: body.stop == null ? [] : typeof body.stop === 'string' ? [body.stop] : body.stop,
    };
    const p = await prepareAnswer(deps, tenantId, {
      question: lastUser.content,
      collectionIds: body.kvrag?.collection_ids ?? [],
      filters: body.kvrag?.filters,
      quality: body.kvrag?.quality,
      reuse: body.kvrag?.reuse,
      k: body.kvrag?.k,
      iterative: iterativeOf(body.kvrag?.iterative),
      maxTokens,
      model: model.id,
    });
    const cacheable = deterministic(sampling);
    const request = runnerRequest(p, { messages }, sampling);
    const cacheKey = answerCacheKey(tenantId, 'chat', p, request);
    const hit = cacheable ? deps.answer.cache?.get(cacheKey) : undefined;

    const id = `chatcmpl-${crypto.randomUUID().replaceAll('-', '')}`;
    const created = Math.floor(Date.now() / 1000);
    const kvragField = (runner: unknown) => ({
      citations: p.citations,
      plan: p.plan,
      cached_answer: !!hit,
      runner,
    });

    const run = (onToken: (t: string) => Promise<void>) =>
      runAnswer(
        deps.answer,
        p,
        request,
        {
          t0,
          signal: c.req.raw.signal,
          hit,
          requestId: c.get('requestId'),
          ...(cacheable ? { cacheKey } : {}),
        },
        onToken,
      );
    const log = (out: Awaited<ReturnType<typeof run>>) =>
      logAnswer(c, deps, {
        tenantId,
        question: lastUser.content,
        plan: p.plan,
        timings: {
          retrieval_ms: Math.round(p.retrievalMs * 10) / 10,
          ttft_ms: Math.round(out.ttft * 10) / 10,
          total_ms: Math.round((performance.now() - t0) * 10) / 10,
        },
        usage: { ...usageOf(out.answer.usage), cached_answer: !!hit, route: 'chat' },
      });

    if (!body.stream) {
      const out = await run(async () => {});
      await log(out);
      return c.json({
        id,
        object: 'chat.completion' as const,
        created,
        model: model.id,
        choices: [
          {
            index: 0,
            message: { role: 'assistant' as const, content: out.answer.text },
            finish_reason: finishOf(out.answer.finishReason),
            logprobs: null,
          },
        ],
        usage: usageOf(out.answer.usage),
        kvrag: kvragField(out.runner),
      });
    }

    const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
      JSON.stringify({ id, object: 'chat.completion.chunk', created, model: model.id, choices, ...extra });
    return streamSSE(c, async (stream) => {
      try {
        await stream.writeSSE({
          data: chunk([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }]),
        });
        const out = await run((text) =>
          stream.writeSSE({ data: chunk([{ index: 0, delta: { content: text }, finish_reason: null }]) }),
        );
        await stream.writeSSE({
          data: chunk([{ index: 0, delta: {}, finish_reason: finishOf(out.answer.finishReason) }], {
            kvrag: kvragField(out.runner),
          }),
        });
        if (body.stream_options?.include_usage)
          await stream.writeSSE({ data: chunk([], { usage: usageOf(out.answer.usage) }) });
        await log(out);
      } catch (e) {
        // OpenAI clients read an `error` object in a data line as a failed stream
        await stream.writeSSE({ data: JSON.stringify(toEnvelope(asAppError(e), c.get('requestId'))) });
      }
      await stream.writeSSE({ data: '[DONE]' });
    });
  });
  return r;
}
