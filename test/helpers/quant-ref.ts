// Plain TypeScript reference for the int8 kernel tests: ggml Q8_0 / Q4_0 block encoding (as ggml's
// reference quantizers do it), dequantization, and the error bound of multiplying by activations that
// the kernels quantize to Q8_0 on the fly.
import { f16ToF32, f32ToF16 } from '../../gpu-runner/engine/half.ts';

export type QType = 'q8_0' | 'q4_0';
export const BLOCK_BYTES: Record<QType, number> = { q8_0: 34, q4_0: 18 };

/** rows w [N][K] (K % 32 = 0) → ggml blocks [N][K/32] */
export function quantizeRows(type: QType, w: Float32Array, N: number, K: number): Uint8Array {
  const nb = K / 32;
  const out = new Uint8Array(N * nb * BLOCK_BYTES[type]);
  const dv = new DataView(out.buffer);
  for (let n = 0; n < N; n++)
    for (let b = 0; b < nb; b++) {
      const src = w.subarray(n * K + b * 32, n * K + b * 32 + 32);
      const o = (n * nb + b) * BLOCK_BYTES[type];
      if (type === 'q8_0') {
        let amax = 0;
        for (const v of src) amax = Math.max(amax, Math.abs(v));
        const d = amax / 127;
        const id = d ? 1 / d : 0;
        dv.setUint16(o, f32ToF16(Float32Array.of(d))[0], true);
        for (let i = 0; i < 32; i++) dv.setInt8(o + 2 + i, Math.round(src[i] * id));
      } else {
        // ggml: the signed value of largest magnitude maps to -8
        let max = 0;
        for (const v of src) if (Math.abs(v) > Math.abs(max)) max = v;
        const d = max / -8;
        const id = d ? 1 / d : 0;
        dv.setUint16(o, f32ToF16(Float32Array.of(d))[0], true);
        for (let i = 0; i < 16; i++) {
          const lo = Math.min(15, Math.trunc(src[i] * id + 8.5));
          const hi = Math.min(15, Math.trunc(src[i + 16] * id + 8.5));
          out[o + 2 + i] = lo | (hi << 4);
        }
      }
    }
  return out;
}

/** ggml blocks → f32 rows [N][K]: Q8_0 q·d, Q4_0 (q − 8)·d */
export function dequantizeRows(type: QType, bytes: Uint8Array, N: number, K: number): Float32Array {
  const nb = K / 32;
  const out = new Float32Array(N * K);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let n = 0; n < N; n++)
    for (let b = 0; b < nb; b++) {
      const o = (n * nb + b) * BLOCK_BYTES[type];
      const d = f16ToF32(Uint16Array.of(dv.getUint16(o, true)))[0];
      for (let i = 0; i < 32; i++) {
        const q =
          type === 'q8_0'
            ? dv.getInt8(o + 2 + i)
            : i < 16
              ? (bytes[o + 2 + i] & 15) - 8
              : (bytes[o + 2 + i - 16] >> 4) - 8;
        out[n * K + b * 32 + i] = q * d;
      }
    }
  return out;
}

/**
 * Per output y[m][n], the bound on |y_kernel − x·wᵀ| when x is quantized per 32-block to q = round(x/d),
 * d = max|x_block|/127: each element moves by at most d/2, so the error is ≤ Σ_b d_b/2 · Σ_{k∈b} |w_nk|,
 * plus f32 rounding of the sums (rel. 1e-5 of Σ|x||w|, far above K · 2^-24 for these sizes).
 */
export function quantizedActivationBound(
  x: Float32Array,
  w: Float32Array,
  M: number,
  N: number,
  K: number,
): Float32Array {
  const out = new Float32Array(M * N);
  for (let m = 0; m < M; m++) {
    const dx: number[] = [];
    for (let b = 0; b < K / 32; b++) {
      let amax = 0;
      for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(x[m * K + b * 32 + i]));
      dx.push(amax / 127);
    }
    for (let n = 0; n < N; n++) {
      let q = 0;
      let mag = 0;
      for (let k = 0; k < K; k++) {
        const aw = Math.abs(w[n * K + k]);
        q += (dx[k >> 5] / 2) * aw;
        mag += Math.abs(x[m * K + k]) * aw;
      }
      out[m * N + n] = q * 1.001 + 1e-5 * mag + 1e-7;
    }
  }
  return out;
}
