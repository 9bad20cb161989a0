// `kvrag bench kernels [--json] [--threads N] [--seconds S] [--rounds R] [--no-engine]`: matmul GFLOP/s
// at prefill and decode shapes for the reference backend, wasm on 1 thread and on all threads, and
// OpenBLAS sgemm (numpy on /usr/bin/python3, the peer) measured side by side in the same run (rounds
// interleave wasm and OpenBLAS, best of each is kept); the machine's copy bandwidth; decode GB/s of
// weights against it; and engine prefill/decode tokens/s per backend on a generated model. The webgpu
// backend joins (matmul GFLOP/s and engine rows) when an adapter exists, labelled with its device.
// `--backend webgpu` measures the webgpu kernels alone on real models' shapes (bench/_webgpu-kernels.ts).
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createReferenceBackend } from '../gpu-runner/engine/backends/reference/index.ts';
import type { Backend } from '../gpu-runner/engine/backends/types.ts';
import {
  createWasmBackend,
  WasmRuntime,
  wasmBackendAvailable,
} from '../gpu-runner/engine/backends/wasm/index.ts';
import { loadEngine } from '../gpu-runner/engine/engine.ts';
import { f32ToF16 } from '../gpu-runner/engine/half.ts';
import { makeTinyModel } from '../gpu-runner/tools/make-tiny-model.ts';
import { numberOption, parseOptions, UsageError } from '../cli/args.ts';
import { startBlasPeer } from './_blas-peer.ts';
import { type NativeSection, nativeSection, nativeTables } from './_native-kernels.ts';
import { emit, formatTable, rng } from './_report.ts';
import { bestCpuGflops, bestTime, settle } from './_timing.ts';
import { label as webgpuLabel, openBenchWebGPU, webgpuMatmulGflops } from './_webgpu.ts';

interface Shape {
  name: string;
  phase: 'prefill' | 'decode';
  M: number;
  K: number;
  N: number;
  weights: 'f32' | 'f16';
}

// prefill: the issue's 512-token shape, the anchor's 64×512×2048, and the engine bench model's MLP;
// decode (M = 1): weights larger than the 32 MiB L3, so they stream from memory.
const SHAPES: Shape[] = [
  { name: 'prefill 512×2048×2048', phase: 'prefill', M: 512, K: 2048, N: 2048, weights: 'f32' },
  { name: 'prefill 512×2048×2048 f16', phase: 'prefill', M: 512, K: 2048, N: 2048, weights: 'f16' },
  { name: 'prefill 64×512×2048', phase: 'prefill', M: 64, K: 512, N: 2048, weights: 'f32' },
  {
    name: 'prefill 128×512×1408 (bench model MLP)',
    phase: 'prefill',
    M: 128,
    K: 512,
    N: 1408,
    weights: 'f32',
  },
  { name: 'decode 1×2048×16384', phase: 'decode', M: 1, K: 2048, N: 16384, weights: 'f32' },
  { name: 'decode 1×2048×16384 f16', phase: 'decode', M: 1, K: 2048, N: 16384, weights: 'f16' },
];

const BENCH_MODEL = {
  arch: 'llama' as const,
  hidden: 512,
  layers: 4,
  heads: 8,
  kvHeads: 2,
  headDim: 64,
  intermediate: 1408,
};

function randomData(n: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => r() * 2 - 1);
}

/** Sets up y = x · wᵀ for a shape in a runtime; returns the call. */
function wasmMatmul(
  rt: WasmRuntime,
  s: Shape,
  x: Float32Array,
  w: Float32Array,
  w16: Uint16Array | null,
): () => void {
  const px = rt.mem.alloc(x.length * 4);
  rt.mem.f32.set(x, px / 4);
  const pw = rt.mem.alloc(w.length * (w16 ? 2 : 4));
  if (w16) rt.mem.u16.set(w16, pw / 2);
  else rt.mem.f32.set(w, pw / 4);
  const py = rt.mem.alloc(s.M * s.N * 4);
  return () => rt.matmul({ x: px, w: pw, bias: 0, y: py, M: s.M, N: s.N, K: s.K, f16: w16 !== null });
}

/** Reference backend GFLOP/s on min(M, 8) rows (its speed does not depend on M; full shapes take minutes). */
function referenceGflops(s: Shape, x: Float32Array, w: Float32Array, w16: Uint16Array | null): number {
  const ref = createReferenceBackend();
  const rows = Math.min(s.M, 8);
  const xt = ref.upload({ dtype: 'f32', shape: [rows, s.K], data: x.subarray(0, rows * s.K) });
  const wt = w16
    ? ref.upload({ dtype: 'f16', shape: [s.N, s.K], data: w16 })
    : ref.upload({ dtype: 'f32', shape: [s.N, s.K], data: w });
  const t = bestTime(() => ref.free(ref.matmul(xt, wt)), 0, 2);
  return (2 * rows * s.K * s.N) / t / 1e9;
}

