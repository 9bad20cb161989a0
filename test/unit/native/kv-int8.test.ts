// The native backend's int8 KV cache (kvDType 'int8': a head's row of values as int8 codes plus one f32 scale,
// symmetric per row, as ggml's Q8_0 rule over the row: s = max|x| / 127, q = round-half-even(x · 127 / max|x|),
// value = s · q). Cache ops against a host quantizer written from that rule: kvLoad / kvWrite store exactly its
// codes and scales (kvRead = s · q), kvGather = kvRead. Artifact unpacks of every dtype (keys re-rotated) =
// the f32 cache's unpack quantized by the same rule, bit for bit. Attention of every mode (dense prefill and
// decode spans in one call, one long decode span split over key chunks, sparse prefill, key ranges) = the
// reference over the dequantized K/V within the f32 kernels' 1e-5, and within the bound the quantization
// itself implies against the reference over the unquantized K/V (derived below). The scheduler counts a
// row's bytes plus its scale, which is what the caches hold. On the bundled model: greedy tokens of a short
// generation against the f16 cache's, and a squeezed request decodes over the int8 cache (the fused step reads
// int8 rows: squeezed-engine.test.ts).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUNDLED_MODEL_DIR } from '../../../cli/model-dir.ts';
import {
  createNativeBackend,
  type NativeBackend,
} from '../../../gpu-runner/engine/backends/native/backend.ts';
import { createReferenceBackend } from '../../../gpu-runner/engine/backends/reference/index.ts';
import type { Backend, KVBlock } from '../../../gpu-runner/engine/backends/types.ts';
import { loadEngine } from '../../../gpu-runner/engine/engine.ts';
import { kvBytesPerPosition, Scheduler } from '../../../gpu-runner/engine/generate/scheduler.ts';
import { KV_DTYPES } from '../../../gpu-runner/engine/kv/kv-codec.ts';
import { artifactPlacement, attentionModes } from '../../helpers/kv-unpack-cases.ts';
import { expectNativeWhereExpected, native } from '../../helpers/native.ts';
import { rand, relErr } from '../../helpers/wasm-runtime.ts';

const SPEC = { layers: 2, kvHeads: 2, headDim: 32, capacity: 640 };

/** round half to even (the addon's vcvtps2dq / lrintf under the default rounding mode) */
function rint(v: number): number {
  const r = Math.round(v);
  return Math.abs(v - Math.trunc(v)) === 0.5 ? 2 * Math.round(v / 2) : r;
}

/** The rule, in f32 arithmetic: rows of d values → codes and scales, and the values s · q the cache holds. */
function quantize(x: Float32Array, d: number): { q: Int8Array; s: Float32Array; deq: Float32Array } {
  const rows = x.length / d;
  const q = new Int8Array(x.length);
  const s = new Float32Array(rows);
  const deq = new Float32Array(x.length);
  for (let r = 0; r < rows; r++) {
    let amax = 0;
    for (let c = 0; c < d; c++) amax = Math.max(amax, Math.abs(x[r * d + c]));
    s[r] = amax / 127;
    const inv = amax > 0 ? Math.fround(127 / amax) : 0;
    for (let c = 0; c < d; c++) {
      q[r * d + c] = rint(Math.fround(x[r * d + c] * inv));
      deq[r * d + c] = Math.fround(s[r] * q[r * d + c]);
    }
  }
  return { q, s, deq };
}
/** the cache's values of a KVBlock, [kv_head][pos][d] rows quantized */
const deqBlock = (b: KVBlock, d: number): KVBlock => ({ k: quantize(b.k, d).deq, v: quantize(b.v, d).deq });

it('native addon loaded where expected', () => expectNativeWhereExpected());

