// The native kv_unpack (chunk KV artifact section → cache rows: f16 widened, int8/int4 dequantized,
// Hadamard-stored keys rotated back, keys re-rotated by Δ) on every ISA level and on 1 and 2 threads,
// held to the cases and tolerances of the wasm kernel (helpers/kv-unpack-cases.ts); into f16 caches
// (the row writer narrows): every value the f32 row rounded to the nearest half; and its argument checks,
// which refuse before anything is written.
import { describe, expect, it } from 'vitest';
import { checkUnpackCase, KV_UNPACK_CASES } from '../../helpers/kv-unpack-cases.ts';
import { expectNativeWhereExpected, kernels, nativeCases } from '../../helpers/native.ts';
import { TestMemory } from '../../helpers/native-memory.ts';

it('native addon loaded where expected', () => {
  expectNativeWhereExpected();
});

describe.each(nativeCases)('native kv_unpack, %s, %i thread(s)', (level, threads) => {
  it.each(KV_UNPACK_CASES)(
    '%s, head_dim %i, key transform %s, %i tokens: values exact, keys re-rotated',
    (dtype, d, transform, n) => {
      const k = kernels(level, threads);
      checkUnpackCase(dtype, d, transform, n, (bytes, cache, inv, { dstOffset, ...args }) => {
        const mem = new TestMemory();
        const src = mem.putBytes(bytes);
        const dst = mem.putF32(cache);
        const freq = mem.putF32(inv);
        k.kvUnpack(mem.u8, { ...args, src, dst: dst + dstOffset, invFreq: freq });
        return mem.getF32(dst, cache.length);
      });
    },
  );

  it.each(KV_UNPACK_CASES.filter(([dt, d, , n]) => dt !== 'f16' && [64, 12, 8].includes(d) && n < 100))(
    'f16 cache: %s, head_dim %i, key transform %s, %i tokens = the f32 rows rounded to halves',
    (dtype, d, transform, n) => {
      const k = kernels(level, threads);
      checkUnpackCase(dtype, d, transform, n, (bytes, cache, inv, { dstOffset, ...args }) => {
        const mem = new TestMemory();
        const src = mem.putBytes(bytes);
        const freq = mem.putF32(inv);
        const dst = mem.putF32(cache);
        k.kvUnpack(mem.u8, { ...args, src, dst: dst + dstOffset, invFreq: freq });
        const f32 = mem.getF32(dst, cache.length);
        // the same section into an f16 cache of the same geometry (−7 is a half: untouched rows stay)
        const half = mem.alloc(cache.length * 2);
        new Uint16Array(mem.memory.buffer, half, cache.length).fill(0xc700);
        k.kvUnpack(mem.u8, { ...args, src, dst: half + dstOffset / 2, invFreq: freq }, true);
        const got = new Uint16Array(mem.memory.buffer.slice(half, half + cache.length * 2));
        const want = new Uint16Array(Float16Array.from(f32).buffer);
        expect(got).toEqual(want);
        return f32;
      });
    },
  );

  it('refuses sections, caches and invFreq outside the memory, and shapes it cannot decode', () => {
    const k = kernels(level, threads);
    const mem = new TestMemory();
    const d = 64;
    const n = 10;
    const src = mem.alloc(2 * n * d);
    const dst = mem.out(2 * n * d);
    const args = {
      src,
      dst,
      dtype: 'int8' as const,
      part: 'k' as const,
      kvHeads: 2,
      n,
      headDim: d,
      keyGroup: 4,
      valueGroup: 64,
      rowBytes: d,
      steps: 0,
      mins: 0,
      headStride: n * d,
      delta: 0,
      invFreq: 0,
      hadamard: false,
    };
    const end = mem.u8.byteLength;
    expect(() => k.kvUnpack(mem.u8, { ...args, src: end - 100 })).toThrow(/src: bytes/);
    expect(() => k.kvUnpack(mem.u8, { ...args, steps: end })).toThrow(/steps: bytes/);
    expect(() => k.kvUnpack(mem.u8, { ...args, dst: end - 100 })).toThrow(/dst: bytes/);
    expect(() => k.kvUnpack(mem.u8, { ...args, delta: 3, invFreq: end - 8 })).toThrow(/invFreq: bytes/);
    expect(() => k.kvUnpack(mem.u8, { ...args, headStride: n * d - 1 })).toThrow(/headStride overlaps/);
    expect(() => k.kvUnpack(mem.u8, { ...args, rowBytes: d - 1 })).toThrow(/rowBytes/);
    expect(() => k.kvUnpack(mem.u8, { ...args, headDim: 48, rowBytes: 48, hadamard: true })).toThrow(
      /power-of-two/,
    );
    expect(() => k.kvUnpack(mem.u8, { ...args, dtype: 'f16', hadamard: true })).toThrow(/int8\/int4 keys/);
    expect(() => k.kvUnpack(mem.u8, { ...args, part: 'v', valueGroup: 48 })).toThrow(/valueGroup/);
    expect(() => k.kvUnpack(mem.u8, { ...args, headDim: 2048, rowBytes: 2048 })).toThrow(/headDim above/);
    // nothing was written
    expect(mem.getF32(dst, 2 * n * d).every(Number.isNaN)).toBe(true);
  });
});
