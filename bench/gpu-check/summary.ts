// The GPU check report's summary: the few numbers the issue asks about, read from the steps' results —
// parity counts, the adapter, whether the subgroup-matrix kernel is on and what it gains over the tiled
// kernel, engine tok/s, kvrag ÷ llama.cpp at every prefill size and at decode with the targets (≥ 0.5×
// at 2K prefill and at decode), and TTFT full vs independent.
import type { StepRecord } from './run.ts';

/** The targets on an H100: WebGPU ≥ 0.5× llama.cpp CUDA in 2K prefill and in decode. */
const TARGET = { prefillTokens: 2048, ratio: 0.5 };

type Json = Record<string, unknown>;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];

function resultOf(records: StepRecord[], id: string): Json | null {
  const r = records.find((s) => s.id === id);
  return r?.status === 'passed' ? (r.result as Json) : null;
}

function subgroupMatrix(records: StepRecord[]) {
  const k = resultOf(records, 'kernels') as {
    subgroupMatrix: string;
    matmul: { M: number; tiledGflops: number; subgroupMatrixGflops: number | null }[];
  } | null;
  if (!k) return null;
  const gains = k.matmul
    .filter((m) => m.M > 1 && m.subgroupMatrixGflops !== null)
    .map((m) => m.subgroupMatrixGflops! / m.tiledGflops);
  return {
    state: k.subgroupMatrix,
    /** subgroup-matrix ÷ tiled GFLOP/s over the prefill matmuls (null where the kernel is not in use) */
    speedup: gains.length
      ? { min: Math.min(...gains), median: median(gains), max: Math.max(...gains) }
      : null,
  };
}

interface PeerSide {
  ttftMs: Record<string, number>;
  decodeTokensPerS: number;
}

function peers(records: StepRecord[]) {
  return records
    .filter((r) => r.id.startsWith('peer:') && r.status === 'passed')
    .map((r) => {
      const [, build, shape] = r.id.split(':');
      const res = r.result as {
        prefill: number[];
        formats: { kvrag: PeerSide; llamacpp: PeerSide; greedyAgree: number }[];
      };
      const f = res.formats[0];
      const prefill = Object.fromEntries(
        res.prefill.map((n) => [n, f.llamacpp.ttftMs[n] / f.kvrag.ttftMs[n]]), // tok/s ratio = inverse time ratio
      );
      const decode = f.kvrag.decodeTokensPerS / f.llamacpp.decodeTokensPerS;
      const at2k = prefill[TARGET.prefillTokens] as number | undefined;
      return {
        shape,
        build: build === 'none' ? 'cpu' : build,
        kvragOverLlamaCpp: { prefill, decode },
        greedyAgree: f.greedyAgree,
        targets:
          build === 'none'
            ? null
            : {
                prefill2K: at2k === undefined ? null : { ratio: at2k, met: at2k >= TARGET.ratio },
                decode: { ratio: decode, met: decode >= TARGET.ratio },
                /** the peer is the CUDA build; a Vulkan result is the nearest available */
                againstCuda: build === 'cuda',
              },
      };
    });
}

export function summarise(records: StepRecord[]) {
  const count = (s: StepRecord['status']) => records.filter((r) => r.status === s).length;
  const adapter = resultOf(records, 'adapter') as { backend: Json } | null;
  const parity =
    resultOf(records, 'parity') ?? (records.find((r) => r.id === 'parity')?.result as Json | undefined);
  const ttft = resultOf(records, 'ttft') as {
    rows: { context: number; mode: string; ttftMs: number; speedup: number }[];
  } | null;
  return {
    ok: records.every((r) => r.status === 'passed' || r.status === 'not-run'),
    counts: {
      passed: count('passed'),
      failed: count('failed'),
      timedOut: count('timed-out'),
      notRun: count('not-run'),
      skipped: count('skipped'),
    },
    adapter: adapter?.backend ?? null,
    parity: parity ? { passed: parity.passed, failed: parity.failed, total: parity.total } : null,
    subgroupMatrix: subgroupMatrix(records),
    engine: records
      .filter((r) => r.id.startsWith('engine:') && r.status === 'passed')
      .map((r) => {
        const m = (r.result as { results: Json[] }).results[0];
        return {
          shape: r.id.split(':')[1],
          prefillTokensPerS: m.prefillTokensPerS,
          decodeTokensPerS: m.decodeTokensPerS,
        };
      }),
    peers: peers(records),
    ttft: ttft
      ? ttft.rows.map((r) => ({
          context: r.context,
          mode: r.mode,
          ttftMs: r.ttftMs,
          fullOverMode: r.speedup,
        }))
      : null,
    notRun: records
      .filter((r) => r.status !== 'passed')
      .map((r) => ({ id: r.id, status: r.status, reason: r.reason })),
  };
}
