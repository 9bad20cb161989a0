// Deterministic tiny-model generator: writes a complete Hugging Face model directory (config.json,
// safetensors — single or sharded, F32/BF16/F16 —, tokenizer.json, tokenizer_config.json with the chat
// template) for a Llama- or Qwen2-shaped decoder with GQA and random weights from a seed. Weights use
// only integer PRNG steps and exact float ops (no transcendental functions), so the same seed gives
// bit-identical files on every machine and Node version.
//
//   node gpu-runner/tools/make-tiny-model.ts --out DIR [--arch llama|qwen2] [--dtype f32|bf16|f16]
//        [--seed N] [--shards N] [--bias]
import { closeSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { f32ToF16 } from '../engine/half.ts';
import { encodeSafetensors, type SafetensorsDType } from '../engine/safetensors.ts';
import { BYTE_VOCAB_SIZE, byteTokenizerJson, specialId, tokenizerConfigJson } from './byte-tokenizer.ts';

export type TinyArch = 'llama' | 'qwen2';
export type TinyDType = 'f32' | 'bf16' | 'f16';

export interface TinyModelOptions {
  arch: TinyArch;
  dtype: TinyDType;
  seed: number;
  /** >1 writes model-0000i-of-0000n.safetensors plus model.safetensors.index.json. */
  shards: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  intermediate: number;
  /** Llama only: `attention_bias` and `mlp_bias` (biases on q/k/v/o and gate/up/down). */
  bias: boolean;
  /** Embedding rows (≥ the byte tokenizer's 272; rows past it are tokens no text encodes to). */
  vocab: number;
  /** max_position_embeddings */
  maxPositions: number;
}

export const TINY_DEFAULTS: TinyModelOptions = {
  arch: 'llama',
  dtype: 'f32',
  seed: 1,
  shards: 1,
  hidden: 64,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  headDim: 16,
  intermediate: 96,
  bias: false,
  vocab: BYTE_VOCAB_SIZE,
  maxPositions: 512,
};

/** xorshift32 → uniform in [-1, 1) with 2^-23 resolution (exact in f32). */
function uniformSource(seed: number): () => number {
  let s = (seed * 2654435761 + 12345) >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return ((s >>> 8) - 0x800000) / 0x800000;
  };
}

/** Approximately normal(0, std): the sum of 3 uniforms in [-1,1) has variance 1. */
function normalish(rand: () => number, n: number, std: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (rand() + rand() + rand()) * std;
  return out;
}

function toBytes(x: Float32Array, dtype: TinyDType): { dtype: SafetensorsDType; data: Uint8Array } {
  if (dtype === 'f32') return { dtype: 'F32', data: new Uint8Array(x.buffer.slice(0)) };
  if (dtype === 'f16') return { dtype: 'F16', data: new Uint8Array(f32ToF16(x).buffer) };
  // bf16: round to nearest even on the high 16 bits
  const u = new Uint32Array(x.buffer.slice(0));
  const out = new Uint16Array(u.length);
  for (let i = 0; i < u.length; i++) out[i] = (u[i] + 0x7fff + ((u[i] >>> 16) & 1)) >>> 16;
  return { dtype: 'BF16', data: new Uint8Array(out.buffer) };
}

export function tinyConfigJson(o: TinyModelOptions): Record<string, unknown> {
  const common = {
    hidden_size: o.hidden,
    intermediate_size: o.intermediate,
    num_hidden_layers: o.layers,
    num_attention_heads: o.heads,
    num_key_value_heads: o.kvHeads,
    head_dim: o.headDim,
    vocab_size: o.vocab,
    hidden_act: 'silu',
    max_position_embeddings: o.maxPositions,
    bos_token_id: specialId('<|bos|>'),
    eos_token_id: [specialId('<|end|>'), specialId('<|eos|>')],
    torch_dtype: o.dtype === 'f32' ? 'float32' : o.dtype === 'bf16' ? 'bfloat16' : 'float16',
  };
  if (o.arch === 'llama') {
    // llama3 rope scaling with a small original context so every branch (kept, smoothed, scaled) is hit
    return {
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      ...common,
      rms_norm_eps: 1e-5,
      rope_theta: 10000,
      rope_scaling: {
        rope_type: 'llama3',
        factor: 8,
        low_freq_factor: 1,
        high_freq_factor: 4,
        original_max_position_embeddings: 32,
      },
      attention_bias: o.bias,
      mlp_bias: o.bias,
      tie_word_embeddings: false,
    };
  }
  // Qwen2 in the transformers ≥ 5 style: rope_parameters instead of rope_theta
  return {
    architectures: ['Qwen2ForCausalLM'],
    model_type: 'qwen2',
    ...common,
    rms_norm_eps: 1e-6,
    rope_parameters: { rope_type: 'default', rope_theta: 1000000 },
    use_sliding_window: false,
    tie_word_embeddings: true,
  };
}

