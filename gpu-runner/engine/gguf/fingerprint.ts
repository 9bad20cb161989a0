// The fingerprint of a GGUF model (DESIGN.md §4.1): sha256 over every metadata pair and every tensor's
// name, type, dims and bytes as stored, in name order — the quantized blocks themselves, so a Q8_0 and
// an F32 file of the same model are different models and their KV artifacts never mix.
import { createHash } from 'node:crypto';
import { type GgufFile, readGgufTensorBytes } from './reader.ts';

const VERSION = 1;

export function computeGgufFingerprint(file: GgufFile): string {
  const h = createHash('sha256');
  h.update(`kvrag-model-fingerprint-gguf-v${VERSION}\n`);
  for (const key of [...file.metadata.keys()].sort()) {
    const v = file.metadata.get(key)!;
    h.update(`${key}\0${v.type}\0${JSON.stringify(v.value)}\n`);
  }
  for (const name of [...file.tensors.keys()].sort()) {
    const t = file.tensors.get(name)!;
    h.update(`\n${name}\0${t.typeName}\0${t.dims.join('x')}\0`);
    h.update(readGgufTensorBytes(file, t));
  }
  return h.digest('hex');
}
