// `kvrag bench prefill [--context N[,N…]] [--pattern P] [--model DIR] [--layers L,…] [--threads T]
// [--no-whole] [--no-oracle] [--json]`: sparse prefill (DESIGN.md §4.3) vs dense on the wasm backend, in one run, on a
// real model (default models/kvrag-tiny; contexts past its trained length run on extrapolated RoPE) and a
// retrieval-style prompt (long-input.ts). Per context (default 1K 2K 4K 8K 16K 32K; 64K with --context):
// - attention, per layer: the dense attention() time vs each pattern's time (estimate + selection +
//   sparse kernel, and the kernel alone), attention-mass recall (exp(lse_sparse − lse_dense), mean over
//   rows and heads), relative output error, density; later layers always get the dense output;
// - the oracle bound per measured layer (attention/sparse/oracle.ts): the fewest keys any per-row or
//   block-granular selection could keep at recall 0.95, and the kernel-only speedup ceiling it implies;
// - whole prefill: a plain dense forward vs a forward with sparse prefill (`auto`: the model's
//   sparse.json, or FlexPrefill without one; the break-even is ignored here), wall time;
// - the break-even: the shortest measured context where a pattern's attention (with its estimate)
//   beats dense, per pattern.
// Patterns: a-shape, vertical-slash, block-sparse, flexprefill (default parameters), `auto` (the config).
import { join } from 'node:path';
import type { SparseConfig } from '../gpu-runner/engine/attention/sparse/config.ts';
import { longPrompt } from '../gpu-runner/engine/attention/sparse/long-input.ts';
import {
  AttentionProbe,
  type Candidate,
  type LayerResult,
  ProbeDone,
} from '../gpu-runner/engine/attention/sparse/measure.ts';
import { SparsePrefill } from '../gpu-runner/engine/attention/sparse/prefill.ts';
import { oracleDensity } from '../gpu-runner/engine/attention/sparse/oracle.ts';
import { defaultParams, PLAN_BLOCK } from '../gpu-runner/engine/attention/sparse/types.ts';
import { SPARSE_PATTERNS, type SparsePattern } from '../contracts/sparse.ts';
import { createWasmBackend } from '../gpu-runner/engine/backends/wasm/index.ts';
import { type Engine, loadEngine } from '../gpu-runner/engine/engine.ts';
import { SequenceKV } from '../gpu-runner/engine/kv-cache.ts';
import { numberOption, parseOptions, UsageError } from '../cli/args.ts';
import { type Cell, emit, formatTable } from './_report.ts';

const DEFAULT_CONTEXTS = [1024, 2048, 4096, 8192, 16384, 32768];

function candidates(pattern: string | undefined, config: SparseConfig): Candidate[] {
  const fixed = (p: SparsePattern): Candidate => ({
    name: p,
    params: (_l, kvHeads) => Array.from({ length: kvHeads }, () => defaultParams(p)),
  });
  const auto: Candidate = { name: 'auto', params: (l) => config.layers[l] };
  if (pattern === 'auto') return [auto];
  if (pattern) {
    if (!(SPARSE_PATTERNS as readonly string[]).includes(pattern))
      throw new UsageError(`--pattern must be one of ${[...SPARSE_PATTERNS, 'auto'].join(', ')}`);
    return [fixed(pattern as SparsePattern)];
  }
  return [...SPARSE_PATTERNS.map(fixed), auto];
}

/** Wall time of one prefill of `tokens` (a fresh cache), with an optional sparse-prefill policy. */
async function prefillMs(engine: Engine, tokens: number[], sparse: SparsePrefill | null): Promise<number> {
  const kv = new SequenceKV(engine.backend, engine.config, tokens.length);
  try {
    const t0 = performance.now();
    await engine.forward([{ kv, tokens, attention: sparse ? { kind: 'sparse', policy: sparse } : null }]);
    return performance.now() - t0;
  } finally {
    kv.free();
  }
}

interface ContextResult {
  context: number;
  layers: LayerResult[];
  /** per candidate, summed over layers */
  attention: {
    name: string;
    denseMs: number;
    sparseMs: number;
    kernelMs: number;
    speedup: number;
    kernelSpeedup: number;
    recall: number;
    minLayerRecall: number;
    relError: number;
    density: number;
  }[];
  /** the best any selection could do at recall 0.95 (oracle.ts), per layer and summed like the patterns */
  oracle: {
    layers: OracleLayer[];
    /** mean over layers and kv heads */
    rowDensity: number;
    blockDensity: number;
    /** dense ms ÷ (Σ over layers of dense ms × the layer's block density): the kernel-only ceiling */
    maxSpeedup: number;
  } | null;
  whole: { denseMs: number; sparseMs: number; speedup: number; pattern: string; density: number } | null;
}

