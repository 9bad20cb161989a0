// Test helper: rewrites a GGUF file with edited metadata or tensors (for damaged and unusual files).
import { readGgufHeader, readGgufTensorBytes } from '../../gpu-runner/engine/gguf/reader.ts';
import type { GgufKV } from '../../gpu-runner/engine/gguf/reader.ts';
import { type GgufWriteTensor, writeGguf } from '../../gpu-runner/engine/gguf/writer.ts';
import type { GgmlLoadType } from '../../gpu-runner/engine/gguf/format.ts';

export function rewriteGguf(
  src: string,
  dst: string,
  edit: {
    meta?: (m: Map<string, GgufKV>) => void;
    tensors?: (t: GgufWriteTensor[]) => GgufWriteTensor[];
  },
): string {
  const g = readGgufHeader(src);
  const meta = new Map(g.metadata);
  edit.meta?.(meta);
  let tensors: GgufWriteTensor[] = [...g.tensors.values()].map((t) => ({
    name: t.name,
    type: t.typeName as GgmlLoadType,
    dims: t.dims,
    data: () => readGgufTensorBytes(g, t),
  }));
  if (edit.tensors) tensors = edit.tensors(tensors);
  writeGguf(dst, meta, tensors);
  return dst;
}
