// Attention kernels (flash-attention style, online softmax, f32 throughout).
// partial: one workgroup per (split, head, query row) walks its keys in tiles of WG: each invocation
// scores one key, the tile's weights go through workgroup memory, and invocation t accumulates output
// dims t, t + WG, … (head_dim ≤ 4·WG). Keys come from one of three sources (override MODE):
//   0 causal dense: positions [0, qpos0 + row] — Backend.attention; split-KV over `splits` workgroups
//   1 gathered:     positions idx[offs[g] .. offs[g+1]) for kv head g — squeezed attention's selection
//   2 ranges:       [start, end) ranges per (query head, query block), causally masked — block-sparse
//   3 plan:         ranges and gathered columns per (kv head, query block), causally masked —
//                   Backend.sparseAttention and Backend.attentionRanges (one block spanning the rows)
// With splits = 1 the kernel writes the normalised output straight into y (and lse if asked); with
// more, it writes per-split partials that `combine` merges by log-sum-exp (flash decoding).
// lse is stored as u32 bits so an empty key set can hold -inf without inf arithmetic in a shader.
import type { Kernel } from '../recorder.ts';
import { FLAT, FLAT_INDEX, WG, weightReader } from './common.ts';

/** KV cache element type: f32, or f16 packed two per u32 word. */
export type KVDType = 'f32' | 'f16';

export const MAX_HEAD_DIM = 4 * WG;
const NEG_INF_BITS = '0xff800000u';
const NEG = '-3.0e38';

const PARAMS = /* wgsl */ `
struct P {
  nq: u32, heads: u32, kvHeads: u32, headDim: u32,
  scale: f32, kvHeadStride: u32, layerOff: u32, qOff: u32,
  qpos0: u32, chunk: u32, splits: u32, outOff: u32,
  writeLse: u32, nqb: u32, bq: u32, lseOff: u32,
}`;
export const PARTIAL_PARAMS = 'uuuufuuuuuuuuuuu';

