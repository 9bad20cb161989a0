// The native backend (wasm's kernels with matmul, dense attention, KV writes and SwiGLU in the N-API
// addon) against the reference backend (test/helpers/backend-parity-suite.ts): 1 and 2 threads at the best
// ISA level this CPU has, and 2 threads at the lowest (AVX2: the int8 kernels without VNNI). Where the
// machine should build the addon and did not, the suite fails with the loader's reason instead of skipping.
// Tolerances: the wasm backend's — logits 1e-4 absolute (FMA sums in another order, the kernels' exp),
// KV cache and identities 1e-5, ops 1e-5 relative (rope 2e-5, wasm's), f16-weight matmul 1e-6 (halves
// widened exactly, f32 sums).
import { describe, it } from 'vitest';
import { createNativeBackend } from '../../../gpu-runner/engine/backends/native/backend.ts';
import { backendParitySuite } from '../../helpers/backend-parity-suite.ts';
import { expectNativeWhereExpected, native } from '../../helpers/native.ts';

describe('native backend', () => {
  it('is there wherever the addon can be built', () => expectNativeWhereExpected());
});

if (native.ok) {
  const levels = native.kernels.info().levels;
  const CONFIGS = [
    { name: `1 thread, ${levels[0]}`, threads: 1, level: levels[0] },
    { name: `2 threads, ${levels[0]}`, threads: 2, level: levels[0] },
    ...(levels.length > 1
      ? [{ name: `2 threads, ${levels[levels.length - 1]}`, threads: 2, level: levels[levels.length - 1] }]
      : []),
  ];
  for (const cfg of CONFIGS) {
    const make = async () => {
      const b = await createNativeBackend({ threads: cfg.threads });
      b.kernels.native.configure({ level: cfg.level });
      return b;
    };
    backendParitySuite(`native (${cfg.name})`, 'native', make, {
      logits: 1e-4,
      kv: 1e-5,
      identities: 1e-5,
      op: 1e-5,
      rope: 2e-5,
      f16Matmul: 1e-6,
    });
  }
}
