// `kvrag bench engine [--json] [--backend reference,wasm,native,webgpu] [--weights f32|f16|q8_0|q4_0]
// [--batch B] [--threads N] [--context N] [--kv-cache f32|f16|int8[,…]] [--huge-pages on|off|on,off]`: prefill and
// decode throughput of the engine on each backend (default: the CPU backends
// that run here, webgpu where an adapter exists — labelled with its device; on Mesa llvmpipe those are
// not GPU numbers), measured in one run, with the weight matrices kept as --weights (default: as stored).
// Uses --model DIR, or a generated model: by default hidden 256, 4 layers, 8 q / 2 kv heads, head_dim 32,
// vocab 272; `--shape smollm2|qwen2.5-1.5b|tiny` for a real model's shape (bench/_shapes.ts).
// Reports prefill tokens/s (one sequence), decode tokens/s (one sequence, greedy) and batched decode
// tokens/s (B sequences stepping together) with their ms per step, the ms of one forward that prefills B
// prompts together after --context cached positions each (a runner's admission step: `--batch 16
// --prompt-tokens 16 --context 528` is `bench serve`'s concurrency-16 burst), plus the matmul GFLOP/s.
// Decode runs after a --context-token prompt (default 16; a runner's decode after an assembled context is
// ~530), through Engine.generate — the runner's scheduler and step runner. --kv-cache: the native backend's
// cache type (default f32, the library's; a runner's is f16), or a list (f16,int8) measured side by side. --huge-pages: the native backend with its
// memory on transparent huge pages (on, the default), on 4 KiB pages (off), or both side by side.
// `--peer llamacpp` runs kvrag and llama.cpp side by side instead (bench/_engine-peer.ts).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BACKENDS, type BackendChoice } from '../gpu-runner/engine/backends/registry.ts';
import { type Backend, KV_CACHE_DTYPES, type KVCacheDType } from '../gpu-runner/engine/backends/types.ts';
import { type Engine, loadEngine } from '../gpu-runner/engine/engine.ts';
import { WEIGHT_DTYPES, type WeightDType } from '../gpu-runner/engine/weights.ts';
import { makeTinyModel } from '../gpu-runner/tools/make-tiny-model.ts';
import { numberOption, parseOptions, UsageError } from '../cli/args.ts';
import { emit, formatTable } from './_report.ts';
import { modelShape } from './_shapes.ts';
import { label as webgpuLabel, openBenchWebGPU, type WebGPULabel } from './_webgpu.ts';

const BENCH_MODEL = {
  arch: 'llama' as const,
  hidden: 256,
  layers: 4,
  heads: 8,
  kvHeads: 2,
  headDim: 32,
  intermediate: 704,
};

/** Weight FLOPs per token: 2 · (parameters touched by matmuls). Attention FLOPs are excluded. */
function matmulFlopsPerToken(e: Engine): number {
  const c = e.config;
  const perLayer =
    c.hiddenSize * c.headDim * (2 * c.heads + 2 * c.kvHeads) + 3 * c.hiddenSize * c.intermediateSize;
  return 2 * (c.layers * perLayer + c.vocabSize * c.hiddenSize);
}

interface Measurement {
  backend: string;
  /** native: whether its memory was advised onto huge pages (and the OS took it) */
  hugePages?: boolean;
  /** the native backend's KV cache type (--kv-cache) */
  kvCache?: KVCacheDType;
  /** device dtype of the weight matrices */
  weights: string;
  /** webgpu: the device it ran on */
  device?: WebGPULabel;
  config: {
    hidden: number;
    layers: number;
    heads: number;
    kvHeads: number;
    headDim: number;
    intermediate: number;
    vocab: number;
  };
  prefillTokensPerS: number;
  decodeTokensPerS: number;
  batchDecodeTokensPerS: number;
  /** ms of one decode step: one sequence, and `batch` sequences together */
  decodeStepMs: number;
  batchStepMs: number;
  /**
   * ms of one forward that prefills `batch` prompts of --prompt-tokens together, each after --context cached
   * positions of its own (a runner's admission step: a burst's questions over their placed contexts)
   */
  batchPrefillMs: number;
  prefillGflops: number;
  decodeGflops: number;
}

