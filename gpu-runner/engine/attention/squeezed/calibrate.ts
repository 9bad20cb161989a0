// Calibration of the global threshold τ (DESIGN.md §4.2, SqueezeAILab): score every cluster of every
// (layer, kv head) of a set of artifacts by the mean p̂ over its observation-window queries, relative to
// the uniform weight (m·p̂, m = the artifact's clustered keys, as select.ts compares it), weight it by
// its size (one vote per key), and take τ so that the keys scoring ≥ τ are `keepFraction` of all
// clustered keys. τ is stored with the model's settings (squeezed.json beside the model). With per-key
// scoring (key-sketch.ts, settings v4: calibrateKeyThreshold) the votes are (window row, key) pairs: m·w,
// w = exp of a key's best estimated log softmax weight over the kv head's query group for that row
// (against the block-maxima normalizer), as a decode step scores it.
//
// Per-head budgets (calibrateHeadWeights): how concentrated each (layer, kv head) is — per sample, the
// window queries' true attention over the clustered keys, sorted, as a curve of the mass the best x% of
// the keys hold (averaged over samples) — and, for the calibration budget f, the split of f × heads over
// the heads that maximises the summed mass (greedy on the curves' increments, which is optimal because a
// sorted curve is concave; every head keeps at least f/4). The weights (each head's share ÷ f, mean 1)
// scale a request's budget per head (select.ts headFractions): the request's budget is their average.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { SqueezedControl } from '../../../../contracts/squeezed.ts';
import { keyLogWeights, plainSketch, scoreKeys } from './key-sketch.ts';
import { headFractions, type SelectMode, scoreClusters } from './select.ts';
import type { SqueezedIndex } from './types.ts';

export interface CalibrationSample {
  index: SqueezedIndex;
  /** windowQueries[layer]: [rows][heads·headDim], the queries of the artifact's observation window. */
  windowQueries: readonly Float32Array[];
  /** keys[layer]: [kv_head][n][head_dim] (for per-head budgets; absent: none calibrated). */
  keys?: readonly Float32Array[];
}

export const squeezedSettingsSchema = z.object({
  /**
   * 1, 2: τ for clusters scored by their centroids; 3: τ for per-key scores against the keys' log-sum-exp
   * (before session 9: no longer what a step computes); 4: τ for per-key scores against the block-maxima
   * normalizer (key-sketch.ts scoreKeys)
   */
  v: z.union([z.literal(1), z.literal(2), z.literal(3), z.literal(4)]),
  /** relative to the uniform weight: keep clusters (v1, v2) or keys (v3) whose estimated weight is ≥ tau / m */
  tau: z.number().positive(),
  keepFraction: z.number().positive().max(1),
  pc: z.number().positive().max(1),
  window: z.number().int().nonnegative(),
  samples: z.number().int().positive(),
  /** v2: budget weight per (layer, kv head) [layers·kvHeads], mean 1 (absent: one budget for all heads) */
  headWeights: z.array(z.number().positive().finite()).min(1).optional(),
});
export type SqueezedSettings = z.infer<typeof squeezedSettingsSchema>;

export const SETTINGS_FILE = 'squeezed.json';

/**
 * Per-key τ: over every `rowStep`-th window row of every sample, layer and kv head, the votes m·w_j of the
 * clustered keys j (m of them; w_j = max over the group's heads of the row's estimated softmax weight);
 * τ keeps keepFraction of the votes. Needs the samples' keys.
 */
export function calibrateKeyThreshold(
  samples: readonly CalibrationSample[],
  heads: number,
  scale: number,
  keepFraction: number,
  rowStep = 4,
): number {
  if (samples.length === 0) throw new Error('calibration needs at least one artifact');
  const votes: Float64Array[] = [];
  for (const { index: ix, windowQueries, keys } of samples) {
    if (!keys || keys.length !== ix.layers) throw new Error("per-key calibration needs every layer's keys");
    const { kvHeads, headDim: d } = ix;
    const group = heads / kvHeads;
    const m = ix.n - ix.window;
    if (m <= 0) continue;
    for (let l = 0; l < ix.layers; l++) {
      const q = windowQueries[l];
      const rows = q.length / (heads * d);
      for (let g = 0; g < kvHeads; g++) {
        const s = plainSketch(keys[l].subarray(g * ix.n * d, (g * ix.n + m) * d), d);
        for (let r = 0; r < rows; r += rowStep) {
          const from = (r * heads + g * group) * d;
          const { logits, lse, valid } = scoreKeys(s, q.subarray(from, from + group * d), group, scale);
          votes.push(
            Float64Array.from(keyLogWeights(s, logits, lse, group, valid), (lw) => Math.exp(lw) * m),
          );
        }
      }
    }
  }
  const all = new Float64Array(votes.reduce((t, v) => t + v.length, 0));
  let at = 0;
  for (const v of votes) {
    all.set(v, at);
    at += v.length;
  }
  if (all.length === 0) throw new Error('calibration: no clustered keys in the samples');
  all.sort();
  const idx = Math.min(all.length - 1, Math.max(0, all.length - Math.ceil(keepFraction * all.length)));
  return Math.max(all[idx], Number.MIN_VALUE);
}

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

