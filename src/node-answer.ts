// Builds the answer routes' services on Node (kvrag serve) — the parts it shares with the Workers entry
// (pool, served models, answer cache) through src/answer-services.ts — over the runner source: the
// in-process runner in embedded mode; otherwise KVRAG_RUNNER_URLS polled for health, merged with registry
// heartbeats from Redis when KVRAG_REDIS_URL is set (a heartbeat carries load and resident artifacts, so it
// wins for its URL; only heartbeats signed with the runner credential, and on the URL allow-list when one
// is set, count) — every call carrying the runner credential. Node-only here: the Redis registry and the
// artifact-use recorder (kv_artifacts.last_used_at, batched on a timer) when given the database.
import type { Log } from '../contracts/log.ts';
import type { ModelProfile } from '../contracts/model-profile.ts';
import type { FetchFn } from '../contracts/runner-api.ts';
import { answerServices, remoteRunners } from './answer-services.ts';
import { ArtifactUse } from './answer/artifact-use.ts';
import type { AnswerServices } from './answer/services.ts';
import type { Config } from './config.ts';
import type { Database } from './db/types.ts';
import { inProcessSource, type RunnerSource, registrySource } from './routing/runner-client.ts';

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
    const remote = remoteRunners(config, opts.log);
    if (!remote) throw new Error('no runner: set KVRAG_RUNNER_URLS, or run the in-process runner');
    source = remote.source;
    if (config.redisUrl) {
      const { RedisRegistry } = await import('./routing/registry-redis.ts');
      const registry = new RedisRegistry(config.redisUrl);
      closers.push(() => registry.close());
      const trust = {
        tokens: [config.runnerToken!, ...(config.runnerTokenPrevious ? [config.runnerTokenPrevious] : [])],
        allow: config.runnerUrlAllowlist,
      };
      const refused = (id: string, url: string, reason: string) =>
        opts.log?.('warn', 'runner heartbeat refused', { runner: id, url, reason });
      source = mergeSources(source, registrySource(registry, remote.fetch, trust, refused));
    }
  }
  const artifactUse = opts.db ? new ArtifactUse(opts.db, { log: opts.log }) : undefined;
  if (artifactUse) closers.push(() => artifactUse.close());
  return {
    answer: {
      ...answerServices(config, source, { seed: opts.inProcess ? [opts.inProcess.profile] : [] }),
      artifactUse,
    },
    async close() {
      for (const c of closers.reverse()) await c();
    },
  };
}