async function measure(
  engine: Engine,
  prompt: number[],
  decodeTokens: number,
  batch: number,
  context: number,
): Promise<Measurement> {
  const flops = matmulFlopsPerToken(engine);
  // warm-up (JIT, kernel instantiation) on a short prompt
  await engine.generate([{ prompt: prompt.slice(0, 8), maxTokens: 2, stopTokenIds: [] }]);

  const kv = engine.newSequence(prompt.length);
  const t = performance.now();
  await engine.forward([{ kv, tokens: prompt }]);
  const prefillMs = performance.now() - t;
  kv.free();

  // decode after a `context`-token prompt: one sequence, then `batch` sequences stepping together (one
  // matmul of M = batch rows per weight per step), each with its own prompt
  const decodeRequest = (b: number) => ({
    prompt: Array.from({ length: context }, (_, i) => (i * 31 + 7 + b) % 256),
    maxTokens: decodeTokens + 1,
    stopTokenIds: [],
  });
  // admission: `batch` sequences with `context` positions cached (one prefill, copied) prefill their prompts
  // in one forward; best of 3, each from the same cached length
  const ctx = engine.newSequence(context + prompt.length);
  await engine.forward([{ kv: ctx, tokens: decodeRequest(0).prompt }]);
  const seqs = Array.from({ length: batch }, () => {
    const s = engine.newSequence(context + prompt.length);
    s.copyFrom(ctx);
    return s;
  });
  ctx.free();
  let batchPrefillMs = Number.POSITIVE_INFINITY;
  for (let r = 0; r < 3; r++) {
    for (const s of seqs) s.length = context;
    const t0 = performance.now();
    await engine.forward(seqs.map((kv, b) => ({ kv, tokens: prompt.map((id) => (id + b) % 256) })));
    batchPrefillMs = Math.min(batchPrefillMs, performance.now() - t0);
  }
  for (const s of seqs) s.free();
  const [one] = await engine.generate([decodeRequest(0)]);
  const decodeMs = one.totalMs - one.ttftMs;
  const many = await engine.generate(Array.from({ length: batch }, (_, b) => decodeRequest(b)));
  const batchDecodeMs = Math.max(...many.map((r) => r.totalMs - r.ttftMs));
  const c = engine.config;
  return {
    backend: engine.backend.name,
    weights: engine.model.weights.layers[0].q.dtype,
    config: {
      hidden: c.hiddenSize,
      layers: c.layers,
      heads: c.heads,
      kvHeads: c.kvHeads,
      headDim: c.headDim,
      intermediate: c.intermediateSize,
      vocab: c.vocabSize,
    },
    prefillTokensPerS: (prompt.length * 1000) / prefillMs,
    decodeTokensPerS: (decodeTokens * 1000) / decodeMs,
    batchDecodeTokensPerS: (batch * decodeTokens * 1000) / batchDecodeMs,
    decodeStepMs: decodeMs / decodeTokens,
    batchStepMs: batchDecodeMs / decodeTokens,
    batchPrefillMs,
    prefillGflops: (prompt.length * flops) / prefillMs / 1e6,
    decodeGflops: (decodeTokens * flops) / decodeMs / 1e6,
  };
}

