// `kvrag bench serve [--concurrency 1,4,16] [--modes independent,full] [--requests N] [--chunks 4]
//   [--chunk-tokens 128] [--question 16] [--max-tokens 16] [--model DIR] [--backend wasm|native|reference]
//   [--weights f32|f16|q8_0|q4_0] [--kv-cache f16|f32|int8] [--shape smollm2|tiny] [--json]`
// Serving throughput and TTFT of a runner over HTTP, reuse modes side by side in one run on the same
// backend: an in-process runner (createRunner, loopback port) gets closed-loop SSE clients from a worker
// thread (serve-clients.ts: their own event loop, as real clients are other processes) — `c` clients,
// each sending its next request when the previous one ends — until --requests requests finished, at each
// concurrency and reuse mode (interleaved: every concurrency runs all modes before the next one).
// Each request: a system prefix, --chunks chunks of its own (like concurrent users whose retrievals differ:
// request j of a level gets chunks j·k … j·k+k−1 of a pool of requests × k distinct chunks, precomputed as
// artifacts before timing, so `independent` loads them and `full` prefills them live), a distinct
// question, and --max-tokens generated tokens (eos ignored). Every level walks the same chunk sets in the
// same order after a warm-up pass over all of them, so each starts from the same artifact-tier state.
// TTFT = request sent → first token event, at the client (the runner's TTFT where no token had text). The
// runner streams text only, so on a random model whose first tokens decode to no text the client's TTFT is
// that of the first text: the runner's own TTFT (arrival → first token, text or not) is shown beside it.
// KV memory fits every client of the top level.
// Throughput = generated tokens / wall time of the level. Without --model, a generated Llama (hidden 256,
// 4 layers, byte vocab; --shape smollm2: SmolLM2-135M's shape, where decode reads 135M weights per step)
// with max_position_embeddings raised to fit. --kv-cache: the native backend's KV cache element type (the
// runner's default, int8, unless given).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { REUSE_MODES, type ReuseMode } from '../contracts/reuse.ts';
import { BACKENDS, type BackendName } from '../gpu-runner/engine/backends/registry.ts';
import { KV_CACHE_DTYPES, type KVCacheDType } from '../gpu-runner/engine/backends/types.ts';
import { kvBytesPerPosition } from '../gpu-runner/engine/generate/scheduler.ts';
import { loadModelConfig } from '../gpu-runner/engine/model-config.ts';
import { WEIGHT_DTYPES, type WeightDType } from '../gpu-runner/engine/weights.ts';
import { createRunner, type Runner } from '../gpu-runner/server/runner.ts';
import { MAX_PRECOMPUTE_CHUNKS } from '../contracts/runner-api.ts';
import { makeTinyModel } from '../gpu-runner/tools/make-tiny-model.ts';
import { numberOption, parseOptions, UsageError } from '../cli/args.ts';
import { FsBlobStore } from '../src/storage/fs.ts';
import { emit, formatTable, percentile, rng } from './_report.ts';
import { modelShape } from './_shapes.ts';
import type { ClientsInit, LevelDone, LevelMsg } from './serve-clients.ts';

const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;

const BENCH_MODEL = {
  arch: 'llama' as const,
  hidden: 256,
  layers: 4,
  heads: 4,
  kvHeads: 2,
  headDim: 64,
  intermediate: 704,
};

interface Row {
  mode: ReuseMode;
  concurrency: number;
  requests: number;
  tokensPerSec: number;
  ttftP50Ms: number;
  ttftP95Ms: number;
  ttftP99Ms: number;
  /** The runner's TTFT (arrival → first token, whether or not it has text). */
  runnerTtftP50Ms: number;
  runnerTtftP95Ms: number;
  /** Mean queue wait reported by the runner. */
  queueWaitMs: number;
  /** Mean context assembly (artifact load, re-rotation, recompute) reported by the runner. */
  assembleMs: number;
  /** Mean live prefill before the first token (the question, batched with other sequences' work). */
  prefillMs: number;
  /** Mean ms per generated token after the first, per request (its decode steps, shared with the others). */
  decodeMsPerToken: number;
  cachedTokensPerRequest: number;
  /** Scheduler steps (batched forwards) the level took. */
  steps: number;
  /**
   * Steps per wave of `concurrency` requests (steps × concurrency / requests): --max-tokens when a wave's
   * requests share every step, more when they reach the scheduler a step or more apart.
   */
  stepsPerWave: number;
  wallMs: number;
}

