// Cache-aware runner selection (DESIGN.md §5): among healthy runners serving the plan's model, prefer the
// one holding most of the plan's artifacts; send cold artifact sets where rendezvous hashing puts most of
// their keys, so the same chunks meet the same runner; never pick a runner above the load bound
// (consistent hashing with bounded loads: load + 1 ≤ ceil(c · (total load + 1) / n), c = 1.25).
import { hash32 } from '../../contracts/hash.ts';

export interface RunnerView {
  id: string;
  /** Requests running + waiting on the runner (its heartbeat plus what this router sent since). */
  load: number;
  /** Whether the runner holds the artifact (exact, or a Bloom filter from the heartbeat). */
  holds(artifactKey: string): boolean;
}

export interface RouteRequest {
  artifactKeys: readonly string[];
}

export interface RankOptions {
  /** c of the bounded-load rule (default 1.25). */
  loadFactor?: number;
}

export interface RankedRunner<R extends RunnerView = RunnerView> {
  runner: R;
  /** Share of the request's artifacts the runner holds, 0..1. */
  held: number;
  /** Share of the request's artifacts whose rendezvous home is this runner, 0..1. */
  home: number;
  /** Whether the runner is within the load bound. */
  withinBound: boolean;
}

/** The load bound: no runner may take a request that would put it above this. */
export function loadBound(loads: readonly number[], loadFactor = 1.25): number {
  const total = loads.reduce((a, b) => a + b, 0);
  return Math.max(1, Math.ceil((loadFactor * (total + 1)) / Math.max(1, loads.length)));
}

/**
 * Runners in the order to try them: first those within the load bound by held share; among runners holding
 * the same share of a warm set, the less loaded first (then rendezvous home share); for a set no candidate
 * holds, its rendezvous home first (then the less loaded), so the same cold chunks meet the same runner;
 * ties by the rendezvous score of the whole set. Then the runners over the bound, by load — the fallbacks
 * used when earlier runners fail before the first token. Deterministic for the same inputs.
 */
export function rankRunners<R extends RunnerView>(
  req: RouteRequest,
  runners: readonly R[],
  opts: RankOptions = {},
): RankedRunner<R>[] {
  if (runners.length === 0) return [];
  const keys = [...new Set(req.artifactKeys)];
  const bound = loadBound(
    runners.map((r) => r.load),
    opts.loadFactor ?? 1.25,
  );
  // Rendezvous home of each key among all candidates (not only those within the bound, so the mapping of
  // keys to runners does not move when loads change).
  const homeVotes = new Map<string, number>();
  const seeds = runners.map((r) => hash32(r.id));
  for (const key of keys) {
    let best = runners[0].id;
    let bestScore = -1;
    for (let i = 0; i < runners.length; i++) {
      const r = runners[i];
      const s = hash32(key, seeds[i]);
      if (s > bestScore || (s === bestScore && r.id < best)) {
        bestScore = s;
        best = r.id;
      }
    }
    homeVotes.set(best, (homeVotes.get(best) ?? 0) + 1);
  }
  const setKey = keys.slice().sort().join('\n');
  const n = Math.max(1, keys.length);
  const ranked = runners.map((runner, i) => ({
    runner,
    held: keys.filter((k) => runner.holds(k)).length / n,
    home: (homeVotes.get(runner.id) ?? 0) / n,
    withinBound: runner.load + 1 <= bound,
    tie: hash32(setKey, seeds[i]),
  }));
  ranked.sort((a, b) => {
    if (a.withinBound !== b.withinBound) return a.withinBound ? -1 : 1;
    if (!a.withinBound) return a.runner.load - b.runner.load || b.tie - a.tie;
    if (a.held !== b.held) return b.held - a.held;
    // Equal holders of a warm set: the less loaded one, so one hot set does not pile onto its first home
    // while its replicas idle (and push that home's other sets over the bound).
    if (a.held > 0) return a.runner.load - b.runner.load || b.home - a.home || b.tie - a.tie;
    return b.home - a.home || a.runner.load - b.runner.load || b.tie - a.tie;
  });
  return ranked.map(({ tie: _tie, ...r }) => r);
}
