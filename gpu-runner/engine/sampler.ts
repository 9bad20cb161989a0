// Token sampling: greedy (temperature 0), or temperature → top-k → top-p → a draw from a seeded PRNG,
// so a given seed reproduces the same tokens on any machine.
import { randomInt } from 'node:crypto';
import { type SamplingInput, type SamplingParams, samplingSchema } from '../../contracts/runner-api.ts';

/** mulberry32: a small, fast 32-bit PRNG; deterministic for a seed. Returns floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Index of the largest value; ties go to the lowest index (same as the backends' argmax). */
export function argmax(logits: Float32Array): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

export class Sampler {
  readonly params: SamplingParams;
  readonly #rand: () => number;

  constructor(params: SamplingInput = {}) {
    this.params = samplingSchema.parse(params);
    this.#rand = mulberry32(this.params.seed ?? randomInt(0, 0xffffffff));
  }

  get greedy(): boolean {
    return this.params.temperature === 0;
  }

  /** Picks the next token from one row of logits ([vocab]). */
  sample(logits: Float32Array): number {
    if (this.greedy) return argmax(logits);
    const { temperature, topK, topP } = this.params;
    if (topK === 0 && topP === 1) return this.#drawAll(logits, temperature);
    // candidates sorted by logit, descending (ties by id for determinism)
    let order = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a] || a - b);
    if (topK > 0 && topK < order.length) order = order.slice(0, topK);
    const max = logits[order[0]];
    const probs = order.map((i) => Math.exp((logits[i] - max) / temperature));
    const sum = probs.reduce((a, b) => a + b, 0);
    let keep = probs.length;
    if (topP < 1) {
      let cum = 0;
      for (let i = 0; i < probs.length; i++) {
        cum += probs[i] / sum;
        if (cum >= topP) {
          keep = i + 1;
          break;
        }
      }
    }
    const kept = probs.slice(0, keep);
    const total = kept.reduce((a, b) => a + b, 0);
    let r = this.#rand() * total;
    for (let i = 0; i < keep; i++) {
      r -= kept[i];
      if (r < 0) return order[i];
    }
    return order[keep - 1];
  }

  /** Plain temperature sampling over the whole vocabulary (no sort). */
  #drawAll(logits: Float32Array, temperature: number): number {
    const max = logits[argmax(logits)];
    const probs = new Float64Array(logits.length);
    let total = 0;
    for (let i = 0; i < logits.length; i++) total += probs[i] = Math.exp((logits[i] - max) / temperature);
    let r = this.#rand() * total;
    for (let i = 0; i < probs.length; i++) {
      r -= probs[i];
      if (r < 0) return i;
    }
    return argmax(logits);
  }
}
