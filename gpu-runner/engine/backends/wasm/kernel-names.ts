// Kernel exports of kernels/index.as, in dispatch order: the pool sends an index into this list.
export const KERNEL_NAMES = [
  'matmul',
  'rmsnorm',
  'rope',
  'swiglu',
  'softmax',
  'add',
  'argmax',
  'gather',
  'attention',
  'attention_merge',
  'kmeans_assign',
  'copy',
  'quantize_q8',
  'matmul_q',
  'kv_unpack',
] as const;

export type KernelName = (typeof KERNEL_NAMES)[number];

export const KERNEL_ID: Record<KernelName, number> = Object.fromEntries(
  KERNEL_NAMES.map((n, i) => [n, i]),
) as Record<KernelName, number>;

/**
 * Signature of every kernel export: arguments in 32-bit slots at `args`; does part `part` of `parts`;
 * `slot` (0..threads-1) picks the calling thread's scratch.
 */
export type KernelFn = (args: number, part: number, parts: number, slot: number) => void;

// Control block (i32 slots) shared by the pool and its workers, at CONTROL_OFFSET in the memory.
export const CTRL = {
  GEN: 0, // dispatch tag (11 bits), changed once per dispatch; idle workers wait on it
  OP: 1, // kernel index
  ARGS: 2, // byte offset of the argument slots
  PARTS: 3, // parts of this dispatch
  DONE: 4, // parts finished
  STOP: 5, // 1 = workers exit
  ERR: 6, // 1 + slot of a thread whose kernel threw
  CLAIM: 7, // (tag << 20) | next unclaimed part: claims only succeed for the current dispatch's tag
} as const;
export const CTRL_SLOTS = 16;
export const TAG_BITS = 11;
export const PART_BITS = 20;
/** Below 64 KiB: the module's data segments live at 1024.. (< 2 KiB); control block and args after them. */
export const CONTROL_OFFSET = 32 * 1024;
export const ARGS_OFFSET = CONTROL_OFFSET + 256;
export const ARGS_SLOTS = 64;
/** First byte the allocator hands out. */
export const HEAP_BASE = 64 * 1024;

/**
 * Claims and runs parts of the current dispatch (tagged `tag`) until none are left; every finished part
 * is counted in DONE, and the thread finishing the last one wakes the dispatcher. A thread that wakes
 * late finds the tag changed or no part left and does nothing, so no thread ever waits for a slow one
 * that has not started.
 */
export function claimParts(ctrl: Int32Array, fns: readonly KernelFn[], tag: number, slot: number): void {
  const op = Atomics.load(ctrl, CTRL.OP);
  const args = Atomics.load(ctrl, CTRL.ARGS);
  const parts = Atomics.load(ctrl, CTRL.PARTS);
  for (;;) {
    const w = Atomics.load(ctrl, CTRL.CLAIM);
    if (w >>> PART_BITS !== tag) return;
    const part = w & ((1 << PART_BITS) - 1);
    if (part >= parts) return;
    if (Atomics.compareExchange(ctrl, CTRL.CLAIM, w, w + 1) !== w) continue;
    try {
      fns[op](args, part, parts, slot);
    } catch {
      Atomics.compareExchange(ctrl, CTRL.ERR, 0, 1 + slot);
    }
    if (Atomics.add(ctrl, CTRL.DONE, 1) + 1 === parts) Atomics.notify(ctrl, CTRL.DONE);
  }
}
