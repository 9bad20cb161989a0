// wasm row/elementwise kernels against straightforward TS versions, threads 1 and 2. Tolerances: exact
// for add/gather/argmax; 2e-6 relative for rmsnorm; 1e-5 for softmax/swiglu (polynomial exp, ~2 ulp);
// 1e-5 absolute for RoPE (f32 sin/cos vs f64 rounded to f32 at angles up to ~5e4 rad).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { f16ToF32, f32ToF16 } from '../../../gpu-runner/engine/half.ts';
import { WasmRuntime } from '../../../gpu-runner/engine/backends/wasm/runtime.ts';
import { getF32, getI32, putF32, putI32, putU16, rand, relErr } from '../../helpers/wasm-runtime.ts';

describe.each([1, 2])('wasm elementwise kernels, %i thread(s)', (threads) => {
  let rt: WasmRuntime;
  beforeAll(async () => {
    rt = await WasmRuntime.create({ threads, splitAll: true });
  });
  afterAll(async () => {
    await rt.close();
  });

  it.each([
    [1, 7],
    [5, 64],
    [9, 130],
  ])('rmsnorm M=%i D=%i', (M, D) => {
    const x = rand(M * D, D, 3);
    const w = rand(D, D + 1);
    const eps = 1e-5;
    const want = new Float32Array(M * D);
    for (let i = 0; i < M; i++) {
      let ss = 0;
      for (let t = 0; t < D; t++) ss += x[i * D + t] ** 2;
      const inv = 1 / Math.sqrt(ss / D + eps);
      for (let t = 0; t < D; t++) want[i * D + t] = x[i * D + t] * inv * w[t];
    }
    const py = rt.mem.alloc(M * D * 4);
    rt.rmsnorm(putF32(rt, x), putF32(rt, w), py, M, D, eps);
    expect(relErr(getF32(rt, py, M * D), want)).toBeLessThan(2e-6);
  });

  it.each([
    [1, 2, 8],
    [6, 3, 64],
    [11, 2, 20],
  ])('rope M=%i heads=%i headDim=%i, positions and negative deltas', (M, heads, hd) => {
    const width = heads * hd;
    const half = hd / 2;
    const x = rand(M * width, M + hd);
    const inv = Float32Array.from({ length: half }, (_, i) => 1 / 10000 ** ((2 * i) / hd));
    const pos = Int32Array.from({ length: M }, (_, i) => (i % 2 ? 50_000 - 37 * i : -3 * i));
    const want = new Float32Array(M * width);
    for (let r = 0; r < M; r++)
      for (let h = 0; h < heads; h++)
        for (let i = 0; i < half; i++) {
          const a = Math.fround(pos[r] * inv[i]);
          const o = r * width + h * hd;
          const u = x[o + i];
          const v = x[o + i + half];
          want[o + i] = u * Math.cos(a) - v * Math.sin(a);
          want[o + i + half] = v * Math.cos(a) + u * Math.sin(a);
        }
    const py = rt.mem.alloc(M * width * 4);
    rt.rope(putF32(rt, x), py, putI32(rt, pos), putF32(rt, inv), M, width, hd);
    const got = getF32(rt, py, M * width);
    let err = 0;
    for (let i = 0; i < got.length; i++) err = Math.max(err, Math.abs(got[i] - want[i]));
    expect(err).toBeLessThan(1e-5);
  });

  it.each([1, 5, 4099])('swiglu and add, n=%i', (n) => {
    const g = rand(n, n, 12);
    const u = rand(n, n + 1, 2);
    const py = rt.mem.alloc(n * 4);
    const pg = putF32(rt, g);
    const pu = putF32(rt, u);
    rt.swiglu(pg, pu, py, n);
    const want = g.map((gv, i) => (gv / (1 + Math.exp(-gv))) * u[i]);
    expect(relErr(getF32(rt, py, n), want)).toBeLessThan(1e-5);
    rt.add(pg, pu, py, n);
    expect(getF32(rt, py, n)).toEqual(g.map((gv, i) => gv + u[i]));
  });

  it.each([
    [1, 1],
    [3, 5],
    [7, 1000],
  ])('softmax M=%i N=%i', (M, N) => {
    const x = rand(M * N, N, 30);
    const want = new Float32Array(M * N);
    for (let i = 0; i < M; i++) {
      const row = Array.from(x.subarray(i * N, i * N + N));
      const m = Math.max(...row);
      const s = row.reduce((a, v) => a + Math.exp(v - m), 0);
      row.forEach((v, j) => {
        want[i * N + j] = Math.exp(v - m) / s;
      });
    }
    const py = rt.mem.alloc(M * N * 4);
    rt.softmax(putF32(rt, x), py, M, N);
    expect(relErr(getF32(rt, py, M * N), want)).toBeLessThan(1e-5);
  });

  it('argmax returns the first index of the maximum, ties across lanes included', () => {
    const M = 5;
    const N = 103;
    const x = rand(M * N, 9);
    x[0 * N + 50] = 7; // unique max in a lane ≠ 0
    x[1 * N + 9] = 7; // tie: index 9 (lane 1) before 14 (lane 2) and 101 (scalar tail)
    x[1 * N + 14] = 7;
    x[1 * N + 101] = 7;
    x[2 * N + 102] = 9; // max in the scalar tail
    x.fill(-1, 3 * N, 4 * N); // all equal → 0
    const py = rt.mem.alloc(M * 4);
    rt.argmax(putF32(rt, x), py, M, N);
    const want = [];
    for (let i = 0; i < M; i++) {
      let b = 0;
      for (let j = 1; j < N; j++) if (x[i * N + j] > x[i * N + b]) b = j;
      want.push(b);
    }
    expect(Array.from(getI32(rt, py, M))).toEqual(want);
    expect(want.slice(0, 4)).toEqual([50, 9, 102, 0]);
  });

  it('gather picks rows of f32 and f16 tables', () => {
    const V = 40;
    const D = 18;
    const t = rand(V * D, 3);
    const t16 = f32ToF16(t);
    const ids = [3, 0, 39, 3, 17];
    const py = rt.mem.alloc(ids.length * D * 4);
    const pid = putI32(rt, ids);
    rt.gather(putF32(rt, t), pid, py, ids.length, D, false);
    const want = new Float32Array(ids.length * D);
    ids.forEach((id, r) => {
      want.set(t.subarray(id * D, id * D + D), r * D);
    });
    expect(getF32(rt, py, want.length)).toEqual(want);
    rt.gather(putU16(rt, t16), pid, py, ids.length, D, true);
    const w16 = f16ToF32(t16);
    ids.forEach((id, r) => {
      want.set(w16.subarray(id * D, id * D + D), r * D);
    });
    expect(getF32(rt, py, want.length)).toEqual(want);
  });
});
