// The step runner executes what the scheduler planned for one step (DESIGN.md §7.6): grow caches whose
// memory was reserved, admit sequences (a fresh cache, or a reuse-mode context placed from artifacts —
// its question is prefilled in the batch like any prompt), run planned sparse prefills in forwards of
// their own, then one batched forward over every planned input (decode tokens and prefill chunks of all
// sequences: the weights are read once for all rows) and sample the next token where an input ends a
// prompt or is a decode step. A failure ends only the
// sequences it touched (finish reason 'error'); the scheduler frees them at its next reap.
import type { Backend } from '../backends/types.ts';
import type { SequenceKV } from '../kv-cache.ts';
import type { Model } from '../model.ts';
import type { ModelConfig } from '../model-config.ts';
import type { SequenceAssembler } from '../reuse/types.ts';
import type { Sequence } from './sequence.ts';

/** What running steps needs of an engine (Engine has it all). */
export interface StepEngine {
  readonly config: ModelConfig;
  readonly model: Model;
  readonly backend: Backend;
  newSequence(capacity: number): SequenceKV;
}

/** One sequence's part of the batched forward. */
export interface PlannedInput {
  seq: Sequence;
  tokens: number[];
  /** Sample the next token from this input's last logits. */
  sample: boolean;
}

/** One step, as the scheduler planned it (memory for every cache here is reserved already). */
export interface StepPlan {
  /** caches to enlarge to `capacity` positions (copied) */
  grow: { seq: Sequence; capacity: number }[];
  /**
   * sequences starting now: `full` gets an empty cache of `capacity`; a reuse mode gets its context placed
   * (the question, and after a preemption what was generated, are left pending for the batch)
   */
  admit: { seq: Sequence; capacity: number }[];
  /** live tokens prefilled through the sequence's sparse prefill, each in a forward of its own */
  sparse: { seq: Sequence; tokens: number[] }[];
  batch: PlannedInput[];
}

/** Σ over n query positions start..start+n−1 of the keys each attends causally (pos + 1). */
export function causalKeys(start: number, n: number): number {
  return n * start + (n * (n + 1)) / 2;
}

export class StepRunner {
  readonly engine: StepEngine;
  private readonly assembler: SequenceAssembler | undefined;
  /** Hands a sampled token to its sequence (the scheduler observes it). */
  private readonly accept: (seq: Sequence, id: number) => void;
  /**
   * Awaited before each layer of the batched forward (Model.forwardWhenReady) where given: the runner's
   * scheduler lets the event loop read arrivals and write streams there. Absent: one synchronous forward.
   */
  private readonly pause: ((layer: number) => Promise<void>) | undefined;

  constructor(
    engine: StepEngine,
    assembler: SequenceAssembler | undefined,
    accept: (seq: Sequence, id: number) => void,
    pause?: (layer: number) => Promise<void>,
  ) {
    this.engine = engine;
    this.assembler = assembler;
    this.accept = accept;
    this.pause = pause;
  }

  async execute(plan: StepPlan): Promise<void> {
    for (const { seq, capacity } of plan.grow) this.grow(seq, capacity);
    for (const a of plan.admit) await this.admit(a.seq, a.capacity);
    for (const { seq, tokens } of plan.sparse) if (!seq.finish) await this.prefillSparse(seq, tokens);
    const batch = plan.batch.filter((p) => !p.seq.finish);
    if (batch.length > 0) await this.forwardBatch(batch);
  }

  /** Copies a cache into a larger one (on the device). */
  private grow(seq: Sequence, capacity: number): void {
    const old = seq.kv!;
    const kv = this.engine.newSequence(capacity);
    kv.copyFrom(old);
    old.free();
    seq.kv = kv;
  }

  private async admit(seq: Sequence, capacity: number): Promise<void> {
    if (seq.req.mode === 'full') {
      seq.kv = this.engine.newSequence(capacity);
      return;
    }
    try {
      await this.place(seq, capacity);
    } catch (err) {
      // the assembler freed what it allocated
      seq.end('error', err);
    }
  }

