// Pool worker: instantiates the kernel module on the shared memory, then loops: wait for the control
// block's dispatch tag to change (polls for spinMs, then Atomics.wait), claim and run parts of the kernel
// until none are left (see claimParts). No message passing per op.
import { parentPort, workerData } from 'node:worker_threads';
import { CONTROL_OFFSET, CTRL, CTRL_SLOTS, claimParts, KERNEL_NAMES, type KernelFn } from './kernel-names.ts';

interface WorkerInit {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  slot: number;
  /** ms to keep polling for the next dispatch before sleeping in Atomics.wait */
  spinMs: number;
}

const init = workerData as WorkerInit;
const instance = new WebAssembly.Instance(init.module, { env: { memory: init.memory } });
const fns = KERNEL_NAMES.map((n) => instance.exports[n] as KernelFn);
const ctrl = new Int32Array(init.memory.buffer, CONTROL_OFFSET, CTRL_SLOTS);
let seen = Atomics.load(ctrl, CTRL.GEN);
parentPort?.postMessage('ready');

for (;;) {
  // ops of a forward pass come back to back: stay awake a little (a futex wake-up on a busy machine
  // can take longer than the op), then sleep until notified
  const until = performance.now() + init.spinMs;
  for (let i = 1; Atomics.load(ctrl, CTRL.GEN) === seen; i++) {
    if ((i & 255) === 0 && performance.now() > until) Atomics.wait(ctrl, CTRL.GEN, seen);
  }
  seen = Atomics.load(ctrl, CTRL.GEN);
  if (Atomics.load(ctrl, CTRL.STOP)) break;
  claimParts(ctrl, fns, seen, init.slot);
}
