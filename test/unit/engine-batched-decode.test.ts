// Batched decode amortizes the weights: B sequences decoding together go through one forward per step,
// so every weight matrix is multiplied once per step with M = B rows (not B times with one row), on the
// quantized weights as on f32, and each sequence gets the tokens it gets alone.
import { afterAll, describe, expect, it } from 'vitest';
import { createReferenceBackend } from '../../gpu-runner/engine/backends/reference/index.ts';
import type { Backend, Tensor } from '../../gpu-runner/engine/backends/types.ts';
import { loadEngine } from '../../gpu-runner/engine/engine.ts';
import { tinyModels } from '../helpers/tiny-model.ts';

const models = tinyModels();
afterAll(() => models.cleanup());

/** The reference backend with the rows (M) of every matmul whose weight is a model matrix recorded. */
function counting(): { backend: Backend; rows: Map<Tensor, number[]> } {
  const backend = createReferenceBackend();
  const rows = new Map<Tensor, number[]>();
  const matmul = backend.matmul.bind(backend);
  backend.matmul = (x, w, bias) => {
    rows.set(w, [...(rows.get(w) ?? []), x.shape[0]]);
    return matmul(x, w, bias);
  };
  return { backend, rows };
}

describe('batched decode', () => {
  it.each(['f32', 'q8_0'] as const)(
    '%s weights: B sequences read each weight once per step, as one matmul of B rows',
    async (weightDType) => {
      const dir = models.make('llama', { arch: 'llama', seed: 2 });
      const { backend, rows } = counting();
      const engine = await loadEngine(dir, { backend, weightDType });
      const B = 5;
      const steps = 6;
      const prompts = Array.from({ length: B }, (_, b) =>
        Array.from({ length: 3 + b }, (_, i) => 40 + i + b),
      );
      const together = await engine.generate(
        prompts.map((prompt) => ({ prompt, maxTokens: steps + 1, stopTokenIds: [] })),
      );
      const w = engine.model.weights;
      const matrices = [...w.layers.flatMap((l) => [l.q, l.k, l.v, l.o, l.gate, l.up, l.down]), w.lmHead];
      for (const m of matrices) {
        // one prefill step (all prompts' rows; the lm_head only their last rows), then one matmul per
        // decode step with all B sequences' rows
        const prefill = prompts.reduce((s, p) => s + p.length, 0);
        expect(rows.get(m)).toEqual([m === w.lmHead ? B : prefill, ...Array(steps).fill(B)]);
      }
      for (const [b, prompt] of prompts.entries()) {
        const [alone] = await engine.generate([{ prompt, maxTokens: steps + 1, stopTokenIds: [] }]);
        expect(together[b].tokens).toEqual(alone.tokens);
      }
      engine.dispose();
    },
  );
});
