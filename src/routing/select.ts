// Cache-aware runner selection (DESIGN.md §5): among healthy runners serving the plan's model, prefer the
// one holding most of the plan's artifacts; send cold artifact sets where rendezvous hashing puts most of
// their keys, so the same chunks meet the same runner; never pick a runner above the load bound
// (consistent hashing with bounded loads: load + 1 ≤ ceil(c · (total load + 1) / n), c = 1.25).
import { rendezvousScore } from './hash.ts';

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
 * Runners in the order to try them: first those within the load bound by (held share, rendezvous home
 * share, lower load, rendezvous score of the whole set), then the rest by load — the fallbacks used when
 * earlier runners fail before the first token. Deterministic for the same inputs.
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
  for (const key of keys) {
    let best = runners[0].id;
    let bestScore = -1;
    for (const r of runners) {
      const s = rendezvousScore(r.id, key);
      if (s > bestScore || (s === bestScore && r.id < best)) {
        bestScore = s;
        best = r.id;
      }
    }
    homeVotes.set(best, (homeVotes.get(best) ?? 0) + 1);
  }
  const setKey = keys.slice().sort().join('\n');
  const n = Math.max(1, keys.length);
  const ranked = runners.map((runner) => ({
    runner,
    held: keys.filter((k) => runner.holds(k)).length / n,
    home: (homeVotes.get(runner.id) ?? 0) / n,
    withinBound: runner.load + 1 <= bound,
    tie: rendezvousScore(runner.id, setKey),
  }));
  ranked.sort((a, b) => {
    if (a.withinBound !== b.withinBound) return a.withinBound ? -1 : 1;
    if (!a.withinBound) return a.runner.load - b.runner.load || b.tie - a.tie;
    return b.held - a.held || b.home - a.home || a.runner.load - b.runner.load || b.tie - a.tie;
  });
  return ranked.map(({ tie: _tie, ...r }) => r);
}
