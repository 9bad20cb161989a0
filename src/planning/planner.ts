// The retrieval planner (DESIGN.md §5; DRAG/IterDRAG, REAPER, Hybrid LLM). Two phases:
// planQuery() before retrieval — budget, retrieval steps, model — and finalizePlan() after it, when the
// retrieved chunks and which of them have artifacts are known — reuse mode, squeezed budget, sparse policy.
// Both are pure and deterministic: the same inputs give the same plan.
import { estimateDifficulty } from './difficulty.ts';
import type { ReuseMode } from '../../contracts/reuse.ts';
import type { GenerationPlan, Plan, Quality, RetrievalStep } from './plan.ts';

export interface ServedModel {
  /** Model id as clients name it (and the runner's fingerprint maps to it). */
  id: string;
  contextTokens: number;
  tier: 'small' | 'large';
  /** Measured prefill throughput of live tokens on its runners (tokens/s). */
  prefillTokensPerSec: number;
  /** Throughput of loading stored chunk K/V into the engine (tokens/s): far above prefill. */
  loadTokensPerSec: number;
  /**
   * Live-token length from which sparse prefill beats dense, as measured for the model (its sparse.json);
   * null when it was never measured: sparse prefill stays off.
   */
  sparseBreakEven: number | null;
  /** Decoder layers, when known: `blend` needs layers past its check layer to save anything. */
  layers?: number;
  /**
   * Trained with block-diagonal chunk attention (TurboRAG / Block-Attention fine-tuning; `reuse.json`
   * beside the model): independent chunks are in-distribution, so balanced quality serves `independent`
   * instead of paying for blend's recompute.
   */
  independentTrained?: boolean;
}

export interface PlanRequest {
  question: string;
  collections: readonly string[];
  filters?: unknown;
  quality?: Quality;
  /** Time-to-first-token budget in ms. */
  latencyBudgetMs?: number;
  /** Cap on prompt tokens (compute budget). */
  computeBudgetTokens?: number;
  maxTokens?: number;
  /** Explicit k per collection and step (later iterative steps take less when the budget is short). */
  k?: number;
  reuse?: ReuseMode | 'auto';
  /** Iterative retrieval (IterDRAG): sub-queries per step until sufficient, at most maxSteps. */
  iterative?: { maxSteps: number } | false;
  /** Model id; otherwise routed by difficulty. */
  model?: string;
  /** Hybrid-LLM knob in [0, 1]: 0 sends everything to the small model, 1 everything to the large one. */
  qualityKnob?: number;
}

export interface PlannerContext {
  models: readonly ServedModel[];
  /** Average chunk size of the collections, in tokens. */
  chunkTokens: number;
  /** Tokens of the system prefix the runner prepends. */
  systemTokens: number;
  countTokens: (text: string) => number;
  /** Most chunks one retrieval step may return (search max_num_results). */
  maxK?: number;
}

export const PLANNER_DEFAULTS = {
  quality: 'balanced' as Quality,
  maxTokens: 256,
  maxK: 50,
  blendRatio: 0.15,
  linkTokens: 16,
  /** CacheBlend's check layer: layers 0..checkLayer are recomputed in full for every chunk token. */
  blendCheckLayer: 1,
  qualityKnob: 0.5,
  /**
   * Fixed contexts below this are attended densely: squeezing saves too little there. Measured quiet
   * (session 10, one thread): end to end, engine decode over a 4K context with a model whose KV cache
   * stays in L3 between tokens (as the bundled model's does) 364 → 458 tok/s squeezed at 1/8 (1.26×, one
   * run; `kvrag bench squeezed --context 4096 --decode-context 4096 --steps 32 --reps 1`); one layer's
   * step from a cold cache (a large model's case: its weights evict the KV between tokens) 0.89× the
   * runner's dense int8 attention at 4K, 1.01× at 6K, 1.08× at 8K (`--decode-context 0 --reps 5`) —
   * attention being a few percent of such a model's decode bytes at 4K, the floor stays where the small
   * model gains.
   */
  squeezeFrom: 4096,
  /** IterDRAG: the first step gets this share of the document budget; the rest is split over later steps. */
  firstStepShare: 0.5,
};

/** Squeezed budget per quality level (null = dense), from the eval (see finalizePlan). */
const SQUEEZED_BUDGET: Record<Quality, number | null> = { fast: 1 / 16, balanced: 1 / 8, exact: null };

