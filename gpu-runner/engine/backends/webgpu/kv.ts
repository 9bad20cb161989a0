// The webgpu backend's KV caches: one buffer each for K and V ([layer][kv_head][pos][head_dim], f32 or
// packed f16), written by a kernel, read back and loaded by copies ordered with the recorded work.
// Arguments arrive checked (../checked.ts).
import { f16Table, f32ToF16 } from '../../half.ts';
import { BackendArgumentError } from '../../errors.ts';
import type { KernelSpan } from '../kernels.ts';
import type { KVBlock, KVCacheSpec } from '../types.ts';
import { GpuKVCache, type GpuTensor } from './buffers.ts';
import * as at from './kernels/attention.ts';
import { grid1d } from './kernels/common.ts';
import type { WebGPUDevice } from './memory.ts';

export function createKVCache(d: WebGPUDevice, spec: KVCacheSpec, dtype: 'f32' | 'f16'): GpuKVCache {
  if (d.failed) throw d.failed;
  if (spec.headDim > at.MAX_HEAD_DIM)
    throw new BackendArgumentError(
      'createKVCache',
      `webgpu takes head_dim ≤ ${at.MAX_HEAD_DIM}, got ${spec.headDim}`,
    );
  if (dtype === 'f16' && spec.headDim % 2 !== 0)
    throw new BackendArgumentError('createKVCache', 'an f16 KV cache needs an even head_dim');
  const c = new GpuKVCache(spec, dtype, null, null, d.generation);
  // new buffers are zero-filled by WebGPU, as the reference cache is
  c.k = d.cacheBuffer(c.bytes);
  c.v = d.cacheBuffer(c.bytes);
  d.caches.add(c);
  return c;
}

export function freeKVCache(d: WebGPUDevice, c: GpuKVCache): void {
  if (c.k) d.rec.destroyLater(c.k);
  if (c.v) d.rec.destroyLater(c.v);
  c.k = null;
  c.v = null;
  d.caches.delete(c);
}

export function kvWrite(
  d: WebGPUDevice,
  layer: number,
  k: GpuTensor,
  v: GpuTensor,
  spans: readonly KernelSpan<GpuKVCache>[],
): void {
  const kt = d.live(k);
  const vt = d.live(v);
  for (const s of spans) {
    const c = d.liveCache(s.cache);
    const { kvHeads, headDim, capacity } = s.spec;
    d.rec.dispatch(
      at.kvWrite(c.dtype),
      [s.count, kvHeads, headDim, s.row, s.pos, c.offset(layer, 0, 0), capacity],
      [d.bind(kt), d.bind(vt), { buffer: c.k }, { buffer: c.v }],
      grid1d((s.count * kvHeads * headDim) / (c.dtype === 'f16' ? 2 : 1)),
    );
  }
}

export async function kvRead(
  d: WebGPUDevice,
  cache: GpuKVCache,
  layer: number,
  start: number,
  count: number,
): Promise<KVBlock> {
  const c = d.liveCache(cache);
  const { kvHeads, headDim } = c.spec;
  const n = kvHeads * count * headDim;
  if (n === 0) return { k: new Float32Array(0), v: new Float32Array(0) };
  const eb = c.elementBytes;
  const parts: { buffer: GPUBuffer; offset: number; bytes: number }[] = [];
  for (const buf of [c.k, c.v])
    for (let h = 0; h < kvHeads; h++)
      parts.push({ buffer: buf, offset: c.offset(layer, h, start) * eb, bytes: count * headDim * eb });
  const bytes = await d.guard(d.rec.readback(parts));
  const all =
    c.dtype === 'f16'
      ? Float32Array.from(new Uint16Array(bytes), (h) => f16Table[h])
      : new Float32Array(bytes);
  return { k: all.slice(0, n), v: all.slice(n) };
}

export function kvLoad(
  d: WebGPUDevice,
  cache: GpuKVCache,
  layer: number,
  start: number,
  count: number,
  block: KVBlock,
): void {
  const c = d.liveCache(cache);
  const { kvHeads, headDim } = c.spec;
  if (count === 0) return;
  // staged through fresh buffers and copied in order with the recorded work (a direct writeBuffer into
  // the cache would land before commands still being recorded)
  const n = block.k.length;
  const eb = c.elementBytes;
  for (const [src, dst] of [
    [block.k, c.k],
    [block.v, c.v],
  ] as const) {
    const tmp = d.alloc([n], c.dtype, true);
    d.write(tmp.buffer, c.dtype === 'f16' ? f32ToF16(src) : src);
    const enc = d.rec.copyEncoder();
    for (let h = 0; h < kvHeads; h++)
      enc.copyBufferToBuffer(
        tmp.buffer,
        h * count * headDim * eb,
        dst,
        c.offset(layer, h, start) * eb,
        count * headDim * eb,
      );
    d.free(tmp);
  }
}

export function kvGather(
  d: WebGPUDevice,
  cache: GpuKVCache,
  layer: number,
  start: number,
  count: number,
): { k: GpuTensor; v: GpuTensor } {
  const c = d.liveCache(cache);
  const { kvHeads, headDim, capacity } = c.spec;
  const width = kvHeads * headDim;
  const k = d.alloc([count, width], 'f32');
  const v = d.alloc([count, width], 'f32');
  d.rec.dispatch(
    at.kvGather(c.dtype),
    [count, kvHeads, headDim, start, c.offset(layer, 0, 0), capacity],
    [{ buffer: c.k }, { buffer: c.v }, d.bind(k), d.bind(v)],
    grid1d(count * width),
  );
  return { k, v };
}
