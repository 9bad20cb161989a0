// Pool worker: instantiates the kernel module on the shared memory, then loops: wait for the control
// block's generation to change (short spin, then Atomics.wait), run its share of the kernel, count itself
// done (the last one wakes the main thread). No message passing per op.
import { parentPort, workerData } from 'node:worker_threads';
import { CONTROL_OFFSET, CTRL, CTRL_SLOTS, KERNEL_NAMES, type KernelFn } from './kernel-names.ts';

interface WorkerInit {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  tid: number;
  spin: number;
}

const init = workerData as WorkerInit;
const instance = new WebAssembly.Instance(init.module, { env: { memory: init.memory } });
const fns = KERNEL_NAMES.map((n) => instance.exports[n] as KernelFn);
const ctrl = new Int32Array(init.memory.buffer, CONTROL_OFFSET, CTRL_SLOTS);
let gen = Atomics.load(ctrl, CTRL.GEN);
parentPort?.postMessage('ready');

for (;;) {
  let spins = 0;
  while (Atomics.load(ctrl, CTRL.GEN) === gen) {
    if (++spins > init.spin) Atomics.wait(ctrl, CTRL.GEN, gen);
  }
  gen = Atomics.load(ctrl, CTRL.GEN);
  if (Atomics.load(ctrl, CTRL.STOP)) break;
  // every worker takes part in every dispatch (the pool's size is fixed), so no dispatch can be missed
  const nt = Atomics.load(ctrl, CTRL.NT);
  try {
    fns[Atomics.load(ctrl, CTRL.OP)](Atomics.load(ctrl, CTRL.ARGS), init.tid, nt);
  } catch {
    Atomics.compareExchange(ctrl, CTRL.ERR, 0, 1 + init.tid);
  }
  if (Atomics.add(ctrl, CTRL.DONE, 1) + 1 === nt - 1) Atomics.notify(ctrl, CTRL.DONE);
}
