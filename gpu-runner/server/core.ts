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
import type { RunnerCredential } from './auth.ts';
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
  /** Required on every route but /healthz; the current token signs the heartbeats. */
  credential: RunnerCredential;
  limits: RunnerLimits;
}

/**
 * What one caller may ask of a runner (the operator's caps, KVRAG_RUNNER_*): a request over a cap is
 * refused with 400 naming it; a request without a deadline gets maxDeadlineMs.
 */
export interface RunnerLimits {
  /** Largest `maxTokens` of a generate request. */
  maxTokens: number;
  /** Longest deadline of a sequence, ms from arrival (also the deadline of a request without one). */
  maxDeadlineMs: number;
  /** Largest request body, counted while it streams in. */
  maxBodyBytes: number;
  /** Chunks prefilled per hold of the engine (precompute jobs and POST /v1/precompute). */
  precomputeBatch: number;
}

export const DEFAULT_RUNNER_LIMITS: RunnerLimits = {
  maxTokens: 4096,
  maxDeadlineMs: 600_000,
  maxBodyBytes: 16 * 1024 * 1024,
  precomputeBatch: 16,
};

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
