// Squeezed attention's step fused into one native kernel run per (row, kv head) on the `native` backend
// (backends/native/src/squeezed.cc), a span's runs of one layer in one call over the addon's pool: int8
// scoring of every fixed-context key, the budget's best 16-slot blocks, exact attention over them + the
// always-attended ranges + the live tokens, and the left-out keys' share merged by log-sum-exp — what
// key-sketch.ts computes on the host, without reading q back, uploading ranges or merging on the host.
// The sketches live in the wasm memory the cache lives in.
import { CheckedBackend } from '../../backends/checked.ts';
import { NativeWasmKernels } from '../../backends/native/backend.ts';
import type { NativeSqueezedStep } from '../../backends/native/kernels.ts';
import type { Backend, SeqSpan, Tensor } from '../../backends/types.ts';
import { allocTensor, type WasmKVCache, type WasmTensor } from '../../backends/wasm/tensors.ts';
import { f32ToF16 } from '../../half.ts';
import { candidateKeys, type KeySketch } from './key-sketch.ts';

/** Byte offsets of one sketch's arrays in the wasm memory (0 = none): those fields of the kernel's arguments. */
type Placed = Pick<
  NativeSqueezedStep,
  | 'k8'
  | 'perm'
  | 'cw'
  | 'ks'
  | 'grp'
  | 'gvals'
  | 'always'
  | 'gStart'
  | 'gLen'
  | 'gm8'
  | 'gmsum'
  | 'gms'
  | 'gs8'
  | 'gssum'
  | 'gss'
  | 'gq'
  | 'gqs'
>;

/** What a step keeps of sketch ti: take keys (budget) or those above τ (take −1). */
export type KeepRule = { take: number; tau: number };

export class NativeSketches {
  private readonly b: CheckedBackend<NativeWasmKernels>;
  private readonly sketches: readonly KeySketch[];
  private readonly placed: Placed[];

  /** The fused path for these sketches, or null when the backend is not `native`. */
  static of(b: Backend, sketches: readonly KeySketch[]): NativeSketches | null {
    if (!(b instanceof CheckedBackend) || !(b.kernels instanceof NativeWasmKernels)) return null;
    return new NativeSketches(b as CheckedBackend<NativeWasmKernels>, sketches);
  }

  private constructor(b: CheckedBackend<NativeWasmKernels>, sketches: readonly KeySketch[]) {
    this.b = b;
    this.sketches = sketches;
    const mem = b.kernels.rt.mem;
    const put = (x: ArrayBufferView | null) => {
      if (!x || x.byteLength === 0) return 0;
      const off = mem.alloc(x.byteLength);
      mem.u8.set(new Uint8Array(x.buffer, x.byteOffset, x.byteLength), off);
      return off;
    };
    this.placed = sketches.map((s) => {
      const { k8, ks } = quadMajor(s.q8, s.kScale, s.n, s.d, s.perm);
      const gq = quadMajor(s.gMean8, s.gMeanScale, s.groups, s.d, s.perm);
      const gm = interleave(s.gMean8, s.gMeanScale, s.groups, s.d);
      const gs = interleave(s.gSpread8, s.gSpreadScale, s.groups, s.d);
      return {
        k8: put(k8),
        perm: put(s.perm),
        cw: put(s.chanWeight),
        ks: put(ks),
        grp: put(s.group),
        gvals: put(s.values && f32ToF16(s.values)),
        always: put(s.always),
        gStart: put(s.gStart),
        gLen: put(s.gLen),
        gm8: put(gm.k8),
        gmsum: put(gm.ksum),
        gms: put(gm.ks),
        gs8: put(gs.k8),
        gssum: put(gs.ksum),
        gss: put(gs.ks),
        gq: put(gq.k8),
        gqs: put(gq.ks),
      };
    });
  }

