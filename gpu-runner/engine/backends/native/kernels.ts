// Typed wrapper over the native addon (src/addon.cc). Every call takes the memory the operands live in
// (a Uint8Array over it; for the wasm backend `new Uint8Array(memory.buffer)` of its shared memory) and
// byte offsets, like WasmRuntime's methods, so the backend can call either on the same tensors.
import type { BlockDType } from '../dtypes.ts';
import type { AttentionArgs, KVUnpackArgs } from '../wasm/runtime.ts';
import { HALF_IEEE, KV_DTYPE_CODE } from '../wasm/runtime.ts';

/** The addon's exports (positional arguments, byte offsets; see src/addon.cc). */
export interface NativeAddon {
  info(): { level: IsaLevel; levels: IsaLevel[]; threads: number; spinUs: number };
  configure(level: string, threads: number, spinUs: number): void;
  adviseHugePages(mem: Uint8Array, reservedBytes: number): boolean;
  peak(kind: 'fma' | 'dot' | 'clock', iterations: number): number;
  matmulF32(
    mem: Uint8Array,
    x: number,
    w: number,
    bias: number,
    y: number,
    M: number,
    N: number,
    K: number,
    f16: number,
    halfScale: number,
  ): void;
  packedBytes(type: number, N: number, K: number): number;
  packWeights(
    type: number,
    src: Uint8Array,
    srcOff: number,
    N: number,
    K: number,
    dst: Uint8Array,
    dstOff: number,
  ): void;
  matmulQ(
    mem: Uint8Array,
    x: number,
    w: number,
    bias: number,
    y: number,
    M: number,
    N: number,
    K: number,
    type: number,
  ): void;
  gatherQ(
    mem: Uint8Array,
    w: number,
    ids: number,
    y: number,
    M: number,
    N: number,
    K: number,
    type: number,
  ): void;
  attention(
    mem: Uint8Array,
    q: number,
    k: number,
    v: number,
    out: number,
    lse: number,
    nq: number,
    heads: number,
    kvHeads: number,
    headDim: number,
    scale: number,
    qStride: number,
    kvHeadStride: number,
    kvPosStride: number,
    qpos0: number,
    nk: number,
    kvType: number,
    ks?: number,
    vs?: number,
    scaleHeadStride?: number,
  ): void;
  attentionSpans(
    mem: Uint8Array,
    q: number,
    out: number,
    heads: number,
    headDim: number,
    scale: number,
    qStride: number,
    spans: Float64Array,
    kvType: number,
  ): void;
  kvWrite(
    mem: Uint8Array,
    k: number,
    v: number,
    width: number,
    headDim: number,
    spans: Float64Array,
    kvType: number,
  ): void;
  kvConvert(
    mem: Uint8Array,
    src: number,
    dst: number,
    heads: number,
    rows: number,
    width: number,
    srcHeadStride: number,
    srcRowStride: number,
    dstHeadStride: number,
    dstRowStride: number,
    toHalf: number,
  ): void;
  kvConvertQ8(
    mem: Uint8Array,
    codes: number,
    scales: number,
    f: number,
    heads: number,
    rows: number,
    width: number,
    codeHeadStride: number,
    codeRowStride: number,
    scaleHeadStride: number,
    fHeadStride: number,
    fRowStride: number,
    toQ8: number,
  ): void;
  swiglu(mem: Uint8Array, gate: number, up: number, y: number, size: number): void;
  argmax(mem: Uint8Array, x: number, out: number, M: number, N: number): void;
  rmsnorm(mem: Uint8Array, x: number, w: number, y: number, M: number, D: number, eps: number): void;
  rope(
    mem: Uint8Array,
    x: number,
    y: number,
    positions: number,
    invFreq: number,
    M: number,
    width: number,
    headDim: number,
  ): void;
  add(mem: Uint8Array, a: number, b: number, y: number, n: number): void;
  squeezedSteps(mem: Uint8Array, steps: Float64Array, kept: Int32Array): void;
  kvUnpack(mem: Uint8Array, ...args: number[]): void;
}

/**
 * Squeezed attention's fused step for one row and kv head (src/squeezed.h; the reference is
 * attention/squeezed/key-sketch.ts): byte offsets; gvals / always 0 = none; take −1 = threshold tau.
 * Packed for the addon in the order of STEP_FIELDS.
 */
