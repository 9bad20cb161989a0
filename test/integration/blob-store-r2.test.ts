// The BlobStore contract (test/helpers/blob-store-suite.ts) for R2BlobStore over a real R2 bucket binding:
// Miniflare's R2 simulation in workerd, reached through Miniflare's binding proxy. Small list pages so
// cursors are exercised, the minimum part size so multipart uploads are too.
import { convertV4MiniflareOptions, Miniflare } from 'miniflare';
import { describe, expect, it } from 'vitest';
import { R2_MIN_PART_BYTES, R2BlobStore, type R2BucketLike } from '../../src/storage/r2.ts';
import { blobStoreSuite, patternBytes } from '../helpers/blob-store-suite.ts';

async function startR2(): Promise<{ bucket: R2BucketLike; dispose(): Promise<void> }> {
  const mf = new Miniflare(
    convertV4MiniflareOptions({
      modules: true,
      script: 'export default { fetch() { return new Response(null, { status: 204 }); } };',
      compatibilityDate: '2026-11-17',
      r2Buckets: ['BLOBS'],
    }),
  );
  await mf.ready;
  // Miniflare's types lean on @cloudflare/workers-types, not installed: view the proxy by its shape.
  const bucket = (await mf.getR2Bucket('BLOBS')) as unknown as R2BucketLike;
  return { bucket, dispose: () => mf.dispose() };
}

blobStoreSuite(
  'r2 (Miniflare)',
  async () => {
    const r2 = await startR2();
    return {
      store: new R2BlobStore(r2.bucket, { listPageSize: 2, partSizeBytes: R2_MIN_PART_BYTES }),
      cleanup: r2.dispose,
    };
  },
  // Through the proxy every byte crosses a socket twice; 12 MB still spans three parts.
  { largeBytes: 12 * 1024 * 1024 },
);

describe('R2BlobStore', () => {
  it('uploads bodies over one part as a multipart upload with equal parts', async () => {
    const r2 = await startR2();
    try {
      const parts: number[] = [];
      const spy: R2BucketLike = {
        head: (k) => r2.bucket.head(k),
        get: (k, o) => r2.bucket.get(k, o),
        put: (k, v, o) => r2.bucket.put(k, v, o),
        delete: (k) => r2.bucket.delete(k),
        list: (o) => r2.bucket.list(o),
        async createMultipartUpload(key, opts) {
          const up = await r2.bucket.createMultipartUpload(key, opts);
          return {
            uploadPart: (n, v) => {
              parts.push(v.byteLength);
              return up.uploadPart(n, v);
            },
            complete: (p) => up.complete(p),
            abort: () => up.abort(),
          };
        },
      };
      const store = new R2BlobStore(spy, { partSizeBytes: R2_MIN_PART_BYTES });
      const bytes = patternBytes(2 * R2_MIN_PART_BYTES + 123, 3);
      expect((await store.put('mp/obj', bytes)).size).toBe(bytes.byteLength);
      expect(parts).toEqual([R2_MIN_PART_BYTES, R2_MIN_PART_BYTES, 123]);
      expect(await store.get('mp/obj', { start: R2_MIN_PART_BYTES - 2, end: R2_MIN_PART_BYTES + 1 })).toEqual(
        bytes.slice(R2_MIN_PART_BYTES - 2, R2_MIN_PART_BYTES + 2),
      );
      parts.length = 0;
      await store.put('mp/small', bytes.slice(0, 1000));
      expect(parts).toEqual([]);
      expect((await store.head('mp/small'))?.size).toBe(1000);
    } finally {
      await r2.dispose();
    }
  });
});
