// The estimates sparse prefill's patterns choose from, for one span of one layer (DESIGN.md §4.3):
// - lastProbs(L): exact softmax attention of the span's last L queries over every key they see
//   (Vertical-Slash's last-64-query estimate; FlexPrefill's last block), per query head;
// - pooledProbs(B): softmax of mean-pooled queries (blocks of B rows) against mean-pooled keys (blocks of
//   B positions), block-causal (block-sparse; FlexPrefill's query-aware estimate).
// Scores are one device matmul each: the queries of head h sit in kv head g's columns of a
// [heads·rows, kvHeads·headDim] matrix (zeros elsewhere) multiplied with the keys [nk, kvHeads·headDim]
// (kvGather layout). Results come back with Backend.readNow — decisions inside a step need the host copy
// synchronously, so backends without it (WebGPU) fall back to dense.
import type { Backend, SeqSpan, Tensor } from '../../backends/types.ts';
import type { SpanGeom } from './types.ts';

export class SpanEstimator {
  readonly geom: SpanGeom;
  /** keys visible to the span's last query: positions [0, nk) */
  readonly nk: number;
  readonly #b: Backend;
  readonly #q: Tensor;
  readonly #span: SeqSpan;
  readonly #layer: number;
  #keysT: Tensor | null = null; // [nk, kvHeads·headDim]
  #queries: Float32Array | null = null; // [count][heads·headDim]
  #keys: Float32Array | null = null; // [nk][kvHeads·headDim]
  readonly #last = new Map<number, Float32Array>();
  readonly #pooled = new Map<number, Float32Array>();

  constructor(b: Backend, q: Tensor, layer: number, span: SeqSpan, geom: SpanGeom) {
    if (!b.caps.readNow) throw new Error(`sparse prefill: backend ${b.name} has no synchronous readback`);
    this.#b = b;
    this.#q = q;
    this.#span = span;
    this.#layer = layer;
    this.geom = geom;
    this.nk = span.pos + span.count;
  }

  static supported(b: Backend): boolean {
    return b.caps.readNow && b.caps.sparseAttention;
  }

