// `kvrag bench load` end to end on a tiny run: it starts `kvrag serve` (embedded defaults), ingests a
// two-document corpus, and reports one row per (concurrency, route) from real HTTP requests, with no
// errors, every query answered by the engine (distinct questions: no answer-cache hits).
import { describe, expect, it } from 'vitest';
import { type LoadRow, run } from '../../bench/load.ts';
import { captureStdout } from '../helpers/capture-stdout.ts';

describe('bench load', () => {
  it('reports throughput, p50/p99 latency and errors per route and concurrency as one JSON object', async () => {
    const { code, out } = await captureStdout(() =>
      run(
        ['--json', '--concurrency', '1,2', '--duration', '0.3', '--docs', '2'].concat(
          // the cheapest answers: two chunks loaded from their artifacts, two tokens
          ['--k', '2', '--reuse', 'independent', '--max-tokens', '2'],
        ),
      ),
    );
    expect(code).toBe(0);
    const r = JSON.parse(out) as { bench: string; docs: number; k: number; reuse: string; rows: LoadRow[] };
    expect(r).toMatchObject({ bench: 'load', docs: 2, k: 2, reuse: 'independent' });
    expect(r.rows.map((x) => `${x.route}@${x.concurrency}`)).toEqual([
      'search@1',
      'search@2',
      'query@1',
      'query@2',
    ]);
    for (const row of r.rows) {
      // closed loop: at least one request per client, all answered 200
      expect(row.requests).toBeGreaterThanOrEqual(row.concurrency);
      expect(row.errors).toBe(0);
      expect(row.errorKinds).toEqual({});
      expect(row.requestsPerSec).toBeGreaterThan(0);
      expect(row.p50Ms).toBeGreaterThan(0);
      expect(row.p99Ms).toBeGreaterThanOrEqual(row.p50Ms);
      if (row.route === 'query') {
        expect(row.cachedAnswers).toBe(0);
        expect(row.serverMs!.ttft).toBeGreaterThan(0);
      } else expect(row.serverMs).toBeUndefined();
    }
  }, 180_000);

  it('refuses an unknown route before starting anything', async () => {
    await expect(run(['--routes', 'search,upload'])).rejects.toThrow(/unknown route "upload"/);
  });
});