  /**
   * Attention of span's rows (each row its own selection) → [rows, heads·d] (rows outside the span zero),
   * or written into `into`'s rows of the span (then returned).
   * rule(ti, live): what sketch ti keeps with `live` live tokens attended; kept(ti, keys): per row.
   * prefilter: the share of selectable keys scored per key (key-sketch.ts; 0 = every key). quads: the
   * quads of channels a key is scored over (key-sketch.ts scoreQuads).
   */
  attend(
    q: Tensor,
    layer: number,
    span: SeqSpan,
    heads: number,
    scale: number,
    rule: (ti: number, live: number) => KeepRule,
    kept: (ti: number, keys: number) => void,
    approximate: boolean,
    prefilter: number,
    quads: number,
    into?: Tensor,
  ): Tensor {
    const { b } = this;
    const mem = b.kernels.rt.mem;
    const [rows, width] = q.shape;
    const qh = b.handleOf(q) as WasmTensor;
    const cache = b.cacheOf(span.cache) as WasmKVCache;
    const la = layerRows(cache, layer);
    const eb = cache.elementBytes;
    const kvHeads = cache.spec.kvHeads;
    const d = width / heads;
    const group = heads / kvHeads;
    const n = this.sketches[0].n;
    const y = into ? (b.handleOf(into) as WasmTensor) : allocTensor(mem, rows * width * 4);
    if (!into) mem.u8.fill(0, y.off, y.off + rows * width * 4);
    // one step per (row, kv head), all in one call over the addon's pool; job j = r · kvHeads + g
    const steps: NativeSqueezedStep[] = [];
    for (let r = 0; r < span.count; r++) {
      const end = span.pos + r + 1;
      for (let g = 0; g < kvHeads; g++) {
        const ti = layer * kvHeads + g;
        const s = this.sketches[ti];
        const p = this.placed[ti];
        const at = ((span.row + r) * width + g * group * d) * 4;
        const { take, tau } = rule(ti, end - n);
        steps.push({
          ...p,
          q: qh.off + at,
          out: y.off + at,
          G: group,
          headDim: d,
          scale,
          quads,
          n,
          gvals: approximate ? p.gvals : 0,
          groups: s.groups,
          K: la.k + g * la.kvHeadStride * eb,
          V: la.v + g * la.kvHeadStride * eb,
          alwaysPairs: s.always.length / 2,
          end,
          take,
          tau,
          want: candidateKeys(s, take, prefilter),
          kvType: la.kvType,
          Ks: la.ks && la.ks + g * la.scaleHeadStride * 4,
          Vs: la.vs && la.vs + g * la.scaleHeadStride * 4,
        });
      }
    }
    const keys = new Int32Array(steps.length);
    b.kernels.native.squeezedSteps(mem.u8, steps, keys);
    for (let j = 0; j < keys.length; j++) kept(layer * kvHeads + (j % kvHeads), keys[j]);
    return into ?? b.adopt(y, [rows, width]);
  }

  free(): void {
    const mem = this.b.kernels.rt.mem;
    for (const p of this.placed) for (const off of Object.values(p)) if (off) mem.release(off);
  }
}

/**
 * One layer of a cache as the fused step reads it: K / V byte offsets at kv head 0, the kv-head stride in
 * elements, the row type (0 f32, 1 f16, 2 int8) and, for int8 rows, their scales' offsets and stride (in
 * floats; 0 otherwise).
 */
function layerRows(
  cache: WasmKVCache,
  layer: number,
): {
  k: number;
  v: number;
  kvHeadStride: number;
  kvType: number;
  ks: number;
  vs: number;
  scaleHeadStride: number;
} {
  if (cache.dtype === 'int8') {
    const { k, v, kvHeadStride, ks, vs, scaleHeadStride } = cache.q8View(layer);
    return { k, v, kvHeadStride, kvType: 2, ks, vs, scaleHeadStride };
  }
  const { k, v, kvHeadStride, half } = cache.layerView(layer);
  return { k, v, kvHeadStride, kvType: half ? 1 : 0, ks: 0, vs: 0, scaleHeadStride: 0 };
}

/** Keys per block of the kernel's int8 layout (src/squeezed.h SQ_BLOCK). */
const BLOCK = 16;

/**
 * int8 rows [n][d] (a scale each) in the scoring layout: quad-major ([d/4][npad][4], n padded to 16 with
 * zero rows): quad t holds the channels at positions 4t … 4t + 3 of the sketch's order (perm) for every
 * row, biased by 128 (unsigned: the VNNI instruction's unsigned operand; the kernel subtracts 128·Σ q8 over
 * the scored channels), so a step's chosen quads are read as Q contiguous streams; and the scales, padded.
 * The keys (built once when the sketch is laid out: n·d + 4n bytes, as the int8 copy) and the groups' mean
 * keys (the left-out share's logit of each group, over every channel).
 */
function quadMajor(
  q8: Int8Array,
  scale: Float32Array,
  n: number,
  d: number,
  perm: Int32Array,
): { k8: Uint8Array; ks: Float32Array } {
  const npad = Math.ceil(n / BLOCK) * BLOCK;
  const k8 = new Uint8Array(npad * d).fill(128);
  const ks = new Float32Array(npad);
  ks.set(scale);
  for (let p = 0; p < d; p++) {
    const t = p >> 2;
    const i = p & 3;
    const e = perm[p];
    for (let j = 0; j < n; j++) k8[(t * npad + j) * 4 + i] = q8[j * d + e] + 128;
  }
  return { k8, ks };
}

/**
 * int8 rows [n][d] (a scale each) in blocks of 16 rows, 4 dims at a time ([n/16][d/4][16][4], n padded
 * with zero rows), the Σ of each row's int8 values and the scales, both padded: the prefilter's group
 * tables.
 */
function interleave(
  q8: Int8Array,
  scale: Float32Array,
  n: number,
  d: number,
): { k8: Int8Array; ksum: Int32Array; ks: Float32Array } {
  const npad = Math.ceil(n / BLOCK) * BLOCK;
  const k8 = new Int8Array(npad * d);
  const ksum = new Int32Array(npad);
  const ks = new Float32Array(npad);
  ks.set(scale);
  for (let j = 0; j < n; j++) {
    const b = Math.floor(j / BLOCK);
    const i = j % BLOCK;
    let sum = 0;
    for (let e = 0; e < d; e++) {
      const x = q8[j * d + e];
      sum += x;
      k8[((b * (d / 4) + (e >> 2)) * BLOCK + i) * 4 + (e & 3)] = x;
    }
    ksum[j] = sum;
  }
  return { k8, ksum, ks };
}
