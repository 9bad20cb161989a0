// S3-compatible blob store (AWS S3, Cloudflare R2, MinIO, s3rver) via @aws-sdk/client-s3. Bodies larger
// than one part, or streamed bodies that turn out larger, go up as a multipart upload (aborted on error, so
// no half-written object ever becomes visible); range reads use the Range header.
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { AppError } from '../../contracts/errors.ts';
import type { BlobInfo, BlobStore, ByteRange, PutOptions } from '../../contracts/blob-store.ts';
import { bodyChunks, fixedParts } from './bytes.ts';
import { validateKey, validatePrefix, validateRange } from './keys.ts';

/** S3's minimum size of every part but the last. */
export const MIN_PART_BYTES = 5 * 1024 * 1024;

export interface S3BlobStoreOptions {
  bucket: string;
  /** Custom endpoint (R2, MinIO, s3rver); omitted = AWS. */
  endpoint?: string;
  region: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  /** `http://host/bucket/key` instead of `http://bucket.host/key`: MinIO and s3rver need it. */
  forcePathStyle?: boolean;
  /** Multipart part size and the single-PUT threshold (default 8 MiB, at least 5 MiB). */
  partSizeBytes?: number;
  /** Parts uploaded at once (default 4); memory held is about partSize × this. */
  partConcurrency?: number;
  /** Keys per ListObjectsV2 page (default 1000, S3's maximum). */
  listPageSize?: number;
  /** Use this client instead of building one from the settings above. */
  client?: S3Client;
  /** Tries per request, the first included (default 3): 5xx, throttling and timeouts are retried. */
  maxAttempts?: number;
  /** Connecting may take this long (default 5 s). */
  connectTimeoutMs?: number;
  /** A connection silent this long (no response bytes) fails the try (default 30 s). */
  idleTimeoutMs?: number;
}

type S3Error = { name?: string; $metadata?: { httpStatusCode?: number } };
const status = (err: unknown) => (err as S3Error)?.$metadata?.httpStatusCode;
const isNotFound = (err: unknown) =>
  (err as S3Error)?.name === 'NoSuchKey' || (err as S3Error)?.name === 'NotFound' || status(err) === 404;
const isInvalidRange = (err: unknown) => (err as S3Error)?.name === 'InvalidRange' || status(err) === 416;

/**
 * What a failed request (after the client's retries) becomes: 504 `timeout` or 502 `upstream_unavailable`
 * naming the operation, the key and what the store said; both tell the caller a retry can help.
 */
function storeError(err: unknown, op: string, key: string): AppError {
  if (err instanceof AppError) return err;
  const e = err as S3Error & { message?: string; code?: string };
  const http = status(err);
  const what = `${e?.name ?? 'Error'}${http ? ` HTTP ${http}` : ''}: ${String(e?.message ?? err).slice(0, 200)}`;
  const timedOut = e?.name === 'TimeoutError' || e?.code === 'ETIMEDOUT' || /timed? ?out/i.test(what);
  return new AppError(
    timedOut ? 'timeout' : 'upstream_unavailable',
    `object store ${op} of "${key}" failed (${what})`,
    undefined,
    { cause: err },
  );
}

export class S3BlobStore implements BlobStore {
  readonly bucket: string;
  private readonly client: S3Client;
  private readonly partSize: number;
  private readonly partConcurrency: number;
  private readonly listPageSize: number;

  constructor(opts: S3BlobStoreOptions) {
    this.bucket = opts.bucket;
    this.partSize = opts.partSizeBytes ?? 8 * 1024 * 1024;
    if (this.partSize < MIN_PART_BYTES)
      throw new Error(`S3 part size must be at least ${MIN_PART_BYTES} bytes`);
    this.partConcurrency = Math.max(1, opts.partConcurrency ?? 4);
    this.listPageSize = opts.listPageSize ?? 1000;
    this.client =
      opts.client ??
      new S3Client({
        endpoint: opts.endpoint,
        region: opts.region,
        forcePathStyle: opts.forcePathStyle ?? false,
        credentials:
          opts.accessKeyId && opts.secretAccessKey
            ? { accessKeyId: opts.accessKeyId, secretAccessKey: opts.secretAccessKey }
            : undefined,
        // Checksums only where the API requires them: R2, MinIO and s3rver reject or mishandle the
        // default CRC trailers on some requests.
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
        // a stalled store must fail the request (and be retried), never hang it
        maxAttempts: opts.maxAttempts ?? 3,
        requestHandler: {
          connectionTimeout: opts.connectTimeoutMs ?? 5_000,
          socketTimeout: opts.idleTimeoutMs ?? 30_000,
        },
      });
  }

  async put(
    key: string,
    body: Uint8Array | ReadableStream<Uint8Array>,
    opts?: PutOptions,
  ): Promise<BlobInfo> {
    validateKey(key);
    try {
      return await this.putUnchecked(key, body, opts);
    } catch (err) {
      throw storeError(err, 'put', key);
    }
  }

