// Helpers for the wasm kernel tests: seeded random data, upload into a runtime's memory, and error
// measures. The straightforward TS implementations the kernels are checked against live in each test.
import type { WasmRuntime } from '../../gpu-runner/engine/backends/wasm/runtime.ts';

/** Deterministic uniform floats in [-1, 1) (mulberry32). */
export function rand(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1) * scale;
  }
  return out;
}

export function putF32(rt: WasmRuntime, data: Float32Array): number {
  const p = rt.mem.alloc(data.length * 4);
  rt.mem.f32.set(data, p / 4);
  return p;
}
export function putI32(rt: WasmRuntime, data: Int32Array | number[]): number {
  const p = rt.mem.alloc(Math.max(1, data.length) * 4);
  rt.mem.i32.set(data, p / 4);
  return p;
}
export function putU16(rt: WasmRuntime, data: Uint16Array): number {
  const p = rt.mem.alloc(data.length * 2);
  rt.mem.u16.set(data, p / 2);
  return p;
}
export function getF32(rt: WasmRuntime, p: number, n: number): Float32Array {
  return rt.mem.f32.slice(p / 4, p / 4 + n);
}
export function getI32(rt: WasmRuntime, p: number, n: number): Int32Array {
  return rt.mem.i32.slice(p / 4, p / 4 + n);
}

/** max |a − b| / (max |b| + tiny): error relative to the magnitude of the expected values. */
export function relErr(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return num / (den + 1e-30);
}

/** y[M][N] = x[M][K] · w[N][K]ᵀ in f64. */
export function matmulRef(
  x: Float32Array,
  w: Float32Array,
  M: number,
  N: number,
  K: number,
  bias?: Float32Array,
): Float32Array {
  const y = new Float32Array(M * N);
  for (let i = 0; i < M; i++)
    for (let j = 0; j < N; j++) {
      let s = bias ? bias[j] : 0;
      for (let k = 0; k < K; k++) s += x[i * K + k] * w[j * K + k];
      y[i * N + j] = s;
    }
  return y;
}
