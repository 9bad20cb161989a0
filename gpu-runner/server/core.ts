// What a runner is made of once built: the engine, its artifact tiers (engine memory → host → disk →
// object store), the assembler for reuse modes, the scheduler and the metrics. The HTTP app, the
// precompute consumer and the heartbeat all work on this one object.
import type { Engine } from '../engine/engine.ts';
import type { KVDType } from '../engine/kv/artifact-format.ts';
import type { ArtifactStore } from '../engine/kv/artifact-store.ts';
import type { EngineTier } from '../engine/kv/engine-tier.ts';
import type { DiskTier, HostTier, TierStats } from '../engine/kv/tiers.ts';
import type { Assembler } from '../engine/reuse/assemble.ts';
import { AppError } from '../../contracts/errors.ts';
import type { RunnerMetrics } from './metrics.ts';
import type { Scheduler } from '../engine/generate/scheduler.ts';
import type { ContextBlock } from '../../contracts/runner-api.ts';

export interface RunnerCore {
  id: string;
  /** Where routers reach this runner (the heartbeat advertises it). */
  url: string;
  engine: Engine;
  store: ArtifactStore;
  engineTier: EngineTier;
  host: HostTier;
  disk?: DiskTier;
  assembler: Assembler;
  scheduler: Scheduler;
  metrics: RunnerMetrics;
  /** Stored artifact dtype. */
  dtype: KVDType;
  /** False once shutdown began: /readyz answers 503 and new work is refused. */
  ready: boolean;
}

/** Every tier's counters by name, engine memory included. */
export function tierStats(core: RunnerCore): Record<string, TierStats> {
  return { engine: core.engineTier.stats(), ...core.store.stats() };
}

/**
 * Token ids of a context block: a stored artifact's (by key), given ids, or encoded text. A key whose
 * artifact is missing (or was refused as corrupt and removed) falls back to the block's text, whose chunk
 * the assembler then recomputes and stores again.
 */
export async function blockTokens(core: RunnerCore, block: ContextBlock): Promise<number[]> {
  if (block.tokenIds) return [...block.tokenIds];
  if (block.key === undefined) return core.engine.encode(block.text!);
  const got = await core.store.get(block.key);
  if (!got && block.text !== undefined) return core.engine.encode(block.text);
  if (!got)
    throw new AppError(
      'not_found',
      `artifact ${block.key} is not present on this runner or its object store`,
    );
  return [...got.artifact.header.tokenIds];
}

/** Keys this runner holds close (host and disk tiers), for the heartbeat's Bloom filter. */
export function residentKeys(core: RunnerCore): string[] {
  return [...new Set([...core.host.keys(), ...(core.disk?.keys() ?? [])])];
}