/** Grid of the concentration curves: the mass held by the best j/GRID of a head's clustered keys. */
const GRID = 128;

/** Concentration curve of every (layer, kv head), averaged over the samples: [layers·kvHeads][GRID + 1]. */
export function concentrationCurves(
  samples: readonly CalibrationSample[],
  heads: number,
  scale: number,
): Float64Array[] {
  const first = samples[0].index;
  const units = first.layers * first.kvHeads;
  const curves = Array.from({ length: units }, () => new Float64Array(GRID + 1));
  for (const { index: ix, windowQueries, keys } of samples) {
    if (!keys) throw new Error("per-head budgets need the samples' keys");
    if (ix.layers * ix.kvHeads !== units) throw new Error('calibration samples of different models');
    const { n, kvHeads, headDim: d } = ix;
    const m = n - ix.window;
    const group = heads / kvHeads;
    for (let l = 0; l < ix.layers; l++) {
      const q = windowQueries[l];
      const rows = q.length / (heads * d);
      for (let g = 0; g < kvHeads; g++) {
        const k = keys[l].subarray(g * n * d, (g + 1) * n * d);
        const mass = new Float64Array(m);
        const s = new Float64Array(m);
        for (let r = 0; r < rows; r++)
          for (let t = 0; t < group; t++) {
            const qo = (r * heads + g * group + t) * d;
            let max = Number.NEGATIVE_INFINITY;
            for (let p = 0; p < m; p++) {
              let dot = 0;
              for (let e = 0; e < d; e++) dot += q[qo + e] * k[p * d + e];
              s[p] = dot * scale;
              if (s[p] > max) max = s[p];
            }
            let z = 0;
            for (let p = 0; p < m; p++) z += s[p] = Math.exp(s[p] - max);
            for (let p = 0; p < m; p++) mass[p] += s[p] / z / (rows * group);
          }
        mass.sort().reverse();
        const curve = curves[l * kvHeads + g];
        let have = 0;
        let p = 0;
        for (let j = 1; j <= GRID; j++) {
          for (const end = Math.round((j / GRID) * m); p < end; p++) have += mass[p];
          curve[j] += have / samples.length;
        }
      }
    }
  }
  return curves;
}

/** Budget weight per (layer, kv head), mean 1, for the calibration budget `fraction` (see above). */
export function calibrateHeadWeights(
  samples: readonly CalibrationSample[],
  heads: number,
  scale: number,
  fraction: number,
): number[] {
  if (samples.length === 0) throw new Error('calibration needs at least one artifact');
  const curves = concentrationCurves(samples, heads, scale);
  const units = curves.length;
  const total = Math.max(units, Math.round(fraction * GRID * units));
  const floor = Math.max(1, Math.floor((fraction * GRID) / 4));
  const alloc = curves.map(() => Math.min(GRID, floor));
  for (let spent = alloc.reduce((a, b) => a + b, 0); spent < total; spent++) {
    let best = -1;
    let gain = Number.NEGATIVE_INFINITY;
    curves.forEach((c, i) => {
      if (alloc[i] < GRID && c[alloc[i] + 1] - c[alloc[i]] > gain) {
        gain = c[alloc[i] + 1] - c[alloc[i]];
        best = i;
      }
    });
    if (best < 0) break;
    alloc[best]++;
  }
  const sum = alloc.reduce((a, b) => a + b, 0);
  return alloc.map((a) => (a * units) / sum);
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
  if (control.mode === 'budget') {
    const w = settings?.headWeights;
    return w
      ? { kind: 'budget', fraction: control.budget, perHead: headFractions(w, control.budget) }
      : { kind: 'budget', fraction: control.budget };
  }
  const tau = control.threshold ?? settings?.tau;
  if (tau === undefined)
    throw new Error(
      `squeezed threshold mode needs a calibrated τ (${SETTINGS_FILE} beside the model) or an explicit threshold`,
    );
  // a τ of settings v3 weighed keys against their log-sum-exp, which a step no longer computes: it would
  // keep a different share than calibrated
  if (control.threshold === undefined && settings?.v === 3)
    throw new Error(
      `squeezed threshold mode: ${SETTINGS_FILE} (v3) was calibrated for the earlier per-key weights; rerun gpu-runner/tools/calibrate-squeezed.ts or pass an explicit threshold`,
    );
  // a τ calibrated for clusters (settings v1, v2) is not one for keys: it selects as it was calibrated
  return control.threshold === undefined && settings && settings.v < 3
    ? { kind: 'threshold', tau, scoring: 'clusters' }
    : { kind: 'threshold', tau };
}
