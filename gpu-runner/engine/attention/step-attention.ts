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

/** A partial attention on the host over keys not in the ranges: out [count][heads·headDim], lse [count][heads]. */
export interface DroppedPartial {
  out: Float32Array;
  lse: Float32Array;
}

export interface RangeChoice {
  /** per kv head [s0, e0, s1, e1, …] cache positions */
  keys: Int32Array[];
  /** the approximated share of the keys left out, merged with the ranges' attention by log-sum-exp */
  dropped: DroppedPartial | null;
}

/** Chooses key ranges per kv head for one span of a step from the step's queries on the host. */
export interface KeyRangeSource {
  /** qHost: the step's q [M][heads·headDim]. */
  keysFor(qHost: Float32Array, span: SeqSpan, layer: number): RangeChoice;
  /**
   * The attention of one span's rows, fused where the backend can: written into `into` ([M, heads·headDim],
   * the span's rows only) when given, else a new [M, heads·headDim] tensor (other rows zero); null: use keysFor.
   */
  attend?(
    q: Tensor,
    layer: number,
    span: SeqSpan,
    heads: number,
    scale: number,
    into?: Tensor,
  ): Tensor | null;
  /** Whether attend() would run (so a step can plan on it before calling). */
  fuses?(span: SeqSpan): boolean;
}

export type SeqAttention =
  | { kind: 'sparse'; policy: SparseAttend }
  | { kind: 'ranges'; source: KeyRangeSource };

/**
 * The attention of one decoder layer over a step's spans; attention[i] belongs to spans[i] (missing or
 * null = dense). Any `ranges` span makes the step one attentionRanges call (the others dense in it; its
 * rows each with their own selection); a
 * `ranges` span with a dropped partial is attended by sparseAttention over its ranges instead (which gives
 * the log-sum-exp) and merged with the partial on the host. A `sparse` span is honoured when it is alone
 * in its step. → [M, heads·headDim], owned by the caller.
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
    const ranged = spans.map((_, i) => {
      const a = attention[i];
      return a?.kind === 'ranges' ? a.source : null;
    });
    if (ranged.every((r, i) => !r || r.fuses?.(spans[i]))) {
      // every squeezed span fused: one call per squeezed span, the other spans dense in one call
      const dense = spans.filter((_, i) => !ranged[i]);
      const y = dense.length > 0 ? b.attention(q, layer, dense, heads, scale) : null;
      let out = y;
      spans.forEach((s, i) => {
        const r = ranged[i];
        if (!r) return;
        const got = r.attend!(q, layer, s, heads, scale, out ?? undefined);
        out ??= got;
      });
      if (out) return out;
    }
    const qHost = b.readNow(q);
    // a `ranges` span of several rows (a question's prefill) selects per row: one row's keys are not
    // another's, and one selection for the block serves none of them well
    const rowSpans: SeqSpan[] = [];
    const sources: (KeyRangeSource | null)[] = [];
    spans.forEach((s, i) => {
      const a = attention[i];
      if (a?.kind !== 'ranges' || s.count <= 1) {
        rowSpans.push(s);
        sources.push(a?.kind === 'ranges' ? a.source : null);
        return;
      }
      for (let r = 0; r < s.count; r++) {
        rowSpans.push({ cache: s.cache, row: s.row + r, count: 1, pos: s.pos + r });
        sources.push(a.source);
      }
    });
    const chosen = rowSpans.map((s, i) => sources[i]?.keysFor(qHost, s, layer) ?? null);
    if (chosen.every((c) => !c?.dropped))
      return b.attentionRanges(
        q,
        layer,
        rowSpans,
        chosen.map((c) => c?.keys ?? null),
        heads,
        scale,
      );
    return attendMerged(b, q, layer, rowSpans, chosen, heads, scale);
  }
  const only = spans.length === 1 ? attention[0] : null;
  const sparse = only?.kind === 'sparse' ? only.policy.attend(b, layer, q, spans, heads, scale) : null;
  return sparse ?? b.attention(q, layer, spans, heads, scale);
}

/** attendLayer's case with dropped partials: exact ranges ⊕ partial by log-sum-exp per (row, head). */
function attendMerged(
  b: Backend,
  q: Tensor,
  layer: number,
  spans: readonly SeqSpan[],
  chosen: readonly (RangeChoice | null)[],
  heads: number,
  scale: number,
): Tensor {
  const [rows, width] = q.shape;
  const d = width / heads;
  const none = (c: RangeChoice) => c.keys.map(() => new Int32Array(0));
  // the spans without a partial in one call (the others get no keys there: zero rows)
  const rest = b.attentionRanges(
    q,
    layer,
    spans,
    chosen.map((c) => (c?.dropped ? none(c) : (c?.keys ?? null))),
    heads,
    scale,
  );
  const y = b.readNow(rest);
  b.free(rest);
  spans.forEach((s, i) => {
    const c = chosen[i];
    if (!c?.dropped) return;
    const plan = {
      blockSize: Math.max(1, s.count),
      ranges: c.keys.map((r) => [r]),
      columns: c.keys.map(() => [new Int32Array(0)]),
    };
    const exact = b.sparseAttention(q, layer, s, plan, heads, scale);
    const out = b.readNow(exact.out);
    const lse = b.readNow(exact.lse);
    b.free(exact.out);
    b.free(exact.lse);
    const a = c.dropped;
    for (let r = 0; r < s.count * heads; r++) {
      const mx = Math.max(lse[r], a.lse[r]);
      const yo = s.row * width + r * d;
      if (mx === Number.NEGATIVE_INFINITY) continue;
      const we = Math.exp(lse[r] - mx);
      const wa = Math.exp(a.lse[r] - mx);
      const z = we + wa;
      for (let e = 0; e < d; e++) y[yo + e] = (we * out[r * d + e] + wa * a.out[r * d + e]) / z;
    }
  });
  return b.upload({ dtype: 'f32', shape: [rows, width], data: y });
}
