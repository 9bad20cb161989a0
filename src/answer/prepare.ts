// Prepare one RAG answer (DESIGN.md §1, §5): plan → hybrid retrieval per step → finalize the plan with
// artifact readiness (kv_artifacts of the serving model) → the runner's fixed context with numbered chunks.
// Chunk i is sent as a label block "[i] " followed by the chunk itself, by artifact key when its artifact
// is ready (so its stored K/V is reused) and as text otherwise; the label is a block of its own so the
// chunk's tokens — and with them its artifact key — stay those of the stored artifact.
//
//   const p = await prepareAnswer(deps, tenantId, { question, collectionIds: [id] });
//   p.plan        the plan returned with the answer (retrieval steps, reuse mode, squeezed, sparse, model)
//   p.citations   source [n] → chunk, document, filename, score
//   p.sources     source [n] → the retrieved chunk itself (text, attributes, file id)
//   p.context     {system, chunks}: the runner request's fixed context (prompt.ts adds the question)
import { and, eq, inArray, sql } from 'drizzle-orm';
import { artifactKeyOf } from '../../contracts/artifacts.ts';
import { AppError } from '../../contracts/errors.ts';
import type { ReuseMode } from '../../contracts/reuse.ts';
import type { ContextBlock } from '../../contracts/runner-api.ts';
import { isUuid, notFound } from '../db/ids.ts';
import { chunks as chunksTable, collections, kvArtifacts } from '../db/schema.ts';
import { queryRows } from '../db/types.ts';
import { runRetrieval } from '../planning/iterative.ts';
import type { Quality } from '../planning/plan.ts';
import { finalizePlan, type PlannerContext, planQuery } from '../planning/planner.ts';
import { parseAttributeFilter } from '../retrieval/filters.ts';
import { searchCollection } from '../retrieval/collection-search.ts';
import { countTokens, DEFAULT_SYSTEM } from './prompt.ts';
import type { AnswerModel } from './models.ts';
import type { AnswerDeps, AnswerServices, Citation, Prepared } from './services.ts';

/** One RAG request of a tenant, as the use case takes it (routes map their bodies onto this). */
export interface RagInput {
  question: string;
  /** Collections to retrieve from (the tenant's own; another id is not_found). May be empty. */
  collectionIds: readonly string[];
  /** Attribute filter (src/retrieval/filters.ts), applied to every retrieval step. */
  filters?: unknown;
  quality?: Quality;
  reuse?: ReuseMode | 'auto';
  maxTokens?: number;
  latencyBudgetMs?: number;
  /** Model id; otherwise the planner routes by difficulty. Unknown: not_found. */
  model?: string;
  /** Chunks per collection and retrieval step; otherwise the token budget decides. */
  k?: number;
  /** Iterative retrieval (IterDRAG): at most this many steps. */
  iterative?: { maxSteps: number };
  /** Drop retrieved chunks whose normalised hybrid score is below this (0–1). */
  scoreThreshold?: number;
  /** Hybrid search list weights (default 1 : 1). */
  weights?: { vector: number; text: number };
}

/** The deployment's answer services; `unavailable` when it has no runners configured. */
export function requireAnswerServices(answer: AnswerServices | undefined): AnswerServices {
  if (!answer) throw new AppError('unavailable', 'this server has no runners configured');
  return answer;
}

/** The served models; `unavailable` while no runner has reported one. */
export async function servedModels(answer: AnswerServices): Promise<AnswerModel[]> {
  const models = await answer.models.list();
  if (models.length === 0) throw new AppError('unavailable', 'no runner has reported a model yet');
  return models;
}

async function plannerContext(
  deps: AnswerDeps,
  models: readonly AnswerModel[],
  tenantId: string,
  ids: readonly string[],
): Promise<PlannerContext> {
  let chunkTokens = 128;
  if (ids.length > 0) {
    const [row] = await queryRows<{ avg: number | null }>(
      deps.db,
      sql`select avg(${chunksTable.tokenCount})::float8 as avg from ${chunksTable}
          where ${chunksTable.tenantId} = ${tenantId} and ${inArray(chunksTable.collectionId, [...ids])}`,
    );
    if (row?.avg) chunkTokens = Math.max(1, Math.ceil(Number(row.avg)));
  }
  return {
    models,
    chunkTokens,
    systemTokens: countTokens(deps.answer.system ?? DEFAULT_SYSTEM),
    countTokens,
  };
}

/** Plans, retrieves and assembles the runner context for one RAG request of a tenant. */
export async function prepareAnswer(deps: AnswerDeps, tenantId: string, input: RagInput): Promise<Prepared> {
  const a = requireAnswerServices(deps.answer);
  const models = await servedModels(a);
  const { db, embeddings } = deps;
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
  if (input.model && !models.some((m) => m.id === input.model))
    throw new AppError('not_found', `model "${input.model}" is not served here`);
  const ctx = await plannerContext(deps, models, tenantId, ids);
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
  const model = models.find((m) => m.id === plan0.generation.model)!;

  // retrieval: every step of the plan (one per collection), and in iterative mode the sub-query steps
  const { plan: planned, hits: ranked } = await runRetrieval(
    plan0,
    input.question,
    ctx,
    async (step) =>
      searchCollection(db, embeddings, tenantId, cols.find((x) => x.id === step.collection)!, {
        query: step.query,
        filter,
        limit: step.k,
        scoreThreshold: input.scoreThreshold,
        weights: input.weights,
      }),
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
      const key = artifactKeyOf(r.objectKey);
      if (key) keyByHash.set(r.h, key);
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
  const blocks: ContextBlock[] = [];
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
    sources: kept,
    artifactKeys: kept.flatMap((h) => keyByHash.get(h.contentHash) ?? []),
    context: { system: a.system ?? DEFAULT_SYSTEM, chunks: blocks },
    retrievalMs: performance.now() - t0,
  };
}
