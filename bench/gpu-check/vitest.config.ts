// The GPU check's parity run (bench/gpu-check.sh, step 3): the webgpu suites alone, on the adapter that
// KVRAG_WEBGPU_ADAPTER names. Unlike the repository's config it has no global setup (those suites need
// no system packages, and the GPU machine can install none) and it runs from the repository root.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

/**
 * The webgpu parity suites: ops, whole-model prefill/decode, golden logits, reuse identities, f16 KV,
 * attention and sparse kernels, device loss (every suite that opens a webgpu backend).
 */
const PARITY_SUITES = [
  'test/unit/webgpu/**/*.test.ts',
  'test/unit/*webgpu*.test.ts',
  'test/unit/sparse-kernel.test.ts',
];

export default defineConfig({
  root: fileURLToPath(new URL('../..', import.meta.url)),
  test: {
    include: PARITY_SUITES,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    maxWorkers: 2,
  },
});
