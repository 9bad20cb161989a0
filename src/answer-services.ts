// Builds the answer routes' services (ApiServices.answer) from a runner source: the runner pool, the
// served models as the runners report them (src/answer/models.ts) and the answer cache. Shared by both
// entries: src/node-answer.ts (kvrag serve: in-process runner, KVRAG_RUNNER_URLS, Redis registry
// heartbeats, the batched artifact-use recorder) and src/worker-services.ts (Workers: KVRAG_RUNNER_URLS,
// once per isolate). Workers-safe: fetch only, no timers (the pool polls runners lazily, the cache expires
// entries when read), no Node-only import.
import type { Log } from '../contracts/log.ts';
import type { ModelProfile } from '../contracts/model-profile.ts';
import { type FetchFn, withRunnerToken } from '../contracts/runner-api.ts';
import { AnswerCache } from './answer/cache.ts';
import { ModelCatalog } from './answer/models.ts';
import type { AnswerServices, CachedAnswer } from './answer/services.ts';
import type { Config } from './config.ts';
import { RunnerPool, type RunnerSource, staticSource } from './routing/runner-client.ts';

/** Answers kept for a repeated identical request (per process; per isolate at the edge). */
const CACHE = { ttlMs: 60_000, maxEntries: 1000 };

/** The configured remote runners (KVRAG_RUNNER_URLS), and the fetch that carries the runner credential. */
export interface RemoteRunners {
  source: RunnerSource;
  /** Global fetch with `authorization: Bearer KVRAG_RUNNER_TOKEN` on every call. */
  fetch: FetchFn;
}

/**
 * KVRAG_RUNNER_URLS polled for health, every call with the credential; undefined when none is set. `log`
 * hears a warning each time a runner goes down, with why (a refused credential, unreachable).
 */
export function remoteRunners(config: Config, log?: Log): RemoteRunners | undefined {
  if (config.runnerUrls.length === 0) return undefined;
  // the config refuses runner URLs without a token
  const authed = withRunnerToken((r) => fetch(r), config.runnerToken!);
  const onDown = (url: string, reason: string) => log?.('warn', 'runner not ready', { url, reason });
  return { source: staticSource(config.runnerUrls, { fetch: authed, onDown }), fetch: authed };
}

/**
 * Pool, catalog and cache over `source`. `seed`: profiles known before any runner is asked (embedded
 * mode: the in-process engine's). The artifact-use recorder is the caller's (it needs a database).
 */
export function answerServices(
  config: Config,
  source: RunnerSource,
  opts: { seed?: readonly ModelProfile[] } = {},
): AnswerServices {
  const runners = new RunnerPool(source);
  return {
    runners,
    models: new ModelCatalog(() => runners.profiles(), { seed: opts.seed, maxContext: config.maxContext }),
    cache: new AnswerCache<CachedAnswer>(CACHE),
  };
}