export interface NativeSqueezedStep {
  q: number;
  out: number;
  G: number;
  headDim: number;
  scale: number;
  /**
   * int8 keys + 128 (u8), quad-major: [d/4][n padded to 16][4], the channels in the order perm ([d]
   * int32: position p holds channel perm[p]); cw: [d] f32 each position's channel weight (mean |k8|);
   * ks: [n padded] the keys' scales
   */
  k8: number;
  perm: number;
  cw: number;
  ks: number;
  grp: number;
  n: number;
  /** [groups][d] the groups' mean values, IEEE halves (0: drop-only) */
  gvals: number;
  groups: number;
  K: number;
  V: number;
  always: number;
  alwaysPairs: number;
  end: number;
  take: number;
  tau: number;
  /** [groups] int32 runs of slots */
  gStart: number;
  gLen: number;
  /** the groups' mean keys and spreads, int8 in blocks of 16 ([groups/16][d/4][16][4]) with Σ and scales (0 = none: no prefilter) */
  gm8: number;
  gmsum: number;
  gms: number;
  gs8: number;
  gssum: number;
  gss: number;
  /** the prefilter's keys scored per key (≥ take); −1 = every key */
  want: number;
  /** the cache's K / V rows: 0 f32, 1 IEEE halves (an f16 cache), 2 int8 codes (an int8 cache) */
  kvType: number;
  /** kvType 2: the kv head's K and V row scales ([pos] f32, value = scale · code); 0 otherwise */
  Ks: number;
  Vs: number;
  /** quads of channels each key is scored over (the ones of largest Σ |q8|·cw; ≥ d/4 = every channel) */
  quads: number;
  /**
   * [groups] mean keys in k8's layout ([d/4][groups padded to 16][4], + 128) and [groups padded] their
   * scales: the left-out share's logit of each group over every channel (needed with gvals)
   */
  gq: number;
  gqs: number;
}

/** A step's fields in the order the addon reads them (src/squeezed-driver.cc `Field`). */
const STEP_FIELDS = [
  'q',
  'out',
  'G',
  'headDim',
  'scale',
  'k8',
  'perm',
  'cw',
  'ks',
  'grp',
  'n',
  'gvals',
  'groups',
  'K',
  'V',
  'always',
  'alwaysPairs',
  'end',
  'take',
  'tau',
  'gStart',
  'gLen',
  'gm8',
  'gmsum',
  'gms',
  'gs8',
  'gssum',
  'gss',
  'want',
  'kvType',
  'Ks',
  'Vs',
  'quads',
  'gq',
  'gqs',
] as const satisfies readonly (keyof NativeSqueezedStep)[];

/**
 * Records (spans, squeezed steps) as the addon reads them: [record][field] f64, the fields in the order
 * given (the order the addon's record loop takes them in, src/addon.cc, src/squeezed-driver.cc).
 */
function packSpans<S>(spans: readonly S[], fields: readonly (keyof S & string)[]): Float64Array {
  const f = new Float64Array(spans.length * fields.length);
  let o = 0;
  for (const s of spans) for (const k of fields) f[o++] = s[k] as number;
  return f;
}

export type IsaLevel = 'avx512vnni' | 'avx512' | 'avx2';
/** The block dtypes of backends/dtypes.ts. */
export type QuantType = BlockDType;
const QTYPE: Record<QuantType, number> = { q8_0: 2, q4_0: 3 };

export interface NativeMatmulArgs {
  x: number;
  w: number;
  /** 0 = none */
  bias: number;
  y: number;
  M: number;
  N: number;
  K: number;
}

/** One span of a batched attention call: its rows of q/out, its K/V (one layer of a cache) and key count. */
export interface NativeAttentionSpan {
  /** byte offsets of the layer's K and V, head 0 position 0 */
  k: number;
  v: number;
  kvHeads: number;
  /** elements between kv heads and between positions */
  kvHeadStride: number;
  kvPosStride: number;
  /** first row of q / out */
  row: number;
  nq: number;
  /** query i sits at qpos0 + i (causal); −1 = no mask */
  qpos0: number;
  nk: number;
  /** int8 caches: byte offsets of the layer's key and value scales (head 0 position 0), floats between heads */
  ks?: number;
  vs?: number;
  scaleHeadStride?: number;
}