describe.skipIf(!native.ok)('native int8 KV cache', () => {
  let ref: Backend;
  let q8: NativeBackend;
  let f32: NativeBackend;
  beforeAll(async () => {
    ref = createReferenceBackend();
    q8 = await createNativeBackend({ threads: 2, kvDType: 'int8' });
    f32 = await createNativeBackend({ threads: 2 });
  });
  afterAll(() => {
    for (const b of [ref, q8, f32]) b.dispose();
  });

  it('kvLoad and kvWrite store the rule’s codes and scales (kvRead = s · q); kvGather = kvRead', async () => {
    expect(q8.caps.kvDType).toBe('int8');
    const d = SPEC.headDim;
    const c = q8.createKVCache(SPEC);
    // a zero row, a row of one sign, tiny and large magnitudes
    const k = rand(2 * 5 * d, 1, 3).map((x, i) => (i < d ? 0 : i < 2 * d ? Math.abs(x) : x));
    const block = { k, v: rand(2 * 5 * d, 2, 300).map((x, i) => (i % 7 === 0 ? x * 1e-6 : x)) };
    q8.kvLoad(c, 1, 3, block);
    const got = await q8.kvRead(c, 1, 3, 5);
    expect(got.k).toEqual(quantize(block.k, d).deq);
    expect(got.v).toEqual(quantize(block.v, d).deq);
    // rows 1..3 of k/v [4, 64] → positions 7..9: the same rule on each (kv head, position) row
    const wk = rand(4 * 64, 3, 3);
    const wv = rand(4 * 64, 4, 0.01);
    q8.kvWrite(
      0,
      q8.upload({ dtype: 'f32', shape: [4, 64], data: wk }),
      q8.upload({ dtype: 'f32', shape: [4, 64], data: wv }),
      [{ cache: c, row: 1, count: 3, pos: 7 }],
    );
    const w = await q8.kvRead(c, 0, 7, 3); // [kv_head][pos][d]
    const rows = (x: Float32Array) =>
      Float32Array.from(
        { length: 2 * 3 * d },
        (_, i) => x[(1 + ((i >> 5) % 3)) * 64 + (i >> 5 >= 3 ? 32 : 0) + (i & 31)],
      );
    expect(w.k).toEqual(quantize(rows(wk), d).deq);
    expect(w.v).toEqual(quantize(rows(wv), d).deq);
    const g = q8.kvGather(c, 0, 7, 3); // [pos][kv_head·d]
    const gk = await q8.read(g.k);
    expect(rows(Float32Array.from({ length: 4 * 64 }, (_, i) => (i < 64 ? 0 : gk[i - 64])))).toEqual(w.k);
    q8.freeKVCache(c);
  });

  it('growing a cache (kvGather, then kvWrite into a larger one, as copyFrom) keeps its values', async () => {
    const d = SPEC.headDim;
    const a = q8.createKVCache(SPEC);
    const b = q8.createKVCache({ ...SPEC, capacity: SPEC.capacity + 64 });
    const block = { k: rand(2 * 40 * d, 8, 5), v: rand(2 * 40 * d, 9, 0.3) };
    q8.kvLoad(a, 1, 0, block);
    const { k, v } = q8.kvGather(a, 1, 0, 40);
    q8.kvWrite(1, k, v, [{ cache: b, row: 0, count: 40, pos: 0 }]);
    // a row of s · q requantizes to the same codes (its max is s · 127), its scale to within an f32 rounding
    const was = await q8.kvRead(a, 1, 0, 40);
    const now = await q8.kvRead(b, 1, 0, 40);
    for (const part of ['k', 'v'] as const)
      for (let i = 0; i < was[part].length; i++)
        expect(Math.abs(now[part][i] - was[part][i])).toBeLessThanOrEqual(Math.abs(was[part][i]) * 2 ** -23);
    q8.freeKVCache(a);
    q8.freeKVCache(b);
  });

  it.each(KV_DTYPES)(
    'kvUnpack of a %s artifact = the f32 cache’s unpack, quantized by the rule',
    async (dtype) => {
      const d = SPEC.headDim;
      const unpack = artifactPlacement(dtype, SPEC);
      for (const delta of [0, 7, -3]) {
        const a = await unpack(f32, delta);
        const got = await unpack(q8, delta);
        expect(got.v).toEqual(quantize(a.v, d).deq);
        expect(got.k).toEqual(quantize(a.k, d).deq);
      }
    },
  );

  it('attention of every mode = the reference over the dequantized K/V, and within the quantization bound of the unquantized', async () => {
    const H = 6;
    const d = SPEC.headDim;
    const scale = 1 / Math.sqrt(d);
    // three sequences: 70 positions (prefill 20 at 50), 61 (decode 1 at 60), 600 (decode 1 at 599)
    const lens = [70, 61, 600];
    const blocks: KVBlock[] = lens.map((n, i) => ({
      k: rand(2 * n * d, 10 + i, 2),
      v: rand(2 * n * d, 20 + i, 2),
    }));
    const q = rand(22 * H * d, 30, 1);
    const run = async (b: Backend, kv: KVBlock[]) => {
      const { caches, ...modes } = await attentionModes(b, SPEC, kv, q, H);
      // one decode span alone: its keys are split over chunks run in parallel, then merged
      const q1 = b.upload({ dtype: 'f32', shape: [1, H * d], data: q.subarray(21 * H * d) });
      const long = await b.read(
        b.attention(q1, 1, [{ cache: caches[2], row: 0, count: 1, pos: 599 }], H, scale),
      );
      return { ...modes, long };
    };
    const got = await run(q8, blocks);
    const want = await run(
      ref,
      blocks.map((b) => deqBlock(b, d)),
    );
    for (const key of ['dense', 'long', 'sparse', 'lse', 'ranges'] as const)
      expect(relErr(got[key], want[key]), key).toBeLessThan(1e-5);
    // Against the unquantized K/V: each key row's codes are off by at most s_k/2 per value (round to
    // nearest), so a score q·k·scale moves by at most δ = scale · ‖q‖₁ · max s_k / 2; shifting every score
    // by at most δ moves each softmax weight by a factor within e^{±2δ}, so Σ|p' − p| ≤ e^{2δ} − 1 and the
    // output moves by at most (e^{2δ} − 1) · max|v| from the weights plus max s_v / 2 from the values.
    const exact = await run(ref, blocks);
    const sMax = (x: Float32Array) => Math.max(...quantize(x, d).s);
    const kS = Math.max(...blocks.map((b) => sMax(b.k)));
    const vS = Math.max(...blocks.map((b) => sMax(b.v)));
    const vMax = Math.max(...blocks.map((b) => Math.max(...b.v.map(Math.abs))));
    let q1 = 0;
    for (let r = 0; r < 22 * H; r++) {
      let n1 = 0;
      for (let c = 0; c < d; c++) n1 += Math.abs(q[r * d + c]);
      q1 = Math.max(q1, n1);
    }
    const delta = (scale * q1 * kS) / 2;
    const bound = (Math.exp(2 * delta) - 1) * vMax + vS / 2 + 1e-5;
    for (const key of ['dense', 'long', 'ranges'] as const) {
      let worst = 0;
      for (let i = 0; i < got[key].length; i++)
        worst = Math.max(worst, Math.abs(got[key][i] - exact[key][i]));
      expect(worst, key).toBeLessThanOrEqual(bound);
      expect(worst, key).toBeGreaterThan(0); // the cache did quantize
    }
  });

  it('the scheduler counts int8 rows plus their scales, the bytes the caches hold', async () => {
    const cfg = { layers: 30, kvHeads: 3, headDim: 64 } as Parameters<typeof kvBytesPerPosition>[0];
    expect(kvBytesPerPosition(cfg, 'int8')).toBe(2 * 30 * 3 * (64 + 4));
    expect(kvBytesPerPosition(cfg, 'f16')).toBe(2 * 30 * 3 * 128);
    const mem = q8.kernels.rt.mem;
    const before = mem.used;
    const c = q8.createKVCache(SPEC);
    const held = mem.used - before;
    const counted = SPEC.capacity * kvBytesPerPosition({ ...cfg, ...SPEC } as typeof cfg, 'int8');
    // four allocations (codes, scales of K and V), each rounded up to 64 bytes
    expect(held).toBeGreaterThanOrEqual(counted);
    expect(held).toBeLessThan(counted + 4 * 64);
    q8.freeKVCache(c);
    expect(mem.used).toBe(before);
  });
});