const budgetLabel = (b: number) => `1/${Math.round(1 / b)}`;

function chooseModel(req: PlanRequest, ctx: PlannerContext, difficulty: number): ServedModel {
  if (ctx.models.length === 0) throw new Error('planner: no model is served');
  if (req.model) {
    const m = ctx.models.find((x) => x.id === req.model);
    if (!m) throw new Error(`planner: model "${req.model}" is not served`);
    return m;
  }
  const knob = req.qualityKnob ?? PLANNER_DEFAULTS.qualityKnob;
  const small = ctx.models.filter((m) => m.tier === 'small');
  const large = ctx.models.filter((m) => m.tier === 'large');
  // Hybrid LLM: the small model answers when the predicted difficulty is under the threshold 1 − knob.
  const pool =
    small.length && (!large.length || difficulty < 1 - knob) ? small : large.length ? large : small;
  return [...pool].sort((a, b) => b.contextTokens - a.contextTokens || a.id.localeCompare(b.id))[0];
}

/** Phase 1: budget, retrieval steps and model, before anything is retrieved. */
export function planQuery(req: PlanRequest, ctx: PlannerContext): Plan {
  const quality = req.quality ?? PLANNER_DEFAULTS.quality;
  const difficulty = estimateDifficulty(req.question);
  const model = chooseModel(req, ctx, difficulty);
  const maxTokens = req.maxTokens ?? PLANNER_DEFAULTS.maxTokens;
  const questionTokens = ctx.countTokens(req.question);
  const contextTokens = model.contextTokens;

  // The budget for documents is the tightest of: what the context leaves, the compute cap, and what the
  // latency budget lets the runner load (stored chunks) or prefill (exact quality recomputes them).
  const fixed = ctx.systemTokens + questionTokens + maxTokens + 16;
  let documentTokens = Math.max(0, contextTokens - fixed);
  let limitedBy: Plan['budget']['limitedBy'] = 'context';
  if (req.computeBudgetTokens !== undefined && req.computeBudgetTokens - fixed < documentTokens) {
    documentTokens = Math.max(0, req.computeBudgetTokens - fixed);
    limitedBy = 'compute';
  }
  if (req.latencyBudgetMs !== undefined) {
    const questionMs = (questionTokens / model.prefillTokensPerSec) * 1000;
    const perDocToken = quality === 'exact' ? 1 / model.prefillTokensPerSec : 1 / model.loadTokensPerSec;
    const byLatency = Math.max(
      0,
      Math.floor(((req.latencyBudgetMs - questionMs) / 1000) * (1 / perDocToken)),
    );
    if (byLatency < documentTokens) {
      documentTokens = byLatency;
      limitedBy = 'latency';
    }
  }

  // DRAG: spend the budget on more documents first; iterate only when asked.
  const maxK = ctx.maxK ?? PLANNER_DEFAULTS.maxK;
  const collections = [...req.collections];
  const totalK = Math.floor(documentTokens / Math.max(1, ctx.chunkTokens));
  const iterative = req.iterative ? Math.max(1, Math.min(8, req.iterative.maxSteps)) : 1;
  const firstShare = iterative > 1 ? PLANNER_DEFAULTS.firstStepShare : 1;
  const perCollection = (k: number) =>
    Math.min(maxK, Math.max(1, Math.floor(k / Math.max(1, collections.length))));
  const firstK = req.k ?? perCollection(totalK * firstShare);
  const steps: RetrievalStep[] = collections.map((collection) => ({
    step: 1,
    collection,
    query: req.question,
    k: Math.min(maxK, Math.max(1, firstK)),
    ...(req.filters !== undefined ? { filters: req.filters } : {}),
  }));

  const generation: GenerationPlan = {
    model: model.id,
    reuse: reuseFor(req.reuse ?? 'auto', quality, 1, model).reuse,
    squeezed: { mode: 'off' },
    sparse: { mode: 'off' },
    maxTokens,
  };
  return {
    v: 1,
    quality,
    difficulty: Math.round(difficulty * 1000) / 1000,
    budget: { contextTokens, documentTokens, limitedBy },
    retrieval: { mode: iterative > 1 ? 'iterative' : 'single', maxSteps: iterative, steps },
    chunkOrder: 'score-desc',
    generation,
  };
}

/**
 * k for a later IterDRAG step: the remaining budget split evenly over the remaining steps, and at least one
 * chunk while one still fits (0: the budget is spent).
 */
