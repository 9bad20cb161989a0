// The webgpu backend's row and matrix ops: each records one dispatch (or copy) into the step's batch and
// returns its output at once. Arguments arrive checked (../checked.ts).
import type { DType } from '../dtypes.ts';
import type { GpuTensor } from './buffers.ts';
import { grid1d, gridRows } from './kernels/common.ts';
import * as ew from './kernels/elementwise.ts';
import { GEMV_ROWS, matmulGemv, matmulTiled, TILE_M, TILE_N } from './kernels/matmul.ts';
import { matmulSubgroupMatrix, subgroupMatrixTile } from './kernels/subgroup-matrix.ts';
import type { WebGPUDevice } from './memory.ts';

/** Rows from which an f16-weight matmul goes to the subgroup-matrix kernel (when it is on). */
const SGM_MIN_ROWS = 16;

export function matmul(
  d: WebGPUDevice,
  useSubgroupMatrix: boolean,
  x: GpuTensor,
  w: GpuTensor,
  wDType: DType,
  bias: GpuTensor | null,
  M: number,
  N: number,
  K: number,
): GpuTensor {
  const y = d.alloc([M, N], 'f32');
  const dt = wDType as 'f32' | 'f16';
  const bufs = [d.bind(d.live(x)), d.bind(d.live(w)), bias ? d.bind(d.live(bias)) : d.none, d.bind(y)];
  const sgm = d.info.subgroupMatrix;
  if (sgm && useSubgroupMatrix && dt === 'f16' && M >= SGM_MIN_ROWS) {
    const tile = subgroupMatrixTile(sgm);
    d.rec.dispatch(matmulSubgroupMatrix(dt, sgm), [M, N, K, bias ? 1 : 0], bufs, [
      Math.ceil(N / tile.cols),
      Math.ceil(M / tile.rows),
    ]);
  } else if (M <= GEMV_ROWS) {
    d.rec.dispatch(matmulGemv(dt), [M, N, K, bias ? 1 : 0], bufs, gridRows(N));
  } else {
    if (Math.ceil(M / TILE_M) > 65535) throw new Error(`matmul: ${M} rows in one call`);
    d.rec.dispatch(matmulTiled(dt), [M, N, K, bias ? 1 : 0], bufs, [
      Math.ceil(N / TILE_N),
      Math.ceil(M / TILE_M),
    ]);
  }
  return y;
}

export function rmsnorm(d: WebGPUDevice, x: GpuTensor, w: GpuTensor, eps: number, M: number, D: number) {
  const y = d.alloc([M, D], 'f32');
  d.rec.dispatch(ew.rmsnorm, [M, D, eps], [d.bind(d.live(x)), d.bind(d.live(w)), d.bind(y)], gridRows(M));
  return y;
}

export function rope(
  d: WebGPUDevice,
  x: GpuTensor,
  positions: GpuTensor,
  invFreq: GpuTensor,
  M: number,
  width: number,
  headDim: number,
): GpuTensor {
  const y = d.alloc([M, width], 'f32');
  d.rec.dispatch(
    ew.rope,
    [M, width, headDim / 2],
    [d.bind(d.live(x)), d.bind(d.live(positions)), d.bind(d.live(invFreq)), d.bind(y)],
    grid1d((M * width) / 2),
  );
  return y;
}

export function swiglu(d: WebGPUDevice, gate: GpuTensor, up: GpuTensor, size: number): GpuTensor {
  const y = d.alloc([size], 'f32');
  d.rec.dispatch(ew.swiglu, [size], [d.bind(d.live(gate)), d.bind(d.live(up)), d.bind(y)], grid1d(size));
  return y;
}

export function softmax(d: WebGPUDevice, x: GpuTensor, M: number, N: number): GpuTensor {
  const y = d.alloc([M, N], 'f32');
  d.rec.dispatch(ew.softmax, [M, N], [d.bind(d.live(x)), d.bind(y)], gridRows(M));
  return y;
}

export function add(d: WebGPUDevice, a: GpuTensor, b: GpuTensor, size: number): GpuTensor {
  const y = d.alloc([size], 'f32');
  d.rec.dispatch(ew.add, [size], [d.bind(d.live(a)), d.bind(d.live(b)), d.bind(y)], grid1d(size));
  return y;
}

/** ids are in [0, V): uploaded ones were checked on the host, device-made ones (argmax) are by construction. */
export function gather(
  d: WebGPUDevice,
  table: GpuTensor,
  tableDType: DType,
  ids: GpuTensor,
  M: number,
  D: number,
  V: number,
): GpuTensor {
  const y = d.alloc([M, D], 'f32');
  d.rec.dispatch(
    ew.gather(tableDType as 'f32' | 'f16'),
    [M, D, V],
    [d.bind(d.live(table)), d.bind(d.live(ids)), d.bind(y)],
    grid1d(M * D),
  );
  return y;
}

export function sliceRows(d: WebGPUDevice, x: GpuTensor, start: number, count: number, D: number): GpuTensor {
  const y = d.alloc([count, D], 'f32');
  if (count * D > 0)
    d.rec.copyEncoder().copyBufferToBuffer(d.live(x).buffer, start * D * 4, y.buffer, 0, count * D * 4);
  return y;
}

export function argmax(d: WebGPUDevice, x: GpuTensor, M: number, N: number): GpuTensor {
  const y = d.alloc([M], 'i32');
  if (N > 0) d.rec.dispatch(ew.argmax, [M, N], [d.bind(d.live(x)), d.bind(y)], gridRows(M));
  return y;
}
