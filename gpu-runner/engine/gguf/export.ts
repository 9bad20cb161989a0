// Exports a Hugging Face model directory (or a generated one) to GGUF as llama.cpp's convert_hf_to_gguf
// lays it out: llama.cpp tensor names, dims fastest-first, llama/mistral q/k rows interleaved for its
// RoPE (rope-layout.ts), 1-D tensors (norms, biases) F32 and matrices in the chosen type, llama3 rope
// scaling as the `rope_freqs` tensor, the byte-level BPE tokenizer as `tokenizer.ggml.*` (padded with
// unused "[PADn]" tokens up to the embedding's rows) plus the original tokenizer.json as
// `tokenizer.huggingface.json`, and the chat template.
import { join } from 'node:path';
import { readModelConfig } from '../model-config.ts';
import { quantize } from '../quant/codecs.ts';
import { ropeInvFreq } from '../rope.ts';
import { readTokenizerFiles } from '../tokenizer.ts';
import { indexWeights, readHostTensor } from '../weights.ts';
import { f32ToF16 } from '../half.ts';
import { type GgmlLoadType, ggufTensorName, TokenType } from './format.ts';
import type { GgufKV } from './reader.ts';
import { hfToGgufRows } from './rope-layout.ts';
import { kv, type GgufWriteTensor, writeGguf } from './writer.ts';

export type ExportType = 'F32' | 'F16' | 'Q8_0' | 'Q4_0';
export const EXPORT_TYPES: readonly ExportType[] = ['F32', 'F16', 'Q8_0', 'Q4_0'];

/** llama.cpp's general.file_type for each whole-model type (LLAMA_FTYPE_*). */
const FILE_TYPE: Record<ExportType, number> = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 7 };

function bytesOf(x: ArrayBufferView): Uint8Array {
  return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
}

/** The tokenizer.json of a byte-level BPE model → tokenizer.ggml.* metadata. */
function tokenizerMetadata(
  dir: string,
  vocabSize: number,
  bos: number | null,
  eos: number[],
): [string, GgufKV][] {
  const { tokenizer, config } = readTokenizerFiles(dir);
  const model = tokenizer.model as { type?: string; vocab?: Record<string, number>; merges?: unknown[] };
  const pre = JSON.stringify(tokenizer.pre_tokenizer ?? null);
  if (model?.type !== 'BPE' || !model.vocab || !pre.includes('ByteLevel'))
    throw new Error(`${dir}: only byte-level BPE tokenizers can be exported (this one is ${model?.type})`);
  const tokens: string[] = new Array(vocabSize).fill(null);
  const types: number[] = new Array(vocabSize).fill(TokenType.UNUSED);
  const place = (t: string, id: number, type: number) => {
    if (id >= vocabSize)
      throw new Error(`${dir}: token id ${id} is beyond the model's vocabulary (${vocabSize})`);
    tokens[id] = t;
    types[id] = type;
  };
  for (const [t, id] of Object.entries(model.vocab)) place(t, id, TokenType.NORMAL);
  for (const a of (tokenizer.added_tokens ?? []) as { id: number; content: string; special?: boolean }[])
    place(a.content, a.id, a.special ? TokenType.CONTROL : TokenType.USER_DEFINED);
  for (let i = 0; i < vocabSize; i++) if (tokens[i] === null) tokens[i] = `[PAD${i}]`;
  const merges = (model.merges ?? []).map((m) => (Array.isArray(m) ? m.join(' ') : String(m)));
  const out: [string, GgufKV][] = [
    ['tokenizer.ggml.model', kv.str('gpt2')],
    // the exact pre-tokenizer travels in tokenizer.huggingface.json; llama.cpp reads this one
    ['tokenizer.ggml.pre', kv.str('default')],
    ['tokenizer.ggml.tokens', kv.strs(tokens)],
    ['tokenizer.ggml.token_type', kv.i32s(types)],
    ['tokenizer.ggml.merges', kv.strs(merges)],
    ['tokenizer.ggml.add_bos_token', kv.bool(config.add_bos_token === true)],
    ['tokenizer.huggingface.json', kv.str(JSON.stringify(tokenizer))],
  ];
  if (bos !== null) out.push(['tokenizer.ggml.bos_token_id', kv.u32(bos)]);
  // eos, end-of-turn, end-of-message: llama.cpp's stop set, read back as the config's eos list
  ['eos_token_id', 'eot_token_id', 'eom_token_id'].forEach((key, i) => {
    if (eos[i] !== undefined) out.push([`tokenizer.ggml.${key}`, kv.u32(eos[i])]);
  });
  if (typeof config.chat_template === 'string')
    out.push(['tokenizer.chat_template', kv.str(config.chat_template)]);
  return out;
}

