// Thread pool over one shared WebAssembly.Memory: the main thread is thread 0 and runs its share of
// every kernel itself; threads 1..n-1 are worker_threads running the same module on the same memory.
// A dispatch writes (op, args) into the control block, bumps the generation and notifies (Atomics);
// the last worker to finish notifies the main thread, which waits with Atomics.wait: a barrier per
// kernel, no postMessage per op. Dispatch is synchronous (the CPU is the device).
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import {
  ARGS_OFFSET,
  ARGS_SLOTS,
  CONTROL_OFFSET,
  CTRL,
  CTRL_SLOTS,
  KERNEL_ID,
  KERNEL_NAMES,
  type KernelFn,
  type KernelName,
} from './kernel-names.ts';

export interface PoolOptions {
  /** Threads including the main thread; default availableParallelism(). */
  threads?: number;
  /** Busy-wait iterations before Atomics.wait (workers and main); keeps short kernels cheap. */
  spin?: number;
}

export class ThreadPool {
  readonly threads: number;
  readonly memory: WebAssembly.Memory;
  private readonly fns: KernelFn[];
  private readonly workers: Worker[];
  private readonly ctrl: Int32Array;
  private readonly spin: number;
  private readonly argsI: Int32Array;
  private readonly argsF: Float32Array;
  private closed = false;

  private constructor(
    memory: WebAssembly.Memory,
    fns: KernelFn[],
    workers: Worker[],
    threads: number,
    spin: number,
  ) {
    this.memory = memory;
    this.fns = fns;
    this.workers = workers;
    this.threads = threads;
    this.spin = spin;
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
    const spin = opts.spin ?? 20_000;
    const instance = new WebAssembly.Instance(module, { env: { memory } });
    const fns = KERNEL_NAMES.map((n) => instance.exports[n] as KernelFn);
    const ctrl = new Int32Array(memory.buffer, CONTROL_OFFSET, CTRL_SLOTS);
    ctrl.fill(0);
    Atomics.store(ctrl, CTRL.NT, threads);
    const workerUrl = new URL('./worker.ts', import.meta.url);
    const workers: Worker[] = [];
    const ready: Promise<void>[] = [];
    for (let tid = 1; tid < threads; tid++) {
      const w = new Worker(workerUrl, { workerData: { module, memory, tid, spin } });
      ready.push(
        new Promise<void>((resolve, reject) => {
          w.once('message', () => resolve());
          w.once('error', reject);
          w.once('exit', (code) =>
            reject(new Error(`wasm pool worker ${tid} exited (${code}) during start`)),
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
    return new ThreadPool(memory, fns, workers, threads, spin);
  }

  /**
   * Runs kernel `name` on all threads with the given argument slots (numbers are i32 unless listed in
   * `floats` by slot index). Returns when every thread is done.
   */
  run(
    name: KernelName,
    args: readonly number[],
    floats: readonly number[] = [],
    threads = this.threads,
  ): void {
    if (this.closed) throw new Error('wasm backend: thread pool used after dispose()');
    if (args.length > ARGS_SLOTS) throw new Error(`kernel ${name}: too many arguments`);
    for (let i = 0; i < args.length; i++) this.argsI[i] = args[i];
    for (const i of floats) this.argsF[i] = args[i];
    const op = KERNEL_ID[name];
    if (threads <= 1 || this.threads === 1) {
      this.fns[op](ARGS_OFFSET, 0, 1);
      return;
    }
    const c = this.ctrl;
    const nt = this.threads;
    Atomics.store(c, CTRL.OP, op);
    Atomics.store(c, CTRL.ARGS, ARGS_OFFSET);
    Atomics.store(c, CTRL.DONE, 0);
    Atomics.add(c, CTRL.GEN, 1);
    Atomics.notify(c, CTRL.GEN);
    let mainErr: unknown = null;
    try {
      this.fns[op](ARGS_OFFSET, 0, nt);
    } catch (err) {
      mainErr = err;
    }
    let spins = 0;
    for (;;) {
      const d = Atomics.load(c, CTRL.DONE);
      if (d === nt - 1) break;
      if (++spins > this.spin) Atomics.wait(c, CTRL.DONE, d);
    }
    if (mainErr) throw mainErr;
    const err = Atomics.exchange(c, CTRL.ERR, 0);
    if (err) throw new Error(`kernel ${name} failed on thread ${err - 1}`);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    Atomics.store(this.ctrl, CTRL.STOP, 1);
    Atomics.add(this.ctrl, CTRL.GEN, 1);
    Atomics.notify(this.ctrl, CTRL.GEN);
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
