import { describe, expect, it } from 'vitest';
import { BloomFilter } from '../../contracts/bloom.ts';
import { runnerHeartbeatSchema } from '../../contracts/heartbeat.ts';
import { loadBound, rankRunners, type RunnerView } from '../../src/routing/select.ts';

const runner = (id: string, load: number, held: string[] = []): RunnerView => ({
  id,
  load,
  holds: (k) => held.includes(k),
});
const keys = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

describe('bloom filter summary', () => {
  it('has every added key, round-trips through JSON, and keeps false positives near the target', () => {
    const f = BloomFilter.forCapacity(1000, 0.01);
    const inKeys = keys('kv/fp/ab/in', 1000);
    for (const k of inKeys) f.add(k);
    const g = BloomFilter.fromJSON(JSON.parse(JSON.stringify(f.toJSON())));
    expect(inKeys.every((k) => g.has(k))).toBe(true);
    const fp = keys('kv/fp/ab/out', 20000).filter((k) => g.has(k)).length / 20000;
    expect(fp).toBeLessThan(0.03);
  });

  it('rejects malformed sizes', () => {
    expect(() => new BloomFilter(12, 3)).toThrow(/multiple of 8/);
    expect(() => new BloomFilter(64, 0)).toThrow(/probes/);
  });
});

