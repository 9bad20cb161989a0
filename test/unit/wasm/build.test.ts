// The kernel module is built from source (kernels/*.as) by asc from npm, cached under dist/ by a hash of
// the sources: both variants export exactly the kernels the pool dispatches to, and the plain-SIMD
// variant (for runtimes without relaxed SIMD) computes the same results as the default one.
import { describe, expect, it } from 'vitest';
import { ensureKernels, sourceHash } from '../../../gpu-runner/engine/backends/wasm/build.ts';
import { KERNEL_NAMES } from '../../../gpu-runner/engine/backends/wasm/kernel-names.ts';
import {
  relaxedSimdSupported,
  simdSupported,
  WasmRuntime,
} from '../../../gpu-runner/engine/backends/wasm/runtime.ts';
import { getF32, matmulRef, putF32, rand, relErr } from '../../helpers/wasm-runtime.ts';

describe('wasm kernel build', () => {
  it('this Node has WebAssembly SIMD and relaxed SIMD', () => {
    expect(simdSupported()).toBe(true);
    expect(relaxedSimdSupported()).toBe(true);
  });

  it.each(['fma', 'simd'] as const)(
    '%s variant exports exactly the dispatched kernels and imports only memory',
    async (v) => {
      const mod = await WebAssembly.compile(await ensureKernels(v));
      expect(
        WebAssembly.Module.exports(mod)
          .map((e) => e.name)
          .sort(),
      ).toEqual([...KERNEL_NAMES].sort());
      expect(WebAssembly.Module.imports(mod)).toEqual([{ module: 'env', name: 'memory', kind: 'memory' }]);
    },
  );

  it('the source hash is stable and differs between variants', () => {
    expect(sourceHash('fma')).toBe(sourceHash('fma'));
    expect(sourceHash('fma')).not.toBe(sourceHash('simd'));
  });

  it('the plain-SIMD variant computes a matmul like the reference (2 threads, split)', async () => {
    const rt = await WasmRuntime.create({ threads: 2, variant: 'simd', splitAll: true });
    try {
      expect(rt.variant).toBe('simd');
      const [M, N, K] = [6, 37, 70];
      const x = rand(M * K, 1);
      const w = rand(N * K, 2);
      const py = rt.mem.alloc(M * N * 4);
      rt.matmul({ x: putF32(rt, x), w: putF32(rt, w), bias: 0, y: py, M, N, K, f16: false });
      expect(relErr(getF32(rt, py, M * N), matmulRef(x, w, M, N, K))).toBeLessThan(1e-5);
    } finally {
      await rt.close();
    }
  });
});