/** Copy bandwidth in GB/s of traffic (bytes read + bytes written, the STREAM convention), all threads. */
function copyBandwidth(rt: WasmRuntime, seconds: number): number {
  const bytes = 256 * 1024 * 1024;
  const src = rt.mem.alloc(bytes);
  const dst = rt.mem.alloc(bytes);
  rt.mem.u8.fill(1, src, src + bytes);
  rt.mem.u8.fill(2, dst, dst + bytes);
  const t = bestTime(() => rt.copy(src, dst, bytes), seconds, 10);
  rt.mem.release(src);
  rt.mem.release(dst);
  return (2 * bytes) / t / 1e9;
}

interface EngineRow {
  backend: string;
  threads: number;
  weights: 'f32' | 'f16';
  prefillTokensPerS: number;
  decodeTokensPerS: number;
  /** weight bytes streamed per second during decode (every matmul weight once per token) */
  decodeGBps: number;
}

async function engineRow(
  dir: string,
  make: () => Promise<Backend>,
  threads: number,
  weights: 'f32' | 'f16',
  prompt: number[],
  decodeTokens: number,
  repeats: number,
): Promise<EngineRow> {
  const engine = await loadEngine(dir, { backend: await make(), weightDType: weights });
  try {
    const c = engine.config;
    const params =
      c.layers *
        (c.hiddenSize * c.headDim * (2 * c.heads + 2 * c.kvHeads) + 3 * c.hiddenSize * c.intermediateSize) +
      c.vocabSize * c.hiddenSize;
    let prefill = Number.POSITIVE_INFINITY;
    let decode = Number.POSITIVE_INFINITY;
    for (let r = 0; r < repeats; r++) {
      const kv = engine.newSequence(prompt.length + decodeTokens);
      let t = performance.now();
      await engine.forward([{ kv, tokens: prompt }]);
      prefill = Math.min(prefill, (performance.now() - t) / 1000);
      t = performance.now();
      for (let i = 0; i < decodeTokens; i++) await engine.forward([{ kv, tokens: [(i * 7) % 256] }]);
      decode = Math.min(decode, (performance.now() - t) / 1000 / decodeTokens);
      kv.free();
    }
    return {
      backend: engine.backend.name,
      threads,
      weights,
      prefillTokensPerS: prompt.length / prefill,
      decodeTokensPerS: 1 / decode,
      decodeGBps: (params * (weights === 'f16' ? 2 : 4)) / decode / 1e9,
    };
  } finally {
    engine.dispose();
  }
}

