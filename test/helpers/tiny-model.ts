// Test helper: writes deterministic tiny models (gpu-runner/tools/make-tiny-model.ts) into a temp dir.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeTinyModel, type TinyModelOptions } from '../../gpu-runner/tools/make-tiny-model.ts';

export interface TinyModels {
  root: string;
  /** Writes (once per name) a tiny model dir and returns its path. */
  make(name: string, options?: Partial<TinyModelOptions>): string;
  cleanup(): void;
}

export function tinyModels(): TinyModels {
  const root = mkdtempSync(join(tmpdir(), 'kvrag-tiny-'));
  const made = new Set<string>();
  return {
    root,
    make(name, options = {}) {
      const dir = join(root, name);
      if (!made.has(name)) {
        makeTinyModel(dir, options);
        made.add(name);
      }
      return dir;
    },
    cleanup() {
      rmSync(root, { recursive: true, force: true });
    },
  };
}

export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** ‖a − b‖ / ‖b‖ (root mean square error relative to the expected values' rms). */
export function rmsRel(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / (den + 1e-30));
}
