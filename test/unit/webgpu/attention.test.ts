// webgpu attention beyond the shared parity suite: split-KV (flash decoding) attention over hundreds of
// keys against `reference` with the split forced small and off; the squeezed/sparse ops suite
// (test/helpers/attention-ops-suite.ts) with and without splitting the gathered keys; an empty key
// selection gives out 0 and lse -inf, and merging with it is the identity; attentionRanges against
// `reference`. Tolerance 1e-5 relative.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createReferenceBackend } from '../../../gpu-runner/engine/backends/reference/index.ts';
import type { Backend, KVCache, SeqSpan } from '../../../gpu-runner/engine/backends/types.ts';
import type { WebGPUBackend } from '../../../gpu-runner/engine/backends/webgpu/index.ts';
import { WebGPUAttentionOps } from '../../helpers/attention-ops/webgpu.ts';
import { attentionOpsSuite } from '../../helpers/attention-ops-suite.ts';
import { makeWebGPU } from '../../helpers/webgpu.ts';
import { rand, relErr } from '../../helpers/wasm-runtime.ts';

for (const keysPerSplit of [32, 256]) {
  attentionOpsSuite(`webgpu (gathered keys split every ${keysPerSplit})`, async () => {
    const backend = await makeWebGPU({ keysPerSplit });
    return { backend, ops: new WebGPUAttentionOps(backend) };
  });
}

describe('webgpu split-KV decode attention', () => {
  const [H, KVH, D, CAP] = [8, 2, 32, 700];
  const ref = createReferenceBackend();
  const devs: WebGPUBackend[] = [];
  const k = rand(KVH * CAP * D, 1, 2);
  const v = rand(KVH * CAP * D, 2);
  const q = rand(5 * H * D, 3, 2);
  beforeAll(async () => {
    for (const opts of [{ keysPerSplit: 64 }, {}, { maxSplits: 1 }]) devs.push(await makeWebGPU(opts));
  });
  afterAll(() => {
    for (const d of devs) d.dispose();
  });

  async function run(b: Backend): Promise<Float32Array> {
    const caches: KVCache[] = [0, 1].map(() =>
      b.createKVCache({ layers: 2, kvHeads: KVH, headDim: D, capacity: CAP }),
    );
    for (const c of caches) b.kvLoad(c, 1, 0, { k, v });
    const qt = b.upload({ dtype: 'f32', shape: [5, H * D], data: q });
    // decode rows of two sequences (650 and 300 keys) and a 2-row step; row 4 belongs to no span
    const spans: SeqSpan[] = [
      { cache: caches[0], row: 0, count: 1, pos: 649 },
      { cache: caches[1], row: 1, count: 1, pos: 299 },
      { cache: caches[0], row: 2, count: 2, pos: 697 },
    ];
    const out = await b.read(b.attention(qt, 1, spans, H, 0.2));
    for (const c of caches) b.freeKVCache(c);
    return out;
  }

  it('matches reference with 64 keys per split, the default split, and no split', async () => {
    const want = await run(ref);
    for (const d of devs) {
      const got = await run(d);
      expect(relErr(got, want)).toBeLessThanOrEqual(1e-5);
      expect(got.subarray(4 * H * D).every((x) => x === 0)).toBe(true);
    }
    expect(devs[0].kernels.dev.rec.dispatches).toBeGreaterThan(devs[2].kernels.dev.rec.dispatches); // the split path ran (combine)
  });

  it('an empty key selection: out 0, lse -inf; merging with it changes nothing', async () => {
    const d = devs[1];
    const ops = new WebGPUAttentionOps(d);
    const cache = d.createKVCache({ layers: 1, kvHeads: KVH, headDim: D, capacity: 64 });
    d.kvLoad(cache, 0, 0, { k: rand(KVH * 64 * D, 4), v: rand(KVH * 64 * D, 5) });
    const qt = d.upload({ dtype: 'f32', shape: [3, H * D], data: rand(3 * H * D, 6) });
    const empty = ops.gathered(qt, cache, 0, [new Int32Array(0), new Int32Array(0)], H, 0.2);
    expect((await d.read(empty.out)).every((x) => x === 0)).toBe(true);
    expect((await d.read(empty.lse)).every((x) => x === Number.NEGATIVE_INFINITY)).toBe(true);
    const some = ops.gathered(qt, cache, 0, [Int32Array.from([1, 5, 9]), Int32Array.from([0, 63])], H, 0.2);
    const merged = ops.merge(some, empty, H);
    expect(await d.read(merged.out)).toEqual(await d.read(some.out));
    expect(await d.read(merged.lse)).toEqual(await d.read(some.lse));
    d.freeKVCache(cache);
  });

  it('attentionRanges (the squeezed attention step) matches reference: lists per kv head, and null = dense', async () => {
    const d = devs[0];
    const run = async (b: Backend) => {
      const caches = [0, 1].map(() =>
        b.createKVCache({ layers: 2, kvHeads: KVH, headDim: D, capacity: CAP }),
      );
      for (const c of caches) b.kvLoad(c, 1, 0, { k, v });
      const qt = b.upload({ dtype: 'f32', shape: [5, H * D], data: q });
      const spans: SeqSpan[] = [
        { cache: caches[0], row: 0, count: 3, pos: 500 },
        { cache: caches[1], row: 3, count: 1, pos: 420 },
      ];
      const lists = [[Int32Array.of(0, 64, 300, 420, 490, 503), Int32Array.of(100, 102, 495, 503)], null];
      const out = await b.read(b.attentionRanges(qt, 1, spans, lists, H, 0.2));
      expect(() =>
        b.attentionRanges(qt, 1, spans, [[Int32Array.of(0, CAP + 1), Int32Array.of(0, 1)], null], H, 0.2),
      ).toThrow(/bad range/);
      for (const c of caches) b.freeKVCache(c);
      return out;
    };
    const want = await run(ref);
    const got = await run(d);
    expect(relErr(got, want)).toBeLessThanOrEqual(1e-5);
    expect(got.subarray(4 * H * D).every((x) => x === 0)).toBe(true); // row 4: no span
  });
});
