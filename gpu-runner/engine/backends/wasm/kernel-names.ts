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
] as const;

export type KernelName = (typeof KERNEL_NAMES)[number];

export const KERNEL_ID: Record<KernelName, number> = Object.fromEntries(
  KERNEL_NAMES.map((n, i) => [n, i]),
) as Record<KernelName, number>;

/** Signature of every kernel export: arguments in 32-bit slots at `args`, this thread's id and count. */
export type KernelFn = (args: number, tid: number, nthreads: number) => void;

// Control block (i32 slots) shared by the pool and its workers, at CONTROL_OFFSET in the memory.
export const CTRL = {
  GEN: 0, // bumped once per dispatch; workers wait on it
  OP: 1, // kernel index
  ARGS: 2, // byte offset of the argument slots
  NT: 3, // threads taking part
  DONE: 4, // workers finished with this dispatch
  STOP: 5, // 1 = workers exit
  ERR: 6, // 1 + tid of a worker whose kernel threw
} as const;
export const CTRL_SLOTS = 16;
/** Below 64 KiB: the module's data segments live at 1024.. (< 2 KiB); control block and args after them. */
export const CONTROL_OFFSET = 32 * 1024;
export const ARGS_OFFSET = CONTROL_OFFSET + 256;
export const ARGS_SLOTS = 64;
/** First byte the allocator hands out. */
export const HEAP_BASE = 64 * 1024;
