// How a sequence's queries attend in a step, passed with its step input (model.ts StepInput.attention):
// absent = dense causal attention (Backend.attention); `sparse` = sparse prefill (DESIGN.md §4.3) of a
// span that runs alone in its step; `ranges` = attention restricted to key ranges per kv head that a
// source chooses from the step's queries — squeezed attention over a fixed context (DESIGN.md §4.2,
// FixedContext is such a source). attendLayer is the one place a decoder layer's attention is chosen.
import type { Backend, SeqSpan, Tensor } from '../backends/types.ts';

/** Sparse prefill's policy for a span: the attention output, or null to run dense. */
export interface SparseAttend {
  attend(
    b: Backend,
    layer: number,
    q: Tensor,
    spans: readonly SeqSpan[],
    heads: number,
    scale: number,
  ): Tensor | null;
}

/** Chooses key ranges per kv head for one span of a step from the step's queries on the host. */
export interface KeyRangeSource {
  /** qHost: the step's q [M][heads·headDim]; → per kv head [s0, e0, s1, e1, …] cache positions. */
  keysFor(qHost: Float32Array, span: SeqSpan, layer: number): Int32Array[];
}

export type SeqAttention =
  | { kind: 'sparse'; policy: SparseAttend }
  | { kind: 'ranges'; source: KeyRangeSource };

/**
 * The attention of one decoder layer over a step's spans; attention[i] belongs to spans[i] (missing or
 * null = dense). Any `ranges` span makes the step one attentionRanges call (the others dense in it); a
 * `sparse` span is honoured when it is alone in its step. → [M, heads·headDim], owned by the caller.
 */
export function attendLayer(
  b: Backend,
  q: Tensor,
  layer: number,
  spans: readonly SeqSpan[],
  attention: readonly (SeqAttention | null | undefined)[],
  heads: number,
  scale: number,
): Tensor {
  if (attention.some((a) => a?.kind === 'ranges')) {
    const qHost = b.readNow(q);
    const keys = spans.map((s, i) => {
      const a = attention[i];
      return a?.kind === 'ranges' ? a.source.keysFor(qHost, s, layer) : null;
    });
    return b.attentionRanges(q, layer, spans, keys, heads, scale);
  }
  const only = spans.length === 1 ? attention[0] : null;
  const sparse = only?.kind === 'sparse' ? only.policy.attend(b, layer, q, spans, heads, scale) : null;
  return sparse ?? b.attention(q, layer, spans, heads, scale);
}
