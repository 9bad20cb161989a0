// Kernel module entry: every export has the signature (args: usize, part: i32, parts: i32, slot: i32): it does
// part `part` of `parts` (parts are claimed dynamically by the threads), uses per-thread scratch `slot`, and reads its
// arguments from 32-bit slots at `args` (see each kernel). The host lists these names in kernel-names.ts.
export { matmul } from './matmul';
export { rmsnorm, rope, swiglu, softmax, add, argmax, gather, copy } from './elementwise';
export { attention, attention_merge } from './attention';
export { kmeans_assign } from './kmeans';
export { quantize_q8, matmul_q } from './quant';
export { kv_unpack } from './kvpack';
