// The wasm backend against the reference backend (test/helpers/backend-parity-suite.ts), threads 1 and
// 2, and 2 with every op split into parts (by default small ops run inline on the calling thread).
// Tolerance for logits: 1e-4 absolute (the golden test's bound; the kernels sum in another order and
// use a polynomial exp), KV cache and the engine identities 1e-5, op-level 1e-5 relative (rope 2e-5),
// f16-weight matmul 1e-6.
import { createWasmBackend } from '../../../gpu-runner/engine/backends/wasm/index.ts';
import { backendParitySuite } from '../../helpers/backend-parity-suite.ts';

const CONFIGS = [
  { name: '1 thread', threads: 1 },
  { name: '2 threads', threads: 2 },
  { name: '2 threads, every op split into parts', threads: 2, splitAll: true },
];

for (const cfg of CONFIGS) {
  backendParitySuite(`wasm (${cfg.name})`, 'wasm', () => createWasmBackend(cfg), {
    logits: 1e-4,
    kv: 1e-5,
    identities: 1e-5,
    op: 1e-5,
    rope: 2e-5,
    f16Matmul: 1e-6,
  });
}
