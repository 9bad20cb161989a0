// `kvrag bench squeezed [--context N] [--budget B] [--json] [--threads T] [--reps R] [--iters I] [--pc P]
//                       [--decode-context N] [--steps S] [--backend native|wasm] [--channels C[,C…]]
//                       [--kv-cache int8|f16]`:
// squeezed attention (DESIGN.md §4.2) vs dense on the native backend (wasm where the addon is not
// there, or --backend wasm), in one run, for synthetic fixed
// contexts of 8K, 32K and 64K tokens (or --context N): one layer, 8 query heads over 2 kv heads (GQA
// 4:1), head_dim 64, 32 live tokens after the context. Keys are a mixture of Gaussians around n/50
// random unit directions (norm 4, noise 0.35); each decode query aims its group at 2 of its kv head's
// directions (synthetic.ts). The step runs the engine's own path: the fixed context cluster-major in the
// cache and a FixedContext. Scoring `keys r/d` (the default): every key scored from its int8 copy over r of
// its d channels (SparQ's subset, key-sketch.ts; --channels, default DEFAULT_SCORE_CHANNELS; several
// comma-separated give a row pair each), exact
// attention over the budget's best 16-slot blocks (ranked by their best key) + the live tokens, and — `approximated` rows — the left-out keys'
// share (clustered attention: each cluster's keys not kept at its mean key with its mean value, merged by
// log-sum-exp); `dropped` rows discard it;
// on the native backend one fused call per kv head (native-step.ts). Scoring `clusters` (the earlier
// method, for comparison): q read + centroid scoring (with the bound) + selection + grouped key-range
// attention over the selected clusters and the window + the dropped clusters' share on the host. Per
// budget (1/3, 1/8, 1/16 or --budget) and each: time of that step against dense attention over an f32
// cache (`dense` columns) and — native — over the runner's cache (`dense int8`: a runner's default KV dtype,
// for dense and squeezed requests alike, so the ratio the planner's choice faces; `--kv-cache f16` for an
// f16 runner's); the squeezed step reads the runner's cache on native, the f32 one on wasm
// (median over queries × reps, each from a cold cache; wall clock and this thread's CPU time, which
// preemption on a loaded machine does not inflate), attention-mass recall (and an oracle top-k of the
// same size), relative output error vs dense, keys and bytes touched. Then engine end-to-end decode
// tokens/s, dense vs each budget, over an assembled --decode-context (default 32K; 0 skips it).
import { buildIndex, DEFAULT_PC } from '../gpu-runner/engine/attention/squeezed/index.ts';
import {
  DEFAULT_PREFILTER,
  DEFAULT_SCORE_CHANNELS,
} from '../gpu-runner/engine/attention/squeezed/key-sketch.ts';
import { FixedContext, TWO_LEVEL_FROM } from '../gpu-runner/engine/attention/squeezed/fixed-context.ts';
import {
  addSelection,
  attentionRecall,
  emptyStats,
  oracleSelection,
  relativeError,
} from '../gpu-runner/engine/attention/squeezed/metrics.ts';
import { toClusterMajor } from '../gpu-runner/engine/attention/squeezed/layout.ts';
import type { Selection } from '../gpu-runner/engine/attention/squeezed/select.ts';
import type { SqueezedIndex } from '../gpu-runner/engine/attention/squeezed/types.ts';
import {
  fixedKeys,
  syntheticContext,
  syntheticQueries,
} from '../gpu-runner/engine/attention/squeezed/synthetic.ts';
import { attendLayer } from '../gpu-runner/engine/attention/step-attention.ts';
import { nativeBackendAvailable } from '../gpu-runner/engine/backends/native/backend.ts';
import { createBackend } from '../gpu-runner/engine/backends/registry.ts';
import type { WasmBackend } from '../gpu-runner/engine/backends/wasm/index.ts';
import { numberOption, parseOptions, UsageError } from '../cli/args.ts';
import { emit, formatTable, percentile } from './_report.ts';
import { wasmAssigner } from './_wasm-kmeans.ts';
import { engineDecode } from './_squeezed-decode.ts';

const H = 8;
const KVH = 2;
const D = 64;
const LIVE = 32;
const QUERIES = 6;

function parseBudget(s: string): number {
  const m = /^1\/(\d+)$/.exec(s);
  const f = m ? 1 / Number(m[1]) : Number(s);
  if (!(f > 0 && f <= 1)) throw new UsageError(`--budget must be a fraction like 1/8 or 0.125, got "${s}"`);
  return f;
}

