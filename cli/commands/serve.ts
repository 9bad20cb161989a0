// `kvrag serve`: the embedded all-in-one process (npm start): the API, the ingestion workers and — unless
// KVRAG_RUNNER_URLS names remote runners — an in-process runner on the configured model, over PGlite (or
// Postgres), filesystem blobs (or S3) and the in-process queue (or BullMQ). Stops gracefully on
// SIGINT/SIGTERM: the API stops taking requests, workers finish their jobs, the runner its sequences.
import { join } from 'node:path';
import { serve } from '@hono/node-server';
import { createApp } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import { servingModelDir } from '../model-dir.ts';
import { type AnswerOptions, openAnswerServices } from '../../src/node-answer.ts';
import { openNodeServices } from '../../src/node-services.ts';
import { withRunnerToken } from '../../contracts/runner-api.ts';
import { parseOptions } from '../args.ts';
import type { Command } from '../command.ts';
import { engineBackend } from '../engine-backend.ts';

export const command: Command = {
  summary: 'Run the API, ingestion workers and a runner in one process (embedded mode by default).',
  usage: 'kvrag serve [--port N] [--host H] [--data-dir DIR]',
  async run(args) {
    const { values } = parseOptions(args, {
      port: { type: 'string' },
      host: { type: 'string' },
      'data-dir': { type: 'string' },
    });
    const config = loadConfig(process.env, {
      ...(values.port ? { port: values.port } : {}),
      ...(values.host ? { host: values.host } : {}),
      ...(values['data-dir'] ? { dataDir: values['data-dir'] } : {}),
    });
    const services = await openNodeServices(config);
    const log = services.log;
    const stops: (() => Promise<void>)[] = [];
    try {
      const { loadServingModel } = await import('../../workers/serving-model.ts');
      const { parsePoolOptions, reconcilerOptions, startWorkers, workerDeps } = await import(
        '../../workers/run.ts'
      );
      const model = loadServingModel(servingModelDir(config));
      const workers = startWorkers(workerDeps(services, model), services.queue, {
        concurrency: { ingest: config.maxConcurrentJobs },
        relay: { retentionMs: config.outboxRetentionS * 1000 },
        metrics: services.metrics,
        parse: parsePoolOptions(config),
        reconcile: reconcilerOptions(config),
      });
      stops.push(() => workers.stop());

      let inProcess: AnswerOptions['inProcess'];
      if (config.runnerUrls.length === 0) {
        const { createRunner } = await import('../../gpu-runner/server/runner.ts');
        const { randomCredential } = await import('../../gpu-runner/server/auth.ts');
        // the in-process runner wants its credential too: the configured one, else one for this process
        const credential = config.runnerToken
          ? { current: config.runnerToken, previous: config.runnerTokenPrevious }
          : randomCredential();
        const runner = await createRunner({
          modelDir: servingModelDir(config),
          backend: await engineBackend(config),
          threads: config.engineThreads,
          weightDType: config.weightDType,
          kvCacheDType: config.nativeKvDType,
          dtype: config.kvDType,
          maxContext: config.maxContext,
          blobs: services.blobs,
          kvHostBytes: config.kvHostBytes,
          kvDiskDir: join(config.dataDir, 'kv'),
          kvDiskBytes: config.kvDiskBytes,
          queue: services.queue,
          credential,
          limits: {
            maxTokens: config.runnerMaxTokens,
            maxDeadlineMs: config.runnerMaxDeadlineMs,
            maxBodyBytes: config.runnerMaxBodyBytes,
            precomputeBatch: config.runnerPrecomputeBatch,
          },
          log,
        });
        await runner.start();
        stops.push(() => runner.stop());
        const fetchRunner = withRunnerToken((r) => runner.app.fetch(r), credential.current);
        services.readiness.runner = async () => {
          const res = await fetchRunner(new Request('http://runner.local/readyz'));
          await res.body?.cancel();
          if (!res.ok) throw new Error(`runner not ready (${res.status})`);
        };
        // the API plans from the profile the in-process runner's engine read from the model directory
        inProcess = { fetch: fetchRunner, profile: runner.core.engine.profile };
      }
      const answer = await openAnswerServices(config, { inProcess, db: services.db.db, log });
      stops.push(() => answer.close());
      if (services.api) services.api.answer = answer.answer;

      const app = createApp(services);
      const server = serve({ fetch: app.fetch, hostname: config.host, port: config.port });
      await new Promise<void>((resolve, reject) => {
        server.once('listening', resolve);
        server.once('error', reject);
      });
      const addr = server.address();
      const port = typeof addr === 'object' && addr ? addr.port : config.port;
      log?.('info', 'kvrag listening', { url: `http://${config.host}:${port}`, model: model.fingerprint });

      await new Promise<void>((resolve) => {
        const stop = () => {
          log?.('info', 'shutting down');
          server.close(() => resolve());
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    } finally {
      for (const stop of stops.reverse())
        await stop().catch((err) => log?.('error', 'stop failed', { err: String(err) }));
      await services.close();
    }
    return 0;
  },
};
