// Model fingerprint (DESIGN.md §4.1): sha256 over config.json and every weight tensor's name, shape,
// dtype and contents, in name order — so two copies of the same model agree across machines and
// processes, and any change to config or weights changes it. Computed once and cached next to the
// model in `.kvrag-fingerprint.json`, keyed by the size and mtime of every file that went into it.
// A GGUF file's fingerprint (gguf/fingerprint.ts) is cached beside it in `<file>.kvrag-fingerprint.json`
// (not for a blob in ollama's store, which kvrag does not write into).
import { createHash } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { computeGgufFingerprint } from './gguf/fingerprint.ts';
import { locateModel, openGguf } from './gguf/location.ts';
import { readTensorBytes } from './safetensors.ts';
import { indexWeights } from './weights.ts';

export const FINGERPRINT_FILE = '.kvrag-fingerprint.json';
const VERSION = 1;

interface CacheFile {
  version: number;
  files: Record<string, { size: number; mtimeMs: number }>;
  fingerprint: string;
}

function fileStamps(paths: string[]): Record<string, { size: number; mtimeMs: number }> {
  const out: Record<string, { size: number; mtimeMs: number }> = {};
  for (const p of paths) {
    const s = statSync(p);
    out[p.split('/').pop()!] = { size: s.size, mtimeMs: s.mtimeMs };
  }
  return out;
}

/** Computes the fingerprint from the files (no cache). */
export function computeFingerprint(dir: string): { fingerprint: string; files: string[] } {
  const index = indexWeights(dir);
  const configPath = join(dir, 'config.json');
  const h = createHash('sha256');
  h.update(`kvrag-model-fingerprint-v${VERSION}\n`);
  h.update(readFileSync(configPath));
  for (const name of [...index.tensors.keys()].sort()) {
    const { file, info } = index.tensors.get(name)!;
    h.update(`\n${name}\0${info.dtype}\0${info.shape.join('x')}\0`);
    h.update(readTensorBytes(file, info));
  }
  return { fingerprint: h.digest('hex'), files: [configPath, ...index.files.map((f) => f.path)] };
}

/** The model's fingerprint, from the cache file when every input file is unchanged. */
export function modelFingerprint(model: string): string {
  const at = locateModel(model);
  if (at.kind === 'gguf') return ggufFingerprint(at.file, !at.ollama);
  const dir = at.dir;
  const cachePath = join(dir, FINGERPRINT_FILE);
  try {
    const cached = JSON.parse(readFileSync(cachePath, 'utf8')) as CacheFile;
    const paths = Object.keys(cached.files).map((f) => join(dir, f));
    if (
      cached.version === VERSION &&
      /^[0-9a-f]{64}$/.test(cached.fingerprint) &&
      paths.length > 0 &&
      JSON.stringify(fileStamps(paths)) === JSON.stringify(cached.files) &&
      JSON.stringify(Object.keys(cached.files).sort()) === JSON.stringify(currentFileNames(dir))
    ) {
      return cached.fingerprint;
    }
  } catch {
    // no cache, unreadable, or a listed file is gone: recompute
  }
  const { fingerprint, files } = computeFingerprint(dir);
  const body: CacheFile = { version: VERSION, files: fileStamps(files), fingerprint };
  try {
    writeFileSync(cachePath, `${JSON.stringify(body, null, 2)}\n`);
  } catch {
    // read-only model directory: the fingerprint is still correct, just not cached
  }
  return fingerprint;
}

function ggufFingerprint(file: string, cache: boolean): string {
  const cachePath = join(dirname(file), `${basename(file)}${FINGERPRINT_FILE}`);
  const stamps = JSON.stringify(fileStamps([file]));
  if (cache) {
    try {
      const cached = JSON.parse(readFileSync(cachePath, 'utf8')) as CacheFile;
      if (
        cached.version === VERSION &&
        /^[0-9a-f]{64}$/.test(cached.fingerprint) &&
        JSON.stringify(cached.files) === stamps
      )
        return cached.fingerprint;
    } catch {
      // no cache or unreadable: recompute
    }
  }
  const fingerprint = computeGgufFingerprint(openGguf(file));
  if (cache) {
    try {
      const body: CacheFile = { version: VERSION, files: JSON.parse(stamps), fingerprint };
      writeFileSync(cachePath, `${JSON.stringify(body, null, 2)}\n`);
    } catch {
      // read-only directory: still correct, just not cached
    }
  }
  return fingerprint;
}

function currentFileNames(dir: string): string[] {
  const index = indexWeights(dir);
  return ['config.json', ...index.files.map((f) => f.path.split('/').pop()!)].sort();
}
