// The wasm compute runtime: kernel module (built from source on first use) + shared memory + thread
// pool, with one typed method per kernel taking byte offsets into the memory. The Backend
// (backend.ts) and the kernel tests/benchmarks sit on top of it.
import { availableParallelism } from 'node:os';
import { ensureKernels, type KernelVariant } from './build.ts';
import { createSharedMemory, DeviceMemory } from './memory.ts';
import { ThreadPool } from './pool.ts';

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
  spin?: number;
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
}

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
   * (start, end) ranges, offs [heads·nQB+1] per (head, query block of bq rows) */
  mode?: 0 | 1 | 2;
  idx?: number;
  offs?: number;
  bq?: number;
}

export class WasmRuntime {
  readonly mem: DeviceMemory;
  readonly pool: ThreadPool;
  readonly variant: KernelVariant;
  private readonly scratch: number;

  private constructor(mem: DeviceMemory, pool: ThreadPool, variant: KernelVariant) {
    this.mem = mem;
    this.pool = pool;
    this.variant = variant;
    this.scratch = mem.alloc(SCRATCH_BYTES * pool.threads);
  }

  static async create(opts: RuntimeOptions = {}): Promise<WasmRuntime> {
    if (!wasmBackendAvailable()) throw new Error('wasm backend: WebAssembly SIMD is not available');
    const variant = opts.variant ?? (relaxedSimdSupported() ? 'fma' : 'simd');
    const module = await WebAssembly.compile(await ensureKernels(variant));
    const memory = createSharedMemory();
    const pool = await ThreadPool.create(module, memory, {
      threads: opts.threads ?? availableParallelism(),
      spin: opts.spin,
    });
    return new WasmRuntime(new DeviceMemory(memory), pool, variant);
  }

  get threads(): number {
    return this.pool.threads;
  }

  async close(): Promise<void> {
    await this.pool.close();
  }

  /** y[M][N] = x[M][K] · w[N][K]ᵀ (+ bias[N]); w f32 or f16. */
  matmul(a: MatmulArgs): void {
    this.pool.run('matmul', [
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
    ]);
  }
  rmsnorm(x: number, w: number, y: number, M: number, D: number, eps: number): void {
    this.pool.run('rmsnorm', [x, w, y, M, D, eps], [5], M > 1 ? this.threads : 1);
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
    this.pool.run(
      'rope',
      [x, y, positions, invFreq, M, width, headDim, this.scratch, SCRATCH_BYTES],
      [],
      M > 1 ? this.threads : 1,
    );
  }
  swiglu(gate: number, up: number, y: number, n: number): void {
    this.pool.run('swiglu', [gate, up, y, n], [], n >= 16384 ? this.threads : 1);
  }
  add(a: number, b: number, y: number, n: number): void {
    this.pool.run('add', [a, b, y, n], [], n >= 65536 ? this.threads : 1);
  }
  softmax(x: number, y: number, M: number, N: number): void {
    this.pool.run('softmax', [x, y, M, N], [], M > 1 ? this.threads : 1);
  }
  /** out (i32 [M]) = first index of each row's maximum. */
  argmax(x: number, out: number, M: number, N: number): void {
    this.pool.run('argmax', [x, out, M, N], [], M > 1 ? this.threads : 1);
  }
  /** y[M][D] = table[ids[m]] (f32 or f16 table); ids must be in range. */
  gather(table: number, ids: number, y: number, M: number, D: number, f16: boolean): void {
    this.pool.run('gather', [table, ids, y, M, D, f16 ? 1 : 0], [], M > 1 ? this.threads : 1);
  }
  attention(a: AttentionArgs): void {
    if (a.headDim % 4 !== 0 || a.headDim > 256)
      throw new Error(`wasm attention: headDim ${a.headDim} unsupported`);
    if (a.heads % a.kvHeads !== 0) throw new Error('wasm attention: heads must be a multiple of kvHeads');
    this.pool.run(
      'attention',
      [
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
      ],
      [9],
    );
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
    this.pool.run('attention_merge', [o1, lse1, o2, lse2, out, outLse, rows, H, d]);
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
    this.pool.run('kmeans_assign', [points, centroids, cnorm, assign, dist, n, d, c]);
  }
}
