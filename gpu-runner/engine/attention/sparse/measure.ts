// Measuring sparse prefill against dense on a real model (`kvrag bench prefill`, `kvrag sparse-search`):
// a prefill whose attention steps are intercepted per layer. Each step runs dense attention (timed) and,
// untimed, its log-sum-exp oracle (sparseAttention with the full plan), then every candidate pattern (estimate + selection + sparse kernel,
// timed, with recall = exp(lse_sparse − lse_dense) averaged over rows and heads, relative output error
// and density), and hands the dense output on, so later layers see exact inputs.
import type { Backend, SeqSpan, SparsePlan, Tensor } from '../../backends/types.ts';
import type { SparseAttend } from '../step-attention.ts';
import { SpanEstimator } from './estimate.ts';
import { massRecall, massRecallPerKvHead, relativeError } from './metrics.ts';
import { fullSelection, planDensity, spanGeom, toPlan } from './ranges.ts';
import { selectPlan } from './select.ts';
import { type PatternParams, PLAN_BLOCK } from './types.ts';

/** A candidate: one pattern's parameters for every kv head of a layer, or per layer. */
export interface Candidate {
  name: string;
  params: (layer: number, kvHeads: number) => PatternParams[];
}

export interface CandidateResult {
  name: string;
  /** estimate + selection (host and device) */
  estimateMs: number;
  /** the sparse kernel */
  kernelMs: number;
  recall: number;
  recallPerKvHead: number[];
  relError: number;
  density: number;
  densityPerKvHead: number[];
  used: string[];
}

export interface LayerResult {
  layer: number;
  denseMs: number;
  candidates: CandidateResult[];
}

const now = () => performance.now();

/** Thrown by a probe with `stop` after its last layer: the measurement is complete. */
export class ProbeDone extends Error {
  constructor() {
    super('attention probe: measured every requested layer');
  }
}

/**
 * An attention interceptor (a step's `sparse` attention policy, step-attention.ts) that measures
 * `candidates` on every layer of a single-span step and returns the dense output.
 */
export class AttentionProbe implements SparseAttend {
  readonly results: LayerResult[] = [];
  /** host copies of each measured layer's rotated queries [rows][heads·headDim], with `keepQueries` */
  readonly queries = new Map<number, Float32Array>();
  readonly #keepQueries: boolean;
  readonly #candidates: readonly Candidate[];
  readonly #layers: ReadonlySet<number> | null;
  readonly #stopAfter: number;

  /**
   * layers: the layers measured (null = all); with `stop`, the step ends (ProbeDone thrown) after the
   * last of them, so later layers cost nothing.
   */
  constructor(
    candidates: readonly Candidate[],
    opts: {
      layers?: readonly number[] | null;
      stop?: boolean;
      keepQueries?: boolean;
    } = {},
  ) {
    this.#keepQueries = opts.keepQueries ?? false;
    this.#candidates = candidates;
    this.#layers = opts.layers ? new Set(opts.layers) : null;
    this.#stopAfter = opts.stop && opts.layers ? Math.max(...opts.layers) : Number.POSITIVE_INFINITY;
  }

  attend(
    b: Backend,
    layer: number,
    q: Tensor,
    spans: readonly SeqSpan[],
    heads: number,
    scale: number,
  ): Tensor | null {
    if (spans.length !== 1 || !b.caps.sparseAttention || !b.caps.readNow) return null;
    if (this.#layers && !this.#layers.has(layer)) return null;
    const span = spans[0];
    const { kvHeads, headDim } = span.cache.spec;
    const geom = spanGeom(span, heads, kvHeads, headDim, scale);
    if (this.#keepQueries) this.queries.set(layer, b.readNow(q));
    // dense: attention() for the time; the lse oracle from a second pass through sparseAttention with the
    // full plan (untimed)
    const t0 = now();
    const denseT = b.attention(q, layer, spans, heads, scale);
    const denseOut = b.readNow(denseT);
    const denseMs = now() - t0;
    const full = fullSelection(geom, PLAN_BLOCK);
    const oracle = b.sparseAttention(
      q,
      layer,
      span,
      toPlan(Array(kvHeads).fill(full), PLAN_BLOCK),
      heads,
      scale,
    );
    const lseDense = b.readNow(oracle.lse);
    b.free(oracle.out);
    b.free(oracle.lse);
    const candidates: CandidateResult[] = [];
    for (const c of this.#candidates) {
      const t1 = now();
      const est = new SpanEstimator(b, q, layer, span, geom);
      let plan: SparsePlan;
      let used: string[];
      try {
        ({ plan, used } = selectPlan(est, c.params(layer, kvHeads)));
      } finally {
        est.dispose();
      }
      const t2 = now();
      const r = b.sparseAttention(q, layer, span, plan, heads, scale);
      const out = b.readNow(r.out);
      const t3 = now();
      const lse = b.readNow(r.lse);
      b.free(r.out);
      b.free(r.lse);
      candidates.push({
        name: c.name,
        estimateMs: t2 - t1,
        kernelMs: t3 - t2,
        recall: massRecall(lse, lseDense),
        recallPerKvHead: massRecallPerKvHead(lse, lseDense, heads, kvHeads),
        relError: relativeError(out, denseOut),
        density: planDensity(plan, geom),
        densityPerKvHead: plan.ranges.map((r, g) =>
          planDensity({ blockSize: plan.blockSize, ranges: [r], columns: [plan.columns[g]] }, geom),
        ),
        used: [...new Set(used)],
      });
    }
    this.results.push({ layer, denseMs, candidates });
    if (layer >= this.#stopAfter) {
      b.free(denseT);
      throw new ProbeDone();
    }
    return denseT;
  }
}
