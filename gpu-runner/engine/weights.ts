// Loads a model's weights from model.safetensors or a sharded model.safetensors.index.json, or from a
// GGUF file (gguf/weights.ts: HF names and layout), checks names and shapes against the config and
// uploads them to a backend. Matrices go up in one device dtype each (matrixDType): f32, f16, or ggml
// Q8_0 / Q4_0 blocks — GGUF blocks of that type as stored, anything else quantized here; norms and
// biases are always f32.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BLOCK_QUANT, type BlockDType, type DType, isBlockDType } from './backends/dtypes.ts';
import type { Backend, HostTensor, Tensor } from './backends/types.ts';
import { bf16ToF32, f16ToF32, f32ToF16 } from './half.ts';
import { ModelLoadError } from './errors.ts';
import { locateModel, openGguf } from './gguf/location.ts';
import { ggufWeights, type StoredTensor } from './gguf/weights.ts';
import type { ModelConfig } from './model-config.ts';
import { BLOCK_LAYOUTS } from './quant/blocks.ts';
import { quantize } from './quant/codecs.ts';
import {
  readSafetensorsHeader,
  readTensorBytes,
  type SafetensorsFile,
  type TensorInfo,
} from './safetensors.ts';

export interface LayerWeights {
  inputNorm: Tensor; // [hidden]
  q: Tensor; // [heads·headDim, hidden]
  k: Tensor; // [kvHeads·headDim, hidden]
  v: Tensor; // [kvHeads·headDim, hidden]
  o: Tensor; // [hidden, heads·headDim]
  qBias: Tensor | undefined;
  kBias: Tensor | undefined;
  vBias: Tensor | undefined;
  oBias: Tensor | undefined;
  postNorm: Tensor; // [hidden]
  gate: Tensor; // [intermediate, hidden]
  up: Tensor; // [intermediate, hidden]
  down: Tensor; // [hidden, intermediate]
  gateBias: Tensor | undefined;
  upBias: Tensor | undefined;
  downBias: Tensor | undefined;
}

export interface ModelWeights {
  embed: Tensor; // [vocab, hidden]
  layers: LayerWeights[];
  norm: Tensor; // [hidden]
  lmHead: Tensor; // [vocab, hidden] (the embedding itself when tied)
}

/** Device dtypes a weight matrix can be kept in. */
export const WEIGHT_DTYPES = ['f32', 'f16', 'q8_0', 'q4_0'] as const;
export type WeightDType = (typeof WEIGHT_DTYPES)[number];

/**
 * The device dtype of one matrix stored as `stored` (a safetensors or ggml type name) with rows of
 * `rowLength`: `want`, or when unset what is stored — ggml Q8_0 / Q4_0 blocks kept, Q4_K / Q6_K as Q8_0
 * (the nearest block type the kernels take: re-quantizing to Q4_0 would add a second 4-bit rounding as
 * large as the first, Q8_0's adds ~1/16 of it), floats f32. A block type needs rows of whole blocks, and
 * a dtype the backend does not take falls back to f32.
 */
export function matrixDType(
  stored: string,
  want: WeightDType | undefined,
  takes: readonly DType[],
  rowLength: number,
): WeightDType {
  const asStored: WeightDType =
    stored === 'Q8_0' || stored === 'Q4_K' || stored === 'Q6_K' ? 'q8_0' : stored === 'Q4_0' ? 'q4_0' : 'f32';
  const d = want ?? asStored;
  if (!takes.includes(d)) return 'f32';
  if (isBlockDType(d) && rowLength % BLOCK_LAYOUTS[BLOCK_QUANT[d]].blockSize !== 0) return 'f32';
  return d;
}

/** The safetensors files of a model directory, and which file holds each tensor. */
export interface WeightIndex {
  files: SafetensorsFile[];
  tensors: Map<string, { file: SafetensorsFile; info: TensorInfo }>;
}

