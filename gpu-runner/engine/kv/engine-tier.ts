// Engine-memory tier: chunk artifacts resident on the device as stored (packed: f16, int8 or int4 sections,
// positions 0..n-1, post-RoPE), above the ArtifactStore's host → disk → object tiers. A request decodes
// them straight into its own cache with kvUnpack (widen or dequantize and re-rotate keys in one pass), so
// an artifact is copied to the device once, as it is, and a resident one is not copied at all. One held in
// host memory is uploaded whole; one in a lower tier (disk, object store) is read layer by layer straight
// into the device memory reserved for it (no host buffer, no promotion copy), each section's checksum
// checked where it landed, and each layer usable as soon as it is there (ResidentKV.ready): a request's
// question can start its first layers while later ones still arrive (LMCache's layer-wise retrieval).
// Byte capacity (packed bytes: an int4 artifact takes a quarter of an f16 one), LRU by bytes over entries
// nobody holds, hit/miss/bytes counters; concurrent requests for the same key load it once.
import { parseIndex } from '../attention/squeezed/codec.ts';
import type { ClusterIndex, SqueezedIndex, StoredIndex } from '../attention/squeezed/types.ts';
import type { Backend, PackedKV } from '../backends/types.ts';
import type { ModelConfig } from '../model-config.ts';
import { type ArtifactHeader, checkSection, packedSpec } from './artifact-format.ts';
import type { ArtifactStore, LoadedArtifact, RangedArtifact } from './artifact-store.ts';
import { readLayerwise } from './layerwise.ts';
import { emptyStats, type TierStats } from './tiers.ts';

/** One resident artifact: its K/V sections of every layer, packed as stored. */
export interface ResidentKV {
  readonly key: string;
  readonly n: number;
  readonly packed: PackedKV;
  /** Device bytes it occupies (its sections as stored). */
  readonly bytes: number;
  /**
   * The artifact's complete squeezed-attention index (DESIGN.md §4.2): parsed from a v1/v2 index section,
   * derived from the resident K/V and a v3 section's clusters, or built from the resident keys when the
   * artifact had none (or a refused one, see indexNote) — the last two by the assembler (indexOf).
   */
  index: SqueezedIndex | null;
  /** Why the stored index was not used, when it was not. */
  indexNote: string | null;
  /**
   * Resolves once layer `layer`'s K and V are on the device and verified (at once for an artifact uploaded
   * whole); rejects when a section of a layer-wise read is refused or cannot be read — the entry is then
   * dropped and the artifact must be recomputed.
   */
  ready(layer: number): Promise<void>;
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

/** What the tier checks an artifact against: the model's KV geometry and RoPE base. */
export type KVShape = Pick<ModelConfig, 'layers' | 'kvHeads' | 'headDim'> & {
  rope: Pick<ModelConfig['rope'], 'theta'>;
};

interface Entry extends ResidentKV {
  pins: number;
  /** a layer-wise read is still writing into the device memory: never freed meanwhile */
  loading: boolean;
  /** a layer-wise read failed: out of the map, freed when the last holder lets go */
  failed: boolean;
  /** reads and parses the index section on first use (dense plans never do) */
  readIndex: (() => Promise<void>) | null;
  /** a v3 section's clusters, until the assembler completes them into `index` */
  clusters: ClusterIndex | null;
}

const allReady = (): Promise<void> => Promise.resolve();

export class EngineTier {
  readonly name = 'engine';
  readonly store: ArtifactStore;
  private readonly backend: Backend;
  private readonly cfg: KVShape;
  private readonly entries = new Map<string, Entry>(); // LRU order: first = least recently used
  /** Requests awaiting each in-flight load. */
  private readonly waiting = new Map<string, number>();
  private readonly inflight = new Map<
    string,
    Promise<{ entry: Entry; tier: string; bytes: number } | null>
  >();
  private readonly s: TierStats;

  /** Bytes one layer-wise read asks for at least (layerwise.ts READ_BYTES by default). */
  private readonly readBytes: number | undefined;

  constructor(
    backend: Backend,
    cfg: KVShape,
    store: ArtifactStore,
    capacityBytes: number,
    opts: { readBytes?: number } = {},
  ) {
    this.readBytes = opts.readBytes;
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
    const found = await this.store.locate(key);
    if (!found) return null;
    const header = found.kind === 'whole' ? found.loaded.artifact.header : found.ranged.header;
    this.checkShape(key, header);
    const pins = this.waiting.get(key) ?? 0;
    this.waiting.delete(key);
    const entry =
      found.kind === 'whole'
        ? this.uploadWhole(key, found.loaded, pins)
        : this.readRanged(key, found.ranged, pins);
    this.entries.set(key, entry);
    this.s.bytesWritten += entry.bytes;
    this.s.residentBytes += entry.bytes;
    this.s.entries = this.entries.size;
    const bytes = found.kind === 'whole' ? found.loaded.bytes : found.ranged.headBytes + entry.bytes;
    return { entry, tier: found.kind === 'whole' ? found.loaded.tier : found.ranged.tier, bytes };
  }

