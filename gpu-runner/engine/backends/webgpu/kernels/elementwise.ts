// Elementwise and row-wise kernels: add, swiglu, rope, rmsnorm, softmax, argmax, gather, row copy.
// Row kernels run one workgroup of WG invocations per row and reduce through workgroup memory.
import type { Kernel } from '../recorder.ts';
import { FLAT, FLAT_INDEX, ROW_ARGS, ROW_INDEX, WG, weightReader } from './common.ts';

const REDUCE_SUM = /* wgsl */ `
var<workgroup> red: array<f32, ${WG}>;
fn reduceSum(t: u32, v: f32) -> f32 {
  red[t] = v;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (t < s) { red[t] += red[t + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
fn reduceMax(t: u32, v: f32) -> f32 {
  red[t] = v;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (t < s) { red[t] = max(red[t], red[t + s]); }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}`;

export const add: Kernel = {
  name: 'add',
  params: 'u',
  wgsl: /* wgsl */ `
struct P { n: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(${WG}) fn main(${FLAT}) {
  ${FLAT_INDEX}
  if (i < p.n) { y[i] = a[i] + b[i]; }
}`,
};

export const swiglu: Kernel = {
  name: 'swiglu',
  params: 'u',
  wgsl: /* wgsl */ `
struct P { n: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> gate: array<f32>;
@group(0) @binding(2) var<storage, read> up: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(${WG}) fn main(${FLAT}) {
  ${FLAT_INDEX}
  if (i < p.n) {
    let x = gate[i];
    // silu(x) = x / (1 + e^-x); e^-x is clamped so it never overflows (x < -80 gives -0 either way)
    y[i] = x / (1.0 + exp(min(-x, 80.0))) * up[i];
  }
}`,
};

// 2π split in three parts for Cody–Waite reduction: k·C1 and k·C2 are exact for |k| < 2^16.
const C1 = 6.28125;
const C2 = Math.fround(2 * Math.PI - C1);
const C3 = 2 * Math.PI - C1 - C2;

/** x: [M, width]; one invocation per rotate-half pair. Angles reduced to [-π, π] before cos/sin. */
export const rope: Kernel = {
  name: 'rope',
  params: 'uuu',
  wgsl: /* wgsl */ `
struct P { m: u32, width: u32, half: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> pos: array<i32>;
@group(0) @binding(3) var<storage, read> invFreq: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(${WG}) fn main(${FLAT}) {
  ${FLAT_INDEX}
  let pairs = p.width / 2u;
  if (i >= p.m * pairs) { return; }
  let r = i / pairs;
  let c = i % pairs;
  let h = c / p.half;
  let j = c % p.half;
  let a = f32(pos[r]) * invFreq[j];
  let k = round(a * ${1 / (2 * Math.PI)});
  let red = ((a - k * ${C1}) - k * ${C2}) - k * ${C3.toExponential(10)};
  let cs = cos(red);
  let sn = sin(red);
  let o = r * p.width + h * 2u * p.half + j;
  let u = x[o];
  let v = x[o + p.half];
  y[o] = u * cs - v * sn;
  y[o + p.half] = v * cs + u * sn;
}`,
};

/** One workgroup per row: y = x / sqrt(mean(x²) + eps) · w. */
export const rmsnorm: Kernel = {
  name: 'rmsnorm',
  params: 'uuf',
  wgsl: /* wgsl */ `
struct P { m: u32, d: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
${REDUCE_SUM}
@compute @workgroup_size(${WG}) fn main(${ROW_ARGS}) {
  ${ROW_INDEX}
  if (row >= p.m) { return; }
  let o = row * p.d;
  var ss = 0.0;
  for (var c = t; c < p.d; c += ${WG}u) { let v = x[o + c]; ss += v * v; }
  let inv = 1.0 / sqrt(reduceSum(t, ss) / f32(p.d) + p.eps);
  for (var c = t; c < p.d; c += ${WG}u) { y[o + c] = (x[o + c] * inv) * w[c]; }
}`,
};

/** One workgroup per row. */
export const softmax: Kernel = {
  name: 'softmax',
  params: 'uu',
  wgsl: /* wgsl */ `
struct P { m: u32, n: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
${REDUCE_SUM}
@compute @workgroup_size(${WG}) fn main(${ROW_ARGS}) {
  ${ROW_INDEX}
  if (row >= p.m) { return; }
  let o = row * p.n;
  var mx = -3.0e38;
  for (var c = t; c < p.n; c += ${WG}u) { mx = max(mx, x[o + c]); }
  mx = reduceMax(t, mx);
  var s = 0.0;
  for (var c = t; c < p.n; c += ${WG}u) { let e = exp(x[o + c] - mx); y[o + c] = e; s += e; }
  let inv = 1.0 / reduceSum(t, s);
  for (var c = t; c < p.n; c += ${WG}u) { y[o + c] = y[o + c] * inv; }
}`,
};

/** One workgroup per row; ties go to the lowest index (the reference's rule). */
export const argmax: Kernel = {
  name: 'argmax',
  params: 'uu',
  wgsl: /* wgsl */ `
struct P { m: u32, n: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<i32>;
var<workgroup> bv: array<f32, ${WG}>;
var<workgroup> bi: array<u32, ${WG}>;
@compute @workgroup_size(${WG}) fn main(${ROW_ARGS}) {
  ${ROW_INDEX}
  if (row >= p.m) { return; }
  let o = row * p.n;
  var best = -3.4e38;
  var at = 0xffffffffu;
  for (var c = t; c < p.n; c += ${WG}u) {
    let v = x[o + c];
    if (at == 0xffffffffu || v > best) { best = v; at = c; }
  }
  bv[t] = best;
  bi[t] = at;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (t < s) {
      let v = bv[t + s];
      let j = bi[t + s];
      if (j != 0xffffffffu && (bi[t] == 0xffffffffu || v > bv[t] || (v == bv[t] && j < bi[t]))) {
        bv[t] = v;
        bi[t] = j;
      }
    }
    workgroupBarrier();
  }
  if (t == 0u) { y[row] = i32(bi[0]); }
}`,
};

/** out[r][c] = table[ids[r]][c]; ids outside [0, V) give zeros (the host checks ids it knows). */
export function gather(dtype: 'f32' | 'f16'): Kernel {
  return {
    name: `gather_${dtype}`,
    params: 'uuu',
    wgsl: /* wgsl */ `
struct P { m: u32, d: u32, v: u32 }
@group(0) @binding(0) var<uniform> p: P;
${weightReader(1, 'table', 'tab', dtype)}
@group(0) @binding(2) var<storage, read> ids: array<i32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(${WG}) fn main(${FLAT}) {
  ${FLAT_INDEX}
  if (i >= p.m * p.d) { return; }
  let r = i / p.d;
  let id = ids[r];
  var v = 0.0;
  if (id >= 0 && u32(id) < p.v) { v = tab(u32(id) * p.d + i % p.d); }
  y[i] = v;
}`,
  };
}
