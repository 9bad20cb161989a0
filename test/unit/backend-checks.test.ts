// The one checking layer (gpu-runner/engine/backends/checked.ts) on every backend: each op called with a
// wrong argument throws BackendArgumentError naming the op and the problem, before any kernel runs (a
// counting wrapper around the reference kernels sees no call), and leaves the backend usable; an op a
// backend lacks (caps) is refused the same way; capabilities are data matching the kernels present.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CheckedBackend } from '../../gpu-runner/engine/backends/checked.ts';
import type { Kernels } from '../../gpu-runner/engine/backends/kernels.ts';
import {
  createNativeBackend,
  nativeBackendAvailable,
} from '../../gpu-runner/engine/backends/native/backend.ts';
import {
  createReferenceBackend,
  ReferenceKernels,
} from '../../gpu-runner/engine/backends/reference/index.ts';
import type { Backend, KVCache, SeqSpan, Tensor } from '../../gpu-runner/engine/backends/types.ts';
import { createWasmBackend } from '../../gpu-runner/engine/backends/wasm/index.ts';
import { BackendArgumentError } from '../../gpu-runner/engine/errors.ts';
import { makeWebGPU } from '../helpers/webgpu.ts';

const KVH = 2;
const D = 4;
const CAP = 10;

interface Fixture {
  b: Backend;
  x: Tensor; // [4, 8] f32
  w: Tensor; // [6, 8] f32
  ids: Tensor; // i32 [3]
  cache: KVCache; // 2 layers, 2 kv heads × 4, capacity 10
  span: SeqSpan; // rows 0..3 of x at positions 0..3
}

function fixture(b: Backend): Fixture {
  const x = b.upload({
    dtype: 'f32',
    shape: [4, 8],
    data: Float32Array.from({ length: 32 }, (_, i) => i / 8),
  });
  const w = b.upload({
    dtype: 'f32',
    shape: [6, 8],
    data: Float32Array.from({ length: 48 }, (_, i) => i / 48),
  });
  const ids = b.upload({ dtype: 'i32', shape: [3], data: Int32Array.of(0, 5, 2) });
  const cache = b.createKVCache({ layers: 2, kvHeads: KVH, headDim: D, capacity: CAP });
  return { b, x, w, ids, cache, span: { cache, row: 0, count: 4, pos: 0 } };
}

type Case = [op: string, call: (f: Fixture) => unknown, problem: RegExp];