  private checkShape(key: string, header: ArtifactHeader): void {
    const c = this.cfg;
    if (header.layers !== c.layers || header.kvHeads !== c.kvHeads || header.headDim !== c.headDim) {
      throw new Error(
        `artifact ${key}: shape ${header.layers}×${header.kvHeads}×${header.headDim} is not this model's`,
      );
    }
    if (header.rope.theta !== c.rope.theta)
      throw new Error(`artifact ${key}: rope theta ${header.rope.theta}, model ${c.rope.theta}`);
  }

  /** A verified whole artifact from host memory: its sections to the device in one copy. */
  private uploadWhole(key: string, loaded: LoadedArtifact, pins: number): Entry {
    const { header, index: indexBytes, bytes } = loaded.artifact;
    // the sections go to the device as read (one copy of the span that holds them, no decoding here)
    const packed = this.backend.uploadPackedKV(packedSpec(header), bytes, {
      k: header.sections.k.map((r) => r.offset),
      v: header.sections.v.map((r) => r.offset),
    });
    const entry = this.newEntry(key, header, packed, pins, allReady);
    if (indexBytes) {
      const copy = indexBytes.slice(); // small (v3), and the host tier may drop the artifact's bytes
      entry.readIndex = async () => this.parseIndexInto(entry, header, copy);
    } else entry.indexNote = 'no index section';
    return entry;
  }

  /**
   * An artifact in a lower tier: device memory reserved for its sections, which are read into it layer by
   * layer in the background (readLayerwise); entry.ready(l) says when layer l is there.
   */
  private readRanged(key: string, src: RangedArtifact, pins: number): Entry {
    const h = src.header;
    const from = Math.min(...h.sections.k.map((r) => r.offset), ...h.sections.v.map((r) => r.offset));
    const to = Math.max(...[...h.sections.k, ...h.sections.v].map((r) => r.offset + r.bytes));
    const rel = (r: { offset: number }) => r.offset - from;
    const { packed, target } = this.backend.reservePackedKV(
      packedSpec(h),
      { k: h.sections.k.map(rel), v: h.sections.v.map(rel) },
      to - from,
    );
    const layers = readLayerwise(h, from, target, src.read, this.readBytes, (err) => src.refuse(err));
    const entry = this.newEntry(key, h, packed, pins, (l) => layers.ready(l));
    entry.loading = true;
    layers.done.then(
      () => {
        entry.loading = false;
        this.evict();
      },
      () => {
        entry.loading = false;
        entry.failed = true;
        if (this.entries.get(key) === entry) this.drop(entry, false);
        if (entry.pins === 0) this.backend.freePackedKV(entry.packed);
      },
    );
    const ix = h.index;
    if (!ix) entry.indexNote = 'no index section';
    else
      entry.readIndex = async () => {
        const bytes = new Uint8Array(ix.bytes);
        try {
          if (!(await src.read(ix.offset, bytes))) throw new Error('index section could not be read');
          checkSection(ix, bytes, 'index section');
          this.parseIndexInto(entry, h, bytes);
        } catch (err) {
          entry.indexNote = (err as Error).message; // the K/V stay usable; the index is rebuilt when needed
        }
      };
    return entry;
  }

  private newEntry(
    key: string,
    header: ArtifactHeader,
    packed: PackedKV,
    pins: number,
    ready: (layer: number) => Promise<void>,
  ): Entry {
    return {
      key,
      n: header.n,
      packed,
      bytes: packed.bytes,
      pins,
      index: null,
      indexNote: null,
      ready,
      loading: false,
      failed: false,
      readIndex: null,
      clusters: null,
    };
  }

  private parseIndexInto(entry: Entry, header: ArtifactHeader, bytes: Uint8Array): void {
    try {
      const stored = parseIndex(bytes, header);
      if (stored.kind === 'complete') entry.index = stored.index;
      else entry.clusters = stored.index;
    } catch (err) {
      entry.indexNote = (err as Error).message; // the K/V stay usable; the index is rebuilt when needed
    }
  }

  /**
   * The entry's index (its section read and parsed now, on first use): complete, or a v3 section's
   * clusters whose statistics the caller derives from the K/V (completeIndex) into entry.index; null if none.
   */
  async indexOf(e: ResidentKV): Promise<StoredIndex | null> {
    const entry = e as Entry;
    const read = entry.readIndex;
    entry.readIndex = null;
    if (read) await read();
    if (entry.index) return { kind: 'complete', index: entry.index };
    return entry.clusters ? { kind: 'clusters', index: entry.clusters } : null;
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
        if (e.failed) {
          if (e.pins === 0) this.backend.freePackedKV(e.packed);
        } else this.evict();
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
      if (e.pins > 0 || e.loading) continue;
      this.drop(e);
      this.s.evictions++;
    }
  }

  /** Takes the entry out of the tier; frees its device memory unless told not to (a holder still reads). */
  private drop(e: Entry, free = true): void {
    this.entries.delete(e.key);
    if (free) this.backend.freePackedKV(e.packed);
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
    if (e && e.pins === 0 && !e.loading) this.drop(e);
    return !this.entries.has(key);
  }

  /** Frees every unpinned entry (e.g. before the backend is disposed). */
  clear(): void {
    for (const e of [...this.entries.values()]) if (e.pins === 0 && !e.loading) this.drop(e);
  }

  stats(): TierStats {
    return { ...this.s };
  }
}
