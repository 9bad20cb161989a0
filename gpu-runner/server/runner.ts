// createRunner: one runner process's parts wired together — engine, artifact tiers, scheduler, HTTP app,
// precompute consumer and registry heartbeat — with start() and a graceful stop(). `kvrag runner` builds
// it from configuration; embedded `kvrag serve` can build it in-process and call `app.fetch` directly.
import { hostname } from 'node:os';
import { type ServerType, serve } from '@hono/node-server';
import type { Hono } from 'hono';
import type { Consumer, JobQueue } from '../../contracts/queue.ts';
import type { RunnerRegistry } from '../../contracts/heartbeat.ts';
import type { Log } from '../../contracts/log.ts';
import type { BlobStore } from '../../contracts/blob-store.ts';
import type { BackendChoice } from '../engine/backends/registry.ts';
import type { Backend, KVCacheDType } from '../engine/backends/types.ts';
import { type Engine, loadEngine } from '../engine/engine.ts';
import type { KVDType } from '../engine/kv/artifact-format.ts';
import { ArtifactStore } from '../engine/kv/artifact-store.ts';
import { EngineTier } from '../engine/kv/engine-tier.ts';
import { ObjectTier } from '../engine/kv/object-tier.ts';
import { DiskTier, HostTier } from '../engine/kv/tiers.ts';
import { readReuseSettings } from '../engine/model-profile.ts';
import { Assembler } from '../engine/reuse/assemble.ts';
import type { WeightDType } from '../engine/weights.ts';
import { createRunnerApp } from './app.ts';
import { type RunnerCredential, randomCredential } from './auth.ts';
import { DEFAULT_RUNNER_LIMITS, type RunnerCore, type RunnerLimits } from './core.ts';
import { type EvictionSweep, startEvictionSweep } from './evict-loop.ts';
import { type HeartbeatLoop, startHeartbeat } from './heartbeat-loop.ts';
import { RunnerMetrics } from './metrics.ts';
import { startPrecomputeConsumer } from './precompute-consumer.ts';
import { Scheduler, type SchedulerOptions } from '../engine/generate/scheduler.ts';

export interface RunnerOptions {
  /** A loaded engine (kept on stop) or a model directory (loaded here, disposed on stop). */
  engine?: Engine;
  modelDir?: string;
  backend?: Backend | BackendChoice;
  threads?: number;
  weightDType?: WeightDType;
  maxContext?: number;
  /**
   * The native backend's KV cache element type when the backend is created here (default int8: a byte per
   * value and a scale per row, so a decode step's attention reads 68 of f32's 256 bytes a row, squeezed
   * requests' fused step included; f16: half f32's bytes, as
   * llama.cpp's default cache type).
   */
  kvCacheDType?: KVCacheDType;
  /** The object store: durable home of artifacts. */
  blobs: BlobStore;
  /** Host-memory artifact tier bytes. Default 256 MiB. */
  kvHostBytes?: number;
  /** Local disk tier: directory and bytes; absent = no disk tier. */
  kvDiskDir?: string;
  kvDiskBytes?: number;
  /** Engine-memory tier (resident artifacts on the device) bytes. Default 128 MiB. */
  kvEngineBytes?: number;
  /** Artifact dtype stored and read; default: the model's reuse.json `artifactDType`, else f16. */
  dtype?: KVDType;
  scheduler?: Omit<SchedulerOptions, 'assembler' | 'observer' | 'mutex'>;
  /**
   * Required on every route but /healthz (auth.ts). Absent: a random one, readable as core.credential
   * (in-process callers); a runner is never open.
   */
  credential?: RunnerCredential;
  /** Caps per request (core.ts RunnerLimits); each unset one takes its DEFAULT_RUNNER_LIMITS value. */
  limits?: Partial<RunnerLimits>;
  /** How long a precompute job of another model is left for a runner of its model (default 5 s). */
  precomputeDeferMs?: number;
  /** Consume `precompute` from this queue (and emit `precompute-done` to it). */
  queue?: JobQueue;
  /** Publish heartbeats here. */
  registry?: RunnerRegistry;
  /**
   * How often local copies (engine memory, host, disk) are checked against the object store, and those it
   * no longer holds (gc deleted them) dropped (evict-loop.ts). 0 = never. Default 5 minutes.
   */
  evictCheckMs?: number;
  heartbeatMs?: number;
  id?: string;
  /** The URL routers use to reach this runner. Default http://<hostname>:<port>. */
  url?: string;
  /** Listen here on start(); absent = no HTTP server (in-process use through app.fetch). */
  port?: number;
  /** Default 127.0.0.1: other hosts reach the runner only where the operator opens it. */
  host?: string;
  log?: Log;
}

