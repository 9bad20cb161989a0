// In-memory blob store for unit tests: same key rules and range semantics as the real stores.
import type { BlobInfo, BlobStore, ByteRange, PutOptions } from '../../contracts/blob-store.ts';
import { bodyChunks, concatBytes } from './bytes.ts';
import { resolveRange, validateKey, validatePrefix, validateRange } from './keys.ts';

interface Stored {
  bytes: Uint8Array;
  contentType?: string;
  lastModified: Date;
}

export class MemoryBlobStore implements BlobStore {
  private readonly objects = new Map<string, Stored>();

  async put(
    key: string,
    body: Uint8Array | ReadableStream<Uint8Array>,
    opts?: PutOptions,
  ): Promise<BlobInfo> {
    validateKey(key);
    const chunks: Uint8Array[] = [];
    // Copy: the caller may reuse its buffer after put resolves.
    for await (const c of bodyChunks(body)) chunks.push(c.slice());
    const bytes = concatBytes(chunks);
    const lastModified = new Date();
    this.objects.set(key, { bytes, contentType: opts?.contentType, lastModified });
    return { key, size: bytes.byteLength, lastModified };
  }

  async get(key: string, range?: ByteRange): Promise<Uint8Array | null> {
    validateKey(key);
    if (range) validateRange(range);
    const o = this.objects.get(key);
    if (!o) return null;
    const { start, endExclusive } = resolveRange(range, o.bytes.byteLength);
    return o.bytes.slice(start, endExclusive);
  }

  async getStream(key: string, range?: ByteRange): Promise<ReadableStream<Uint8Array> | null> {
    const bytes = await this.get(key, range);
    if (!bytes) return null;
    return new ReadableStream<Uint8Array>({
      start(c) {
        if (bytes.byteLength > 0) c.enqueue(bytes);
        c.close();
      },
    });
  }

  async head(key: string): Promise<BlobInfo | null> {
    validateKey(key);
    const o = this.objects.get(key);
    return o ? { key, size: o.bytes.byteLength, lastModified: o.lastModified } : null;
  }

  async delete(key: string): Promise<void> {
    validateKey(key);
    this.objects.delete(key);
  }

  async *list(prefix: string): AsyncIterable<BlobInfo> {
    validatePrefix(prefix);
    const keys = [...this.objects.keys()]
      .filter((k) => k.startsWith(prefix))
      .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    for (const key of keys) {
      const info = await this.head(key);
      if (info) yield info;
    }
  }
}