describe.skipIf(!native.ok)('int8 KV cache on the bundled model', () => {
  it('greedy tokens of a short generation match the f16 cache’s; a squeezed request decodes over the int8 cache', async () => {
    const engines = await Promise.all(
      (['f16', 'int8'] as const).map(async (kvDType) =>
        loadEngine(BUNDLED_MODEL_DIR, { backend: await createNativeBackend({ threads: 2, kvDType }) }),
      ),
    );
    try {
      const prompt = engines[0].encode(
        'Record 7: amber. Record 12: cobalt. Record 31: violet. Record 44: olive. Question: Record 12?',
      );
      const [a, b] = await Promise.all(
        engines.map(async (e) => (await e.generate([{ prompt, maxTokens: 16 }]))[0].tokens),
      );
      expect(b).toEqual(a);
      // a squeezed request is queued as asked: the fused step reads int8 rows (squeezed-engine.test.ts)
      const s = new Scheduler(engines[1], { background: false });
      const seq = s.enqueue({
        system: [],
        chunks: [],
        question: prompt,
        mode: 'full',
        maxTokens: 4,
        stopTokenIds: [],
        squeezed: { kind: 'budget', fraction: 0.25 },
      });
      expect(seq.req.squeezed).toEqual({ kind: 'budget', fraction: 0.25 });
      await s.run();
      expect((await seq.done).completionTokens).toBe(4);
    } finally {
      for (const e of engines) e.dispose();
    }
  });
});
