// `kvrag bench serve` end to end on a tiny model (reference backend, tiny sizes): one JSON object with a
// row per (concurrency, mode), each from real requests over HTTP — `independent` serves its chunks from
// artifacts, `full` prefills them, and ratios are taken against `full` at the same concurrency.
import { afterAll, describe, expect, it } from 'vitest';
import { run } from '../../bench/serve.ts';
import { captureStdout } from '../helpers/capture-stdout.ts';
import { tinyModels } from '../helpers/tiny-model.ts';

const models = tinyModels();
afterAll(() => models.cleanup());

interface Result {
  backend: string;
  rows: {
    mode: string;
    concurrency: number;
    requests: number;
    tokensPerSec: number;
    ttftP50Ms: number;
    ttftP95Ms: number;
    ttftP99Ms: number;
    runnerTtftP50Ms: number;
    runnerTtftP95Ms: number;
    cachedTokensPerRequest: number;
    steps: number;
    throughputVsFull: number;
  }[];
}

describe('bench serve', () => {
  it('measures both modes at every concurrency in one JSON object', async () => {
    const model = models.make('serve', { seed: 4 });
    const { code, out } = await captureStdout(() =>
      run(
        [
          '--json',
          '--model',
          model,
          '--backend',
          'reference',
          '--concurrency',
          '1,3',
          '--requests',
          '3',
        ].concat(['--chunks', '2', '--chunk-tokens', '16', '--question', '4', '--max-tokens', '3']),
      ),
    );
    expect(code).toBe(0);
    const r = JSON.parse(out) as Result;
    expect(r.backend).toBe('reference');
    expect(r.rows.map((x) => `${x.mode}@${x.concurrency}`)).toEqual([
      'independent@1',
      'full@1',
      'independent@3',
      'full@3',
    ]);
    for (const row of r.rows) {
      expect(row.requests).toBe(3);
      expect(row.tokensPerSec).toBeGreaterThan(0);
      expect(row.ttftP95Ms).toBeGreaterThanOrEqual(row.ttftP50Ms);
      expect(row.ttftP99Ms).toBeGreaterThanOrEqual(row.ttftP95Ms);
      // the runner's TTFT (arrival → first token) is part of the client's (sent → first text)
      expect(row.runnerTtftP50Ms).toBeGreaterThan(0);
      expect(row.runnerTtftP95Ms).toBeGreaterThanOrEqual(row.runnerTtftP50Ms);
      expect(row.runnerTtftP50Ms).toBeLessThanOrEqual(row.ttftP50Ms);
      // system prefix (16) + 2 chunks of 16 come from artifacts in independent mode, none in full
      expect(row.cachedTokensPerRequest).toBe(row.mode === 'full' ? 0 : 48);
      if (row.mode === 'full') expect(row.throughputVsFull).toBe(1);
      // each request takes 3 steps at least (one per generated token); at concurrency 1 they run one
      // after another, at 3 they can share steps
      expect(row.steps).toBeGreaterThanOrEqual(row.concurrency === 1 ? 3 * 3 : 3);
    }
  });
});
