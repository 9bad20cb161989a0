// k-means' nearest-centroid step on the wasm runtime's SIMD kernel (the O(n·k·d) part of offline
// clustering), for `bench squeezed` and its tests; the engine's index build uses the host assigner
// (kmeans.ts assignHost), which this matches.
import type { Assigner } from '../gpu-runner/engine/attention/squeezed/kmeans.ts';
import type { Tensor } from '../gpu-runner/engine/backends/types.ts';
import type { WasmBackend } from '../gpu-runner/engine/backends/wasm/index.ts';
import { allocTensor } from '../gpu-runner/engine/backends/wasm/tensors.ts';

/** assign[i] = argmin_c ‖x_i − c‖², dist[i] that distance. points [n, d], centroids [c, d] (f32). */
export function wasmKmeansAssign(
  b: WasmBackend,
  points: Tensor,
  centroids: Tensor,
): { assign: Tensor; dist: Tensor } {
  const [n, d] = points.shape;
  const [k, dc] = centroids.shape;
  if (points.shape.length !== 2 || centroids.shape.length !== 2 || d !== dc)
    throw new Error(`kmeansAssign: points [${points.shape}] vs centroids [${centroids.shape}]`);
  const rt = b.kernels.rt;
  const pt = b.handleOf(points);
  const ct = b.handleOf(centroids);
  const f = rt.mem.f32;
  const cnorm = new Float32Array(k);
  for (let j = 0; j < k; j++) {
    let s = 0;
    for (let e = 0; e < d; e++) s += f[(ct.off >> 2) + j * d + e] ** 2;
    cnorm[j] = s;
  }
  const cn = b.upload({ dtype: 'f32', shape: [k], data: cnorm });
  const assign = allocTensor(rt.mem, n * 4);
  const dist = allocTensor(rt.mem, n * 4);
  rt.kmeansAssign(pt.off, ct.off, b.handleOf(cn).off, assign.off, dist.off, n, d, k);
  b.free(cn);
  return { assign: b.adopt(assign, [n], 'i32'), dist: b.adopt(dist, [n]) };
}

/** An Assigner for buildIndex running on the wasm kernel. */
export function wasmAssigner(b: WasmBackend): Assigner {
  return (points, n, d, centroids, k) => {
    const pt = b.upload({ dtype: 'f32', shape: [n, d], data: points });
    const ct = b.upload({ dtype: 'f32', shape: [k, d], data: centroids });
    const { assign, dist } = wasmKmeansAssign(b, pt, ct);
    // the wasm heap is host memory: the labels are there as soon as the kernel returns
    const off = b.handleOf(assign).off >> 2;
    const labels = b.kernels.rt.mem.i32.slice(off, off + n);
    for (const t of [pt, ct, assign, dist]) b.free(t);
    return labels;
  };
}
