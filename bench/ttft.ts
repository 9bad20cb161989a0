// `kvrag bench ttft [--context 2048,8192,16384] [--chunk-tokens 512] [--question 32] [--system 32]
//   [--modes full,prefix,independent,blend,link] [--artifact-dtype f16,int8,int4] [--runs 3] [--model DIR]
//   [--shape smollm2|qwen2.5-1.5b|tiny] [--backend auto|native|wasm|reference|webgpu] [--weights f32|f16]
//   [--temps warm,cold,hot] [--kv-cache f32|f16] [--s3] [--json]`
// Time to first token per reuse mode, measured side by side in one run: for each context length, k
// chunks of --chunk-tokens tokens behind a system prefix, then a question. Each artifact mode runs warm
// (artifacts in host memory, uploaded to the device per request) and cold (a fresh runner: empty host
// memory, artifacts read from the object store — a FsBlobStore in a temp dir, whose files the OS page
// cache may hold, or with --s3 the S3 protocol through a local s3rver). --temps adds `hot` (resident in
// engine memory, packed as stored). TTFT = assembly + question prefill up to the first token's logits:
// load (tier read, checksums, the sections copied to the device; from the object store, read layer by
// layer straight into device memory), rotate (kvUnpack: widening or dequantizing and re-rotating the keys
// in one pass), recompute; `independent` is layer-wise — the question's layer l runs once layer l of every
// block is placed — so load, rotate and question overlap, and `wait` is how long the question's layers
// stood waiting for loads; median of --runs runs, interleaved across modes and dtypes so machine noise
// hits all alike. Artifacts are precomputed once per --artifact-dtype
// (default f16) before timing; every artifact mode runs once per dtype, and each row reports load ms per
// MiB read. Without --model, a generated Llama (hidden 512, 8 layers, 4/2 heads of 64, intermediate 1408,
// byte vocab), or with --shape a real model's shape (bench/_shapes.ts), random weights, with
// max_position_embeddings raised to fit the contexts. --kv-cache: the native backend's KV cache element type
// (default: a runner's, f16 on native — KVRAG_NATIVE_KV_DTYPE; other backends keep f32).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BACKENDS, type BackendName, resolveBackendName } from '../gpu-runner/engine/backends/registry.ts';
import { type Engine, loadEngine } from '../gpu-runner/engine/engine.ts';
import { ArtifactStore } from '../gpu-runner/engine/kv/artifact-store.ts';
import { EngineTier } from '../gpu-runner/engine/kv/engine-tier.ts';
import { ObjectTier } from '../gpu-runner/engine/kv/object-tier.ts';
import { chunkKey, precomputeChunks } from '../gpu-runner/engine/kv/precompute.ts';
import { HostTier } from '../gpu-runner/engine/kv/tiers.ts';
import { type AssembleReport, Assembler } from '../gpu-runner/engine/reuse/assemble.ts';
import { KV_DTYPES, type KVDType } from '../gpu-runner/engine/kv/artifact-format.ts';
import { defaultQuant, isQuantized, sectionLayout } from '../gpu-runner/engine/kv/kv-codec.ts';
import { REUSE_MODES, type ReuseMode } from '../contracts/reuse.ts';
import { makeTinyModel } from '../gpu-runner/tools/make-tiny-model.ts';
import { numberOption, parseOptions, UsageError } from '../cli/args.ts';
import type { BlobStore } from '../contracts/blob-store.ts';
import { FsBlobStore } from '../src/storage/fs.ts';
import { type Cell, emit, formatTable } from './_report.ts';
import { type IndexCost, indexCost } from './_index-cost.ts';
import { modelShape } from './_shapes.ts';
import { openBenchWebGPU } from './_webgpu.ts';
import type { KVCacheDType } from '../gpu-runner/engine/backends/types.ts';

export type TtftResult = {
  backend: string;
  /** the engine's KV cache element type (the native backend's --kv-cache) */
  kvCache: KVCacheDType;
  /** webgpu: the device, as bench/_webgpu.ts describes it */
  device?: string;
  weights: 'f32' | 'f16';
  model: string;
  config: {
    hidden: number;
    layers: number;
    heads: number;
    kvHeads: number;
    headDim: number;
    intermediate: number;
    vocab: number;
  };
  chunkTokens: number;
  systemTokens: number;
  questionTokens: number;
  runs: number;
  blend: { ratio: number; checkLayer: number };
  linkTokens: number;
  /** One entry per artifact dtype: what precomputing every block took and weighs. */
  precompute: {
    dtype: KVDType;
    tokens: number;
    ms: number;
    /** whole artifacts: K/V sections, headers, padding and the squeezed-attention index */
    bytes: number;
    bytesPerToken: number;
    /** the K/V sections alone (what the dtype changes; the index is the same for every dtype) */
    kvBytesPerToken: number;
    /** the squeezed index of the largest context's blocks: what completing it costs a squeezed plan */
    index: IndexCost;
  }[];
  rows: Row[];
};

