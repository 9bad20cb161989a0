// BlobStore over a Cloudflare R2 bucket binding (env.BLOBS on Workers). Only the binding's shape is
// assumed here (no Workers types, no Node-only imports), so the Workers build and Node tests (Miniflare's
// bucket proxy) both load this file. Bodies up to one part go up as a single put; larger ones as a
// multipart upload, aborted on error, so no half-written object ever becomes visible. R2 refuses a stream
// of unknown length, so a streamed body is gathered part by part before it is sent.
import type { BlobInfo, BlobStore, ByteRange, PutOptions } from '../../contracts/blob-store.ts';
import { bodyChunks, fixedParts } from './bytes.ts';
import { validateKey, validatePrefix, validateRange } from './keys.ts';

/** The parts of an R2 object's metadata this store reads. */
export interface R2ObjectLike {
  key: string;
  size: number;
  etag?: string;
  uploaded?: Date;
}

export interface R2ObjectBodyLike extends R2ObjectLike {
  body: ReadableStream<Uint8Array>;
  arrayBuffer(): Promise<ArrayBuffer>;
}

/** R2's range forms: {offset, length} or {offset} (to the end). */
export type R2RangeLike = { offset: number; length?: number };

export interface R2MultipartUploadLike {
  uploadPart(partNumber: number, value: Uint8Array): Promise<{ partNumber: number; etag: string }>;
  complete(parts: { partNumber: number; etag: string }[]): Promise<R2ObjectLike>;
  abort(): Promise<void>;
}

/** The part of the R2 bucket binding (R2Bucket) this store uses. */
export interface R2BucketLike {
  head(key: string): Promise<R2ObjectLike | null>;
  get(key: string, options?: { range?: R2RangeLike }): Promise<R2ObjectBodyLike | null>;
  put(
    key: string,
    value: Uint8Array,
    options?: { httpMetadata?: { contentType?: string } },
  ): Promise<R2ObjectLike | null>;
  delete(keys: string | string[]): Promise<void>;
  list(options: { prefix?: string; cursor?: string; limit?: number }): Promise<{
    objects: R2ObjectLike[];
    truncated: boolean;
    cursor?: string;
  }>;
  createMultipartUpload(
    key: string,
    options?: { httpMetadata?: { contentType?: string } },
  ): Promise<R2MultipartUploadLike>;
}

/** R2's minimum size of every multipart part but the last (all but the last must also be equal). */
export const R2_MIN_PART_BYTES = 5 * 1024 * 1024;

export interface R2BlobStoreOptions {
  /** Single-put threshold and multipart part size (default 8 MiB, at least 5 MiB). */
  partSizeBytes?: number;
  /** Keys per list call (default 1000, R2's maximum). */
  listPageSize?: number;
}

const info = (o: R2ObjectLike): BlobInfo => ({
  key: o.key,
  size: o.size,
  etag: o.etag,
  lastModified: o.uploaded,
});

export class R2BlobStore implements BlobStore {
  readonly #bucket: R2BucketLike;
  readonly #partSize: number;
  readonly #listPageSize: number;

  constructor(bucket: R2BucketLike, opts: R2BlobStoreOptions = {}) {
    this.#bucket = bucket;
    this.#partSize = opts.partSizeBytes ?? 8 * 1024 * 1024;
    if (this.#partSize < R2_MIN_PART_BYTES)
      throw new Error(`R2 part size must be at least ${R2_MIN_PART_BYTES} bytes`);
    this.#listPageSize = opts.listPageSize ?? 1000;
  }

  async put(
    key: string,
    body: Uint8Array | ReadableStream<Uint8Array>,
    opts?: PutOptions,
  ): Promise<BlobInfo> {
    validateKey(key);
    const httpMetadata = opts?.contentType ? { contentType: opts.contentType } : undefined;
    const parts = fixedParts(bodyChunks(body), this.#partSize)[Symbol.asyncIterator]();
    const first = await parts.next();
    const second = first.done ? first : await parts.next();
    if (second.done) {
      const bytes = first.done ? new Uint8Array(0) : first.value;
      const o = await this.#bucket.put(key, bytes, { httpMetadata });
      return { key, size: bytes.byteLength, etag: o?.etag, lastModified: o?.uploaded ?? new Date() };
    }
    const upload = await this.#bucket.createMultipartUpload(key, { httpMetadata });
    const done: { partNumber: number; etag: string }[] = [];
    let size = 0;
    try {
      // Sequential parts: a Worker has 128 MB, so only the part in flight and the one being read are held.
      const send = async (bytes: Uint8Array) => {
        size += bytes.byteLength;
        done.push(await upload.uploadPart(done.length + 1, bytes));
      };
      await send(first.value);
      await send(second.value);
      for (let next = await parts.next(); !next.done; next = await parts.next()) await send(next.value);
      const o = await upload.complete(done);
      return { key, size, etag: o.etag, lastModified: o.uploaded ?? new Date() };
    } catch (err) {
      await upload.abort().catch(() => {});
      throw err;
    }
  }

  /** The object or the range of it; 'empty' for a range that starts at or past the end. */
  async #getObject(key: string, range?: ByteRange): Promise<R2ObjectBodyLike | 'empty' | null> {
    validateKey(key);
    if (!range) return this.#bucket.get(key);
    validateRange(range);
    // R2 refuses (throws on) ranges that start past the end, and empty objects have no valid range at
    // all; the size from head lets every range be clipped to the object first.
    const head = await this.#bucket.head(key);
    if (!head) return null;
    if (range.start >= head.size) return 'empty';
    const end = Math.min(range.end ?? head.size - 1, head.size - 1);
    return this.#bucket.get(key, { range: { offset: range.start, length: end - range.start + 1 } });
  }

  async get(key: string, range?: ByteRange): Promise<Uint8Array | null> {
    const o = await this.#getObject(key, range);
    if (o === null) return null;
    if (o === 'empty') return new Uint8Array(0);
    return new Uint8Array(await o.arrayBuffer());
  }

  async getStream(key: string, range?: ByteRange): Promise<ReadableStream<Uint8Array> | null> {
    const o = await this.#getObject(key, range);
    if (o === null) return null;
    if (o === 'empty') return new ReadableStream<Uint8Array>({ start: (c) => c.close() });
    return o.body;
  }

  async head(key: string): Promise<BlobInfo | null> {
    validateKey(key);
    const o = await this.#bucket.head(key);
    return o ? info(o) : null;
  }

  async delete(key: string): Promise<void> {
    validateKey(key);
    await this.#bucket.delete(key);
  }

  async *list(prefix: string): AsyncIterable<BlobInfo> {
    validatePrefix(prefix);
    let cursor: string | undefined;
    do {
      const page = await this.#bucket.list({
        prefix: prefix === '' ? undefined : prefix,
        cursor,
        limit: this.#listPageSize,
      });
      for (const o of page.objects) yield info(o);
      cursor = page.truncated ? page.cursor : undefined;
    } while (cursor);
  }
}
