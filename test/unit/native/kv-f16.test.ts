// The native backend's f16 KV cache (kvDType 'f16': backends/native/half-kv.ts and the addon's half
// paths) against the reference backend. Cache ops: kvLoad/kvRead exact on f16 values, kvWrite rounds to
// nearest even exactly as the host's f32ToF16, kvGather = kvRead. Artifact unpacks of every dtype: the f32
// cache's values rounded to f16, bit for bit (one kv_unpack for both: the row writer narrows what the f32
// cache would hold; f16 sections included, keys re-rotated). Attention of every mode (dense prefill + decode spans
// in one call, sparse prefill, key ranges) over the f16 cache = the reference over the same rounded K/V,
// within the f32 kernels' 1e-5. Whole model: logits within 1e-2 of the f32 reference (keys and values carry
// f16 rounding, 2^-11 relative; the webgpu f16 cache's bound) and greedy tokens agree.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createNativeBackend,
  type NativeBackend,
} from '../../../gpu-runner/engine/backends/native/backend.ts';
import { createReferenceBackend } from '../../../gpu-runner/engine/backends/reference/index.ts';
import type { Backend, KVBlock } from '../../../gpu-runner/engine/backends/types.ts';
import { loadEngine } from '../../../gpu-runner/engine/engine.ts';
import { f16ToF32, f32ToF16 } from '../../../gpu-runner/engine/half.ts';
import { KV_DTYPES } from '../../../gpu-runner/engine/kv/kv-codec.ts';
import { artifactPlacement, attentionModes } from '../../helpers/kv-unpack-cases.ts';
import { expectNativeWhereExpected, native } from '../../helpers/native.ts';
import { maxAbsDiff, tinyModels } from '../../helpers/tiny-model.ts';
import { rand, relErr } from '../../helpers/wasm-runtime.ts';

const round = (x: Float32Array) => f16ToF32(f32ToF16(x));
const SPEC = { layers: 2, kvHeads: 2, headDim: 32, capacity: 96 };

it('native addon loaded where expected', () => expectNativeWhereExpected());

describe.skipIf(!native.ok)('native f16 KV cache', () => {
  let ref: Backend;
  let f16: NativeBackend;
  let f32: NativeBackend;
  const models = tinyModels();
  beforeAll(async () => {
    ref = createReferenceBackend();
    f16 = await createNativeBackend({ threads: 2, kvDType: 'f16' });
    f32 = await createNativeBackend({ threads: 2 });
  });
  afterAll(() => {
    for (const b of [ref, f16, f32]) b.dispose();
    models.cleanup();
  });

  it('kvLoad/kvRead are exact on f16 values; kvWrite rounds as the host; kvGather = kvRead', async () => {
    expect(f16.caps.kvDType).toBe('f16');
    const c = f16.createKVCache(SPEC);
    const block = { k: rand(2 * 5 * 32, 1, 3), v: rand(2 * 5 * 32, 2, 3) };
    f16.kvLoad(c, 1, 3, block);
    const got = await f16.kvRead(c, 1, 3, 5);
    expect(got.k).toEqual(round(block.k));
    expect(got.v).toEqual(round(block.v));
    // rows 1..3 of k/v [4, 64] (tiny and large magnitudes: subnormal halves, rounding ties) → positions 7..9
    const k = rand(4 * 64, 3, 3).map((x, i) => (i % 5 === 0 ? x * 1e-6 : x));
    const v = rand(4 * 64, 4, 300);
    f16.kvWrite(
      0,
      f16.upload({ dtype: 'f32', shape: [4, 64], data: k }),
      f16.upload({ dtype: 'f32', shape: [4, 64], data: v }),
      [{ cache: c, row: 1, count: 3, pos: 7 }],
    );
    const w = await f16.kvRead(c, 0, 7, 3); // [kv_head][pos][d]
    const want = (x: Float32Array) =>
      round(
        Float32Array.from(
          { length: 2 * 3 * 32 },
          (_, i) => x[(1 + ((i >> 5) % 3)) * 64 + (i >> 5 >= 3 ? 32 : 0) + (i & 31)],
        ),
      );
    expect(w.k).toEqual(want(k));
    expect(w.v).toEqual(want(v));
    const g = f16.kvGather(c, 0, 7, 3); // [pos][kv_head·d]
    const gk = await f16.read(g.k);
    expect(
      Float32Array.from(
        { length: 2 * 3 * 32 },
        (_, i) => gk[((i >> 5) % 3) * 64 + (i >> 5 >= 3 ? 32 : 0) + (i & 31)],
      ),
    ).toEqual(w.k);
    f16.freeKVCache(c);
  });

  it.each(KV_DTYPES)('kvUnpack of a %s artifact = the f32 cache’s unpack rounded to f16', async (dtype) => {
    const unpack = artifactPlacement(dtype, SPEC);
    for (const delta of [0, 7, -3]) {
      const a = await unpack(f32, delta);
      const h = await unpack(f16, delta);
      expect(h.v).toEqual(round(a.v));
      expect(h.k).toEqual(round(a.k));
    }
  });

  it('dense, sparse and key-range attention over the f16 cache = the reference over the rounded K/V', async () => {
    const H = 6;
    const d = SPEC.headDim;
    // two sequences: 70 positions (prefill 20 at 50) and 61 (decode 1 at 60)
    const lens = [70, 61];
    const blocks: KVBlock[] = lens.map((n, i) => ({
      k: round(rand(2 * n * d, 10 + i, 2)),
      v: round(rand(2 * n * d, 20 + i, 2)),
    }));
    const q = rand(21 * H * d, 30, 1);
    const run = (b: Backend) => attentionModes(b, SPEC, blocks, q, H);
    const want = await run(ref);
    const got = await run(f16);
    for (const key of ['dense', 'sparse', 'lse', 'ranges'] as const)
      expect(relErr(got[key], want[key]), key).toBeLessThan(1e-5);
  });

  it('whole-model logits within 1e-2 of the f32 reference; greedy tokens agree', async () => {
    const dir = models.make('kv16n', { arch: 'llama', seed: 8, heads: 8, kvHeads: 2 });
    const r = await loadEngine(dir);
    const dev = await loadEngine(dir, { backend: await createNativeBackend({ threads: 2, kvDType: 'f16' }) });
    const prompt = Array.from({ length: 40 }, (_, i) => (i * 13 + 5) % 256);
    const run = async (e: typeof r) => {
      const kv = e.newSequence(48);
      const out = [await e.forward([{ kv, tokens: prompt }], 'all')];
      for (let s = 0; s < 3; s++) out.push(await e.forward([{ kv, tokens: [s + 1] }]));
      kv.free();
      return out;
    };
    const a = await run(r);
    const b = await run(dev);
    for (let i = 0; i < a.length; i++) expect(maxAbsDiff(b[i], a[i])).toBeLessThanOrEqual(1e-2);
    const greedy = async (e: typeof r) => (await e.generate([{ prompt, maxTokens: 12 }]))[0].tokens;
    expect(await greedy(dev)).toEqual(await greedy(r));
    r.dispose();
    dev.dispose();
  });
});
