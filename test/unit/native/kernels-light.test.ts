// The native light ops between a step's matmuls (RMSNorm, RoPE, the residual add) against the reference
// backend's, on every ISA level and on 1 and 2 threads, with shapes that have vector tails (D, headDim/2 not
// multiples of 16) and prefill-sized ones the pool splits. RoPE twice over the same positions (the addon
// keeps the cos/sin of the last positions) and then over other positions of the same count must give each
// call's own rotation. Outputs start as NaN, so an element a kernel skips fails.
import { describe, expect, it } from 'vitest';
import { ReferenceKernels } from '../../../gpu-runner/engine/backends/reference/index.ts';
import { ropeInvFreq } from '../../../gpu-runner/engine/rope.ts';
import { expectNativeWhereExpected, kernels, nativeCases } from '../../helpers/native.ts';
import { TestMemory } from '../../helpers/native-memory.ts';
import { rand, relErr } from '../../helpers/wasm-runtime.ts';

const ref = new ReferenceKernels();

it('native addon loaded where expected', () => {
  expectNativeWhereExpected();
});

describe.each(nativeCases)('native light ops, %s, %i thread(s)', (level, threads) => {
  it.each([
    [3, 40],
    [256, 576],
    [5, 17],
  ])('rmsnorm M=%i D=%i = the reference', (M, D) => {
    const k = kernels(level, threads);
    const mem = new TestMemory();
    const x = rand(M * D, M + D, 3);
    const w = rand(D, D + 1);
    const y = mem.out(M * D);
    // arguments first: growing the memory replaces its buffer, so the view is taken after the allocations
    const args = { x: mem.putF32(x), w: mem.putF32(w), y, M, D, eps: 1e-5 };
    k.rmsnorm(mem.u8, args);
    const want = ref.rmsnorm(x, w, 1e-5, M, D) as Float32Array;
    expect(relErr(mem.getF32(y, M * D), want)).toBeLessThan(1e-6);
  });

  it.each([
    [7, 3, 40], // headDim 40: half 20, a tail of 4 after one 16-lane vector
    [256, 9, 64],
    [256, 3, 64],
  ])(
    'rope M=%i, %i heads of %i = the reference; the cached angles only for the same positions',
    (M, heads, hd) => {
      const k = kernels(level, threads);
      const mem = new TestMemory();
      const width = heads * hd;
      const invFreq = ropeInvFreq({ theta: 10000, scaling: { type: 'default' } }, hd);
      const pf = mem.putF32(invFreq);
      const positionSets = [
        Int32Array.from({ length: M }, (_, i) => 500 + i),
        Int32Array.from({ length: M }, (_, i) => 500 + i),
        Int32Array.from({ length: M }, (_, i) => (i * 37) % 1000),
      ];
      positionSets.forEach((pos, s) => {
        const x = rand(M * width, M + width + s);
        const pp = mem.putBytes(new Uint8Array(pos.buffer));
        const y = mem.out(M * width);
        const args = { x: mem.putF32(x), y, positions: pp, invFreq: pf, M, width, headDim: hd };
        k.rope(mem.u8, args);
        const want = ref.rope(x, pos, invFreq, M, width, hd) as Float32Array;
        expect(relErr(mem.getF32(y, M * width), want)).toBeLessThan(1e-6);
      });
    },
  );

  it.each([5, 256 * 576 + 3])('add n=%i = a + b', (n) => {
    const k = kernels(level, threads);
    const mem = new TestMemory();
    const a = rand(n, n);
    const b = rand(n, n + 1);
    const y = mem.out(n);
    const args = { a: mem.putF32(a), b: mem.putF32(b), y, n };
    k.add(mem.u8, args);
    expect(Array.from(mem.getF32(y, n))).toEqual(Array.from(a, (v, i) => Math.fround(v + b[i])));
  });

  it('rope refuses a head size that does not divide the width', () => {
    const k = kernels(level, threads);
    const mem = new TestMemory();
    const p = mem.alloc(4096);
    expect(() =>
      k.rope(mem.u8, { x: p, y: p, positions: p, invFreq: p, M: 1, width: 48, headDim: 32 }),
    ).toThrow(/divide width/);
  });
});
