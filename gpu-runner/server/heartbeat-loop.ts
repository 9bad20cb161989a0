// The runner's registry heartbeat (DESIGN.md §4.4): every `intervalMs` it publishes id, URL, model
// fingerprint, load (running, waiting, cap), free KV memory, a Bloom filter of the artifacts it holds
// close and the model's profile (what the API plans from), with a TTL of a few intervals, so a runner that
// dies drops out of routing on its own. Each heartbeat is signed with the runner credential: routers use
// only signed ones.
import { BloomFilter } from '../../contracts/bloom.ts';
import { type RunnerHeartbeat, type RunnerRegistry, signHeartbeat } from '../../contracts/heartbeat.ts';
import type { Log } from '../../contracts/log.ts';
import { type RunnerCore, residentKeys } from './core.ts';

export interface HeartbeatOptions {
  /** Default 2000 ms. */
  intervalMs?: number;
  /** Default 3 × interval. */
  ttlMs?: number;
  log?: Log;
}

export function heartbeatOf(core: RunnerCore): RunnerHeartbeat {
  const s = core.scheduler.stats();
  const keys = residentKeys(core);
  const bloom = BloomFilter.forCapacity(Math.max(64, keys.length));
  for (const k of keys) bloom.add(k);
  return {
    v: 1,
    id: core.id,
    url: core.url,
    models: [core.engine.fingerprint],
    load: { running: s.running, waiting: s.waiting, maxRunning: s.maxRunning },
    kvFreeBytes: Math.max(0, s.kvBytesCapacity - s.kvBytesInUse),
    artifacts: bloom.toJSON(),
    sentAt: Date.now(),
    model: core.engine.profile,
  };
}

export interface HeartbeatLoop {
  /** Publishes once now (awaited), e.g. right after start. */
  beat(): Promise<void>;
  /** Stops beating and removes this runner from the registry. */
  stop(): Promise<void>;
}

export function startHeartbeat(
  core: RunnerCore,
  registry: RunnerRegistry,
  opts: HeartbeatOptions = {},
): HeartbeatLoop {
  const interval = opts.intervalMs ?? 2000;
  const ttl = opts.ttlMs ?? 3 * interval;
  let stopped = false;
  let inflight: Promise<void> = Promise.resolve();
  const beat = () => {
    inflight = signHeartbeat(heartbeatOf(core), core.credential.current)
      .then((hb) => registry.publish(hb, ttl))
      .catch((err) => {
        opts.log?.('warn', 'heartbeat failed', { err: String(err) });
      });
    return inflight;
  };
  const timer = setInterval(() => {
    if (!stopped) void beat();
  }, interval);
  timer.unref();
  return {
    beat,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await inflight;
      await registry.remove(core.id).catch(() => {});
    },
  };
}
