// Byte-capacity tiers for chunk KV artifacts below engine memory: host memory and local disk. Both evict
// least-recently-used artifacts by bytes and count hits, misses and bytes. The disk tier survives a
// restart: its index is rebuilt from the artifacts' own headers, and anything unreadable is removed.
import { mkdir, open, readdir, readFile, rename, rm, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { isArtifactKey } from '../../../contracts/artifacts.ts';
import { ArtifactError, PREAMBLE_BYTES, parseHeader, readPreamble } from './artifact-format.ts';

export interface TierStats {
  hits: number;
  misses: number;
  bytesRead: number;
  bytesWritten: number;
  evictions: number;
  /** Artifacts refused on read (checksum, truncation) and dropped from this tier. */
  corrupt: number;
  residentBytes: number;
  capacityBytes: number;
  entries: number;
}

export interface ArtifactTier {
  readonly name: string;
  get(key: string): Promise<Uint8Array | null>;
  put(key: string, bytes: Uint8Array): Promise<void>;
  has(key: string): Promise<boolean>;
  delete(key: string): Promise<void>;
  /** Records that a read from this tier turned out to be corrupt (the store verifies). */
  markCorrupt(key: string): Promise<void>;
  stats(): TierStats;
}

/**
 * A tier whose artifacts can be read in parts, straight into the caller's memory (disk, object store):
 * the front (preamble and header) first, then only the byte ranges wanted — a layer's sections, in order.
 */
export interface RangedTier extends ArtifactTier {
  /** The preamble and header bytes (not yet validated: the store parses them); null when absent. */
  readHead(key: string): Promise<Uint8Array | null>;
  /** Reads bytes [offset, offset + dst.byteLength) into dst; false when the artifact is gone or shorter. */
  readInto(key: string, offset: number, dst: Uint8Array): Promise<boolean>;
}

export const isRanged = (t: ArtifactTier): t is RangedTier =>
  typeof (t as Partial<RangedTier>).readInto === 'function';

function checkKey(key: string): void {
  if (!isArtifactKey(key)) throw new Error(`invalid artifact key "${key.slice(0, 80)}"`);
}

export function emptyStats(capacityBytes: number): TierStats {
  return {
    hits: 0,
    misses: 0,
    bytesRead: 0,
    bytesWritten: 0,
    evictions: 0,
    corrupt: 0,
    residentBytes: 0,
    capacityBytes,
    entries: 0,
  };
}

/** Host-memory tier: a Map in LRU order (first = least recently used). */
export class HostTier implements ArtifactTier {
  readonly name = 'host';
  private readonly entries = new Map<string, Uint8Array>();
  private readonly s: TierStats;

  constructor(capacityBytes: number) {
    this.s = emptyStats(capacityBytes);
  }

  async get(key: string): Promise<Uint8Array | null> {
    const b = this.entries.get(key);
    if (!b) {
      this.s.misses++;
      return null;
    }
    this.entries.delete(key);
    this.entries.set(key, b);
    this.s.hits++;
    this.s.bytesRead += b.byteLength;
    return b;
  }

  async put(key: string, bytes: Uint8Array): Promise<void> {
    checkKey(key);
    if (bytes.byteLength > this.s.capacityBytes) return; // would evict everything and still not fit
    await this.delete(key);
    this.entries.set(key, bytes);
    this.s.residentBytes += bytes.byteLength;
    this.s.bytesWritten += bytes.byteLength;
    while (this.s.residentBytes > this.s.capacityBytes) {
      const [oldest, b] = this.entries.entries().next().value as [string, Uint8Array];
      this.entries.delete(oldest);
      this.s.residentBytes -= b.byteLength;
      this.s.evictions++;
    }
  }

  async has(key: string): Promise<boolean> {
    return this.entries.has(key);
  }

  async delete(key: string): Promise<void> {
    const b = this.entries.get(key);
    if (!b) return;
    this.entries.delete(key);
    this.s.residentBytes -= b.byteLength;
  }

  async markCorrupt(key: string): Promise<void> {
    this.s.corrupt++;
    await this.delete(key);
  }

  keys(): string[] {
    return [...this.entries.keys()];
  }

  stats(): TierStats {
    return { ...this.s, entries: this.entries.size };
  }
}

interface DiskEntry {
  bytes: number;
  lastUsed: number;
}

/** Local-disk tier: one file per artifact at <dir>/<hh>/<key>.kv, written atomically (temp + rename). */
export class DiskTier implements RangedTier {
  readonly name = 'disk';
  private readonly index = new Map<string, DiskEntry>();
  private readonly s: TierStats;
  private readonly dir: string;
  private seq = 0;

  private constructor(dir: string, capacityBytes: number) {
    this.dir = dir;
    this.s = emptyStats(capacityBytes);
  }

  /**
   * Opens the tier, rebuilding the index from the headers of the files present (a restart finds its
   * artifacts again). Files whose header does not parse, or whose name is not their key, are removed.
   */
  static async open(dir: string, capacityBytes: number): Promise<DiskTier> {
    const t = new DiskTier(dir, capacityBytes);
    await mkdir(dir, { recursive: true });
    for (const sub of await readdir(dir, { withFileTypes: true })) {
      if (!sub.isDirectory() || !/^[0-9a-f]{2}$/.test(sub.name)) continue;
      for (const f of await readdir(join(dir, sub.name))) {
        const path = join(dir, sub.name, f);
        const key = f.endsWith('.kv') ? f.slice(0, -3) : '';
        if (!isArtifactKey(key) || key.slice(0, 2) !== sub.name) {
          if (f.includes('.tmp-')) await rm(path, { force: true }); // an interrupted write
          continue;
        }
        try {
          const header = await readHeaderFile(path);
          const st = await stat(path);
          if (header.key !== key || st.size !== header.totalBytes)
            throw new ArtifactError('key', 'file/key mismatch');
          t.index.set(key, { bytes: st.size, lastUsed: st.mtimeMs });
          t.s.residentBytes += st.size;
        } catch {
          await rm(path, { force: true });
          t.s.corrupt++;
        }
      }
    }
    // Oldest first, so eviction order survives the restart.
    const sorted = [...t.index.entries()].sort((a, b) => a[1].lastUsed - b[1].lastUsed);
    t.index.clear();
    for (const [k, e] of sorted) t.index.set(k, e);
    await t.evict();
    return t;
  }

  private path(key: string): string {
    return join(this.dir, key.slice(0, 2), `${key}.kv`);
  }

  async get(key: string): Promise<Uint8Array | null> {
    const e = this.index.get(key);
    if (!e) {
      this.s.misses++;
      return null;
    }
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(await readFile(this.path(key)));
    } catch {
      this.index.delete(key);
      this.s.residentBytes -= e.bytes;
      this.s.misses++;
      return null;
    }
    this.index.delete(key);
    e.lastUsed = Date.now();
    this.index.set(key, e);
    const seconds = e.lastUsed / 1000;
    await utimes(this.path(key), seconds, seconds).catch(() => {});
    this.s.hits++;
    this.s.bytesRead += bytes.byteLength;
    return bytes;
  }

  async put(key: string, bytes: Uint8Array): Promise<void> {
    checkKey(key);
    if (bytes.byteLength > this.s.capacityBytes) return;
    const final = this.path(key);
    await mkdir(join(this.dir, key.slice(0, 2)), { recursive: true });
    const tmp = `${final}.tmp-${process.pid}-${this.seq++}`;
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(bytes);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, final);
    const old = this.index.get(key);
    if (old) {
      this.s.residentBytes -= old.bytes;
      this.index.delete(key);
    }
    this.index.set(key, { bytes: bytes.byteLength, lastUsed: Date.now() });
    this.s.residentBytes += bytes.byteLength;
    this.s.bytesWritten += bytes.byteLength;
    await this.evict();
  }

  private async evict(): Promise<void> {
    while (this.s.residentBytes > this.s.capacityBytes && this.index.size > 0) {
      const [oldest, e] = this.index.entries().next().value as [string, DiskEntry];
      this.index.delete(oldest);
      this.s.residentBytes -= e.bytes;
      this.s.evictions++;
      await rm(this.path(oldest), { force: true });
    }
  }

  async has(key: string): Promise<boolean> {
    return this.index.has(key);
  }

  async delete(key: string): Promise<void> {
    const e = this.index.get(key);
    if (e) {
      this.index.delete(key);
      this.s.residentBytes -= e.bytes;
    }
    await rm(this.path(key), { force: true });
  }

  async markCorrupt(key: string): Promise<void> {
    this.s.corrupt++;
    await this.delete(key);
  }

  keys(): string[] {
    return [...this.index.keys()];
  }

  async readHead(key: string): Promise<Uint8Array | null> {
    if (!this.index.has(key)) {
      this.s.misses++;
      return null;
    }
    try {
      const head = await readHeadBytes(this.path(key));
      this.s.hits++;
      this.s.bytesRead += head.byteLength;
      return head;
    } catch {
      this.s.misses++;
      return null;
    }
  }

  async readInto(key: string, offset: number, dst: Uint8Array): Promise<boolean> {
    let fh: Awaited<ReturnType<typeof open>>;
    try {
      fh = await open(this.path(key), 'r');
    } catch {
      return false;
    }
    try {
      let got = 0;
      while (got < dst.byteLength) {
        const { bytesRead } = await fh.read(dst, got, dst.byteLength - got, offset + got);
        if (bytesRead === 0) return false;
        got += bytesRead;
      }
      this.s.bytesRead += got;
      return true;
    } finally {
      await fh.close();
    }
  }

  stats(): TierStats {
    return { ...this.s, entries: this.index.size };
  }
}

/** The preamble and header bytes of an artifact file (unvalidated beyond the preamble). */
async function readHeadBytes(path: string): Promise<Uint8Array> {
  const fh = await open(path, 'r');
  try {
    const pre = new Uint8Array(PREAMBLE_BYTES);
    await fh.read(pre, 0, PREAMBLE_BYTES, 0);
    const { headerBytes } = readPreamble(pre);
    const head = new Uint8Array(headerBytes);
    const { bytesRead } = await fh.read(head, 0, headerBytes, 0);
    return head.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** Reads just the preamble and header of an artifact file. */
async function readHeaderFile(path: string) {
  return parseHeader(await readHeadBytes(path));
}
