// The native/int8 section of `bench kernels`: the machine's peak (clock from a dependent-add chain, f32
// FMA and int8 dot-product instruction throughput per core, copy bandwidth), then per kernel GFLOP/s (f32)
// or GOP/s (int8, 2 ops per multiply-add, so the two compare directly) for the native addon and the wasm
// kernels side by side, OpenBLAS sgemm as the f32 peer, on the SmolLM2-135M shapes issue 20 measures
// llama.cpp on; and what those rates predict for that model's forward pass. Native kernels run on the
// wasm runtime's own shared memory (offsets, no copies), as the backend will call them. Decode rows use
// 131072 weight rows so that no format's weights fit in the last-level cache.
import { loadNativeKernels, type NativeKernels } from '../gpu-runner/engine/backends/native/index.ts';
import { matmulQuantWasm, type WasmQuantType } from '../gpu-runner/engine/backends/wasm/quant-ops.ts';
import type { WasmRuntime } from '../gpu-runner/engine/backends/wasm/runtime.ts';
import { f32ToF16 } from '../gpu-runner/engine/half.ts';
import type { BlasPeer } from './_blas-peer.ts';
import { type Cell, formatTable, rng } from './_report.ts';
import { bestCpuGflops, bestTime, settle } from './_timing.ts';

// SmolLM2-135M: hidden 576, 30 layers, 9/3 heads × 64, MLP 1536, vocab 49152 (tied embeddings)
const SMOL = { hidden: 576, layers: 30, heads: 9, kvHeads: 3, headDim: 64, mlp: 1536, vocab: 49152 };
/** weights multiplied per token in the decoder layers (q, k, v, o, gate, up, down) */
const LAYER_PARAMS =
  SMOL.layers *
  (SMOL.hidden * SMOL.headDim * (2 * SMOL.heads + 2 * SMOL.kvHeads) + 3 * SMOL.hidden * SMOL.mlp);
const LM_HEAD = SMOL.vocab * SMOL.hidden;

type Kind = 'f32' | WasmQuantType;
interface Row {
  kernel: string;
  phase: 'prefill' | 'decode';
  kind: Kind | 'attention';
  /** best wall-clock rate on all threads, and per CPU-second on one thread (G op/s) */
  native: number | null;
  native1Cpu: number | null;
  wasm: number;
  wasm1Cpu: number;
  openblas: number | null;
  /** weight bytes per second (decode) */
  nativeGBps: number | null;
  wasmGBps: number | null;
}

export interface NativeSection {
  native: { level: string; levels: string[] } | { unavailable: string };
  peak: {
    clockGHz: number;
    fmaGflopsPerCore: number;
    int8GopsPerCore: number;
    copyGBps: number;
    threads: number;
  } | null;
  rows: Row[];
  /** from the wall-clock rates on all threads, and from one thread's per-CPU-second rates × threads (what
   * an unloaded machine approaches if the threads scale) */
  estimate: Array<{
    basis: 'wall' | 'cpu';
    weights: string;
    prefill512: number;
    prefill2048: number;
    decode: number;
  }> | null;
}

function ggmlBlocks(type: WasmQuantType, N: number, K: number, seed: number): Uint8Array {
  const bb = type === 'q8_0' ? 34 : 18;
  const r = rng(seed);
  const out = new Uint8Array((N * K * bb) / 32);
  for (let i = 0; i < out.length; i++) out[i] = Math.floor(r() * 256);
  const d = f32ToF16(Float32Array.of(0.01))[0];
  for (let o = 0; o < out.length; o += bb) {
    out[o] = d & 255;
    out[o + 1] = d >> 8;
  }
  return out;
}

interface Ctx {
  rtAll: WasmRuntime;
  rt1: WasmRuntime;
  blas: BlasPeer | null;
  threads: number;
  seconds: number;
  rounds: number;
  copyGBps: number;
}

/** allocations of the row being measured, released after it (decode weights are hundreds of MB) */
const live: Array<[WasmRuntime, number]> = [];
function alloc(rt: WasmRuntime, bytes: number): number {
  const p = rt.mem.alloc(bytes);
  live.push([rt, p]);
  return p;
}
function releaseAll(): void {
  for (const [rt, p] of live.splice(0)) rt.mem.release(p);
}

