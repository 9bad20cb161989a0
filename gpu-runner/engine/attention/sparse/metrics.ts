// Sparse prefill against the dense oracle: attention-mass recall from log-sum-exps (the share of a row's
// dense softmax mass on the kept keys is exp(lse_sparse − lse_dense), exactly) and relative output error.

/** Mean over rows and heads of exp(lseSparse − lseDense); lse*: [rows][heads]. */
export function massRecall(lseSparse: Float32Array, lseDense: Float32Array): number {
  if (lseSparse.length !== lseDense.length) throw new Error('massRecall: shapes differ');
  let s = 0;
  for (let i = 0; i < lseSparse.length; i++) s += Math.min(1, Math.exp(lseSparse[i] - lseDense[i]));
  return lseSparse.length > 0 ? s / lseSparse.length : 1;
}

/** Per kv head: mean recall over its query group's heads and all rows. */
export function massRecallPerKvHead(
  lseSparse: Float32Array,
  lseDense: Float32Array,
  heads: number,
  kvHeads: number,
): number[] {
  const group = heads / kvHeads;
  const rows = lseSparse.length / heads;
  const out = new Array<number>(kvHeads).fill(0);
  for (let r = 0; r < rows; r++)
    for (let h = 0; h < heads; h++)
      out[Math.floor(h / group)] += Math.min(1, Math.exp(lseSparse[r * heads + h] - lseDense[r * heads + h]));
  return out.map((s) => s / (rows * group));
}

/** ‖a − b‖ / ‖b‖. */
export function relativeError(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return den > 0 ? Math.sqrt(num / den) : Math.sqrt(num);
}
