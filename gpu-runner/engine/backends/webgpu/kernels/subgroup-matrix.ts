// y = x · wᵀ (+ bias) on subgroup matrices (tensor cores / simdgroup matrices) through Dawn's
// chromium_experimental_subgroup_matrix: f16 × f16 products accumulated in f32. Used for prefill-sized
// matmuls with f16 weights where the adapter lists an f16→f32 configuration (M×N×K). One subgroup per
// workgroup computes a (2M)×(2N) output tile: per K step the x tile (rounded to f16 — the only
// precision given up) and the w tile go to workgroup memory, then 2 left × 2 right loads feed 4
// multiply-accumulates. x is row-major (left, stride K); w's rows are n-major, i.e. wᵀ column-major
// (right, col_major = true). The results go through workgroup memory so edges and bias are handled
// per element.
// Not testable on llvmpipe (no subgroup matrices): the backend checks it against the tiled kernel on the
// device at start-up and falls back to that kernel when it does not compile or disagrees.
import type { Kernel } from '../recorder.ts';
import { weightReader } from './common.ts';

export interface SubgroupMatrixShape {
  M: number;
  N: number;
  K: number;
  /** Invocations per subgroup (the workgroup is one subgroup). */
  subgroupSize: number;
}

export function matmulSubgroupMatrix(dtype: 'f32' | 'f16', s: SubgroupMatrixShape): Kernel {
  const { M, N, K, subgroupSize: SG } = s;
  const R = 2 * M;
  const C = 2 * N;
  const left = `subgroup_matrix_left<f16, ${K}, ${M}>`;
  const right = `subgroup_matrix_right<f16, ${N}, ${K}>`;
  const result = `subgroup_matrix_result<f32, ${N}, ${M}>`;
  return {
    name: `matmul_sgm_${dtype}_${M}x${N}x${K}_${SG}`,
    params: 'uuuu',
    wgsl: /* wgsl */ `
enable f16;
enable chromium_experimental_subgroup_matrix;
struct P { m: u32, n: u32, k: u32, hasBias: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
${weightReader(2, 'w', 'wv', dtype)}
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
var<workgroup> xs: array<f16, ${R * K}>; // [row][k]
var<workgroup> ws: array<f16, ${C * K}>; // [col][k]
var<workgroup> ys: array<f32, ${R * C}>; // [row][col]
@compute @workgroup_size(${SG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) t: u32) {
  let m0 = wg.y * ${R}u;
  let n0 = wg.x * ${C}u;
  var a00 = ${result}();
  var a01 = ${result}();
  var a10 = ${result}();
  var a11 = ${result}();
  for (var k0 = 0u; k0 < p.k; k0 += ${K}u) {
    for (var e = t; e < ${R * K}u; e += ${SG}u) {
      let r = e / ${K}u;
      let kk = e % ${K}u;
      var v = 0.0;
      if (m0 + r < p.m && k0 + kk < p.k) { v = x[(m0 + r) * p.k + k0 + kk]; }
      xs[e] = f16(clamp(v, -65504.0, 65504.0));
    }
    for (var e = t; e < ${C * K}u; e += ${SG}u) {
      let c = e / ${K}u;
      let kk = e % ${K}u;
      var v = 0.0;
      if (n0 + c < p.n && k0 + kk < p.k) { v = wv((n0 + c) * p.k + k0 + kk); }
      ws[e] = f16(clamp(v, -65504.0, 65504.0));
    }
    workgroupBarrier();
    let l0 = subgroupMatrixLoad<${left}>(&xs, 0u, false, ${K}u);
    let l1 = subgroupMatrixLoad<${left}>(&xs, ${M * K}u, false, ${K}u);
    let r0 = subgroupMatrixLoad<${right}>(&ws, 0u, true, ${K}u);
    let r1 = subgroupMatrixLoad<${right}>(&ws, ${N * K}u, true, ${K}u);
    a00 = subgroupMatrixMultiplyAccumulate(l0, r0, a00);
    a01 = subgroupMatrixMultiplyAccumulate(l0, r1, a01);
    a10 = subgroupMatrixMultiplyAccumulate(l1, r0, a10);
    a11 = subgroupMatrixMultiplyAccumulate(l1, r1, a11);
    workgroupBarrier();
  }
  subgroupMatrixStore(&ys, 0u, a00, false, ${C}u);
  subgroupMatrixStore(&ys, ${N}u, a01, false, ${C}u);
  subgroupMatrixStore(&ys, ${M * C}u, a10, false, ${C}u);
  subgroupMatrixStore(&ys, ${M * C + N}u, a11, false, ${C}u);
  workgroupBarrier();
  for (var e = t; e < ${R * C}u; e += ${SG}u) {
    let r = e / ${C}u;
    let c = e % ${C}u;
    if (m0 + r < p.m && n0 + c < p.n) {
      var v = ys[e];
      if (p.hasBias == 1u) { v += bias[n0 + c]; }
      y[(m0 + r) * p.n + n0 + c] = v;
    }
  }
}`,
  };
}

/** Output tile of one workgroup: rows × columns. */
export function subgroupMatrixTile(s: SubgroupMatrixShape): { rows: number; cols: number } {
  return { rows: 2 * s.M, cols: 2 * s.N };
}
