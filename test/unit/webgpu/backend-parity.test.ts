// The webgpu backend through the shared parity suite (test/helpers/backend-parity-suite.ts) on whatever
// adapter KVRAG_WEBGPU_ADAPTER picks — in CI, Dawn's OpenGL ES backend on Mesa llvmpipe.
// Tolerances: logits 1e-4 absolute (the golden test's bound: f32 accumulation in another order, the
// device's exp), KV cache 1e-5, identities 1e-5, ops 1e-5 relative (rope 2e-5: the device's sin/cos
// after reduction to [-π, π]), f16-weight matmul 1e-6 (f16 unpacked exactly, f32 sums).
import { backendParitySuite } from '../../helpers/backend-parity-suite.ts';
import { makeWebGPU } from '../../helpers/webgpu.ts';

backendParitySuite('webgpu', 'webgpu', () => makeWebGPU(), {
  logits: 1e-4,
  kv: 1e-5,
  identities: 1e-5,
  op: 1e-5,
  rope: 2e-5,
  f16Matmul: 1e-6,
});
