// Parses a Hugging Face config.json (Llama incl. llama3 rope scaling, Mistral, Qwen2) into the plain
// ModelConfig the engine uses. Accepts `rope_parameters` (transformers ≥ 5) as well as top-level
// `rope_theta` / `rope_scaling`. A GGUF file's metadata is read into the same fields (gguf/config.ts).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { ModelLoadError } from './errors.ts';
import { ggufConfigJson } from './gguf/config.ts';
import { locateModel, openGguf } from './gguf/location.ts';

export type Architecture = 'llama' | 'mistral' | 'qwen2';

/** Rope scaling kinds that only change frequencies (never magnitudes), so re-rotation stays exact. */
export type RopeScaling =
  | { type: 'default' }
  | { type: 'linear'; factor: number }
  | {
      type: 'llama3';
      factor: number;
      lowFreqFactor: number;
      highFreqFactor: number;
      originalMaxPositionEmbeddings: number;
    }
  /** GGUF `rope_freqs`: θ_i is divided by factors[i] (how llama.cpp stores llama3 scaling). */
  | { type: 'factors'; factors: number[] };

export interface RopeConfig {
  theta: number;
  scaling: RopeScaling;
}

export interface ModelConfig {
  architecture: Architecture;
  hiddenSize: number;
  intermediateSize: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  vocabSize: number;
  rmsNormEps: number;
  rope: RopeConfig;
  tiedEmbeddings: boolean;
  /** Qwen2 always has q/k/v bias; Llama/Mistral when `attention_bias` is true. */
  qkvBias: boolean;
  /** Llama/Mistral `attention_bias` also puts a bias on o_proj (Qwen2 never has one). */
  oBias: boolean;
  /** Llama `mlp_bias`: gate/up/down have biases. */
  mlpBias: boolean;
  maxPositionEmbeddings: number;
  /** Mistral v0.1 sliding window; null when attention is full. Contexts are capped at it. */
  slidingWindow: number | null;
  bosTokenId: number | null;
  eosTokenIds: number[];
}

const ropeScalingSchema = z
  .object({
    rope_type: z.string().optional(),
    type: z.string().optional(),
    rope_theta: z.number().positive().optional(),
    factor: z.number().positive().optional(),
    low_freq_factor: z.number().positive().optional(),
    high_freq_factor: z.number().positive().optional(),
    original_max_position_embeddings: z.number().int().positive().optional(),
    factors: z.array(z.number().positive()).optional(),
  })
  .loose();

const tokenIds = z.union([z.number().int().nonnegative(), z.array(z.number().int().nonnegative())]).nullish();

const configSchema = z
  .object({
    architectures: z.array(z.string()).optional(),
    model_type: z.string().optional(),
    hidden_size: z.number().int().positive(),
    intermediate_size: z.number().int().positive(),
    num_hidden_layers: z.number().int().positive(),
    num_attention_heads: z.number().int().positive(),
    num_key_value_heads: z.number().int().positive().optional(),
    head_dim: z.number().int().positive().nullish(),
    vocab_size: z.number().int().positive(),
    rms_norm_eps: z.number().positive().default(1e-6),
    rope_theta: z.number().positive().optional(),
    rope_scaling: ropeScalingSchema.nullish(),
    rope_parameters: ropeScalingSchema.nullish(),
    tie_word_embeddings: z.boolean().optional(),
    attention_bias: z.boolean().optional(),
    mlp_bias: z.boolean().optional(),
    hidden_act: z.string().default('silu'),
    max_position_embeddings: z.number().int().positive().default(4096),
    sliding_window: z.number().int().positive().nullish(),
    use_sliding_window: z.boolean().optional(),
    bos_token_id: tokenIds,
    eos_token_id: tokenIds,
  })
  .loose();

function architectureOf(c: z.infer<typeof configSchema>): Architecture {
  const names = [c.model_type ?? '', ...(c.architectures ?? [])].map((s) => s.toLowerCase());
  if (names.some((n) => n.startsWith('qwen2'))) return 'qwen2';
  if (names.some((n) => n.startsWith('mistral'))) return 'mistral';
  if (names.some((n) => n.startsWith('llama'))) return 'llama';
  throw new Error(
    `unsupported architecture (model_type "${c.model_type}", architectures ${JSON.stringify(c.architectures)}); supported: llama, mistral, qwen2`,
  );
}

