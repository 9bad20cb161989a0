// What a model path names: a Hugging Face directory, a GGUF file (any path whose first bytes are the
// GGUF magic, e.g. `model.gguf`), or an ollama store reference `ollama:NAME[:TAG]` (a GGUF blob).
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { ModelLoadError } from '../errors.ts';
import { GGUF_MAGIC } from './format.ts';
import { readGgufHeader, type GgufFile } from './reader.ts';
import { OLLAMA_PREFIX, resolveOllamaModel } from './ollama.ts';

export type ModelLocation = { kind: 'dir'; dir: string } | { kind: 'gguf'; file: string; ollama: boolean };

function hasGgufMagic(path: string): boolean {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(4);
    return readSync(fd, b, 0, 4, 0) === 4 && b.readUInt32LE(0) === GGUF_MAGIC;
  } finally {
    closeSync(fd);
  }
}

export function locateModel(model: string): ModelLocation {
  if (model.startsWith(OLLAMA_PREFIX))
    return { kind: 'gguf', file: resolveOllamaModel(model.slice(OLLAMA_PREFIX.length)), ollama: true };
  let isFile: boolean;
  try {
    isFile = statSync(model).isFile();
  } catch {
    if (model.endsWith('.gguf')) throw new ModelLoadError(model, 'no such file');
    return { kind: 'dir', dir: model }; // the directory loader names what is missing
  }
  if (!isFile) return { kind: 'dir', dir: model };
  if (!hasGgufMagic(model)) throw new ModelLoadError(model, 'not a model directory or a GGUF file');
  return { kind: 'gguf', file: model, ollama: false };
}

/** The GGUF file a model path names, or null for a directory. */
export function ggufPath(model: string): string | null {
  const at = locateModel(model);
  return at.kind === 'gguf' ? at.file : null;
}

let last: { key: string; file: GgufFile } | null = null;

/** The parsed header of a GGUF file; the last one is kept while its size and mtime are unchanged. */
export function openGguf(path: string): GgufFile {
  const s = statSync(path);
  const key = `${path}\0${s.size}\0${s.mtimeMs}`;
  if (last?.key !== key) last = { key, file: readGgufHeader(path) };
  return last.file;
}
