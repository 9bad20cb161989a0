// Continuous batching over one engine (DESIGN.md §4.4) — the one generation loop: the runner serves
// requests through it in the background, and Engine.generate runs one to completion. Each step the
// scheduler plans and the step runner (step-runner.ts) executes:
//   1. every decoding sequence feeds its last token (1 token each), oldest first;
//   2. prefilling sequences take the rest of the step's token budget in chunks (chunked prefill);
//   3. waiting sequences are admitted in FIFO order while the running cap and KV memory allow, all that fit
//      in one step; a request with reuse mode ≠ full gets its context placed from chunk artifacts at
//      admission (their reads started while it waited: the first `maxRunning` waiting requests prefetch),
//      then its whole question is prefilled in chunks like any prompt — in the same batched forward as
//      the other admissions' questions, the prefill chunks and the decode tokens — then it decodes.
// So a burst of arrivals costs the decoding sequences one step of at most maxStepTokens rows (Sarathi-
// style chunked prefill), not a forward per arrival.
// KV memory is reserved per sequence in blocks of `growBlock` positions; a sequence that needs another
// block when memory is short preempts the newest running sequences (their KV is freed and they go back to
// the front of the queue, to be recomputed from prompt + generated tokens when readmitted). Aborted
// (client gone) and past-deadline sequences end at the next step and free their KV at once.
import type { RunnerUsage } from '../../../contracts/runner-api.ts';
import type { SparseConfig } from '../attention/sparse/config.ts';
import type { KVCacheDType } from '../backends/types.ts';
import { SparsePrefill } from '../attention/sparse/prefill.ts';
import { InvalidRequestError, NotAcceptingError } from '../errors.ts';
import type { SequenceAssembler } from '../reuse/types.ts';
import type { ModelConfig } from '../model-config.ts';
import type { TextTokenizer } from '../tokenizer.ts';
import { Mutex } from './mutex.ts';
import { checkRequest, type SeqRequest } from './request.ts';
import { Sequence } from './sequence.ts';
import { type StepEngine, type StepPlan, StepRunner } from './step-runner.ts';

/** A background step lets the event loop run between layers once it has held it this long (ms). */
const BREATHE_MS = 1;

/**
 * Bytes of K and V per cache position of one sequence, every layer, with `dtype` elements (int8: a byte per
 * value plus the row's f32 scale).
 */
export function kvBytesPerPosition(c: ModelConfig, dtype: KVCacheDType): number {
  const row = dtype === 'int8' ? c.headDim + 4 : c.headDim * (dtype === 'f16' ? 2 : 4);
  return 2 * c.layers * c.kvHeads * row;
}

/** What scheduling needs of an engine (Engine has it all). */
export interface SchedulerEngine extends StepEngine {
  readonly tokenizer: TextTokenizer;
  readonly stopTokenIds: readonly number[];
  readonly maxContext: number;
  /** Sparse prefill per (layer, kv head), from the model profile. */
  readonly sparseConfig: SparseConfig;
}

export interface SchedulerOptions {
  /** Cap on sequences holding KV memory at once. Default 16. */
  maxRunning?: number;
  /** Tokens one forward step may carry (decode tokens + prefill chunks). Default 256. */
  maxStepTokens?: number;
  /** Device bytes all sequences' KV caches may use together. Default 256 MiB. */
  kvBytes?: number;
  /** Positions reserved at a time beyond what a sequence holds. Default 32. */
  growBlock?: number;
  /**
   * Reuse-mode admissions (a context placed from artifacts: unpacking and re-rotating their K/V, plus
   * any selective recompute) per step; their questions go into the step's batch. Default 16.
   */
  maxAssembliesPerStep?: number;
  /**
   * A burst reaching an idle runner: its first step waits while requests keep arriving or are being read
   * (arriving(): until 2 ms bring none and none is being read) for at most this long, so the burst shares
   * the first step (dynamic batching's queue delay). A lone request waits ~2 ms. 0: step at once.
   * Default 10.
   */
  batchWindowMs?: number;
  /** Needed for reuse modes other than `full`. */
  assembler?: SequenceAssembler;
  /** Serialises engine use with other work (the precompute consumer). */
  mutex?: Mutex;
  observer?: SchedulerObserver;
  /**
   * true (default): submit() starts a background loop that steps while there is work, yielding to the
   * event loop between steps (streaming, disconnects, arrivals). false: the caller drives run().
   */
  background?: boolean;
}

/** Hooks for metrics. Seconds. */
export interface SchedulerObserver {
  firstToken?(ttftSec: number): void;
  interToken?(sec: number): void;
  step?(info: { tokens: number; decode: number; prefill: number; ms: number }): void;
  finished?(u: RunnerUsage): void;
}