export async function run(args: string[]): Promise<number> {
  const { values } = parseOptions(args, {
    concurrency: { type: 'string', default: '1,4,16' },
    modes: { type: 'string', default: 'independent,full' },
    requests: { type: 'string' },
    chunks: { type: 'string' },
    'chunk-tokens': { type: 'string' },
    question: { type: 'string' },
    'max-tokens': { type: 'string' },
    model: { type: 'string' },
    backend: { type: 'string', default: 'wasm' },
    weights: { type: 'string' },
    'kv-cache': { type: 'string' },
    shape: { type: 'string' },
    json: { type: 'boolean' },
  });
  const levels = (values.concurrency ?? '').split(',').map((c) => numberOption('concurrency', c, 1));
  const modes = (values.modes ?? '').split(',') as ReuseMode[];
  for (const m of modes) if (!REUSE_MODES.includes(m)) throw new UsageError(`unknown reuse mode "${m}"`);
  const cpu = BACKENDS.filter((b) => b.priority > 0).map((b) => b.name) as string[];
  if (!cpu.includes(values.backend!)) throw new UsageError(`--backend must be one of ${cpu.join(', ')}`);
  const backend = values.backend as BackendName;
  const kvCache = values['kv-cache'] as KVCacheDType | undefined;
  if (kvCache !== undefined && !KV_CACHE_DTYPES.includes(kvCache))
    throw new UsageError(`--kv-cache must be ${KV_CACHE_DTYPES.join(', ')}, not "${kvCache}"`);
  const weights = values.weights as WeightDType | undefined;
  if (weights !== undefined && !WEIGHT_DTYPES.includes(weights))
    throw new UsageError(`--weights: unknown "${weights}" (${WEIGHT_DTYPES.join(', ')})`);
  const perLevel = numberOption('requests', values.requests, Math.max(16, ...levels));
  const k = numberOption('chunks', values.chunks, 4);
  const chunkTokens = numberOption('chunk-tokens', values['chunk-tokens'], 128);
  const questionTokens = numberOption('question', values.question, 16);
  const maxTokens = numberOption('max-tokens', values['max-tokens'], 16);
  const systemTokens = 16;
  const seqTokens = systemTokens + k * chunkTokens + questionTokens + maxTokens;

  const shape = values.shape ? modelShape('shape', values.shape) : null;
  if (shape && values.model) throw new UsageError('--shape and --model exclude each other');
  const tmp = mkdtempSync(join(tmpdir(), 'kvrag-bench-serve-'));
  let runner: Runner | null = null;
  let clients: Worker | null = null;
  try {
    const dir = values.model ?? join(tmp, 'model');
    if (!values.model) {
      makeTinyModel(dir, { ...(shape ?? BENCH_MODEL), seed: 1 });
      const cfgPath = join(dir, 'config.json');
      const cfg = JSON.parse(readFileSync(cfgPath, 'utf8'));
      cfg.max_position_embeddings = 2 ** Math.ceil(Math.log2(seqTokens));
      writeFileSync(cfgPath, JSON.stringify(cfg));
    }
    // KV memory for every client at the highest level at once (counted as f32 K and V, every layer, whatever
    // the cache type; the scheduler reserves a sequence's positions in blocks of 32), so concurrency is not
    // capped by the default 256 MiB
    const kvBytes = Math.max(
      256 * 1024 * 1024,
      Math.max(...levels) * (seqTokens + 64) * kvBytesPerPosition(loadModelConfig(dir), 'f32'),
    );
    const r = await createRunner({
      modelDir: dir,
      backend,
      weightDType: weights,
      ...(kvCache ? { kvCacheDType: kvCache } : {}),
      blobs: new FsBlobStore(join(tmp, 'objects')),
      port: 0,
      host: '127.0.0.1',
      scheduler: { maxRunning: Math.max(...levels), maxStepTokens: 512, kvBytes },
    });
    runner = r;
    const { port } = await r.start();
    const base = `http://127.0.0.1:${port}`;
    // the runner credential on every call, as the API sends it
    const headers = {
      'content-type': 'application/json',
      authorization: `Bearer ${r.core.credential.current}`,
    };
    const vocab = r.core.engine.config.vocabSize;
    if (r.core.engine.maxContext < seqTokens) throw new UsageError(`model context < ${seqTokens} tokens`);

    // a pool of distinct chunks (token ids), a chunk set per request of a level, precomputed before timing
    const rand = rng(7);
    const ids = (n: number) =>
      Array.from({ length: n }, () => 32 + Math.floor(rand() * Math.min(200, vocab - 32)));
    const pool = Array.from({ length: perLevel * k }, () => ids(chunkTokens));
    const system = ids(systemTokens);
    const all = pool.concat([system]);
    for (let i = 0; i < all.length; i += MAX_PRECOMPUTE_CHUNKS) {
      const pre = await fetch(`${base}/v1/precompute`, {
        method: 'POST',
        headers,
        body: JSON.stringify({
          chunks: all.slice(i, i + MAX_PRECOMPUTE_CHUNKS).map((tokenIds) => ({ tokenIds })),
        }),
      });
      if (!pre.ok) throw new Error(`precompute failed: ${pre.status} ${await pre.text()}`);
    }

    // the clients: a worker thread with its own event loop (bench/serve-clients.ts), as real clients are
    // other processes; the runner's loop only serves
    const init: ClientsInit = {
      base,
      headers,
      pool,
      k,
      system,
      questionTokens,
      maxTokens,
      perLevel,
    };
    clients = new Worker(new URL('./serve-clients.ts', import.meta.url), { workerData: init });
    const worker = clients;
    const level = (msg: LevelMsg) =>
      new Promise<LevelDone>((resolve, reject) => {
        const onError = (err: Error) => reject(new Error(`bench clients failed: ${err.message}`));
        const onExit = (code: number) => reject(new Error(`bench clients exited (${code})`));
        worker.once('error', onError);
        worker.once('exit', onExit);
        worker.once('message', (m: { ok: true; done: LevelDone } | { ok: false; error: string }) => {
          worker.off('error', onError);
          worker.off('exit', onExit);
          if (m.ok) resolve(m.done);
          else reject(new Error(`bench clients: ${m.error}`));
        });
        worker.postMessage(msg);
      });
    // warm-up (JIT; the artifact tiers): one request per mode, and a pass over every chunk set at the top
    // concurrency for the modes that read artifacts
    for (const mode of modes)
      await level(
        mode === 'full'
          ? { mode, c: 1, requests: 1, connect: false }
          : { mode, c: Math.max(...levels), connect: true },
      );

    const rows: Row[] = [];
    for (const c of levels) {
      for (const mode of modes) {
        // `c` open connections before timing (the clients open them, then start the level)
        const steps0 = r.core.scheduler.stats().steps;
        const { ttfts, usages, wallMs: wall } = await level({ mode, c, connect: true });
        const steps = r.core.scheduler.stats().steps - steps0;
        ttfts.sort((a, b) => a - b);
        const runnerTtfts = usages.map((u) => u.timingsMs.ttft).sort((a, b) => a - b);
        const tokens = usages.reduce((s, u) => s + u.completionTokens, 0);
        rows.push({
          mode,
          concurrency: c,
          requests: usages.length,
          tokensPerSec: tokens / (wall / 1000),
          ttftP50Ms: percentile(ttfts, 50),
          ttftP95Ms: percentile(ttfts, 95),
          ttftP99Ms: percentile(ttfts, 99),
          runnerTtftP50Ms: percentile(runnerTtfts, 50),
          runnerTtftP95Ms: percentile(runnerTtfts, 95),
          queueWaitMs: mean(usages.map((u) => u.timingsMs.queueWait)),
          assembleMs: mean(usages.map((u) => u.timingsMs.assemble)),
          prefillMs: mean(usages.map((u) => u.timingsMs.prefill ?? 0)),
          decodeMsPerToken: mean(
            usages.map((u) => (u.timingsMs.total - u.timingsMs.ttft) / Math.max(1, u.completionTokens - 1)),
          ),
          cachedTokensPerRequest: usages.reduce((s, u) => s + u.cachedTokens, 0) / usages.length,
          steps,
          stepsPerWave: (steps * c) / usages.length,
          wallMs: wall,
        });
      }
    }
    const full = (c: number) => rows.find((x) => x.mode === 'full' && x.concurrency === c);
    const result = {
      bench: 'serve',
      backend: r.core.engine.backend.name,
      weights: r.core.engine.model.weights.layers[0].q.dtype,
      kvCache: r.core.engine.backend.caps.kvDType,
      model: values.model ?? `generated ${shape?.label ?? ''}`.trim(),
      fingerprint: r.core.engine.fingerprint,
      chunks: k,
      chunkTokens,
      questionTokens: 'text of ~1 byte-token per char',
      maxTokens,
      requestsPerLevel: perLevel,
      rows: rows.map((x) => ({
        ...x,
        throughputVsFull: full(x.concurrency) ? x.tokensPerSec / full(x.concurrency)!.tokensPerSec : null,
        ttftP50VsFull: full(x.concurrency) ? x.ttftP50Ms / full(x.concurrency)!.ttftP50Ms : null,
      })),
    };
    emit(values.json ?? false, result, () =>
      formatTable(
        [
          'mode',
          'concurrency',
          'requests',
          'tokens/s',
          'TTFT p50 ms',
          'TTFT p95 ms',
          'TTFT p99 ms',
          'runner TTFT p50',
          'runner TTFT p95',
          'queue ms',
          'assemble ms',
          'prefill ms',
          'decode ms/tok',
          'cached tok',
          'steps',
          'steps/wave',
          'tok/s ÷ full',
          'p50 ÷ full',
        ],
        result.rows.map((x) => [
          x.mode,
          x.concurrency,
          x.requests,
          x.tokensPerSec,
          x.ttftP50Ms,
          x.ttftP95Ms,
          x.ttftP99Ms,
          x.runnerTtftP50Ms,
          x.runnerTtftP95Ms,
          x.queueWaitMs,
          x.assembleMs,
          x.prefillMs,
          x.decodeMsPerToken,
          x.cachedTokensPerRequest,
          x.steps,
          x.stepsPerWave,
          x.throughputVsFull,
          x.ttftP50VsFull,
        ]),
      ),
    );
    return 0;
  } finally {
    await clients?.terminate();
    await runner?.stop({ graceMs: 0 });
    rmSync(tmp, { recursive: true, force: true });
  }
}