  #read(t: Tensor): Float32Array {
    return this.#b.readNow(t);
  }

  #keysTensor(): Tensor {
    if (!this.#keysT) {
      const { k, v } = this.#b.kvGather(this.#span.cache, this.#layer, 0, this.nk);
      this.#b.free(v);
      this.#keysT = k;
    }
    return this.#keysT;
  }

  /** The span's query rows on the host: [count][heads·headDim]. */
  queries(): Float32Array {
    if (!this.#queries) {
      const t = this.#b.sliceRows(this.#q, this.#span.row, this.#span.count);
      this.#queries = this.#read(t);
      this.#b.free(t);
    }
    return this.#queries;
  }

  /** Keys 0..nk-1 on the host: [nk][kvHeads·headDim]. */
  keys(): Float32Array {
    if (!this.#keys) this.#keys = this.#read(this.#keysTensor());
    return this.#keys;
  }

  /** scale·q·k for `rows` query rows per head ([rows][heads·headDim]) vs w ([n, kvHeads·headDim]) → [heads][rows][n]. */
  #scores(qRows: Float32Array, rows: number, w: Tensor): Float32Array {
    const { heads, kvHeads, headDim: d, scale } = this.geom;
    const group = heads / kvHeads;
    const width = kvHeads * d;
    const x = new Float32Array(heads * rows * width);
    for (let h = 0; h < heads; h++) {
      const g = Math.floor(h / group);
      for (let r = 0; r < rows; r++)
        for (let e = 0; e < d; e++)
          x[(h * rows + r) * width + g * d + e] = qRows[(r * heads + h) * d + e] * scale;
    }
    const xt = this.#b.upload({ dtype: 'f32', shape: [heads * rows, width], data: x });
    const s = this.#b.matmul(xt, w);
    this.#b.free(xt);
    const out = this.#read(s);
    this.#b.free(s);
    return out;
  }

  /**
   * Softmax attention of the span's last L queries (L ≤ count): [heads][L][nk]; query i of them sits at
   * position nk − L + i and sees keys 0..nk − L + i (later entries are 0).
   */
  lastProbs(L: number): Float32Array {
    const cached = this.#last.get(L);
    if (cached) return cached;
    const { heads, headDim: d, count } = this.geom;
    if (L > count) throw new Error(`lastProbs: ${L} queries of a ${count}-query span`);
    const q = this.queries().subarray((count - L) * heads * d, count * heads * d);
    const p = this.#scores(q, L, this.#keysTensor());
    const nk = this.nk;
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < L; i++) {
        const o = (h * L + i) * nk;
        const seen = nk - L + i + 1;
        let max = Number.NEGATIVE_INFINITY;
        for (let j = 0; j < seen; j++) if (p[o + j] > max) max = p[o + j];
        let z = 0;
        for (let j = 0; j < seen; j++) {
          const e = Math.exp(p[o + j] - max);
          p[o + j] = e;
          z += e;
        }
        for (let j = 0; j < seen; j++) p[o + j] /= z;
        p.fill(0, o + seen, o + nk);
      }
    this.#last.set(L, p);
    return p;
  }

  /** Query blocks of B rows and key blocks of B positions (key block j = positions [jB, (j+1)B)). */
  blockCounts(B: number): { nbq: number; nbk: number } {
    return { nbq: Math.ceil(this.geom.count / B), nbk: Math.ceil(this.nk / B) };
  }

  /**
   * Block-causal softmax of mean-pooled queries (blocks of B span rows) against mean-pooled keys (blocks
   * of B positions): [heads][nbq][nbk]; query block b sees key blocks up to the one holding its last row.
   */
  pooledProbs(B: number): Float32Array {
    const cached = this.#pooled.get(B);
    if (cached) return cached;
    const { heads, kvHeads, headDim: d, count, pos0 } = this.geom;
    const { nbq, nbk } = this.blockCounts(B);
    const q = this.queries();
    const width = heads * d;
    const qp = new Float32Array(nbq * width);
    for (let b = 0; b < nbq; b++) {
      const r1 = Math.min(count, (b + 1) * B);
      const o = b * width;
      for (let r = b * B; r < r1; r++) for (let e = 0; e < width; e++) qp[o + e] += q[r * width + e];
      for (let e = 0; e < width; e++) qp[o + e] /= r1 - b * B;
    }
    const k = this.keys();
    const kw = kvHeads * d;
    const kp = new Float32Array(nbk * kw);
    for (let j = 0; j < nbk; j++) {
      const p1 = Math.min(this.nk, (j + 1) * B);
      const o = j * kw;
      for (let p = j * B; p < p1; p++) for (let e = 0; e < kw; e++) kp[o + e] += k[p * kw + e];
      for (let e = 0; e < kw; e++) kp[o + e] /= p1 - j * B;
    }
    const kt = this.#b.upload({ dtype: 'f32', shape: [nbk, kw], data: kp });
    const s = this.#scores(qp, nbq, kt);
    this.#b.free(kt);
    for (let h = 0; h < heads; h++)
      for (let b = 0; b < nbq; b++) {
        const o = (h * nbq + b) * nbk;
        const last = pos0 + Math.min(count, (b + 1) * B) - 1;
        const seen = Math.floor(last / B) + 1;
        let max = Number.NEGATIVE_INFINITY;
        for (let j = 0; j < seen; j++) if (s[o + j] > max) max = s[o + j];
        let z = 0;
        for (let j = 0; j < seen; j++) {
          const e = Math.exp(s[o + j] - max);
          s[o + j] = e;
          z += e;
        }
        for (let j = 0; j < seen; j++) s[o + j] /= z;
        s.fill(0, o + seen, o + nbk);
      }
    this.#pooled.set(B, s);
    return s;
  }

  dispose(): void {
    if (this.#keysT) this.#b.free(this.#keysT);
    this.#keysT = null;
  }
}