/** x: [kv_head][cap][d] with the fixed context at [0, n): that part rearranged cluster-major. */
function clusterMajorCache(ix: SqueezedIndex, x: Float32Array, cap: number): Float32Array {
  const { n, kvHeads, headDim: d } = ix;
  const fixed = new Float32Array(kvHeads * n * d);
  for (let g = 0; g < kvHeads; g++) fixed.set(x.subarray(g * cap * d, (g * cap + n) * d), g * n * d);
  const major = toClusterMajor(ix, 0, fixed);
  const out = x.slice();
  for (let g = 0; g < kvHeads; g++) out.set(major.subarray(g * n * d, (g + 1) * n * d), g * cap * d);
  return out;
}

/** Fixed-context slots [0, n) of per-kv-head range lists, as a Selection (for recall and stats). */
function slotsOf(ranges: Int32Array[], n: number, centroidFloats: number): Selection {
  const keys = ranges.map((r) => {
    const out: number[] = [];
    for (let t = 0; t < r.length; t += 2) for (let p = r[t]; p < Math.min(r[t + 1], n); p++) out.push(p);
    return Int32Array.from(out);
  });
  return { keys, fixedKeys: n, centroidFloats };
}

/** Layers of a bench step (each with its own copy of the context in the cache). */
const LAYERS = 4;

/** CPU time of this process in ms (threads = 1 runs every kernel on this thread): immune to preemption. */
const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/**
 * A buffer twice the last-level cache (32 MiB here) read line by line before every timed pass, so each
 * starts from a cold cache: without it a variant run right after another over the same layers found the
 * int8 sketches and kept rows the first had pulled into L3.
 */
const EVICT = new Float64Array((64 * 2 ** 20) / 8);
let _evictSink = 0; // keeps the reads live
function evictCaches(): void {
  let s = 0;
  for (let i = 0; i < EVICT.length; i += 8) s += EVICT[i];
  _evictSink += s;
}

/** Engine decode: the fixed context is assembled from chunks of this many tokens. */
const CHUNK_TOKENS = 2048;

const median = (xs: number[]) =>
  percentile(
    [...xs].sort((a, b) => a - b),
    50,
  );

