// GGUF (llama.cpp's model file) constants. A file is: magic "GGUF", u32 version (2 or 3), u64 tensor
// count, u64 metadata count, the metadata key/value pairs, the tensor infos (name, u32 n_dims, u64 dims
// fastest-first, u32 ggml type, u64 offset), padding to `general.alignment` (default 32), then the
// tensor data, each tensor at its offset from the data start (a multiple of the alignment).
// Everything little-endian; strings are u64 length + UTF-8 bytes.
import type { QuantType } from '../quant/blocks.ts';

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** Metadata value types. */
export const GgufValueType = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;
export type GgufValueType = (typeof GgufValueType)[keyof typeof GgufValueType];

/** Fixed byte size of each scalar value type (strings and arrays are variable). */
export const SCALAR_BYTES: Partial<Record<GgufValueType, number>> = {
  0: 1,
  1: 1,
  2: 2,
  3: 2,
  4: 4,
  5: 4,
  6: 4,
  7: 1,
  10: 8,
  11: 8,
  12: 8,
};

/** ggml tensor types by id: name, and (where known) elements per block and bytes per block. */
export const GGML_TYPES: Record<number, { name: string; blockSize?: number; blockBytes?: number }> = {
  0: { name: 'F32', blockSize: 1, blockBytes: 4 },
  1: { name: 'F16', blockSize: 1, blockBytes: 2 },
  2: { name: 'Q4_0', blockSize: 32, blockBytes: 18 },
  3: { name: 'Q4_1', blockSize: 32, blockBytes: 20 },
  6: { name: 'Q5_0', blockSize: 32, blockBytes: 22 },
  7: { name: 'Q5_1', blockSize: 32, blockBytes: 24 },
  8: { name: 'Q8_0', blockSize: 32, blockBytes: 34 },
  9: { name: 'Q8_1', blockSize: 32, blockBytes: 36 },
  10: { name: 'Q2_K', blockSize: 256, blockBytes: 84 },
  11: { name: 'Q3_K', blockSize: 256, blockBytes: 110 },
  12: { name: 'Q4_K', blockSize: 256, blockBytes: 144 },
  13: { name: 'Q5_K', blockSize: 256, blockBytes: 176 },
  14: { name: 'Q6_K', blockSize: 256, blockBytes: 210 },
  15: { name: 'Q8_K', blockSize: 256, blockBytes: 292 },
  16: { name: 'IQ2_XXS' },
  17: { name: 'IQ2_XS' },
  18: { name: 'IQ3_XXS' },
  19: { name: 'IQ1_S' },
  20: { name: 'IQ4_NL' },
  21: { name: 'IQ3_S' },
  22: { name: 'IQ2_S' },
  23: { name: 'IQ4_XS' },
  24: { name: 'I8', blockSize: 1, blockBytes: 1 },
  25: { name: 'I16', blockSize: 1, blockBytes: 2 },
  26: { name: 'I32', blockSize: 1, blockBytes: 4 },
  27: { name: 'I64', blockSize: 1, blockBytes: 8 },
  28: { name: 'F64', blockSize: 1, blockBytes: 8 },
  29: { name: 'IQ1_M' },
  30: { name: 'BF16', blockSize: 1, blockBytes: 2 },
  34: { name: 'TQ1_0' },
  35: { name: 'TQ2_0' },
  39: { name: 'MXFP4' },
};

/** The tensor types kvrag loads. */
export type GgmlLoadType = 'F32' | 'F16' | 'BF16' | QuantType;
export const LOADABLE_TYPES: readonly GgmlLoadType[] = ['F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'Q4_K', 'Q6_K'];

export const GGML_TYPE_ID: Record<GgmlLoadType, number> = {
  F32: 0,
  F16: 1,
  Q4_0: 2,
  Q8_0: 8,
  Q4_K: 12,
  Q6_K: 14,
  BF16: 30,
};

export function ggmlTypeName(id: number): string {
  return GGML_TYPES[id]?.name ?? `unknown ggml type ${id}`;
}

/** llama.cpp token types (tokenizer.ggml.token_type). */
export const TokenType = {
  NORMAL: 1,
  UNKNOWN: 2,
  CONTROL: 3,
  USER_DEFINED: 4,
  UNUSED: 5,
  BYTE: 6,
} as const;

/** The Hugging Face name of a llama.cpp tensor name (llama / mistral / qwen2), or null. */
export function hfTensorName(gguf: string): string | null {
  const top: Record<string, string> = {
    'token_embd.weight': 'model.embed_tokens.weight',
    'output_norm.weight': 'model.norm.weight',
    'output.weight': 'lm_head.weight',
  };
  if (gguf in top) return top[gguf];
  const m = /^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$/.exec(gguf);
  if (!m) return null;
  const part = BLOCK_PARTS[m[2]];
  return part ? `model.layers.${m[1]}.${part}.${m[3]}` : null;
}

/** The llama.cpp name of a Hugging Face tensor name, or null. */
export function ggufTensorName(hf: string): string | null {
  const top: Record<string, string> = {
    'model.embed_tokens.weight': 'token_embd.weight',
    'model.norm.weight': 'output_norm.weight',
    'lm_head.weight': 'output.weight',
  };
  if (hf in top) return top[hf];
  const m = /^model\.layers\.(\d+)\.(.+)\.(weight|bias)$/.exec(hf);
  if (!m) return null;
  const entry = Object.entries(BLOCK_PARTS).find(([, v]) => v === m[2]);
  return entry ? `blk.${m[1]}.${entry[0]}.${m[3]}` : null;
}

// per-layer tensors: llama.cpp short name → HF module path
const BLOCK_PARTS: Record<string, string> = {
  attn_norm: 'input_layernorm',
  attn_q: 'self_attn.q_proj',
  attn_k: 'self_attn.k_proj',
  attn_v: 'self_attn.v_proj',
  attn_output: 'self_attn.o_proj',
  ffn_norm: 'post_attention_layernorm',
  ffn_gate: 'mlp.gate_proj',
  ffn_up: 'mlp.up_proj',
  ffn_down: 'mlp.down_proj',
};