export interface Runner {
  core: RunnerCore;
  /** Drops local copies of artifacts gone from the object store (also runs every evictCheckMs). */
  evictDeleted(): Promise<number>;
  app: Hono<{ Variables: { requestId: string } }>;
  /** Listens (when a port was given), starts consuming and heartbeating; resolves with the bound port. */
  start(): Promise<{ port: number | null }>;
  /**
   * Graceful shutdown: refuse new work, leave the registry, hand back the running precompute job (it is
   * retried elsewhere), let running requests finish for up to graceMs (the rest end with reason
   * `shutdown`), close the server and free the engine if it was loaded here.
   */
  stop(opts?: { graceMs?: number }): Promise<void>;
}

export async function createRunner(opts: RunnerOptions): Promise<Runner> {
  const owned = !opts.engine;
  if (!opts.engine && !opts.modelDir)
    throw new Error('createRunner: an engine or a model directory is needed');
  const engine =
    opts.engine ??
    (await loadEngine(opts.modelDir!, {
      backend: opts.backend ?? 'auto',
      backendOptions: { threads: opts.threads, kvDType: opts.kvCacheDType ?? 'int8' },
      weightDType: opts.weightDType,
      maxContext: opts.maxContext,
    }));
  const host = new HostTier(opts.kvHostBytes ?? 256 * 1024 * 1024);
  const disk = opts.kvDiskDir
    ? await DiskTier.open(opts.kvDiskDir, opts.kvDiskBytes ?? 1024 ** 3)
    : undefined;
  const store = new ArtifactStore({
    fingerprint: engine.fingerprint,
    tokenizerHash: engine.tokenizer.hash,
    host,
    disk,
    object: new ObjectTier(opts.blobs, engine.fingerprint),
  });
  const dtype = opts.dtype ?? readReuseSettings(engine.dir).artifactDType ?? 'f16';
  const engineTier = new EngineTier(
    engine.backend,
    engine.config,
    store,
    opts.kvEngineBytes ?? 128 * 1024 * 1024,
  );
  const assembler = new Assembler(engine, engineTier, { dtype });
  const metrics = new RunnerMetrics();
  const scheduler = new Scheduler(engine, { ...opts.scheduler, assembler, observer: metrics });
  const port = opts.port;
  const core: RunnerCore = {
    id: opts.id ?? `${hostname()}-${process.pid}`,
    url: opts.url ?? `http://${hostname()}:${port ?? 0}`,
    engine,
    store,
    engineTier,
    host,
    disk,
    assembler,
    scheduler,
    metrics,
    dtype,
    ready: false,
    credential: opts.credential ?? randomCredential(),
    limits: {
      ...DEFAULT_RUNNER_LIMITS,
      ...Object.fromEntries(Object.entries(opts.limits ?? {}).filter(([, v]) => v !== undefined)),
    },
  };
  const app = createRunnerApp(core, opts.log);
  let server: ServerType | null = null;
  let consumer: Consumer | null = null;
  let heartbeat: HeartbeatLoop | null = null;
  const eviction: EvictionSweep = startEvictionSweep(core, {
    intervalMs: opts.evictCheckMs ?? 5 * 60_000,
    log: opts.log,
  });

  return {
    core,
    app,
    evictDeleted: () => eviction.sweep(),
    async start() {
      let bound: number | null = null;
      if (port !== undefined) {
        bound = await new Promise<number>((resolve, reject) => {
          const s = serve({ fetch: app.fetch, port, hostname: opts.host ?? '127.0.0.1' }, (info) =>
            resolve(info.port),
          );
          s.once('error', reject);
          server = s;
        });
        if (!opts.url)
          core.url = `http://${(opts.host ?? '127.0.0.1') === '0.0.0.0' ? hostname() : (opts.host ?? '127.0.0.1')}:${bound}`;
      }
      core.ready = true;
      if (opts.queue)
        consumer = startPrecomputeConsumer(core, opts.queue, opts.blobs, {
          log: opts.log,
          deferMs: opts.precomputeDeferMs,
        });
      if (opts.registry) {
        heartbeat = startHeartbeat(core, opts.registry, { intervalMs: opts.heartbeatMs, log: opts.log });
        await heartbeat.beat();
      }
      opts.log?.('info', 'runner started', { id: core.id, url: core.url, fingerprint: engine.fingerprint });
      return { port: bound };
    },
    async stop({ graceMs = 30_000 } = {}) {
      core.ready = false;
      await eviction.stop();
      await heartbeat?.stop();
      await consumer?.close();
      await scheduler.drain(graceMs);
      const s = server as ServerType | null;
      if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
      if (owned) engine.dispose();
      opts.log?.('info', 'runner stopped', { id: core.id });
    },
  };
}
