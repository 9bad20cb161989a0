// The answer pipeline shared by POST /v1/query and POST /v1/chat/completions: plan → hybrid retrieval per
// step → finalize the plan with artifact readiness (kv_artifacts of the serving model) → runner request
// with numbered chunks → route (RunnerPool: cache-aware, failover before the first token) → events.
// Chunk i is sent as a label block "[i] " followed by the chunk itself, by artifact key when its artifact
// is ready (so its stored K/V is reused) and as text otherwise; the label is a block of its own so the
// chunk's tokens — and with them its artifact key — stay those of the stored artifact.
import { and, eq, inArray, sql } from 'drizzle-orm';
import type { Context } from 'hono';
import { routePath } from 'hono/route';
import { chunks as chunksTable, collections, kvArtifacts, queryLog } from '../db/schema.ts';
import { queryRows } from '../db/types.ts';
import { assertSupportedDimension } from '../db/vector.ts';
import type { EmbeddingProviderId } from '../embeddings/types.ts';
import { AppError } from '../errors.ts';
import type { Plan, Quality, ReuseMode } from '../planning/plan.ts';
import { runRetrieval } from '../planning/iterative.ts';
import { finalizePlan, type PlannerContext, planQuery } from '../planning/planner.ts';
import { parseAttributeFilter } from '../retrieval/filters.ts';
import { hybridSearch } from '../retrieval/hybrid.ts';
import type { AnswerModel, AnswerServices, CachedAnswer, Citation } from '../routing/answer-services.ts';
import type { RouteResult, RunnerUsage } from '../routing/runner-client.ts';
import type { AppEnv } from '../services.ts';
import { api } from './auth.ts';
import { isUuid, notFound } from './validate.ts';

export const DEFAULT_SYSTEM =
  'Answer the question using the numbered sources below. Cite sources as [n] after the facts they support.\n';

export interface RagInput {
  question: string;
  collectionIds: readonly string[];
  filters?: unknown;
  quality?: Quality;
  reuse?: ReuseMode | 'auto';
  maxTokens?: number;
  latencyBudgetMs?: number;
  model?: string;
  /** Chunks per collection and retrieval step; otherwise the token budget decides. */
  k?: number;
  /** Iterative retrieval (IterDRAG): at most this many steps. */
  iterative?: { maxSteps: number };
}

export interface Prepared {
  plan: Plan;
  model: AnswerModel;
  citations: Citation[];
  /** Artifact keys of the chunks whose artifacts are ready (routing prefers runners holding them). */
  artifactKeys: string[];
  /** Runner /v1/generate body without the question/messages and sampling. */
  context: { system: string; chunks: ({ key: string; text: string } | { text: string })[] };
  retrievalMs: number;
}

export function answerServices(c: Context<AppEnv>): AnswerServices {
  const a = api(c).answer;
  if (!a || a.models.length === 0) throw new AppError('unavailable', 'this server has no runners configured');
  return a;
}

/** Upper bound of the tokens of a text for byte-level tokenizers: its UTF-8 length. */
const countTokens = (s: string) => new TextEncoder().encode(s).length;

async function plannerContext(
  c: Context<AppEnv>,
  tenantId: string,
  ids: readonly string[],
): Promise<PlannerContext> {
  const a = answerServices(c);
  let chunkTokens = 128;
  if (ids.length > 0) {
    const [row] = await queryRows<{ avg: number | null }>(
      api(c).db,
      sql`select avg(${chunksTable.tokenCount})::float8 as avg from ${chunksTable}
          where ${chunksTable.tenantId} = ${tenantId} and ${inArray(chunksTable.collectionId, [...ids])}`,
    );
    if (row?.avg) chunkTokens = Math.max(1, Math.ceil(Number(row.avg)));
  }
  return {
    models: a.models,
    chunkTokens,
    systemTokens: countTokens(a.system ?? DEFAULT_SYSTEM),
    countTokens,
  };
}

