// Calibration samples for squeezed attention (DESIGN.md §4.2) from a real model: a prompt is prefilled
// layer by layer, and at every layer the queries of its last W positions (the observation window, which
// holds the question turn) are kept together with the keys, from which the index over [0, n − W) is
// built exactly as precompute builds it. calibrate.ts turns samples into the global τ.
import type { Engine } from '../../engine.ts';
import { LayerStepper } from '../../reuse/layer-step.ts';
import { ropeInvFreq } from '../../rope.ts';
import type { CalibrationSample } from './calibrate.ts';
import { buildIndex, DEFAULT_WINDOW, type IndexOptions } from './index.ts';

/** One prompt's sample: its index and, per layer, the window's queries [W][heads·headDim] (post-RoPE). */
export async function observationSample(
  engine: Engine,
  tokens: readonly number[],
  opts: IndexOptions = {},
): Promise<CalibrationSample> {
  const b = engine.backend;
  const cfg = engine.config;
  const n = tokens.length;
  const window = Math.min(n, opts.window ?? DEFAULT_WINDOW);
  if (window === 0) throw new Error('observationSample: empty prompt');
  const stepper = new LayerStepper(engine.model);
  const invFreq = b.upload({
    dtype: 'f32',
    shape: [cfg.headDim / 2],
    data: ropeInvFreq(cfg.rope, cfg.headDim),
  });
  const kv = engine.newSequence(n);
  const rows = stepper.rows(
    kv,
    Array.from({ length: n }, (_, i) => i),
  );
  const windowQueries: Float32Array[] = [];
  try {
    let x = stepper.embed(tokens);
    for (let l = 0; l < cfg.layers; l++) {
      // the layer's queries, as LayerStepper.layer computes them, for the window rows
      const w = engine.model.weights.layers[l];
      const tail = b.sliceRows(x, n - window, window);
      const h = b.rmsnorm(tail, w.inputNorm, cfg.rmsNormEps);
      const q0 = b.matmul(h, w.q, w.qBias);
      const pos = b.upload({
        dtype: 'i32',
        shape: [window],
        data: Int32Array.from({ length: window }, (_, i) => n - window + i),
      });
      const q = b.rope(q0, pos, invFreq, cfg.headDim);
      windowQueries.push(await b.read(q));
      for (const t of [tail, h, q0, pos, q]) b.free(t);
      x = await stepper.layer(l, x, rows);
    }
    b.free(x);
    kv.length = n;
    const layers = [];
    for (let l = 0; l < cfg.layers; l++) layers.push(await kv.read(l, 0, n));
    const index = buildIndex(layers, { n, kvHeads: cfg.kvHeads, headDim: cfg.headDim }, { ...opts, window });
    return { index, windowQueries };
  } finally {
    stepper.freeRows(rows);
    stepper.dispose();
    b.free(invFreq);
    kv.free();
  }
}