/** Several spans in one attention call (a decode batch): q / out [rows][qStride], one span per sequence. */
export interface NativeAttentionSpansArgs {
  q: number;
  out: number;
  heads: number;
  headDim: number;
  scale: number;
  /** floats between q / out rows; default heads · headDim */
  qStride?: number;
  spans: readonly NativeAttentionSpan[];
  /** K/V are IEEE halves (an f16 KV cache); default f32 */
  half?: boolean;
  /** K/V are int8 codes with per-row scales (an int8 KV cache; every span gives ks, vs, scaleHeadStride) */
  q8?: boolean;
}

/** One span of a KV write: rows [row, row + count) of k / v go to positions 0.. at dk / dv. */
export interface NativeKVWriteSpan {
  /** byte offsets of the span's first position in kv head 0 of the layer */
  dk: number;
  dv: number;
  /** elements between kv heads of the cache */
  kvHeadStride: number;
  row: number;
  count: number;
  /** int8 caches: byte offsets of the span's first position's scales in kv head 0, floats between heads */
  dks?: number;
  dvs?: number;
  scaleHeadStride?: number;
}

/** An int8 KV cache's rows ↔ f32 (kvConvertQ8): byte offsets; code strides in bytes, scale and f strides in floats. */
export interface NativeKVConvertQ8 {
  codes: number;
  scales: number;
  f: number;
  heads: number;
  rows: number;
  width: number;
  codeHeadStride: number;
  codeRowStride: number;
  scaleHeadStride: number;
  fHeadStride: number;
  fRowStride: number;
  /** f rows quantized into the cache; else the cache's rows dequantized into f */
  toQ8: boolean;
}

/** Where an int8 cache's scales live (kvUnpack, attention): a byte offset and the floats between kv heads. */
export interface NativeQ8Scales {
  ks: number;
  vs: number;
  scaleHeadStride: number;
}

/** The addon's kvType argument: 0 f32, 1 IEEE halves, 2 int8 codes with per-row scales. */
function kvType(half: boolean | undefined, q8: boolean | undefined): number {
  return q8 ? 2 : half ? 1 : 0;
}

/**
 * A strided f16 ↔ f32 copy of heads × rows × width elements (an f16 KV cache's loads and reads): byte
 * offsets, strides in elements of each side; toHalf: src f32 → dst halves, else src halves → dst f32.
 */
export interface NativeKVConvert {
  src: number;
  dst: number;
  heads: number;
  rows: number;
  width: number;
  srcHeadStride: number;
  srcRowStride: number;
  dstHeadStride: number;
  dstRowStride: number;
  toHalf: boolean;
}

/** Dense attention arguments, as the wasm runtime's (modes 1–3, gathered and sparse keys, are wasm-only),
 * plus whether K/V are IEEE halves. */
export type NativeAttentionArgs = Omit<
  AttentionArgs,
  'mode' | 'work' | 'idx' | 'offs' | 'bq' | 'cols' | 'colOffs'
> & { half?: boolean; q8?: NativeQ8Scales };

export class NativeKernels {
  private readonly addon: NativeAddon;
  constructor(addon: NativeAddon) {
    this.addon = addon;
  }

  /** ISA level in use, the levels this CPU supports (best first), pool threads and spin time. */
  info(): ReturnType<NativeAddon['info']> {
    return this.addon.info();
  }
  /** Lowers (or restores) the ISA level, resizes the pool (threads including the caller). */
  configure(o: { level?: IsaLevel; threads?: number; spinUs?: number }): void {
    const cur = this.addon.info();
    this.addon.configure(o.level ?? '', o.threads ?? cur.threads, o.spinUs ?? cur.spinUs);
  }
  /**
   * Asks the OS to back a memory's pages with transparent huge pages, including pages it grows into
   * later: reservedBytes = what its mapping reserves from its start (a wasm memory: its declared maximum).
   * Whether the advice was taken (false where the OS has none); the kernel's THP mode decides the rest.
   */
  adviseHugePages(mem: Uint8Array, reservedBytes: number): boolean {
    return this.addon.adviseHugePages(mem, reservedBytes);
  }
  /** Per CPU-second of one thread: f32 flops (fma), int8 ops (dot) at the current level, or clock GHz·1e9. */
  peak(kind: 'fma' | 'dot' | 'clock', iterations: number): number {
    return this.addon.peak(kind, iterations);
  }

