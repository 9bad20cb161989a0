// Offline per-head pattern search (MInference's procedure, recall-based; DESIGN.md §4.3): prefill a
// long retrieval-style prompt once with dense attention; on every layer try each candidate (a pattern
// with parameters, for all kv heads), measuring per kv head the attention-mass recall against the dense
// oracle and the density; each (layer, kv head) gets the sparsest candidate whose recall reaches the
// target (the best-recall one when none does). Then the break-even: the chosen config's attention
// (estimate + kernel) against dense on layer 0 at growing lengths; `auto` stays dense below the shortest
// length from which sparse wins at every longer measured one.
import type { Engine } from '../../engine.ts';
import { SequenceKV } from '../../kv-cache.ts';
import type { SparseConfig } from './config.ts';
import { longPrompt } from './long-input.ts';
import { AttentionProbe, type Candidate, type LayerResult, ProbeDone } from './measure.ts';
import { type PatternParams, patternParams } from './types.ts';

/** The candidate grid: each pattern at a few budgets. */
export const SEARCH_GRID: readonly PatternParams[] = [
  { pattern: 'a-shape', sink: 64, local: 256 },
  { pattern: 'a-shape', sink: 64, local: 1024 },
  { pattern: 'a-shape', sink: 64, local: 4096 },
  { pattern: 'vertical-slash', vertical: 256, slash: 32, last: 64 },
  { pattern: 'vertical-slash', vertical: 1024, slash: 64, last: 64 },
  { pattern: 'vertical-slash', vertical: 2048, slash: 256, last: 64 },
  { pattern: 'block-sparse', topk: 8 },
  { pattern: 'block-sparse', topk: 32 },
  { pattern: 'block-sparse', topk: 96 },
  patternParams.parse({ pattern: 'flexprefill', gamma: 0.9 }),
  patternParams.parse({ pattern: 'flexprefill', gamma: 0.95 }),
];

export function candidateName(p: PatternParams): string {
  switch (p.pattern) {
    case 'a-shape':
      return `a-shape(sink ${p.sink}, local ${p.local})`;
    case 'vertical-slash':
      return `vertical-slash(v ${p.vertical}, s ${p.slash})`;
    case 'block-sparse':
      return `block-sparse(top ${p.topk})`;
    case 'flexprefill':
      return `flexprefill(γ ${p.gamma}, τ ${p.tau})`;
  }
}

export interface SearchOptions {
  context: number;
  targetRecall: number;
  /** lengths of the break-even measurement (layer 0) */
  breakEvenLengths: readonly number[];
  grid?: readonly PatternParams[];
  log?: (line: string) => void;
}

/** One probed prefill of n prompt tokens (the probe stops after its last layer). */
async function probeRun(engine: Engine, n: number, probe: AttentionProbe): Promise<LayerResult[]> {
  const kv = new SequenceKV(engine.backend, engine.config, n);
  try {
    const attention = { kind: 'sparse' as const, policy: probe };
    await engine.forward([{ kv, tokens: longPrompt(engine.tokenizer, n, 11), attention }]);
  } catch (err) {
    if (!(err instanceof ProbeDone)) throw err;
  } finally {
    kv.free();
  }
  return probe.results;
}

export async function searchPatterns(engine: Engine, opts: SearchOptions): Promise<SparseConfig> {
  const cfg = engine.config;
  const grid = opts.grid ?? SEARCH_GRID;
  const log = opts.log ?? (() => {});
  const cands: Candidate[] = grid.map((p) => ({
    name: candidateName(p),
    params: (_l, kvHeads) => Array.from({ length: kvHeads }, () => p),
  }));
  const all = Array.from({ length: cfg.layers }, (_, l) => l);
  log(`search: ${grid.length} candidates × ${cfg.layers} layers at ${opts.context} tokens`);
  const results = await probeRun(engine, opts.context, new AttentionProbe(cands, { layers: all }));
  const layers: PatternParams[][] = [];
  const recall: number[][] = [];
  const density: number[][] = [];
  for (const r of results) {
    const chosen: PatternParams[] = [];
    const rec: number[] = [];
    const den: number[] = [];
    for (let g = 0; g < cfg.kvHeads; g++) {
      const scored = r.candidates.map((c, i) => ({
        i,
        recall: c.recallPerKvHead[g],
        density: c.densityPerKvHead[g],
      }));
      const ok = scored.filter((s) => s.recall >= opts.targetRecall).sort((a, b) => a.density - b.density);
      const best = ok[0] ?? [...scored].sort((a, b) => b.recall - a.recall)[0];
      chosen.push(grid[best.i]);
      rec.push(best.recall);
      den.push(best.density);
    }
    log(
      `layer ${r.layer}: ${chosen.map((p, g) => `${candidateName(p)} (recall ${rec[g].toFixed(3)}, density ${den[g].toFixed(3)})`).join('; ')}`,
    );
    layers.push(chosen);
    recall.push(rec);
    density.push(den);
  }
  const config: SparseConfig = {
    version: 1,
    model: engine.fingerprint,
    breakEven: 1,
    layers,
    search: { context: opts.context, targetRecall: opts.targetRecall, recall, density, timings: [] },
  };
  // break-even on layer 0 with the chosen patterns
  const auto: Candidate = { name: 'auto', params: (l) => layers[l] };
  const timings: [number, number, number][] = [];
  for (const n of opts.breakEvenLengths) {
    const [r] = await probeRun(engine, n, new AttentionProbe([auto], { layers: [0], stop: true }));
    const c = r.candidates[0];
    timings.push([n, r.denseMs, c.estimateMs + c.kernelMs]);
    log(
      `break-even: ${n} tokens: dense ${r.denseMs.toFixed(0)} ms, sparse ${(c.estimateMs + c.kernelMs).toFixed(0)} ms`,
    );
  }
  const wins = timings.map(([, d, s]) => s < d);
  const i = wins.lastIndexOf(false) + 1;
  // never won: dense up to twice the longest length measured
  config.breakEven = i < timings.length ? timings[i][0] : 2 * Math.max(...opts.breakEvenLengths);
  if (config.search) config.search.timings = timings;
  return config;
}
