// Thread pool over one shared WebAssembly.Memory: the main thread and threads-1 worker_threads run the
// same kernel module on the same memory. A dispatch writes (op, args, parts) into the control block,
// tags it, and wakes the workers (Atomics.notify); every thread, the main one included, then claims
// parts with a compare-exchange until none are left, and the main thread waits (Atomics.wait) until all
// parts are done — a barrier per kernel, no postMessage per op. Dynamic claiming keeps a descheduled
// worker from stalling the op on a busy machine. Dispatch is synchronous (the CPU is the device).
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import {
  ARGS_OFFSET,
  ARGS_SLOTS,
  CONTROL_OFFSET,
  CTRL,
  CTRL_SLOTS,
  claimParts,
  KERNEL_ID,
  KERNEL_NAMES,
  type KernelFn,
  type KernelName,
  PART_BITS,
  TAG_BITS,
} from './kernel-names.ts';

export interface PoolOptions {
  /** Threads including the main thread; default availableParallelism(). */
  threads?: number;
  /** ms a worker keeps polling for the next op before sleeping (default 2): ops of a forward pass come
   * back to back, and waking a sleeping thread can take longer than a small op. */
  spinMs?: number;
}

export class ThreadPool {
  readonly threads: number;
  readonly memory: WebAssembly.Memory;
  private readonly fns: KernelFn[];
  private readonly workers: Worker[];
  private readonly ctrl: Int32Array;
  private readonly argsI: Int32Array;
  private readonly argsF: Float32Array;
  private tag = 0;
  private closed = false;

  private constructor(memory: WebAssembly.Memory, fns: KernelFn[], workers: Worker[], threads: number) {
    this.memory = memory;
    this.fns = fns;
    this.workers = workers;
    this.threads = threads;
    this.ctrl = new Int32Array(memory.buffer, CONTROL_OFFSET, CTRL_SLOTS);
    this.argsI = new Int32Array(memory.buffer, ARGS_OFFSET, ARGS_SLOTS);
    this.argsF = new Float32Array(memory.buffer, ARGS_OFFSET, ARGS_SLOTS);
  }

  static async create(
    module: WebAssembly.Module,
    memory: WebAssembly.Memory,
    opts: PoolOptions = {},
  ): Promise<ThreadPool> {
    const threads = Math.max(1, Math.floor(opts.threads ?? availableParallelism()));
    const spinMs = opts.spinMs ?? 2;
    const instance = new WebAssembly.Instance(module, { env: { memory } });
    const fns = KERNEL_NAMES.map((n) => instance.exports[n] as KernelFn);
    new Int32Array(memory.buffer, CONTROL_OFFSET, CTRL_SLOTS).fill(0);
    const workerUrl = new URL('./worker.ts', import.meta.url);
    const workers: Worker[] = [];
    const ready: Promise<void>[] = [];
    for (let slot = 1; slot < threads; slot++) {
      const w = new Worker(workerUrl, { workerData: { module, memory, slot, spinMs } });
      ready.push(
        new Promise<void>((resolve, reject) => {
          w.once('message', () => resolve());
          w.once('error', reject);
          w.once('exit', (code) =>
            reject(new Error(`wasm pool worker ${slot} exited (${code}) during start`)),
          );
        }),
      );
      workers.push(w);
    }
    try {
      await Promise.all(ready);
    } catch (err) {
      await Promise.all(workers.map((w) => w.terminate()));
      throw err;
    }
    for (const w of workers) {
      w.removeAllListeners('exit');
      w.unref(); // an idle pool never keeps the process alive
    }
    return new ThreadPool(memory, fns, workers, threads);
  }

  /**
   * Runs kernel `name` in `parts` parts with the given argument slots (numbers are i32 unless listed
   * in `floats` by slot index). parts = 1 runs inline on the calling thread, waking nobody.
   */
  run(name: KernelName, args: readonly number[], floats: readonly number[], parts: number): void {
    if (this.closed) throw new Error('wasm backend: thread pool used after dispose()');
    if (args.length > ARGS_SLOTS) throw new Error(`kernel ${name}: too many arguments`);
    for (let i = 0; i < args.length; i++) this.argsI[i] = args[i];
    for (const i of floats) this.argsF[i] = args[i];
    const op = KERNEL_ID[name];
    const fn = this.fns[op];
    const n = Math.max(1, Math.min(Math.floor(parts), (1 << PART_BITS) - 1));
    if (n === 1 || this.threads === 1) {
      for (let p = 0; p < n; p++) fn(ARGS_OFFSET, p, n, 0);
      return;
    }
    const c = this.ctrl;
    this.tag = (this.tag + 1) & ((1 << TAG_BITS) - 1);
    // First take the claim word away from the previous dispatch (new tag, no part left): a worker that
    // woke late for it has read its tag and may be about to compare-exchange an old claim word; were
    // that word still in place after OP/PARTS/DONE below change, it would run a part of this dispatch
    // under the old tag and count it into DONE twice, and the wait below would never see DONE = n.
    Atomics.store(c, CTRL.CLAIM, (this.tag << PART_BITS) | ((1 << PART_BITS) - 1));
    Atomics.store(c, CTRL.OP, op);
    Atomics.store(c, CTRL.ARGS, ARGS_OFFSET);
    Atomics.store(c, CTRL.PARTS, n);
    Atomics.store(c, CTRL.DONE, 0);
    Atomics.store(c, CTRL.CLAIM, this.tag << PART_BITS);
    Atomics.store(c, CTRL.GEN, this.tag);
    Atomics.notify(c, CTRL.GEN);
    claimParts(c, this.fns, this.tag, 0);
    // the parts still running are short (≤ one part each): poll briefly, then sleep
    for (let i = 1; ; i++) {
      const d = Atomics.load(c, CTRL.DONE);
      if (d === n) break;
      if (d > n) throw new Error(`kernel ${name}: ${d} parts done of ${n} (thread pool out of step)`);
      if (i > 4096) Atomics.wait(c, CTRL.DONE, d, 1);
    }
    const err = Atomics.exchange(c, CTRL.ERR, 0);
    if (err) throw new Error(`kernel ${name} failed on thread ${err - 1}`);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    Atomics.store(this.ctrl, CTRL.STOP, 1);
    Atomics.store(this.ctrl, CTRL.GEN, -1);
    Atomics.notify(this.ctrl, CTRL.GEN);
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