export function indexWeights(dir: string): WeightIndex {
  const single = join(dir, 'model.safetensors');
  const indexPath = join(dir, 'model.safetensors.index.json');
  let fileNames: string[];
  let weightMap: Record<string, string> | null = null;
  if (existsSync(indexPath)) {
    let parsed: { weight_map?: Record<string, string> };
    try {
      parsed = JSON.parse(readFileSync(indexPath, 'utf8'));
    } catch (err) {
      throw new ModelLoadError(indexPath, `cannot read JSON: ${(err as Error).message}`);
    }
    if (!parsed.weight_map || typeof parsed.weight_map !== 'object') {
      throw new ModelLoadError(indexPath, 'missing "weight_map" object');
    }
    weightMap = parsed.weight_map;
    fileNames = [...new Set(Object.values(weightMap))].sort();
    for (const f of fileNames) {
      // shards live beside the index: a path that leaves the model directory is refused, not read
      if (typeof f !== 'string' || !/^[^/\\]+\.safetensors$/.test(f) || f.startsWith('..'))
        throw new ModelLoadError(
          indexPath,
          `weight_map names ${JSON.stringify(f)}, not a file in the model directory`,
        );
      if (!existsSync(join(dir, f)))
        throw new ModelLoadError(indexPath, `weight_map names "${f}", which is missing`);
    }
  } else if (existsSync(single)) {
    fileNames = ['model.safetensors'];
  } else {
    throw new ModelLoadError(dir, 'no model.safetensors or model.safetensors.index.json');
  }
  const files = fileNames.map((f) => readSafetensorsHeader(join(dir, f)));
  const tensors = new Map<string, { file: SafetensorsFile; info: TensorInfo }>();
  for (const file of files) {
    for (const info of file.tensors.values()) {
      const prev = tensors.get(info.name);
      if (prev) throw new ModelLoadError(file.path, `tensor "${info.name}" also in ${prev.file.path}`);
      tensors.set(info.name, { file, info });
    }
  }
  if (weightMap) {
    for (const [name, f] of Object.entries(weightMap)) {
      const got = tensors.get(name);
      if (!got) throw new ModelLoadError(join(dir, f), `tensor "${name}" listed in the index is missing`);
      if (got.file.path !== join(dir, f))
        throw new ModelLoadError(indexPath, `tensor "${name}" is in ${got.file.path}`);
    }
  }
  return { files, tensors };
}

/** Reads one tensor as host f32 or f16 data. */
export function readHostTensor(index: WeightIndex, name: string, dtype: 'f32' | 'f16'): HostTensor {
  const entry = index.tensors.get(name);
  if (!entry) throw new ModelLoadError(index.files[0]?.path ?? 'model', `missing tensor "${name}"`);
  const { file, info } = entry;
  const bytes = readTensorBytes(file, info);
  const shape = info.shape;
  if (info.dtype === 'F16' && dtype === 'f16')
    return { dtype: 'f16', shape, data: new Uint16Array(bytes.buffer) };
  const f32 =
    info.dtype === 'F32'
      ? new Float32Array(bytes.buffer)
      : info.dtype === 'BF16'
        ? bf16ToF32(new Uint16Array(bytes.buffer))
        : f16ToF32(new Uint16Array(bytes.buffer));
  for (let i = 0; i < f32.length; i++) {
    if (!Number.isFinite(f32[i]))
      throw new ModelLoadError(file.path, `tensor "${name}" holds a non-finite value`);
  }
  if (dtype === 'f16') return { dtype: 'f16', shape, data: f32ToF16(f32) };
  return { dtype: 'f32', shape, data: f32 };
}

/** What loading needs of a model's weight files, under Hugging Face tensor names and shapes. */
export interface WeightSource {
  /** the file holding `name` (for messages), or the model's first file */
  fileOf(name: string): string;
  shape(name: string): readonly number[] | undefined;
  /** the stored type: F32 / F16 / BF16, or a ggml block type (Q8_0, Q4_0, Q4_K, Q6_K) in a GGUF file */
  storedType(name: string): string | undefined;
  /** the tensor as f32 (widened or dequantized) or f16 */
  read(name: string, dtype: 'f32' | 'f16'): HostTensor;
  /** GGUF only: the tensor as stored (quantized blocks untouched, rows in HF order) */
  stored?(name: string): StoredTensor;
}

function safetensorsWeights(dir: string): WeightSource {
  const index = indexWeights(dir);
  return {
    fileOf: (name) => index.tensors.get(name)?.file.path ?? index.files[0]?.path ?? dir,
    shape: (name) => index.tensors.get(name)?.info.shape,
    storedType: (name) => index.tensors.get(name)?.info.dtype,
    read: (name, dtype) => readHostTensor(index, name, dtype),
  };
}

/** The weights of a model directory, a GGUF file or an `ollama:` reference. */
export function openWeights(model: string): WeightSource {
  const at = locateModel(model);
  if (at.kind === 'dir') return safetensorsWeights(at.dir);
  const g = ggufWeights(openGguf(at.file));
  return { fileOf: () => g.path, shape: g.shape, storedType: g.type, read: g.read, stored: g.blocks };
}

