// The reuse-mode identities on the wasm backend (2 threads). Tolerance 1e-4: the wasm kernels sum in
// another order and use a polynomial exp (the same bound the wasm parity tests use for logits).
import { createWasmBackend } from '../../gpu-runner/engine/backends/wasm/index.ts';
import { reuseIdentitySuite } from '../helpers/kv-reuse-suite.ts';

reuseIdentitySuite('wasm', () => createWasmBackend({ threads: 2 }), 1e-4);