export interface SchedulerStats {
  running: number;
  waiting: number;
  maxRunning: number;
  kvBytesInUse: number;
  kvBytesCapacity: number;
  steps: number;
  preemptions: number;
}

export class Scheduler {
  readonly engine: SchedulerEngine;
  readonly maxRunning: number;
  readonly maxStepTokens: number;
  readonly kvBytes: number;
  readonly growBlock: number;
  readonly maxAssembliesPerStep: number;
  readonly batchWindowMs: number;
  readonly mutex: Mutex;
  private readonly assembler: SequenceAssembler | null;
  private readonly observer: SchedulerObserver;
  private readonly runner: StepRunner;
  private readonly background: boolean;
  /**
   * Bytes of K and V per position of one sequence's cache (every layer) in the backend's KV element type
   * (int8 rows and their scales on a runner's native backend by default, squeezed requests' included).
   */
  readonly bytesPerPosition: number;
  private readonly waiting: Sequence[] = [];
  /** Admission order: first = oldest. */
  private readonly running: Sequence[] = [];
  /** KV positions reserved per running sequence (its cache's capacity, or what it grows to this step). */
  private readonly reserved = new Map<Sequence, number>();
  private nextId = 1;
  private loop: Promise<void> | null = null;
  private accepting = true;
  private steps = 0;
  private preemptions = 0;
  private used = 0;
  /** Requests being read (arriving()) that have not reached enqueue() or failed yet. */
  private reading = 0;
  /** When the background loop last let the event loop run (breathe). */
  private heldSince = 0;

  constructor(engine: SchedulerEngine, opts: SchedulerOptions = {}) {
    this.engine = engine;
    this.maxRunning = opts.maxRunning ?? 16;
    this.maxStepTokens = opts.maxStepTokens ?? 256;
    this.kvBytes = opts.kvBytes ?? 256 * 1024 * 1024;
    this.growBlock = opts.growBlock ?? 32;
    this.maxAssembliesPerStep = opts.maxAssembliesPerStep ?? 16;
    this.batchWindowMs = opts.batchWindowMs ?? 10;
    this.assembler = opts.assembler ?? null;
    this.mutex = opts.mutex ?? new Mutex();
    this.observer = opts.observer ?? {};
    this.background = opts.background ?? true;
    this.runner = new StepRunner(
      engine,
      opts.assembler,
      (seq, id) => this.acceptSampled(seq, id),
      this.background ? () => this.breathe() : undefined,
    );
    this.bytesPerPosition = kvBytesPerPosition(engine.config, engine.backend.caps.kvDType);
  }

  /** Queues a request; resolves with its usage when it ends (any reason). Rejects bad requests at once. */
  submit(req: SeqRequest): Promise<RunnerUsage> {
    return this.enqueue(req).done;
  }

  /** Queues a request and returns its sequence (its `done` resolves with the usage). */
  enqueue(request: SeqRequest): Sequence {
    if (!this.accepting) throw new NotAcceptingError('runner is shutting down');
    const e = this.engine;
    checkRequest(request, {
      maxContext: e.maxContext,
      vocabSize: e.config.vocabSize,
      canAssemble: this.assembler !== null,
    });
    const seq = new Sequence(this.nextId++, request, e.tokenizer, e.stopTokenIds);
    if (this.capacityFor(seq) * this.bytesPerPosition > this.kvBytes)
      throw new InvalidRequestError('prompt does not fit the runner KV memory');
    this.waiting.push(seq);
    this.prefetchWaiting();
    if (this.background) this.kick();
    return seq;
  }

  /**
   * A request is being read (the runner's HTTP body, validation, tokenization) and will be submitted or
   * refused: an idle scheduler's admission window keeps gathering until it has (see gatherBurst). Call the
   * returned function once, after submit() or on failure.
   */
  arriving(): () => void {
    this.reading++;
    let open = true;
    return () => {
      if (open) this.reading--;
      open = false;
    };
  }

  stats(): SchedulerStats {
    return {
      running: this.running.length,
      waiting: this.waiting.length,
      maxRunning: this.maxRunning,
      kvBytesInUse: this.used,
      kvBytesCapacity: this.kvBytes,
      steps: this.steps,
      preemptions: this.preemptions,
    };
  }

  get idle(): boolean {
    return this.running.length === 0 && this.waiting.length === 0;
  }

  /** Steps until every queued sequence has ended (the caller's loop; as nano-vllm's generate). */
  async run(): Promise<void> {
    while (!this.idle) await this.step();
  }

  /**
   * Stops taking requests and lets what is queued or running finish for up to `graceMs`; whatever is
   * left then ends with finish reason 'shutdown' (the client sees the reason and can retry elsewhere).
   */
  async drain(graceMs: number): Promise<void> {
    this.accepting = false;
    const until = performance.now() + graceMs;
    while (!this.idle && performance.now() < until) {
      await new Promise((r) => setTimeout(r, 10));
    }
    for (const s of [...this.running, ...this.waiting]) s.end('shutdown');
    this.kick();
    await this.loop;
  }