interface OracleLayer {
  layer: number;
  rowDensity: number[];
  blockDensity: number[];
}

const meanOf = (xs: number[]) => xs.reduce((a, x) => a + x, 0) / Math.max(1, xs.length);

function oracleSummary(bounds: OracleLayer[], layers: LayerResult[]): ContextResult['oracle'] {
  if (bounds.length === 0) return null;
  let dense = 0;
  let best = 0;
  for (const b of bounds) {
    const ms = layers.find((l) => l.layer === b.layer)?.denseMs ?? 0;
    dense += ms;
    best += ms * meanOf(b.blockDensity);
  }
  return {
    layers: bounds,
    rowDensity: meanOf(bounds.map((b) => meanOf(b.rowDensity))),
    blockDensity: meanOf(bounds.map((b) => meanOf(b.blockDensity))),
    maxSpeedup: best > 0 ? dense / best : 0,
  };
}

function summarize(layers: LayerResult[]): ContextResult['attention'] {
  const names = layers[0]?.candidates.map((c) => c.name) ?? [];
  return names.map((name) => {
    const per = layers.map((l) => ({ dense: l.denseMs, c: l.candidates.find((c) => c.name === name) }));
    const denseMs = per.reduce((a, p) => a + p.dense, 0);
    const sparseMs = per.reduce((a, p) => a + (p.c ? p.c.estimateMs + p.c.kernelMs : 0), 0);
    const kernelMs = per.reduce((a, p) => a + (p.c?.kernelMs ?? 0), 0);
    const mean = (f: (c: NonNullable<(typeof per)[number]['c']>) => number) =>
      per.reduce((a, p) => a + (p.c ? f(p.c) : 0), 0) / per.length;
    return {
      name,
      denseMs,
      sparseMs,
      kernelMs,
      speedup: denseMs / sparseMs,
      kernelSpeedup: denseMs / kernelMs,
      recall: mean((c) => c.recall),
      minLayerRecall: Math.min(...per.map((p) => p.c?.recall ?? 1)),
      relError: mean((c) => c.relError),
      density: mean((c) => c.density),
    };
  });
}