/** fills [n] f32 at a fresh allocation of rt with values in [-1, 1) */
function putRandom(rt: WasmRuntime, n: number, seed: number): number {
  const r = rng(seed);
  const p = alloc(rt, n * 4);
  const f = rt.mem.f32;
  for (let i = 0; i < n; i++) f[p / 4 + i] = r() * 2 - 1;
  return p;
}

function measure(
  ctx: Ctx,
  k: NativeKernels | null,
  ops: number,
  nat: ((rt: WasmRuntime) => () => void) | null,
  wasm: (rt: WasmRuntime) => () => void,
): Pick<Row, 'native' | 'native1Cpu' | 'wasm' | 'wasm1Cpu'> {
  const wAll = wasm(ctx.rtAll);
  const w1 = ctx.rt1 === ctx.rtAll ? wAll : wasm(ctx.rt1);
  const nAll = k && nat ? nat(ctx.rtAll) : null;
  let tN = Number.POSITIVE_INFINITY;
  let tW = Number.POSITIVE_INFINITY;
  let n1 = 0;
  let w1c = 0;
  for (let r = 0; r < ctx.rounds; r++) {
    tW = Math.min(tW, bestTime(wAll, ctx.seconds));
    settle();
    w1c = Math.max(w1c, bestCpuGflops(w1, ops, 3));
    if (k && nAll) {
      k.configure({ threads: ctx.threads });
      tN = Math.min(tN, bestTime(nAll, ctx.seconds));
      k.configure({ threads: 1 });
      settle();
      n1 = Math.max(n1, bestCpuGflops(nAll, ops, 3));
    }
  }
  k?.configure({ threads: ctx.threads });
  return {
    native: nAll ? ops / tN / 1e9 : null,
    native1Cpu: nAll ? n1 : null,
    wasm: ops / tW / 1e9,
    wasm1Cpu: w1c,
  };
}

