// Engine-memory tier: chunk artifacts resident on the device as stored (packed: f16, int8 or int4 sections,
// positions 0..n-1, post-RoPE), above the ArtifactStore's host → disk → object tiers. A request decodes
// them straight into its own cache with kvUnpack (widen or dequantize and re-rotate keys in one pass), so
// an artifact read from a lower tier is copied to the device once, as it is, and a resident one is not
// copied at all. Byte capacity (packed bytes: an int4 artifact takes a quarter of an f16 one), LRU by bytes
// over entries nobody holds, hit/miss/bytes counters; concurrent requests for the same key load it once.
import { parseIndex } from '../attention/squeezed/codec.ts';
import type { SqueezedIndex } from '../attention/squeezed/types.ts';
import type { Backend, PackedKV } from '../backends/types.ts';
import type { ModelConfig } from '../model-config.ts';
import { packedSpec } from './artifact-format.ts';
import type { ArtifactStore } from './artifact-store.ts';
import { emptyStats, type TierStats } from './tiers.ts';

/** One resident artifact: its K/V sections of every layer, packed as stored. */
export interface ResidentKV {
  readonly key: string;
  readonly n: number;
  readonly packed: PackedKV;
  /** Device bytes it occupies (its sections as stored). */
  readonly bytes: number;
  /**
   * The artifact's squeezed-attention index (DESIGN.md §4.2): parsed from its index section, or built
   * later from the resident keys when the artifact had none (or a refused one, see indexNote).
   */
  index: SqueezedIndex | null;
  /** Why the stored index was not used, when it was not. */
  indexNote: string | null;
}

export interface AcquiredKV {
  entry: ResidentKV;
  /** Where it came from: 'engine' (already resident) or the store tier that served it. */
  tier: string;
  /** Bytes read from that tier (for 'engine', the packed device bytes the caller will decode). */
  bytes: number;
  /** Lets the entry be evicted again; call once when done copying from it. */
  release(): void;
}

interface Entry extends ResidentKV {
  pins: number;
}

export class EngineTier {
  readonly name = 'engine';
  readonly store: ArtifactStore;
  private readonly backend: Backend;
  private readonly cfg: ModelConfig;
  private readonly entries = new Map<string, Entry>(); // LRU order: first = least recently used
  /** Requests awaiting each in-flight load. */
  private readonly waiting = new Map<string, number>();
  private readonly inflight = new Map<
    string,
    Promise<{ entry: Entry; tier: string; bytes: number } | null>
  >();
  private readonly s: TierStats;

  constructor(backend: Backend, cfg: ModelConfig, store: ArtifactStore, capacityBytes: number) {
    this.backend = backend;
    this.cfg = cfg;
    this.store = store;
    this.s = emptyStats(capacityBytes);
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  /** The artifact resident on the device (loading it through the store on a miss); null if no tier has it. */
  async acquire(key: string): Promise<AcquiredKV | null> {
    const hit = this.entries.get(key);
    if (hit) {
      this.s.hits++;
      this.s.bytesRead += hit.bytes;
      this.touch(hit);
      return this.pin(hit, 'engine', hit.bytes);
    }
    let running = this.inflight.get(key);
    const first = !running;
    if (!running) {
      this.s.misses++;
      running = this.load(key).finally(() => {
        this.inflight.delete(key);
        this.waiting.delete(key);
      });
      this.inflight.set(key, running);
    }
    // counted before the await: the load pins the new entry once per waiter, so nothing can evict it
    // between the load finishing and the waiters resuming
    this.waiting.set(key, (this.waiting.get(key) ?? 0) + 1);
    const got = await running;
    if (!got) return null;
    // a request that joined another's load found it in engine memory without reading anything
    return first
      ? this.handle(got.entry, got.tier, got.bytes)
      : this.handle(got.entry, 'engine', got.entry.bytes);
  }

  private async load(key: string): Promise<{ entry: Entry; tier: string; bytes: number } | null> {
    const loaded = await this.store.get(key);
    if (!loaded) return null;
    const { header, index: indexBytes, bytes } = loaded.artifact;
    const c = this.cfg;
    if (header.layers !== c.layers || header.kvHeads !== c.kvHeads || header.headDim !== c.headDim) {
      throw new Error(
        `artifact ${key}: shape ${header.layers}×${header.kvHeads}×${header.headDim} is not this model's`,
      );
    }
    if (header.rope.theta !== c.rope.theta)
      throw new Error(`artifact ${key}: rope theta ${header.rope.theta}, model ${c.rope.theta}`);
    // the sections go to the device as read (one copy of the span that holds them, no decoding here)
    const packed = this.backend.uploadPackedKV(packedSpec(header), bytes, {
      k: header.sections.k.map((r) => r.offset),
      v: header.sections.v.map((r) => r.offset),
    });
    const pins = this.waiting.get(key) ?? 0;
    this.waiting.delete(key);
    let index: SqueezedIndex | null = null;
    let indexNote: string | null = indexBytes ? null : 'no index section';
    if (indexBytes) {
      try {
        index = parseIndex(indexBytes, header);
      } catch (err) {
        indexNote = (err as Error).message; // the K/V stay usable; the index is rebuilt when needed
      }
    }
    const entry: Entry = { key, n: header.n, packed, bytes: packed.bytes, pins, index, indexNote };
    this.entries.set(key, entry);
    this.s.bytesWritten += entry.bytes;
    this.s.residentBytes += entry.bytes;
    this.s.entries = this.entries.size;
    return { entry, tier: loaded.tier, bytes: loaded.bytes };
  }

  private pin(e: Entry, tier: string, bytes: number): AcquiredKV {
    e.pins++;
    return this.handle(e, tier, bytes);
  }

  /** A handle on an entry already pinned for it. */
  private handle(e: Entry, tier: string, bytes: number): AcquiredKV {
    let released = false;
    return {
      entry: e,
      tier,
      bytes,
      release: () => {
        if (released) return;
        released = true;
        e.pins--;
        this.evict();
      },
    };
  }

  private touch(e: Entry): void {
    this.entries.delete(e.key);
    this.entries.set(e.key, e);
  }

  /** Evicts least recently used, unpinned entries until resident bytes fit the capacity. */
  private evict(): void {
    for (const e of [...this.entries.values()]) {
      if (this.s.residentBytes <= this.s.capacityBytes) break;
      if (e.pins > 0) continue;
      this.drop(e);
      this.s.evictions++;
    }
  }

  private drop(e: Entry): void {
    this.entries.delete(e.key);
    this.backend.freePackedKV(e.packed);
    this.s.residentBytes -= e.bytes;
    this.s.entries = this.entries.size;
  }

  /** Keys resident in engine memory. */
  keys(): string[] {
    return [...this.entries.keys()];
  }

  /** Frees the key's entry unless a sequence is copying from it right now; whether it is gone. */
  forget(key: string): boolean {
    const e = this.entries.get(key);
    if (e && e.pins === 0) this.drop(e);
    return !this.entries.has(key);
  }

  /** Frees every unpinned entry (e.g. before the backend is disposed). */
  clear(): void {
    for (const e of [...this.entries.values()]) if (e.pins === 0) this.drop(e);
  }

  stats(): TierStats {
    return { ...this.s };
  }
}
