// The `webgpu` backend: WGSL kernels on Dawn behind the checking layer (../checked.ts). Ops record
// dispatches into the step's command batch (recorder.ts) and return at once; read()/readInt()/kvRead()
// submit the batch and await the copy, so a greedy decode step reads back only its token ids. The parts:
// memory.ts (device, memory, device loss), ops.ts (row and matrix ops), kv.ts (KV caches), attend.ts
// (attention). No readNow: work is queued, so squeezed attention's in-step selection is refused here.
import { CheckedBackend } from '../checked.ts';
import type { DType, HostTensor } from '../dtypes.ts';
import type { AttentionCall, KernelSpan, Kernels } from '../kernels.ts';
import type { FlatPlan } from '../plan.ts';
import type { KVBlock, KVCacheSpec } from '../types.ts';
import * as attend from './attend.ts';
import type { GpuKVCache, GpuTensor } from './buffers.ts';
import { type DeviceInfo, openDevice } from './device.ts';
import * as kv from './kv.ts';
import { WebGPUDevice, type WebGPUOptions } from './memory.ts';
import * as ops from './ops.ts';
import { checkSubgroupMatrix } from './subgroup-check.ts';

type Call = AttentionCall<GpuTensor, GpuKVCache>;

export class WebGPUKernels implements Kernels<GpuTensor, GpuKVCache> {
  readonly name = 'webgpu';
  readonly weightDTypes: readonly DType[] = ['f32', 'f16'];
  readonly kvDType: 'f32' | 'f16';
  readonly dev: WebGPUDevice;
  /** 'on', 'unavailable' (adapter lists no f16→f32 configuration), or why it was turned off. */
  subgroupMatrix = 'unavailable';

  constructor(dev: WebGPUDevice) {
    this.dev = dev;
    this.kvDType = dev.opts.kvDType ?? 'f32';
  }

  get info(): DeviceInfo {
    return this.dev.info;
  }
  /** Resolves once a lost device has been replaced (immediately when none was lost). */
  ready(): Promise<void> {
    return this.dev.ready();
  }

  // --- memory -------------------------------------------------------------------------------------
  upload(host: HostTensor): GpuTensor {
    return this.dev.upload(host);
  }
  async read(t: GpuTensor, size: number): Promise<Float32Array> {
    return new Float32Array(await this.dev.readback(t, size * 4));
  }
  async readInt(t: GpuTensor, size: number): Promise<Int32Array> {
    return new Int32Array(await this.dev.readback(t, size * 4));
  }
  free(t: GpuTensor): void {
    this.dev.free(t);
  }
  sync(): Promise<void> {
    return this.dev.sync();
  }
  dispose(): void {
    this.dev.dispose();
  }

  // --- ops ----------------------------------------------------------------------------------------
  matmul(x: GpuTensor, w: GpuTensor, wDType: DType, bias: GpuTensor | null, m: number, n: number, k: number) {
    return ops.matmul(this.dev, this.subgroupMatrix === 'on', x, w, wDType, bias, m, n, k);
  }
  rmsnorm(x: GpuTensor, w: GpuTensor, eps: number, m: number, d: number): GpuTensor {
    return ops.rmsnorm(this.dev, x, w, eps, m, d);
  }
  rope(x: GpuTensor, positions: GpuTensor, invFreq: GpuTensor, m: number, width: number, headDim: number) {
    return ops.rope(this.dev, x, positions, invFreq, m, width, headDim);
  }
  swiglu(gate: GpuTensor, up: GpuTensor, size: number): GpuTensor {
    return ops.swiglu(this.dev, gate, up, size);
  }
  softmax(x: GpuTensor, m: number, n: number): GpuTensor {
    return ops.softmax(this.dev, x, m, n);
  }
  add(a: GpuTensor, b: GpuTensor, size: number): GpuTensor {
    return ops.add(this.dev, a, b, size);
  }
  gather(table: GpuTensor, tableDType: DType, ids: GpuTensor, m: number, d: number, v: number): GpuTensor {
    return ops.gather(this.dev, table, tableDType, ids, m, d, v);
  }
  sliceRows(x: GpuTensor, start: number, count: number, d: number): GpuTensor {
    return ops.sliceRows(this.dev, x, start, count, d);
  }
  argmax(x: GpuTensor, m: number, n: number): GpuTensor {
    return ops.argmax(this.dev, x, m, n);
  }

  // --- KV cache and attention ---------------------------------------------------------------------
  createKVCache(spec: KVCacheSpec): GpuKVCache {
    return kv.createKVCache(this.dev, spec, this.kvDType);
  }
  freeKVCache(c: GpuKVCache): void {
    kv.freeKVCache(this.dev, c);
  }
  kvWrite(layer: number, k: GpuTensor, v: GpuTensor, spans: readonly KernelSpan<GpuKVCache>[]): void {
    kv.kvWrite(this.dev, layer, k, v, spans);
  }
  kvRead(c: GpuKVCache, _spec: KVCacheSpec, layer: number, start: number, count: number): Promise<KVBlock> {
    return kv.kvRead(this.dev, c, layer, start, count);
  }
  kvLoad(c: GpuKVCache, _spec: KVCacheSpec, layer: number, start: number, count: number, block: KVBlock) {
    kv.kvLoad(this.dev, c, layer, start, count, block);
  }
  kvGather(c: GpuKVCache, _spec: KVCacheSpec, layer: number, start: number, count: number) {
    return kv.kvGather(this.dev, c, layer, start, count);
  }
  attention(call: Call): GpuTensor {
    return attend.attention(this.dev, call, null);
  }
  sparseAttention(call: Call, plan: FlatPlan): { out: GpuTensor; lse: GpuTensor } {
    return attend.sparseAttention(this.dev, call, plan);
  }
  attentionRanges(call: Call, keys: readonly (FlatPlan | null)[]): GpuTensor {
    return attend.attention(this.dev, call, keys);
  }
}

export type WebGPUBackend = CheckedBackend<WebGPUKernels>;

/** Opens an adapter and device; throws WebGPUUnavailableError (with what to install) when none exists. */
export async function createWebGPUBackend(opts: WebGPUOptions = {}): Promise<WebGPUBackend> {
  const kernels = new WebGPUKernels(new WebGPUDevice(await openDevice(opts.mode ?? 'auto'), opts));
  const backend = new CheckedBackend(kernels);
  const cfg = kernels.info.subgroupMatrix;
  if (cfg) {
    if (opts.subgroupMatrix === false) kernels.subgroupMatrix = 'off (disabled by option)';
    else
      kernels.subgroupMatrix = await checkSubgroupMatrix(backend, kernels.dev.device, cfg, (on) => {
        kernels.subgroupMatrix = on ? 'on' : 'checking';
      });
  }
  return backend;
}
