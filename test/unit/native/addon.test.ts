// The native addon: built and loaded wherever the machine can build it (the suite fails, with the
// loader's reason, when it should have and did not), the best ISA level chosen by cpuid, and bad calls
// refused with a message instead of touching memory out of range.
import { describe, expect, it } from 'vitest';
import { expectNativeWhereExpected, native } from '../../helpers/native.ts';
import { TestMemory } from '../../helpers/native-memory.ts';

describe('native kernel addon', () => {
  it('is built and loads where this machine can build it, else says why', () => {
    expectNativeWhereExpected();
  });

  // defined only where the addon loaded (the first test fails where it should have)
  if (!native.ok) return;
  const k = native.kernels;

  it('chooses the best ISA level the CPU supports and can be lowered', () => {
    const { levels } = k.info();
    expect(levels.length).toBeGreaterThan(0);
    k.configure({ level: levels[0], threads: 1 });
    expect(k.info().level).toBe(levels[0]);
    k.configure({ level: levels[levels.length - 1] });
    expect(k.info().level).toBe(levels[levels.length - 1]);
    const unsupported = (['avx512vnni', 'avx512', 'avx2'] as const).find((l) => !levels.includes(l));
    if (unsupported) expect(() => k.configure({ level: unsupported })).toThrow(/not supported/);
    k.configure({ level: levels[0] });
  });

  it('refuses operands outside the memory and bad arguments with a message', () => {
    const mem = new TestMemory();
    const x = mem.alloc(4 * 8 * 64);
    const y = mem.alloc(4 * 8 * 8);
    const size = mem.u8.byteLength;
    expect(() => k.matmul(mem.u8, { x, w: size - 16, bias: 0, y, M: 8, N: 8, K: 64, f16: false })).toThrow(
      /w: bytes .* outside the memory/,
    );
    expect(() => k.matmulQ(mem.u8, 'q8_0', { x, w: x, bias: 0, y, M: 1, N: 8, K: 40 })).toThrow(
      /multiple of 32/,
    );
    expect(() =>
      k.attention(mem.u8, {
        q: x,
        k: x,
        v: x,
        out: y,
        nq: 1,
        heads: 3,
        kvHeads: 2,
        headDim: 64,
        scale: 1,
        kvHeadStride: 64,
        kvPosStride: 64,
        qpos0: 0,
        nk: 1,
      }),
    ).toThrow(/multiple of kvHeads/);
  });
});