export async function nativeSection(ctx: Ctx): Promise<NativeSection> {
  const load = await loadNativeKernels();
  const k = load.ok ? load.kernels : null;
  const { rtAll } = ctx;
  const view = () => new Uint8Array(rtAll.mem.memory.buffer);
  let peak: NativeSection['peak'] = null;
  if (k) {
    k.configure({ threads: ctx.threads });
    peak = {
      clockGHz: k.peak('clock', 2e9) / 1e9,
      fmaGflopsPerCore: k.peak('fma', 1e8) / 1e9,
      int8GopsPerCore: k.peak('dot', 1e8) / 1e9,
      copyGBps: ctx.copyGBps,
      threads: ctx.threads,
    };
  }
  const rows: Row[] = [];
  for (const [phase, M, K, N] of [
    ['prefill', 512, SMOL.hidden, SMOL.mlp],
    // a runner's admission step at concurrency 16: 16 questions of 16 tokens in one forward
    ['prefill', 256, SMOL.hidden, SMOL.mlp],
    // 131072 rows: every format's weights (Q4_0 42 MB) exceed the 32 MB L3, so decode streams from memory
    ['decode', 1, SMOL.hidden, 131072],
  ] as const) {
    const shape = `${M}×${K}×${N}`;
    const ops = 2 * M * N * K;
    for (const kind of ['f32', 'q8_0', 'q4_0'] as const) {
      // operands live in each runtime's memory; native reads the same bytes (packed copy for int8)
      const setup = (rt: WasmRuntime) => {
        const x = putRandom(rt, M * K, 1);
        const y = alloc(rt, M * N * 4);
        if (kind === 'f32') return { x, y, w: putRandom(rt, N * K, 2), packed: 0 };
        const blocks = ggmlBlocks(kind, N, K, 3);
        const w = alloc(rt, blocks.length);
        rt.mem.u8.set(blocks, w);
        const packed = k ? alloc(rt, k.packedBytes(kind, N, K)) : 0;
        if (k) k.packWeights(kind, rt.mem.u8, w, N, K, rt.mem.u8, packed);
        return { x, y, w, packed };
      };
      const wasm = (rt: WasmRuntime) => {
        const o = setup(rt);
        return kind === 'f32'
          ? () => rt.matmul({ x: o.x, w: o.w, bias: 0, y: o.y, M, N, K, f16: false })
          : () => matmulQuantWasm(rt, kind, { x: o.x, w: o.w, bias: 0, y: o.y, M, N, K });
      };
      const nat = (rt: WasmRuntime) => {
        const o = setup(rt);
        const kk = k!;
        return kind === 'f32'
          ? () => kk.matmul(view(), { x: o.x, w: o.w, bias: 0, y: o.y, M, N, K, f16: false })
          : () => kk.matmulQ(view(), kind, { x: o.x, w: o.packed, bias: 0, y: o.y, M, N, K });
      };
      const m = measure(ctx, k, ops, nat, wasm);
      releaseAll();
      const blas = kind === 'f32' && ctx.blas ? (await ctx.blas.gflops(M, K, N, ctx.seconds)).wall : null;
      const bytes = (N * K * (kind === 'f32' ? 32 * 4 : kind === 'q8_0' ? 34 : 18)) / 32;
      rows.push({
        kernel: `${kind} ${phase === 'prefill' ? 'GEMM' : 'GEMV'} ${shape}`,
        phase,
        kind,
        ...m,
        openblas: blas,
        nativeGBps: phase === 'decode' && m.native ? (m.native / ops) * bytes : null,
        wasmGBps: phase === 'decode' ? (m.wasm / ops) * bytes : null,
      });
    }
  }
  // attention: causal prefill of 2048 tokens, and one decode step over 8192 cached keys (GQA 9/3 × 64)
  for (const [phase, nq, nk] of [
    ['prefill', 2048, 2048],
    ['decode', 1, 8192],
  ] as const) {
    const { heads, kvHeads, headDim } = SMOL;
    const pairs = phase === 'prefill' ? (nq * (nq + 1)) / 2 : nk;
    const ops = 4 * pairs * heads * headDim;
    const setup = (rt: WasmRuntime) => ({
      q: putRandom(rt, nq * heads * headDim, 4),
      k: putRandom(rt, kvHeads * nk * headDim, 5),
      v: putRandom(rt, kvHeads * nk * headDim, 6),
      out: alloc(rt, nq * heads * headDim * 4),
    });
    const args = (o: ReturnType<typeof setup>) => ({
      ...o,
      nq,
      heads,
      kvHeads,
      headDim,
      scale: 1 / Math.sqrt(headDim),
      kvHeadStride: nk * headDim,
      kvPosStride: headDim,
      qpos0: nk - nq,
      nk,
    });
    const m = measure(
      ctx,
      k,
      ops,
      (rt) => {
        const a = args(setup(rt));
        return () => k!.attention(view(), a);
      },
      (rt) => {
        const a = args(setup(rt));
        return () => rt.attention(a);
      },
    );
    rows.push({
      kernel: `attention ${phase} ${nq}×${nk}`,
      phase,
      kind: 'attention',
      ...m,
      openblas: null,
      nativeGBps: null,
      wasmGBps: null,
    });
  }
  return {
    native: load.ok
      ? { level: load.kernels.info().level, levels: load.kernels.info().levels }
      : { unavailable: load.reason },
    peak,
    rows,
    estimate: k ? [...estimate(rows, 'wall', ctx.threads), ...estimate(rows, 'cpu', ctx.threads)] : null,
  };
}

/**
 * SmolLM2-135M forward rates predicted from the native kernels alone (elementwise ops, dispatch and the
 * prefill's single lm_head row left out): prefill tok/s = 1 / (matmul ops / GEMM rate + attention ops at
 * the average context / attention rate); decode tok/s = weight bytes / GEMV weight bandwidth.
 */