function parseRope(c: z.infer<typeof configSchema>): RopeConfig {
  const params = c.rope_parameters ?? c.rope_scaling ?? null;
  const theta = c.rope_parameters?.rope_theta ?? c.rope_theta ?? 10000;
  const kind = params ? (params.rope_type ?? params.type ?? 'default') : 'default';
  switch (kind) {
    case 'default':
      return { theta, scaling: { type: 'default' } };
    case 'linear':
      if (!params?.factor) throw new Error('rope scaling "linear" needs a factor');
      return { theta, scaling: { type: 'linear', factor: params.factor } };
    case 'llama3': {
      const p = params!;
      if (!p.factor || !p.low_freq_factor || !p.high_freq_factor || !p.original_max_position_embeddings) {
        throw new Error(
          'rope scaling "llama3" needs factor, low_freq_factor, high_freq_factor, original_max_position_embeddings',
        );
      }
      return {
        theta,
        scaling: {
          type: 'llama3',
          factor: p.factor,
          lowFreqFactor: p.low_freq_factor,
          highFreqFactor: p.high_freq_factor,
          originalMaxPositionEmbeddings: p.original_max_position_embeddings,
        },
      };
    }
    case 'factors':
      if (!params?.factors) throw new Error('rope scaling "factors" needs factors');
      return { theta, scaling: { type: 'factors', factors: params.factors } };
    default:
      // yarn / longrope / dynamic scale magnitudes or depend on length: KV reuse could not re-rotate them.
      throw new Error(`unsupported rope scaling "${kind}" (supported: default, linear, llama3)`);
  }
}

function ids(v: number | number[] | null | undefined): number[] {
  if (v === null || v === undefined) return [];
  return Array.isArray(v) ? v : [v];
}

/** Validates a parsed config.json object. `file` is used in error messages. */
export function parseModelConfig(raw: unknown, file = 'config.json'): ModelConfig {
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ModelLoadError(file, `invalid field "${issue.path.join('.')}": ${issue.message}`);
  }
  const c = parsed.data;
  try {
    const architecture = architectureOf(c);
    if (c.hidden_act !== 'silu') throw new Error(`unsupported hidden_act "${c.hidden_act}" (only silu)`);
    const heads = c.num_attention_heads;
    const kvHeads = c.num_key_value_heads ?? heads;
    if (heads % kvHeads !== 0)
      throw new Error(`num_attention_heads ${heads} not a multiple of kv heads ${kvHeads}`);
    const headDim = c.head_dim ?? c.hidden_size / heads;
    if (!Number.isInteger(headDim) || headDim % 2 !== 0)
      throw new Error(`head_dim ${headDim} must be an even integer`);
    const slidingWindow =
      architecture === 'qwen2'
        ? c.use_sliding_window
          ? (c.sliding_window ?? null)
          : null
        : (c.sliding_window ?? null);
    return {
      architecture,
      hiddenSize: c.hidden_size,
      intermediateSize: c.intermediate_size,
      layers: c.num_hidden_layers,
      heads,
      kvHeads,
      headDim,
      vocabSize: c.vocab_size,
      rmsNormEps: c.rms_norm_eps,
      rope: parseRope(c),
      tiedEmbeddings: c.tie_word_embeddings ?? false,
      qkvBias: architecture === 'qwen2' || c.attention_bias === true,
      oBias: architecture !== 'qwen2' && c.attention_bias === true,
      mlpBias: c.mlp_bias === true,
      maxPositionEmbeddings: c.max_position_embeddings,
      slidingWindow,
      bosTokenId: ids(c.bos_token_id)[0] ?? null,
      eosTokenIds: ids(c.eos_token_id),
    };
  } catch (err) {
    throw new ModelLoadError(file, (err as Error).message);
  }
}

export function readModelConfig(path: string): ModelConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new ModelLoadError(path, `cannot read JSON: ${(err as Error).message}`);
  }
  return parseModelConfig(raw, path);
}

/** The config of a model directory (its config.json), a GGUF file or an `ollama:` reference. */
export function loadModelConfig(model: string): ModelConfig {
  const at = locateModel(model);
  if (at.kind === 'gguf') return parseModelConfig(ggufConfigJson(openGguf(at.file)), at.file);
  if (!existsSync(join(at.dir, 'config.json')))
    throw new ModelLoadError(at.dir, 'not a model directory (no config.json)');
  return readModelConfig(join(at.dir, 'config.json'));
}