/** One wrong argument per op of the Backend interface. */
const CASES: Case[] = [
  [
    'upload',
    ({ b }) => b.upload({ dtype: 'f32', shape: [2, 3], data: new Float32Array(5) }),
    /5 values for shape \[2,3\]/,
  ],
  ['read', ({ b, ids }) => b.read(ids), /tensor must be f32, got i32/],
  ['readInt', ({ b, x }) => b.readInt(x), /tensor must be i32, got f32/],
  ['readNow', ({ b, ids }) => b.readNow(ids), /must be f32, got i32|caps\.readNow is false/],
  [
    'free',
    ({ b }) => {
      const t = b.upload({ dtype: 'f32', shape: [1], data: new Float32Array(1) });
      b.free(t);
      b.free(t);
    },
    /used after free\(\)/,
  ],
  [
    'matmul',
    ({ b, x }) => b.matmul(x, b.upload({ dtype: 'f32', shape: [6, 7], data: new Float32Array(42) })),
    /x \[4,8\] · wᵀ \[6,7\] inner dims differ/,
  ],
  [
    'rmsnorm',
    ({ b, x }) => b.rmsnorm(x, b.upload({ dtype: 'f32', shape: [5], data: new Float32Array(5) }), 1e-6),
    /weight \[5\] for rows of 8/,
  ],
  [
    'rope',
    ({ b, x, ids }) => b.rope(x, ids, b.upload({ dtype: 'f32', shape: [2], data: new Float32Array(2) }), 4),
    /x \[4,8\], positions \[3\], invFreq \[2\], headDim 4/,
  ],
  ['swiglu', ({ b, x, w }) => b.swiglu(x, w), /\[4,8\] vs \[6,8\]/],
  ['softmax', ({ b, ids }) => b.softmax(ids), /x must be a 2-D tensor, got \[3\]/],
  ['add', ({ b, x, w }) => b.add(x, w), /\[4,8\] vs \[6,8\]/],
  [
    'gather',
    ({ b, w }) => b.gather(w, b.upload({ dtype: 'i32', shape: [2], data: Int32Array.of(1, 9) })),
    /index 9 outside \[0, 6\)/,
  ],
  ['sliceRows', ({ b, x }) => b.sliceRows(x, 3, 2), /\[3, \+2\) outside 4 rows/],
  ['argmax', ({ b, ids }) => b.argmax(ids), /x must be a 2-D tensor/],
  [
    'createKVCache',
    ({ b }) => b.createKVCache({ layers: 1, kvHeads: 1, headDim: 4, capacity: -1 }),
    /capacity -1/,
  ],
  [
    'freeKVCache',
    ({ b }) => {
      const c = b.createKVCache({ layers: 1, kvHeads: 1, headDim: 4, capacity: 2 });
      b.freeKVCache(c);
      b.freeKVCache(c);
    },
    /KV cache used after freeKVCache\(\)/,
  ],
  ['kvWrite', ({ b, x, span }) => b.kvWrite(2, x, x, [span]), /layer 2 outside \[0, 2\)/],
  ['kvRead', ({ b, cache }) => b.kvRead(cache, 0, 6, 6), /positions \[6, 12\) outside capacity 10/],
  [
    'kvLoad',
    ({ b, cache }) => b.kvLoad(cache, 0, 0, { k: new Float32Array(8), v: new Float32Array(16) }),
    /block size mismatch/,
  ],
  ['kvGather', ({ b, cache }) => b.kvGather(cache, 1, -1, 2), /positions \[-1, \+2\) are not a range/],
  ['attention', ({ b, x, span }) => b.attention(x, 0, [span], 3, 0.5), /q \[4,8\] for 3×4/],
  [
    'sparseAttention',
    ({ b, x, span }) => {
      const block = [Int32Array.of(0, 5)]; // beyond the span's last position (4)
      return b.sparseAttention(x, 0, span, { blockSize: 4, ranges: [block, block], columns: [] }, 2, 0.5);
    },
    /bad range \[0, 5\)|caps\.sparseAttention is false/,
  ],
  [
    'attentionRanges',
    ({ b, x, span }) => b.attentionRanges(x, 0, [span], [[Int32Array.of(0, 4)]], 2, 0.5),
    /1 lists for 2 kv heads|caps\.attentionRanges is false/,
  ],
];

function checksSuite(name: string, make: () => Promise<Backend>): void {
  describe(`checking layer on ${name}`, () => {
    let f: Fixture;
    beforeAll(async () => {
      f = fixture(await make());
    });
    afterAll(() => f.b.dispose());

    for (const [op, call, problem] of CASES) {
      it(`${op}: a wrong argument is refused with the op and the problem`, async () => {
        let thrown: unknown;
        try {
          await call(f);
        } catch (err) {
          thrown = err;
        }
        expect(thrown).toBeInstanceOf(BackendArgumentError);
        expect((thrown as BackendArgumentError).op).toBe(op);
        expect((thrown as Error).message).toMatch(problem);
        // the backend is still usable: a valid op on the same tensors works
        expect(await f.b.read(f.b.add(f.x, f.x))).toHaveLength(32);
      });
    }

    it('a tensor or cache of another backend is refused', async () => {
      const other = createReferenceBackend();
      const t = other.upload({ dtype: 'f32', shape: [4, 8], data: new Float32Array(32) });
      const c = other.createKVCache({ layers: 1, kvHeads: KVH, headDim: D, capacity: 4 });
      expect(() => f.b.add(f.x, t)).toThrow(/add: b is a tensor from another backend/);
      expect(() => f.b.kvGather(c, 0, 0, 1)).toThrow(/kvGather: KV cache from another backend/);
      other.dispose();
    });

    it('block weights: rows of whole blocks where the kernels take them, else refused naming the backend', () => {
      const q8 = (shape: number[], bytes: number) =>
        f.b.upload({ dtype: 'q8_0', shape, data: new Uint8Array(bytes) });
      if (!f.b.caps.weightDTypes.includes('q8_0')) {
        expect(() => q8([2, 32], 2 * 34)).toThrow(
          new RegExp(`backend ${f.b.name} does not take q8_0 tensors`),
        );
        return;
      }
      expect(q8([2, 32], 2 * 34).dtype).toBe('q8_0');
      expect(() => q8([2, 40], 2 * 34)).toThrow(/upload: .*rows hold whole blocks of 32, got \[2,40\]/);
      expect(() => q8([2, 32], 2 * 34 + 1)).toThrow(/upload: 69 values for shape \[2,32\] \(q8_0\)/);
    });
  });
}