/** Writes `dir` (a Hugging Face model directory) as a GGUF file with matrices in `type`. */
export function exportGguf(dir: string, outFile: string, type: ExportType, name = 'kvrag export'): void {
  const cfg = readModelConfig(join(dir, 'config.json'));
  const arch = cfg.architecture === 'qwen2' ? 'qwen2' : 'llama';
  const a = (k: string) => `${arch}.${k}`;
  const meta: [string, GgufKV][] = [
    ['general.architecture', kv.str(arch)],
    ['general.name', kv.str(name)],
    ['general.file_type', kv.u32(FILE_TYPE[type])],
    ['general.quantization_version', kv.u32(2)],
    [a('context_length'), kv.u32(cfg.maxPositionEmbeddings)],
    [a('embedding_length'), kv.u32(cfg.hiddenSize)],
    [a('block_count'), kv.u32(cfg.layers)],
    [a('feed_forward_length'), kv.u32(cfg.intermediateSize)],
    [a('attention.head_count'), kv.u32(cfg.heads)],
    [a('attention.head_count_kv'), kv.u32(cfg.kvHeads)],
    [a('attention.key_length'), kv.u32(cfg.headDim)],
    [a('attention.value_length'), kv.u32(cfg.headDim)],
    [a('attention.layer_norm_rms_epsilon'), kv.f32(cfg.rmsNormEps)],
    [a('rope.freq_base'), kv.f32(cfg.rope.theta)],
    [a('rope.dimension_count'), kv.u32(cfg.headDim)],
    [a('vocab_size'), kv.u32(cfg.vocabSize)],
  ];
  const tensors: GgufWriteTensor[] = [];
  const s = cfg.rope.scaling;
  if (s.type === 'linear') {
    meta.push([a('rope.scaling.type'), kv.str('linear')], [a('rope.scaling.factor'), kv.f32(s.factor)]);
  } else if (s.type === 'llama3' || s.type === 'factors') {
    // per-frequency divisors: plain θ_i ÷ scaled θ_i
    const plain = ropeInvFreq({ theta: cfg.rope.theta, scaling: { type: 'default' } }, cfg.headDim);
    const scaled = ropeInvFreq(cfg.rope, cfg.headDim);
    const factors = new Float32Array(plain.length);
    for (let i = 0; i < plain.length; i++) factors[i] = plain[i] / scaled[i];
    tensors.push({
      name: 'rope_freqs.weight',
      type: 'F32',
      dims: [factors.length],
      data: () => bytesOf(factors),
    });
  }
  meta.push(...tokenizerMetadata(dir, cfg.vocabSize, cfg.bosTokenId, cfg.eosTokenIds));

  const index = indexWeights(dir);
  const interleave = arch === 'llama';
  for (const hf of [...index.tensors.keys()].sort(tensorOrder)) {
    const gname = ggufTensorName(hf);
    if (!gname) throw new Error(`${dir}: tensor "${hf}" has no GGUF name`);
    const shape = index.tensors.get(hf)!.info.shape;
    const matrix = shape.length === 2;
    // 1-D tensors stay F32; a matrix whose rows are not whole blocks falls back to F16
    const t: GgmlLoadType = !matrix
      ? 'F32'
      : type === 'F32' || type === 'F16' || shape[1] % 32 === 0
        ? type
        : 'F16';
    tensors.push({
      name: gname,
      type: t,
      dims: [...shape].reverse(),
      data: () => {
        let x = readHostTensor(index, hf, 'f32').data as Float32Array;
        if (interleave && /\.self_attn\.(q|k)_proj\./.test(hf))
          x = new Float32Array(hfToGgufRows(bytesOf(x), shape[0], cfg.headDim).buffer);
        if (t === 'F32') return bytesOf(x);
        if (t === 'F16') return bytesOf(f32ToF16(x));
        return quantize(t as 'Q8_0' | 'Q4_0', x);
      },
    });
  }
  writeGguf(outFile, new Map(meta), tensors);
}

/** embed, layers in order (by number), final norm, lm_head — the order convert_hf_to_gguf writes. */
function tensorOrder(x: string, y: string): number {
  const rank = (n: string): [number, number, string] => {
    if (n.startsWith('model.embed_tokens')) return [0, 0, n];
    const m = /^model\.layers\.(\d+)\./.exec(n);
    if (m) return [1, Number(m[1]), n];
    return [n.startsWith('lm_head') ? 3 : 2, 0, n];
  };
  const [a, b] = [rank(x), rank(y)];
  return a[0] - b[0] || a[1] - b[1] || a[2].localeCompare(b[2]);
}
