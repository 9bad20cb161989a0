// One request inside the scheduler: its prompt (as the blocks reuse assembly needs), sampling, stop rules,
// streaming callbacks, the resources it holds (KV cache, squeezed attention's fixed context) and where it
// stands (waiting → prefill → decode → finished). The scheduler decides what runs; this accepts sampled
// tokens, turns them into text deltas and stop decisions, and reports usage.
import type {
  AssemblyPhases,
  FinishReason,
  RunnerUsage,
  SparseStats,
  SqueezedUsage,
} from '../../../contracts/runner-api.ts';
import type { SparsePrefill } from '../attention/sparse/prefill.ts';
import type { FixedContext } from '../attention/squeezed/fixed-context.ts';
import type { SeqAttention } from '../attention/step-attention.ts';
import { Detokenizer } from '../detokenizer.ts';
import type { SequenceKV } from '../kv-cache.ts';
import type { Prefetch } from '../reuse/types.ts';
import { Sampler } from '../sampler.ts';
import { emitUntilStop } from '../stop.ts';
import type { TextTokenizer } from '../tokenizer.ts';
import { promptLength, type SeqRequest } from './request.ts';

export type SeqPhase = 'waiting' | 'prefill' | 'decode' | 'finished';

export class Sequence {
  readonly id: number;
  readonly req: SeqRequest;
  readonly sampler: Sampler;
  readonly stopIds: Set<number>;
  readonly detok: Detokenizer;
  readonly createdAt = performance.now();
  phase: SeqPhase = 'waiting';
  kv: SequenceKV | null = null;
  /** How the current cache's steps attend (squeezed: its fixed context's ranges); null = dense. */
  attention: SeqAttention | null = null;
  /** Tokens still to prefill live (full mode, or recompute after preemption). */
  pending: number[] = [];
  /** Generated tokens (stop tokens excluded). */
  readonly generated: number[] = [];
  /** Last sampled token, fed at the next decode step. */
  next = -1;
  emitted = 0;
  text = '';
  finish: FinishReason | null = null;
  error: string | undefined;
  /** What was thrown when the sequence ended with 'error'. */
  cause: unknown;
  admittedAt = -1;
  firstTokenAt = -1;
  lastTokenAt = -1;
  cachedTokens = 0;
  prefillTokens = 0;
  keysAttended = 0;
  assembleMs = 0;
  readonly phaseMs: AssemblyPhases = { load: 0, rotate: 0, recompute: 0, squeeze: 0 };
  preemptions = 0;
  readonly bytesLoaded: Record<string, number> = {};
  /** Fixed contexts this sequence attended through (one per assembly; their stats outlive the cache). */
  readonly squeezed: FixedContext[] = [];
  /** The fixed context of the current cache, freed with it. */
  fixed: FixedContext | null = null;
  squeezedNote: string | undefined;
  /** Its artifacts being read ahead while it waits (reuse modes); spent at admission. */
  prefetched: Prefetch | null = null;
  /** The request's sparse prefill (its stats outlive the cache); set at admission. */
  sparse: SparsePrefill | null = null;
  resolve!: (u: RunnerUsage) => void;
  readonly done: Promise<RunnerUsage>;

  constructor(id: number, req: SeqRequest, tokenizer: TextTokenizer, defaultStopIds: readonly number[]) {
    this.id = id;
    this.req = req;
    this.sampler = new Sampler(req.sampling);
    this.stopIds = new Set(req.stopTokenIds ?? defaultStopIds);
    this.detok = new Detokenizer(tokenizer);
    this.done = new Promise((r) => {
      this.resolve = r;
    });
  }

  get promptLength(): number {
    return promptLength(this.req);
  }

  /** Every token the sequence's cache must hold to continue: the prompt, then what was generated. */
  allTokens(): number[] {
    return [...this.req.system, ...this.req.chunks.flat(), ...this.req.question, ...this.generated];
  }

  /** Positions the sequence can ever need. */
  get maxLength(): number {
    return this.promptLength + this.req.maxTokens;
  }

  /** Accepts a sampled token; sets `finish` when the sequence is done. */
  accept(id: number): void {
    const now = performance.now();
    if (this.firstTokenAt < 0) this.firstTokenAt = now;
    this.lastTokenAt = now;
    if (this.stopIds.has(id)) {
      this.end('stop');
      return;
    }
    this.generated.push(id);
    this.next = id;
    this.req.onToken?.(id);
    this.detok.push(id);
    if (this.emit(false)) return;
    if (this.generated.length >= this.req.maxTokens) this.end('length');
  }