describe('rankRunners', () => {
  const plan = { artifactKeys: keys('chunk', 8) };

  it('prefers the runner holding the artifacts over an idle cold one while within the load bound', () => {
    // loads 5 + 4 + 4 + 0 (+1 new) → bound ceil(1.25 · 14 / 4) = 5: the warm runner at 4 may take one more.
    const pool = [runner('cold', 0), runner('b', 5), runner('warm', 4, plan.artifactKeys), runner('c', 4)];
    expect(loadBound(pool.map((r) => r.load))).toBe(5);
    const ranked = rankRunners(plan, pool);
    expect(ranked[0].runner.id).toBe('warm');
    expect(ranked[0].held).toBe(1);
    expect(ranked.find((r) => r.runner.id === 'cold')?.held).toBe(0);
  });

  it('prefers the runner holding more of the plan', () => {
    const ranked = rankRunners(plan, [
      runner('a', 0, plan.artifactKeys.slice(0, 2)),
      runner('b', 0, plan.artifactKeys.slice(0, 6)),
      runner('c', 0),
    ]);
    expect(ranked.map((r) => r.runner.id)).toEqual(['b', 'a', 'c']);
  });

  it('stops choosing the holder once it would exceed 1.25x the average load', () => {
    // loads 6 + 0 + 0 (+1 new) → bound ceil(1.25 · 7 / 3) = 3: the holder at 6 is over it.
    expect(loadBound([6, 0, 0])).toBe(3);
    const ranked = rankRunners(plan, [runner('warm', 6, plan.artifactKeys), runner('x', 0), runner('y', 0)]);
    expect(ranked[0].runner.id).not.toBe('warm');
    expect(ranked.at(-1)?.runner.id).toBe('warm');
    expect(ranked.at(-1)?.withinBound).toBe(false);
    // Loads 3 + 2 + 2 (+1) → bound ceil(1.25 · 8 / 3) = 4: the holder at 3 may take one more and keeps it;
    // at 4 (+1 → bound 4) it would exceed the bound and the request moves.
    expect(loadBound([3, 2, 2])).toBe(4);
    const inside = rankRunners(plan, [runner('warm', 3, plan.artifactKeys), runner('x', 2), runner('y', 2)]);
    expect(inside[0].runner.id).toBe('warm');
    expect(loadBound([4, 2, 2])).toBe(4);
    const over = rankRunners(plan, [runner('warm', 4, plan.artifactKeys), runner('x', 2), runner('y', 2)]);
    expect(over[0].runner.id).not.toBe('warm');
  });

  it('keeps the holder over an idle cold runner exactly until it would pass 1.25x the average load', () => {
    // others at load 2 and an idle cold runner; the holder's load rises one request at a time
    for (let load = 0; load <= 12; load++) {
      const pool = [
        runner('warm', load, plan.artifactKeys),
        runner('cold', 0),
        runner('x', 2),
        runner('y', 2),
      ];
      const total = load + 4;
      const within = load + 1 <= Math.ceil((1.25 * (total + 1)) / 4);
      expect(rankRunners(plan, pool)[0].runner.id, `holder at load ${load}`).toBe(within ? 'warm' : 'cold');
    }
    // the switch happens where the rule says: 3 → ceil(1.25 · 8 / 4) = 3 holds, 3 + 1 > 3 does not
    expect(
      rankRunners(plan, [
        runner('warm', 2, plan.artifactKeys),
        runner('cold', 0),
        runner('x', 2),
        runner('y', 2),
      ])[0].runner.id,
    ).toBe('warm');
    expect(
      rankRunners(plan, [
        runner('warm', 3, plan.artifactKeys),
        runner('cold', 0),
        runner('x', 2),
        runner('y', 2),
      ])[0].runner.id,
    ).toBe('cold');
  });

  it('spreads a warm set over its equal holders by load, and a cold set by rendezvous home first', () => {
    // loads 1 + 0 + 1 + 1 (+1) → bound 2: everyone within it
    const twin = [
      runner('h1', 1, plan.artifactKeys),
      runner('h2', 0, plan.artifactKeys),
      runner('z', 1),
      runner('w', 1),
    ];
    expect(
      rankRunners(plan, twin)
        .map((r) => r.runner.id)
        .slice(0, 2),
    ).toEqual(['h2', 'h1']);
    // a cold set goes to its rendezvous home even when another runner is less loaded (within the bound)
    const pool = Array.from({ length: 8 }, (_, i) => runner(`r${i}`, 1));
    const home = rankRunners(plan, pool)[0].runner.id;
    // all at 2 but one other runner at 1 (bound ceil(1.25 · 16 / 8) = 3): the home at 2 keeps the set
    const other = pool.find((r) => r.id !== home)!.id;
    const busier = pool.map((r) => runner(r.id, r.id === other ? 1 : 2));
    expect(rankRunners(plan, busier)[0].runner.id).toBe(home);
  });

  it('sends the same cold set to the same runner whatever the order of runners or keys', () => {
    const pool = Array.from({ length: 16 }, (_, i) => runner(`r${i}`, 0));
    const a = rankRunners(plan, pool)[0].runner.id;
    const b = rankRunners({ artifactKeys: [...plan.artifactKeys].reverse() }, [...pool].reverse())[0].runner
      .id;
    expect(b).toBe(a);
    // Different cold sets spread over the runners instead of piling on one.
    const homes = new Set(
      Array.from(
        { length: 64 },
        (_, i) => rankRunners({ artifactKeys: keys(`set${i}`, 8) }, pool)[0].runner.id,
      ),
    );
    expect(homes.size).toBeGreaterThan(8);
  });

  it('is deterministic and returns every runner once', () => {
    const pool = [runner('a', 1), runner('b', 0, ['chunk-1']), runner('c', 9)];
    const r1 = rankRunners(plan, pool).map((r) => r.runner.id);
    expect(rankRunners(plan, pool).map((r) => r.runner.id)).toEqual(r1);
    expect([...r1].sort()).toEqual(['a', 'b', 'c']);
    expect(rankRunners(plan, [])).toEqual([]);
  });
});

describe('runner heartbeat contract', () => {
  const valid = {
    v: 1,
    id: 'runner-1',
    url: 'http://10.0.0.5:8081',
    models: ['f'.repeat(64)],
    load: { running: 1, waiting: 0, maxRunning: 16 },
    kvFreeBytes: 1 << 30,
    artifacts: BloomFilter.forCapacity(10).toJSON(),
    sentAt: Date.now(),
  };
  it('accepts a well-formed heartbeat and rejects malformed ones', () => {
    expect(runnerHeartbeatSchema.parse(valid).id).toBe('runner-1');
    expect(runnerHeartbeatSchema.safeParse({ ...valid, v: 2 }).success).toBe(false);
    expect(runnerHeartbeatSchema.safeParse({ ...valid, url: 'file:///etc/passwd' }).success).toBe(false);
    expect(
      runnerHeartbeatSchema.safeParse({ ...valid, load: { running: -1, waiting: 0, maxRunning: 1 } }).success,
    ).toBe(false);
  });
});
