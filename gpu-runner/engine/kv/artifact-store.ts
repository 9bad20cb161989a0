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
      const artifact = this.verify(key, bytes);
      if (!artifact) {
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

  /**
   * Makes sure the durable tier (the lowest: the object store where there is one) holds the key, since
   * the rest of the system only knows of artifacts there: 'stored' when it does already, 'copied' when a
   * copy from an upper tier was verified and written down (a disk tier can outlive the object, e.g. after
   * a delete and gc of its chunk), null when no tier holds a good copy and the caller must compute it.
   */
  async ensureDurable(key: string): Promise<'stored' | 'copied' | null> {
    const durable = this.tiers[this.tiers.length - 1];
    if (await durable.has(key)) return 'stored';
    for (const tier of this.tiers.slice(0, -1)) {
      const bytes = await tier.get(key);
      if (!bytes || !this.verify(key, bytes)) {
        if (bytes) await tier.markCorrupt(key);
        continue;
      }
      await durable.put(key, bytes);
      return 'copied';
    }
    return null;
  }

  /** Checks checksums, model, tokenizer and key (nothing decoded); a refusal is counted by its reason. */
  private verify(key: string, bytes: Uint8Array): VerifiedArtifact | null {
    try {
      return verifyArtifact(bytes, { key, fingerprint: this.fingerprint, tokenizerHash: this.tokenizerHash });
    } catch (err) {
      if (!(err instanceof ArtifactError)) throw err;
      this.refusals[err.reason] = (this.refusals[err.reason] ?? 0) + 1;
      return null;
    }
  }

  /** Whether the durable tier (the object store) holds the key; null without one. */
  async durable(key: string): Promise<boolean | null> {
    const object = this.tiers.find((t) => t.name === 'object');
    return object ? object.has(key) : null;
  }

  /** Removes the key from the local tiers (host memory, disk), leaving the object store alone. */
  async evictLocal(key: string): Promise<void> {
    for (const t of this.tiers) if (t.name !== 'object') await t.delete(key);
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