export async function run(args: string[]): Promise<number> {
  const backendAt = args.findIndex((a) => a === '--backend' || a.startsWith('--backend='));
  if (backendAt >= 0) {
    const name = args[backendAt].includes('=') ? args[backendAt].split('=')[1] : args[backendAt + 1];
    if (name !== 'webgpu') throw new UsageError(`--backend: "${name}" (webgpu; omit it for the CPU kernels)`);
    return (await import('./_webgpu-kernels.ts')).runWebGPUKernels(args);
  }
  const { values } = parseOptions(args, {
    json: { type: 'boolean', default: false },
    threads: { type: 'string' },
    seconds: { type: 'string' },
    rounds: { type: 'string' },
    'no-engine': { type: 'boolean', default: false },
    'prompt-tokens': { type: 'string' },
    'decode-tokens': { type: 'string' },
  });
  if (!wasmBackendAvailable()) throw new UsageError('WebAssembly SIMD is not available in this runtime');
  const threads = numberOption('threads', values.threads, availableParallelism());
  const seconds = Number(values.seconds ?? 0.3);
  const rounds = numberOption('rounds', values.rounds, 3);
  const promptTokens = numberOption('prompt-tokens', values['prompt-tokens'], 128);
  const decodeTokens = numberOption('decode-tokens', values['decode-tokens'], 16);

  const rtAll = await WasmRuntime.create({ threads });
  const rt1 = threads > 1 ? await WasmRuntime.create({ threads: 1 }) : rtAll;
  const blas = await startBlasPeer(threads);
  const blas1 = threads > 1 ? await startBlasPeer(1) : blas;
  const gpu = await openBenchWebGPU();
  try {
    const copyGBps = copyBandwidth(rtAll, seconds);
    const matmul = [];
    for (const s of SHAPES) {
      const x = randomData(s.M * s.K, 1);
      const w = randomData(s.N * s.K, 2);
      const w16 = s.weights === 'f16' ? f32ToF16(w) : null;
      const all = wasmMatmul(rtAll, s, x, w, w16);
      const one = rt1 === rtAll ? all : wasmMatmul(rt1, s, x, w, w16);
      const flops = 2 * s.M * s.K * s.N;
      let tAll = Number.POSITIVE_INFINITY;
      let t1 = Number.POSITIVE_INFINITY;
      let blasGf = 0;
      let blas1Cpu = 0;
      let wasm1Cpu = 0;
      for (let r = 0; r < rounds; r++) {
        tAll = Math.min(tAll, bestTime(all, seconds));
        if (blas) blasGf = Math.max(blasGf, (await blas.gflops(s.M, s.K, s.N, seconds)).wall);
        settle();
        t1 = Math.min(t1, bestTime(one, seconds));
        wasm1Cpu = Math.max(wasm1Cpu, bestCpuGflops(one, flops, 5));
        if (blas1) blas1Cpu = Math.max(blas1Cpu, (await blas1.gflops(s.M, s.K, s.N, seconds / 2)).cpu);
      }
      const wasmGf = flops / tAll / 1e9;
      const webgpuGflops = gpu.backend
        ? await webgpuMatmulGflops(gpu.backend, s.M, s.K, s.N, x, w, w16)
        : null;
      const weightBytes = s.N * s.K * (s.weights === 'f16' ? 2 : 4);
      matmul.push({
        ...s,
        referenceGflops: referenceGflops(s, x, w, w16),
        webgpuGflops,
        wasm1Gflops: flops / t1 / 1e9,
        wasmGflops: wasmGf,
        openblasGflops: blas ? blasGf : null,
        wasmVsOpenblas: blas && s.weights === 'f32' ? wasmGf / blasGf : null,
        // single thread, per CPU-second: kernel quality independent of machine load
        wasm1CpuGflops: wasm1Cpu,
        openblas1CpuGflops: blas1 ? blas1Cpu : null,
        wasmVsOpenblas1tCpu: blas1 && s.weights === 'f32' ? wasm1Cpu / blas1Cpu : null,
        weightGBps: s.phase === 'decode' ? weightBytes / tAll / 1e9 : null,
        decodeVsCopyBandwidth: s.phase === 'decode' ? weightBytes / tAll / 1e9 / copyGBps : null,
      });
    }
    settle();
    const native = await nativeSection({ rtAll, rt1, blas, threads, seconds, rounds, copyGBps });
    let engine: {
      config: typeof BENCH_MODEL;
      promptTokens: number;
      decodeTokens: number;
      rows: EngineRow[];
    } | null = null;
    if (!values['no-engine']) {
      const tmp = mkdtempSync(join(tmpdir(), 'kvrag-bench-kernels-'));
      try {
        const dir = join(tmp, 'model');
        makeTinyModel(dir, { ...BENCH_MODEL, seed: 1 });
        const prompt = Array.from({ length: promptTokens }, (_, i) => (i * 31 + 7) % 256);
        const rows: EngineRow[] = [];
        rows.push(
          await engineRow(
            dir,
            async () => createReferenceBackend(),
            1,
            'f32',
            prompt,
            Math.min(decodeTokens, 4),
            1,
          ),
        );
        rows.push(
          await engineRow(
            dir,
            () => createWasmBackend({ threads: 1 }),
            1,
            'f32',
            prompt,
            decodeTokens,
            rounds,
          ),
        );
        if (threads > 1)
          rows.push(
            await engineRow(
              dir,
              () => createWasmBackend({ threads }),
              threads,
              'f32',
              prompt,
              decodeTokens,
              rounds,
            ),
          );
        rows.push(
          await engineRow(
            dir,
            () => createWasmBackend({ threads }),
            threads,
            'f16',
            prompt,
            decodeTokens,
            rounds,
          ),
        );
        if (gpu.backend) {
          const g = gpu.backend;
          for (const wt of ['f32', 'f16'] as const) {
            // the engine disposes its backend: each row opens its own device on the same adapter
            rows.push(
              await engineRow(
                dir,
                async () => (await openBenchWebGPU()).backend ?? g,
                1,
                wt,
                prompt,
                decodeTokens,
                rounds,
              ),
            );
          }
        }
        engine = { config: BENCH_MODEL, promptTokens, decodeTokens, rows };
      } finally {
        rmSync(tmp, { recursive: true, force: true });
      }
    }
    const prefillRatios = matmul
      .filter((m) => m.phase === 'prefill' && m.wasmVsOpenblas !== null)
      .map((m) => m.wasmVsOpenblas!);
    const cpuRatios = matmul
      .filter((m) => m.phase === 'prefill' && m.wasmVsOpenblas1tCpu !== null)
      .map((m) => m.wasmVsOpenblas1tCpu!);
    const ref = engine?.rows.find((r) => r.backend === 'reference');
    const best = engine?.rows
      .filter((r) => r.backend === 'wasm' && r.weights === 'f32')
      .sort((a, b) => b.prefillTokensPerS - a.prefillTokensPerS)[0];
    const result = {
      cpu: cpus()[0]?.model ?? 'unknown',
      threads,
      kernelVariant: rtAll.variant,
      copyGBps,
      peer: blas ? { name: 'OpenBLAS via numpy', threads, ...blas.info } : null,
      webgpu: gpu.backend ? webgpuLabel(gpu.backend) : null,
      webgpuNote: gpu.note,
      matmul,
      native,
      engine,
      summary: {
        minPrefillWasmVsOpenblas: prefillRatios.length ? Math.min(...prefillRatios) : null,
        minPrefillWasmVsOpenblas1tCpu: cpuRatios.length ? Math.min(...cpuRatios) : null,
        enginePrefillWasmVsReference: ref && best ? best.prefillTokensPerS / ref.prefillTokensPerS : null,
        engineDecodeWasmVsReference: ref && best ? best.decodeTokensPerS / ref.decodeTokensPerS : null,
      },
    };
    emit(values.json!, result, () => tables(result));
    return 0;
  } finally {
    blas?.close();
    if (blas1 !== blas) blas1?.close();
    gpu.backend?.dispose();
    await rtAll.close();
    if (rt1 !== rtAll) await rt1.close();
  }
}