  /** y[M][N] = x[M][K] · w[N][K]ᵀ (+ bias); f16 weights with the wasm backend's exponent multiplier. */
  matmul(mem: Uint8Array, a: NativeMatmulArgs & { f16: boolean; f16Scale?: number }): void {
    // wasm's multiplier rebiases half bits (2^112 = IEEE); here halves are widened exactly, so only the
    // remaining factor (2^-10 for the backend's pre-scaled halves) is applied
    const halfScale = (a.f16Scale ?? HALF_IEEE) / HALF_IEEE;
    this.addon.matmulF32(mem, a.x, a.w, a.bias, a.y, a.M, a.N, a.K, a.f16 ? 1 : 0, halfScale);
  }

  /** Bytes of N rows × K of `type` once packed for matmulQ (rows padded to a multiple of 16). */
  packedBytes(type: QuantType, N: number, K: number): number {
    return this.addon.packedBytes(QTYPE[type], N, K);
  }
  /** ggml blocks (rows [N][K/32]) at src+srcOff → the packed layout at dst+dstOff (packedBytes). */
  packWeights(
    type: QuantType,
    src: Uint8Array,
    srcOff: number,
    N: number,
    K: number,
    dst: Uint8Array,
    dstOff: number,
  ): void {
    this.addon.packWeights(QTYPE[type], src, srcOff, N, K, dst, dstOff);
  }
  /** y = x · wᵀ (+ bias) with w packed (packWeights); x is quantized to Q8_0 blocks on the fly. K % 32 = 0. */
  matmulQ(mem: Uint8Array, type: QuantType, a: NativeMatmulArgs): void {
    this.addon.matmulQ(mem, a.x, a.w, a.bias, a.y, a.M, a.N, a.K, QTYPE[type]);
  }

  /** y [M][K] f32 = rows ids (i32 [M], each in [0, N)) of packed weights w (N rows × K), dequantized. */
  gatherQ(
    mem: Uint8Array,
    type: QuantType,
    a: { w: number; ids: number; y: number; M: number; N: number; K: number },
  ): void {
    this.addon.gatherQ(mem, a.w, a.ids, a.y, a.M, a.N, a.K, QTYPE[type]);
  }

  /**
   * Squeezed attention's fused steps (NativeSqueezedStep: one per row and kv head of a span's layer) in one
   * call, run over the pool; kept[i] ← the keys step i kept. Steps' out rows must not overlap.
   */
  squeezedSteps(mem: Uint8Array, steps: readonly NativeSqueezedStep[], kept: Int32Array): void {
    this.addon.squeezedSteps(mem, packSpans(steps, STEP_FIELDS), kept);
  }

  /** Dense (optionally causal) GQA attention; q/out [nq][heads][headDim], k/v [kv_head][pos][headDim]. */
  attention(mem: Uint8Array, a: NativeAttentionArgs): void {
    this.addon.attention(
      mem,
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
      kvType(a.half, a.q8 !== undefined),
      a.q8?.ks ?? 0,
      a.q8?.vs ?? 0,
      a.q8?.scaleHeadStride ?? 0,
    );
  }

  /**
   * Dense GQA attention of several spans in one call (their units split over the pool together): span i
   * reads q / out rows [row, row + nq) and its own K/V and key count. No lse.
   */
  attentionSpans(mem: Uint8Array, a: NativeAttentionSpansArgs): void {
    const fields: (keyof NativeAttentionSpan)[] = [
      'k',
      'v',
      'kvHeads',
      'kvHeadStride',
      'kvPosStride',
      'row',
      'nq',
      'qpos0',
      'nk',
    ];
    if (a.q8) fields.push('ks', 'vs', 'scaleHeadStride');
    const f = packSpans(a.spans, fields);
    const qStride = a.qStride ?? a.heads * a.headDim;
    this.addon.attentionSpans(mem, a.q, a.out, a.heads, a.headDim, a.scale, qStride, f, kvType(a.half, a.q8));
  }

