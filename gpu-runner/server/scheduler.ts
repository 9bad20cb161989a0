// Continuous batching over one Engine (DESIGN.md §4.4). Each step the scheduler plans, the engine
// executes one batched forward:
//   1. every decoding sequence feeds its last token (1 token each), oldest first;
//   2. prefilling sequences take the rest of the step's token budget in chunks (chunked prefill);
//   3. waiting sequences are admitted in FIFO order while the running cap and KV memory allow; a request
//      with reuse mode ≠ full gets its context assembled from chunk artifacts at admission, then its
//      question is prefilled in chunks like any prompt (batched with the others), then it decodes.
// KV memory is reserved per sequence in blocks of `growBlock` positions; a sequence that needs another
// block when memory is short preempts the newest running sequences (their KV is freed and they go back to
// the front of the queue, to be recomputed from prompt + generated tokens when readmitted). Aborted
// (client gone) and past-deadline sequences end at the next step and free their KV at once.
import { AppError } from '../../contracts/errors.ts';
import { SparsePrefill } from '../engine/attention/sparse/prefill.ts';
import type { Engine } from '../engine/engine.ts';
import type { SequenceKV } from '../engine/kv-cache.ts';
import type { Assembler } from '../engine/reuse/assemble.ts';
import { Mutex } from './mutex.ts';
import type { RunnerUsage } from '../../contracts/runner-api.ts';
import { type SeqRequest, Sequence } from './sequence.ts';
import { assembleSequence, causalKeys, forwardAndSample, type PlannedInput } from './step-ops.ts';

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
   * Reuse-mode admissions (artifact assembly + question prefill, each its own forward) per step, so a
   * burst of arrivals does not stall the running sequences' decode for a whole burst. Default 4.
   */
  maxAssembliesPerStep?: number;
  /** Needed for reuse modes other than `full`. */
  assembler?: Assembler;
  /** Serialises engine use with other work (the precompute consumer). */
  mutex?: Mutex;
  observer?: SchedulerObserver;
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
  readonly engine: Engine;
  readonly maxRunning: number;
  readonly maxStepTokens: number;
  readonly kvBytes: number;
  readonly growBlock: number;
  readonly maxAssembliesPerStep: number;
  readonly mutex: Mutex;
  private readonly assembler: Assembler | undefined;
  private readonly observer: SchedulerObserver;
  /** Bytes of K and V per position of one sequence (every layer, f32). */
  readonly bytesPerPosition: number;
  private readonly waiting: Sequence[] = [];
  /** Admission order: first = oldest. */
  private readonly running: Sequence[] = [];
  private nextId = 1;
  private loop: Promise<void> | null = null;
  private accepting = true;
  private steps = 0;
  private preemptions = 0;
  private used = 0;

  constructor(engine: Engine, opts: SchedulerOptions = {}) {
    this.engine = engine;
    this.maxRunning = opts.maxRunning ?? 16;
    this.maxStepTokens = opts.maxStepTokens ?? 256;
    this.kvBytes = opts.kvBytes ?? 256 * 1024 * 1024;
    this.growBlock = opts.growBlock ?? 32;
    this.maxAssembliesPerStep = opts.maxAssembliesPerStep ?? 4;
    this.assembler = opts.assembler;
    this.mutex = opts.mutex ?? new Mutex();
    this.observer = opts.observer ?? {};
    const c = engine.config;
    this.bytesPerPosition = 2 * c.layers * c.kvHeads * c.headDim * 4;
  }

  /** Queues a request; resolves with its usage when it ends (any reason). Rejects bad requests at once. */
  submit(req: SeqRequest): Promise<RunnerUsage> {
    if (!this.accepting) throw new AppError('unavailable', 'runner is shutting down');
    const seq = new Sequence(this.nextId++, req, this.engine.tokenizer, this.engine.stopTokenIds);
    if (req.question.length === 0 && req.mode !== 'full')
      throw new AppError('bad_request', `reuse mode ${req.mode} needs a question`);
    if (seq.promptLength === 0) throw new AppError('bad_request', 'empty prompt');
    if (!Number.isInteger(req.maxTokens) || req.maxTokens < 1)
      throw new AppError('bad_request', 'maxTokens must be a positive integer');
    if (seq.maxLength > this.engine.maxContext)
      throw new AppError(
        'bad_request',
        `prompt ${seq.promptLength} + maxTokens ${req.maxTokens} exceed the model context ${this.engine.maxContext}`,
      );
    if (this.capacityFor(seq) * this.bytesPerPosition > this.kvBytes)
      throw new AppError('bad_request', 'prompt does not fit the runner KV memory');
    if (req.mode !== 'full' && !this.assembler)
      throw new AppError('bad_request', `reuse mode ${req.mode} needs an artifact store`);
    this.waiting.push(seq);
    this.kick();
    return seq.done;
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

  /**
   * Stops taking requests and lets what is queued or running finish for up to `graceMs`; whatever is
   * left then ends with finish reason 'shutdown' (the client sees the reason and can retry elsewhere).
   */
  async drain(graceMs: number): Promise<void> {
    this.accepting = false;
    const until = performance.now() + graceMs;
    while ((this.running.length > 0 || this.waiting.length > 0) && performance.now() < until) {
      await new Promise((r) => setTimeout(r, 10));
    }
    for (const s of [...this.running, ...this.waiting]) s.end('shutdown');
    this.kick();
    await this.loop;
  }

  private kick(): void {
    if (this.loop) return;
    this.loop = this.run().finally(() => {
      this.loop = null;
      if (this.running.length > 0 || this.waiting.length > 0) this.kick();
    });
  }

  private async run(): Promise<void> {
    while (this.running.length > 0 || this.waiting.length > 0) {
      await this.mutex.run(() => this.step());
      // let the event loop deliver streamed text, disconnects and new requests between steps
      await new Promise((r) => setImmediate(r));
    }
  }

  /** One scheduling step: reap, plan, execute, sample. */
  private async step(): Promise<void> {
    this.reap();
    const t0 = performance.now();
    const plan: PlannedInput[] = [];
    let budget = this.maxStepTokens;
    for (const seq of [...this.running]) {
      if (seq.phase !== 'decode' || budget < 1) continue;
      if (!this.ensureRoom(seq, 1)) continue; // preempted itself
      plan.push({ seq, tokens: [seq.next], sample: true });
      budget--;
    }
    for (const seq of this.running) {
      if (seq.phase !== 'prefill' || budget < 1) continue;
      budget -= this.planPrefill(seq, budget, plan);
    }
    let assemblies = 0;
    while (budget > 0 && this.waiting.length > 0 && this.running.length < this.maxRunning) {
      const seq = this.waiting[0];
      const cap = this.capacityFor(seq);
      // FIFO: nobody overtakes the head, whether it waits for memory or for the next step's assemblies
      if (this.used + cap * this.bytesPerPosition > this.kvBytes) break;
      if (seq.req.mode !== 'full' && assemblies++ >= this.maxAssembliesPerStep) break;
      this.waiting.shift();
      budget -= await this.admit(seq, cap, budget, plan);
    }
    const decode = plan.filter((p) => p.seq.phase === 'decode').length;
    if (plan.length > 0) await this.execute(plan);
    this.steps++;
    const tokens = plan.reduce((s, p) => s + p.tokens.length, 0);
    this.observer.step?.({ tokens, decode, prefill: tokens - decode, ms: performance.now() - t0 });
    this.reap();
  }

  /** Positions reserved when a sequence is admitted: what it holds plus one block, within its maximum. */
  private capacityFor(seq: Sequence): number {
    return Math.min(seq.maxLength, seq.promptLength + seq.generated.length + this.growBlock);
  }

  private planPrefill(seq: Sequence, budget: number, plan: PlannedInput[]): number {
    const n = Math.min(seq.pending.length, budget);
    if (n === 0) return 0;
    const tokens = seq.pending.splice(0, n);
    plan.push({ seq, tokens, sample: seq.pending.length === 0 });
    return n;
  }

  /** Takes KV memory for a sequence and starts it; returns the step budget it used. */
  private async admit(seq: Sequence, cap: number, budget: number, plan: PlannedInput[]): Promise<number> {
    if (seq.admittedAt < 0) seq.admittedAt = performance.now();
    this.running.push(seq);
    this.used += cap * this.bytesPerPosition;
    if (seq.req.mode === 'full') {
      seq.kv = this.engine.newSequence(cap);
      seq.pending = seq.allTokens();
      seq.phase = 'prefill';
      if (!(await this.prefillSparse(seq))) return 0;
      return this.planPrefill(seq, budget, plan);
    }
    // reuse modes: the context comes from artifacts; the question is prefilled like any prompt
    try {
      const next = await assembleSequence(this.assembler!, seq, cap);
      if (next !== null) {
        seq.phase = 'decode';
        this.acceptSampled(seq, next);
        return 1;
      }
      seq.phase = 'prefill';
      if (!(await this.prefillSparse(seq))) return 1;
      return 1 + this.planPrefill(seq, budget - 1, plan);
    } catch (err) {
      // the assembler freed what it allocated; give back the reservation
      this.used -= cap * this.bytesPerPosition;
      seq.end('error', (err as Error).message);
      return 0;
    }
  }

  /**
   * Sparse prefill (DESIGN.md §4.3) needs the live tokens in one step of their own: when the request asks
   * for it and enough are pending, all but the last run now in a dedicated forward through the request's
   * SparsePrefill (the last one goes through the plan and is sampled as usual). False if it failed (the
   * sequence ended with the error).
   */
  private async prefillSparse(seq: Sequence): Promise<boolean> {
    const control = seq.req.sparse;
    if (!control || control.mode === 'off') return true;
    seq.sparse ??= new SparsePrefill(control, this.engine.sparseConfig);
    const n = seq.pending.length - 1;
    if (n < seq.sparse.minTokens) return true;
    const kv = seq.kv!;
    const tokens = seq.pending.splice(0, n);
    const start = kv.length;
    kv.sparse = seq.sparse;
    try {
      await this.engine.forward([{ kv, tokens }]);
    } catch (err) {
      seq.end('error', (err as Error).message);
      return false;
    } finally {
      kv.sparse = null;
    }
    seq.keysAttended += causalKeys(start, n);
    seq.prefillTokens += n;
    return true;
  }

  /** Makes room for `n` more positions, growing the cache (preempting newer sequences if memory is short). */
  private ensureRoom(seq: Sequence, n: number): boolean {
    const kv = seq.kv!;
    if (kv.length + n <= kv.capacity) return true;
    const newCap = Math.min(seq.maxLength, kv.capacity + Math.max(n, this.growBlock));
    const need = (newCap - kv.capacity) * this.bytesPerPosition;
    while (this.used + need > this.kvBytes) {
      const victim = this.running.findLast((s) => s !== seq && s.kv);
      if (!victim || this.running.indexOf(victim) < this.running.indexOf(seq)) {
        this.preempt(seq);
        return false;
      }
      this.preempt(victim);
    }
    this.pendingGrowth.set(seq, newCap);
    this.used += need;
    return true;
  }

  private readonly pendingGrowth = new Map<Sequence, number>();

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
    if (!seq.kv) return;
    const grown = this.pendingGrowth.get(seq);
    this.used -= (grown ?? seq.kv.capacity) * this.bytesPerPosition;
    this.pendingGrowth.delete(seq);
    seq.kv.free();
    seq.kv = null;
  }

  /** Copies a cache into a larger one (the memory was reserved by ensureRoom). */
  private async grow(seq: Sequence, cap: number): Promise<void> {
    const old = seq.kv!;
    const kv: SequenceKV = this.engine.newSequence(cap);
    for (let l = 0; l < this.engine.config.layers; l++) kv.load(l, 0, await old.read(l, 0, old.length));
    old.free();
    seq.kv = kv;
  }

  private async execute(plan: PlannedInput[]): Promise<void> {
    for (const [seq, cap] of this.pendingGrowth) await this.grow(seq, cap);
    this.pendingGrowth.clear();
    let pick: (i: number) => number;
    try {
      pick = await forwardAndSample(this.engine, plan);
    } catch (err) {
      for (const p of plan) p.seq.end('error', (err as Error).message);
      return;
    }
    plan.forEach((p, i) => {
      const s = p.seq;
      const start = s.kv!.length - p.tokens.length;
      s.keysAttended += causalKeys(start, p.tokens.length);
      if (s.phase === 'prefill') s.prefillTokens += p.tokens.length;
      if (!p.sample) return;
      s.phase = 'decode';
      this.acceptSampled(s, pick(i));
    });
  }

  private acceptSampled(seq: Sequence, id: number): void {
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
