// One request inside the scheduler: its prompt (as the blocks reuse assembly needs), sampling, stop rules,
// streaming callbacks, and where it stands (waiting → prefill → decode → finished). Plain state: the
// scheduler decides what runs, this only accepts sampled tokens and turns them into text deltas.
import type {
  FinishReason,
  RunnerUsage,
  SamplingInput,
  SparseStats,
  SqueezedUsage,
} from '../../contracts/runner-api.ts';
import type { SparseControl } from '../../contracts/sparse.ts';
import type { SparsePrefill } from '../engine/attention/sparse/prefill.ts';
import type { FixedContext } from '../engine/attention/squeezed/fixed-context.ts';
import type { SelectMode } from '../engine/attention/squeezed/select.ts';
import { Detokenizer } from '../engine/detokenizer.ts';
import type { SequenceKV } from '../engine/kv-cache.ts';
import type { ReuseMode } from '../../contracts/reuse.ts';
import { Sampler } from '../engine/sampler.ts';
import { emitUntilStop } from '../engine/stop.ts';
import type { TextTokenizer } from '../engine/tokenizer.ts';

/** What a client asks the scheduler for. Token ids are already encoded. */
export interface SeqRequest {
  system: readonly number[];
  chunks: readonly (readonly number[])[];
  question: readonly number[];
  mode: ReuseMode;
  blendRatio?: number;
  linkTokens?: number;
  /** Squeezed attention over the fixed context (resolved control); null/absent = dense. */
  squeezed?: SelectMode | null;
  /** Sparse prefill of the live tokens (DESIGN.md §4.3); null/absent/off = dense. */
  sparse?: SparseControl | null;
  maxTokens: number;
  sampling?: SamplingInput;
  stopTokenIds?: readonly number[];
  stopStrings?: readonly string[];
  /** Client gone: the sequence ends and its KV memory is freed at the next step. */
  signal?: AbortSignal;
  /** Absolute time (ms, performance.now() clock) after which the sequence ends with 'deadline'. */
  deadline?: number;
  onText?: (delta: string) => void;
  onToken?: (id: number) => void;
}

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
  admittedAt = -1;
  firstTokenAt = -1;
  lastTokenAt = -1;
  cachedTokens = 0;
  prefillTokens = 0;
  keysAttended = 0;
  assembleMs = 0;
  preemptions = 0;
  readonly bytesLoaded: Record<string, number> = {};
  /** Fixed contexts this sequence attended through (one per assembly; their stats outlive the cache). */
  readonly squeezed: FixedContext[] = [];
  squeezedNote: string | undefined;
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
    return (
      this.req.system.length + this.req.chunks.reduce((s, c) => s + c.length, 0) + this.req.question.length
    );
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

  end(reason: FinishReason, error?: string): void {
    if (this.finish) return;
    this.error = error;
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
        queueWait: (this.admittedAt >= 0 ? this.admittedAt : end) - this.createdAt,
        ttft: this.firstTokenAt >= 0 ? this.firstTokenAt - this.createdAt : -1,
        total: performance.now() - this.createdAt,
        assemble: this.assembleMs,
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