export async function run(args: string[]): Promise<number> {
  if (args.some((a) => a === '--peer' || a.startsWith('--peer=')))
    return (await import('./_engine-peer.ts')).run(args);
  const { values } = parseOptions(args, {
    json: { type: 'boolean', default: false },
    model: { type: 'string' },
    'prompt-tokens': { type: 'string' },
    'decode-tokens': { type: 'string' },
    batch: { type: 'string' },
    backend: { type: 'string' },
    weights: { type: 'string' },
    shape: { type: 'string' },
    threads: { type: 'string' },
    context: { type: 'string' },
    'kv-cache': { type: 'string' },
    'huge-pages': { type: 'string' },
  });
  const shape = values.shape ? modelShape('shape', values.shape) : null;
  if (shape && values.model) throw new UsageError('--shape and --model exclude each other');
  // CPU backends that run here (the registry's 'auto' candidates), then webgpu where an adapter opens
  const defaults: string[] = [];
  for (const e of [...BACKENDS].sort((a, b) => a.priority - b.priority))
    if (e.priority > 0 && (await e.available())) defaults.push(e.name);
  const probe = values.backend ? null : await openBenchWebGPU();
  if (probe?.backend) {
    defaults.push('webgpu');
    probe.backend.dispose();
  }
  const backends = values.backend ? values.backend.split(',') : defaults;
  const names: string[] = BACKENDS.map((e) => e.name);
  for (const b of backends) {
    if (!names.includes(b)) throw new UsageError(`--backend: unknown backend "${b}" (${names.join(', ')})`);
  }
  const weights = values.weights as WeightDType | undefined;
  if (weights !== undefined && !WEIGHT_DTYPES.includes(weights))
    throw new UsageError(`--weights: unknown "${weights}" (${WEIGHT_DTYPES.join(', ')})`);
  const promptTokens = numberOption('prompt-tokens', values['prompt-tokens'], 128);
  const decodeTokens = numberOption('decode-tokens', values['decode-tokens'], 32);
  const batch = numberOption('batch', values.batch, 4);
  const threads = values.threads === undefined ? undefined : numberOption('threads', values.threads, 1);
  const context = numberOption('context', values.context, 16);
  if (!Number.isInteger(context) || context < 1)
    throw new UsageError(`--context: ${context} is not a positive number of prompt tokens`);
  const kvCaches = (values['kv-cache'] ?? 'f32').split(',') as KVCacheDType[];
  for (const k of kvCaches)
    if (!KV_CACHE_DTYPES.includes(k))
      throw new UsageError(`--kv-cache: "${k}" is not ${KV_CACHE_DTYPES.join(', ')}`);
  if (values['kv-cache'] !== undefined && backends.some((b) => b !== 'native'))
    throw new UsageError(`--kv-cache ${values['kv-cache']}: only the native backend takes a cache type`);
  const pages = (values['huge-pages'] ?? 'on').split(',');
  if (pages.length === 0 || pages.some((p) => p !== 'on' && p !== 'off'))
    throw new UsageError(`--huge-pages: "${values['huge-pages']}" is not on, off or on,off`);
  const tmp = values.model ? null : mkdtempSync(join(tmpdir(), 'kvrag-bench-engine-'));
  try {
    const dir = values.model ?? join(tmp!, 'model');
    if (tmp)
      makeTinyModel(dir, {
        ...(shape ?? BENCH_MODEL),
        seed: 1,
        maxPositions: Math.max(
          512,
          promptTokens + decodeTokens + 16,
          context + Math.max(decodeTokens + 16, promptTokens),
        ),
      });
    const prompt = Array.from({ length: promptTokens }, (_, i) => (i * 31 + 7) % 256);
    const results: Measurement[] = [];
    // the native backend once per --huge-pages setting and --kv-cache type, the others once
    const runs: { b: string; huge?: boolean; kv?: KVCacheDType }[] = backends.flatMap((b) =>
      b === 'native' ? pages.flatMap((p) => kvCaches.map((kv) => ({ b, huge: p === 'on', kv }))) : [{ b }],
    );
    for (const { b, huge, kv } of runs) {
      let backend: Backend | BackendChoice = b as BackendChoice;
      let device: WebGPULabel | undefined;
      if (b === 'webgpu') {
        const g = await openBenchWebGPU();
        if (!g.backend) throw new UsageError(`--backend webgpu: ${g.note}`);
        device = webgpuLabel(g.backend);
        backend = g.backend;
      }
      const engine = await loadEngine(dir, {
        backend,
        weightDType: weights,
        backendOptions: {
          ...(threads ? { threads } : {}),
          ...(kv ? { kvDType: kv } : {}),
          ...(huge === undefined ? {} : { hugePages: huge }),
        },
      });
      try {
        const kernels = (engine.backend as { kernels?: { hugePages?: boolean } }).kernels;
        results.push({
          ...(await measure(engine, prompt, decodeTokens, batch, context)),
          ...(device ? { device } : {}),
          ...(huge === undefined ? {} : { hugePages: kernels?.hugePages === true }),
          ...(kv ? { kvCache: kv } : {}),
        });
      } finally {
        engine.dispose();
      }
    }
    const c = results[0].config;
    const result = {
      model: values.model ?? `generated ${shape?.label ?? ''}`.trim(),
      weights: weights ?? 'as stored',
      config: c,
      promptTokens,
      decodeTokens,
      context,
      kvCache: kvCaches.join(','),
      batch,
      threads: threads ?? 'all cores',
      results,
    };
    emit(values.json!, result, () =>
      [
        `engine bench — ${result.model} model (hidden ${c.hidden}, ${c.layers} layers, ${c.heads}/${c.kvHeads} heads, vocab ${c.vocab}); weights ${result.weights}`,
        formatTable(
          [
            'backend',
            'weights',
            'prefill tok/s',
            'decode tok/s',
            `decode ×${batch} tok/s`,
            `×${batch} ÷ one`,
            'step ms one',
            `step ms ×${batch}`,
            `prefill ms ×${batch}`,
            'prefill GFLOP/s',
            'decode GFLOP/s',
          ],
          results.map((r) => [
            r.device
              ? `webgpu (${r.device.device}${r.device.software ? ', CPU rasteriser' : ''})`
              : r.hugePages === undefined
                ? r.backend
                : `${r.backend} (${r.hugePages ? 'huge pages' : '4 KiB pages'}${kvCaches.length > 1 ? `, ${r.kvCache} KV` : ''})`,
            r.weights,
            r.prefillTokensPerS,
            r.decodeTokensPerS,
            r.batchDecodeTokensPerS,
            `${(r.batchDecodeTokensPerS / r.decodeTokensPerS).toFixed(2)}×`,
            r.decodeStepMs,
            r.batchStepMs,
            r.batchPrefillMs,
            r.prefillGflops,
            r.decodeGflops,
          ]),
        ),
        `prefill ${promptTokens} tokens; decode ${decodeTokens} tokens after a ${context}-token prompt (one sequence, then ${batch} together); prefill ms ×${batch}: one forward of ${batch} prompts of ${promptTokens} tokens, each after ${context} cached positions (a runner's admission step); KV cache ${result.kvCache} (native); threads: ${result.threads}`,
      ].join('\n'),
    );
    return 0;
  } finally {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }
}
