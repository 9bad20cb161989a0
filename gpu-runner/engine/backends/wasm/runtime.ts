// The wasm compute runtime: kernel module (built from source on first use) + shared memory + thread
// pool, with one typed method per kernel taking byte offsets into the memory. The Backend
// (backend.ts) and the kernel tests/benchmarks sit on top of it.
import { availableParallelism } from 'node:os';
import { ensureKernels, type KernelVariant } from './build.ts';
import { createSharedMemory, DeviceMemory } from './memory.ts';
import { ThreadPool } from './pool.ts';

/**
 * Multiply-adds below which a matmul runs inline on the calling thread (≈ 20–40 µs on one core): a
 * thread that claims a part and is then descheduled stalls the whole op, which costs more than small
 * ops gain from a second thread on a busy machine.
 */
const MATMUL_INLINE_BELOW = 1 << 20;

/** Per-thread scratch: f16 weight panels (64 KiB), attention state (< 6 KiB), RoPE tables. */
const SCRATCH_BYTES = 128 * 1024;

/** A module with one `() -> ()` function whose body is `body` (no locals). */
function probe(body: number[]): Uint8Array<ArrayBuffer> {
  const fn = [0, ...body, 0x0b];
  const code = [1, fn.length, ...fn];
  return Uint8Array.from([
    ...[0, 0x61, 0x73, 0x6d, 1, 0, 0, 0],
    ...[1, 4, 1, 0x60, 0, 0], // type section: () -> ()
    ...[3, 2, 1, 0], // function section
    ...[10, code.length, ...code],
  ]);
}
const V128_ZERO = [0x41, 0, 0xfd, 0x11]; // i32.const 0; i32x4.splat
// i32x4.splat, drop
const SIMD_PROBE = probe([...V128_ZERO, 0x1a]);
// f32x4.relaxed_madd (0xfd 0x105), drop
const RELAXED_PROBE = probe([...V128_ZERO, ...V128_ZERO, ...V128_ZERO, 0xfd, 0x85, 0x02, 0x1a]);

export function simdSupported(): boolean {
  return typeof WebAssembly === 'object' && WebAssembly.validate(SIMD_PROBE);
}
export function relaxedSimdSupported(): boolean {
  return simdSupported() && WebAssembly.validate(RELAXED_PROBE);
}
/** Threads need SharedArrayBuffer-backed memory and worker_threads (always there on Node). */
export function wasmBackendAvailable(): boolean {
  return simdSupported() && typeof SharedArrayBuffer === 'function';
}

export interface RuntimeOptions {
  /** Threads including the calling thread; default availableParallelism(). */
  threads?: number;
  /** Force a kernel variant (default: `fma` where relaxed SIMD validates, else `simd`). */
  variant?: KernelVariant;
  /** see PoolOptions.spinMs */
  spinMs?: number;
  /** Split every op into parts, however small (tests use it to exercise the parallel paths). */
  splitAll?: boolean;
  /**
   * Multiplies every op's inline threshold (default 1): the native backend (../native/backend.ts) runs
   * the light ops on the calling thread up to 16× larger sizes, so a batched decode step does not wake
   * the wasm workers between its matmuls (on a busy machine a wake-up costs more than those ops).
   */
  inlineScale?: number;
}

export interface MatmulArgs {
  x: number;
  w: number;
  bias: number;
  y: number;
  M: number;
  N: number;
  K: number;
  f16: boolean;
  /** exponent multiplier of the f16 weights: HALF_IEEE (default) or HALF_PRESCALED (see tensors.ts) */
  f16Scale?: number;
}

/** f16 multipliers: IEEE halves as stored, or halves the backend stored pre-scaled by 2^10. */
export const HALF_IEEE = 2 ** 112;
export const HALF_PRESCALED = 2 ** 102;

