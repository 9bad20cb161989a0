// Calibrates squeezed attention's global threshold τ for a model (DESIGN.md §4.2) and writes
// squeezed.json beside it: prompts are the project's RAG episodes (gpu-runner/eval/episodes.ts, a
// calibration seed distinct from the held-out sets), each prefilled whole; per layer the queries of its
// observation window (the last W tokens, holding the question turn) score the clusters of the rest, and
// τ keeps `keep` of the clustered keys per window row, scored as a decode step scores them (per key, from
// their int8 copy: calibrate.ts calibrateKeyThreshold); the per-head budget weights come from the same samples' true attention (calibrate.ts).
//
//   node gpu-runner/tools/calibrate-squeezed.ts --model models/kvrag-tiny [--keep 0.125] [--episodes 12]
//        [--context 2048] [--backend wasm]
import { parseArgs } from 'node:util';
import {
  calibrateHeadWeights,
  calibrateKeyThreshold,
  writeSqueezedSettings,
} from '../engine/attention/squeezed/calibrate.ts';
import { DEFAULT_PC, DEFAULT_WINDOW } from '../engine/attention/squeezed/index.ts';
import { observationSample } from '../engine/attention/squeezed/observe.ts';
import { loadEngine } from '../engine/engine.ts';
import { episodePrompt, FACT_TYPES, heldoutEpisodes, promptTokens } from '../eval/episodes.ts';

const CALIBRATION_SEED = 9090;

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'models/kvrag-tiny' },
    keep: { type: 'string', default: '0.125' },
    episodes: { type: 'string', default: '12' },
    context: { type: 'string', default: '2048' },
    backend: { type: 'string', default: 'wasm' },
  },
});
const keep = Number(values.keep);
const count = Number(values.episodes);
const context = Number(values.context);
if (!(keep > 0 && keep <= 1)) throw new Error('--keep must be in (0, 1]');
if (!(Number.isInteger(count) && count > 0)) throw new Error('--episodes must be a positive integer');
const engine = await loadEngine(values.model!, { backend: values.backend as 'wasm' | 'reference' });
try {
  const samples = [];
  for (let i = 0; i < count; i++) {
    const kind = FACT_TYPES[i % FACT_TYPES.length];
    const [ep] = heldoutEpisodes(CALIBRATION_SEED + i, kind, context, 1);
    const p = episodePrompt(ep);
    const tokens = [...p.system, ...p.chunks.flat(), ...p.question];
    if (tokens.length !== promptTokens(p)) throw new Error('episode prompt length mismatch');
    samples.push(await observationSample(engine, tokens));
  }
  const c = engine.config;
  const scale = 1 / Math.sqrt(c.headDim);
  const tau = calibrateKeyThreshold(samples, c.heads, scale, keep);
  const headWeights = calibrateHeadWeights(samples, c.heads, scale, keep);
  const path = await writeSqueezedSettings(values.model!, {
    v: 4,
    tau,
    keepFraction: keep,
    pc: DEFAULT_PC,
    window: DEFAULT_WINDOW,
    samples: samples.length,
    headWeights,
  });
  console.log(
    `per-key τ = ${tau} (keeps ${keep} of the clustered keys over ${samples.length} episodes) → ${path}`,
  );
  console.log(`budget weights per (layer, kv head): ${headWeights.map((w) => w.toFixed(3)).join(' ')}`);
} finally {
  engine.dispose();
}