  /**
   * k, v [*][width = kvHeads · headDim] f32 rows → cache positions, per span (one call for a step's spans);
   * half: the caches hold IEEE halves (rounded to nearest even); q8: int8 rows (every span gives dks, dvs,
   * scaleHeadStride).
   */
  kvWrite(
    mem: Uint8Array,
    a: {
      k: number;
      v: number;
      width: number;
      headDim: number;
      spans: readonly NativeKVWriteSpan[];
      half?: boolean;
      q8?: boolean;
    },
  ): void {
    const fields: (keyof NativeKVWriteSpan)[] = ['dk', 'dv', 'kvHeadStride', 'row', 'count'];
    if (a.q8) fields.push('dks', 'dvs', 'scaleHeadStride');
    const f = packSpans(a.spans, fields);
    this.addon.kvWrite(mem, a.k, a.v, a.width, a.headDim, f, kvType(a.half, a.q8));
  }

  /** An int8 cache's rows quantized from f32 or dequantized into f32 (NativeKVConvertQ8). */
  kvConvertQ8(mem: Uint8Array, a: NativeKVConvertQ8): void {
    this.addon.kvConvertQ8(
      mem,
      a.codes,
      a.scales,
      a.f,
      a.heads,
      a.rows,
      a.width,
      a.codeHeadStride,
      a.codeRowStride,
      a.scaleHeadStride,
      a.fHeadStride,
      a.fRowStride,
      a.toQ8 ? 1 : 0,
    );
  }

  /** A strided f16 ↔ f32 copy (NativeKVConvert). */
  kvConvert(mem: Uint8Array, a: NativeKVConvert): void {
    this.addon.kvConvert(
      mem,
      a.src,
      a.dst,
      a.heads,
      a.rows,
      a.width,
      a.srcHeadStride,
      a.srcRowStride,
      a.dstHeadStride,
      a.dstRowStride,
      a.toHalf ? 1 : 0,
    );
  }

  /**
   * One chunk KV artifact section → rows of a cache layer (the wasm kernel's arguments, KVUnpackArgs):
   * widened or dequantized, Hadamard-rotated keys rotated back, keys re-rotated by Δ, in one pass per row.
   * half: the cache holds IEEE halves; q8: int8 rows (a.dst the codes) with their scales at `scales` (the
   * section's first position in kv head 0) and `scaleHeadStride` floats between kv heads.
   */
  kvUnpack(
    mem: Uint8Array,
    a: KVUnpackArgs,
    half = false,
    q8: { scales: number; scaleHeadStride: number } | null = null,
  ): void {
    this.addon.kvUnpack(
      mem,
      a.src,
      a.dst,
      KV_DTYPE_CODE[a.dtype],
      a.part === 'k' ? 1 : 0,
      a.kvHeads,
      a.n,
      a.headDim,
      a.keyGroup,
      a.valueGroup,
      a.rowBytes,
      a.steps,
      a.mins,
      a.headStride,
      a.delta,
      a.invFreq,
      a.hadamard ? 1 : 0,
      kvType(half, q8 !== null),
      q8?.scales ?? 0,
      q8?.scaleHeadStride ?? 0,
    );
  }

  /** y [size] = gate · sigmoid(gate) · up */
  swiglu(mem: Uint8Array, a: { gate: number; up: number; y: number; size: number }): void {
    this.addon.swiglu(mem, a.gate, a.up, a.y, a.size);
  }

  /** out i32 [M] = the first index of each row's largest value, x f32 [M][N] (N < 2^24; NaN never wins) */
  argmax(mem: Uint8Array, a: { x: number; out: number; M: number; N: number }): void {
    this.addon.argmax(mem, a.x, a.out, a.M, a.N);
  }

  /** y [M][D] = x / sqrt(mean(x²) + eps) · w per row */
  rmsnorm(mem: Uint8Array, a: { x: number; w: number; y: number; M: number; D: number; eps: number }): void {
    this.addon.rmsnorm(mem, a.x, a.w, a.y, a.M, a.D, a.eps);
  }

  /**
   * Rotate-half RoPE of x [M][width] (heads of headDim) into y, row m at position positions[m] (i32 [M]),
   * angles f32(position · invFreq[i]) (invFreq [headDim/2]).
   */
  rope(
    mem: Uint8Array,
    a: {
      x: number;
      y: number;
      positions: number;
      invFreq: number;
      M: number;
      width: number;
      headDim: number;
    },
  ): void {
    this.addon.rope(mem, a.x, a.y, a.positions, a.invFreq, a.M, a.width, a.headDim);
  }

  /** y [n] = a + b */
  add(mem: Uint8Array, a: { a: number; b: number; y: number; n: number }): void {
    this.addon.add(mem, a.a, a.b, a.y, a.n);
  }
}