export async function run(args: string[]): Promise<number> {
  const { values } = parseOptions(args, {
    json: { type: 'boolean', default: false },
    context: { type: 'string' },
    budget: { type: 'string' },
    threads: { type: 'string' },
    reps: { type: 'string' },
    iters: { type: 'string' },
    pc: { type: 'string' },
    'decode-context': { type: 'string' },
    'two-level-from': { type: 'string' },
    prefilter: { type: 'string' },
    channels: { type: 'string' },
    steps: { type: 'string' },
    backend: { type: 'string' },
    'kv-cache': { type: 'string' },
  });
  const backendName = values.backend ?? ((await nativeBackendAvailable()) ? 'native' : 'wasm');
  if (backendName !== 'native' && backendName !== 'wasm')
    throw new UsageError(`--backend must be native or wasm, got "${values.backend}"`);
  const contexts = values.context ? [numberOption('context', values.context, 0)] : [8192, 32768, 65536];
  if (contexts.some((n) => !Number.isInteger(n) || n < 256))
    throw new UsageError('--context must be an integer ≥ 256');
  const budgets = values.budget ? [parseBudget(values.budget)] : [1 / 3, 1 / 8, 1 / 16];
  const threads = numberOption('threads', values.threads, 1);
  const reps = numberOption('reps', values.reps, 5);
  const pc = numberOption('pc', values.pc, DEFAULT_PC);
  const decodeContext = numberOption('decode-context', values['decode-context'], 32768);
  const steps = numberOption('steps', values.steps, 16);
  const twoLevelFrom = numberOption('two-level-from', values['two-level-from'], TWO_LEVEL_FROM);
  if (!(Number.isInteger(decodeContext) && decodeContext >= 0 && decodeContext % CHUNK_TOKENS === 0))
    throw new UsageError(
      `--decode-context must be a multiple of ${CHUNK_TOKENS} (0 = skip the engine decode)`,
    );
  if (!(pc > 0 && pc <= 1)) throw new UsageError('--pc must be in (0, 1]');
  const iters = numberOption('iters', values.iters, 4);
  const prefilter = numberOption('prefilter', values.prefilter, DEFAULT_PREFILTER);
  if (!(prefilter >= 0 && prefilter <= 1))
    throw new UsageError('--prefilter must be a share of the keys in [0, 1] (0 = every key scored)');
  const channelList = (values.channels ?? String(DEFAULT_SCORE_CHANNELS)).split(',').map(Number);
  if (!channelList.every((c) => Number.isInteger(c) && c >= 4 && c % 4 === 0))
    throw new UsageError(
      '--channels must be multiples of 4, ≥ 4, comma-separated (channels of a key scored; ≥ 64 = all)',
    );
  const runnerKV = values['kv-cache'] ?? 'int8';
  if (runnerKV !== 'f16' && runnerKV !== 'int8')
    throw new UsageError(`--kv-cache must be f16 or int8 (a native runner's KV cache), got "${runnerKV}"`);
  const wasm = (await createBackend(backendName, { threads })) as WasmBackend;
  // dense over the runner's cache: what a dense request reads on a native runner (int8 by default)
  const runner =
    backendName === 'native'
      ? ((await createBackend('native', { threads, kvDType: runnerKV })) as WasmBackend)
      : null;
  const scale = 1 / Math.sqrt(D);
  const geom = { heads: H, kvHeads: KVH, headDim: D, scale };
  const rows: Record<string, number | string>[] = [];
  try {
    for (const n of contexts) {
      const cap = n + LIVE;
      const topics = Math.max(8, Math.round(n / 50));
      const ctx = syntheticContext({ cap, kvHeads: KVH, headDim: D, topics, seed: n });
      const t0 = performance.now();
      const ix = buildIndex(
        [{ k: fixedKeys(ctx, KVH, n, D), v: fixedKeys({ ...ctx, k: ctx.v }, KVH, n, D) }],
        { n, kvHeads: KVH, headDim: D },
        { iters, pc, assign: wasmAssigner(wasm) },
      );
      const buildS = (performance.now() - t0) / 1000;
      // The fixed context goes into the cache cluster-major (layout.ts); live tokens follow it.
      const layer = { k: clusterMajorCache(ix, ctx.k, cap), v: clusterMajorCache(ix, ctx.v, cap), cap };
      // LAYERS layers with their own copies: a step runs them in turn, each from memory as in a model
      const cache = wasm.createKVCache({ layers: LAYERS, kvHeads: KVH, headDim: D, capacity: cap });
      for (let l = 0; l < LAYERS; l++) wasm.kvLoad(cache, l, 0, { k: layer.k, v: layer.v });
      const runnerCache = runner?.createKVCache({ layers: LAYERS, kvHeads: KVH, headDim: D, capacity: cap });
      if (runner && runnerCache)
        for (let l = 0; l < LAYERS; l++) runner.kvLoad(runnerCache, l, 0, { k: layer.k, v: layer.v });
      const ixAll = { ...ix, layers: LAYERS, heads: Array.from({ length: LAYERS }, () => ix.heads).flat() };
      // the engine's path: one block at offset 0 (no rotation), budget per FixedContext
      const invFreq = wasm.upload({ dtype: 'f32', shape: [D / 2], data: new Float32Array(D / 2) });
      const sqInvFreq = runner
        ? runner.upload({ dtype: 'f32', shape: [D / 2], data: new Float32Array(D / 2) })
        : invFreq;
      // per budget: keys scored over each channel subset, the left-out share approximated (the default),
      // then dropped; clusters scored
      const variants = budgets.flatMap((fraction) => [
        ...channelList.flatMap((channels) => [
          { fraction, approximate: true, scoring: 'keys' as const, channels },
          { fraction, approximate: false, scoring: 'keys' as const, channels },
        ]),
        { fraction, approximate: true, scoring: 'clusters' as const, channels: D },
      ]);
      // the fixed keys per layer [kv_head][n][d] in cache order (per-key scoring's int8 copy is made of them)
      const fixedK = new Float32Array(KVH * n * D);
      for (let g = 0; g < KVH; g++) fixedK.set(layer.k.subarray(g * cap * D, (g * cap + n) * D), g * n * D);
      // squeezed requests read the runner's cache on native (the fused step reads its f16 or int8 rows)
      const sqb = runner ?? wasm;
      const fcs = variants.map(
        ({ fraction, approximate, scoring, channels }) =>
          new FixedContext(
            sqb,
            { layers: LAYERS, ...geom },
            [{ offset: 0, n, index: ixAll }],
            { kind: 'budget', fraction, approximate, scoring, prefilter, channels },
            sqInvFreq,
            twoLevelFrom,
            Array.from({ length: LAYERS }, () => fixedK),
          ),
      );
      const span = { cache, row: 0, count: 1, pos: cap - 1 };
      const qs = Array.from({ length: QUERIES }, (_, i) =>
        syntheticQueries(ctx, { rows: 1, heads: H, kvHeads: KVH, headDim: D, topics, seed: 1000 + i }),
      );
      const dense: number[] = [];
      const denseCpu: number[] = [];
      const denseRunner: number[] = [];
      const denseRunnerCpu: number[] = [];
      const sq = variants.map(() => ({
        total: [] as number[],
        totalCpu: [] as number[],
        select: [] as number[],
        selectCpu: [] as number[],
        recall: [] as number[],
        oracle: [] as number[],
        err: [] as number[],
        frac: [] as number[],
        bytes: [] as number[],
      }));
      for (const q of qs) {
        const qt = wasm.upload({ dtype: 'f32', shape: [1, H * D], data: q });
        const denseOut = wasm.attention(qt, 0, [span], H, scale);
        const ref = await wasm.read(denseOut);
        wasm.free(denseOut);
        const qRunner = runner?.upload({ dtype: 'f32', shape: [1, H * D], data: q });
        const runnerSpan = runnerCache ? { ...span, cache: runnerCache } : null;
        const sqQ = qRunner ?? qt;
        const sqSpan = runnerSpan ?? span;
        for (let r = 0; r < reps; r++) {
          // dense and every budget measured back to back within a rep, so machine load hits them alike;
          // a step = every layer in turn (per-layer times are that / LAYERS)
          evictCaches();
          const a = performance.now();
          const ac = cpuMs();
          for (let l = 0; l < LAYERS; l++) wasm.free(wasm.attention(qt, l, [span], H, scale));
          denseCpu.push((cpuMs() - ac) / LAYERS);
          dense.push((performance.now() - a) / LAYERS);
          if (runner && qRunner && runnerSpan) {
            evictCaches();
            const ha = performance.now();
            const hc = cpuMs();
            for (let l = 0; l < LAYERS; l++)
              runner.free(runner.attention(qRunner, l, [runnerSpan], H, scale));
            denseRunnerCpu.push((cpuMs() - hc) / LAYERS);
            denseRunner.push((performance.now() - ha) / LAYERS);
          }
          variants.forEach((_, bi) => {
            const fc = fcs[bi];
            evictCaches();
            const s0 = performance.now();
            const c0 = cpuMs();
            const ranged = [{ kind: 'ranges' as const, source: fc }];
            let out = attendLayer(sqb, sqQ, 0, [sqSpan], ranged, H, scale);
            for (let l = 1; l < LAYERS; l++) {
              sqb.free(out);
              out = attendLayer(sqb, sqQ, l, [sqSpan], ranged, H, scale);
            }
            const c1 = cpuMs();
            const s1 = performance.now();
            // selection alone (scoring + choice + ranges), every layer again: the host path's (fused
            // steps do not separate it; their selection is timed only inside the step)
            const fused = variants[bi].scoring === 'keys' && sqb.name === 'native';
            let ranges: Int32Array[] = [];
            if (!fused || r === 0)
              for (let l = LAYERS - 1; l >= 0; l--) ranges = fc.keysFor(q, sqSpan, l).keys;
            const c2 = cpuMs();
            const s2 = performance.now();
            sq[bi].total.push((s1 - s0) / LAYERS);
            sq[bi].totalCpu.push((c1 - c0) / LAYERS);
            if (!fused) sq[bi].select.push((s2 - s1) / LAYERS);
            if (!fused) sq[bi].selectCpu.push((c2 - c1) / LAYERS);
            if (r === 0) {
              const sel = slotsOf(ranges, n, ix.heads[0].k * D * KVH);
              const st = addSelection(emptyStats(), sel, D);
              sq[bi].err.push(relativeError(sqb.readNow(out), ref));
              sq[bi].recall.push(attentionRecall(q, 1, geom, layer, n, sel).mean);
              sq[bi].oracle.push(
                attentionRecall(
                  q,
                  1,
                  geom,
                  layer,
                  n,
                  oracleSelection(
                    q,
                    1,
                    geom,
                    layer,
                    n,
                    sel.keys.map((k) => k.length),
                  ),
                ).mean,
              );
              sq[bi].frac.push(st.fraction);
              sq[bi].bytes.push(st.bytesTouched);
            }
            sqb.free(out);
          });
        }
        wasm.free(qt);
        if (qRunner) runner?.free(qRunner);
      }
      for (const fc of fcs) fc.dispose();
      if (runnerCache) runner?.freeKVCache(runnerCache);
      if (runner) runner.free(sqInvFreq);
      wasm.free(invFreq);
      wasm.freeKVCache(cache);
      const denseMs = median(dense);
      const denseCpuMs = median(denseCpu);
      const runnerMs = denseRunner.length > 0 ? median(denseRunner) : null;
      const runnerCpuMs = denseRunnerCpu.length > 0 ? median(denseRunnerCpu) : null;
      variants.forEach(({ fraction, approximate, scoring, channels }, bi) => {
        const s = sq[bi];
        const sel = s.select.length > 0;
        const mean = (xs: number[]) => xs.reduce((x, y) => x + y, 0) / xs.length;
        rows.push({
          context: n,
          budget: `1/${Math.round(1 / fraction)}`,
          scoring: scoring === 'keys' ? `keys ${Math.min(channels, D)}/${D}` : scoring,
          dropped: approximate ? 'approximated' : 'dropped',
          clusters: ix.heads[0].k,
          indexBuildS: buildS,
          denseMs,
          squeezedMs: median(s.total),
          selectMs: sel ? median(s.select) : '—',
          speedup: denseMs / median(s.total),
          denseCpuMs,
          squeezedCpuMs: median(s.totalCpu),
          selectCpuMs: sel ? median(s.selectCpu) : '—',
          cpuSpeedup: denseCpuMs / median(s.totalCpu),
          denseRunnerMs: runnerMs ?? '—',
          speedupRunner: runnerMs !== null ? runnerMs / median(s.total) : '—',
          cpuSpeedupRunner: runnerCpuMs !== null ? runnerCpuMs / median(s.totalCpu) : '—',
          attendMs: sel ? median(s.total.map((x, i) => x - s.select[i])) : '—',
          attendSpeedup: sel ? denseMs / median(s.total.map((x, i) => x - s.select[i])) : '—',
          keysFraction: mean(s.frac),
          recall: mean(s.recall),
          oracleRecall: mean(s.oracle),
          relError: mean(s.err),
          kbTouched: mean(s.bytes) / 1024,
          denseKb: (n * KVH * 2 * D * 4) / 1024,
        });
      });
    }
  } finally {
    wasm.dispose();
    runner?.dispose();
  }
  const result = {
    backend: `${wasm.name}, ${threads} thread(s)`,
    runnerKV: runner ? runnerKV : null,
    geometry: {
      heads: H,
      kvHeads: KVH,
      headDim: D,
      liveTokens: LIVE,
      queries: QUERIES,
      reps,
      kmeansIters: iters,
      pc,
      layers: LAYERS,
      twoLevelFrom,
    },
    rows,
    engineDecode:
      decodeContext > 0
        ? await engineDecode({
            chunks: decodeContext / CHUNK_TOKENS,
            chunkTokens: CHUNK_TOKENS,
            steps,
            budgets,
            threads,
            backend: backendName,
            kvDType: runnerKV,
          })
        : [],
  };
  emit(values.json, result, () =>
    [
      `squeezed vs dense decode-step attention, ${result.backend}, ${H} heads / ${KVH} kv heads × ${D}, synthetic clustered keys`,
      formatTable(
        [
          'context',
          'budget',
          'scoring',
          'rest',
          'dense ms',
          'squeezed ms',
          'speedup',
          'dense cpu ms',
          'squeezed cpu ms',
          '(select cpu ms)',
          'cpu speedup',
          `dense ${result.runnerKV ?? '—'} ms`,
          `speedup ${result.runnerKV ?? '—'}`,
          `cpu speedup ${result.runnerKV ?? '—'}`,
          'keys',
          'recall',
          'oracle recall',
          'rel err',
          'KiB touched',
          'dense KiB',
          'index s',
        ],
        rows.map(
          (r) =>
            [
              r.context,
              r.budget,
              r.scoring,
              r.dropped,
              r.denseMs,
              r.squeezedMs,
              r.speedup,
              r.denseCpuMs,
              r.squeezedCpuMs,
              r.selectCpuMs,
              r.cpuSpeedup,
              r.denseRunnerMs,
              r.speedupRunner,
              r.cpuSpeedupRunner,
              r.keysFraction,
              r.recall,
              r.oracleRecall,
              r.relError,
              r.kbTouched,
              r.denseKb,
              r.indexBuildS,
            ] as (string | number)[],
        ),
      ),
      ...(result.engineDecode.length === 0
        ? []
        : [
            `engine decode, generated Llama (8 / 2 kv heads × 64, 4 layers, hidden 512), ${steps} greedy steps over an assembled fixed context (chunks of ${CHUNK_TOKENS})`,
            formatTable(
              [
                'context',
                'attention',
                'tok/s',
                'speedup',
                'cpu ms/token',
                'cpu speedup',
                'keys',
                'same tokens',
              ],
              result.engineDecode.map((r) => [
                r.context,
                r.budget,
                r.tokS,
                r.speedup,
                r.cpuMsPerToken,
                r.cpuSpeedup,
                r.keysFraction,
                r.sameTokens,
              ]),
            ),
          ]),
    ].join('\n'),
  );
  return 0;
}
