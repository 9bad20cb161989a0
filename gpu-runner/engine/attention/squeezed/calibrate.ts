// Calibration of the global threshold τ (DESIGN.md §4.2, SqueezeAILab): score every cluster of every
// (layer, kv head) of a set of artifacts by the mean p̂ over its observation-window queries, relative to
// the uniform weight (m·p̂, m = the artifact's clustered keys, as select.ts compares it), weight it by
// its size (one vote per key), and take τ so that the keys scoring ≥ τ are `keepFraction` of all
// clustered keys. τ is stored with the model's settings (squeezed.json beside the model).
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { SqueezedControl } from '../../../../contracts/squeezed.ts';
import { type SelectMode, scoreClusters } from './select.ts';
import type { SqueezedIndex } from './types.ts';

export interface CalibrationSample {
  index: SqueezedIndex;
  /** windowQueries[layer]: [rows][heads·headDim], the queries of the artifact's observation window. */
  windowQueries: readonly Float32Array[];
}

export const squeezedSettingsSchema = z.object({
  v: z.literal(1),
  /** relative to the uniform weight: keep clusters whose estimated per-key weight is ≥ tau / m */
  tau: z.number().positive(),
  keepFraction: z.number().positive().max(1),
  pc: z.number().positive().max(1),
  window: z.number().int().nonnegative(),
  samples: z.number().int().positive(),
});
export type SqueezedSettings = z.infer<typeof squeezedSettingsSchema>;

export const SETTINGS_FILE = 'squeezed.json';

/** τ such that keys with p̂ ≥ τ make up keepFraction of the clustered keys of the samples. */
export function calibrateThreshold(
  samples: readonly CalibrationSample[],
  heads: number,
  scale: number,
  keepFraction: number,
): number {
  if (samples.length === 0) throw new Error('calibration needs at least one artifact');
  const scores: number[] = [];
  const weights: number[] = [];
  for (const { index: ix, windowQueries } of samples) {
    if (windowQueries.length !== ix.layers) throw new Error('calibration: one query block per layer');
    for (let l = 0; l < ix.layers; l++) {
      const q = windowQueries[l];
      const rows = q.length / (heads * ix.headDim);
      if (!Number.isInteger(rows) || rows < 1)
        throw new Error(`calibration: layer ${l} queries are not [rows][heads·headDim]`);
      for (let g = 0; g < ix.kvHeads; g++) {
        const h = ix.heads[l * ix.kvHeads + g];
        const s = scoreClusters(h, q, rows, heads, ix.kvHeads, g, ix.headDim, scale);
        const m = ix.n - ix.window;
        for (let c = 0; c < h.k; c++) {
          scores.push(s[c] * m);
          weights.push(h.starts[c + 1] - h.starts[c]);
        }
      }
    }
  }
  const order = scores.map((_, i) => i).sort((a, b) => scores[b] - scores[a]);
  const total = weights.reduce((a, b) => a + b, 0);
  let have = 0;
  for (const i of order) {
    have += weights[i];
    if (have >= keepFraction * total) return Math.max(scores[i], Number.MIN_VALUE);
  }
  return Math.max(scores[order[order.length - 1]], Number.MIN_VALUE);
}

export async function writeSqueezedSettings(dir: string, s: SqueezedSettings): Promise<string> {
  const path = join(dir, SETTINGS_FILE);
  await writeFile(path, `${JSON.stringify(squeezedSettingsSchema.parse(s), null, 2)}\n`);
  return path;
}

/**
 * A request's control resolved against the model's settings: null = dense (off); threshold mode uses
 * the request's τ or the calibrated one (and fails when neither exists).
 */
export function resolveControl(
  control: SqueezedControl,
  settings: SqueezedSettings | null,
): SelectMode | null {
  if (control.mode === 'off') return null;
  if (control.mode === 'budget') return { kind: 'budget', fraction: control.budget };
  const tau = control.threshold ?? settings?.tau;
  if (tau === undefined)
    throw new Error(
      `squeezed threshold mode needs a calibrated τ (${SETTINGS_FILE} beside the model) or an explicit threshold`,
    );
  return { kind: 'threshold', tau };
}
