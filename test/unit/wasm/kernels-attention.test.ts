// wasm attention kernels against a straightforward softmax(q·Kᵀ·scale)·V over an explicit key set per
// (query, head), threads 1 and 2: dense causal (GQA groups 1, 2, 4; decode and prefill), gathered keys
// (squeezed attention), block-sparse ranges (a full range list equals dense), the log-sum-exp merge of
// two disjoint partials (equals attention over the union), and k-means assignment. Tolerance 2e-5
// relative to the output magnitude (polynomial exp; different summation order).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WasmRuntime } from '../../../gpu-runner/engine/backends/wasm/runtime.ts';
import { getF32, getI32, putF32, putI32, rand, relErr } from '../../helpers/wasm-runtime.ts';

interface Case {
  nq: number;
  H: number;
  Hkv: number;
  d: number;
  cap: number; // positions allocated per kv head
}

/** out[i][h] = Σ_j softmax_j(q·k_j·scale) v_j over keys(i, h); lse[i][h] = log Σ_j exp(...). */
function attnRef(
  c: Case,
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  scale: number,
  keys: (i: number, h: number) => number[],
): { out: Float32Array; lse: Float32Array } {
  const { nq, H, Hkv, d, cap } = c;
  const out = new Float32Array(nq * H * d);
  const lse = new Float32Array(nq * H);
  for (let i = 0; i < nq; i++)
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / (H / Hkv));
      const js = keys(i, h);
      const s = js.map((j) => {
        let t = 0;
        for (let e = 0; e < d; e++) t += q[(i * H + h) * d + e] * k[(g * cap + j) * d + e];
        return t * scale;
      });
      const m = Math.max(...s);
      const p = s.map((x) => Math.exp(x - m));
      const l = p.reduce((a, b) => a + b, 0);
      lse[i * H + h] = js.length ? m + Math.log(l) : Number.NEGATIVE_INFINITY;
      js.forEach((j, n) => {
        for (let e = 0; e < d; e++) out[(i * H + h) * d + e] += (p[n] / l) * v[(g * cap + j) * d + e];
      });
    }
  return { out, lse };
}

const range = (a: number, b: number) => Array.from({ length: Math.max(0, b - a) }, (_, i) => a + i);

