// What squeezed attention costs and loses (DESIGN.md §4.2): keys attended, fraction, bytes touched;
// attention-mass recall and relative output error against the dense oracle.
import type { AttnGeom, HostLayer } from './attend.ts';
import type { Selection } from './select.ts';

export interface SqueezedStats {
  /** fixed-context keys attended, summed over layers and kv heads */
  keysAttended: number;
  /** fixed-context keys present, summed the same way */
  fixedKeys: number;
  fraction: number;
  /** K and V bytes of the attended keys plus the centroids scored */
  bytesTouched: number;
}

export const emptyStats = (): SqueezedStats => ({
  keysAttended: 0,
  fixedKeys: 0,
  fraction: 0,
  bytesTouched: 0,
});

/** Adds one layer's selection to running stats (bytesPerValue: 4 for the f32 cache). */
export function addSelection(
  stats: SqueezedStats,
  sel: Selection,
  headDim: number,
  bytesPerValue = 4,
): SqueezedStats {
  let keys = 0;
  for (const k of sel.keys) keys += k.length;
  const keysAttended = stats.keysAttended + keys;
  const fixedKeys = stats.fixedKeys + sel.fixedKeys * sel.keys.length;
  return {
    keysAttended,
    fixedKeys,
    fraction: fixedKeys > 0 ? keysAttended / fixedKeys : 0,
    bytesTouched: stats.bytesTouched + keys * 2 * headDim * bytesPerValue + sel.centroidFloats * 4,
  };
}

/**
 * Attention-mass recall: for each query row and head, the dense softmax over the fixed context [0, n)
 * summed over the selected keys; returns the mean and the minimum over rows × heads.
 */
export function attentionRecall(
  q: Float32Array,
  m: number,
  geom: AttnGeom,
  layer: HostLayer,
  n: number,
  sel: Selection,
): { mean: number; min: number } {
  const { heads, kvHeads } = geom;
  const group = heads / kvHeads;
  const s = new Float64Array(n);
  let sum = 0;
  let min = 1;
  for (let i = 0; i < m; i++)
    for (let h = 0; h < heads; h++) {
      const g = Math.floor(h / group);
      denseSoftmax(q, (i * heads + h) * geom.headDim, g, geom, layer, n, s);
      let r = 0;
      for (const j of sel.keys[g]) r += s[j];
      sum += r;
      if (r < min) min = r;
    }
  return { mean: sum / (m * heads), min };
}

/** Dense softmax of one query row (q at offset qo) over kv head g's fixed keys [0, n), into out. */
function denseSoftmax(
  q: Float32Array,
  qo: number,
  g: number,
  geom: AttnGeom,
  layer: HostLayer,
  n: number,
  out: Float64Array,
): void {
  const { headDim: d, scale } = geom;
  let max = Number.NEGATIVE_INFINITY;
  for (let j = 0; j < n; j++) {
    const ko = (g * layer.cap + j) * d;
    let dot = 0;
    for (let e = 0; e < d; e++) dot += q[qo + e] * layer.k[ko + e];
    out[j] = dot * scale;
    if (out[j] > max) max = out[j];
  }
  let z = 0;
  for (let j = 0; j < n; j++) {
    out[j] = Math.exp(out[j] - max);
    z += out[j];
  }
  for (let j = 0; j < n; j++) out[j] /= z;
}

/** ‖a − b‖ / ‖b‖ */
export function relativeError(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / (den || 1));
}

/**
 * The best a selection of the same size could do: per kv head, the keys with the largest softmax
 * weight averaged over its query group and rows (what an oracle with the dense scores would keep).
 */
export function oracleSelection(
  q: Float32Array,
  m: number,
  geom: AttnGeom,
  layer: HostLayer,
  n: number,
  sizes: readonly number[],
): Selection {
  const { heads, kvHeads } = geom;
  const group = heads / kvHeads;
  const keys: Int32Array[] = [];
  const s = new Float64Array(n);
  for (let g = 0; g < kvHeads; g++) {
    const w = new Float64Array(n);
    for (let i = 0; i < m; i++)
      for (let h = g * group; h < (g + 1) * group; h++) {
        denseSoftmax(q, (i * heads + h) * geom.headDim, g, geom, layer, n, s);
        for (let j = 0; j < n; j++) w[j] += s[j];
      }
    const order = Array.from({ length: n }, (_, j) => j).sort((a, b) => w[b] - w[a]);
    keys.push(Int32Array.from(order.slice(0, sizes[g])));
  }
  return { keys, fixedKeys: n, centroidFloats: 0 };
}
