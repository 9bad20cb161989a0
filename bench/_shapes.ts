// Model shapes the benchmarks generate random-weight models of (gpu-runner/tools/make-tiny-model.ts):
// real models' dimensions with the byte tokenizer, so benchmarks measure the shapes that matter without
// downloading weights. `--shape NAME` picks one in `bench engine` (and `--peer llamacpp`), `bench kernels
// --backend webgpu` and the GPU check (bench/gpu-check.sh).
import { UsageError } from '../cli/args.ts';
import { BYTE_VOCAB_SIZE } from '../gpu-runner/tools/byte-tokenizer.ts';
import type { TinyModelOptions } from '../gpu-runner/tools/make-tiny-model.ts';

export type ModelShape = Partial<TinyModelOptions> & {
  label: string;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  intermediate: number;
};

export const MODEL_SHAPES: Record<string, ModelShape> = {
  // HuggingFaceTB/SmolLM2-135M: llama, 30 layers, hidden 576, 9 q / 3 kv heads of 64, ffn 1536, vocab 49152
  smollm2: {
    label: 'SmolLM2-135M-shaped',
    arch: 'llama',
    hidden: 576,
    layers: 30,
    heads: 9,
    kvHeads: 3,
    headDim: 64,
    intermediate: 1536,
    vocab: 49152,
  },
  // Qwen/Qwen2.5-1.5B: qwen2 (q/k/v bias, tied embeddings), 28 layers, hidden 1536, 12 q / 2 kv heads of
  // 128, ffn 8960, vocab 151936
  'qwen2.5-1.5b': {
    label: 'Qwen2.5-1.5B-shaped',
    arch: 'qwen2',
    hidden: 1536,
    layers: 28,
    heads: 12,
    kvHeads: 2,
    headDim: 128,
    intermediate: 8960,
    vocab: 151936,
  },
  tiny: { label: 'tiny', hidden: 64, layers: 2, heads: 4, kvHeads: 2, headDim: 16, intermediate: 96 },
};

/** The shape named `name`, or a UsageError listing the known ones. */
export function modelShape(option: string, name: string): ModelShape {
  const s = MODEL_SHAPES[name];
  if (!s)
    throw new UsageError(`--${option}: unknown shape "${name}" (${Object.keys(MODEL_SHAPES).join(', ')})`);
  return s;
}

/**
 * The weight matrices one token passes through, as [N, K] of y = x · wᵀ (q, k and v separately; the
 * lm_head last). Their sum of N·K is the matmul parameter count of a forward pass.
 */
export function projections(s: ModelShape): { name: string; N: number; K: number; perLayer: boolean }[] {
  const { hidden: d, heads, kvHeads, headDim: hd, intermediate: f } = s;
  return [
    { name: 'q', N: heads * hd, K: d, perLayer: true },
    { name: 'k/v', N: kvHeads * hd, K: d, perLayer: true },
    { name: 'o', N: d, K: heads * hd, perLayer: true },
    { name: 'gate/up', N: f, K: d, perLayer: true },
    { name: 'down', N: d, K: f, perLayer: true },
    { name: 'lm_head', N: s.vocab ?? BYTE_VOCAB_SIZE, K: d, perLayer: false },
  ];
}