describe.each([1, 2])('wasm attention kernels, %i thread(s)', (threads) => {
  let rt: WasmRuntime;
  beforeAll(async () => {
    rt = await WasmRuntime.create({ threads, splitAll: true });
  });
  afterAll(async () => {
    await rt.close();
  });

  function setup(c: Case, seed: number) {
    const q = rand(c.nq * c.H * c.d, seed, 2);
    const k = rand(c.Hkv * c.cap * c.d, seed + 1, 2);
    const v = rand(c.Hkv * c.cap * c.d, seed + 2);
    return { q, k, v, pq: putF32(rt, q), pk: putF32(rt, k), pv: putF32(rt, v) };
  }

  it.each([
    { nq: 1, H: 4, Hkv: 4, d: 8, cap: 200, pos: 150 },
    { nq: 1, H: 8, Hkv: 2, d: 64, cap: 300, pos: 257 },
    { nq: 13, H: 4, Hkv: 2, d: 16, cap: 100, pos: 0 },
    { nq: 70, H: 2, Hkv: 1, d: 32, cap: 140, pos: 65 },
    { nq: 9, H: 3, Hkv: 3, d: 128, cap: 64, pos: 50 },
  ])('dense causal nq=$nq H=$H Hkv=$Hkv d=$d pos=$pos', ({ pos, ...c }) => {
    const { q, k, v, pq, pk, pv } = setup(c, c.nq + c.d);
    const scale = 1 / Math.sqrt(c.d);
    const out = rt.mem.alloc(c.nq * c.H * c.d * 4);
    const lse = rt.mem.alloc(c.nq * c.H * 4);
    rt.attention({
      q: pq,
      k: pk,
      v: pv,
      out,
      lse,
      nq: c.nq,
      heads: c.H,
      kvHeads: c.Hkv,
      headDim: c.d,
      scale,
      kvHeadStride: c.cap * c.d,
      kvPosStride: c.d,
      qpos0: pos,
      nk: c.cap,
    });
    const want = attnRef(c, q, k, v, scale, (i) => range(0, pos + i + 1));
    expect(relErr(getF32(rt, out, want.out.length), want.out)).toBeLessThan(2e-5);
    expect(relErr(getF32(rt, lse, want.lse.length), want.lse)).toBeLessThan(2e-6);
  });

  it('gathered keys per kv head (squeezed attention), including an empty selection', () => {
    const c = { nq: 3, H: 8, Hkv: 2, d: 32, cap: 500 };
    const { q, k, v, pq, pk, pv } = setup(c, 5);
    const sel = [[0, 1, 2, 7, 99, 100, 101, 250, 251, 499, ...range(300, 380)], [] as number[]];
    const idx = putI32(rt, sel.flat());
    const offs = putI32(rt, [0, sel[0].length, sel[0].length + sel[1].length]);
    const out = rt.mem.alloc(c.nq * c.H * c.d * 4);
    const lse = rt.mem.alloc(c.nq * c.H * 4);
    rt.attention({
      q: pq,
      k: pk,
      v: pv,
      out,
      lse,
      nq: c.nq,
      heads: c.H,
      kvHeads: c.Hkv,
      headDim: c.d,
      scale: 0.2,
      kvHeadStride: c.cap * c.d,
      kvPosStride: c.d,
      qpos0: -1,
      nk: c.cap,
      mode: 1,
      idx,
      offs,
    });
    const want = attnRef(c, q, k, v, 0.2, (_i, h) => sel[Math.floor(h / 4)]);
    expect(relErr(getF32(rt, out, want.out.length), want.out)).toBeLessThan(2e-5);
    const gotLse = getF32(rt, lse, want.lse.length);
    expect(gotLse.filter((x) => x === Number.NEGATIVE_INFINITY).length).toBe(c.nq * 4); // heads 4..7
    for (let i = 0; i < want.lse.length; i++)
      if (Number.isFinite(want.lse[i])) expect(Math.abs(gotLse[i] - want.lse[i])).toBeLessThan(1e-4);
  });

  it('block-sparse ranges: a full mask equals dense, a partial mask equals masked attention', () => {
    const c = { nq: 150, H: 2, Hkv: 1, d: 16, cap: 150 };
    const { q, k, v, pq, pk, pv } = setup(c, 11);
    const bq = 64;
    const nQB = Math.ceil(c.nq / bq);
    const run = (ranges: number[][][]) => {
      // ranges[h][qb] = [s0, e0, s1, e1, ...]
      const flat: number[] = [];
      const offs = [0];
      for (let h = 0; h < c.H; h++)
        for (let b = 0; b < nQB; b++) {
          flat.push(...ranges[h][b]);
          offs.push(flat.length / 2);
        }
      const out = rt.mem.alloc(c.nq * c.H * c.d * 4);
      rt.attention({
        q: pq,
        k: pk,
        v: pv,
        out,
        nq: c.nq,
        heads: c.H,
        kvHeads: c.Hkv,
        headDim: c.d,
        scale: 0.25,
        kvHeadStride: c.cap * c.d,
        kvPosStride: c.d,
        qpos0: 0,
        nk: c.cap,
        mode: 2,
        idx: putI32(rt, flat),
        offs: putI32(rt, offs),
        bq,
      });
      return getF32(rt, out, c.nq * c.H * c.d);
    };
    const full = run([0, 1].map(() => range(0, nQB).map(() => [0, c.cap])));
    const dense = attnRef(c, q, k, v, 0.25, (i) => range(0, i + 1));
    expect(relErr(full, dense.out)).toBeLessThan(2e-5);
    // sinks [0, 8) + the query block's own 64 keys + one far block for head 1 (ranges are disjoint)
    const partial = [0, 1].map((h) =>
      range(0, nQB).map((b) => [
        ...(b > 0 ? [0, 8] : []),
        b * bq,
        (b + 1) * bq,
        ...(h === 1 && b === 2 ? [64, 80] : []),
      ]),
    );
    const allowed = (i: number, h: number) => {
      const b = Math.floor(i / bq);
      const set = new Set([
        ...range(0, 8),
        ...range(b * bq, (b + 1) * bq),
        ...(h === 1 && b === 2 ? range(64, 80) : []),
      ]);
      return [...set].filter((j) => j <= i).sort((x, y) => x - y);
    };
    expect(relErr(run(partial), attnRef(c, q, k, v, 0.25, allowed).out)).toBeLessThan(2e-5);
  });

  it('log-sum-exp merge of two disjoint partials equals attention over the union', () => {
    const c = { nq: 5, H: 4, Hkv: 2, d: 24, cap: 90 };
    const { q, k, v, pq, pk, pv } = setup(c, 21);
    const n = c.nq * c.H * c.d;
    const sets = [range(0, 40), range(40, 90)];
    const parts = sets.map((s) => {
      const out = rt.mem.alloc(n * 4);
      const lse = rt.mem.alloc(c.nq * c.H * 4);
      rt.attention({
        q: pq,
        k: pk,
        v: pv,
        out,
        lse,
        nq: c.nq,
        heads: c.H,
        kvHeads: c.Hkv,
        headDim: c.d,
        scale: 0.3,
        kvHeadStride: c.cap * c.d,
        kvPosStride: c.d,
        qpos0: -1,
        nk: c.cap,
        mode: 1,
        idx: putI32(rt, [...s, ...s]),
        offs: putI32(rt, [0, s.length, 2 * s.length]),
      });
      return { out, lse };
    });
    const out = rt.mem.alloc(n * 4);
    const lse = rt.mem.alloc(c.nq * c.H * 4);
    rt.attentionMerge(parts[0].out, parts[0].lse, parts[1].out, parts[1].lse, out, lse, c.nq, c.H, c.d);
    const want = attnRef(c, q, k, v, 0.3, () => range(0, 90));
    expect(relErr(getF32(rt, out, n), want.out)).toBeLessThan(2e-5);
    expect(relErr(getF32(rt, lse, c.nq * c.H), want.lse)).toBeLessThan(2e-6);
  });

  it.each([
    [100, 16, 7],
    [33, 13, 4],
  ])('k-means assignment n=%i d=%i c=%i', (n, d, cc) => {
    const x = rand(n * d, n + d);
    const cen = rand(cc * d, cc);
    const cnorm = new Float32Array(cc);
    for (let j = 0; j < cc; j++) for (let e = 0; e < d; e++) cnorm[j] += cen[j * d + e] ** 2;
    const assign = rt.mem.alloc(n * 4);
    const dist = rt.mem.alloc(n * 4);
    rt.kmeansAssign(putF32(rt, x), putF32(rt, cen), putF32(rt, cnorm), assign, dist, n, d, cc);
    const got = getI32(rt, assign, n);
    const gotD = getF32(rt, dist, n);
    for (let i = 0; i < n; i++) {
      const ds = range(0, cc).map((j) => {
        let s = 0;
        for (let e = 0; e < d; e++) s += (x[i * d + e] - cen[j * d + e]) ** 2;
        return s;
      });
      const best = Math.min(...ds);
      // the chosen centroid is a nearest one (ties within rounding allowed) and its distance is reported
      expect(ds[got[i]] - best).toBeLessThan(1e-5);
      expect(Math.abs(gotD[i] - ds[got[i]])).toBeLessThan(1e-4);
    }
  });
});