export interface AttentionArgs {
  q: number;
  k: number;
  v: number;
  out: number;
  /** [nq][H] log-sum-exp per row and head; 0 = not written */
  lse?: number;
  nq: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  scale: number;
  /** floats between consecutive query (and output) rows; default heads·headDim */
  qStride?: number;
  /** floats between kv heads and between positions of k/v */
  kvHeadStride: number;
  kvPosStride: number;
  /** causal: query i sits at position qpos0 + i; -1 = no causal mask */
  qpos0: number;
  /** keys 0..nk-1 (dense and block-sparse) */
  nk: number;
  /** 1 = gathered: idx holds key positions per kv head, offs [kvHeads+1]; 2 = block-sparse: idx holds
   * (start, end) ranges, offs [heads·nQB+1] per (head, query block of bq rows); 3 = grouped ranges:
   * idx holds (start, end) ranges, offs [kvHeads+1] per kv head for its whole query group, causal */
  mode?: 0 | 1 | 2 | 3;
  /** modes 1 and 3: keys each row attends (for splitting the work over threads); default 64 */
  work?: number;
  idx?: number;
  offs?: number;
  bq?: number;
  /** mode 2 only: gathered column positions and their offsets [heads·nQB+1] per (head, query block) */
  cols?: number;
  colOffs?: number;
}

/** kvUnpack's dtype codes (the wasm and native kernels' `dtype` argument). */
export const KV_DTYPE_CODE = { f32: 0, f16: 1, int8: 2, int4: 3 } as const;

/** kvUnpack's arguments: byte offsets into the memory, sizes, the section's layout (kv-codec.ts). */
export interface KVUnpackArgs {
  src: number;
  dst: number;
  dtype: keyof typeof KV_DTYPE_CODE;
  part: 'k' | 'v';
  kvHeads: number;
  n: number;
  headDim: number;
  /** quantized sections: group sizes (1 otherwise), code row bytes, steps/minima offsets within src */
  keyGroup: number;
  valueGroup: number;
  rowBytes: number;
  steps: number;
  mins: number;
  headStride: number;
  /** keys: position delta and invFreq offset (0 = no rotation) */
  delta: number;
  invFreq: number;
  /** keys stored Hadamard-rotated (quant.keyTransform) */
  hadamard: boolean;
}

export class WasmRuntime {
  readonly mem: DeviceMemory;
  readonly pool: ThreadPool;
  readonly variant: KernelVariant;
  private readonly scratch: number;
  private readonly splitAll: boolean;
  private readonly inlineScale: number;

  private constructor(
    mem: DeviceMemory,
    pool: ThreadPool,
    variant: KernelVariant,
    splitAll: boolean,
    inlineScale: number,
  ) {
    this.mem = mem;
    this.pool = pool;
    this.variant = variant;
    this.splitAll = splitAll;
    this.inlineScale = inlineScale;
    this.scratch = mem.alloc(SCRATCH_BYTES * pool.threads);
  }

  static async create(opts: RuntimeOptions = {}): Promise<WasmRuntime> {
    if (!wasmBackendAvailable()) throw new Error('wasm backend: WebAssembly SIMD is not available');
    const variant = opts.variant ?? (relaxedSimdSupported() ? 'fma' : 'simd');
    const module = await WebAssembly.compile(await ensureKernels(variant));
    const memory = createSharedMemory();
    const pool = await ThreadPool.create(module, memory, {
      threads: opts.threads ?? availableParallelism(),
      spinMs: opts.spinMs,
    });
    return new WasmRuntime(
      new DeviceMemory(memory),
      pool,
      variant,
      opts.splitAll ?? false,
      opts.inlineScale ?? 1,
    );
  }

  get threads(): number {
    return this.pool.threads;
  }

  async close(): Promise<void> {
    await this.pool.close();
  }

