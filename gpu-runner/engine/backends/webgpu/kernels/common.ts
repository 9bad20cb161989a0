// Shared pieces of the WGSL kernels: the flat-index preamble for 1-D element grids (split over x and y,
// since one dimension holds at most 65535 workgroups), f16 reads from packed words, and the grid size.

export const WG = 64;
export const MAX_GROUPS = 65535;

/** Workgroups (x, y) covering `n` invocations of WG each. */
export function grid1d(n: number, wg = WG): [number, number] {
  const groups = Math.ceil(n / wg);
  if (groups <= MAX_GROUPS) return [groups, 1];
  return [MAX_GROUPS, Math.ceil(groups / MAX_GROUPS)];
}

/** Workgroups (x, y) for `n` independent workgroups (rows). */
export function gridRows(n: number): [number, number] {
  return n <= MAX_GROUPS ? [n, 1] : [MAX_GROUPS, Math.ceil(n / MAX_GROUPS)];
}

/** Entry-point arguments and the flat element index `i` for grid1d dispatches. */
export const FLAT = /* wgsl */ `@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u`;
export const FLAT_INDEX = /* wgsl */ `let i = g.x + g.y * nw.x * ${WG}u;`;
/** The flat workgroup (row) index for gridRows dispatches. */
export const ROW_ARGS = /* wgsl */ `@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nw: vec3u, @builtin(local_invocation_id) lid: vec3u`;
export const ROW_INDEX = /* wgsl */ `let row = wg.x + wg.y * nw.x; let t = lid.x;`;

/**
 * Declares `src` as weights of `dtype` and a reader `fn <name>(e: u32) -> f32` of element e.
 * f16 data is packed two halves per u32 (unpack2x16float is core WGSL: no shader-f16 needed).
 */
export function weightReader(binding: number, src: string, name: string, dtype: 'f32' | 'f16'): string {
  if (dtype === 'f32') {
    return `@group(0) @binding(${binding}) var<storage, read> ${src}: array<f32>;
fn ${name}(e: u32) -> f32 { return ${src}[e]; }`;
  }
  return `@group(0) @binding(${binding}) var<storage, read> ${src}: array<u32>;
fn ${name}(e: u32) -> f32 { let h = unpack2x16float(${src}[e >> 1u]); return select(h.x, h.y, (e & 1u) == 1u); }`;
}
