// Exports a Hugging Face model directory (e.g. one make-tiny-model.ts wrote) to a GGUF file llama.cpp
// loads (gpu-runner/engine/gguf/export.ts).
//
//   node gpu-runner/tools/export-gguf.ts --model DIR --out FILE.gguf [--type f32|f16|q8_0|q4_0]
import { parseArgs } from 'node:util';
import { EXPORT_TYPES, type ExportType, exportGguf } from '../engine/gguf/export.ts';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    out: { type: 'string' },
    type: { type: 'string', default: 'f32' },
    name: { type: 'string' },
  },
});
const type = values.type!.toUpperCase() as ExportType;
if (!values.model || !values.out || !EXPORT_TYPES.includes(type)) {
  console.error('usage: export-gguf.ts --model DIR --out FILE.gguf [--type f32|f16|q8_0|q4_0] [--name NAME]');
  process.exit(2);
}
exportGguf(values.model, values.out, type, values.name);
console.log(`wrote ${values.out} (${type})`);