  /** Streams safe text; true when a stop string ended the sequence. */
  private emit(final: boolean): boolean {
    const text = this.detok.text;
    const r = emitUntilStop(text, this.emitted, this.req.stopStrings ?? [], final, this.req.onText);
    this.emitted = r.emitted;
    if (r.stopAt >= 0) {
      this.text = text.slice(0, r.stopAt);
      this.finish = 'stop';
      return true;
    }
    return false;
  }

  /** Frees the cache, its fixed context and what it prefetched (preemption, the end). */
  release(): void {
    this.prefetched?.release();
    this.prefetched = null;
    this.kv?.free();
    this.kv = null;
    this.fixed?.dispose();
    this.fixed = null;
    this.attention = null;
  }

  end(reason: FinishReason, cause?: unknown): void {
    if (this.finish) return;
    this.cause = cause;
    this.error = cause === undefined ? undefined : cause instanceof Error ? cause.message : String(cause);
    if (reason === 'stop' || reason === 'length') {
      this.detok.flush();
      if (this.emit(true)) return;
      this.text = this.detok.text;
    } else {
      // ended from outside: the text is what the client was sent
      this.text = this.detok.text.slice(0, this.emitted);
    }
    this.finish = reason;
  }

  usage(): RunnerUsage {
    const end = this.lastTokenAt > 0 ? this.lastTokenAt : performance.now();
    const queueWait = (this.admittedAt >= 0 ? this.admittedAt : end) - this.createdAt;
    const ttft = this.firstTokenAt >= 0 ? this.firstTokenAt - this.createdAt : -1;
    // The phases as parts of the placement's wall time (assembleMs): a layer-wise placement loads later
    // layers while it rotates earlier ones, so the load measured from the placement's start overlaps them;
    // load is what the placement spent beyond the other phases, and the parts add up to its wall time.
    const p = this.phaseMs;
    const busy = p.rotate + p.recompute + p.squeeze;
    const load = this.assembleMs > 0 ? Math.max(0, this.assembleMs - busy) : p.load;
    const assembly = load + busy;
    return {
      finishReason: this.finish ?? 'error',
      error: this.error,
      text: this.text,
      tokens: [...this.generated],
      promptTokens: this.promptLength,
      completionTokens: this.generated.length,
      cachedTokens: this.cachedTokens,
      prefillTokens: this.prefillTokens,
      decodeTokens: Math.max(0, this.generated.length - 1),
      keysAttended: this.keysAttended,
      bytesLoaded: { ...this.bytesLoaded },
      preemptions: this.preemptions,
      timingsMs: {
        queueWait,
        ttft,
        total: performance.now() - this.createdAt,
        assemble: this.assembleMs,
        ...p,
        load,
        prefill: ttft < 0 ? -1 : Math.max(0, ttft - queueWait - assembly),
      },
      ...(this.req.squeezed ? { squeezed: this.squeezedUsage() } : {}),
      ...(this.req.sparse && this.req.sparse.mode !== 'off' ? { sparse: this.sparseUsage() } : {}),
    };
  }

  private sparseUsage(): SparseStats & { note?: string } {
    if (!this.sparse) return { pattern: 'dense', density: 1, dense: true, note: 'no live prefill ran' };
    const s = this.sparse.stats();
    return s.dense
      ? {
          ...s,
          note: `dense: fewer than ${this.sparse.minTokens} live tokens in one step, or a backend without it`,
        }
      : s;
  }

  private squeezedUsage(): SqueezedUsage {
    const u: SqueezedUsage = { keysAttended: 0, fraction: 0, bytesTouched: 0, unindexedTokens: 0 };
    let fixed = 0;
    for (const { stats } of this.squeezed) {
      u.keysAttended += stats.keysAttended;
      u.bytesTouched += stats.bytesTouched;
      u.unindexedTokens = stats.unindexedTokens;
      fixed += stats.fixedKeys;
    }
    u.fraction = fixed > 0 ? u.keysAttended / fixed : 1;
    if (this.squeezedNote) u.note = this.squeezedNote;
    else if (this.squeezed.length === 0) u.note = 'no fixed context was assembled (full mode)';
    return u;
  }
}
