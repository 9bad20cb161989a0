// Builds the answer routes' services on Node (kvrag serve): the runner pool — the in-process runner in
// embedded mode; otherwise KVRAG_RUNNER_URLS polled for health, merged with registry heartbeats from Redis
// when KVRAG_REDIS_URL is set (a heartbeat carries load and resident artifacts, so it wins for its URL;
// only heartbeats signed with the runner credential, and on the URL allow-list when one is set, count) —
// every call carrying the runner credential —
// the served model read from the model directory, and the answer cache.
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { Config } from './config.ts';
import { AnswerCache } from './routing/answer-cache.ts';
import type { AnswerModel, AnswerServices, CachedAnswer } from './routing/answer-services.ts';
import {
  type FetchFn,
  inProcessSource,
  type RunnerSource,
  RunnerPool,
  registrySource,
  staticSource,
  withRunnerToken,
} from './routing/runner-client.ts';
import type { Log } from './services.ts';

export interface AnswerOptions {
  modelDir: string;
  fingerprint: string;
  /** Embedded mode: the in-process runner's fetch (credential attached) and what its engine knows. */
  inProcess?: { fetch: FetchFn; maxContext: number; chatTemplate: boolean };
  log?: Log;
}

/** Throughput estimates for the planner's latency budget until runners report measured ones. */
const PREFILL_TOKENS_PER_SEC = 2_000;
const LOAD_TOKENS_PER_SEC = 200_000;

function readJson(path: string): Record<string, unknown> {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch {
    return {};
  }
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
  if (opts.inProcess) source = inProcessSource(opts.inProcess.fetch, opts.fingerprint);
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
  const modelConfig = readJson(join(opts.modelDir, 'config.json'));
  const tokConfig = readJson(join(opts.modelDir, 'tokenizer_config.json'));
  const positions = Number(modelConfig.max_position_embeddings) || 2048;
  const model: AnswerModel = {
    id: basename(opts.modelDir.replace(/\/+$/, '')),
    fingerprint: opts.fingerprint,
    chatTemplate: opts.inProcess?.chatTemplate ?? typeof tokConfig.chat_template === 'string',
    created: Math.floor(Date.now() / 1000),
    contextTokens: opts.inProcess?.maxContext ?? Math.min(config.maxContext ?? positions, positions),
    tier: 'small',
    prefillTokensPerSec: PREFILL_TOKENS_PER_SEC,
    loadTokensPerSec: LOAD_TOKENS_PER_SEC,
    sparseBreakEven: Number.MAX_SAFE_INTEGER,
    ...(Number(modelConfig.num_hidden_layers) > 0 ? { layers: Number(modelConfig.num_hidden_layers) } : {}),
    // reuse.json beside the model: {"v": 1, "independentTrained": true} when it was trained with
    // block-diagonal chunk attention (models/kvrag-tiny is)
    ...(readJson(join(opts.modelDir, 'reuse.json')).independentTrained === true
      ? { independentTrained: true }
      : {}),
  };
  return {
    answer: {
      runners: new RunnerPool(source),
      models: [model],
      cache: new AnswerCache<CachedAnswer>({ ttlMs: 60_000, maxEntries: 1000 }),
    },
    async close() {
      for (const c of closers.reverse()) await c();
    },
  };
}