export function attentionPartial(mode: 0 | 1 | 2 | 3, kv: KVDType = 'f32'): Kernel {
  return {
    name: `attention_partial_${mode}_${kv}`,
    params: PARTIAL_PARAMS,
    wgsl: /* wgsl */ `${PARAMS}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> q: array<f32>;
${weightReader(2, 'kc', 'kAt', kv)}
${weightReader(3, 'vc', 'vAt', kv)}
// mode 1: positions; mode 2: [start, end) pairs; mode 3: pairs, then columns
@group(0) @binding(4) var<storage, read> idx: array<u32>;
// mode 1: per kv head; mode 2: pair offsets per (head, q block); mode 3: pair offsets per (kv head,
// q block) [kvHeads·nqb + 1], then column offsets into idx [kvHeads·nqb + 1]
@group(0) @binding(5) var<storage, read> offs: array<u32>;
@group(0) @binding(6) var<storage, read_write> o: array<f32>;
@group(0) @binding(7) var<storage, read_write> lse: array<u32>;
var<workgroup> qs: array<f32, ${MAX_HEAD_DIM}>;
var<workgroup> pw: array<f32, ${WG}>;   // the tile's weights
var<workgroup> pk: array<u32, ${WG}>;   // the tile's key positions
var<workgroup> sc: array<f32, ${WG}>;
var<private> m: f32 = ${NEG};
var<private> l: f32 = 0.0;
var<private> acc: array<f32, 4>;

// One tile: this invocation's key position (valid or not) joins the running softmax.
fn tile(t: u32, key: u32, valid: bool, kvBase: u32) {
  var s = ${NEG};
  if (valid) {
    let ko = kvBase + key * p.headDim;
    var dot = 0.0;
    for (var d = 0u; d < p.headDim; d++) { dot += qs[d] * kAt(ko + d); }
    s = dot * p.scale;
  }
  sc[t] = s;
  workgroupBarrier();
  var tmax = ${NEG};
  for (var j = 0u; j < ${WG}u; j++) { tmax = max(tmax, sc[j]); }
  let mNew = max(m, tmax);
  pw[t] = select(0.0, exp(s - mNew), valid);
  pk[t] = key;
  workgroupBarrier();
  let corr = exp(m - mNew);
  l *= corr;
  for (var a = 0u; a < 4u; a++) { acc[a] *= corr; }
  for (var j = 0u; j < ${WG}u; j++) {
    let w = pw[j];
    l += w;
    if (w != 0.0) {
      let vo = kvBase + pk[j] * p.headDim;
      for (var a = 0u; a < 4u; a++) {
        let d = t + a * ${WG}u;
        if (d < p.headDim) { acc[a] += w * vAt(vo + d); }
      }
    }
  }
  m = mNew;
  workgroupBarrier();
}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let t = lid.x;
  let split = wg.x;
  let h = wg.y;
  let row = wg.z;
  let width = p.heads * p.headDim;
  let g = h / (p.heads / p.kvHeads);
  let kvBase = p.layerOff + g * p.kvHeadStride;
  for (var d = t; d < p.headDim; d += ${WG}u) { qs[d] = q[p.qOff + row * width + h * p.headDim + d]; }
  workgroupBarrier();
  let n = p.qpos0 + row + 1u; // causal limit (modes 0 and 2)
  if (${mode}u == 0u) {
    let lo = split * p.chunk;
    let hi = min(lo + p.chunk, n);
    for (var j0 = lo; j0 < hi; j0 += ${WG}u) { tile(t, j0 + t, j0 + t < hi, kvBase); }
  } else if (${mode}u == 1u) {
    let a = offs[g];
    let b = offs[g + 1u];
    let lo = a + split * p.chunk;
    let hi = min(lo + p.chunk, b);
    for (var j0 = lo; j0 < hi; j0 += ${WG}u) {
      let j = j0 + t;
      tile(t, select(0u, idx[min(j, b - 1u)], j < hi), j < hi, kvBase);
    }
  } else if (${mode}u == 3u) {
    let nsel = p.kvHeads * p.nqb;
    let sel = g * p.nqb + row / p.bq;
    for (var r = offs[sel]; r < offs[sel + 1u]; r++) {
      let lo = idx[2u * r];
      let hi = min(idx[2u * r + 1u], n);
      for (var j0 = lo; j0 < hi; j0 += ${WG}u) { tile(t, j0 + t, j0 + t < hi, kvBase); }
    }
    let ca = offs[nsel + 1u + sel];
    let cb = offs[nsel + 2u + sel];
    for (var j0 = ca; j0 < cb; j0 += ${WG}u) {
      let j = j0 + t;
      let key = select(0u, idx[min(j, cb - 1u)], j < cb);
      tile(t, key, j < cb && key < n, kvBase);
    }
  } else {
    let qb = row / p.bq;
    let a = offs[h * p.nqb + qb];
    let b = offs[h * p.nqb + qb + 1u];
    for (var r = a; r < b; r++) {
      let lo = idx[2u * r];
      let hi = min(idx[2u * r + 1u], n);
      for (var j0 = lo; j0 < hi; j0 += ${WG}u) { tile(t, j0 + t, j0 + t < hi, kvBase); }
    }
  }
  let slot = (row * p.heads + h) * p.splits + split;
  let inv = select(0.0, 1.0 / l, l > 0.0);
  for (var a = 0u; a < 4u; a++) {
    let d = t + a * ${WG}u;
    if (d < p.headDim) { o[p.outOff + slot * p.headDim + d] = acc[a] * inv; }
  }
  if (t == 0u && p.writeLse == 1u) {
    lse[p.lseOff + slot] = select(${NEG_INF_BITS}, bitcast<u32>(m + log(l)), l > 0.0);
  }
}`,
  };
}

