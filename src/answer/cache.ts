// Answer cache: a repeated identical request (same tenant, same normalised request) within the TTL gets the
// stored answer without a runner call. Bounded: least recently used entries go first. Per process (per
// isolate at the edge); only deterministic requests (greedy or seeded sampling) should be cached.
export interface AnswerCacheOptions {
  ttlMs?: number;
  maxEntries?: number;
  now?: () => number;
}

export class AnswerCache<V> {
  private readonly entries = new Map<string, { value: V; expires: number }>();
  private readonly ttlMs: number;
  private readonly maxEntries: number;
  private readonly now: () => number;
  hits = 0;
  misses = 0;

  constructor(opts: AnswerCacheOptions = {}) {
    this.ttlMs = opts.ttlMs ?? 60_000;
    this.maxEntries = opts.maxEntries ?? 1000;
    this.now = opts.now ?? Date.now;
  }

  /** The cache key: tenant and the request with object keys sorted and strings whitespace-normalised. */
  static key(tenantId: string, request: unknown): string {
    return `${tenantId}\n${JSON.stringify(normalise(request))}`;
  }

  get(key: string): V | undefined {
    const e = this.entries.get(key);
    if (!e || e.expires <= this.now()) {
      if (e) this.entries.delete(key);
      this.misses++;
      return undefined;
    }
    // refresh recency (Map iteration order is insertion order)
    this.entries.delete(key);
    this.entries.set(key, e);
    this.hits++;
    return e.value;
  }

  set(key: string, value: V): void {
    if (this.ttlMs <= 0 || this.maxEntries <= 0) return;
    this.entries.delete(key);
    this.entries.set(key, { value, expires: this.now() + this.ttlMs });
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
  }

  get size(): number {
    return this.entries.size;
  }
}

function normalise(v: unknown): unknown {
  if (typeof v === 'string') return v.trim().replace(/\s+/g, ' ');
  if (Array.isArray(v)) return v.map(normalise);
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) {
      const x = (v as Record<string, unknown>)[k];
      if (x !== undefined) out[k] = normalise(x);
    }
    return out;
  }
  return v;
}
