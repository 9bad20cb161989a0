// A discrete-event model of N runners serving RAG requests, used by `kvrag bench routing` to compare
// routing policies. Requests arrive as a Poisson process; each names a topic drawn from a Zipf law and k of
// that topic's chunks; a runner has `slots` concurrent sequences and an LRU cache of `capacity` chunk
// artifacts. Modelled TTFT = queue wait + question prefill + per chunk (hit: load from host memory,
// miss: fetch from the object store, lognormal with mean missMs — object-store GETs have a long tail, and a
// constant cost would make every all-miss request cost exactly the same, a tie no policy can break); the
// slot is then held for the decode time. The router sees exact in-flight counts (it sent them) and cache
// contents as of the last heartbeat.
import { rankRunners, type RunnerView } from '../src/routing/select.ts';
import { rng } from './_report.ts';

export type Policy = 'cache-aware' | 'random' | 'least-loaded';

export interface SimParams {
  runners: number;
  slots: number;
  capacity: number;
  topics: number;
  chunksPerTopic: number;
  k: number;
  zipf: number;
  requests: number;
  utilisation: number;
  heartbeatMs: number;
  prefillMs: number;
  hitMs: number;
  missMs: number;
  /** σ of the lognormal object-store fetch time (0 = always missMs). */
  missSigma: number;
  decodeMs: number;
  seed: number;
}

/** The bench's cluster: 4 slots and 256 cached artifacts per runner, 12 chunks a topic, k = 8, Zipf 1. */
export const SIM_DEFAULTS = {
  slots: 4,
  capacity: 256,
  chunksPerTopic: 12,
  k: 8,
  zipf: 1.0,
  heartbeatMs: 2000,
  prefillMs: 30,
  hitMs: 1,
  missMs: 25,
  missSigma: 0.5,
  decodeMs: 100,
  seed: 7,
};

/** Parameters for N runners at an offered load: 16·N topics, max(20000, 100·N) requests unless overridden. */
export function simParams(runners: number, utilisation: number, over: Partial<SimParams> = {}): SimParams {
  return {
    ...SIM_DEFAULTS,
    runners,
    utilisation,
    topics: 16 * runners,
    requests: Math.max(20_000, 100 * runners),
    ...over,
  };
}

export interface SimResult {
  policy: Policy;
  hitRate: number;
  ttftP50: number;
  ttftP99: number;
  /** Share of requests none of whose chunks was cached on the runner they went to. */
  noHitShare: number;
  /** Busiest runner's busy time over the mean runner's. */
  imbalance: number;
}

class Lru {
  private readonly map = new Map<number, true>();
  private readonly cap: number;
  constructor(cap: number) {
    this.cap = cap;
  }
  touch(id: number): boolean {
    const hit = this.map.delete(id);
    this.map.set(id, true);
    if (this.map.size > this.cap) this.map.delete(this.map.keys().next().value as number);
    return hit;
  }
  snapshot(): Set<number> {
    return new Set(this.map.keys());
  }
}

function zipfSampler(n: number, s: number, rand: () => number): () => number {
  const cdf = new Float64Array(n);
  let acc = 0;
  for (let i = 0; i < n; i++) cdf[i] = acc += 1 / (i + 1) ** s;
  return () => {
    const u = rand() * acc;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid] < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

export function simulate(p: SimParams, policy: Policy): SimResult {
  const rand = rng(p.seed);
  const topicOf = zipfSampler(p.topics, p.zipf, rand);
  // Same request stream for every policy: the arrival/topic PRNG is separate from the routing PRNG.
  const routeRand = rng(p.seed ^ 0x5bd1e995);
  // Fetch times: their own stream, so policies with fewer misses do not shift the others' draws.
  const fetchRand = rng(p.seed ^ 0x27d4eb2f);
  const fetchMs = () => {
    const z = Math.sqrt(-2 * Math.log(1 - fetchRand())) * Math.cos(2 * Math.PI * fetchRand());
    return p.missMs * Math.exp(p.missSigma * z - (p.missSigma * p.missSigma) / 2);
  };
  const caches = Array.from({ length: p.runners }, () => new Lru(p.capacity));
  let seen = caches.map((c) => c.snapshot());
  let nextHeartbeat = p.heartbeatMs;
  const slotFree = Array.from({ length: p.runners }, () => new Array<number>(p.slots).fill(0));
  const ends: number[][] = Array.from({ length: p.runners }, () => []);
  const busy = new Float64Array(p.runners);
  // Arrival rate for the target utilisation if every chunk missed (the cache-less worst case).
  const worstService = p.prefillMs + p.k * p.missMs + p.decodeMs;
  const rate = (p.utilisation * p.runners * p.slots) / worstService; // requests per ms
  const warmup = Math.floor(p.requests / 5);
  const ttfts: number[] = [];
  let hits = 0;
  let lookups = 0;
  let noHit = 0;
  let t = 0;
  for (let i = 0; i < p.requests; i++) {
    t += -Math.log(1 - rand()) / rate;
    while (t >= nextHeartbeat) {
      seen = caches.map((c) => c.snapshot());
      nextHeartbeat += p.heartbeatMs;
    }
    const topic = topicOf();
    const picks = new Set<number>();
    while (picks.size < p.k) picks.add(topic * p.chunksPerTopic + Math.floor(rand() * p.chunksPerTopic));
    const chunks = [...picks];
    for (let r = 0; r < p.runners; r++) {
      const e = ends[r];
      let w = 0;
      for (const x of e) if (x > t) e[w++] = x;
      e.length = w;
    }
    let target: number;
    if (policy === 'random') target = Math.floor(routeRand() * p.runners);
    else if (policy === 'least-loaded') {
      let best = Number.POSITIVE_INFINITY;
      target = 0;
      for (let r = 0; r < p.runners; r++) {
        const l = ends[r].length + routeRand() * 0.5; // random tie-break
        if (l < best) {
          best = l;
          target = r;
        }
      }
    } else {
      const views: (RunnerView & { index: number })[] = seen.map((s, r) => ({
        id: `runner-${r}`,
        index: r,
        load: ends[r].length,
        holds: (key: string) => s.has(Number(key)),
      }));
      target = rankRunners({ artifactKeys: chunks.map(String) }, views)[0].runner.index;
    }
    let h = 0;
    for (const c of chunks) if (caches[target].touch(c)) h++;
    let prefill = p.prefillMs + h * p.hitMs;
    for (let j = h; j < p.k; j++) prefill += fetchMs();
    const slots = slotFree[target];
    let s = 0;
    for (let j = 1; j < slots.length; j++) if (slots[j] < slots[s]) s = j;
    const start = Math.max(t, slots[s]);
    const end = start + prefill + p.decodeMs;
    slots[s] = end;
    ends[target].push(end);
    busy[target] += prefill + p.decodeMs;
    if (i >= warmup) {
      ttfts.push(start - t + prefill);
      hits += h;
      lookups += p.k;
      if (h === 0) noHit++;
    }
  }
  ttfts.sort((a, b) => a - b);
  const mean = busy.reduce((a, b) => a + b, 0) / p.runners;
  return {
    policy,
    hitRate: hits / lookups,
    ttftP50: ttfts[Math.floor(ttfts.length * 0.5)],
    ttftP99: ttfts[Math.min(ttfts.length - 1, Math.floor(ttfts.length * 0.99))],
    noHitShare: noHit / ttfts.length,
    imbalance: Math.max(...busy) / mean,
  };
}