  private async putUnchecked(
    key: string,
    body: Uint8Array | ReadableStream<Uint8Array>,
    opts?: PutOptions,
  ): Promise<BlobInfo> {
    const parts = fixedParts(bodyChunks(body), this.partSize)[Symbol.asyncIterator]();
    const first = await parts.next();
    const second = first.done ? first : await parts.next();
    if (second.done) {
      // Fits in one part: a single PUT.
      const bytes = first.done ? new Uint8Array(0) : first.value;
      const res = await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: bytes,
          ContentLength: bytes.byteLength,
          ContentType: opts?.contentType,
        }),
      );
      return { key, size: bytes.byteLength, etag: res.ETag, lastModified: new Date() };
    }
    return this.putMultipart(key, [first.value, second.value], parts, opts);
  }

  private async putMultipart(
    key: string,
    head: Uint8Array[],
    rest: AsyncIterator<Uint8Array>,
    opts?: PutOptions,
  ): Promise<BlobInfo> {
    const { UploadId } = await this.client.send(
      new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key, ContentType: opts?.contentType }),
    );
    if (!UploadId) throw new Error('S3 CreateMultipartUpload returned no UploadId');
    const done: { PartNumber: number; ETag: string }[] = [];
    const inFlight = new Set<Promise<void>>();
    let size = 0;
    let partNumber = 0;
    const upload = (bytes: Uint8Array) => {
      const n = ++partNumber;
      size += bytes.byteLength;
      const p = this.client
        .send(
          new UploadPartCommand({
            Bucket: this.bucket,
            Key: key,
            UploadId,
            PartNumber: n,
            Body: bytes,
            ContentLength: bytes.byteLength,
          }),
        )
        .then((r) => {
          if (!r.ETag) throw new Error(`S3 UploadPart ${n} returned no ETag`);
          done.push({ PartNumber: n, ETag: r.ETag });
        });
      const tracked = p.finally(() => inFlight.delete(tracked));
      tracked.catch(() => {}); // observed by Promise.race/all below; this only keeps Node from calling it unhandled
      inFlight.add(tracked);
    };
    try {
      for (const bytes of head) upload(bytes);
      for (;;) {
        // Bounded parallelism: wait for a slot before reading the next part from the body.
        while (inFlight.size >= this.partConcurrency) await Promise.race(inFlight);
        const next = await rest.next();
        if (next.done) break;
        upload(next.value);
      }
      await Promise.all(inFlight);
      done.sort((a, b) => a.PartNumber - b.PartNumber);
      const res = await this.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.bucket,
          Key: key,
          UploadId,
          MultipartUpload: { Parts: done },
        }),
      );
      return { key, size, etag: res.ETag, lastModified: new Date() };
    } catch (err) {
      await Promise.allSettled(inFlight);
      await this.client
        .send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId }))
        .catch(() => {});
      throw err;
    }
  }

  private async getObject(key: string, range?: ByteRange) {
    validateKey(key);
    if (range) validateRange(range);
    try {
      return await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Range: range ? `bytes=${range.start}-${range.end ?? ''}` : undefined,
        }),
      );
    } catch (err) {
      if (isNotFound(err)) return null;
      // A range starting at or past the end: the object exists, the read is empty (as on every store).
      if (isInvalidRange(err)) return (await this.head(key)) ? 'empty' : null;
      throw storeError(err, 'get', key);
    }
  }

  async get(key: string, range?: ByteRange): Promise<Uint8Array | null> {
    const res = await this.getObject(key, range);
    if (res === null) return null;
    if (res === 'empty' || !res.Body) return new Uint8Array(0);
    try {
      return await res.Body.transformToByteArray();
    } catch (err) {
      throw storeError(err, 'get', key);
    }
  }

  async getStream(key: string, range?: ByteRange): Promise<ReadableStream<Uint8Array> | null> {
    const res = await this.getObject(key, range);
    if (res === null) return null;
    if (res === 'empty' || !res.Body) return new ReadableStream<Uint8Array>({ start: (c) => c.close() });
    return res.Body.transformToWebStream() as ReadableStream<Uint8Array>;
  }

  async head(key: string): Promise<BlobInfo | null> {
    validateKey(key);
    try {
      const res = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { key, size: res.ContentLength ?? 0, etag: res.ETag, lastModified: res.LastModified };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw storeError(err, 'head', key);
    }
  }

  async delete(key: string): Promise<void> {
    validateKey(key);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
    } catch (err) {
      if (!isNotFound(err)) throw storeError(err, 'delete', key);
    }
  }

  async *list(prefix: string): AsyncIterable<BlobInfo> {
    validatePrefix(prefix);
    let token: string | undefined;
    do {
      const page = await this.client
        .send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: prefix === '' ? undefined : prefix,
            ContinuationToken: token,
            MaxKeys: this.listPageSize,
          }),
        )
        .catch((err) => {
          throw storeError(err, 'list', prefix);
        });
      for (const o of page.Contents ?? []) {
        if (o.Key === undefined) continue;
        yield { key: o.Key, size: o.Size ?? 0, etag: o.ETag, lastModified: o.LastModified };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  /** Releases the HTTP agent's sockets. */
  async close(): Promise<void> {
    this.client.destroy();
  }
}