  private kick(): void {
    if (this.loop) return;
    this.loop = this.runInBackground().finally(() => {
      this.loop = null;
      if (!this.idle) this.kick();
    });
  }

  private async runInBackground(): Promise<void> {
    if (this.running.length === 0) await this.gatherBurst();
    while (!this.idle) {
      // let the event loop deliver streamed text, disconnects and new requests before each step — also
      // before the first: requests read in the same turn as the one that woke the loop (concurrent HTTP
      // arrivals) join its first step instead of waiting for a step that admits it alone
      await new Promise((r) => setImmediate(r));
      this.heldSince = performance.now();
      await this.mutex.run(() => this.step());
    }
  }

  /**
   * Between two layers of a background step's forward: when the step has held the event loop for
   * BREATHE_MS, one turn of it (setImmediate) — requests arriving during a step are read, checked and
   * queued before it ends, so they join the next step, and streamed text goes out; each HTTP request needs
   * several turns, which one turn between steps gave it one step at a time. Nothing here touches the
   * step's sequences: enqueue() only appends to the waiting list, and reap() runs between steps.
   */
  private async breathe(): Promise<void> {
    if (performance.now() - this.heldSince < BREATHE_MS) return;
    await new Promise((r) => setImmediate(r));
    this.heldSince = performance.now();
  }

  /**
   * Woken from idle: waits while arrivals keep coming — until two 1 ms sleeps in a row brought none while
   * no request was being read (arriving()), or batchWindowMs passed. A burst's requests are read over
   * several event-loop turns (HTTP parsing, validation, tokenization); without this the first step starts
   * with the first of them and the rest join a step later (read between its layers, breathe()).
   */
  private async gatherBurst(): Promise<void> {
    const until = performance.now() + this.batchWindowMs;
    let seen = this.waiting.length;
    for (let quiet = 0; quiet < 2 && performance.now() < until; ) {
      await new Promise((r) => setTimeout(r, 1));
      quiet = this.waiting.length > seen || this.reading > 0 ? 0 : quiet + 1;
      seen = this.waiting.length;
    }
  }

  /** One step: reap, plan, execute (the step runner), reap. */
  async step(): Promise<void> {
    this.reap();
    const t0 = performance.now();
    const plan = this.plan();
    const decode = plan.batch.filter((p) => p.seq.phase === 'decode').length;
    const tokens = plan.batch.reduce((s, p) => s + p.tokens.length, 0);
    if (plan.admit.length + plan.batch.length > 0) await this.runner.execute(plan);
    this.steps++;
    this.observer.step?.({ tokens, decode, prefill: tokens - decode, ms: performance.now() - t0 });
    this.reap();
  }

  // --- planning -----------------------------------------------------------------------------------
  private plan(): StepPlan {
    const plan: StepPlan = { grow: [], admit: [], sparse: [], batch: [] };
    let budget = this.maxStepTokens;
    for (const seq of [...this.running]) {
      if (seq.phase !== 'decode' || budget < 1) continue;
      if (!this.reserve(seq, 1, plan)) continue; // preempted itself
      plan.batch.push({ seq, tokens: [seq.next], sample: true });
      budget--;
    }
    for (const seq of this.running) {
      if (seq.phase !== 'prefill' || budget < 1) continue;
      budget -= this.planChunk(seq, budget, plan);
    }
    let assemblies = 0;
    while (budget > 0 && this.waiting.length > 0 && this.running.length < this.maxRunning) {
      const seq = this.waiting[0];
      const cap = this.capacityFor(seq);
      // FIFO: nobody overtakes the head, whether it waits for memory or for the next step's assemblies
      if (this.used + cap * this.bytesPerPosition > this.kvBytes) break;
      if (seq.req.mode !== 'full' && assemblies++ >= this.maxAssembliesPerStep) break;
      this.waiting.shift();
      budget -= this.planAdmission(seq, cap, budget, plan);
    }
    this.prefetchWaiting();
    return plan;
  }

  /**
   * Starts the artifact reads of the first `maxRunning` waiting reuse-mode requests (those admitted soon),
   * so their I/O overlaps the steps before their admission; the rest wait their turn (each read pins its
   * artifact in engine memory until placed).
   */
  private prefetchWaiting(): void {
    const asm = this.assembler;
    if (!asm) return;
    for (const seq of this.waiting.slice(0, this.maxRunning)) {
      if (seq.req.mode === 'full' || seq.prefetched || seq.finish) continue;
      seq.prefetched = asm.prefetch(seq.req);
    }
  }

