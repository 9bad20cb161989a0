// POST /v1/query — a RAG answer over the tenant's collections: plan → retrieve → route → generate.
// stream=true (default): SSE events `plan` (the final plan), `citations` ({n, chunk_id, document_id,
// filename, score} for source [n]), `token` ({text}) deltas, then `done` ({text, finish_reason, cited,
// usage, timings, plan, reuse, runner, cached}) or `error` (the envelope's error object).
// stream=false: the `done` object plus `citations` as JSON. Answers of deterministic requests are cached.
import { Hono } from 'hono';
import { streamSSE } from 'hono/streaming';
import { z } from 'zod';
import { asAppError, toEnvelope } from '../../contracts/errors.ts';
import { REUSE_MODES } from '../../contracts/reuse.ts';
import { QUALITY } from '../planning/plan.ts';
import type { RunnerUsage } from '../../contracts/runner-api.ts';
import { prepareAnswer } from '../answer/prepare.ts';
import { citedNumbers, questionPrompt, runnerRequest } from '../answer/prompt.ts';
import { type AnswerRun, answerCacheKey, runAnswer } from '../answer/run.ts';
import type { Prepared } from '../answer/services.ts';
import type { AppEnv } from '../services.ts';
import { answerDeps, logAnswer } from './answer-context.ts';
import { requireTenant } from './auth.ts';
import { jsonBody } from './validate.ts';

/** Chunks per collection and retrieval step (default: the token budget decides). */
export const retrievalK = z.number().int().min(1).max(50).optional();

/** Iterative retrieval (IterDRAG): sub-query steps until the chunks cover the question, at most max_steps. */
export const iterativeSchema = z
  .union([z.boolean(), z.strictObject({ max_steps: z.number().int().min(1).max(8) })])
  .optional();

/** Steps of iterative retrieval when the request says only `iterative: true`. */
export const DEFAULT_ITERATIVE_STEPS = 3;

/** The planner's iterative option from the request's. */
export function iterativeOf(v: z.infer<typeof iterativeSchema>): { maxSteps: number } | undefined {
  if (v === true) return { maxSteps: DEFAULT_ITERATIVE_STEPS };
  return v ? { maxSteps: v.max_steps } : undefined;
}

export const queryBodySchema = z.strictObject({
  question: z.string().trim().min(1).max(8192),
  collection_ids: z.array(z.string().min(1).max(64)).min(1).max(16),
  filters: z.unknown().optional(),
  quality: z.enum(QUALITY).optional(),
  reuse: z.enum([...REUSE_MODES, 'auto']).optional(),
  max_tokens: z.number().int().min(1).max(4096).optional(),
  stream: z.boolean().default(true),
  latency_budget_ms: z.number().int().min(1).max(600_000).optional(),
  model: z.string().min(1).max(256).optional(),
  k: retrievalK,
  iterative: iterativeSchema,
});

/** Usage in the API's names, from the runner's done event. */
export function usageOf(u: RunnerUsage) {
  return {
    prompt_tokens: u.promptTokens,
    completion_tokens: u.completionTokens,
    total_tokens: u.promptTokens + u.completionTokens,
    cached_tokens: u.cachedTokens,
  };
}

function doneEvent(
  p: { plan: Prepared['plan']; citations: Prepared['citations'] },
  out: AnswerRun,
  timings: { retrieval_ms: number; ttft_ms: number; total_ms: number },
  cached: boolean,
) {
  const a = out.answer;
  return {
    text: a.text,
    finish_reason: a.finishReason,
    cited: citedNumbers(a.text, p.citations.length),
    usage: usageOf(a.usage),
    timings,
    ttft_split_ms: out.ttftSplit && roundAll(out.ttftSplit),
    plan: p.plan,
    reuse: {
      mode: p.plan.generation.reuse.mode,
      cached_tokens: a.usage.cachedTokens,
      prefill_tokens: a.usage.prefillTokens,
      keys_attended: a.usage.keysAttended,
      bytes_loaded: a.usage.bytesLoaded,
      // what the runner ran of the plan's squeezed / sparse policies (its stats; null when not asked for)
      squeezed: a.usage.squeezed ?? null,
      sparse: a.usage.sparse ?? null,
      runner_timings_ms: a.usage.timingsMs,
    },
    runner: out.runner,
    cached,
  };
}

export function queryRoutes(): Hono<AppEnv> {
  const r = new Hono<AppEnv>();
  r.post('/query', async (c) => {
    const t0 = performance.now();
    const tenantId = requireTenant(c);
    const body = await jsonBody(c, queryBodySchema);
    const deps = answerDeps(c);
    const input = {
      question: body.question,
      collectionIds: body.collection_ids,
      filters: body.filters,
      quality: body.quality,
      reuse: body.reuse,
      maxTokens: body.max_tokens,
      latencyBudgetMs: body.latency_budget_ms,
      model: body.model,
      k: body.k,
      iterative: iterativeOf(body.iterative),
    };
    const p = await prepareAnswer(deps, tenantId, input);
    const request = runnerRequest(p, questionPrompt(p, body.question), {});
    const cacheKey = answerCacheKey(tenantId, 'query', p, request);
    const hit = deps.answer.cache?.get(cacheKey);
    const citations = p.citations;

    // Runs the generation (or replays the cached answer), calling onToken for each delta.
    const run = (onToken: (t: string) => Promise<void>) =>
      runAnswer(
        deps.answer,
        p,
        request,
        { t0, signal: c.req.raw.signal, hit, cacheKey, requestId: c.get('requestId') },
        onToken,
      );
    const finish = async (out: Awaited<ReturnType<typeof run>>) => {
      const timings = {
        retrieval_ms: round(p.retrievalMs),
        ttft_ms: round(out.ttft),
        total_ms: round(performance.now() - t0),
      };
      const done = doneEvent(p, out, timings, !!hit);
      await logAnswer(c, deps, {
        tenantId,
        question: body.question,
        plan: p.plan,
        timings,
        usage: { ...done.usage, cached_answer: !!hit },
      });
      return done;
    };

    if (!body.stream) {
      const done = await finish(await run(async () => {}));
      return c.json({ object: 'query.answer', ...done, citations });
    }
    return streamSSE(c, async (stream) => {
      await stream.writeSSE({ event: 'plan', data: JSON.stringify(p.plan) });
      await stream.writeSSE({ event: 'citations', data: JSON.stringify(citations) });
      try {
        const out = await run((text) => stream.writeSSE({ event: 'token', data: JSON.stringify({ text }) }));
        await stream.writeSSE({ event: 'done', data: JSON.stringify(await finish(out)) });
      } catch (e) {
        const err = toEnvelope(asAppError(e), c.get('requestId')).error;
        await stream.writeSSE({ event: 'error', data: JSON.stringify(err) });
      }
    });
  });
  return r;
}

const round = (x: number) => Math.round(x * 10) / 10;
const roundAll = <K extends string>(o: Record<K, number>) =>
  Object.fromEntries(Object.entries<number>(o).map(([k, v]) => [k, round(v)])) as Record<K, number>;
