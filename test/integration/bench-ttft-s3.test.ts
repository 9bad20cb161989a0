// `kvrag bench ttft --s3`: cold artifacts read over the S3 protocol from a local s3rver, for each
// --artifact-dtype.
import { afterAll, describe, expect, it } from 'vitest';
import { run, type TtftResult } from '../../bench/ttft.ts';
import { captureStdout } from '../helpers/capture-stdout.ts';
import { tinyModels } from '../helpers/tiny-model.ts';

const models = tinyModels();
afterAll(() => models.cleanup());

describe('bench ttft --s3', () => {
  it('--s3 reads cold artifacts over the S3 protocol (s3rver)', async () => {
    const model = models.make('bench', { layers: 3, seed: 2 });
    const args = [
      '--json',
      '--model',
      model,
      '--backend',
      'reference',
      '--context',
      '64',
      '--chunk-tokens',
      '32',
    ];
    const { out } = await captureStdout(() =>
      run([
        ...args,
        ...['--question', '4', '--system', '8', '--runs', '1', '--modes', 'independent', '--s3'],
        ...['--artifact-dtype', 'f16,int4'],
      ]),
    );
    const r = JSON.parse(out) as TtftResult;
    expect(r.precompute.map((p) => p.dtype)).toEqual(['f16', 'int4']);
    for (const p of r.precompute) {
      const cold = r.rows.find((x) => x.temp === 'cold' && x.dtype === p.dtype);
      expect(cold?.report.artifactsByTier).toEqual({ object: 3 });
      // layer-wise reads take the headers and the K/V sections, not the squeezed index sections
      const loaded = cold?.report.bytesLoaded.object ?? 0;
      expect(loaded).toBeGreaterThan(Math.round(p.kvBytesPerToken * p.tokens));
      expect(loaded).toBeLessThan(p.bytes);
      expect(cold?.loadMsPerMiB).toBeGreaterThan(0);
    }
    expect(r.precompute[1].bytes).toBeLessThan(r.precompute[0].bytes / 2);
  });
});