  /** Positions reserved when a sequence is admitted: what it holds plus one block, within its maximum. */
  private capacityFor(seq: Sequence): number {
    return Math.min(seq.maxLength, seq.promptLength + seq.generated.length + this.growBlock);
  }

  /** Plans the next chunk of a sequence's pending prompt; returns the tokens it takes. */
  private planChunk(seq: Sequence, budget: number, plan: StepPlan): number {
    const n = Math.min(seq.pending.length, budget);
    if (n === 0) return 0;
    const tokens = seq.pending.splice(0, n);
    plan.batch.push({ seq, tokens, sample: seq.pending.length === 0 });
    return n;
  }

  /** Reserves KV memory for a sequence and plans its start; returns the step budget it uses. */
  private planAdmission(seq: Sequence, cap: number, budget: number, plan: StepPlan): number {
    if (seq.admittedAt < 0) seq.admittedAt = performance.now();
    this.running.push(seq);
    this.reserved.set(seq, cap);
    this.used += cap * this.bytesPerPosition;
    seq.phase = 'prefill';
    // full: the whole prompt (and what was generated before a preemption) is prefilled live; reuse
    // modes: the context is placed at admission, the question (and what was generated) prefilled live
    const live = seq.allTokens();
    const placed = seq.req.mode === 'full' ? 0 : live.length - seq.req.question.length - seq.generated.length;
    seq.pending = live.slice(placed);
    plan.admit.push({ seq, capacity: cap });
    this.planSparse(seq, plan);
    return this.planChunk(seq, budget, plan);
  }

  /**
   * Sparse prefill (DESIGN.md §4.3) needs the live tokens in one step of their own: when the request asks
   * for it and enough are pending, all but the last run first in a forward of their own through the
   * request's SparsePrefill (the last one goes through the batch and is sampled as usual).
   */
  private planSparse(seq: Sequence, plan: StepPlan): void {
    const control = seq.req.sparse;
    if (!control || control.mode === 'off') return;
    seq.sparse ??= new SparsePrefill(control, this.engine.sparseConfig);
    const n = seq.pending.length - 1;
    if (n < seq.sparse.minTokens) return;
    plan.sparse.push({ seq, tokens: seq.pending.splice(0, n) });
  }

  /** Makes room for `n` more positions: reserves another block (preempting newer sequences if short). */
  private reserve(seq: Sequence, n: number, plan: StepPlan): boolean {
    const have = this.reserved.get(seq)!;
    if (seq.kv!.length + n <= have) return true;
    const grown = Math.min(seq.maxLength, have + Math.max(n, this.growBlock));
    const need = (grown - have) * this.bytesPerPosition;
    while (this.used + need > this.kvBytes) {
      const victim = this.running.findLast((s) => s !== seq && this.reserved.has(s));
      if (!victim || this.running.indexOf(victim) < this.running.indexOf(seq)) {
        this.preempt(seq);
        return false;
      }
      this.preempt(victim);
    }
    this.reserved.set(seq, grown);
    this.used += need;
    plan.grow.push({ seq, capacity: grown });
    return true;
  }

  /** Frees a sequence's KV and puts it back at the head of the queue (recomputed when readmitted). */
  private preempt(seq: Sequence): void {
    this.release(seq);
    this.running.splice(this.running.indexOf(seq), 1);
    seq.phase = 'waiting';
    seq.pending = [];
    seq.preemptions++;
    this.preemptions++;
    this.waiting.unshift(seq);
  }

  private release(seq: Sequence): void {
    this.used -= (this.reserved.get(seq) ?? 0) * this.bytesPerPosition;
    this.reserved.delete(seq);
    seq.release();
  }

  private acceptSampled(seq: Sequence, id: number): void {
    // ended while its step ran (drain() at a breathe between layers): what the client was sent stands
    if (seq.finish) return;
    const prev = seq.lastTokenAt;
    seq.accept(id);
    if (prev < 0) this.observer.firstToken?.((seq.firstTokenAt - seq.createdAt) / 1000);
    else this.observer.interToken?.((seq.lastTokenAt - prev) / 1000);
  }

  /** Ends aborted and late sequences, frees finished ones and resolves their promises. */
  private reap(): void {
    const now = performance.now();
    for (const list of [this.running, this.waiting]) {
      for (let i = list.length - 1; i >= 0; i--) {
        const s = list[i];
        if (!s.finish && s.req.signal?.aborted) s.end('aborted');
        if (!s.finish && s.req.deadline !== undefined && now > s.req.deadline) s.end('deadline');
        if (!s.finish) continue;
        this.release(s);
        list.splice(i, 1);
        s.phase = 'finished';
        const u = s.usage();
        this.observer.finished?.(u);
        s.resolve(u);
      }
    }
  }
}