/** Plans, retrieves and assembles the runner context for one RAG request of a tenant. */
export async function prepareAnswer(
  c: Context<AppEnv>,
  tenantId: string,
  input: RagInput,
): Promise<Prepared> {
  const a = answerServices(c);
  const { db, embeddings } = api(c);
  const t0 = performance.now();
  const ids = [...new Set(input.collectionIds)];
  const cols: (typeof collections.$inferSelect)[] = [];
  for (const id of ids) {
    if (!isUuid(id)) throw notFound('collection', id);
    const [row] = await db
      .select()
      .from(collections)
      .where(and(eq(collections.id, id), eq(collections.tenantId, tenantId)));
    if (!row) throw notFound('collection', id);
    cols.push(row);
  }
  const filter =
    input.filters === undefined || input.filters === null ? undefined : parseAttributeFilter(input.filters);
  if (input.model && !a.models.some((m) => m.id === input.model))
    throw new AppError('not_found', `model "${input.model}" is not served here`);
  const ctx = await plannerContext(c, tenantId, ids);
  const req = {
    question: input.question,
    collections: ids,
    filters: input.filters,
    quality: input.quality,
    reuse: input.reuse,
    maxTokens: input.maxTokens,
    latencyBudgetMs: input.latencyBudgetMs,
    model: input.model,
    k: input.k,
    iterative: input.iterative ?? (false as const),
  };
  const plan0 = planQuery(req, ctx);
  const model = a.models.find((m) => m.id === plan0.generation.model)!;

  // retrieval: every step of the plan (one per collection), and in iterative mode the sub-query steps
  const { plan: planned, hits: ranked } = await runRetrieval(
    plan0,
    input.question,
    ctx,
    async (step) => {
      const col = cols.find((x) => x.id === step.collection)!;
      const dimension = assertSupportedDimension(col.embeddingDim);
      const provider = embeddings({
        provider: col.embeddingProvider as EmbeddingProviderId,
        model: col.embeddingModel,
        dimension,
      });
      const [vector] = await provider.embed([step.query], 'query');
      if (!vector || vector.length !== dimension)
        throw new AppError('upstream_unavailable', 'the embedding provider returned no usable vector');
      return hybridSearch(db, {
        tenantId,
        collectionId: col.id,
        dimension,
        vector: Array.from(vector),
        text: step.query,
        filter,
        limit: step.k,
      });
    },
    { k: input.k },
  );

  // artifact readiness for the serving model; the artifact key is the object key's file name
  const keyByHash = new Map<string, string>();
  const hashes = [...new Set(ranked.map((h) => h.contentHash))];
  if (hashes.length > 0) {
    const rows = await db
      .select({ h: kvArtifacts.chunkHash, objectKey: kvArtifacts.objectKey })
      .from(kvArtifacts)
      .where(
        and(
          eq(kvArtifacts.modelFingerprint, model.fingerprint),
          eq(kvArtifacts.status, 'ready'),
          inArray(kvArtifacts.chunkHash, hashes),
        ),
      );
    for (const r of rows) {
      const m = /([0-9a-f]{64})\.kv$/.exec(r.objectKey);
      if (m) keyByHash.set(r.h, m[1]);
    }
  }
  const { plan, use } = finalizePlan(
    planned,
    req,
    ctx,
    // each chunk costs its tokens plus its "[n] " label block
    ranked.map((h, i) => ({
      tokens: h.tokenCount + countTokens(`\n[${i + 1}] `),
      ready: keyByHash.has(h.contentHash),
    })),
  );
  const kept = ranked.slice(0, use);
  if (plan.chunkOrder === 'score-asc') kept.reverse();
  // the plan uses these artifacts: keeps them from expiring as idle (--artifact-max-idle)
  a.artifactUse?.record(
    model.fingerprint,
    kept.flatMap((h) => (keyByHash.has(h.contentHash) ? [h.contentHash] : [])),
  );
  const blocks: ({ key: string; text: string } | { text: string })[] = [];
  const citations: Citation[] = kept.map((h, i) => {
    const key = keyByHash.get(h.contentHash);
    // the text rides along with the key: a runner that finds the artifact gone or corrupt recomputes it
    blocks.push(
      { text: `${i === 0 ? '' : '\n'}[${i + 1}] ` },
      key ? { key, text: h.text } : { text: h.text },
    );
    return {
      n: i + 1,
      chunk_id: h.chunkId,
      document_id: h.documentId,
      filename: h.filename,
      score: h.score,
      ordinal: h.ordinal,
    };
  });
  return {
    plan,
    model,
    citations,
    artifactKeys: kept.flatMap((h) => keyByHash.get(h.contentHash) ?? []),
    context: { system: a.system ?? DEFAULT_SYSTEM, chunks: blocks },
    retrievalMs: performance.now() - t0,
  };
}

export interface Sampling {
  temperature?: number;
  topP?: number;
  seed?: number;
  stop?: string[];
}

