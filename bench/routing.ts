// `kvrag bench routing [--runners 8,16,32,64,128,256] [--requests N] [--json]`: the scale-out argument on paper.
// Simulates N runners with Zipf-distributed chunk popularity and per-runner artifact caches, and compares
// cache-aware routing (src/routing/select.ts, the code the API uses) with random and least-loaded routing
// on artifact hit rate, p50/p99 modelled TTFT and load balance, on the same request stream.
import { numberOption, parseOptions } from '../cli/args.ts';
import { emit, formatTable } from './_report.ts';
import { type Policy, SIM_DEFAULTS, type SimResult, simParams, simulate } from './_routing-sim.ts';

const POLICIES: Policy[] = ['cache-aware', 'random', 'least-loaded'];

export async function run(args: string[]): Promise<number> {
  const { values } = parseOptions(args, {
    runners: { type: 'string', default: '8,16,32,64,128,256' },
    requests: { type: 'string' },
    load: { type: 'string', default: '0.8,1.2' },
    zipf: { type: 'string' },
    seed: { type: 'string' },
    json: { type: 'boolean', default: false },
  });
  const sizes = values.runners.split(',').map((s) => numberOption('runners', s, 8));
  const loads = values.load.split(',').map((s) => numberOption('load', s, 1));
  const base = {
    ...SIM_DEFAULTS,
    zipf: numberOption('zipf', values.zipf, SIM_DEFAULTS.zipf),
    seed: numberOption('seed', values.seed, SIM_DEFAULTS.seed),
  };
  const rows: { load: number; runners: number; results: SimResult[] }[] = [];
  for (const load of loads) {
    for (const n of sizes) {
      const params = simParams(n, load, {
        ...base,
        requests: numberOption('requests', values.requests, Math.max(20_000, 100 * n)),
      });
      rows.push({ load, runners: n, results: POLICIES.map((pol) => simulate(params, pol)) });
    }
  }
  const beats = (cmp: (ca: SimResult, o: SimResult) => boolean) =>
    rows.every(({ results: [ca, ...others] }) => others.every((o) => cmp(ca, o)));
  const verdict = {
    hitRateHigherEverywhere: beats((ca, o) => ca.hitRate > o.hitRate),
    p99NeverWorse: beats((ca, o) => ca.ttftP99 <= o.ttftP99),
    p99LowerEverywhere: beats((ca, o) => ca.ttftP99 < o.ttftP99),
  };
  emit(values.json, { benchmark: 'routing', params: base, rows, verdict }, () =>
    [
      'Routing simulation (modelled TTFT: 30 ms question prefill + per chunk 1 ms hit / miss 25 ms mean, lognormal σ 0.5;',
      '100 ms decode;',
      `4 slots and 256 cached artifacts per runner; 16·N topics × 12 chunks, Zipf ${base.zipf}; k = 8;`,
      'load = offered load as a fraction of what the cluster serves when every chunk misses)',
      '',
      formatTable(
        [
          'load',
          'runners',
          'policy',
          'hit rate',
          'no-hit requests',
          'TTFT p50 ms',
          'TTFT p99 ms',
          'busiest/mean',
        ],
        rows.flatMap(({ load, runners, results }) =>
          results.map((r) => [
            load.toFixed(1),
            runners,
            r.policy,
            r.hitRate,
            r.noHitShare,
            r.ttftP50,
            r.ttftP99,
            r.imbalance,
          ]),
        ),
      ),
      '',
      `cache-aware vs random and least-loaded, every row: hit rate higher ${yes(verdict.hitRateHigherEverywhere)}; ` +
        `p99 TTFT never worse ${yes(verdict.p99NeverWorse)}; p99 TTFT strictly lower ${yes(verdict.p99LowerEverywhere)}`,
    ].join('\n'),
  );
  return 0;
}

const yes = (b: boolean) => (b ? 'yes' : 'NO');
