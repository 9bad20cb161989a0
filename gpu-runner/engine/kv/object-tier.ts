// The object-store tier: the durable home of every artifact (S3, R2, MinIO or a filesystem store behind
// the BlobStore interface), at kv/<fingerprint>/<hh>/<key>.kv. Besides whole reads it reads single
// sections by byte range: the preamble, then the header, then only the layers asked for.
import type { BlobStore } from '../../../contracts/blob-store.ts';
import { artifactObjectKey } from '../../../contracts/artifacts.ts';
import {
  type ArtifactHeader,
  decodeSection,
  type LayerKV,
  PREAMBLE_BYTES,
  parseHeader,
  readPreamble,
} from './artifact-format.ts';
import { emptyStats, type RangedTier, type TierStats } from './tiers.ts';

export class ObjectTier implements RangedTier {
  readonly name = 'object';
  private readonly s: TierStats = emptyStats(Number.POSITIVE_INFINITY);
  private readonly store: BlobStore;
  private readonly fingerprint: string;

  constructor(store: BlobStore, fingerprint: string) {
    this.store = store;
    this.fingerprint = fingerprint;
  }

  objectKey(key: string): string {
    return artifactObjectKey(this.fingerprint, key);
  }

  async get(key: string): Promise<Uint8Array | null> {
    const b = await this.store.get(this.objectKey(key));
    if (!b) {
      this.s.misses++;
      return null;
    }
    this.s.hits++;
    this.s.bytesRead += b.byteLength;
    return b;
  }

  async put(key: string, bytes: Uint8Array): Promise<void> {
    await this.store.put(this.objectKey(key), bytes, { contentType: 'application/x-kvrag-kv' });
    this.s.bytesWritten += bytes.byteLength;
  }

  async has(key: string): Promise<boolean> {
    return (await this.store.head(this.objectKey(key))) !== null;
  }

  async delete(key: string): Promise<void> {
    await this.store.delete(this.objectKey(key));
  }

  async markCorrupt(key: string): Promise<void> {
    this.s.corrupt++;
    await this.delete(key);
  }

  /** The preamble and header bytes (two range reads); null when the artifact is absent. */
  async readHead(key: string): Promise<Uint8Array | null> {
    const ok = this.objectKey(key);
    const pre = await this.store.get(ok, { start: 0, end: PREAMBLE_BYTES - 1 });
    if (!pre) {
      this.s.misses++;
      return null;
    }
    const { headerBytes } = readPreamble(pre);
    const head = await this.store.get(ok, { start: 0, end: headerBytes - 1 });
    if (!head) {
      this.s.misses++;
      return null;
    }
    this.s.hits++;
    this.s.bytesRead += pre.byteLength + head.byteLength;
    return head;
  }

  /** Reads and validates only the header (two range reads). null when the artifact is absent. */
  async readHeader(key: string): Promise<ArtifactHeader | null> {
    const head = await this.readHead(key);
    return head ? parseHeader(head, { key, fingerprint: this.fingerprint }) : null;
  }

  /**
   * Reads a byte range into dst: in place where the store can (the filesystem store), else through the
   * store's own buffer (S3: the bytes arrive from the network in buffers of their own anyway).
   */
  async readInto(key: string, offset: number, dst: Uint8Array): Promise<boolean> {
    const ok = this.objectKey(key);
    let got: number;
    if (this.store.readInto) got = (await this.store.readInto(ok, offset, dst)) ?? -1;
    else {
      const b = await this.store.get(ok, { start: offset, end: offset + dst.byteLength - 1 });
      if (b) dst.set(b.subarray(0, dst.byteLength));
      got = b ? b.byteLength : -1;
    }
    if (got > 0) this.s.bytesRead += got;
    return got === dst.byteLength;
  }

  /** Reads one layer's K and V by byte range, checksums verified. */
  async readLayer(key: string, header: ArtifactHeader, layer: number): Promise<LayerKV> {
    const ok = this.objectKey(key);
    const read = async (part: 'k' | 'v') => {
      const ref = header.sections[part][layer];
      if (!ref) throw new RangeError(`layer ${layer} out of range (0..${header.layers - 1})`);
      const b = await this.store.get(ok, { start: ref.offset, end: ref.offset + ref.bytes - 1 });
      if (!b) throw new Error(`artifact ${key} disappeared while reading layer ${layer}`);
      this.s.bytesRead += b.byteLength;
      return decodeSection(header, part, ref, b);
    };
    return { k: await read('k'), v: await read('v') };
  }

  stats(): TierStats {
    return { ...this.s };
  }
}
