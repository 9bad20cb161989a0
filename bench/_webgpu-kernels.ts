// `kvrag bench kernels --backend webgpu [--shape smollm2,qwen2.5-1.5b] [--rows 512,2048] [--rounds R]
// [--json]`: the webgpu matmul kernels alone, on the weight matrices of real models' shapes
// (bench/_shapes.ts) with f16 weights — what a GPU runner serves. For every projection (q, k/v, o,
// gate/up, down, lm_head) at each prefill row count and at decode (one row): GFLOP/s of the tiled kernel
// (subgroup matrices turned off) and, where the adapter offers it and its start-up check passed, of the
// subgroup-matrix kernel; decode rows also as GB/s of weights read. Then, per shape, what those rates
// predict for a forward pass (matmuls only: attention and the small ops excluded). Nothing runs on the
// CPU here; the CPU columns are plain `bench kernels`.
import type { WebGPUBackend } from '../gpu-runner/engine/backends/webgpu/index.ts';
import { f32ToF16 } from '../gpu-runner/engine/half.ts';
import { parseOptions, UsageError, numberOption } from '../cli/args.ts';
import { type Cell, emit, formatTable, rng } from './_report.ts';
import { type ModelShape, modelShape, projections } from './_shapes.ts';
import { describe, label, openBenchWebGPU, type WebGPULabel, webgpuMatmulGflops } from './_webgpu.ts';

interface Row {
  shape: string;
  projection: string;
  M: number;
  K: number;
  N: number;
  tiledGflops: number;
  /** null where the subgroup-matrix kernel is not in use (see `subgroupMatrix` for why) */
  subgroupMatrixGflops: number | null;
  /** decode (M = 1): weight bytes read per second by the faster kernel */
  weightGBps: number | null;
}

interface Forecast {
  shape: string;
  /** tokens/s if a forward pass took only its matmuls at the measured rates (best kernel per matmul) */
  prefillTokensPerS: Record<string, number>;
  decodeTokensPerS: number;
}

/** Random f16 weights [N, K] (values in [-1, 1), rounded to halves). */
function halfWeights(n: number, seed: number): Uint16Array {
  const r = rng(seed);
  const out = new Uint16Array(n);
  const block = new Float32Array(Math.min(n, 1 << 20));
  for (let i = 0; i < n; i += block.length) {
    const len = Math.min(block.length, n - i);
    for (let j = 0; j < len; j++) block[j] = r() * 2 - 1;
    out.set(f32ToF16(block.subarray(0, len)), i);
  }
  return out;
}

