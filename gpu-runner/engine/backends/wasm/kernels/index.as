// Kernel module entry: every export has the signature (args: usize, tid: i32, nthreads: i32) and reads its
// arguments from 32-bit slots at `args` (see each kernel). The host lists these names in kernel-names.ts.
export { matmul } from './matmul';
export { rmsnorm, rope, swiglu, softmax, add, argmax, gather } from './elementwise';
export { attention, attention_merge } from './attention';
export { kmeans_assign } from './kmeans';
