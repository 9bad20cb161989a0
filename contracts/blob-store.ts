// The object store behind one interface. Implementations in src/storage/: S3-compatible (s3.ts, r2.ts) and
// filesystem (fs.ts); the in-memory one (memory.ts) is for unit tests only.

export interface ByteRange {
  /** First byte, inclusive. */
  start: number;
  /** Last byte, inclusive; omitted = to the end. */
  end?: number;
}

export interface BlobInfo {
  key: string;
  size: number;
  etag?: string;
  lastModified?: Date;
}

export interface PutOptions {
  contentType?: string;
}

/**
 * Keys are `/`-separated segments (no empty, `.` or `..` segments, no backslash or control characters,
 * at most 1024 bytes; see src/storage/keys.ts); a bad key or range is AppError('bad_request'). A range that starts
 * past the end reads as empty; an end past the end is clipped.
 */
export interface BlobStore {
  /** Writes the whole object atomically: readers see the old object or the new one, never a part. */
  put(key: string, body: Uint8Array | ReadableStream<Uint8Array>, opts?: PutOptions): Promise<BlobInfo>;
  /** Reads the object (or a byte range of it); null when absent. */
  get(key: string, range?: ByteRange): Promise<Uint8Array | null>;
  /**
   * Optional: reads the object's bytes from `start` into `dst` (the caller's memory, no buffer of the
   * store's own); how many bytes were read (fewer than dst holds at the object's end), null when absent.
   */
  readInto?(key: string, start: number, dst: Uint8Array): Promise<number | null>;
  /** Streams the object (or a range); null when absent. */
  getStream(key: string, range?: ByteRange): Promise<ReadableStream<Uint8Array> | null>;
  head(key: string): Promise<BlobInfo | null>;
  /** Deleting an absent key is not an error. */
  delete(key: string): Promise<void>;
  /** Every object whose key starts with prefix, in key order. */
  list(prefix: string): AsyncIterable<BlobInfo>;
  /** Releases connections, where the store holds any. */
  close?(): Promise<void>;
}