  /**
   * Parts for an op of `work` (≈ multiply-adds or bytes) over `units` independent pieces: small ops run
   * inline on the calling thread (waking workers costs more than they save); large ones are split into
   * a few parts per thread so threads that start late or run slow are evened out.
   */
  parts(work: number, units: number, inlineBelow = 1 << 17): number {
    if (!this.splitAll && (this.threads === 1 || work < inlineBelow * this.inlineScale)) return 1;
    return Math.max(1, Math.min(units, this.threads * 4));
  }
  /** As parts(), for ops whose parts may be many small ones (decode matvec). */
  private partsUpTo(work: number, units: number, inlineBelow: number): number {
    if (!this.splitAll && (this.threads === 1 || work < inlineBelow * this.inlineScale)) return 1;
    return Math.max(1, units);
  }

  /** y[M][N] = x[M][K] · w[N][K]ᵀ (+ bias[N]); w f32 or f16. */
  matmul(a: MatmulArgs): void {
    const args = [
      a.x,
      a.w,
      a.bias,
      a.y,
      a.M,
      a.N,
      a.K,
      a.f16 ? 1 : 0,
      this.scratch,
      SCRATCH_BYTES,
      a.f16Scale ?? HALF_IEEE,
    ];
    // parts split the N columns (w rows) in multiples of 4. Prefill: one 64-column weight panel per part
    // (x is streamed once per panel either way), so a descheduled thread holds up at most one panel. Decode streams w once: parts of ~256 KiB of weights, so a thread
    // that is descheduled mid-op leaves little for the others to wait on.
    const decodeParts = Math.ceil((a.N * a.K * (a.f16 ? 2 : 4)) / (256 * 1024));
    const parts =
      a.M < 4
        ? this.partsUpTo(
            a.M * a.N * a.K,
            Math.min(Math.ceil(a.N / 16), Math.max(this.threads * 4, decodeParts)),
            MATMUL_INLINE_BELOW,
          )
        : this.partsUpTo(a.M * a.N * a.K, Math.ceil(a.N / 64), MATMUL_INLINE_BELOW);
    this.pool.run('matmul', args, [10], parts);
  }
  rmsnorm(x: number, w: number, y: number, M: number, D: number, eps: number): void {
    this.pool.run('rmsnorm', [x, w, y, M, D, eps], [5], this.parts(M * D, M));
  }
  /** Rotate-half RoPE of x [M][width] into y with positions (i32 [M]) and invFreq [headDim/2]. */
  rope(
    x: number,
    y: number,
    positions: number,
    invFreq: number,
    M: number,
    width: number,
    headDim: number,
  ): void {
    const args = [x, y, positions, invFreq, M, width, headDim, this.scratch, SCRATCH_BYTES];
    this.pool.run('rope', args, [], this.parts(M * (width + 16 * headDim), M, 1 << 15));
  }
  swiglu(gate: number, up: number, y: number, n: number): void {
    this.pool.run('swiglu', [gate, up, y, n], [], this.parts(n * 8, Math.ceil(n / 256)));
  }
  add(a: number, b: number, y: number, n: number): void {
    this.pool.run('add', [a, b, y, n], [], this.parts(n, Math.ceil(n / 1024), 1 << 18));
  }
  softmax(x: number, y: number, M: number, N: number): void {
    this.pool.run('softmax', [x, y, M, N], [], this.parts(M * N * 4, M));
  }
  /** out (i32 [M]) = first index of each row's maximum. */
  argmax(x: number, out: number, M: number, N: number): void {
    this.pool.run('argmax', [x, out, M, N], [], this.parts(M * N, M));
  }
  /** y[M][D] = table[ids[m]] (f32 or f16 table); ids must be in range. */
  gather(
    table: number,
    ids: number,
    y: number,
    M: number,
    D: number,
    f16: boolean,
    f16Scale = HALF_IEEE,
  ): void {
    this.pool.run('gather', [table, ids, y, M, D, f16 ? 1 : 0, f16Scale], [6], this.parts(M * D, M, 1 << 18));
  }
  attention(a: AttentionArgs): void {
    if (a.headDim % 4 !== 0 || a.headDim > 256)
      throw new Error(`wasm attention: headDim ${a.headDim} unsupported`);
    if (a.heads % a.kvHeads !== 0) throw new Error('wasm attention: heads must be a multiple of kvHeads');
    const args = [
      a.q,
      a.k,
      a.v,
      a.out,
      a.lse ?? 0,
      a.nq,
      a.heads,
      a.kvHeads,
      a.headDim,
      a.scale,
      a.qStride ?? a.heads * a.headDim,
      a.kvHeadStride,
      a.kvPosStride,
      a.qpos0,
      a.nk,
      this.scratch,
      SCRATCH_BYTES,
      a.mode ?? 0,
      a.idx ?? 0,
      a.offs ?? 0,
      a.bq ?? 64,
      a.cols ?? 0,
      a.colOffs ?? 0,
    ];
    // work units: groups of ≤ 4 query rows sharing a kv head (mode 0/1) or (head, query block) (mode 2)
    const units =
      a.mode === 2
        ? a.heads * Math.ceil(a.nq / (a.bq ?? 64))
        : a.kvHeads * Math.ceil((a.nq * a.heads) / a.kvHeads / 4);
    const work = a.nq * a.heads * a.headDim * (a.mode === 1 || a.mode === 3 ? (a.work ?? 64) : a.nk);
    this.pool.run('attention', args, [9], this.parts(work, units));
  }
  /** Log-sum-exp merge of two partial attentions over disjoint keys: o*: [rows][H][d], lse*: [rows][H]. */
  attentionMerge(
    o1: number,
    lse1: number,
    o2: number,
    lse2: number,
    out: number,
    outLse: number,
    rows: number,
    H: number,
    d: number,
  ): void {
    if (d % 4 !== 0) throw new Error(`wasm attentionMerge: headDim ${d} must be a multiple of 4`);
    this.pool.run(
      'attention_merge',
      [o1, lse1, o2, lse2, out, outLse, rows, H, d],
      [],
      this.parts(rows * H * d, rows * H),
    );
  }
  /** Copies `bytes` from src to dst (non-overlapping), split over the threads from 1 MiB. */
  copy(src: number, dst: number, bytes: number): void {
    this.pool.run('copy', [src, dst, bytes], [], this.parts(bytes, Math.ceil(bytes / 65536), 1 << 20));
  }
  /**
   * One chunk KV artifact section (kv-codec.ts layout, at `src`) → rows [kv_head][n][headDim] of a cache
   * layer at `dst` (kv heads `headStride` floats apart): f32 copied, f16 widened, int8/int4 dequantized;
   * keys re-rotated by Δ = delta when invFreq ≠ 0.
   */
  kvUnpack(a: KVUnpackArgs): void {
    const args = [
      a.src,
      a.dst,
      KV_DTYPE_CODE[a.dtype],
      a.part === 'k' ? 1 : 0,
      a.kvHeads,
      a.n,
      a.headDim,
      a.keyGroup,
      a.valueGroup,
      a.steps,
      a.mins,
      a.rowBytes,
      a.headStride,
      a.delta,
      a.invFreq,
      this.scratch,
      SCRATCH_BYTES,
      a.hadamard ? 1 : 0,
    ];
    const rows = a.kvHeads * a.n;
    this.pool.run('kv_unpack', args, [], this.parts(rows * a.headDim * 4, rows, 1 << 18));
  }
  /** assign (i32 [n]) = argmin_c ‖x − c‖²; dist ([n], optional) = that distance; cnorm [c] = ‖c‖². */
  kmeansAssign(
    points: number,
    centroids: number,
    cnorm: number,
    assign: number,
    dist: number,
    n: number,
    d: number,
    c: number,
  ): void {
    this.pool.run(
      'kmeans_assign',
      [points, centroids, cnorm, assign, dist, n, d, c],
      [],
      this.parts(n * c * d, n),
    );
  }
}
