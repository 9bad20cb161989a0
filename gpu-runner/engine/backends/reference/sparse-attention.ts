// Backend.sparseAttention on the reference backend (sparse prefill, DESIGN.md §4.3): for each query row
// and head, the plan's keys (ranges ∪ columns of its kv head and query block) up to the row's own
// position, softmax in f64 over exactly that set.
import type { SeqSpan, SparsePlan, Tensor } from '../types.ts';
import { cache, f32, RefTensor, rows2 } from './storage.ts';

export function sparseAttentionRef(
  q: Tensor,
  layer: number,
  span: SeqSpan,
  plan: SparsePlan,
  heads: number,
  scale: number,
): { out: Tensor; lse: Tensor } {
  const [, width] = rows2(q);
  const qs = f32(q, 'sparseAttention q');
  const c = cache(span.cache);
  const { kvHeads, headDim: d } = c.spec;
  if (width !== heads * d) throw new Error(`sparseAttention: q [${q.shape}] for ${heads}×${d}`);
  const limit = span.pos + span.count;
  if (limit > c.spec.capacity) throw new Error('sparseAttention: positions beyond cache capacity');
  const nQB = Math.ceil(span.count / plan.blockSize);
  if (plan.ranges.length !== kvHeads || plan.ranges.some((g) => g.length !== nQB))
    throw new Error(`sparseAttention: plan must be [${kvHeads} kv heads][${nQB} query blocks]`);
  const group = heads / kvHeads;
  const out = new Float32Array(span.count * width);
  const lse = new Float32Array(span.count * heads);
  const acc = new Float64Array(d);
  for (let i = 0; i < span.count; i++) {
    const b = Math.floor(i / plan.blockSize);
    const p = span.pos + i;
    for (let h = 0; h < heads; h++) {
      const g = Math.floor(h / group);
      const keys: number[] = [];
      const rs = plan.ranges[g][b];
      for (let r = 0; r + 1 < rs.length; r += 2) {
        if (rs[r] < 0 || rs[r + 1] > limit || rs[r] > rs[r + 1])
          throw new Error(`sparseAttention: bad range [${rs[r]}, ${rs[r + 1]})`);
        for (let j = rs[r]; j < Math.min(rs[r + 1], p + 1); j++) keys.push(j);
      }
      for (const j of plan.columns[g]?.[b] ?? []) {
        if (j < 0 || j >= limit) throw new Error(`sparseAttention: column ${j} outside the span`);
        if (j <= p) keys.push(j);
      }
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
  return {
    out: new RefTensor([span.count, width], 'f32', out),
    lse: new RefTensor([span.count, heads], 'f32', lse),
  };
}