const mib = (b: number) => b / (1 << 20);
const loadedBytes = (r: AssembleReport) => Object.values(r.bytesLoaded).reduce((s, b) => s + b, 0);

/** The table for people (also renders a saved --json result). */
export function ttftTable(r: TtftResult): string {
  const c = r.config;
  return [
    `TTFT by reuse mode — ${r.device ?? `${r.backend} backend`}, ${r.kvCache ?? 'f32'} KV cache, ${r.model} model (hidden ${c.hidden}, ${c.layers} layers, ${c.heads}/${c.kvHeads} heads × ${c.headDim}, intermediate ${c.intermediate})`,
    `system ${r.systemTokens} + k × ${r.chunkTokens}-token chunks + ${r.questionTokens}-token question; median of ${r.runs}; blend r=${r.blend.ratio} check layer ${r.blend.checkLayer}; link k=${r.linkTokens}; times in ms`,
    formatTable(
      [
        'context',
        'mode',
        'dtype',
        'artifacts',
        'TTFT',
        'full/mode',
        'load',
        'ms/MiB',
        'rotate',
        'recompute',
        'question',
        'wait',
        'MiB loaded',
        'recomputed tok',
      ],
      r.rows.map((row): Cell[] => [
        String(row.context),
        row.mode,
        row.dtype ?? '—',
        { live: '—', hot: 'engine', warm: 'host', cold: 'object' }[row.temp],
        row.ttftMs,
        row.speedup,
        row.report.timingsMs.load,
        row.loadMsPerMiB,
        row.report.timingsMs.rotate,
        row.report.timingsMs.recompute,
        row.report.timingsMs.question,
        row.report.timingsMs.wait,
        mib(loadedBytes(row.report)),
        Math.round(row.report.recomputedTokens),
      ]),
    ),
    ...r.precompute.map((p) => {
      const f16 = r.precompute.find((q) => q.dtype === 'f16');
      const share = (x: number, y: number) =>
        f16 && p.dtype !== 'f16' ? ` (${((100 * x) / y).toFixed(1)}% of f16)` : '';
      return (
        `precompute ${p.dtype}: ${p.tokens} tokens in ${(p.ms / 1000).toFixed(1)} s, ${mib(p.bytes).toFixed(1)} MiB; ` +
        `bytes per token: K/V ${Math.round(p.kvBytesPerToken)}${share(p.kvBytesPerToken, f16?.kvBytesPerToken ?? 1)}, ` +
        `whole artifact with the squeezed index ${Math.round(p.bytesPerToken)}${share(p.bytesPerToken, f16?.bytesPerToken ?? 1)}`
      );
    }),
    ...r.precompute.map(({ dtype, index: x }) => {
      const ms = (v: number) => v.toFixed(1);
      return (
        `squeezed index ${dtype} (squeezed plans only, once per resident block), ${x.tokens} tokens: v3 section ` +
        `${Math.round(x.v3Bytes / x.tokens)} B/token, parse ${ms(x.parseMs)} ms + K/V read back ${ms(x.readMs)} ms + ` +
        `statistics derived ${ms(x.deriveMs)} ms; the same index as a v2 section: ${Math.round(x.v2Bytes / x.tokens)} B/token, ` +
        `parse ${ms(x.v2ParseMs)} ms`
      );
    }),
  ].join('\n');
}

const BENCH_MODEL = {
  arch: 'llama' as const,
  hidden: 512,
  layers: 8,
  heads: 4,
  kvHeads: 2,
  headDim: 64,
  intermediate: 1408,
};

/** live: no artifacts (full); hot: resident in engine memory; warm: host memory; cold: object store. */
type Temp = 'live' | 'hot' | 'warm' | 'cold';
const TEMPS = ['hot', 'warm', 'cold'] as const;

