// Generated model shapes the engine benches share: SmolLM2-135M's (issue 20's comparison model), and a
// tiny one for smoke runs.
import type { TinyModelOptions } from '../gpu-runner/tools/make-tiny-model.ts';

export const SHAPES: Record<string, Partial<TinyModelOptions> & { label: string }> = {
  smollm2: {
    label: 'SmolLM2-135M-shaped',
    hidden: 576,
    layers: 30,
    heads: 9,
    kvHeads: 3,
    headDim: 64,
    intermediate: 1536,
    vocab: 49152,
  },
  tiny: { label: 'tiny', hidden: 64, layers: 2, heads: 4, kvHeads: 2, headDim: 16, intermediate: 96 },
};
