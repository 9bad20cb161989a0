// The one place that reads a model directory's files besides its weights (DESIGN.md §7.11): config.json,
// the tokenizer files (with the chat template), generation_config.json's eos ids, and the sidecars the
// project writes beside a model — reuse.json (how it was trained), sparse.json (`kvrag sparse-search`),
// squeezed.json (τ calibration). loadEngine reads them once; the engine, scheduler and precompute take
// their settings from the engine; the runner publishes modelProfile() at GET /v1/model and in its
// heartbeat (contracts/model-profile.ts), which is all the API knows of the model.
import { existsSync, readFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { z } from 'zod';
import { ARTIFACT_DTYPES } from '../../contracts/artifacts.ts';
import type { ModelProfile } from '../../contracts/model-profile.ts';
import {
  matchSparseConfig,
  SPARSE_CONFIG_FILE,
  type SparseConfig,
  sparseConfigSchema,
} from './attention/sparse/config.ts';
import {
  SETTINGS_FILE,
  type SqueezedSettings,
  squeezedSettingsSchema,
} from './attention/squeezed/calibrate.ts';
import { ModelLoadError } from './errors.ts';
import { locateModel } from './gguf/location.ts';
import { loadModelConfig, type ModelConfig, readModelConfig } from './model-config.ts';
import { readTokenizerFiles, type TokenizerFiles } from './tokenizer.ts';

export const REUSE_FILE = 'reuse.json';

/**
 * reuse.json: {"v": 1, "independentTrained": true} for a model trained with block-diagonal chunk attention;
 * `artifactDType`: the chunk KV artifact dtype its runners store by default (where `kvrag eval` showed the
 * answers hold at it).
 */
export const reuseSettingsSchema = z.object({
  v: z.literal(1),
  independentTrained: z.boolean().default(false),
  artifactDType: z.enum(ARTIFACT_DTYPES).optional(),
  note: z.string().optional(),
});
export type ReuseSettings = z.infer<typeof reuseSettingsSchema>;

/** What a model says besides its weights, parsed and validated. */
export interface ModelFiles {
  /** the model path as given: a directory, a .gguf file or an `ollama:` reference */
  dir: string;
  config: ModelConfig;
  tokenizer: TokenizerFiles;
  /** eos ids of generation_config.json (none without the file). */
  generationEosIds: number[];
  /** reuse.json; absent: not trained for independent chunks. */
  reuse: ReuseSettings;
  /** sparse.json as written (matched to the weights by sparseConfigOf); null without the file. */
  sparse: SparseConfig | null;
  /** squeezed.json; null when the model was never calibrated. */
  squeezed: SqueezedSettings | null;
}

/** A JSON file beside the model checked with `schema`; null when absent; ModelLoadError naming it otherwise. */
function readSidecar<S extends z.ZodType>(dir: string, file: string, schema: S): z.output<S> | null {
  const path = join(dir, file);
  if (!existsSync(path)) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new ModelLoadError(path, `cannot read JSON: ${(err as Error).message}`);
  }
  const r = schema.safeParse(raw);
  if (!r.success) throw new ModelLoadError(path, r.error.issues.map((i) => i.message).join('; '));
  return r.data;
}

const eosIdsSchema = z
  .object({
    eos_token_id: z
      .union([z.number().int().nonnegative(), z.array(z.number().int().nonnegative())], {
        error: 'eos_token_id must be token ids',
      })
      .optional(),
  })
  .loose();

/**
 * Reads every file of a model but its weights: a Hugging Face directory, or a GGUF file / `ollama:` reference,
 * whose metadata holds the config, tokenizer, chat template and eos ids. A GGUF model has no sidecars (several
 * GGUF files may share a folder; ollama's store is not ours to write): not trained for independent chunks,
 * no sparse search, no squeezed calibration. Throws ModelLoadError naming a bad file.
 */
export function readModelFiles(model: string): ModelFiles {
  const at = locateModel(model);
  if (at.kind === 'gguf') {
    return {
      dir: model,
      config: loadModelConfig(model),
      tokenizer: readTokenizerFiles(model),
      generationEosIds: [],
      reuse: { v: 1, independentTrained: false },
      sparse: null,
      squeezed: null,
    };
  }
  const dir = at.dir;
  if (!existsSync(join(dir, 'config.json')))
    throw new ModelLoadError(dir, 'not a model directory (no config.json)');
  const gen = readSidecar(dir, 'generation_config.json', eosIdsSchema);
  const eos = gen?.eos_token_id;
  return {
    dir,
    config: readModelConfig(join(dir, 'config.json')),
    tokenizer: readTokenizerFiles(dir),
    generationEosIds: eos === undefined ? [] : Array.isArray(eos) ? eos : [eos],
    reuse: readReuseSettings(dir),
    sparse: readSidecar(dir, SPARSE_CONFIG_FILE, sparseConfigSchema),
    squeezed: readSqueezedSettings(dir),
  };
}

/** reuse.json beside a model (a GGUF file or ollama reference has none): the defaults when absent. */
export function readReuseSettings(model: string): ReuseSettings {
  const at = locateModel(model);
  const none: ReuseSettings = { v: 1, independentTrained: false };
  return at.kind === 'gguf' ? none : (readSidecar(at.dir, REUSE_FILE, reuseSettingsSchema) ?? none);
}

/** squeezed.json beside a model: null when it was never calibrated; ModelLoadError when malformed. */
export function readSqueezedSettings(dir: string): SqueezedSettings | null {
  return readSidecar(dir, SETTINGS_FILE, squeezedSettingsSchema);
}

/** sparse.json when it was searched on these weights (same fingerprint and shape); null otherwise. */
export function measuredSparseConfig(files: ModelFiles, fingerprint: string): SparseConfig | null {
  return (
    files.sparse && matchSparseConfig(files.sparse, files.config.layers, files.config.kvHeads, fingerprint)
  );
}

/** A model's name: the folder's or the GGUF file's (without .gguf), or the `ollama:` reference's NAME:TAG. */
function modelId(model: string): string {
  if (model.startsWith('ollama:')) return model.slice('ollama:'.length);
  return basename(resolve(model)).replace(/\.gguf$/i, '');
}

/** What the runner publishes of a loaded model (GET /v1/model, heartbeats). */
export function modelProfile(
  files: ModelFiles,
  loaded: { fingerprint: string; maxContext: number; chatTemplate: boolean },
): ModelProfile {
  return {
    v: 1,
    id: modelId(files.dir),
    fingerprint: loaded.fingerprint,
    contextTokens: loaded.maxContext,
    layers: files.config.layers,
    chatTemplate: loaded.chatTemplate,
    independentTrained: files.reuse.independentTrained,
    sparseBreakEven: measuredSparseConfig(files, loaded.fingerprint)?.breakEven ?? null,
    squeezedThreshold: files.squeezed?.tau ?? null,
  };
}