function combine(withLse: boolean): Kernel {
  return {
    name: `attention_combine${withLse ? '_lse' : ''}`,
    params: 'uuuuu',
    wgsl: /* wgsl */ `
struct P { rows: u32, heads: u32, headDim: u32, splits: u32, outOff: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> po: array<f32>;
@group(0) @binding(2) var<storage, read> pl: array<u32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
${withLse ? '@group(0) @binding(4) var<storage, read_write> yl: array<u32>;' : ''}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nw: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let rh = wg.x + wg.y * nw.x;
  if (rh >= p.rows * p.heads) { return; }
  let base = rh * p.splits;
  var mx = ${NEG};
  for (var s = 0u; s < p.splits; s++) {
    if (pl[base + s] != ${NEG_INF_BITS}) { mx = max(mx, bitcast<f32>(pl[base + s])); }
  }
  var den = 0.0;
  for (var s = 0u; s < p.splits; s++) {
    if (pl[base + s] != ${NEG_INF_BITS}) { den += exp(bitcast<f32>(pl[base + s]) - mx); }
  }
  for (var d = lid.x; d < p.headDim; d += ${WG}u) {
    var v = 0.0;
    for (var s = 0u; s < p.splits; s++) {
      if (pl[base + s] != ${NEG_INF_BITS}) { v += exp(bitcast<f32>(pl[base + s]) - mx) * po[(base + s) * p.headDim + d]; }
    }
    y[p.outOff + rh * p.headDim + d] = select(0.0, v / den, den > 0.0);
  }
  ${withLse ? `if (lid.x == 0u) { yl[rh] = select(${NEG_INF_BITS}, bitcast<u32>(mx + log(den)), den > 0.0); }` : ''}
}`,
  };
}

/** Merges `splits` partials per (row, head) into y rows; one workgroup per (row, head). */
export const attentionCombine = combine(false);
/** The same, also writing the merged log-sum-exp. */
export const attentionCombineLse = combine(true);

/** out[r] = ‖x_r‖² for rows of x: [n, d]. */
export const rowNorms: Kernel = {
  name: 'row_norms',
  params: 'uu',
  wgsl: /* wgsl */ `
struct P { n: u32, d: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(${WG}) fn main(${FLAT}) {
  ${FLAT_INDEX}
  if (i >= p.n) { return; }
  var s = 0.0;
  for (var e = 0u; e < p.d; e++) { let v = x[i * p.d + e]; s += v * v; }
  y[i] = s;
}`,
};

/** out = exact combination of two partials over disjoint key sets; one invocation per (row, head, dim). */
export const attentionMerge: Kernel = {
  name: 'attention_merge',
  params: 'uuu',
  wgsl: /* wgsl */ `
struct P { rows: u32, heads: u32, headDim: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> ao: array<f32>;
@group(0) @binding(2) var<storage, read> al: array<u32>;
@group(0) @binding(3) var<storage, read> bo: array<f32>;
@group(0) @binding(4) var<storage, read> bl: array<u32>;
@group(0) @binding(5) var<storage, read_write> yo: array<f32>;
@group(0) @binding(6) var<storage, read_write> yl: array<u32>;
@compute @workgroup_size(${WG}) fn main(${FLAT}) {
  ${FLAT_INDEX}
  if (i >= p.rows * p.heads * p.headDim) { return; }
  let rh = i / p.headDim;
  let ea = al[rh] == ${NEG_INF_BITS};
  let eb = bl[rh] == ${NEG_INF_BITS};
  let la = bitcast<f32>(al[rh]);
  let lb = bitcast<f32>(bl[rh]);
  var wa = 0.0;
  var wb = 0.0;
  var l = 0.0;
  if (!ea && !eb) {
    let mx = max(la, lb);
    let ea2 = exp(la - mx);
    let eb2 = exp(lb - mx);
    wa = ea2 / (ea2 + eb2);
    wb = eb2 / (ea2 + eb2);
    l = mx + log(ea2 + eb2);
  } else if (!ea) { wa = 1.0; l = la; } else if (!eb) { wb = 1.0; l = lb; }
  yo[i] = wa * ao[i] + wb * bo[i];
  if (i % p.headDim == 0u) { yl[rh] = select(bitcast<u32>(l), ${NEG_INF_BITS}, ea && eb); }
}`,
};

