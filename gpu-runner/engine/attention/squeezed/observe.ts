// Calibration samples for squeezed attention (DESIGN.md §4.2) from a real model: a prompt is prefilled
// layer by layer, and at every layer the queries of its last W positions (the observation window, which
// holds the question turn) are kept together with the keys, from which the index over [0, n − W) is
// built exactly as precompute builds it. calibrate.ts turns samples into the global τ and the per-head
// budget weights.
import type { Engine } from '../../engine.ts';
import { freeRows, rowSet } from '../../reuse/layer-step.ts';
import type { CalibrationSample } from './calibrate.ts';
import { buildIndex, DEFAULT_WINDOW, type IndexOptions } from './index.ts';

/** One prompt's sample: its index and, per layer, the window's queries [W][heads·headDim] (post-RoPE). */
export async function observationSample(
  engine: Engine,
  tokens: readonly number[],
  opts: IndexOptions = {},
): Promise<CalibrationSample> {
  const b = engine.backend;
  const model = engine.model;
  const cfg = engine.config;
  const n = tokens.length;
  const window = Math.min(n, opts.window ?? DEFAULT_WINDOW);
  if (window === 0) throw new Error('observationSample: empty prompt');
  const kv = engine.newSequence(n);
  const rows = rowSet(
    b,
    kv,
    Array.from({ length: n }, (_, i) => i),
  );
  const windowQueries: Float32Array[] = [];
  try {
    let x = model.embed(tokens);
    for (let l = 0; l < cfg.layers; l++) {
      // the layer's queries of the window rows, copied before the layer frees them
      let q: ReturnType<typeof b.sliceRows> | null = null;
      x = model.layer(l, x, rows, { queries: (all) => (q = b.sliceRows(all, n - window, window)) });
      windowQueries.push(await b.read(q!));
      b.free(q!);
    }
    b.free(x);
    kv.length = n;
    const layers = [];
    for (let l = 0; l < cfg.layers; l++) layers.push(await kv.read(l, 0, n));
    const index = buildIndex(layers, { n, kvHeads: cfg.kvHeads, headDim: cfg.headDim }, { ...opts, window });
    return { index, windowQueries, keys: layers.map((x) => x.k) };
  } finally {
    freeRows(b, rows);
    kv.free();
  }
}