function tables(r: {
  cpu: string;
  threads: number;
  kernelVariant: string;
  copyGBps: number;
  peer: { blas: string } | null;
  webgpuNote: string;
  matmul: Array<Shape & Record<string, number | string | null>>;
  native: NativeSection;
  engine: {
    config: typeof BENCH_MODEL;
    promptTokens: number;
    decodeTokens: number;
    rows: EngineRow[];
  } | null;
  summary: Record<string, number | null>;
}): string {
  const out = [
    `kernels bench — ${r.cpu}, ${r.threads} threads, wasm kernels: ${r.kernelVariant}; peer: ${r.peer ? `OpenBLAS (${r.peer.blas})` : 'none (no python3/numpy)'}`,
    `copy bandwidth (read + write, all threads): ${r.copyGBps.toFixed(1)} GB/s`,
    r.webgpuNote,
    '',
    formatTable(
      [
        'matmul (M×K×N)',
        'reference GF/s',
        'wasm 1t GF/s',
        `wasm ${r.threads}t GF/s`,
        'OpenBLAS GF/s',
        'wasm/OpenBLAS',
        'webgpu GF/s',
        '1t GF/cpu-s wasm',
        'OpenBLAS',
        'ratio',
        'weights GB/s',
        'of copy bw',
      ],
      r.matmul.map((m) => [
        m.name,
        m.referenceGflops,
        m.wasm1Gflops,
        m.wasmGflops,
        m.openblasGflops,
        m.wasmVsOpenblas,
        m.webgpuGflops,
        m.wasm1CpuGflops,
        m.openblas1CpuGflops,
        m.wasmVsOpenblas1tCpu,
        m.weightGBps,
        m.decodeVsCopyBandwidth,
      ]),
    ),
  ];
  out.push('', nativeTables(r.native));
  if (r.engine) {
    const c = r.engine.config;
    out.push(
      '',
      `engine — generated llama (hidden ${c.hidden}, ${c.layers} layers, ${c.heads}/${c.kvHeads} heads × ${c.headDim}, mlp ${c.intermediate}); prefill ${r.engine.promptTokens} tokens, decode ${r.engine.decodeTokens} steps`,
      formatTable(
        ['backend', 'threads', 'weights', 'prefill tok/s', 'decode tok/s', 'decode weights GB/s'],
        r.engine.rows.map((e) => [
          e.backend,
          e.threads,
          e.weights,
          e.prefillTokensPerS,
          e.decodeTokensPerS,
          e.decodeGBps,
        ]),
      ),
    );
  }
  const s = r.summary;
  out.push(
    '',
    `prefill matmul wasm/OpenBLAS (min over f32 prefill shapes): ${s.minPrefillWasmVsOpenblas?.toFixed(2) ?? '—'} (target ≥ 0.40)`,
    `single thread per CPU-second (independent of machine load), wasm/OpenBLAS min over f32 prefill shapes: ${s.minPrefillWasmVsOpenblas1tCpu?.toFixed(2) ?? '—'}`,
    `engine prefill wasm/reference: ${s.enginePrefillWasmVsReference?.toFixed(1) ?? '—'}× (target ≥ 20×); decode: ${s.engineDecodeWasmVsReference?.toFixed(1) ?? '—'}×`,
  );
  return out.join('\n');
}
