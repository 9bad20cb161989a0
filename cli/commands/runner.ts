// `kvrag runner`: the runner process of a GPU/CPU runner container (DESIGN.md §4.4). Serves the runner
// API on KVRAG_RUNNER_HOST:KVRAG_RUNNER_PORT (127.0.0.1 unless configured) behind the runner credential
// (KVRAG_RUNNER_TOKEN, required; KVRAG_RUNNER_TOKEN_PREVIOUS accepted during a rotation), consumes `precompute` from BullMQ and heartbeats to the Redis registry when
// KVRAG_REDIS_URL is set, keeps artifacts in the configured object store with a local disk tier under
// <dataDir>/kv. SIGTERM/SIGINT: graceful stop (refuse new work, leave the registry, hand back the
// running precompute job, let running requests finish for --grace-ms), then exit 0.
import { join } from 'node:path';
import { loadConfig } from '../../src/config.ts';
import { servingModelDir } from '../model-dir.ts';
import { jsonLogger } from '../../src/log.ts';
import type { JobQueue } from '../../contracts/queue.ts';
import type { RunnerRegistry } from '../../contracts/heartbeat.ts';
import { openBlobStore } from '../../src/storage/open.ts';
import { numberOption, parseOptions, UsageError } from '../args.ts';
import type { Command } from '../command.ts';
import { engineBackend } from '../engine-backend.ts';

export const command: Command = {
  summary: 'Run an inference runner: runner HTTP API, precompute consumer, registry heartbeat.',
  usage:
    'kvrag runner [--port N] [--host H] [--id ID] [--url URL] [--max-running N] [--step-tokens N] [--batch-window-ms MS] ' +
    '[--kv-bytes N] [--engine-kv-bytes N] [--precompute-batch N] [--heartbeat-ms MS] [--job-lock-ms MS] [--grace-ms MS] [--evict-check-ms MS]',
  async run(args) {
    const { values } = parseOptions(args, {
      port: { type: 'string' },
      host: { type: 'string' },
      id: { type: 'string' },
      url: { type: 'string' },
      'max-running': { type: 'string' },
      'step-tokens': { type: 'string' },
      'batch-window-ms': { type: 'string' },
      'kv-bytes': { type: 'string' },
      'engine-kv-bytes': { type: 'string' },
      'precompute-batch': { type: 'string' },
      'heartbeat-ms': { type: 'string' },
      'job-lock-ms': { type: 'string' },
      'grace-ms': { type: 'string' },
      'evict-check-ms': { type: 'string' },
    });
    const config = loadConfig(process.env);
    if (!config.runnerToken)
      throw new UsageError(
        'set KVRAG_RUNNER_TOKEN (32+ characters, e.g. `openssl rand -hex 32`): the runner refuses every call ' +
          'without it, and the API and workers send it',
      );
    const port = numberOption('port', values.port, config.runnerPort);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError('--port must be 0..65535');
    const log = jsonLogger(config.logLevel, { service: 'kvrag-runner' });
    const blobs = await openBlobStore(config);
    let queue: JobQueue | undefined;
    let registry: RunnerRegistry | undefined;
    if (config.redisUrl) {
      const lockMs = numberOption('job-lock-ms', values['job-lock-ms'], 30_000);
      const { BullMqJobQueue } = await import('../../src/queue/bullmq.ts');
      const { RedisRegistry } = await import('../../src/routing/registry-redis.ts');
      queue = new BullMqJobQueue({
        url: config.redisUrl,
        log,
        lockDurationMs: lockMs,
        stalledIntervalMs: lockMs,
      });
      registry = new RedisRegistry(config.redisUrl);
    }
    const { createRunner } = await import('../../gpu-runner/server/runner.ts');
    const runner = await createRunner({
      modelDir: servingModelDir(config),
      backend: await engineBackend(config),
      threads: config.engineThreads,
      weightDType: config.weightDType,
      kvCacheDType: config.nativeKvDType,
      dtype: config.kvDType,
      maxContext: config.maxContext,
      blobs,
      kvHostBytes: config.kvHostBytes,
      kvDiskDir: join(config.dataDir, 'kv'),
      kvDiskBytes: config.kvDiskBytes,
      kvEngineBytes: numberOption('engine-kv-bytes', values['engine-kv-bytes'], 128 * 1024 * 1024),
      scheduler: {
        maxRunning: numberOption('max-running', values['max-running'], 16),
        maxStepTokens: numberOption('step-tokens', values['step-tokens'], 256),
        batchWindowMs: numberOption('batch-window-ms', values['batch-window-ms'], 10),
        kvBytes: numberOption('kv-bytes', values['kv-bytes'], 256 * 1024 * 1024),
      },
      credential: { current: config.runnerToken, previous: config.runnerTokenPrevious },
      limits: {
        maxTokens: config.runnerMaxTokens,
        maxDeadlineMs: config.runnerMaxDeadlineMs,
        maxBodyBytes: config.runnerMaxBodyBytes,
        precomputeBatch:
          values['precompute-batch'] === undefined
            ? config.runnerPrecomputeBatch
            : numberOption('precompute-batch', values['precompute-batch'], 16),
      },
      queue,
      registry,
      heartbeatMs: numberOption('heartbeat-ms', values['heartbeat-ms'], 2000),
      evictCheckMs: numberOption('evict-check-ms', values['evict-check-ms'], 5 * 60_000),
      id: values.id,
      url: values.url,
      port,
      host: values.host ?? config.runnerHost,
      log,
    });
    const { port: bound } = await runner.start();
    // one line on stdout that scripts (and tests) can wait for
    process.stdout.write(
      `${JSON.stringify({ listening: bound, id: runner.core.id, url: runner.core.url })}\n`,
    );
    await new Promise<void>((resolve) => {
      process.once('SIGTERM', () => resolve());
      process.once('SIGINT', () => resolve());
    });
    await runner.stop({ graceMs: numberOption('grace-ms', values['grace-ms'], 30_000) });
    await queue?.close();
    await registry?.close();
    return 0;
  },
};
