// RoPE inverse frequencies θ_i = base^(−2i/d), after rope scaling (HF `_compute_*_parameters`).
import type { RopeConfig } from './model-config.ts';

/** invFreq: [headDim/2], f32. */
export function ropeInvFreq(rope: RopeConfig, headDim: number): Float32Array {
  const half = headDim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / rope.theta ** ((2 * i) / headDim);
  const s = rope.scaling;
  if (s.type === 'factors') {
    if (s.factors.length !== half)
      throw new Error(`rope factors: ${s.factors.length} for ${half} frequencies`);
    for (let i = 0; i < half; i++) inv[i] = inv[i] / s.factors[i];
  } else if (s.type === 'linear') {
    for (let i = 0; i < half; i++) inv[i] = inv[i] / s.factor;
  } else if (s.type === 'llama3') {
    const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
    const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
    for (let i = 0; i < half; i++) {
      const wavelen = (2 * Math.PI) / inv[i];
      if (wavelen < highWavelen) continue; // high frequency: unchanged
      if (wavelen > lowWavelen) {
        inv[i] = inv[i] / s.factor; // low frequency: fully scaled
      } else {
        const smooth =
          (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) /
          (s.highFreqFactor - s.lowFreqFactor);
        inv[i] = (1 - smooth) * (inv[i] / s.factor) + smooth * inv[i];
      }
    }
  }
  return inv;
}
