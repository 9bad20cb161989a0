// Tiered chunk-artifact store: host memory → local disk → object store (engine memory sits above it, in
// the runner). A read walks down the tiers, verifies what it finds (checksums, model, tokenizer, key),
// drops anything refused from the tier it came from, and promotes a good artifact to the tiers above.
// Concurrent reads of the same key share one load. Writes go to the object store (durable) first.
import {
  ArtifactError,
  type ArtifactErrorReason,
  type VerifiedArtifact,
  verifyArtifact,
} from './artifact-format.ts';
import type { ObjectTier } from './object-tier.ts';
import type { ArtifactTier, DiskTier, HostTier, TierStats } from './tiers.ts';

export interface ArtifactStoreOptions {
  fingerprint: string;
  tokenizerHash: string;
  host: HostTier;
  disk?: DiskTier;
  object?: ObjectTier;
}

export interface LoadedArtifact {
  /** Verified (header and every checksum), not decoded: sections are views into the tier's bytes. */
  artifact: VerifiedArtifact;
  /** Tier it was found in. */
  tier: string;
  bytes: number;
}

export class ArtifactStore {
  readonly fingerprint: string;
  readonly tokenizerHash: string;
  private readonly tiers: ArtifactTier[];
  private readonly inflight = new Map<string, Promise<LoadedArtifact | null>>();
  /** Why artifacts were refused, by reason. */
  readonly refusals: Partial<Record<ArtifactErrorReason, number>> = {};

  constructor(opts: ArtifactStoreOptions) {
    this.fingerprint = opts.fingerprint;
    this.tokenizerHash = opts.tokenizerHash;
    this.tiers = [opts.host, opts.disk, opts.object].filter(
      (t): t is NonNullable<typeof t> => t !== undefined,
    );
  }

  /** The artifact, verified, from the highest tier holding a good copy; null when none does. */
  get(key: string): Promise<LoadedArtifact | null> {
    const running = this.inflight.get(key);
    if (running) return running;
    const p = this.load(key).finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }

  private async load(key: string): Promise<LoadedArtifact | null> {
    for (let i = 0; i < this.tiers.length; i++) {
      const tier = this.tiers[i];
      const bytes = await tier.get(key);
      if (!bytes) continue;
      let artifact: VerifiedArtifact;
      try {
        artifact = verifyArtifact(bytes, {
          key,
          fingerprint: this.fingerprint,
          tokenizerHash: this.tokenizerHash,
        });
      } catch (err) {
        if (!(err instanceof ArtifactError)) throw err;
        this.refusals[err.reason] = (this.refusals[err.reason] ?? 0) + 1;
        await tier.markCorrupt(key);
        continue;
      }
      for (let j = 0; j < i; j++) await this.tiers[j].put(key, bytes);
      return { artifact, tier: tier.name, bytes: bytes.byteLength };
    }
    return null;
  }

  /** Stores an encoded artifact in every tier, the durable one first. */
  async put(key: string, bytes: Uint8Array): Promise<void> {
    for (const t of [...this.tiers].reverse()) await t.put(key, bytes);
  }

  /** Which tiers hold the key (without reading it). */
  async where(key: string): Promise<Record<string, boolean>> {
    const out: Record<string, boolean> = {};
    for (const t of this.tiers) out[t.name] = await t.has(key);
    return out;
  }

  stats(): Record<string, TierStats> {
    return Object.fromEntries(this.tiers.map((t) => [t.name, t.stats()]));
  }
}