/** The runner body for a prepared request and a question (text) or chat messages. */
export function runnerBody(
  p: Prepared,
  prompt: { question: string } | { messages: { role: 'system' | 'user' | 'assistant'; content: string }[] },
  s: Sampling,
): Record<string, unknown> {
  const g = p.plan.generation;
  let promptPart: Record<string, unknown> = prompt;
  if ('messages' in prompt && !p.model.chatTemplate) {
    // no chat template: a plain transcript ending with the assistant's turn
    const lines = prompt.messages.map((m) => `${m.role}: ${m.content}`);
    promptPart = { question: `\n${lines.join('\n')}\nassistant:` };
  }
  return {
    system: p.context.system,
    chunks: p.context.chunks,
    ...promptPart,
    maxTokens: g.maxTokens,
    sampling: {
      temperature: s.temperature ?? 0,
      topP: s.topP ?? 1,
      ...(s.seed !== undefined ? { seed: s.seed } : {}),
    },
    stop: s.stop ?? [],
    reuse: {
      mode: g.reuse.mode,
      ...(g.reuse.blendRatio !== undefined ? { blendRatio: g.reuse.blendRatio } : {}),
      ...(g.reuse.linkTokens !== undefined ? { linkTokens: g.reuse.linkTokens } : {}),
    },
    // squeezed attention and sparse prefill as planned, in the runner's shapes (gpu-runner/server/schemas.ts);
    // the runner attends chunks without a squeezed index densely, and prefills densely below break-even
    squeezed: g.squeezed,
    sparse: g.sparse,
  };
}

/** Whether repeated identical requests give the same answer (greedy, or seeded sampling). */
export const deterministic = (s: Sampling) => (s.temperature ?? 0) === 0 || s.seed !== undefined;

export function newRoute(): RouteResult {
  return { runnerId: '', failedOver: [] };
}

export interface AnswerRun {
  answer: CachedAnswer;
  /** ms from t0 to the first token (or to the cached answer). */
  ttft: number;
  /** Which runner answered; null for a cached answer. */
  runner: { id: string; failed_over: string[] } | null;
}

/**
 * Runs one generation for a prepared request — or replays `hit` from the answer cache — calling onToken for
 * each text delta; stores the answer under `cacheKey` when one is given.
 */
export async function runAnswer(
  svc: AnswerServices,
  p: Prepared,
  rbody: Record<string, unknown>,
  opts: { t0: number; signal: AbortSignal; hit?: CachedAnswer; cacheKey?: string; requestId?: string },
  onToken: (t: string) => Promise<void>,
): Promise<AnswerRun> {
  if (opts.hit) {
    if (opts.hit.text) await onToken(opts.hit.text);
    return { answer: opts.hit, ttft: performance.now() - opts.t0, runner: null };
  }
  const route = newRoute();
  let ttft = -1;
  let text = '';
  let usage: RunnerUsage | null = null;
  for await (const ev of svc.runners.generate(
    p.model.fingerprint,
    p.artifactKeys,
    rbody,
    route,
    opts.signal,
    opts.requestId,
  )) {
    if (ev.type === 'token') {
      if (ttft < 0) ttft = performance.now() - opts.t0;
      text += ev.text;
      await onToken(ev.text);
    } else usage = ev.usage;
  }
  const answer: CachedAnswer = {
    text: usage?.text ?? text,
    finishReason: usage?.finishReason ?? 'stop',
    usage: usage!,
    plan: p.plan,
    citations: p.citations,
  };
  if (opts.cacheKey !== undefined) svc.cache?.set(opts.cacheKey, answer);
  return {
    answer,
    ttft: ttft < 0 ? performance.now() - opts.t0 : ttft,
    runner: { id: route.runnerId, failed_over: route.failedOver },
  };
}

/** The `[n]` markers of an answer that name one of its sources, in order of first appearance. */
export function citedNumbers(text: string, count: number): number[] {
  const out: number[] = [];
  for (const m of text.matchAll(/\[(\d{1,3})\]/g)) {
    const n = Number(m[1]);
    if (n >= 1 && n <= count && !out.includes(n)) out.push(n);
  }
  return out;
}

/** Writes one query_log row and the answer metrics; a failure to log never fails the answer. */
export async function logQuery(
  c: Context<AppEnv>,
  tenantId: string,
  question: string,
  plan: Plan,
  timings: Record<string, number>,
  usage: Record<string, unknown>,
): Promise<void> {
  c.get('metrics')?.answered({
    route: routePath(c),
    cachedAnswer: usage.cached_answer === true,
    retrievalMs: timings.retrieval_ms ?? 0,
    ttftMs: timings.ttft_ms ?? 0,
    totalMs: timings.total_ms ?? 0,
  });
  try {
    await api(c)
      .db.insert(queryLog)
      .values({
        tenantId,
        requestId: c.get('requestId'),
        question,
        plan,
        timings,
        usage,
      });
  } catch (e) {
    c.get('services').log?.('warn', 'query_log insert failed', { err: String(e) });
  }
}
