// The squeezed/sparse attention ops of a backend on a real KV cache: gathered keys over the whole fixed
// context merged by log-sum-exp with key ranges over the live tokens equals dense causal attention
// (Backend.attention); a full range list equals dense; a partial key selection equals softmax attention
// over exactly those keys (straightforward TS); k-means assignment picks a nearest centroid. Tolerance
// 2e-5 relative to the output magnitude. Run by the wasm and webgpu tests.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Backend, KVCache, Tensor } from '../../gpu-runner/engine/backends/types.ts';
import type { WasmAttentionOps } from './attention-ops/wasm.ts';
import { rand, relErr } from './wasm-runtime.ts';

const H = 4;
const KVH = 2;
const D = 16;
const CAP = 160;
const F = 100; // fixed context: positions [0, F); live tokens after it
const range = (a: number, b: number) => Array.from({ length: Math.max(0, b - a) }, (_, i) => a + i);

/** The device ops beyond the Backend interface that squeezed attention and sparse prefill use. */
export type AttentionOpsLike = Pick<WasmAttentionOps, 'gathered' | 'ranges' | 'merge' | 'kmeansAssign'>;

/** Registers the suite for one backend; `make` returns a fresh backend and its attention ops. */
export function attentionOpsSuite(
  label: string,
  make: () => Promise<{ backend: Backend; ops: AttentionOpsLike }>,
): void {
  describe(`${label} attention ops`, () => {
    let dev: Backend;
    let ops: AttentionOpsLike;
    let cache: KVCache;
    let kHost: Float32Array; // [kv_head][pos][d]
    let vHost: Float32Array;
    beforeAll(async () => {
      ({ backend: dev, ops } = await make());
      cache = dev.createKVCache({ layers: 2, kvHeads: KVH, headDim: D, capacity: CAP });
      kHost = rand(KVH * CAP * D, 1, 2);
      vHost = rand(KVH * CAP * D, 2);
      dev.kvLoad(cache, 1, 0, { k: kHost, v: vHost });
    });
    afterAll(() => dev.dispose());

    const read = (t: Tensor) => dev.read(t);
    const qTensor = (rows: number, seed: number) => {
      const data = rand(rows * H * D, seed, 2);
      return { data, t: dev.upload({ dtype: 'f32', shape: [rows, H * D], data }) };
    };
    /** softmax(q·k·scale)·v over `keys` for query row i, head h, in f64 */
    const naive = (q: Float32Array, i: number, h: number, keys: number[], scale: number) => {
      const g = Math.floor(h / (H / KVH));
      const s = keys.map((j) => {
        let t = 0;
        for (let e = 0; e < D; e++) t += q[(i * H + h) * D + e] * kHost[(g * CAP + j) * D + e];
        return t * scale;
      });
      const m = Math.max(...s);
      const p = s.map((x) => Math.exp(x - m));
      const l = p.reduce((a, b) => a + b, 0);
      const out = new Float32Array(D);
      keys.forEach((j, n) => {
        for (let e = 0; e < D; e++) out[e] += (p[n] / l) * vHost[(g * CAP + j) * D + e];
      });
      return out;
    };

    it('gathered(all fixed keys) ⊕ ranges(live keys) = dense causal attention', async () => {
      const count = 37;
      const span = { cache, row: 2, count, pos: F + 3 };
      const q = qTensor(count + 4, 5);
      const scale = 0.25;
      const dense = await read(dev.attention(q.t, 1, [span], H, scale));
      const qs = dev.sliceRows(q.t, span.row, count);
      const fixed = ops.gathered(
        qs,
        cache,
        1,
        [Int32Array.from(range(0, F)), Int32Array.from(range(0, F))],
        H,
        scale,
      );
      const bs = 16;
      const live = range(0, H).map(() => range(0, Math.ceil(count / bs)).map(() => [F, CAP]));
      const rest = ops.ranges(q.t, span, 1, live, bs, H, scale);
      const merged = ops.merge(fixed, rest, H);
      const want = dense.subarray(span.row * H * D, (span.row + count) * H * D);
      expect(relErr(await read(merged.out), want)).toBeLessThan(2e-5);
    });

    it('a full range list equals dense attention; a partial selection equals attention over exactly it', async () => {
      const count = 20;
      const span = { cache, row: 0, count, pos: 130 };
      const q = qTensor(count, 9);
      const dense = await read(dev.attention(q.t, 1, [span], H, 0.3));
      const full = ops.ranges(
        q.t,
        span,
        1,
        range(0, H).map(() => range(0, 2).map(() => [0, CAP])),
        16,
        H,
        0.3,
      );
      expect(relErr(await read(full.out), dense)).toBeLessThan(2e-5);
      const sel = [Int32Array.from([0, 1, 2, 3, 50, 51, 99, 150]), Int32Array.from(range(10, 40))];
      const got = await read(ops.gathered(q.t, cache, 1, sel, H, 0.3).out);
      const want = new Float32Array(count * H * D);
      for (let i = 0; i < count; i++)
        for (let h = 0; h < H; h++)
          want.set(naive(q.data, i, h, [...sel[Math.floor(h / 2)]], 0.3), (i * H + h) * D);
      expect(relErr(got, want)).toBeLessThan(2e-5);
      expect(() => ops.gathered(q.t, cache, 1, [Int32Array.from([CAP]), new Int32Array(0)], H, 0.3)).toThrow(
        /outside/,
      );
    });

    it('k-means assignment picks a nearest centroid', async () => {
      const [n, d, c] = [50, 12, 5];
      const x = rand(n * d, 3);
      const cen = rand(c * d, 4);
      const r = ops.kmeansAssign(
        dev.upload({ dtype: 'f32', shape: [n, d], data: x }),
        dev.upload({ dtype: 'f32', shape: [c, d], data: cen }),
      );
      const assign = await dev.readInt(r.assign);
      const dist = await dev.read(r.dist);
      for (let i = 0; i < n; i++) {
        const ds = range(0, c).map((j) =>
          range(0, d).reduce((s, e) => s + (x[i * d + e] - cen[j * d + e]) ** 2, 0),
        );
        expect(ds[assign[i]] - Math.min(...ds)).toBeLessThan(1e-5);
        expect(Math.abs(dist[i] - ds[assign[i]])).toBeLessThan(1e-4);
      }
    });
  });
}