export async function run(args: string[]): Promise<number> {
  const { values } = parseOptions(args, {
    json: { type: 'boolean', default: false },
    context: { type: 'string' },
    pattern: { type: 'string' },
    model: { type: 'string' },
    layers: { type: 'string' },
    threads: { type: 'string' },
    'no-whole': { type: 'boolean', default: false },
    'whole-max': { type: 'string' },
    'no-oracle': { type: 'boolean', default: false },
  });
  const oracle = !values['no-oracle'];
  const contexts = values.context
    ? values.context.split(',').map((s) => numberOption('context', s, 0))
    : DEFAULT_CONTEXTS;
  if (contexts.some((n) => !Number.isInteger(n) || n < 256 || n > 131072))
    throw new UsageError('--context must be integers in [256, 131072]');
  const dir = values.model ?? join(process.cwd(), 'models', 'kvrag-tiny');
  const threads = values.threads ? numberOption('threads', values.threads, 1) : undefined;
  const backend = await createWasmBackend(threads ? { threads } : {});
  const engine = await loadEngine(dir, { backend });
  try {
    const cfg = engine.config;
    const config = engine.sparseConfig;
    const cands = candidates(values.pattern, config);
    const wholeMax = numberOption('whole-max', values['whole-max'], 16384);
    const layers = values.layers ? values.layers.split(',').map((s) => numberOption('layers', s, 0)) : null;
    const results: ContextResult[] = [];
    for (const n of contexts) {
      const tokens = longPrompt(engine.tokenizer, n, 7);
      const probe = new AttentionProbe(cands, {
        layers,
        stop: true,
        keepQueries: oracle,
      });
      const kv = new SequenceKV(engine.backend, cfg, n);
      const bounds: OracleLayer[] = [];
      try {
        try {
          await engine.forward([{ kv, tokens, attention: { kind: 'sparse', policy: probe } }]);
        } catch (err) {
          if (!(err instanceof ProbeDone)) throw err;
        }
        for (const [layer, q] of probe.queries) {
          const { k } = await engine.backend.kvRead(kv.cache, layer, 0, n);
          const r = oracleDensity(
            {
              q,
              k,
              rows: n,
              pos: 0,
              positions: n,
              heads: cfg.heads,
              kvHeads: cfg.kvHeads,
              headDim: cfg.headDim,
              scale: 1 / Math.sqrt(cfg.headDim),
            },
            { target: 0.95, blockSize: PLAN_BLOCK },
          );
          bounds.push({ layer, rowDensity: r.rowDensity, blockDensity: r.blockDensity });
        }
      } finally {
        kv.free();
      }
      let whole: ContextResult['whole'] = null;
      if (!values['no-whole'] && n <= wholeMax) {
        const sparse = new SparsePrefill(
          values.pattern && values.pattern !== 'auto'
            ? { mode: 'pattern', pattern: values.pattern as SparsePattern }
            : { mode: 'auto' },
          { ...config, breakEven: 1 },
        );
        const denseMs = await prefillMs(engine, tokens, null);
        const sparseMs = await prefillMs(engine, tokens, sparse);
        const st = sparse.stats();
        whole = { denseMs, sparseMs, speedup: denseMs / sparseMs, pattern: st.pattern, density: st.density };
      }
      results.push({
        context: n,
        layers: probe.results,
        attention: summarize(probe.results),
        oracle: oracleSummary(bounds, probe.results),
        whole,
      });
      if (!values.json) process.stderr.write(`prefill ${n}: done\n`);
    }
    const breakEven: Record<string, number | null> = {};
    for (const c of cands) {
      // the shortest measured context from which the pattern beats dense at every longer one
      const wins = results.map((r) => (r.attention.find((a) => a.name === c.name)?.speedup ?? 0) > 1);
      const i = wins.lastIndexOf(false) + 1;
      breakEven[c.name] = i < results.length ? results[i].context : null;
    }
    const out = {
      backend: backend.name,
      model: dir,
      threads: threads ?? null,
      measured: layers ? `layers ${layers.join(',')}` : 'every layer',
      config: config.search ? 'sparse.json' : 'default (no sparse.json)',
      contexts: results,
      breakEven,
    };
    emit(values.json, out, () => {
      const rows: Cell[][] = [];
      for (const r of results)
        for (const a of r.attention)
          rows.push([
            `${r.context / 1024}K`,
            a.name,
            a.denseMs,
            a.sparseMs,
            a.speedup,
            a.kernelSpeedup,
            a.recall,
            a.minLayerRecall,
            a.relError,
            a.density,
          ]);
      const wholeRows: Cell[][] = results
        .filter((r) => r.whole)
        .map((r) => [
          `${r.context / 1024}K`,
          r.whole?.pattern ?? '',
          r.whole?.denseMs ?? 0,
          r.whole?.sparseMs ?? 0,
          r.whole?.speedup ?? 0,
          r.whole?.density ?? 0,
        ]);
      const oracleRows: Cell[][] = results
        .filter((r) => r.oracle)
        .map((r) => [
          `${r.context / 1024}K`,
          r.oracle?.rowDensity ?? 0,
          r.oracle?.blockDensity ?? 0,
          r.oracle?.layers
            .map((l) => `${l.layer}: ${l.blockDensity.map((d) => d.toFixed(2)).join('/')}`)
            .join('  ') ?? '',
          r.oracle?.maxSpeedup ?? 0,
        ]);
      return [
        `attention of ${out.measured} (ms summed over layers; sparse = estimate + selection + kernel); wasm, ${out.config}`,
        formatTable(
          [
            'context',
            'pattern',
            'dense ms',
            'sparse ms',
            'speedup',
            'kernel only',
            'recall',
            'min layer recall',
            'rel. error',
            'density',
          ],
          rows,
        ),
        ...(oracleRows.length > 0
          ? [
              '',
              'oracle bound at recall 0.95 (exact dense probabilities; no pattern can keep fewer keys)',
              formatTable(
                ['context', 'per-row density', 'per-block density', 'block density by layer', 'max speedup'],
                oracleRows,
              ),
            ]
          : []),
        ...(wholeRows.length > 0
          ? [
              '',
              'whole prefill (wall ms)',
              formatTable(
                ['context', 'patterns run', 'dense ms', 'sparse ms', 'speedup', 'density'],
                wholeRows,
              ),
            ]
          : []),
        '',
        `break-even (shortest measured context where the pattern's attention beats dense): ${Object.entries(
          breakEven,
        )
          .map(([k, v]) => `${k} ${v ?? '> measured'}`)
          .join(', ')}`,
      ].join('\n');
    });
    return 0;
  } finally {
    engine.dispose();
  }
}
