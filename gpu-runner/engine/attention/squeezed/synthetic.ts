// Synthetic fixed contexts with cluster structure, for the squeezed-attention tests and bench: each kv
// head's keys are a mixture of Gaussians around `topics` random unit directions (norm `radius`, noise
// `noise` per component), values are uniform; a query head attends to a few of its kv head's topics.
import { prng } from './kmeans.ts';

export interface SyntheticContext {
  /** k, v: [kv_head][cap][head_dim]; positions [0, n) fixed context, [n, cap) live tokens (same law). */
  k: Float32Array;
  v: Float32Array;
  cap: number;
  /** topics: [kv_head][topics][head_dim] unit directions; topicOf: [kv_head][cap] */
  topics: Float32Array;
  topicOf: Int32Array;
}

export interface SyntheticOptions {
  cap: number;
  kvHeads: number;
  headDim: number;
  topics: number;
  seed: number;
  radius?: number;
  noise?: number;
}

function gauss(rand: () => number): number {
  const u = Math.max(rand(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
}

export function syntheticContext(o: SyntheticOptions): SyntheticContext {
  const { cap, kvHeads, headDim: d, topics: t, seed } = o;
  const radius = o.radius ?? 4;
  const noise = o.noise ?? 0.35;
  const rand = prng(seed);
  const topics = new Float32Array(kvHeads * t * d);
  for (let i = 0; i < kvHeads * t; i++) {
    let s = 0;
    for (let e = 0; e < d; e++) {
      topics[i * d + e] = gauss(rand);
      s += topics[i * d + e] ** 2;
    }
    for (let e = 0; e < d; e++) topics[i * d + e] /= Math.sqrt(s);
  }
  const k = new Float32Array(kvHeads * cap * d);
  const v = new Float32Array(kvHeads * cap * d);
  const topicOf = new Int32Array(kvHeads * cap);
  for (let g = 0; g < kvHeads; g++)
    for (let p = 0; p < cap; p++) {
      const c = Math.floor(rand() * t);
      topicOf[g * cap + p] = c;
      const o2 = (g * cap + p) * d;
      const to = (g * t + c) * d;
      for (let e = 0; e < d; e++) {
        k[o2 + e] = radius * topics[to + e] + noise * gauss(rand);
        v[o2 + e] = rand() * 2 - 1;
      }
    }
  return { k, v, cap, topics, topicOf };
}

/**
 * Query rows [rows][heads·headDim]: the heads of kv head g's group point at the same `focus` of g's
 * topics (as GQA groups tend to), with norm `strength` (default 4·√headDim, so with keys of norm 4 the
 * aimed-at keys lead by ≈ 16/focus logits at scale 1/√headDim), plus Gaussian noise of `noise` per component.
 */
export function syntheticQueries(
  ctx: SyntheticContext,
  o: {
    rows: number;
    heads: number;
    kvHeads: number;
    headDim: number;
    topics: number;
    seed: number;
    focus?: number;
    strength?: number;
    noise?: number;
  },
): Float32Array {
  const { rows, heads, kvHeads, headDim: d, topics: t } = o;
  const rand = prng(o.seed);
  const focus = o.focus ?? 2;
  const strength = o.strength ?? 4 * Math.sqrt(d);
  const noise = o.noise ?? 0.3;
  const group = heads / kvHeads;
  const q = new Float32Array(rows * heads * d);
  const picks = Array.from({ length: kvHeads }, () =>
    Array.from({ length: focus }, () => Math.floor(rand() * t)),
  );
  for (let i = 0; i < rows; i++)
    for (let h = 0; h < heads; h++) {
      const g = Math.floor(h / group);
      const qo = (i * heads + h) * d;
      for (let e = 0; e < d; e++) q[qo + e] = noise * gauss(rand);
      for (const c of picks[g]) {
        const to = (g * t + c) * d;
        for (let e = 0; e < d; e++) q[qo + e] += (strength / focus) * ctx.topics[to + e];
      }
    }
  return q;
}

/** One kv head's keys of positions [0, n) as [n][d] (a view of ctx.k, whose heads are [cap][d]). */
export function headKeys(ctx: SyntheticContext, g: number, n: number, d: number): Float32Array {
  return ctx.k.subarray(g * ctx.cap * d, (g * ctx.cap + n) * d);
}

/** The artifact layout [kv_head][n][d] of positions [0, n) (copied out of the cap-strided buffer). */
export function fixedKeys(ctx: SyntheticContext, kvHeads: number, n: number, d: number): Float32Array {
  const out = new Float32Array(kvHeads * n * d);
  for (let g = 0; g < kvHeads; g++) out.set(headKeys(ctx, g, n, d), g * n * d);
  return out;
}
