// y[M, N] = x[M, K] · w[N, K]ᵀ (+ bias), f32 accumulation always.
// - tiled: register-tiled, a 32×64 output tile per workgroup of 16×8 invocations, each owning a 4×4
//   block; x and w tiles of 16 along K staged in workgroup memory (6 KiB, within compatibility limits).
// - gemv: for few rows (decode), one workgroup per output column reduces along K for up to GEMV_ROWS rows.
// - subgroup-matrix: tensor-core tiles through chromium_experimental_subgroup_matrix (f16 × f16 → f32),
//   only where the adapter lists a configuration; see subgroup-matrix.ts.
import type { Kernel } from '../recorder.ts';
import { WG, weightReader } from './common.ts';

export const GEMV_ROWS = 4;
export const TILE_M = 32;
export const TILE_N = 64;

const HEAD = (dtype: 'f32' | 'f16') => /* wgsl */ `
struct P { m: u32, n: u32, k: u32, hasBias: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
${weightReader(2, 'w', 'wv', dtype)}
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;`;

export function matmulTiled(dtype: 'f32' | 'f16'): Kernel {
  return {
    name: `matmul_tiled_${dtype}`,
    params: 'uuuu',
    wgsl: /* wgsl */ `${HEAD(dtype)}
var<workgroup> xs: array<array<f32, ${TILE_M}>, 16>; // [k][m]
var<workgroup> ws: array<array<f32, ${TILE_N}>, 16>; // [k][n]
@compute @workgroup_size(16, 8)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let m0 = wg.y * ${TILE_M}u;
  let n0 = wg.x * ${TILE_N}u;
  let tid = l.y * 16u + l.x;
  var acc: array<vec4f, 4>; // acc[r][c]: row m0 + l.y + 8r, column n0 + l.x + 16c
  for (var k0 = 0u; k0 < p.k; k0 += 16u) {
    for (var e = tid; e < ${TILE_M * 16}u; e += 128u) {
      let mm = e / 16u;
      let kk = e % 16u;
      var v = 0.0;
      if (m0 + mm < p.m && k0 + kk < p.k) { v = x[(m0 + mm) * p.k + k0 + kk]; }
      xs[kk][mm] = v;
    }
    for (var e = tid; e < ${TILE_N * 16}u; e += 128u) {
      let nn = e / 16u;
      let kk = e % 16u;
      var v = 0.0;
      if (n0 + nn < p.n && k0 + kk < p.k) { v = wv((n0 + nn) * p.k + k0 + kk); }
      ws[kk][nn] = v;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < 16u; kk++) {
      let b = vec4f(ws[kk][l.x], ws[kk][l.x + 16u], ws[kk][l.x + 32u], ws[kk][l.x + 48u]);
      for (var r = 0u; r < 4u; r++) { acc[r] += xs[kk][l.y + 8u * r] * b; }
    }
    workgroupBarrier();
  }
  for (var r = 0u; r < 4u; r++) {
    let m = m0 + l.y + 8u * r;
    if (m >= p.m) { continue; }
    for (var c = 0u; c < 4u; c++) {
      let n = n0 + l.x + 16u * c;
      if (n < p.n) {
        var v = acc[r][c];
        if (p.hasBias == 1u) { v += bias[n]; }
        y[m * p.n + n] = v;
      }
    }
  }
}`,
  };
}

/** One workgroup per output column n (grid split over x and y), up to GEMV_ROWS rows at once. */
export function matmulGemv(dtype: 'f32' | 'f16'): Kernel {
  return {
    name: `matmul_gemv_${dtype}`,
    params: 'uuuu',
    wgsl: /* wgsl */ `${HEAD(dtype)}
var<workgroup> red: array<vec4f, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nw: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let n = wg.x + wg.y * nw.x;
  let t = lid.x;
  var acc = vec4f(0.0);
  if (n < p.n) {
    let wo = n * p.k;
    for (var k = t; k < p.k; k += ${WG}u) {
      let wk = wv(wo + k);
      for (var r = 0u; r < p.m; r++) { acc[r] += x[r * p.k + k] * wk; }
    }
  }
  red[t] = acc;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (t < s) { red[t] += red[t + s]; }
    workgroupBarrier();
  }
  if (t < p.m && n < p.n) {
    var v = red[0][t];
    if (p.hasBias == 1u) { v += bias[n]; }
    y[t * p.n + n] = v;
  }
}`,
  };
}
