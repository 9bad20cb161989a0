// Attention kernels of the reference backend: dense causal (f32 scores), key ranges per kv head
// (squeezed attention's step) and a sparse plan's ranges + columns with log-sum-exp (sparse prefill, f64).
// Arguments arrive checked (checked.ts); plans flattened (plan.ts).
import type { AttentionCall } from '../kernels.ts';
import type { FlatPlan } from '../plan.ts';
import { type RefKVCache, type Storage, softmaxRow } from './storage.ts';

type Call = AttentionCall<Storage, RefKVCache>;

/**
 * Softmax attention of the q row at `qo` (a head of kv head g) over n keys of the layer — positions
 * keys[0..n) or, with keys null, 0..n−1 — added into out at qo. scores: scratch of ≥ n floats.
 */
function attendKeys(
  qs: Float32Array,
  qo: number,
  c: RefKVCache,
  layer: number,
  g: number,
  n: number,
  keys: ArrayLike<number> | null,
  scale: number,
  scores: Float32Array,
  out: Float32Array,
): void {
  const d = c.spec.headDim;
  const base = c.offset(layer, g, 0);
  for (let j = 0; j < n; j++) {
    let dot = 0;
    const ko = base + (keys ? keys[j] : j) * d;
    for (let t = 0; t < d; t++) dot += qs[qo + t] * c.k[ko + t];
    scores[j] = dot * scale;
  }
  softmaxRow(scores, 0, n, scores, 0);
  for (let j = 0; j < n; j++) {
    const p = scores[j];
    const vo = base + (keys ? keys[j] : j) * d;
    for (let t = 0; t < d; t++) out[qo + t] += p * c.v[vo + t];
  }
}

/** q, out: [rows, width]. keys[i] null = dense causal for span i, else its one-block ranges. */
export function attentionRef(
  { q, rows, width, layer, spans, heads, scale }: Call,
  keys: readonly (FlatPlan | null)[] | null,
): Float32Array {
  const qs = q as Float32Array;
  const out = new Float32Array(rows * width);
  spans.forEach((s, si) => {
    const d = s.spec.headDim;
    const group = heads / s.spec.kvHeads;
    const plan = keys?.[si] ?? null;
    const scores = new Float32Array(s.spec.capacity);
    const pos: number[] = [];
    for (let i = 0; i < s.count; i++) {
      const last = s.pos + i; // causal: positions ≤ last
      for (let h = 0; h < heads; h++) {
        const g = Math.floor(h / group);
        const qo = (s.row + i) * width + h * d;
        if (!plan) {
          attendKeys(qs, qo, s.cache, layer, g, last + 1, null, scale, scores, out);
          continue;
        }
        pos.length = 0;
        for (let r = plan.rangeOffs[g]; r < plan.rangeOffs[g + 1]; r++)
          for (let p = plan.ranges[2 * r]; p < Math.min(plan.ranges[2 * r + 1], last + 1); p++) pos.push(p);
        if (pos.length === 0) continue;
        const scratch = pos.length > scores.length ? new Float32Array(pos.length) : scores; // overlapping ranges
        attendKeys(qs, qo, s.cache, layer, g, pos.length, pos, scale, scratch, out);
      }
    }
  });
  return out;
}

/** One span's rows over its plan's keys ∩ [0, p], softmax in f64. → out [count, width], lse [count, heads]. */
export function sparseAttentionRef(
  { q, width, layer, spans, heads, scale }: Call,
  plan: FlatPlan,
): { out: Float32Array; lse: Float32Array } {
  const qs = q as Float32Array;
  const span = spans[0];
  const c = span.cache;
  const { kvHeads, headDim: d } = span.spec;
  const group = heads / kvHeads;
  const out = new Float32Array(span.count * width);
  const lse = new Float32Array(span.count * heads);
  const acc = new Float64Array(d);
  for (let i = 0; i < span.count; i++) {
    const b = Math.floor(i / plan.blockSize);
    const p = span.pos + i;
    for (let h = 0; h < heads; h++) {
      const g = Math.floor(h / group);
      const u = g * plan.blocks + b;
      const keys: number[] = [];
      for (let r = plan.rangeOffs[u]; r < plan.rangeOffs[u + 1]; r++)
        for (let j = plan.ranges[2 * r]; j < Math.min(plan.ranges[2 * r + 1], p + 1); j++) keys.push(j);
      for (let t = plan.colOffs[u]; t < plan.colOffs[u + 1]; t++)
        if (plan.cols[t] <= p) keys.push(plan.cols[t]);
      const qo = (span.row + i) * width + h * d;
      const base = c.offset(layer, g, 0);
      const s = new Float64Array(keys.length);
      let max = Number.NEGATIVE_INFINITY;
      keys.forEach((j, t) => {
        let dot = 0;
        for (let e = 0; e < d; e++) dot += qs[qo + e] * c.k[base + j * d + e];
        s[t] = dot * scale;
        if (s[t] > max) max = s[t];
      });
      acc.fill(0);
      let z = 0;
      keys.forEach((j, t) => {
        const w = Math.exp(s[t] - max);
        z += w;
        for (let e = 0; e < d; e++) acc[e] += w * c.v[base + j * d + e];
      });
      const oo = i * width + h * d;
      for (let e = 0; e < d; e++) out[oo + e] = z > 0 ? acc[e] / z : 0;
      lse[i * heads + h] = z > 0 ? max + Math.log(z) : Number.NEGATIVE_INFINITY;
    }
  }
  return { out, lse };
}
