// The engine's logits against the PyTorch reference: committed golden fixtures always, and a live
// recomputation when /usr/bin/python3 has torch.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadEngine } from '../../gpu-runner/engine/engine.ts';
import { computeFingerprint } from '../../gpu-runner/engine/fingerprint.ts';
import {
  type GoldenManifest,
  referenceAvailable,
  referenceLogits,
} from '../../gpu-runner/tools/make-golden.ts';
import { maxAbsDiff, tinyModels } from '../helpers/tiny-model.ts';

const fixtures = join(import.meta.dirname, '../fixtures/engine');
const manifest = JSON.parse(readFileSync(join(fixtures, 'golden.json'), 'utf8')) as GoldenManifest;
const models = tinyModels();
afterAll(() => models.cleanup());

function readF32(path: string): Float32Array {
  const b = readFileSync(path);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
}

/** Every position's logits of every golden prompt, prompts concatenated: [Σ len, vocab]. */
async function engineLogits(dir: string): Promise<Float32Array> {
  const engine = await loadEngine(dir);
  const parts: Float32Array[] = [];
  for (const p of manifest.prompts) {
    const kv = engine.newSequence(p.length);
    parts.push(await engine.forward([{ kv, tokens: p }], 'all'));
    kv.free();
  }
  engine.dispose();
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

describe('golden logits (PyTorch reference, f32)', () => {
  it('covers Llama and Qwen2 shapes from F32 and BF16 files, with a prompt longer than 64 tokens', () => {
    const kinds = manifest.variants.map((v) => `${v.arch}-${v.dtype}${v.bias ? '-bias' : ''}`).sort();
    expect(kinds).toEqual(['llama-bf16', 'llama-f32', 'llama-f32-bias', 'qwen2-bf16', 'qwen2-f32']);
    expect(Math.max(...manifest.prompts.map((p) => p.length))).toBeGreaterThan(64);
  });

  for (const v of manifest.variants) {
    it(`${v.name}: max abs error ≤ 1e-4 at every position`, async () => {
      const dir = models.make(v.name, { arch: v.arch, dtype: v.dtype, seed: v.seed, bias: v.bias ?? false });
      // the generator must still produce the exact model the fixture was computed from
      expect(computeFingerprint(dir).fingerprint).toBe(v.fingerprint);
      const golden = readF32(join(fixtures, v.file));
      const got = await engineLogits(dir);
      expect(got.length).toBe(golden.length);
      expect(maxAbsDiff(got, golden)).toBeLessThanOrEqual(1e-4);
    });
  }
});

describe.runIf(referenceAvailable())('live PyTorch reference (/usr/bin/python3 with torch)', () => {
  it('recomputes the golden logits and matches the fixtures and the engine', async () => {
    const dirs = manifest.variants.map((v) =>
      models.make(v.name, { arch: v.arch, dtype: v.dtype, seed: v.seed, bias: v.bias ?? false }),
    );
    const live = referenceLogits(dirs, manifest.prompts);
    for (let i = 0; i < dirs.length; i++) {
      const golden = readF32(join(fixtures, manifest.variants[i].file));
      expect(maxAbsDiff(live[i], golden)).toBeLessThanOrEqual(1e-5);
      expect(maxAbsDiff(await engineLogits(dirs[i]), live[i])).toBeLessThanOrEqual(1e-4);
    }
  });
});