export function nextStepK(plan: Plan, ctx: PlannerContext, step: number, usedTokens: number): number {
  const left = Math.max(0, plan.budget.documentTokens - usedTokens);
  const stepsLeft = Math.max(1, plan.retrieval.maxSteps - step + 1);
  const chunk = Math.max(1, ctx.chunkTokens);
  const even = Math.floor(left / stepsLeft / chunk);
  return Math.min(ctx.maxK ?? PLANNER_DEFAULTS.maxK, even > 0 ? even : left >= chunk ? 1 : 0);
}

function reuseFor(
  requested: ReuseMode | 'auto',
  quality: Quality,
  readyShare: number,
  model: Pick<ServedModel, 'layers' | 'independentTrained'>,
): { reuse: GenerationPlan['reuse']; why: string } {
  if (requested !== 'auto') {
    const why = `reuse ${requested} asked for by the request`;
    if (requested === 'blend')
      return { reuse: { mode: 'blend', blendRatio: PLANNER_DEFAULTS.blendRatio }, why };
    if (requested === 'link')
      return { reuse: { mode: 'link', linkTokens: PLANNER_DEFAULTS.linkTokens }, why };
    return { reuse: { mode: requested }, why };
  }
  // Nothing stored yet: every chunk is prefilled anyway, so do it exactly (prefix reuse of the system
  // prompt only). Otherwise the requested quality decides how much cross-chunk attention is restored.
  if (quality === 'exact')
    return {
      reuse: { mode: 'prefix' },
      why: 'exact quality: chunks prefilled together, only the system prefix reused',
    };
  if (readyShare === 0)
    return {
      reuse: { mode: 'prefix' },
      why: 'no retrieved chunk has a stored KV artifact yet: all are prefilled',
    };
  if (quality === 'fast')
    return {
      reuse: { mode: 'independent' },
      why: 'fast quality: every chunk from its stored artifact, re-rotated',
    };
  if (model.independentTrained)
    return {
      reuse: { mode: 'independent' },
      why: 'the model was trained with block-diagonal chunk attention (reuse.json): independent chunks cost it nothing',
    };
  // A model with no layer past the check layer would recompute every chunk token in blend: restore
  // cross-chunk attention with link (EPIC) instead.
  if (model.layers !== undefined && model.layers <= PLANNER_DEFAULTS.blendCheckLayer + 1) {
    return {
      reuse: { mode: 'link', linkTokens: PLANNER_DEFAULTS.linkTokens },
      why: "balanced quality on a model with no layer past blend's check layer: link recomputes chunk heads",
    };
  }
  return {
    reuse: { mode: 'blend', blendRatio: PLANNER_DEFAULTS.blendRatio },
    why: `balanced quality: blend recomputes the ${PLANNER_DEFAULTS.blendRatio * 100}% most deviating chunk tokens`,
  };
}

export interface RetrievedChunk {
  /** Chunk token count. */
  tokens: number;
  /** Whether its KV artifact for the plan's model is ready. */
  ready: boolean;
}

/**
 * Phase 2: given the retrieved chunks (in plan order) and their artifact readiness, fix the reuse mode,
 * squeezed budget and sparse-prefill policy, and drop trailing chunks that would break the budget.
 * Returns the final plan and how many of the chunks to use.
 */
