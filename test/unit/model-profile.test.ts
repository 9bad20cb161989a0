// One read of a model directory (gpu-runner/engine/model-profile.ts): the sidecars the project writes
// beside a model — reuse.json, sparse.json, squeezed.json — reach the profile the runner publishes and the
// settings the engine runs with; a sparse.json searched on other weights is not trusted; a malformed
// sidecar fails the load naming its file. The API's view of a profile (src/answer/models.ts) follows it.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { modelProfileSchema } from '../../contracts/model-profile.ts';
import { defaultSparseConfig, writeSparseConfig } from '../../gpu-runner/engine/attention/sparse/config.ts';
import { writeSqueezedSettings } from '../../gpu-runner/engine/attention/squeezed/calibrate.ts';
import { loadEngine } from '../../gpu-runner/engine/engine.ts';
import { ModelLoadError } from '../../gpu-runner/engine/errors.ts';
import { modelFingerprint } from '../../gpu-runner/engine/fingerprint.ts';
import { modelProfile, readModelFiles } from '../../gpu-runner/engine/model-profile.ts';
import { ModelCatalog } from '../../src/answer/models.ts';
import { tinyModels } from '../helpers/tiny-model.ts';

const models = tinyModels();
afterAll(() => models.cleanup());

const profileOf = (dir: string) =>
  modelProfile(readModelFiles(dir), {
    fingerprint: modelFingerprint(dir),
    maxContext: 256,
    chatTemplate: true,
  });

describe('model profile', () => {
  it('without sidecars: not trained for independent chunks, no measured break-even, no τ', () => {
    const dir = models.make('plain', { layers: 2 });
    const p = profileOf(dir);
    expect(modelProfileSchema.parse(p)).toEqual(p);
    expect(p).toMatchObject({
      id: 'plain',
      layers: 2,
      contextTokens: 256,
      independentTrained: false,
      sparseBreakEven: null,
      squeezedThreshold: null,
    });
  });

  it('reuse.json, a sparse.json searched on these weights and squeezed.json reach the profile and the engine', async () => {
    const dir = models.make('tuned', { layers: 2 });
    const fingerprint = modelFingerprint(dir);
    const files = readModelFiles(dir);
    writeFileSync(join(dir, 'reuse.json'), JSON.stringify({ v: 1, independentTrained: true, note: 'block' }));
    const sparse = {
      ...defaultSparseConfig(files.config.layers, files.config.kvHeads, fingerprint),
      breakEven: 4096,
    };
    writeSparseConfig(dir, sparse);
    await writeSqueezedSettings(dir, {
      v: 1,
      tau: 2.5,
      keepFraction: 0.125,
      pc: 0.05,
      window: 16,
      samples: 4,
    });
    expect(profileOf(dir)).toMatchObject({
      independentTrained: true,
      sparseBreakEven: 4096,
      squeezedThreshold: 2.5,
    });

    const engine = await loadEngine(dir);
    try {
      expect(engine.sparseConfig).toEqual(sparse);
      expect(engine.squeezedSettings?.tau).toBe(2.5);
      expect(engine.profile).toMatchObject({ fingerprint, sparseBreakEven: 4096, squeezedThreshold: 2.5 });
    } finally {
      engine.dispose();
    }
  });

  it('a sparse.json searched on other weights is stale: default patterns, no measured break-even', async () => {
    const dir = models.make('stale', { layers: 2 });
    const files = readModelFiles(dir);
    const other = defaultSparseConfig(files.config.layers, files.config.kvHeads, 'f'.repeat(64));
    writeSparseConfig(dir, { ...other, breakEven: 512 });
    expect(profileOf(dir).sparseBreakEven).toBeNull();
    const engine = await loadEngine(dir);
    try {
      expect(engine.sparseConfig).toEqual(defaultSparseConfig(files.config.layers, files.config.kvHeads));
    } finally {
      engine.dispose();
    }
  });

  it('a malformed sidecar fails the load naming its file', async () => {
    for (const [file, text] of [
      ['reuse.json', '{"v": 2}'],
      ['sparse.json', '{"version": 1}'],
      ['squeezed.json', 'not json'],
    ]) {
      const dir = models.make(`bad-${file}`, { layers: 1 });
      writeFileSync(join(dir, file), text);
      expect(() => readModelFiles(dir)).toThrow(ModelLoadError);
      expect(() => readModelFiles(dir)).toThrow(join(dir, file));
      await expect(loadEngine(dir)).rejects.toThrow(join(dir, file));
    }
  });

  it('the API learns models from runner profiles and keeps one once reported; a newer profile replaces it', async () => {
    const p = profileOf(models.make('plain', { layers: 2 }));
    let live = [p];
    const catalog = new ModelCatalog(async () => live, { maxContext: 200, now: () => 5_000_000 });
    const [m] = await catalog.list();
    expect(m).toMatchObject({
      id: 'plain',
      fingerprint: p.fingerprint,
      contextTokens: 200, // the API's own cap under the runner's 256
      layers: 2,
      sparseBreakEven: null,
      chatTemplate: true,
      created: 5000,
    });
    live = [];
    expect((await catalog.list()).map((x) => x.fingerprint)).toEqual([p.fingerprint]);
    live = [{ ...p, sparseBreakEven: 8 }];
    expect((await catalog.list())[0]).toMatchObject({ sparseBreakEven: 8, created: 5000 });
    expect(await new ModelCatalog(async () => []).list()).toEqual([]);
  });
});