/**
 * Span rows of k, v ([M, kvHeads·headDim]) → cache positions. f32: one invocation per element; f16: one
 * per pair of elements (head_dim is even, so a pair never straddles heads) writing one packed word.
 */
export function kvWrite(kv: KVDType): Kernel {
  const per = kv === 'f16' ? 2 : 1;
  return {
    name: `kv_write_${kv}`,
    params: 'uuuuuuu',
    wgsl: /* wgsl */ `
struct P { count: u32, kvHeads: u32, headDim: u32, row: u32, pos: u32, layerOff: u32, capacity: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> kc: array<${kv === 'f16' ? 'u32' : 'f32'}>;
@group(0) @binding(4) var<storage, read_write> vc: array<${kv === 'f16' ? 'u32' : 'f32'}>;
@compute @workgroup_size(${WG}) fn main(${FLAT}) {
  ${FLAT_INDEX}
  let width = p.kvHeads * p.headDim;
  if (i * ${per}u >= p.count * width) { return; }
  let r = (i * ${per}u) / width;
  let c = (i * ${per}u) % width;
  let h = c / p.headDim;
  let dst = p.layerOff + (h * p.capacity + p.pos + r) * p.headDim + c % p.headDim;
  let src = (p.row + r) * width + c;
  ${
    kv === 'f16'
      ? `kc[dst / 2u] = pack2x16float(vec2f(k[src], k[src + 1u]));
  vc[dst / 2u] = pack2x16float(vec2f(v[src], v[src + 1u]));`
      : `kc[dst] = k[src];
  vc[dst] = v[src];`
  }
}`,
  };
}

/** Cache positions [start, start + count) → k, v: [count, kvHeads·headDim] f32. */
export function kvGather(kv: KVDType): Kernel {
  return {
    name: `kv_gather_${kv}`,
    params: 'uuuuuu',
    wgsl: /* wgsl */ `
struct P { count: u32, kvHeads: u32, headDim: u32, start: u32, layerOff: u32, capacity: u32 }
@group(0) @binding(0) var<uniform> p: P;
${weightReader(1, 'kc', 'kAt', kv)}
${weightReader(2, 'vc', 'vAt', kv)}
@group(0) @binding(3) var<storage, read_write> k: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@compute @workgroup_size(${WG}) fn main(${FLAT}) {
  ${FLAT_INDEX}
  let width = p.kvHeads * p.headDim;
  if (i >= p.count * width) { return; }
  let r = i / width;
  let c = i % width;
  let h = c / p.headDim;
  let src = p.layerOff + (h * p.capacity + p.start + r) * p.headDim + c % p.headDim;
  k[i] = kAt(src);
  v[i] = vAt(src);
}`,
  };
}

/** assign[i] = argmin_c (‖c‖² − 2x·c), dist[i] = ‖x − c‖² of it; one invocation per point. */
export const kmeansAssign: Kernel = {
  name: 'kmeans_assign',
  params: 'uuu',
  wgsl: /* wgsl */ `
struct P { n: u32, d: u32, c: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> cen: array<f32>;
@group(0) @binding(3) var<storage, read> cnorm: array<f32>;
@group(0) @binding(4) var<storage, read_write> assign: array<i32>;
@group(0) @binding(5) var<storage, read_write> dist: array<f32>;
@compute @workgroup_size(${WG}) fn main(${FLAT}) {
  ${FLAT_INDEX}
  if (i >= p.n) { return; }
  let xo = i * p.d;
  var best = 3.4e38;
  var bi = 0u;
  for (var j = 0u; j < p.c; j++) {
    var dot = 0.0;
    for (var e = 0u; e < p.d; e++) { dot += x[xo + e] * cen[j * p.d + e]; }
    let s = cnorm[j] - 2.0 * dot;
    if (s < best) { best = s; bi = j; }
  }
  var xx = 0.0;
  for (var e = 0u; e < p.d; e++) { xx += x[xo + e] * x[xo + e]; }
  assign[i] = i32(bi);
  dist[i] = max(0.0, xx + best);
}`,
};
