// The routing simulation of `kvrag bench routing`, reduced (fewer requests, three cluster sizes, both offered
// loads): cache-aware routing (src/routing/select.ts) must beat random and least-loaded routing on artifact
// hit rate and on p99 modelled TTFT on the same seeded request stream.
import { describe, expect, it } from 'vitest';
import { type Policy, type SimResult, simParams, simulate } from '../../bench/_routing-sim.ts';

const POLICIES: Policy[] = ['cache-aware', 'random', 'least-loaded'];

describe('routing simulation (reduced)', () => {
  for (const load of [0.8, 1.2]) {
    it(`cache-aware beats random and least-loaded on hit rate and p99 TTFT at load ${load}`, () => {
      for (const n of [8, 16, 32]) {
        const params = simParams(n, load, { requests: 5000 });
        const [ca, ...others] = POLICIES.map((p) => simulate(params, p));
        for (const o of others as SimResult[]) {
          const at = `${n} runners, load ${load}, vs ${o.policy}`;
          expect(ca.hitRate, at).toBeGreaterThan(o.hitRate);
          expect(ca.ttftP99, at).toBeLessThan(o.ttftP99);
          expect(ca.noHitShare, at).toBeLessThan(o.noHitShare);
        }
      }
    });
  }

  it('is deterministic for a seed', () => {
    const params = simParams(8, 0.8, { requests: 2000 });
    expect(simulate(params, 'cache-aware')).toEqual(simulate(params, 'cache-aware'));
    // another seed, another request stream
    const [a, b] = [simulate(params, 'random'), simulate({ ...params, seed: 8 }, 'random')];
    expect(b.ttftP50).not.toBe(a.ttftP50);
  });
});