export function finalizePlan(
  plan: Plan,
  req: Pick<PlanRequest, 'reuse' | 'latencyBudgetMs' | 'question' | 'k'>,
  ctx: PlannerContext,
  chunks: readonly RetrievedChunk[],
): { plan: Plan; use: number } {
  const model = ctx.models.find((m) => m.id === plan.generation.model);
  if (!model) throw new Error(`planner: model "${plan.generation.model}" is not served`);
  let use = 0;
  let docTokens = 0;
  for (const c of chunks) {
    if (docTokens + c.tokens > plan.budget.documentTokens) break;
    docTokens += c.tokens;
    use++;
  }
  const kept = chunks.slice(0, use);
  const ready = kept.filter((c) => c.ready).length;
  const { reuse, why: reuseWhy } = reuseFor(
    req.reuse ?? 'auto',
    plan.quality,
    kept.length ? ready / kept.length : 0,
    model,
  );
  const budget = `${plan.budget.documentTokens}-token document budget (limited by ${plan.budget.limitedBy})`;
  let kWhy = `${use} of ${chunks.length} retrieved chunks fit the ${budget}`;

  // With a latency budget, chunks that must be prefilled live (no artifact, or every chunk in an exact
  // mode) cost prefill time: drop the lowest-ranked ones until the estimate fits.
  if (req.latencyBudgetMs !== undefined) {
    const live = (c: RetrievedChunk) => reuse.mode === 'full' || reuse.mode === 'prefix' || !c.ready;
    const qTokens = ctx.countTokens(req.question);
    const estimateMs = (cs: readonly RetrievedChunk[]) =>
      cs.reduce(
        (ms, c) => ms + (c.tokens * 1000) / (live(c) ? model.prefillTokensPerSec : model.loadTokensPerSec),
        (qTokens * 1000) / model.prefillTokensPerSec,
      );
    const before = use;
    while (use > 1 && estimateMs(chunks.slice(0, use)) > req.latencyBudgetMs) use--;
    docTokens = chunks.slice(0, use).reduce((a, c) => a + c.tokens, 0);
    if (use < before)
      kWhy += `; ${before - use} dropped to meet the ${req.latencyBudgetMs} ms latency budget`;
  }

  const fixedTokens = ctx.systemTokens + docTokens;
  const liveTokens =
    ctx.countTokens(req.question) + (reuse.mode === 'full' || reuse.mode === 'prefix' ? docTokens : 0);
  // Squeezed attention over stored chunks only, over fixed contexts long enough to gain (squeezeFrom), at
  // the budget the eval (`kvrag eval`, docs/eval/squeezed) shows each quality level can afford on kvrag-tiny:
  // with per-key scoring, 1/3, 1/8 and 1/16 each score what full scores (59/60 at 2K, 60/60 at 4K tokens;
  // session 9's block ranking and clustered left-out share too, over f32 and int8 caches), so `fast` keeps
  // 1/16 of the keys and `balanced` 1/8 — which since session 9 at least breaks even with dense (`kvrag
  // bench squeezed`, quiet, 32K: 1.08–1.20× the runner's dense int8 attention per layer on one thread,
  // engine decode 1.07–1.36×; on two threads 0.99–1.12× per layer, engine 0.88–1.24×) — over independent
  // chunks, what the eval measures, so `balanced` squeezes where its
  // reuse is `independent` (a model trained for it, as kvrag-tiny) and attends every key over blend / link;
  // `exact` never squeezes.
  const sqBudget = SQUEEZED_BUDGET[plan.quality];
  const squeezeWhy =
    reuse.mode === 'full' || reuse.mode === 'prefix'
      ? `dense: chunks are prefilled live in ${reuse.mode} mode, so there is no stored index to select from`
      : sqBudget === null
        ? `dense: squeezed attention costs answers the planner cannot see; ${plan.quality} quality attends every key`
        : plan.quality === 'balanced' && reuse.mode !== 'independent'
          ? `dense: the eval keeps the answer at 1/8 over independent chunks only; balanced quality over ${reuse.mode} attends every key`
          : fixedTokens < PLANNER_DEFAULTS.squeezeFrom
            ? `dense: a ${fixedTokens}-token fixed context is under ${PLANNER_DEFAULTS.squeezeFrom}, too short to gain`
            : null;
  const squeezed: GenerationPlan['squeezed'] =
    squeezeWhy || sqBudget === null ? { mode: 'off' } : { mode: 'budget', budget: sqBudget };
  const breakEven = model.sparseBreakEven;
  const sparse: GenerationPlan['sparse'] = {
    mode: breakEven !== null && liveTokens >= breakEven ? 'auto' : 'off',
  };
  const sparseWhy =
    breakEven === null
      ? `dense: sparse prefill never beat dense on this model (no break-even)`
      : sparse.mode === 'auto'
        ? `${liveTokens} live tokens reach the model's sparse break-even (${breakEven}): its per-head patterns`
        : `dense: ${liveTokens} live tokens are under the model's sparse break-even (${breakEven})`;
  return {
    plan: {
      ...plan,
      generation: {
        ...plan.generation,
        reuse,
        squeezed,
        sparse,
        why: {
          k: req.k !== undefined ? `k = ${req.k} per collection asked for by the request; ${kWhy}` : kWhy,
          reuse: reuseWhy,
          squeezed:
            squeezeWhy ??
            `${plan.quality} quality over a ${fixedTokens}-token fixed context: keep the best ${budgetLabel(sqBudget!)} of its keys`,
          sparse: sparseWhy,
        },
      },
    },
    use,
  };
}
