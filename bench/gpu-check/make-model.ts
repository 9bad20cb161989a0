// The GPU check's models: a generated Hugging Face directory of one of bench/_shapes.ts's shapes with f16
// weights (random, seeded), written once and shared by the engine bench and the llama.cpp peer (which
// exports it to GGUF F16, so both engines run the same weights).
//
//   node bench/gpu-check/make-model.ts --shape smollm2 --out DIR [--max-positions 16384]
import { parseArgs } from 'node:util';
import { makeTinyModel } from '../../gpu-runner/tools/make-tiny-model.ts';
import { modelShape } from '../_shapes.ts';

const { values } = parseArgs({
  options: {
    shape: { type: 'string' },
    out: { type: 'string' },
    'max-positions': { type: 'string', default: '16384' },
  },
});
if (!values.shape || !values.out) {
  console.error('usage: make-model.ts --shape NAME --out DIR [--max-positions N]');
  process.exit(2);
}
const maxPositions = Number(values['max-positions']);
if (!Number.isInteger(maxPositions) || maxPositions < 16) {
  console.error(`--max-positions: "${values['max-positions']}" is not an integer ≥ 16`);
  process.exit(2);
}
const shape = modelShape('shape', values.shape);
const t0 = performance.now();
makeTinyModel(values.out, { ...shape, dtype: 'f16', seed: 1, maxPositions });
process.stdout.write(
  `${JSON.stringify({ shape: values.shape, label: shape.label, dir: values.out, seconds: (performance.now() - t0) / 1000 })}\n`,
);
