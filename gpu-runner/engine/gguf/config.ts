// GGUF metadata → the Hugging Face config.json fields the engine's config parser reads, so one parser
// (model-config.ts) validates both formats. Keys are llama.cpp's: `{arch}.embedding_length`,
// `{arch}.attention.head_count`, `{arch}.rope.freq_base`, … Llama 3 rope scaling arrives in GGUF as
// the `rope_freqs.weight` tensor (one divisor per frequency), passed on as rope type "factors".
import { ModelLoadError } from '../errors.ts';
import { type GgufFile, meta, metaNumber, metaString, readGgufTensorBytes } from './reader.ts';

export type GgufArchitecture = 'llama' | 'mistral' | 'qwen2';

/** general.architecture, checked. Mistral models are usually stored as "llama". */
export function ggufArchitecture(file: GgufFile): GgufArchitecture {
  const arch = metaString(file, 'general.architecture');
  if (arch === 'llama' || arch === 'mistral' || arch === 'qwen2') return arch;
  throw new ModelLoadError(
    file.path,
    `unsupported GGUF architecture ${JSON.stringify(arch ?? null)} (supported: llama, mistral, qwen2)`,
  );
}

/** Whether q/k are stored in llama.cpp's interleaved rope order (see rope-layout.ts). */
export function interleavedRope(arch: GgufArchitecture): boolean {
  return arch !== 'qwen2';
}

/** llama3-style rope scaling: per-frequency divisors from the rope_freqs tensor, when present. */
function ropeFactors(file: GgufFile, half: number): number[] | null {
  const t = file.tensors.get('rope_freqs.weight');
  if (!t) return null;
  if (t.typeName !== 'F32' || t.dims.length !== 1 || t.dims[0] !== half)
    throw new ModelLoadError(
      file.path,
      `rope_freqs.weight must be F32 [${half}], is ${t.typeName} [${t.dims}]`,
    );
  const b = readGgufTensorBytes(file, t);
  return [...new Float32Array(b.buffer, b.byteOffset, half)];
}

/** A config.json-shaped object for parseModelConfig. */
export function ggufConfigJson(file: GgufFile): Record<string, unknown> {
  const arch = ggufArchitecture(file);
  const k = (key: string) => `${arch}.${key}`;
  const hidden = metaNumber(file, k('embedding_length'), true);
  const heads = metaNumber(file, k('attention.head_count'), true);
  const headDim = metaNumber(file, k('attention.key_length')) ?? hidden / heads;
  const valueLength = metaNumber(file, k('attention.value_length'));
  if (valueLength !== undefined && valueLength !== headDim)
    throw new ModelLoadError(
      file.path,
      `key_length ${headDim} ≠ value_length ${valueLength} is not supported`,
    );
  const ropeDims = metaNumber(file, k('rope.dimension_count'));
  if (ropeDims !== undefined && ropeDims !== headDim)
    throw new ModelLoadError(
      file.path,
      `partial rotary embedding (${ropeDims} of ${headDim} dims) is not supported`,
    );
  const embed = file.tensors.get('token_embd.weight');
  if (!embed) throw new ModelLoadError(file.path, 'missing tensor "token_embd.weight"');
  const scalingType = metaString(file, k('rope.scaling.type')) ?? 'none';
  const factors = ropeFactors(file, headDim / 2);
  let rope_scaling: Record<string, unknown> | null = null;
  if (factors) {
    if (scalingType !== 'none')
      throw new ModelLoadError(file.path, `rope_freqs together with rope scaling "${scalingType}"`);
    rope_scaling = { rope_type: 'factors', factors };
  } else if (scalingType === 'linear') {
    rope_scaling = { rope_type: 'linear', factor: metaNumber(file, k('rope.scaling.factor'), true) };
  } else if (scalingType !== 'none') {
    rope_scaling = { rope_type: scalingType }; // refused by the config parser with the supported list
  }
  const ids = (key: string) => {
    const v = meta(file, `tokenizer.ggml.${key}`);
    return typeof v === 'number' ? [v] : [];
  };
  const blk0 = (name: string) => file.tensors.has(`blk.0.${name}`);
  return {
    model_type: arch,
    hidden_size: hidden,
    intermediate_size: metaNumber(file, k('feed_forward_length'), true),
    num_hidden_layers: metaNumber(file, k('block_count'), true),
    num_attention_heads: heads,
    num_key_value_heads: metaNumber(file, k('attention.head_count_kv')) ?? heads,
    head_dim: headDim,
    vocab_size: embed.dims[1] ?? 0,
    rms_norm_eps: metaNumber(file, k('attention.layer_norm_rms_epsilon'), true),
    rope_theta: metaNumber(file, k('rope.freq_base')) ?? 10000,
    rope_scaling,
    tie_word_embeddings: !file.tensors.has('output.weight'),
    attention_bias: arch !== 'qwen2' && blk0('attn_q.bias'),
    mlp_bias: blk0('ffn_gate.bias'),
    hidden_act: 'silu',
    max_position_embeddings: metaNumber(file, k('context_length'), true),
    bos_token_id: ids('bos_token_id')[0] ?? null,
    // llama.cpp ends generation at eos, and at end-of-turn / end-of-message tokens where declared
    eos_token_id: [...new Set([...ids('eos_token_id'), ...ids('eot_token_id'), ...ids('eom_token_id')])],
  };
}
