// Runs the ingestion side of kvrag against a job queue: the outbox relay, the `ingest`,
// `precompute-done` and `gc` consumers, the periodic artifact sweep and the reconciler (documents without
// progress are re-driven, reconciler.ts); parsing runs in worker threads (parse-pool.ts). `kvrag workers`
// runs it as its own process (BullMQ); the embedded `kvrag serve` calls startWorkers in-process
// (in-process queue).
// stop() is graceful: the relay finishes its pass, consumers stop taking jobs and wait for the running
// ones, a sweep in progress completes. The queue itself belongs to the caller, who closes it after.
import { type Config, loadConfig } from '../src/config.ts';
import { ingestLimits } from '../src/ingest/limits.ts';
import { MetricsRegistry } from '../src/metrics.ts';
import type { NodeServices } from '../src/node-services.ts';
import { MemoryJobQueue } from '../src/queue/memory.ts';
import { DEFAULT_ATTEMPTS } from '../src/queue/rules.ts';
import type { JobQueue } from '../contracts/queue.ts';
import type { WorkerDeps } from './deps.ts';
import { errorText } from './deps.ts';
import { type GcOptions, handleGc, sweepArtifacts } from './gc.ts';
import { handleIngest } from './ingest.ts';
import { WorkerMetrics } from './metrics.ts';
import { type RelayLoop, type RelayLoopOptions, startOutboxRelay } from './outbox-relay.ts';
import { ParsePool, type ParsePoolOptions } from './parse-pool.ts';
import { handlePrecomputeDone } from './precompute-done.ts';
import { type ReconcilerOptions, startReconciler } from './reconciler.ts';
import type { ServingModel } from './serving-model.ts';

export interface WorkersOptions {
  /** Concurrent jobs per consumer (default: ingest 2, precompute-done 4, gc 1). */
  concurrency?: { ingest?: number; precomputeDone?: number; gc?: number };
  /** Relay the outbox in this process (default true); false where another process relays. */
  relay?: boolean | RelayLoopOptions;
  /** Artifact expiry and sweep grace (workers/gc.ts). */
  gc?: GcOptions;
  /** Period of the artifact sweep; 0 = no sweep (default 15 minutes). */
  sweepEveryMs?: number;
  /** Where the job metrics go (served on /metrics by the caller); default: a registry of their own. */
  metrics?: MetricsRegistry;
  /** Bounds of one document's parse (default: the configuration's defaults); see parse-pool.ts. */
  parse?: Partial<Omit<ParsePoolOptions, 'modelDir'>>;
  /** Re-driving documents without progress (reconciler.ts; default: the configuration's); false = off. */
  reconcile?: ReconcilerOptions | false;
}

export interface RunningWorkers {
  stop(): Promise<void>;
}

/** The workers' dependencies from a Node process's services (what `kvrag serve` and `kvrag workers` open). */
export function workerDeps(services: NodeServices, model: ServingModel): WorkerDeps {
  if (!services.api) throw new Error('the services were opened without the API components');
  return {
    db: services.db.db,
    blobs: services.blobs,
    embeddings: services.api.embeddings,
    model,
    log: services.log,
  };
}

/** The reconciler settings of a configuration (what `kvrag serve` and `kvrag workers` pass). */
export function reconcilerOptions(config: Config): ReconcilerOptions {
  return { afterMs: config.reconcileAfterS * 1000, attempts: config.reconcileAttempts };
}

/** The parse bounds of a configuration (what `kvrag serve` and `kvrag workers` pass as `parse`). */
export function parsePoolOptions(config: Config): Omit<ParsePoolOptions, 'modelDir'> {
  return {
    limits: ingestLimits(config),
    timeoutMs: config.parseTimeoutS * 1000,
    memoryMb: config.parseMemoryMb,
  };
}

export function startWorkers(deps0: WorkerDeps, queue: JobQueue, opts: WorkersOptions = {}): RunningWorkers {
  // parses run in worker threads unless the caller brought its own parser
  const pool = deps0.parser
    ? undefined
    : new ParsePool({ ...parsePoolOptions(loadConfig({})), ...opts.parse, modelDir: deps0.model.dir });
  pool?.warm();
  const deps: WorkerDeps = pool ? { ...deps0, parser: pool } : deps0;
  const c = opts.concurrency ?? {};
  let relay: RelayLoop | undefined;
  const relayOpts = typeof opts.relay === 'object' ? opts.relay : {};
  // the tries the relay gives an ingest job, so the last one can mark the document failed
  const ingestAttempts = relayOpts.optionsFor?.('ingest').attempts ?? DEFAULT_ATTEMPTS;
  // every handler timed, counted and logged with its job id
  const m = new WorkerMetrics(opts.metrics ?? new MetricsRegistry(), deps, queue);
  const consumers = [
    queue.consume(
      'ingest',
      m.wrap('ingest', async (data, ctx) => {
        const r = await handleIngest(deps, data, ctx, { maxAttempts: ingestAttempts });
        // its precompute jobs are committed in the outbox: relay them now rather than after the idle pause
        if (r.outcome === 'indexed' && r.precomputeJobs > 0) relay?.poke();
        return r;
      }),
      { concurrency: c.ingest ?? 2 },
    ),
    queue.consume(
      'precompute-done',
      m.wrap('precompute-done', (data) => handlePrecomputeDone(deps, data)),
      { concurrency: c.precomputeDone ?? 4 },
    ),
    queue.consume(
      'gc',
      m.wrap('gc', (data) => handleGc(deps, data)),
      { concurrency: c.gc ?? 1 },
    ),
  ];
  if (opts.relay !== false) {
    relay = startOutboxRelay(deps.db, queue, {
      log: deps.log,
      // the in-process queue loses its jobs with the process: rows count as delivered once finished
      markWhen: queue instanceof MemoryJobQueue ? 'finished' : 'enqueued',
      ...relayOpts,
    });
  }

  const reconciler =
    opts.reconcile === false
      ? undefined
      : startReconciler(deps, queue, opts.reconcile ?? reconcilerOptions(loadConfig({})));

  const every = opts.sweepEveryMs ?? 15 * 60_000;
  let sweeping: Promise<void> | undefined;
  const timer =
    every > 0
      ? setInterval(() => {
          sweeping ??= sweepArtifacts(deps, opts.gc)
            .then(() => undefined)
            .catch((err: unknown) => deps.log?.('warn', 'gc sweep failed', { error: errorText(err) }))
            .finally(() => {
              sweeping = undefined;
            });
        }, every)
      : undefined;
  timer?.unref();

  let stopping: Promise<void> | undefined;
  return {
    stop() {
      stopping ??= (async () => {
        if (timer) clearInterval(timer);
        await reconciler?.stop();
        await relay?.stop();
        await Promise.all(consumers.map((x) => x.close()));
        await sweeping;
        await pool?.close();
      })();
      return stopping;
    },
  };
}