checksSuite('reference', async () => createReferenceBackend());
checksSuite('wasm', () => createWasmBackend({ threads: 1 }));
if (await nativeBackendAvailable()) checksSuite('native', () => createNativeBackend({ threads: 1 }));
checksSuite('webgpu', () => makeWebGPU());

describe('checking layer in front of the kernels', () => {
  /** The reference kernels, with every kernel call counted. */
  function counted(): { kernels: ReferenceKernels; calls: Map<string, number> } {
    const calls = new Map<string, number>();
    const real = new ReferenceKernels();
    const kernels = new Proxy(real, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver);
        if (typeof v !== 'function') return v;
        return (...args: unknown[]) => {
          calls.set(String(prop), (calls.get(String(prop)) ?? 0) + 1);
          return v.apply(target, args);
        };
      },
    });
    return { kernels, calls };
  }

  it('no wrong argument reaches a kernel', async () => {
    const { kernels, calls } = counted();
    const f = fixture(new CheckedBackend(kernels));
    const setup = new Map(calls);
    for (const [op, call] of CASES) {
      const before = calls.get(op) ?? 0;
      await Promise.resolve()
        .then(() => call(f))
        .catch(() => undefined);
      // free / freeKVCache cases free once legitimately before the wrong second call
      const legit = op === 'free' || op === 'freeKVCache' ? 1 : 0;
      expect(calls.get(op) ?? 0, op).toBe(before + legit);
    }
    expect(setup.get('upload')).toBe(3);
  });

  it('capabilities are data: what the kernels implement', async () => {
    const ref = createReferenceBackend();
    expect(ref.caps).toMatchObject({
      readNow: true,
      sparseAttention: true,
      attentionRanges: true,
      kvDType: 'f32',
    });
    expect(ref.caps.weightDTypes).toEqual(['f32', 'f16', 'q8_0', 'q4_0']);
    // kernels without the optional ones: the capabilities say so and the ops are refused by name
    const base = new ReferenceKernels();
    const optional = ['readNow', 'sparseAttention', 'attentionRanges'];
    const methods = base as unknown as Record<string, (...args: unknown[]) => unknown>;
    const plain: Record<string, unknown> = {
      name: base.name,
      weightDTypes: base.weightDTypes,
      kvDType: base.kvDType,
    };
    for (const n of Object.getOwnPropertyNames(ReferenceKernels.prototype))
      if (n !== 'constructor' && !optional.includes(n)) plain[n] = methods[n].bind(base);
    const lean = new CheckedBackend(plain as unknown as Kernels<unknown, unknown>);
    expect(lean.caps).toMatchObject({ readNow: false, sparseAttention: false, attentionRanges: false });
    const t = lean.upload({ dtype: 'f32', shape: [1, 1], data: new Float32Array(1) });
    expect(() => lean.readNow(t)).toThrow(
      /readNow: backend reference does not have it \(caps\.readNow is false\)/,
    );
    expect(await lean.read(lean.add(t, t))).toEqual(new Float32Array([0]));
    const web = await makeWebGPU();
    expect(web.caps).toMatchObject({ readNow: false, sparseAttention: true, attentionRanges: true });
    web.dispose();
    ref.dispose();
  });
});
