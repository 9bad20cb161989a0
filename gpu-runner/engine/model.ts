// The decoder forward pass (Llama / Mistral / Qwen2): embeddings → per layer [RMSNorm → q/k/v
// (+bias) → RoPE → KV write → causal GQA attention → o_proj → residual → RMSNorm → SwiGLU MLP →
// residual] → final norm → lm_head. Written only against the Backend interface. Several sequences
// run in one step: their new tokens are concatenated into one [T, hidden] activation. `layer` is the one
// decoder layer body: forward() runs it over a step's rows, and the reuse modes' selective recompute
// (reuse/layer-step.ts) drives it layer by layer over rows it picks.
import { attendLayer, type SeqAttention } from './attention/step-attention.ts';
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
  /** How this sequence's queries attend (step-attention.ts); absent = dense. */
  attention?: SeqAttention | null;
}

/** Which rows of the final hidden states get logits. */
export type LogitRows = 'last' | 'all';

/**
 * The rows one layer call computes: each row is one token at a cache position of some sequence;
 * spans group them (SeqSpan), posT holds their RoPE positions (i32 [rows]).
 */
export interface LayerRows {
  spans: readonly SeqSpan[];
  posT: Tensor;
  /** attention[i]: how spans[i] attends (missing = dense). */
  attention?: readonly (SeqAttention | null | undefined)[];
}

/**
 * Looks at a layer's fresh tensors before they are used; a hook that keeps one copies it (sliceRows,
 * kvGather are ordered with the layer's work) and reads the copy after the layer returns.
 */
export interface LayerHooks {
  /** post-RoPE queries [rows, heads·headDim] */
  queries?(q: Tensor): void;
  /** post-RoPE keys [rows, kvHeads·headDim], before they overwrite the cache */
  keys?(k: Tensor): void;
}

export class Model {
  readonly cfg: ModelConfig;
  readonly backend: Backend;
  readonly weights: ModelWeights;
  /** The model's RoPE inverse frequencies on the device: [headDim/2] (rope scaling applied). */
  readonly invFreq: Tensor;

  constructor(cfg: ModelConfig, weights: ModelWeights, backend: Backend) {
    this.cfg = cfg;
    this.weights = weights;
    this.backend = backend;
    this.invFreq = backend.upload({
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
    const run = this.startStep(inputs);
    try {
      for (let l = 0; l < this.cfg.layers; l++) run.x = this.layer(l, run.x, run.step);
    } finally {
      this.backend.free(run.step.posT);
    }
    return this.finishStep(inputs, run.x, run.step.spans, rows);
  }

  /**
   * forward(), but layer l starts only once `ready(l)` resolves: the cache entries it attends to may still
   * be arriving (layer-wise loading of reused KV, reuse/assemble.ts). A rejection ends the step.
   */
  async forwardWhenReady(
    inputs: readonly StepInput[],
    rows: LogitRows,
    ready: (layer: number) => Promise<void>,
  ): Promise<Tensor> {
    const run = this.startStep(inputs);
    try {
      for (let l = 0; l < this.cfg.layers; l++) {
        try {
          await ready(l);
        } catch (err) {
          this.backend.free(run.x); // layer() consumes x; here no layer has taken it
          throw err;
        }
        run.x = this.layer(l, run.x, run.step);
      }
    } finally {
      this.backend.free(run.step.posT);
    }
    return this.finishStep(inputs, run.x, run.step.spans, rows);
  }

  /** A step's embedded rows (x: [T, hidden]) and their spans and positions. */
  private startStep(inputs: readonly StepInput[]): { x: Tensor; step: LayerRows & { spans: SeqSpan[] } } {
    const b = this.backend;
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
    const x = this.embed(ids); // x: [T, hidden]
    const posT = b.upload({ dtype: 'i32', shape: [positions.length], data: Int32Array.from(positions) });
    return { x, step: { spans, posT, attention: inputs.map((i) => i.attention) } };
  }

  /** The final norm and lm_head over the rows asked for; the sequences' lengths move past their tokens. */
  private finishStep(
    inputs: readonly StepInput[],
    out: Tensor,
    spans: readonly SeqSpan[],
    rows: LogitRows,
  ): Tensor {
    const b = this.backend;
    let x = out;
    if (rows === 'last') {
      const last = spans.map((s) => s.row + s.count - 1);
      const lastT = b.upload({ dtype: 'i32', shape: [last.length], data: Int32Array.from(last) });
      const picked = b.gather(x, lastT); // [inputs, hidden]
      b.free(lastT);
      b.free(x);
      x = picked;
    }
    const h = b.rmsnorm(x, this.weights.norm, this.cfg.rmsNormEps);
    b.free(x);
    const logits = b.matmul(h, this.weights.lmHead); // [rows, vocab]
    b.free(h);
    for (const { kv, tokens } of inputs) kv.length += tokens.length;
    return logits;
  }

  /** Token embeddings: [tokens, hidden]; ids are checked against the vocabulary. */
  embed(tokens: readonly number[]): Tensor {
    const b = this.backend;
    for (const t of tokens) {
      if (!Number.isInteger(t) || t < 0 || t >= this.cfg.vocabSize)
        throw new Error(`token id ${t} outside vocab`);
    }
    const ids = b.upload({ dtype: 'i32', shape: [tokens.length], data: Int32Array.from(tokens) });
    const x = b.gather(this.weights.embed, ids);
    b.free(ids);
    return x;
  }

  /**
   * Decoder layer `l` over `rows`: consumes x ([rows, hidden]) and returns the new residual stream. The
   * rows' fresh K/V are written to their caches at their positions before attention, so each row attends
   * causally over its cache (cached and fresh entries alike).
   */
  layer(l: number, x: Tensor, rows: LayerRows, hooks: LayerHooks = {}): Tensor {
    const b = this.backend;
    const cfg = this.cfg;
    const w = this.weights.layers[l];
    const h = b.rmsnorm(x, w.inputNorm, cfg.rmsNormEps);
    const q0 = b.matmul(h, w.q, w.qBias); // [T, heads·headDim]
    const k0 = b.matmul(h, w.k, w.kBias); // [T, kvHeads·headDim]
    const v = b.matmul(h, w.v, w.vBias); // [T, kvHeads·headDim]
    b.free(h);
    const q = b.rope(q0, rows.posT, this.invFreq, cfg.headDim);
    const k = b.rope(k0, rows.posT, this.invFreq, cfg.headDim);
    b.free(q0);
    b.free(k0);
    hooks.queries?.(q);
    hooks.keys?.(k);
    b.kvWrite(l, k, v, rows.spans);
    b.free(k);
    b.free(v);
    const scale = 1 / Math.sqrt(cfg.headDim);
    const a = attendLayer(b, q, l, rows.spans, rows.attention ?? [], cfg.heads, scale);
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
    this.backend.free(this.invFreq);
  }
}
