// The decoder forward pass (Llama / Mistral / Qwen2): embeddings → per layer [RMSNorm → q/k/v
// (+bias) → RoPE → KV write → causal GQA attention → o_proj → residual → RMSNorm → SwiGLU MLP →
// residual] → final norm → lm_head. Written only against the Backend interface. Several sequences
// run in one step: their new tokens are concatenated into one [T, hidden] activation.
import type { SparseAttend } from './attention/sparse/prefill.ts';
import { attendWithFixedContexts, type FixedContext } from './attention/squeezed/fixed-context.ts';
import type { Backend, SeqSpan, Tensor } from './backends/types.ts';
import type { SequenceKV } from './kv-cache.ts';
import type { ModelConfig } from './model-config.ts';
import { ropeInvFreq } from './rope.ts';
import type { ModelWeights } from './weights.ts';

/** One sequence's part of a step: `tokens` go into cache slots kv.length, kv.length + 1, … */
export interface StepInput {
  kv: SequenceKV;
  tokens: readonly number[];
  /**
   * RoPE position = cache slot + ropeOffset (default 0). With an offset, a chunk can be computed alone
   * (attending only to its own slots) as if it sat at a later position of a longer prompt.
   */
  ropeOffset?: number;
}

/** Which rows of the final hidden states get logits. */
export type LogitRows = 'last' | 'all';

export class Model {
  readonly cfg: ModelConfig;
  readonly backend: Backend;
  readonly weights: ModelWeights;
  readonly #invFreq: Tensor; // [headDim/2]

  constructor(cfg: ModelConfig, weights: ModelWeights, backend: Backend) {
    this.cfg = cfg;
    this.weights = weights;
    this.backend = backend;
    this.#invFreq = backend.upload({
      dtype: 'f32',
      shape: [cfg.headDim / 2],
      data: ropeInvFreq(cfg.rope, cfg.headDim),
    });
  }

  /**
   * Runs one step and appends every input's K/V to its cache.
   * Returns logits: [inputs.length, vocab] for 'last' (each sequence's last new token, in input order),
   * or [T, vocab] for 'all' (every new token, sequences concatenated). The caller frees it.
   */
  forward(inputs: readonly StepInput[], rows: LogitRows = 'last'): Tensor {
    const b = this.backend;
    const cfg = this.cfg;
    const ids: number[] = [];
    const positions: number[] = [];
    const spans: SeqSpan[] = [];
    if (new Set(inputs.map((i) => i.kv)).size !== inputs.length)
      throw new Error('forward: a sequence appears twice');
    for (const { kv, tokens, ropeOffset = 0 } of inputs) {
      if (tokens.length === 0) throw new Error('forward: a sequence with no new tokens');
      kv.ensureRoom(tokens.length);
      spans.push({ cache: kv.cache, row: ids.length, count: tokens.length, pos: kv.length });
      tokens.forEach((t, i) => {
        ids.push(t);
        positions.push(kv.length + i + ropeOffset);
      });
    }
    for (const t of ids) {
      if (!Number.isInteger(t) || t < 0 || t >= cfg.vocabSize) throw new Error(`token id ${t} outside vocab`);
    }
    const idT = b.upload({ dtype: 'i32', shape: [ids.length], data: Int32Array.from(ids) });
    const posT = b.upload({ dtype: 'i32', shape: [positions.length], data: Int32Array.from(positions) });
    let x = b.gather(this.weights.embed, idT); // x: [T, hidden]
    // squeezed attention (DESIGN.md §4.2) for sequences with a fixed context, dense for the others
    const fixed = inputs.some((i) => i.kv.squeezed) ? inputs.map((i) => i.kv.squeezed) : null;
    // sparse prefill (DESIGN.md §4.3) for a sequence alone in its step, when its request asked for it
    const sparse = !fixed && inputs.length === 1 ? inputs[0].kv.sparse : null;
    for (let l = 0; l < cfg.layers; l++) x = this.#layer(l, x, posT, spans, fixed, sparse);
    b.free(idT);
    b.free(posT);

    if (rows === 'last') {
      const last = spans.map((s) => s.row + s.count - 1);
      const lastT = b.upload({ dtype: 'i32', shape: [last.length], data: Int32Array.from(last) });
      const picked = b.gather(x, lastT); // [inputs, hidden]
      b.free(lastT);
      b.free(x);
      x = picked;
    }
    const h = b.rmsnorm(x, this.weights.norm, cfg.rmsNormEps);
    b.free(x);
    const logits = b.matmul(h, this.weights.lmHead); // [rows, vocab]
    b.free(h);
    for (const { kv, tokens } of inputs) kv.length += tokens.length;
    return logits;
  }

  /** One decoder layer; consumes x and returns the new residual stream. */
  #layer(
    l: number,
    x: Tensor,
    posT: Tensor,
    spans: SeqSpan[],
    fixed: (FixedContext | null)[] | null,
    sparse: SparseAttend | null = null,
  ): Tensor {
    const b = this.backend;
    const cfg = this.cfg;
    const w = this.weights.layers[l];
    const h = b.rmsnorm(x, w.inputNorm, cfg.rmsNormEps);
    const q0 = b.matmul(h, w.q, w.qBias); // [T, heads·headDim]
    const k0 = b.matmul(h, w.k, w.kBias); // [T, kvHeads·headDim]
    const v = b.matmul(h, w.v, w.vBias); // [T, kvHeads·headDim]
    b.free(h);
    const q = b.rope(q0, posT, this.#invFreq, cfg.headDim);
    const k = b.rope(k0, posT, this.#invFreq, cfg.headDim);
    b.free(q0);
    b.free(k0);
    b.kvWrite(l, k, v, spans);
    b.free(k);
    b.free(v);
    const scale = 1 / Math.sqrt(cfg.headDim);
    const a = fixed
      ? attendWithFixedContexts(b, q, l, spans, fixed, cfg.heads, scale)
      : (sparse?.attend(b, l, q, spans, cfg.heads, scale) ?? b.attention(q, l, spans, cfg.heads, scale));
    b.free(q);
    const o = b.matmul(a, w.o, w.oBias); // [T, hidden]
    b.free(a);
    const x1 = b.add(x, o);
    b.free(x);
    b.free(o);
    const h2 = b.rmsnorm(x1, w.postNorm, cfg.rmsNormEps);
    const g = b.matmul(h2, w.gate, w.gateBias); // [T, intermediate]
    const u = b.matmul(h2, w.up, w.upBias);
    b.free(h2);
    const s = b.swiglu(g, u);
    b.free(g);
    b.free(u);
    const d = b.matmul(s, w.down, w.downBias); // [T, hidden]
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
