// Sparse prefill inside the engine (DESIGN.md §4.3): the attention step of a long span — the live tokens
// of a request (question, `full`-mode context) or a long chunk being precomputed — over a per-layer
// plan from the model's config (`auto`) or one forced pattern. Per request: control off / auto /
// pattern; stats: the patterns that ran, density (attended ÷ dense causal pairs, over layers and kv
// heads), and whether everything ran dense.
//
// Runs only where it can: one span alone in its step (its rows are the whole q), at least
// `minTokens` queries (auto: the config's break-even), and a backend with sparseAttention + readNow
// (caps). A request's SparsePrefill is the policy of its steps' `sparse` attention (step-attention.ts).
// Everything else runs the dense attention() (counted as density 1).
import type { SparseStats } from '../../../../contracts/runner-api.ts';
import type { SparseControl } from '../../../../contracts/sparse.ts';
import type { Backend, SeqSpan, Tensor } from '../../backends/types.ts';
import type { SparseAttend } from '../step-attention.ts';
import type { SparseConfig } from './config.ts';
import { SpanEstimator } from './estimate.ts';
import { planDensity, spanGeom } from './ranges.ts';
import { selectPlan } from './select.ts';
import { defaultParams, type PatternParams } from './types.ts';

/** A forced pattern runs from this many queries (two query blocks); below it attention is dense. */
export const PATTERN_MIN_TOKENS = 128;

/** Per request: decides per attention step whether to run sparse, runs it, and keeps the stats. */
export class SparsePrefill implements SparseAttend {
  readonly control: SparseControl;
  readonly config: SparseConfig;
  readonly minTokens: number;
  #kept = 0;
  #total = 0;
  readonly #used = new Set<string>();

  constructor(control: SparseControl, config: SparseConfig) {
    this.control = control;
    this.config = config;
    this.minTokens =
      control.mode === 'off'
        ? Number.POSITIVE_INFINITY
        : control.mode === 'auto'
          ? config.breakEven
          : PATTERN_MIN_TOKENS;
  }

  #params(layer: number, kvHeads: number): PatternParams[] {
    if (this.control.mode === 'pattern') {
      const p = defaultParams(this.control.pattern);
      return Array.from({ length: kvHeads }, () => p);
    }
    return this.config.layers[layer];
  }

  /**
   * Attention for `spans` of `layer`, or null to run the dense attention(): sparse only for a single
   * span of ≥ minTokens rows covering all of q, on a backend that supports it.
   * → [span.count, heads·headDim] (= q's shape), owned by the caller.
   */
  attend(
    b: Backend,
    layer: number,
    q: Tensor,
    spans: readonly SeqSpan[],
    heads: number,
    scale: number,
  ): Tensor | null {
    const dense = () => {
      for (const s of spans) {
        const pairs = s.count * s.pos + (s.count * (s.count + 1)) / 2;
        this.#kept += pairs;
        this.#total += pairs;
      }
      return null;
    };
    if (spans.length !== 1 || !SpanEstimator.supported(b)) return dense();
    const span = spans[0];
    if (span.count < this.minTokens || span.row !== 0 || span.count !== q.shape[0]) return dense();
    const { kvHeads, headDim } = span.cache.spec;
    const geom = spanGeom(span, heads, kvHeads, headDim, scale);
    const est = new SpanEstimator(b, q, layer, span, geom);
    try {
      const { plan, used } = selectPlan(est, this.#params(layer, kvHeads));
      const { out, lse } = b.sparseAttention(q, layer, span, plan, heads, scale);
      b.free(lse);
      const pairs = span.count * span.pos + (span.count * (span.count + 1)) / 2;
      this.#kept += planDensity(plan, geom) * pairs;
      this.#total += pairs;
      for (const u of used) this.#used.add(u);
      return out;
    } finally {
      est.dispose();
    }
  }

  stats(): SparseStats {
    const pattern = this.#used.size > 0 ? [...this.#used].sort().join('+') : 'dense';
    return { pattern, density: this.#total > 0 ? this.#kept / this.#total : 1, dense: this.#used.size === 0 };
  }
}
