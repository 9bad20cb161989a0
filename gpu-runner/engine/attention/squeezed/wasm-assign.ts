// The k-means nearest-centroid step on the wasm backend (WasmAttentionOps.kmeansAssign), as an
// Assigner for buildIndex: the O(n·k·d) part of offline clustering runs in the SIMD kernel.
import type { WasmAttentionOps } from '../../backends/wasm/attention-ops.ts';
import { asTensor } from '../../backends/wasm/tensors.ts';
import type { Assigner } from './kmeans.ts';

export function wasmAssigner(ops: WasmAttentionOps): Assigner {
  const b = ops.backend;
  return (points, n, d, centroids, k) => {
    const pt = b.upload({ dtype: 'f32', shape: [n, d], data: points });
    const ct = b.upload({ dtype: 'f32', shape: [k, d], data: centroids });
    const { assign, dist } = ops.kmeansAssign(pt, ct);
    // The wasm heap is host memory: read the labels synchronously (as WasmBackend.readInt does).
    const off = asTensor(assign, 'kmeans labels', 'i32').off >> 2;
    const labels = b.rt.mem.i32.slice(off, off + n);
    for (const t of [pt, ct, assign, dist]) b.free(t);
    return labels;
  };
}
