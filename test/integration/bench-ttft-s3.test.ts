// `kvrag bench ttft --s3`: cold artifacts read over the S3 protocol from a local s3rver.
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
      run([...args, '--question', '4', '--system', '8', '--runs', '1', '--modes', 'independent', '--s3']),
    );
    const r = JSON.parse(out) as TtftResult;
    const cold = r.rows.find((x) => x.temp === 'cold');
    expect(cold?.report.artifactsByTier).toEqual({ object: 3 });
    expect(cold?.report.bytesLoaded.object).toBe(r.precompute.bytes);
  });
});
