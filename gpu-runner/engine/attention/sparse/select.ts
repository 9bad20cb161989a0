// One layer's sparse plan from per-kv-head pattern parameters (DESIGN.md §4.3).
import type { SparsePlan } from '../../backends/types.ts';
import type { SpanEstimator } from './estimate.ts';
import { aShapeSelection } from './patterns/a-shape.ts';
import { blockSparseSelection } from './patterns/block-sparse.ts';
import { flexPrefillSelection } from './patterns/flexprefill.ts';
import { verticalSlashSelection } from './patterns/vertical-slash.ts';
import { toPlan } from './ranges.ts';
import { type HeadSelection, type PatternParams, PLAN_BLOCK } from './types.ts';

export function selectHead(est: SpanEstimator, g: number, p: PatternParams): HeadSelection {
  switch (p.pattern) {
    case 'a-shape':
      return aShapeSelection(est.geom, p.sink, p.local);
    case 'vertical-slash':
      return verticalSlashSelection(est, g, p.vertical, p.slash, p.last);
    case 'block-sparse':
      return blockSparseSelection(est, g, p.topk);
    case 'flexprefill':
      return flexPrefillSelection(est, g, p.gamma, p.tau, p.block, p.minBudget);
  }
}

/** The plan of one layer: perHead[g] is kv head g's pattern. `used` names what each kv head ran. */
export function selectPlan(
  est: SpanEstimator,
  perHead: readonly PatternParams[],
): { plan: SparsePlan; used: string[] } {
  if (perHead.length !== est.geom.kvHeads)
    throw new Error(`sparse prefill: ${perHead.length} head patterns for ${est.geom.kvHeads} kv heads`);
  const sel = perHead.map((p, g) => selectHead(est, g, p));
  return { plan: toPlan(sel, PLAN_BLOCK), used: sel.map((s) => s.used) };
}