export async function runWebGPUKernels(args: string[]): Promise<number> {
  const { values } = parseOptions(args, {
    backend: { type: 'string' },
    json: { type: 'boolean', default: false },
    shape: { type: 'string', default: 'smollm2,qwen2.5-1.5b' },
    rows: { type: 'string', default: '512,2048' },
    rounds: { type: 'string' },
  });
  const shapes = values.shape!.split(',').map((n) => ({ name: n, ...modelShape('shape', n) }));
  const rows = values.rows!.split(',').map((r) => {
    const n = Number(r);
    if (!Number.isInteger(n) || n < 2) throw new UsageError(`--rows: "${r}" is not an integer ≥ 2`);
    return n;
  });
  const rounds = numberOption('rounds', values.rounds, 2);
  const tiled = await openBenchWebGPU({ subgroupMatrix: false });
  if (!tiled.backend) throw new UsageError(`--backend webgpu: ${tiled.note}`);
  let sgm: WebGPUBackend | null = null;
  try {
    const opened = await openBenchWebGPU();
    sgm = opened.backend;
    const device = label(sgm ?? tiled.backend);
    const useSgm = sgm?.kernels.subgroupMatrix === 'on' ? sgm : null;
    const out: Row[] = [];
    const forecasts: Forecast[] = [];
    for (const s of shapes) {
      const timeOf: Record<string, number> = {}; // seconds per matmul call, keyed `${projection}@${M}`
      for (const [i, p] of projections(s).entries()) {
        const w16 = halfWeights(p.N * p.K, 100 + i);
        for (const M of [...rows, 1]) {
          const x = Float32Array.from({ length: M * p.K }, rng(M + i));
          const flops = 2 * M * p.K * p.N;
          const t = await webgpuMatmulGflops(tiled.backend, M, p.K, p.N, x, new Float32Array(0), w16, rounds);
          // the subgroup-matrix kernel serves prefill only (≥ 16 rows); decode stays on the gemv
          const g =
            useSgm && M > 1
              ? await webgpuMatmulGflops(useSgm, M, p.K, p.N, x, new Float32Array(0), w16, rounds)
              : null;
          const best = Math.max(t, g ?? 0);
          timeOf[`${p.name}@${M}`] = flops / best / 1e9;
          out.push({
            shape: s.name,
            projection: p.name,
            M,
            K: p.K,
            N: p.N,
            tiledGflops: t,
            subgroupMatrixGflops: g,
            weightGBps: M === 1 ? (p.N * p.K * 2 * best) / flops : null,
          });
        }
      }
      forecasts.push(forecast(s, rows, timeOf));
    }
    const result = {
      backend: 'webgpu',
      device,
      weights: 'f16',
      subgroupMatrix: sgm?.kernels.subgroupMatrix ?? 'unavailable',
      rounds,
      matmul: out,
      forecasts,
    };
    emit(values.json!, result, () => table(result));
    return 0;
  } finally {
    tiled.backend.dispose();
    sgm?.dispose();
  }
}

/** Seconds per token of the matmuls of one forward pass → tokens/s, at each prefill size and decode. */
function forecast(
  s: ModelShape & { name: string },
  rows: number[],
  timeOf: Record<string, number>,
): Forecast {
  const perToken = (M: number) => {
    let sec = 0;
    for (const p of projections(s)) {
      // k and v are two matmuls, gate and up too; the lm_head runs on the last row only (one row)
      if (p.perLayer)
        sec += (s.layers * (p.name === 'k/v' || p.name === 'gate/up' ? 2 : 1) * timeOf[`${p.name}@${M}`]) / M;
      else sec += timeOf[`${p.name}@1`] / M;
    }
    return sec;
  };
  return {
    shape: s.name,
    prefillTokensPerS: Object.fromEntries(rows.map((M) => [M, 1 / perToken(M)])),
    decodeTokensPerS: 1 / perToken(1),
  };
}

function table(r: {
  device: WebGPULabel;
  subgroupMatrix: string;
  rounds: number;
  matmul: Row[];
  forecasts: Forecast[];
}): string {
  const cells = r.matmul.map((m): Cell[] => [
    `${m.shape} ${m.projection} ${m.M}×${m.K}×${m.N}`,
    m.tiledGflops,
    m.subgroupMatrixGflops,
    m.subgroupMatrixGflops === null ? null : `${(m.subgroupMatrixGflops / m.tiledGflops).toFixed(2)}×`,
    m.weightGBps,
  ]);
  return [
    `webgpu kernels — ${describe(r.device)}; f16 weights, f32 accumulation; best of ${r.rounds} rounds of 3 calls`,
    `subgroup-matrix kernel: ${r.subgroupMatrix}`,
    formatTable(
      ['matmul (shape, M×K×N)', 'tiled GF/s', 'subgroup-matrix GF/s', 'sgm/tiled', 'decode GB/s'],
      cells,
    ),
    '',
    'forecast from these rates (matmuls only; the lm_head once per sequence):',
    formatTable(
      [
        'shape',
        ...Object.keys(r.forecasts[0]?.prefillTokensPerS ?? {}).map((M) => `prefill ${M} tok/s`),
        'decode tok/s',
      ],
      r.forecasts.map((f) => [f.shape, ...Object.values(f.prefillTokensPerS), f.decodeTokensPerS]),
    ),
  ].join('\n');
}
