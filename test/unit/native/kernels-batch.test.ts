// The native kernels a decode batch runs, against the same kernels one sequence (one row) at a time, on
// every ISA level and on 1 and 2 threads: attentionSpans (every sequence of a step in one call) equals
// attention() per span — decode spans of different lengths and caches, a prefill chunk, a span long
// enough that alone its keys are split and merged; the Q8_0/Q4_0 matmul of up to 16 rows (one pass per
// column group) equals each row multiplied alone, bit for bit; kvWrite puts each span's rows where
// the cache layout says; swiglu matches its formula; argmax picks each row's first largest value.
import { describe, expect, it } from 'vitest';
import { expectNativeWhereExpected, kernels, nativeCases } from '../../helpers/native.ts';
import { TestMemory } from '../../helpers/native-memory.ts';
import { type QType, quantizeRows } from '../../helpers/quant-ref.ts';
import { rand, relErr } from '../../helpers/wasm-runtime.ts';

const H = 6;
const HKV = 2;
const D = 64;

// one sequence's cache and its rows of the step: nq new queries at positions pos.. (keys 0..pos+nq)
interface SpanCase {
  capacity: number;
  pos: number;
  nq: number;
}
const SPANS: SpanCase[] = [
  { capacity: 40, pos: 17, nq: 1 },
  { capacity: 96, pos: 80, nq: 1 },
  { capacity: 64, pos: 0, nq: 1 },
  { capacity: 720, pos: 699, nq: 1 }, // alone: keys split over chunks and merged
  { capacity: 128, pos: 40, nq: 9 }, // a prefill chunk batched with decode steps
  { capacity: 48, pos: 31, nq: 1 },
];

it('native addon loaded where expected', () => {
  expectNativeWhereExpected();
});

