// What the scheduler asks the engine to do, as functions over plain inputs: one batched forward with
// sampling, and the assembly of a reuse-mode sequence from artifacts. The scheduler decides when.
import type { Engine } from '../engine/engine.ts';
import type { Assembler } from '../engine/reuse/assemble.ts';
import type { Sequence } from './sequence.ts';

/** One sequence's part of a step. */
export interface PlannedInput {
  seq: Sequence;
  tokens: number[];
  /** Sample the next token from this input's last logits. */
  sample: boolean;
}

/** Σ over n query positions start..start+n−1 of the keys each attends causally (pos + 1). */
export function causalKeys(start: number, n: number): number {
  return n * start + (n * (n + 1)) / 2;
}

/**
 * One batched forward; returns the next token of input i. When every sampling input is greedy the
 * argmax runs on the device and only ids come back, else the last-token logits ([inputs, vocab]) do.
 */
export async function forwardAndSample(engine: Engine, plan: PlannedInput[]): Promise<(i: number) => number> {
  const b = engine.backend;
  const logits = engine.model.forward(plan.map((p) => ({ kv: p.seq.kv!, tokens: p.tokens })));
  try {
    if (plan.every((p) => !p.sample || p.seq.sampler.greedy)) {
      const idx = b.argmax(logits);
      const ids = await b.readInt(idx);
      b.free(idx);
      return (i) => ids[i];
    }
    const host = await b.read(logits);
    const vocab = logits.shape[1];
    return (i) => plan[i].seq.sampler.sample(host.subarray(i * vocab, (i + 1) * vocab));
  } finally {
    b.free(logits);
  }
}

/**
 * Builds a reuse-mode sequence's cache with `cap` positions: the context from artifacts and the first
 * question token through the assembler; the rest of the question (plus anything generated before a
 * preemption) is left in `seq.pending`, for the scheduler to prefill batched with other sequences.
 * Records usage on the sequence. Returns the next token when nothing is pending (a one-token question),
 * else null. Throws with nothing allocated on failure.
 */
export async function assembleSequence(
  assembler: Assembler,
  seq: Sequence,
  cap: number,
): Promise<number | null> {
  const r = seq.req;
  const question = [...r.question, ...seq.generated];
  const t = performance.now();
  const out = await assembler.assemble({
    system: r.system,
    chunks: r.chunks,
    question: question.slice(0, 1),
    mode: r.mode,
    blendRatio: r.blendRatio,
    linkTokens: r.linkTokens,
    squeezed: r.squeezed ?? null,
    reserve: cap - seq.promptLength - seq.generated.length + question.length - 1,
  });
  seq.kv = out.kv;
  if (out.kv.squeezed) seq.squeezed.push(out.kv.squeezed);
  else if (r.squeezed) seq.squeezedNote = out.report.squeezed?.reason ?? 'not used';
  seq.assembleMs += performance.now() - t;
  const rep = out.report;
  for (const phase of ['load', 'rotate', 'recompute', 'squeeze'] as const)
    seq.phaseMs[phase] += rep.timingsMs[phase];
  if (seq.preemptions === 0) seq.cachedTokens = rep.cachedTokens;
  seq.prefillTokens += rep.recomputedTokens + rep.questionTokens;
  for (const [tier, b] of Object.entries(rep.bytesLoaded))
    seq.bytesLoaded[tier] = (seq.bytesLoaded[tier] ?? 0) + b;
  // the first question token exactly; selectively recomputed tokens as if they sat at positions 0..r-1
  seq.keysAttended +=
    causalKeys(rep.tokens - rep.questionTokens, rep.questionTokens) + causalKeys(0, rep.recomputedTokens);
  seq.pending = question.slice(1);
  return seq.pending.length === 0 ? seq.sampler.sample(out.logits) : null;
}
