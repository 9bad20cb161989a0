// Tiered chunk-artifact store: host memory → local disk → object store (engine memory sits above it, in
// the runner). A read walks down the tiers, verifies what it finds (checksums, model, tokenizer, key),
// drops anything refused from the tier it came from, and promotes a good artifact to the tiers above.
// Concurrent reads of the same key share one load. Writes go to the object store (durable) first.
import {
  ArtifactError,
  type ArtifactErrorReason,
  type ArtifactHeader,
  parseHeader,
  type VerifiedArtifact,
  verifyArtifact,
} from './artifact-format.ts';
import type { ObjectTier } from './object-tier.ts';
import { type ArtifactTier, type DiskTier, type HostTier, isRanged, type TierStats } from './tiers.ts';

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

/**
 * An artifact to be read in parts from a lower tier (disk, object store) straight into the caller's
 * memory: its header is verified; each section's checksum is the reader's to check (checkSection).
 */
export interface RangedArtifact {
  tier: string;
  header: ArtifactHeader;
  /** Bytes of the preamble and header (what was read so far). */
  headBytes: number;
  /** Reads bytes [offset, offset + dst.byteLength) of the artifact into dst; false when it is gone. */
  read(offset: number, dst: Uint8Array): Promise<boolean>;
  /** The reader refused a part (checksum, truncation): counted, and the artifact dropped from its tier. */
  refuse(err: ArtifactError): Promise<void>;
}

/** Where an artifact is: whole and verified in host memory, or in a tier that reads it by range. */
export type LocatedArtifact =
  | { kind: 'whole'; loaded: LoadedArtifact }
  | { kind: 'ranged'; ranged: RangedArtifact };

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
      const loaded = await this.readWhole(i, key);
      if (loaded) return loaded;
    }
    return null;
  }

  /**
   * The artifact read whole from tier i and verified, promoted into the tiers above it; null when tier i
   * does not hold it or holds a copy refused (then marked corrupt there).
   */
  private async readWhole(i: number, key: string): Promise<LoadedArtifact | null> {
    const tier = this.tiers[i];
    const bytes = await tier.get(key);
    if (!bytes) return null;
    const artifact = this.verify(key, bytes);
    if (!artifact) {
      await tier.markCorrupt(key);
      return null;
    }
    for (let j = 0; j < i; j++) await this.tiers[j].put(key, bytes);
    return { artifact, tier: tier.name, bytes: bytes.byteLength };
  }

  /**
   * Like get, but an artifact below host memory is not read whole: the first tier that holds it with a
   * valid header is returned for reading by range (e.g. layer by layer into device memory), and nothing
   * is promoted — the bytes go where the caller reads them, not through a host copy. A header refused is
   * counted and dropped from its tier, and the walk goes on. null when no tier holds the key.
   */
  async locate(key: string): Promise<LocatedArtifact | null> {
    for (let i = 0; i < this.tiers.length; i++) {
      const tier = this.tiers[i];
      if (!isRanged(tier)) {
        const loaded = await this.readWhole(i, key);
        if (loaded) return { kind: 'whole', loaded };
        continue;
      }
      const head = await tier.readHead(key);
      if (!head) continue;
      let header: ArtifactHeader;
      try {
        header = parseHeader(head, { key, fingerprint: this.fingerprint, tokenizerHash: this.tokenizerHash });
      } catch (err) {
        if (!(err instanceof ArtifactError)) throw err;
        this.countRefusal(err);
        await tier.markCorrupt(key);
        continue;
      }
      return {
        kind: 'ranged',
        ranged: {
          tier: tier.name,
          header,
          headBytes: head.byteLength,
          read: (offset, dst) => tier.readInto(key, offset, dst),
          refuse: async (err) => {
            this.countRefusal(err);
            await tier.markCorrupt(key);
          },
        },
      };
    }
    return null;
  }

  private countRefusal(err: ArtifactError): void {
    this.refusals[err.reason] = (this.refusals[err.reason] ?? 0) + 1;
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
      this.countRefusal(err);
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
