// A layer-by-layer view of the decoder for the reuse modes that recompute only some tokens (CacheBlend,
// EPIC). Model.forward runs every layer over every new token; here the caller drives the layers and may
// change which rows continue between them. Each row is one token at a given cache position; its Q/K/V
// are computed fresh, its K/V overwrite the cache at that position, and it attends causally over the
// cache (cached and fresh entries alike). The math is Model#layer's, op for op, so recomputing every row
// of every layer reproduces the full prefill.
import type { Backend, SeqSpan, Tensor } from '../backends/types.ts';
import type { SequenceKV } from '../kv-cache.ts';
import type { Model } from '../model.ts';
import { ropeInvFreq } from '../rope.ts';

/** Rows of one step: ascending cache positions of one sequence, grouped into contiguous spans. */
export interface RowSet {
  positions: number[];
  spans: SeqSpan[];
  posT: Tensor; // i32 [rows]: RoPE positions (= cache slots)
}

export class LayerStepper {
  readonly model: Model;
  readonly backend: Backend;
  readonly #invFreq: Tensor; // [headDim/2]

  constructor(model: Model) {
    this.model = model;
    this.backend = model.backend;
    const d = model.cfg.headDim;
    this.#invFreq = this.backend.upload({
      dtype: 'f32',
      shape: [d / 2],
      data: ropeInvFreq(model.cfg.rope, d),
    });
  }

  /** Row set for `positions` (strictly ascending) of `kv`: contiguous runs become one span each. */
  rows(kv: SequenceKV, positions: readonly number[]): RowSet {
    const spans: SeqSpan[] = [];
    positions.forEach((p, i) => {
      if (i > 0 && p <= positions[i - 1]) throw new Error('rows: positions must ascend');
      const last = spans[spans.length - 1];
      if (last && last.pos + last.count === p) last.count++;
      else spans.push({ cache: kv.cache, row: i, count: 1, pos: p });
    });
    const posT = this.backend.upload({
      dtype: 'i32',
      shape: [positions.length],
      data: Int32Array.from(positions),
    });
    return { positions: [...positions], spans, posT };
  }

  /** A subset of `rows` (indices into it, ascending) with the matching rows of `x` gathered. */
  select(kv: SequenceKV, rows: RowSet, x: Tensor, keep: readonly number[]): { rows: RowSet; x: Tensor } {
    const b = this.backend;
    const idx = b.upload({ dtype: 'i32', shape: [keep.length], data: Int32Array.from(keep) });
    const picked = b.gather(x, idx);
    b.free(idx);
    return {
      rows: this.rows(
        kv,
        keep.map((i) => rows.positions[i]),
      ),
      x: picked,
    };
  }

  freeRows(rows: RowSet): void {
    this.backend.free(rows.posT);
  }

  /** x: [rows, hidden] — the token embeddings. */
  embed(tokens: readonly number[]): Tensor {
    const b = this.backend;
    const ids = b.upload({ dtype: 'i32', shape: [tokens.length], data: Int32Array.from(tokens) });
    const x = b.gather(this.model.weights.embed, ids);
    b.free(ids);
    return x;
  }

  /**
   * Decoder layer `l` over `rows`; consumes x, returns the new residual stream. `onKeys` sees the fresh
   * post-RoPE keys [rows, kvHeads·headDim] before they overwrite the cache (CacheBlend scores them).
   */
  async layer(l: number, x: Tensor, rows: RowSet, onKeys?: (k: Tensor) => Promise<void>): Promise<Tensor> {
    const b = this.backend;
    const cfg = this.model.cfg;
    const w = this.model.weights.layers[l];
    const h = b.rmsnorm(x, w.inputNorm, cfg.rmsNormEps);
    const q0 = b.matmul(h, w.q, w.qBias); // [rows, heads·headDim]
    const k0 = b.matmul(h, w.k, w.kBias); // [rows, kvHeads·headDim]
    const v = b.matmul(h, w.v, w.vBias);
    b.free(h);
    const q = b.rope(q0, rows.posT, this.#invFreq, cfg.headDim);
    const k = b.rope(k0, rows.posT, this.#invFreq, cfg.headDim);
    b.free(q0);
    b.free(k0);
    if (onKeys) await onKeys(k);
    b.kvWrite(l, k, v, rows.spans);
    b.free(k);
    b.free(v);
    const a = b.attention(q, l, rows.spans, cfg.heads, 1 / Math.sqrt(cfg.headDim));
    b.free(q);
    const o = b.matmul(a, w.o, w.oBias);
    b.free(a);
    const x1 = b.add(x, o);
    b.free(x);
    b.free(o);
    const h2 = b.rmsnorm(x1, w.postNorm, cfg.rmsNormEps);
    const g = b.matmul(h2, w.gate, w.gateBias);
    const u = b.matmul(h2, w.up, w.upBias);
    b.free(h2);
    const s = b.swiglu(g, u);
    b.free(g);
    b.free(u);
    const d = b.matmul(s, w.down, w.downBias);
    b.free(s);
    const x2 = b.add(x1, d);
    b.free(x1);
    b.free(d);
    return x2;
  }

  dispose(): void {
    this.backend.free(this.#invFreq);
  }
}
