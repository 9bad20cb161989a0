// The per-model sparse prefill config, `sparse.json` beside the model (written by `kvrag sparse-search`,
// read with the model's other files by ../../model-profile.ts): a pattern per (layer, kv head) and the
// live-token length from which sparse prefill beats dense. Without the file (or with one searched on other
// weights), every head runs DEFAULT_PATTERN and the break-even is DEFAULT_BREAK_EVEN.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { defaultParams, type PatternParams, patternParams } from './types.ts';

export const SPARSE_CONFIG_FILE = 'sparse.json';
/** FlexPrefill adapts its budget per input, the safest choice for a head nobody searched. */
export const DEFAULT_PATTERN = 'flexprefill' as const;
/** Unmeasured default: dense below 16K live tokens. */
export const DEFAULT_BREAK_EVEN = 16384;

export const sparseConfigSchema = z
  .object({
    version: z.literal(1),
    /** model config fingerprint or name the search ran on */
    model: z.string().min(1),
    /** live tokens from which `auto` runs sparse (measured: sparse attention + estimate < dense) */
    breakEven: z.number().int().min(1),
    /** [layer][kv head] */
    layers: z.array(z.array(patternParams).min(1)).min(1),
    search: z
      .object({
        context: z.number().int(),
        targetRecall: z.number(),
        /** [layer][kv head] recall and density of the chosen pattern on the search input */
        recall: z.array(z.array(z.number())),
        density: z.array(z.array(z.number())),
        /** [length, dense ms, sparse ms] of the break-even measurement */
        timings: z.array(z.tuple([z.number(), z.number(), z.number()])),
      })
      .optional(),
  })
  .strict();
export type SparseConfig = z.infer<typeof sparseConfigSchema>;

export function defaultSparseConfig(layers: number, kvHeads: number, model = 'default'): SparseConfig {
  const p = defaultParams(DEFAULT_PATTERN);
  return {
    version: 1,
    model,
    breakEven: DEFAULT_BREAK_EVEN,
    layers: Array.from({ length: layers }, () => Array.from({ length: kvHeads }, () => p)),
  };
}

/**
 * The config when it was searched on these weights (same fingerprint, same layer and kv-head counts); null
 * when it is stale. Reading sparse.json is gpu-runner/engine/model-profile.ts's job.
 */
export function matchSparseConfig(
  cfg: SparseConfig,
  layers: number,
  kvHeads: number,
  fingerprint: string,
): SparseConfig | null {
  if (cfg.layers.length !== layers || cfg.layers.some((l) => l.length !== kvHeads)) return null;
  return cfg.model === fingerprint ? cfg : null;
}

export function writeSparseConfig(modelDir: string, cfg: SparseConfig): string {
  const path = join(modelDir, SPARSE_CONFIG_FILE);
  writeFileSync(path, `${JSON.stringify(sparseConfigSchema.parse(cfg), null, 1)}\n`);
  return path;
}

export function headParams(cfg: SparseConfig, layer: number): PatternParams[] {
  return cfg.layers[layer];
}
