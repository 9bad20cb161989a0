// `kvrag workers`: the ingestion workers as their own process (distributed mode): the outbox relay and
// the ingest, precompute-done and gc consumers on the configured queue (BullMQ when KVRAG_REDIS_URL is
// set), plus the periodic artifact sweep. SIGINT/SIGTERM: stop taking jobs, finish the running ones, exit.
import { loadConfig } from '../../src/config.ts';
import { servingModelDir } from '../model-dir.ts';
import { parseOptions, UsageError } from '../args.ts';
import type { Command } from '../command.ts';

/** `90s`, `15m`, `12h`, `30d` or plain milliseconds. */
function duration(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(v.trim());
  if (!m) throw new UsageError(`--${name} must be a duration such as 90s, 15m, 12h or 30d, got "${v}"`);
  const unit = { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 }[(m[2] ?? 'ms') as 'ms'];
  return Math.round(Number(m[1]) * unit);
}

export const command: Command = {
  summary: 'Run the outbox relay and the ingest, precompute-done and gc workers on the configured queue.',
  usage:
    'kvrag workers [--concurrency N (ingest jobs at once; default KVRAG_MAX_CONCURRENT_JOBS)] [--no-relay] [--sweep-every DURATION (0 = off, default 15m)] [--artifact-max-idle DURATION] [--gc-grace DURATION]',
  async run(args) {
    const { values } = parseOptions(args, {
      concurrency: { type: 'string' },
      'no-relay': { type: 'boolean' },
      'sweep-every': { type: 'string' },
      'artifact-max-idle': { type: 'string' },
      'gc-grace': { type: 'string' },
    });
    const concurrency = values.concurrency === undefined ? undefined : Number(values.concurrency);
    if (
      concurrency !== undefined &&
      !(Number.isInteger(concurrency) && concurrency >= 1 && concurrency <= 64)
    ) {
      throw new UsageError(`--concurrency must be an integer from 1 to 64, got "${values.concurrency}"`);
    }
    const sweepEveryMs = duration('sweep-every', values['sweep-every']);
    const maxIdleMs = duration('artifact-max-idle', values['artifact-max-idle']);
    const graceMs = duration('gc-grace', values['gc-grace']);

    const config = loadConfig(process.env);
    const { openNodeServices } = await import('../../src/node-services.ts');
    const { loadServingModel } = await import('../../workers/serving-model.ts');
    const { parsePoolOptions, reconcilerOptions, startWorkers, workerDeps } = await import(
      '../../workers/run.ts'
    );

    const services = await openNodeServices(config);
    const log = services.log;
    try {
      const model = loadServingModel(servingModelDir(config));
      const queue = services.queue;
      if (!config.redisUrl) {
        log?.('warn', 'no KVRAG_REDIS_URL: using the in-process queue, so only this process sees the jobs');
      }
      const workers = startWorkers(workerDeps(services, model), queue, {
        concurrency: { ingest: concurrency ?? config.maxConcurrentJobs },
        relay: values['no-relay'] ? false : { retentionMs: config.outboxRetentionS * 1000 },
        sweepEveryMs,
        gc: { maxIdleMs, graceMs },
        metrics: services.metrics,
        parse: parsePoolOptions(config),
        reconcile: reconcilerOptions(config),
      });
      const { startMetricsServer } = await import('../../workers/metrics-server.ts');
      const metricsServer =
        config.metricsPort === undefined
          ? undefined
          : await startMetricsServer(services.metrics, config.metricsPort, config.host);
      log?.('info', 'kvrag workers running', {
        model: model.fingerprint,
        queue: config.redisUrl ? 'bullmq' : 'memory',
        ...(metricsServer ? { metrics: `http://${config.host}:${metricsServer.port}/metrics` } : {}),
      });
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      log?.('info', 'workers shutting down: finishing running jobs');
      await workers.stop();
      await metricsServer?.close();
    } finally {
      await services.close();
    }
    return 0;
  },
};