describe.each(nativeCases)('native decode-batch kernels, %s, %i thread(s)', (level, threads) => {
  it('attentionSpans of a step equals attention() span by span', () => {
    const k = kernels(level, threads);
    const mem = new TestMemory();
    const width = H * D;
    const rows = SPANS.reduce((s, c) => s + c.nq, 0);
    const q = mem.putF32(rand(rows * width, 3, 2));
    let row = 0;
    const spans = SPANS.map((c, i) => {
      const kv = c.capacity * HKV * D;
      const s = {
        k: mem.putF32(rand(kv, 10 + i, 2)),
        v: mem.putF32(rand(kv, 20 + i)),
        kvHeads: HKV,
        kvHeadStride: c.capacity * D,
        kvPosStride: D,
        row,
        nq: c.nq,
        qpos0: c.pos,
        nk: c.pos + c.nq,
      };
      row += c.nq;
      return s;
    });
    const scale = 1 / Math.sqrt(D);
    const batched = mem.out(rows * width);
    k.attentionSpans(mem.u8, { q, out: batched, heads: H, headDim: D, scale, spans });
    const alone = mem.out(rows * width);
    for (const s of spans)
      k.attention(mem.u8, {
        q: q + s.row * width * 4,
        k: s.k,
        v: s.v,
        out: alone + s.row * width * 4,
        nq: s.nq,
        heads: H,
        kvHeads: HKV,
        headDim: D,
        scale,
        kvHeadStride: s.kvHeadStride,
        kvPosStride: s.kvPosStride,
        qpos0: s.qpos0,
        nk: s.nk,
      });
    const got = mem.getF32(batched, rows * width);
    expect(got.some(Number.isNaN)).toBe(false);
    // the long span's keys are merged by log-sum-exp alone and not in the batch: rounding only
    expect(relErr(got, mem.getF32(alone, rows * width))).toBeLessThan(1e-6);
  });

  it('attentionSpans refuses spans of different kv heads and rows outside the memory', () => {
    const k = kernels(level, threads);
    const mem = new TestMemory();
    const q = mem.putF32(rand(2 * H * D, 1));
    const cache = mem.putF32(rand(8 * HKV * D, 2));
    const span = {
      k: cache,
      v: cache,
      kvHeads: HKV,
      kvHeadStride: 8 * D,
      kvPosStride: D,
      nq: 1,
      qpos0: 3,
      nk: 4,
    };
    const args = { q, out: mem.out(2 * H * D), heads: H, headDim: D, scale: 0.125 };
    expect(() =>
      k.attentionSpans(mem.u8, {
        ...args,
        spans: [
          { ...span, row: 0 },
          { ...span, row: 1, kvHeads: 1 },
        ],
      }),
    ).toThrow(/same kvHeads/);
    expect(() => k.attentionSpans(mem.u8, { ...args, spans: [{ ...span, row: 1e6 }] })).toThrow(
      /outside the memory/,
    );
  });

  for (const type of ['q8_0', 'q4_0'] as QType[]) {
    it(`${type}: a 16-row decode matmul equals each row alone, bit for bit`, () => {
      const k = kernels(level, threads);
      const mem = new TestMemory();
      const [M, N, K] = [16, 200, 576];
      const x = rand(M * K, 7);
      const blocks = quantizeRows(type, rand(N * K, 8), N, K);
      const src = mem.putBytes(blocks);
      const pw = mem.alloc(k.packedBytes(type, N, K));
      k.packWeights(type, mem.u8, src, N, K, mem.u8, pw);
      const bias = mem.putF32(rand(N, 9));
      const px = mem.putF32(x);
      for (const m of [16, 11, 5]) {
        const y = mem.out(m * N);
        k.matmulQ(mem.u8, type, { x: px, w: pw, bias, y, M: m, N, K });
        const all = mem.getF32(y, m * N);
        for (let r = 0; r < m; r++) {
          const one = mem.out(N);
          k.matmulQ(mem.u8, type, { x: px + r * K * 4, w: pw, bias, y: one, M: 1, N, K });
          expect(all.subarray(r * N, (r + 1) * N)).toEqual(mem.getF32(one, N));
        }
      }
    });
  }

  it('kvWrite puts each span’s rows at its cache positions, head by head', () => {
    const k = kernels(level, threads);
    const mem = new TestMemory();
    const width = HKV * D;
    const rows = 7;
    const kx = rand(rows * width, 4);
    const vx = rand(rows * width, 5);
    const kp = mem.putF32(kx);
    const vp = mem.putF32(vx);
    // two caches of capacity 16 and 10: span a writes rows 0..4 at position 3, span b rows 5..6 at 8
    const caps = [16, 10];
    const dk = caps.map((c) => mem.out(c * width));
    const dv = caps.map((c) => mem.out(c * width));
    const spans = [
      { cache: 0, pos: 3, row: 0, count: 5 },
      { cache: 1, pos: 8, row: 5, count: 2 },
    ];
    k.kvWrite(mem.u8, {
      k: kp,
      v: vp,
      width,
      headDim: D,
      spans: spans.map((s) => ({
        dk: dk[s.cache] + s.pos * D * 4,
        dv: dv[s.cache] + s.pos * D * 4,
        kvHeadStride: caps[s.cache] * D,
        row: s.row,
        count: s.count,
      })),
    });
    for (const s of spans) {
      const cap = caps[s.cache];
      const gk = mem.getF32(dk[s.cache], cap * width);
      const gv = mem.getF32(dv[s.cache], cap * width);
      for (let h = 0; h < HKV; h++)
        for (let i = 0; i < s.count; i++) {
          const src = (s.row + i) * width + h * D;
          const dst = (h * cap + s.pos + i) * D;
          expect(gk.subarray(dst, dst + D)).toEqual(kx.subarray(src, src + D));
          expect(gv.subarray(dst, dst + D)).toEqual(vx.subarray(src, src + D));
        }
      // positions before the span stay untouched (NaN from mem.out)
      expect(Number.isNaN(gk[s.pos - 1])).toBe(true);
    }
  });

  it('argmax: the first index of each row’s largest value, ties and tails included', () => {
    const k = kernels(level, threads);
    const mem = new TestMemory();
    for (const [M, N] of [
      [16, 49152 + 5],
      [3, 7],
      [2, 40],
    ]) {
      const x = rand(M * N, M + N);
      // row 0: the largest value twice (the first one wins); row 1: the largest in the tail
      x[5] = 3;
      x[N - 3] = 3;
      x[N + N - 1] = 4;
      const px = mem.putF32(x);
      const out = mem.alloc(M * 4);
      k.argmax(mem.u8, { x: px, out, M, N });
      const got = new Int32Array(mem.memory.buffer, out, M);
      for (let m = 0; m < M; m++) {
        let best = 0;
        for (let j = 1; j < N; j++) if (x[m * N + j] > x[m * N + best]) best = j;
        expect(got[m]).toBe(best);
      }
    }
  });

  it('swiglu = gate · sigmoid(gate) · up, tails included', () => {
    const k = kernels(level, threads);
    const mem = new TestMemory();
    for (const n of [5, 16 * 1536 + 3, 200_003]) {
      const g = rand(n, n, 8);
      const u = rand(n, n + 1);
      const y = mem.out(n);
      const args = { gate: mem.putF32(g), up: mem.putF32(u), y, size: n };
      // the view is taken after the allocations: growing the memory replaces its buffer object
      k.swiglu(mem.u8, args);
      const ref = Float32Array.from(g, (gv, i) => (gv / (1 + Math.exp(-gv))) * u[i]);
      expect(relErr(mem.getF32(y, n), ref)).toBeLessThan(1e-6);
    }
  });
});