/** The model's tensors in HF names, as f32 (before dtype conversion). */
export function tinyTensors(o: TinyModelOptions): { name: string; shape: number[]; data: Float32Array }[] {
  const rand = uniformSource(o.seed);
  const { hidden: d, heads, kvHeads, headDim: hd, intermediate: f } = o;
  const out: { name: string; shape: number[]; data: Float32Array }[] = [];
  const add = (name: string, shape: number[], std: number, mean = 0) => {
    const data = normalish(
      rand,
      shape.reduce((a, b) => a * b, 1),
      std,
    );
    if (mean) for (let i = 0; i < data.length; i++) data[i] += mean;
    out.push({ name, shape, data });
  };
  if (o.vocab < BYTE_VOCAB_SIZE)
    throw new Error(`vocab ${o.vocab} is smaller than the tokenizer's ${BYTE_VOCAB_SIZE}`);
  add('model.embed_tokens.weight', [o.vocab, d], 1);
  for (let l = 0; l < o.layers; l++) {
    const p = `model.layers.${l}`;
    add(`${p}.input_layernorm.weight`, [d], 0.1, 1);
    add(`${p}.self_attn.q_proj.weight`, [heads * hd, d], 2 / Math.sqrt(d));
    add(`${p}.self_attn.k_proj.weight`, [kvHeads * hd, d], 2 / Math.sqrt(d));
    add(`${p}.self_attn.v_proj.weight`, [kvHeads * hd, d], 1 / Math.sqrt(d));
    const llamaBias = o.arch === 'llama' && o.bias;
    if (o.arch === 'qwen2' || llamaBias) {
      add(`${p}.self_attn.q_proj.bias`, [heads * hd], 0.2);
      add(`${p}.self_attn.k_proj.bias`, [kvHeads * hd], 0.2);
      add(`${p}.self_attn.v_proj.bias`, [kvHeads * hd], 0.2);
    }
    add(`${p}.self_attn.o_proj.weight`, [d, heads * hd], 1 / Math.sqrt(heads * hd));
    if (llamaBias) add(`${p}.self_attn.o_proj.bias`, [d], 0.2);
    add(`${p}.post_attention_layernorm.weight`, [d], 0.1, 1);
    add(`${p}.mlp.gate_proj.weight`, [f, d], 1 / Math.sqrt(d));
    add(`${p}.mlp.up_proj.weight`, [f, d], 1 / Math.sqrt(d));
    add(`${p}.mlp.down_proj.weight`, [d, f], 1 / Math.sqrt(f));
    if (llamaBias) {
      add(`${p}.mlp.gate_proj.bias`, [f], 0.2);
      add(`${p}.mlp.up_proj.bias`, [f], 0.2);
      add(`${p}.mlp.down_proj.bias`, [d], 0.2);
    }
  }
  add('model.norm.weight', [d], 0.1, 1);
  if (o.arch === 'llama') add('lm_head.weight', [o.vocab, d], 1 / Math.sqrt(d));
  return out;
}

/** writeFileSync in writes of at most 1 GiB: one write refuses over 2 GiB (a Qwen2.5-1.5B-sized model is 3 GB). */
function writeFile(path: string, data: string | Buffer): void {
  if (typeof data === 'string') {
    writeFileSync(path, data);
    return;
  }
  const fd = openSync(path, 'w');
  try {
    for (let at = 0; at < data.length; ) at += writeSync(fd, data, at, Math.min(2 ** 30, data.length - at));
  } finally {
    closeSync(fd);
  }
}

/** Writes the model directory; returns the list of files written. */
export function makeTinyModel(dir: string, options: Partial<TinyModelOptions> = {}): string[] {
  const o = { ...TINY_DEFAULTS, ...options };
  mkdirSync(dir, { recursive: true });
  const written: string[] = [];
  const write = (name: string, data: string | Buffer) => {
    writeFile(join(dir, name), data);
    written.push(name);
  };
  write('config.json', `${JSON.stringify(tinyConfigJson(o), null, 2)}\n`);
  write('tokenizer.json', `${JSON.stringify(byteTokenizerJson(), null, 2)}\n`);
  write('tokenizer_config.json', `${JSON.stringify(tokenizerConfigJson(), null, 2)}\n`);
  const tensors = tinyTensors(o).map((t) => ({ name: t.name, shape: t.shape, ...toBytes(t.data, o.dtype) }));
  if (o.shards <= 1) {
    write('model.safetensors', encodeSafetensors(tensors));
    return written;
  }
  const per = Math.ceil(tensors.length / o.shards);
  const weightMap: Record<string, string> = {};
  let total = 0;
  for (let s = 0; s < o.shards; s++) {
    const name = `model-${String(s + 1).padStart(5, '0')}-of-${String(o.shards).padStart(5, '0')}.safetensors`;
    const part = tensors.slice(s * per, (s + 1) * per);
    for (const t of part) {
      weightMap[t.name] = name;
      total += t.data.length;
    }
    write(name, encodeSafetensors(part));
  }
  write(
    'model.safetensors.index.json',
    `${JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2)}\n`,
  );
  return written;
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      out: { type: 'string' },
      arch: { type: 'string', default: 'llama' },
      dtype: { type: 'string', default: 'f32' },
      seed: { type: 'string', default: '1' },
      shards: { type: 'string', default: '1' },
      bias: { type: 'boolean', default: false },
    },
  });
  if (!values.out) {
    console.error(
      'usage: make-tiny-model.ts --out DIR [--arch llama|qwen2] [--dtype f32|bf16|f16] [--seed N] [--shards N] [--bias]',
    );
    process.exit(2);
  }
  if (!['llama', 'qwen2'].includes(values.arch!) || !['f32', 'bf16', 'f16'].includes(values.dtype!)) {
    console.error('--arch must be llama|qwen2 and --dtype f32|bf16|f16');
    process.exit(2);
  }
  const files = makeTinyModel(values.out, {
    arch: values.arch as TinyArch,
    dtype: values.dtype as TinyDType,
    seed: Number(values.seed),
    shards: Number(values.shards),
    bias: values.bias,
  });
  console.log(`wrote ${values.out}: ${files.join(', ')}`);
}
