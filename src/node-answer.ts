// Builds the answer routes' services on Node (kvrag serve): the runner pool — the in-process runner in
// embedded mode; otherwise KVRAG_RUNNER_URLS polled for health, merged with registry heartbeats from Redis
// when KVRAG_REDIS_URL is set (a heartbeat carries load and resident artifacts, so it wins for its URL;
// only heartbeats signed with the runner credential, and on the URL allow-list when one is set, count) —
// every call carrying the runner credential — the served models as the runners report them
// (src/answer/models.ts), the answer cache, and the artifact-use recorder (kv_artifacts.last_used_at,
// batched) when given the database.
import type { Log } from '../contracts/log.ts';
import type { ModelProfile } from '../contracts/model-profile.ts';
import { type FetchFn, withRunnerToken } from '../contracts/runner-api.ts';
import { ArtifactUse } from './answer/artifact-use.ts';
import { AnswerCache } from './answer/cache.ts';
import { ModelCatalog } from './answer/models.ts';
import type { AnswerServices, CachedAnswer } from './answer/services.ts';
import type { Config } from './config.ts';
import type { Database } from './db/types.ts';
import {
  inProcessSource,
  RunnerPool,
  type RunnerSource,
  registrySource,
  staticSource,
} from './routing/runner-client.ts';

export interface AnswerOptions {
  /** Embedded mode: the in-process runner's fetch (credential attached) and its engine's profile. */
  inProcess?: { fetch: FetchFn; profile: ModelProfile };
  /** Where the artifacts answers use are recorded (absent: not recorded). */
  db?: Database;
  log?: Log;
}

/** Static runners and registry heartbeats together; a heartbeat replaces the static entry of its URL. */
function mergeSources(a: RunnerSource, b: RunnerSource): RunnerSource {
  return {
    async list() {
      const [x, y] = await Promise.all([a.list(), b.list()]);
      const urls = new Set(y.map((r) => r.url.replace(/\/+$/, '')));
      return [...x.filter((r) => !urls.has(r.url.replace(/\/+$/, ''))), ...y];
    },
  };
}

export async function openAnswerServices(
  config: Config,
  opts: AnswerOptions,
): Promise<{ answer: AnswerServices; close(): Promise<void> }> {
  const closers: (() => Promise<void>)[] = [];
  let source: RunnerSource;
  if (opts.inProcess) source = inProcessSource(opts.inProcess.fetch, opts.inProcess.profile);
  else {
    // the config refuses runner URLs without a token
    const token = config.runnerToken!;
    const authed = withRunnerToken((r) => fetch(r), token);
    source = staticSource(config.runnerUrls, { fetch: authed });
    if (config.redisUrl) {
      const { RedisRegistry } = await import('./routing/registry-redis.ts');
      const registry = new RedisRegistry(config.redisUrl);
      closers.push(() => registry.close());
      const trust = {
        tokens: [token, ...(config.runnerTokenPrevious ? [config.runnerTokenPrevious] : [])],
        allow: config.runnerUrlAllowlist,
      };
      const refused = (id: string, url: string, reason: string) =>
        opts.log?.('warn', 'runner heartbeat refused', { runner: id, url, reason });
      source = mergeSources(source, registrySource(registry, authed, trust, refused));
    }
  }
  const artifactUse = opts.db ? new ArtifactUse(opts.db, { log: opts.log }) : undefined;
  if (artifactUse) closers.push(() => artifactUse.close());
  const runners = new RunnerPool(source);
  return {
    answer: {
      runners,
      models: new ModelCatalog(() => runners.profiles(), {
        seed: opts.inProcess ? [opts.inProcess.profile] : [],
        maxContext: config.maxContext,
      }),
      cache: new AnswerCache<CachedAnswer>({ ttlMs: 60_000, maxEntries: 1000 }),
      artifactUse,
    },
    async close() {
      for (const c of closers.reverse()) await c();
    },
  };
}
