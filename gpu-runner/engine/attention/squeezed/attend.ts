// Squeezed attention for one layer (DESIGN.md §4.2): exact attention over the selected fixed-context
// keys, dense causal attention over the live tokens after them, merged by log-sum-exp — on the host
// (f64 accumulation), the oracle the engine's path (FixedContext + Backend.attentionRanges) is tested
// against. Also the dense oracle. Layout: the fixed context holds cache positions [0, n) and live
// tokens start at n; query row i sits at position pos0 + i.
import type { Selection } from './select.ts';

export interface AttnGeom {
  heads: number;
  kvHeads: number;
  headDim: number;
  scale: number;
}

/** One layer of a cache on the host. k, v: [kv_head][cap][head_dim]. */
export interface HostLayer {
  k: Float32Array;
  v: Float32Array;
  cap: number;
}

/** out: [m][heads·headDim] normalised over its keys; lse: [m][heads] = log Σ exp(score); -inf when no key. */
export interface HostPartial {
  out: Float32Array;
  lse: Float32Array;
}

/** Softmax attention of each row/head over keysOf(g, row) (positions of the layer). */
export function attendKeysHost(
  q: Float32Array,
  m: number,
  geom: AttnGeom,
  layer: HostLayer,
  keysOf: (g: number, row: number) => ArrayLike<number>,
): HostPartial {
  const { heads, kvHeads, headDim: d, scale } = geom;
  const group = heads / kvHeads;
  const out = new Float32Array(m * heads * d);
  const lse = new Float32Array(m * heads).fill(Number.NEGATIVE_INFINITY);
  const acc = new Float64Array(d);
  for (let i = 0; i < m; i++)
    for (let h = 0; h < heads; h++) {
      const g = Math.floor(h / group);
      const keys = keysOf(g, i);
      if (keys.length === 0) continue;
      const qo = (i * heads + h) * d;
      const s = new Float64Array(keys.length);
      let max = Number.NEGATIVE_INFINITY;
      for (let t = 0; t < keys.length; t++) {
        const ko = (g * layer.cap + keys[t]) * d;
        let dot = 0;
        for (let e = 0; e < d; e++) dot += q[qo + e] * layer.k[ko + e];
        s[t] = dot * scale;
        if (s[t] > max) max = s[t];
      }
      acc.fill(0);
      let z = 0;
      for (let t = 0; t < keys.length; t++) {
        const w = Math.exp(s[t] - max);
        z += w;
        const vo = (g * layer.cap + keys[t]) * d;
        for (let e = 0; e < d; e++) acc[e] += w * layer.v[vo + e];
      }
      for (let e = 0; e < d; e++) out[qo + e] = acc[e] / z;
      lse[i * heads + h] = max + Math.log(z);
    }
  return { out, lse };
}

/** Exact combination of two partials over disjoint key sets. */
export function mergeHost(a: HostPartial, b: HostPartial, m: number, heads: number, d: number): HostPartial {
  const out = new Float32Array(m * heads * d);
  const lse = new Float32Array(m * heads);
  for (let r = 0; r < m * heads; r++) {
    const la = a.lse[r];
    const lb = b.lse[r];
    const mx = Math.max(la, lb);
    if (mx === Number.NEGATIVE_INFINITY) {
      lse[r] = mx;
      continue;
    }
    const wa = Math.exp(la - mx);
    const wb = Math.exp(lb - mx);
    const z = wa + wb;
    for (let e = 0; e < d; e++) out[r * d + e] = (wa * a.out[r * d + e] + wb * b.out[r * d + e]) / z;
    lse[r] = mx + Math.log(z);
  }
  return { out, lse };
}

const range = (a: number, b: number) => Int32Array.from({ length: Math.max(0, b - a) }, (_, i) => a + i);

/** Dense causal attention (the oracle): row i over positions [0, pos0 + i]. */
export function denseAttentionHost(
  q: Float32Array,
  m: number,
  pos0: number,
  geom: AttnGeom,
  layer: HostLayer,
): HostPartial {
  return attendKeysHost(q, m, geom, layer, (_, i) => range(0, pos0 + i + 1));
}

/** Squeezed: selected fixed keys ⊕ live tokens [n, pos0 + i] by log-sum-exp. */
export function squeezedAttentionHost(
  q: Float32Array,
  m: number,
  pos0: number,
  geom: AttnGeom,
  layer: HostLayer,
  n: number,
  sel: Selection,
): HostPartial {
  const fixed = attendKeysHost(q, m, geom, layer, (g) => sel.keys[g]);
  const live = attendKeysHost(q, m, geom, layer, (_, i) => range(n, pos0 + i + 1));
  return mergeHost(fixed, live, m, geom.heads, geom.headDim);
}
