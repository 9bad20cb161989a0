// GET /v1/runners — the runners this API routes to, for the console's Runners page: the models each
// serves, its load, KV memory, and per artifact tier occupancy and hit rate (its /metrics, read through the
// router's own connection to it), plus its heartbeat where a registry lists it. Any valid key may look
// (tenant or admin); runner URLs are shown to the admin key only. Never unauthenticated.
import { Hono } from 'hono';
import { requireAnswerServices } from '../answer/prepare.ts';
import { scrapeRunner } from '../routing/runner-stats.ts';
import type { AppEnv } from '../services.ts';
import { api } from './auth.ts';

/** Scrapes are shared for this long: many open consoles cost a runner one /metrics read a second. */
const SCRAPE_TTL_MS = 1000;

export function runnerRoutes(): Hono<AppEnv> {
  const r = new Hono<AppEnv>();
  // per runner pool (one per API process or Workers isolate): runner id → the last scrape and its time
  const recent = new WeakMap<object, Map<string, { at: number; got: ReturnType<typeof scrapeRunner> }>>();
  r.get('/', async (c) => {
    const admin = c.get('principal')?.kind === 'admin';
    const svc = requireAnswerServices(api(c).answer);
    const [runners, models] = await Promise.all([svc.runners.list(), svc.models.list()]);
    const now = Date.now();
    let cache = recent.get(svc.runners);
    if (!cache) recent.set(svc.runners, (cache = new Map()));
    for (const [id, e] of cache) if (now - e.at >= SCRAPE_TTL_MS) cache.delete(id);
    const data = await Promise.all(
      runners.map(async (rn) => {
        let hit = cache.get(rn.id);
        if (!hit) cache.set(rn.id, (hit = { at: now, got: scrapeRunner(rn) }));
        const scraped = await hit.got;
        const hb = rn.heartbeat;
        return {
          id: rn.id,
          object: 'runner' as const,
          ...(admin ? { url: rn.url } : {}),
          models: rn.models.map((fp) => ({
            fingerprint: fp,
            id: models.find((m) => m.fingerprint === fp)?.id ?? null,
          })),
          /** Requests at the runner as the router counts them (heartbeat load + in flight from here). */
          load: rn.load,
          heartbeat: hb
            ? {
                running: hb.load.running,
                waiting: hb.load.waiting,
                max_running: hb.load.maxRunning,
                kv_free_bytes: hb.kvFreeBytes,
                age_ms: Math.max(0, now - hb.sentAt),
              }
            : null,
          metrics:
            'metrics' in scraped
              ? {
                  running: scraped.metrics.running,
                  waiting: scraped.metrics.waiting,
                  kv_bytes_in_use: scraped.metrics.kvBytesInUse,
                  kv_bytes_capacity: scraped.metrics.kvBytesCapacity,
                  tokens_per_second: scraped.metrics.tokensPerSecond,
                  requests: scraped.metrics.requests,
                  mean_ttft_ms:
                    scraped.metrics.meanTtftSeconds === null ? null : scraped.metrics.meanTtftSeconds * 1000,
                  prompt_tokens: scraped.metrics.promptTokens,
                  cached_tokens: scraped.metrics.cachedTokens,
                  tiers: scraped.metrics.tiers.map((t) => ({
                    name: t.name,
                    hits: t.hits,
                    misses: t.misses,
                    hit_rate: t.hitRate,
                    resident_bytes: t.residentBytes,
                    capacity_bytes: t.capacityBytes,
                  })),
                }
              : null,
          metrics_error: 'error' in scraped ? scraped.error : null,
        };
      }),
    );
    return c.json({ object: 'list' as const, data });
  });
  return r;
}
