// A GGUF file's tensors under their Hugging Face names, in HF layout: shapes [out, in] (GGUF stores
// dims fastest-first), llama q/k rows back in rotate-half order (rope-layout.ts). `blocks` gives a
// tensor exactly as stored (quantized blocks untouched, only whole rows reordered) — what the backends'
// integer kernels take for Q8_0 / Q4_0 (weights.ts readWeight); `read` dequantizes it to f32 (or
// keeps/makes f16).
import type { HostTensor } from '../backends/types.ts';
import { ModelLoadError } from '../errors.ts';
import { bf16ToF32, f16ToF32, f32ToF16 } from '../half.ts';
import type { QuantType } from '../quant/blocks.ts';
import { dequantize } from '../quant/codecs.ts';
import { ggufArchitecture, interleavedRope } from './config.ts';
import { type GgmlLoadType, hfTensorName, LOADABLE_TYPES } from './format.ts';
import { type GgufFile, type GgufTensorInfo, metaNumber, readGgufTensorBytes } from './reader.ts';
import { ggufToHfRows } from './rope-layout.ts';

export interface StoredTensor {
  type: GgmlLoadType;
  /** HF order: [rows, row length] for matrices */
  shape: number[];
  /** the stored bytes, rows in HF order */
  data: Uint8Array;
}

export interface GgufWeights {
  path: string;
  names(): string[];
  shape(name: string): number[] | undefined;
  /** the ggml type name (F32, F16, BF16, Q8_0, …) */
  type(name: string): GgmlLoadType | undefined;
  blocks(name: string): StoredTensor;
  read(name: string, dtype: 'f32' | 'f16'): HostTensor;
}

const QK_ROWS = /\.self_attn\.(q|k)_proj\.(weight|bias)$/;

export function ggufWeights(file: GgufFile): GgufWeights {
  const arch = ggufArchitecture(file);
  const heads = metaNumber(file, `${arch}.attention.head_count`, true);
  const headDim =
    metaNumber(file, `${arch}.attention.key_length`) ??
    metaNumber(file, `${arch}.embedding_length`, true) / heads;
  const byHf = new Map<string, GgufTensorInfo>();
  for (const info of file.tensors.values()) {
    const hf = hfTensorName(info.name);
    if (!hf) continue; // rope_freqs (read by the config) and tensors kvrag does not use
    if (!(LOADABLE_TYPES as readonly string[]).includes(info.typeName))
      throw new ModelLoadError(
        file.path,
        `tensor "${info.name}" has type ${info.typeName}; kvrag loads ${LOADABLE_TYPES.join(', ')}`,
      );
    byHf.set(hf, info);
  }
  const get = (name: string): GgufTensorInfo => {
    const info = byHf.get(name);
    if (!info) throw new ModelLoadError(file.path, `missing tensor "${name}"`);
    return info;
  };
  const blocks = (name: string): StoredTensor => {
    const info = get(name);
    const shape = [...info.dims].reverse();
    let data = readGgufTensorBytes(file, info);
    if (interleavedRope(arch) && QK_ROWS.test(name)) data = ggufToHfRows(data, shape[0], headDim);
    return { type: info.typeName as GgmlLoadType, shape, data };
  };
  return {
    path: file.path,
    names: () => [...byHf.keys()],
    shape: (name) => {
      const info = byHf.get(name);
      return info ? [...info.dims].reverse() : undefined;
    },
    type: (name) => byHf.get(name)?.typeName as GgmlLoadType | undefined,
    blocks,
    read(name, dtype) {
      const t = blocks(name);
      const n = t.shape.reduce((a, b) => a * b, 1);
      const bits = () => new Uint16Array(t.data.buffer, t.data.byteOffset, n);
      if (t.type === 'F16' && dtype === 'f16') return { dtype: 'f16', shape: t.shape, data: bits() };
      const f32 =
        t.type === 'F32'
          ? new Float32Array(t.data.buffer, t.data.byteOffset, n)
          : t.type === 'F16'
            ? f16ToF32(bits())
            : t.type === 'BF16'
              ? bf16ToF32(bits())
              : dequantize(t.type as QuantType, t.data, n);
      for (let i = 0; i < f32.length; i++) {
        if (!Number.isFinite(f32[i]))
          throw new ModelLoadError(file.path, `tensor "${get(name).name}" holds a non-finite value`);
      }
      if (dtype === 'f16') return { dtype: 'f16', shape: t.shape, data: f32ToF16(f32) };
      return { dtype: 'f32', shape: t.shape, data: f32 };
    },
  };
}