  /**
   * Builds a reuse-mode sequence's cache with `capacity` positions holding its context from artifacts
   * (through its prefetch when it has one) and records usage; the planner left the rest pending.
   */
  private async place(seq: Sequence, capacity: number): Promise<void> {
    const r = seq.req;
    const t = performance.now();
    const prefetched = seq.prefetched;
    seq.prefetched = null; // place() spends it, whether it succeeds or not
    const out = await this.assembler!.place(
      {
        system: r.system,
        chunks: r.chunks,
        mode: r.mode,
        blendRatio: r.blendRatio,
        linkTokens: r.linkTokens,
        squeezed: r.squeezed ?? null,
        capacity,
      },
      prefetched,
    );
    seq.kv = out.kv;
    seq.fixed = out.fixed;
    seq.attention = out.attention;
    if (out.fixed) seq.squeezed.push(out.fixed);
    else if (r.squeezed) seq.squeezedNote = out.report.squeezed?.reason ?? 'not used';
    seq.assembleMs += performance.now() - t;
    const rep = out.report;
    for (const phase of ['load', 'rotate', 'recompute', 'squeeze'] as const)
      seq.phaseMs[phase] += rep.timingsMs[phase];
    if (seq.preemptions === 0) seq.cachedTokens = rep.cachedTokens;
    seq.prefillTokens += rep.recomputedTokens;
    for (const [tier, b] of Object.entries(rep.bytesLoaded))
      seq.bytesLoaded[tier] = (seq.bytesLoaded[tier] ?? 0) + b;
    // selectively recomputed tokens as if they sat at positions 0..r-1
    seq.keysAttended += causalKeys(0, rep.recomputedTokens);
  }

  /** Live tokens through the sequence's sparse prefill (DESIGN.md §4.3), alone in a forward. */
  private async prefillSparse(seq: Sequence, tokens: number[]): Promise<void> {
    const kv = seq.kv!;
    const start = kv.length;
    const b = this.engine.backend;
    try {
      // squeezed attention, when the sequence has it, takes precedence (as in a batched step)
      const attention = seq.attention ?? { kind: 'sparse' as const, policy: seq.sparse! };
      b.free(this.engine.model.forward([{ kv, tokens, attention }]));
    } catch (err) {
      seq.end('error', err);
      return;
    }
    seq.keysAttended += causalKeys(start, tokens.length);
    seq.prefillTokens += tokens.length;
  }

  private async forwardBatch(batch: PlannedInput[]): Promise<void> {
    let pick: (i: number) => number;
    try {
      pick = await this.forwardAndSample(batch);
    } catch (err) {
      for (const p of batch) p.seq.end('error', err);
      return;
    }
    batch.forEach((p, i) => {
      const s = p.seq;
      const start = s.kv!.length - p.tokens.length;
      s.keysAttended += causalKeys(start, p.tokens.length);
      if (s.phase === 'prefill') s.prefillTokens += p.tokens.length;
      if (!p.sample) return;
      s.phase = 'decode';
      this.accept(s, pick(i));
    });
  }

  /**
   * One batched forward; returns the next token of input i. When every sampling input is greedy the
   * argmax runs on the device and only ids come back, else the last-token logits ([inputs, vocab]) do.
   */
  private async forwardAndSample(batch: PlannedInput[]): Promise<(i: number) => number> {
    const b = this.engine.backend;
    const inputs = batch.map((p) => ({ kv: p.seq.kv!, tokens: p.tokens, attention: p.seq.attention }));
    const model = this.engine.model;
    const logits = this.pause
      ? await model.forwardWhenReady(inputs, 'last', this.pause)
      : model.forward(inputs);
    try {
      if (batch.every((p) => !p.sample || p.seq.sampler.greedy)) {
        const idx = b.argmax(logits);
        const ids = await b.readInt(idx);
        b.free(idx);
        return (i) => ids[i];
      }
      const host = await b.read(logits);
      const vocab = logits.shape[1];
      return (i) => batch[i].seq.sampler.sample(host.subarray(i * vocab, (i + 1) * vocab));
    } finally {
      b.free(logits);
    }
  }
}