function estimate(
  rows: Row[],
  basis: 'wall' | 'cpu',
  threads: number,
): NonNullable<NativeSection['estimate']> {
  const row = (kernel: string) => rows.find((r) => r.kernel.startsWith(kernel));
  const rate = (kernel: string) => {
    const r = row(kernel);
    return (basis === 'wall' ? r?.native : (r?.native1Cpu ?? Number.NaN) * threads) ?? Number.NaN;
  };
  // weight bytes per second at that rate (bytes per op as measured)
  const gbps = (kernel: string) => {
    const r = row(kernel);
    return r?.native && r.nativeGBps ? (r.nativeGBps / r.native) * rate(kernel) : Number.NaN;
  };
  const attn = rate('attention prefill');
  const attnOps = (n: number) => SMOL.layers * 4 * ((n + 1) / 2) * SMOL.heads * SMOL.headDim;
  return (['f32', 'q8_0', 'q4_0'] as const).map((kind) => {
    const gemm = rate(`${kind} GEMM`);
    const prefill = (n: number) => 1 / ((2 * LAYER_PARAMS) / (gemm * 1e9) + attnOps(n) / (attn * 1e9));
    const bytesPerWeight = kind === 'f32' ? 4 : kind === 'q8_0' ? 34 / 32 : 18 / 32;
    return {
      basis,
      weights: kind,
      prefill512: prefill(512),
      prefill2048: prefill(2048),
      decode: (gbps(`${kind} GEMV`) * 1e9) / ((LAYER_PARAMS + LM_HEAD) * bytesPerWeight),
    };
  });
}

export function nativeTables(s: NativeSection): string {
  const head =
    'unavailable' in s.native
      ? `native kernels: not available (${s.native.unavailable}); wasm rows only`
      : `native kernels: ${s.native.level} (this CPU: ${s.native.levels.join(', ')})`;
  const out = [head];
  if (s.peak) {
    const p = s.peak;
    out.push(
      `machine peak (${p.threads} threads): clock ${p.clockGHz.toFixed(2)} GHz; f32 FMA ${(p.fmaGflopsPerCore * p.threads).toFixed(0)} GFLOP/s (${p.fmaGflopsPerCore.toFixed(0)}/core, ${(p.fmaGflopsPerCore / p.clockGHz).toFixed(0)} flop/cycle); int8 dot ${(p.int8GopsPerCore * p.threads).toFixed(0)} GOP/s (${(p.int8GopsPerCore / p.clockGHz).toFixed(0)} op/cycle/core); copy ${p.copyGBps.toFixed(1)} GB/s`,
    );
  }
  const peakOf = (r: Row): number | null => {
    if (!s.peak || r.native1Cpu === null) return null;
    const per = r.kind === 'q8_0' || r.kind === 'q4_0' ? s.peak.int8GopsPerCore : s.peak.fmaGflopsPerCore;
    return r.native1Cpu / per;
  };
  const f32Wasm = (r: Row) => s.rows.find((x) => x.kind === 'f32' && x.phase === r.phase)?.wasm ?? null;
  const rows: Cell[][] = s.rows.map((r) => [
    r.kernel,
    r.native,
    r.native1Cpu,
    r.wasm,
    r.wasm1Cpu,
    r.openblas,
    r.native !== null && r.openblas ? r.native / r.openblas : null,
    r.kind === 'attention' ? null : r.native !== null ? r.native / f32Wasm(r)! : null,
    r.kind === 'attention' ? null : r.wasm / f32Wasm(r)!,
    peakOf(r),
    r.nativeGBps,
    r.wasmGBps,
  ]);
  out.push(
    '',
    'G op/s (f32: GFLOP/s; int8: GOP/s, 2 per multiply-add); 1t: per CPU-second of one thread (independent of load)',
    formatTable(
      [
        'kernel (M×K×N / nq×nk)',
        'native',
        'native 1t',
        'wasm',
        'wasm 1t',
        'OpenBLAS',
        'native/BLAS',
        'native/wasm f32',
        'wasm/wasm f32',
        'of peak',
        'native GB/s',
        'wasm GB/s',
      ],
      rows,
    ),
  );
  if (s.estimate) {
    out.push(
      '',
      'SmolLM2-135M forward predicted from the native kernel rates above (matmuls + attention only; wall: the rates on all threads as measured, cpu: one thread per CPU-second × threads); llama.cpp as measured in issue 20: F32 306 / 234 / 28.6, Q8_0 568 / 407 / 50.7',
      formatTable(
        ['rates', 'weights', 'prefill 512 tok/s', 'prefill 2048 tok/s', 'decode tok/s'],
        s.estimate.map((e) => [e.basis, e.weights, e.prefill512, e.prefill2048, e.decode]),
      ),
    );
  }
  return out.join('\n');
}