/** One tensor as host data of `dtype`: block types as stored when the file holds them, else quantized. */
export function readWeight(src: WeightSource, name: string, dtype: WeightDType): HostTensor {
  if (!isBlockDType(dtype)) return src.read(name, dtype);
  const type = BLOCK_QUANT[dtype];
  if (src.stored && src.storedType(name) === type) {
    const t = src.stored(name);
    return { dtype, shape: t.shape, data: t.data };
  }
  const f = src.read(name, 'f32');
  return { dtype: dtype as BlockDType, shape: f.shape, data: quantize(type, f.data as Float32Array) };
}

function expectShape(src: WeightSource, name: string, shape: number[]): void {
  const got = src.shape(name);
  if (!got) throw new ModelLoadError(src.fileOf(name), `missing tensor "${name}"`);
  if (got.join(',') !== shape.join(',')) {
    throw new ModelLoadError(src.fileOf(name), `tensor "${name}" has shape [${got}], expected [${shape}]`);
  }
}

/**
 * Loads and uploads all weights of a model directory or GGUF file. Matrices go up as `dtype`, or unset
 * as stored (matrixDType), each narrowed to what the backend takes; norms and biases as f32.
 */
export function loadWeights(
  model: string,
  cfg: ModelConfig,
  backend: Backend,
  dtype?: WeightDType,
): ModelWeights {
  const index = openWeights(model);
  const { hiddenSize: d, heads, kvHeads, headDim, intermediateSize: f, vocabSize: vocab } = cfg;
  const load = (name: string, shape: number[]): Tensor => {
    expectShape(index, name, shape);
    return backend.upload(index.read(name, 'f32'));
  };
  const matrix = (name: string, shape: number[]): Tensor => {
    expectShape(index, name, shape);
    const device = matrixDType(index.storedType(name)!, dtype, backend.caps.weightDTypes, shape[1]);
    return backend.upload(readWeight(index, name, device));
  };
  // a bias the config declares must exist; one it does not declare must not (it would be ignored)
  const bias = (name: string, shape: number[], declared: boolean): Tensor | undefined => {
    if (declared) return load(name, shape);
    if (index.shape(name))
      throw new ModelLoadError(index.fileOf(name), `tensor "${name}" is not expected by config.json`);
    return undefined;
  };
  const embed = matrix('model.embed_tokens.weight', [vocab, d]);
  const layers: LayerWeights[] = [];
  for (let l = 0; l < cfg.layers; l++) {
    const p = `model.layers.${l}`;
    layers.push({
      inputNorm: load(`${p}.input_layernorm.weight`, [d]),
      q: matrix(`${p}.self_attn.q_proj.weight`, [heads * headDim, d]),
      k: matrix(`${p}.self_attn.k_proj.weight`, [kvHeads * headDim, d]),
      v: matrix(`${p}.self_attn.v_proj.weight`, [kvHeads * headDim, d]),
      o: matrix(`${p}.self_attn.o_proj.weight`, [d, heads * headDim]),
      qBias: bias(`${p}.self_attn.q_proj.bias`, [heads * headDim], cfg.qkvBias),
      kBias: bias(`${p}.self_attn.k_proj.bias`, [kvHeads * headDim], cfg.qkvBias),
      vBias: bias(`${p}.self_attn.v_proj.bias`, [kvHeads * headDim], cfg.qkvBias),
      oBias: bias(`${p}.self_attn.o_proj.bias`, [d], cfg.oBias),
      postNorm: load(`${p}.post_attention_layernorm.weight`, [d]),
      gate: matrix(`${p}.mlp.gate_proj.weight`, [f, d]),
      up: matrix(`${p}.mlp.up_proj.weight`, [f, d]),
      down: matrix(`${p}.mlp.down_proj.weight`, [d, f]),
      gateBias: bias(`${p}.mlp.gate_proj.bias`, [f], cfg.mlpBias),
      upBias: bias(`${p}.mlp.up_proj.bias`, [f], cfg.mlpBias),
      downBias: bias(`${p}.mlp.down_proj.bias`, [d], cfg.mlpBias),
    });
  }
  const norm = load('model.norm.weight', [d]);
  const tied = cfg.tiedEmbeddings || !index.shape('lm_head.weight');
  if (!cfg.tiedEmbeddings && tied) {
    throw new ModelLoadError(
      index.fileOf('lm_head.weight'),
      'missing tensor "lm_head.weight" (tie_word_embeddings is false)',
    );
  }
  const lmHead = tied ? embed : matrix('lm_head.weight', [vocab, d]);
  return { embed, layers, norm, lmHead };
}