interface Row {
  context: number;
  chunks: number;
  mode: ReuseMode;
  /** artifact dtype (null for `full`, which reads none) */
  dtype: KVDType | null;
  temp: Temp;
  ttftMs: number;
  /** full's median TTFT / this row's. */
  speedup: number;
  /** The median run's load time per MiB it read (null when it read nothing). */
  loadMsPerMiB: number | null;
  runsMs: number[];
  /** The report of the median run (its split, bytes and token counts). */
  report: AssembleReport;
}

/** Deterministic, distinct token ids for block i (bytes only, so any byte-vocab model accepts them). */
const blockTokens = (n: number, i: number) =>
  Array.from({ length: n }, (_, j) => (j * 31 + i * 97 + ((j * j + i) % 13)) % 256);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** The report of the run with the median TTFT (the lower middle one for an even count). */
function medianReport(reports: AssembleReport[]): AssembleReport {
  const sorted = [...reports].sort((a, b) => a.timingsMs.total - b.timingsMs.total);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

function parseDTypes(v: string): KVDType[] {
  const out = v.split(',').map((d) => d.trim());
  for (const d of out)
    if (!(KV_DTYPES as readonly string[]).includes(d))
      throw new UsageError(`--artifact-dtype: unknown dtype "${d}" (${KV_DTYPES.join(', ')})`);
  return [...new Set(out)] as KVDType[];
}

function parseModes(v: string | undefined): ReuseMode[] {
  const modes = (v ?? REUSE_MODES.join(',')).split(',');
  for (const m of modes)
    if (!(REUSE_MODES as readonly string[]).includes(m))
      throw new UsageError(`--modes: unknown mode "${m}" (${REUSE_MODES.join(', ')})`);
  return ['full', ...modes.filter((m) => m !== 'full')] as ReuseMode[]; // full is the baseline, always
}

export async function run(args: string[]): Promise<number> {
  const { values } = parseOptions(args, {
    json: { type: 'boolean', default: false },
    model: { type: 'string' },
    shape: { type: 'string' },
    backend: { type: 'string', default: 'auto' },
    context: { type: 'string', default: '2048,8192,16384' },
    'chunk-tokens': { type: 'string' },
    question: { type: 'string' },
    system: { type: 'string' },
    modes: { type: 'string' },
    runs: { type: 'string' },
    'blend-ratio': { type: 'string' },
    'check-layer': { type: 'string' },
    'link-tokens': { type: 'string' },
    temps: { type: 'string', default: 'warm,cold' },
    'artifact-dtype': { type: 'string', default: 'f16' },
    s3: { type: 'boolean', default: false },
    weights: { type: 'string', default: 'f32' },
    'kv-cache': { type: 'string' },
  });
  const shape = values.shape ? modelShape('shape', values.shape) : null;
  if (shape && values.model) throw new UsageError('--shape and --model exclude each other');
  const temps = (values.temps ?? '').split(',') as Temp[];
  for (const t of temps)
    if (!(TEMPS as readonly string[]).includes(t))
      throw new UsageError(`--temps: "${t}" (${TEMPS.join(', ')})`);
  // a CPU backend of the registry by name, `auto` (what the runner picks: native where its addon loads,
  // else wasm) or webgpu
  const cpu = BACKENDS.filter((b) => b.priority > 0).map((b) => b.name) as string[];
  if (values.backend !== 'auto' && values.backend !== 'webgpu' && !cpu.includes(values.backend!))
    throw new UsageError(`--backend: "${values.backend}" (auto, ${[...cpu, 'webgpu'].join(', ')})`);
  const backend =
    values.backend === 'webgpu' ? 'webgpu' : await resolveBackendName(values.backend as BackendName | 'auto');
  const weights = values.weights;
  if (weights !== 'f32' && weights !== 'f16') throw new UsageError(`--weights: "${weights}" (f32, f16)`);
  const kvCache = values['kv-cache'] ?? (backend === 'native' ? 'f16' : undefined);
  if (kvCache !== undefined && kvCache !== 'f16' && kvCache !== 'f32')
    throw new UsageError(`--kv-cache must be f16 or f32, not "${kvCache}"`);
  if (kvCache === 'f16' && backend !== 'native')
    throw new UsageError(`--kv-cache f16: only the native backend keeps f16 caches (backend: ${backend})`);
  const chunkTokens = numberOption('chunk-tokens', values['chunk-tokens'], 512);
  const questionTokens = numberOption('question', values.question, 32);
  const systemTokens = numberOption('system', values.system, 32);
  const runs = numberOption('runs', values.runs, 3);
  const blendRatio = numberOption('blend-ratio', values['blend-ratio'], 0.15);
  const checkLayer = numberOption('check-layer', values['check-layer'], 1);
  const linkTokens = numberOption('link-tokens', values['link-tokens'], 16);
  const contexts = (values.context ?? '').split(',').map((c) => numberOption('context', c, 0));
  for (const c of contexts)
    if (!Number.isInteger(c) || c < chunkTokens)
      throw new UsageError(`--context: ${c} is not a whole number of at least one chunk`);
  const modes = parseModes(values.modes);
  const dtypes = parseDTypes(values['artifact-dtype'] ?? 'f16');
  const maxTokens = Math.max(...contexts) + systemTokens + questionTokens;

  const tmp = mkdtempSync(join(tmpdir(), 'kvrag-bench-ttft-'));
  let engine: Engine | null = null;
  let stopS3: (() => Promise<void>) | null = null;
  try {
    const dir = values.model ?? join(tmp, 'model');
    if (!values.model)
      makeTinyModel(dir, {
        ...(shape ?? BENCH_MODEL),
        seed: 1,
        maxPositions: 2 ** Math.ceil(Math.log2(maxTokens)),
      });
    let device: string | undefined;
    let opened: Awaited<ReturnType<typeof openBenchWebGPU>>['backend'] = null;
    if (backend === 'webgpu') {
      const g = await openBenchWebGPU();
      if (!g.backend) throw new UsageError(`--backend webgpu: ${g.note}`);
      device = g.note;
      opened = g.backend;
    }
    const e = await loadEngine(dir, {
      backend: opened ?? (backend as BackendName),
      weightDType: weights,
      ...(kvCache ? { backendOptions: { kvDType: kvCache } } : {}),
    });
    engine = e;
    if (e.maxContext < maxTokens) throw new UsageError(`model context ${e.maxContext} < ${maxTokens} tokens`);
    let blobs: BlobStore = new FsBlobStore(join(tmp, 'objects'));
    if (values.s3) {
      // the S3 protocol through s3rver on loopback (the test helper's server: a dev dependency)
      const { startS3 } = await import('../test/helpers/s3-server.ts');
      // loaded only here: the AWS SDK is not needed (nor carried to the GPU check) without --s3
      const { S3BlobStore } = await import('../src/storage/s3.ts');
      const srv = await startS3('kvrag-bench');
      stopS3 = srv.stop;
      blobs = new S3BlobStore({ ...srv, forcePathStyle: true });
    }
    const storeWith = (host: HostTier) =>
      new ArtifactStore({
        fingerprint: e.fingerprint,
        tokenizerHash: e.tokenizer.hash,
        host,
        object: new ObjectTier(blobs, e.fingerprint),
      });
    // warm: one host tier holding every artifact; the engine tier keeps nothing (capacity 0), so each
    // request uploads from host memory
    const warmStore = storeWith(new HostTier(Number.MAX_SAFE_INTEGER));
    const warm = new Map(
      dtypes.map((d) => [
        d,
        new Assembler(e, new EngineTier(e.backend, e.config, warmStore, 0), { dtype: d }),
      ]),
    );
    // hot: the same artifacts kept resident on the device (engine tier without a byte limit)
    const hot = new Map(
      dtypes.map((d) => [
        d,
        new Assembler(e, new EngineTier(e.backend, e.config, warmStore, Number.MAX_SAFE_INTEGER), {
          dtype: d,
        }),
      ]),
    );
    const system = blockTokens(systemTokens, 0);
    const question = blockTokens(questionTokens, 9999);
    const allChunks = Array.from({ length: Math.max(...contexts) / chunkTokens }, (_, i) =>
      blockTokens(chunkTokens, i + 1),
    );
    const blocks = [system, ...allChunks].filter((b) => b.length > 0);
    const precompute: TtftResult['precompute'] = [];
    const t0 = performance.now();
    for (const dtype of dtypes) {
      const t = performance.now();
      const pre = await precomputeChunks(
        e,
        warmStore,
        blocks.map((tokenIds) => ({ tokenIds })),
        { dtype },
      );
      const tokens = pre.reduce((s, r) => s + r.tokens, 0);
      const bytes = pre.reduce((s, r) => s + r.bytes, 0);
      const c = e.config;
      const quant = isQuantized(dtype) ? defaultQuant(dtype, c.headDim) : null;
      const kvBytes = blocks.reduce((sum, b) => {
        const g = { kvHeads: c.kvHeads, n: b.length, headDim: c.headDim };
        return (
          sum +
          c.layers * (sectionLayout(dtype, 'k', g, quant).bytes + sectionLayout(dtype, 'v', g, quant).bytes)
        );
      }, 0);
      const ms = performance.now() - t;
      precompute.push({
        dtype,
        tokens,
        ms,
        bytes,
        bytesPerToken: bytes / tokens,
        kvBytesPerToken: kvBytes / tokens,
        index: await indexCost(e, warmStore, blocks, dtype),
      });
    }
    // JIT and kernel warm-up on a small request
    for (const asm of warm.values())
      (
        await asm.assemble({ system, chunks: allChunks.slice(0, 1), question, mode: 'independent' })
      ).kv.free();
    const first = warm.get(dtypes[0]);
    if (first)
      (await first.assemble({ system, chunks: allChunks.slice(0, 1), question, mode: 'full' })).kv.free();

    const rows: Row[] = [];
    for (const context of contexts) {
      const chunks = allChunks.slice(0, Math.floor(context / chunkTokens));
      const cells = modes.flatMap((mode): { mode: ReuseMode; dtype: KVDType | null; temp: Temp }[] =>
        mode === 'full'
          ? [{ mode, dtype: null, temp: 'live' }]
          : dtypes.flatMap((dtype) => temps.map((temp) => ({ mode, dtype, temp }))),
      );
      if (temps.includes('hot')) {
        for (const [dtype, asm] of hot)
          for (const block of [system, ...chunks])
            if (block.length > 0) (await asm.tier.acquire(chunkKey(e, block, dtype)))?.release();
      }
      const times = cells.map(() => [] as number[]);
      const reports = cells.map(() => [] as AssembleReport[]);
      for (let r = 0; r < runs; r++) {
        for (const [i, cell] of cells.entries()) {
          // cold: a fresh runner's store over the same object store
          const dtype = cell.dtype ?? dtypes[0];
          const asm =
            cell.temp === 'hot'
              ? hot.get(dtype)!
              : cell.temp === 'cold'
                ? new Assembler(
                    e,
                    new EngineTier(e.backend, e.config, storeWith(new HostTier(Number.MAX_SAFE_INTEGER)), 0),
                    { dtype },
                  )
                : warm.get(dtype)!;
          const out = await asm.assemble({
            system,
            chunks,
            question,
            mode: cell.mode,
            blendRatio,
            checkLayer,
            linkTokens,
          });
          out.kv.free();
          times[i].push(out.report.timingsMs.total);
          reports[i].push(out.report);
        }
      }
      process.stderr.write(
        `ttft: context ${context} done (${((performance.now() - t0) / 1000).toFixed(0)} s)\n`,
      );
      const fullMs = median(times[0]);
      for (const [i, cell] of cells.entries()) {
        const ttftMs = median(times[i]);
        const report = medianReport(reports[i]);
        const loaded = mib(loadedBytes(report));
        rows.push({
          context,
          chunks: chunks.length,
          ...cell,
          ttftMs,
          speedup: fullMs / ttftMs,
          loadMsPerMiB: loaded > 0 ? report.timingsMs.load / loaded : null,
          runsMs: times[i],
          report,
        });
      }
    }
    for (const asm of hot.values()) asm.tier.clear();
    const c = e.config;
    const result: TtftResult = {
      backend: e.backend.name,
      kvCache: e.backend.caps.kvDType,
      ...(device ? { device } : {}),
      weights,
      model: values.model ?? `generated ${shape?.label ?? ''}`.trim(),
      config: {
        hidden: c.hiddenSize,
        layers: c.layers,
        heads: c.heads,
        kvHeads: c.kvHeads,
        headDim: c.headDim,
        intermediate: c.intermediateSize,
        vocab: c.vocabSize,
      },
      chunkTokens,
      systemTokens,
      questionTokens,
      runs,
      blend: { ratio: blendRatio, checkLayer },
      linkTokens,
      precompute,
      rows,
    };
    emit(values.json ?? false, result, () => ttftTable(result));
    return 0;
  } finally {
    engine?.dispose();
    await stopS3?.();
    rmSync(tmp, { recursive: true, force: true });
  }
}
