// The BlobStore contract against the real stores: the filesystem one in a temp dir and the S3 one on
// s3rver (small list pages so continuation tokens are exercised).
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { FsBlobStore } from '../../src/storage/fs.ts';
import { openBlobStore } from '../../src/storage/open.ts';
import { S3BlobStore } from '../../src/storage/s3.ts';
import { BAD_KEYS, blobStoreSuite } from '../helpers/blob-store-suite.ts';
import { startS3 } from '../helpers/s3-server.ts';

blobStoreSuite('fs', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'kvrag-fs-blobs-'));
  return {
    store: new FsBlobStore(join(dir, 'root')),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});

blobStoreSuite(
  's3 (s3rver)',
  async () => {
    const s3 = await startS3();
    const store = new S3BlobStore({
      ...s3,
      forcePathStyle: true,
      listPageSize: 2,
      partSizeBytes: 8 * 1024 * 1024,
    });
    return {
      store,
      async cleanup() {
        await store.close();
        await s3.stop();
      },
    };
  },
  { checkAtomicReads: false },
);

describe('FsBlobStore specifics', () => {
  it('keeps traversal attempts inside the root and writes nothing outside it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kvrag-fs-escape-'));
    try {
      const store = new FsBlobStore(join(dir, 'root'));
      await writeFile(join(dir, 'secret'), 'outside');
      for (const key of BAD_KEYS) await store.put(key, new Uint8Array([1])).catch(() => {});
      await expect(store.get('../secret')).rejects.toMatchObject({ code: 'bad_request' });
      expect((await readdir(dir)).sort()).toEqual(['secret']); // the root was never even created
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses a key that is both an object and a prefix of objects, and prunes empty dirs on delete', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kvrag-fs-conflict-'));
    try {
      const store = new FsBlobStore(dir);
      await store.put('a/b', new Uint8Array([1]));
      await expect(store.put('a', new Uint8Array([2]))).rejects.toMatchObject({ code: 'conflict' });
      await expect(store.put('a/b/c', new Uint8Array([3]))).rejects.toMatchObject({ code: 'conflict' });
      expect(await store.get('a/b')).toEqual(new Uint8Array([1]));
      expect(await store.head('a')).toBeNull();
      await store.delete('a/b');
      expect(existsSync(join(dir, 'a'))).toBe(false);
      expect(existsSync(dir)).toBe(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('openBlobStore', () => {
  it('opens the filesystem store by default and the S3 store for KVRAG_BLOB_STORE=s3', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kvrag-open-'));
    const s3 = await startS3('kvrag-open');
    try {
      const fsStore = await openBlobStore(loadConfig({ KVRAG_DATA_DIR: dir }));
      expect(fsStore).toBeInstanceOf(FsBlobStore);
      await fsStore.put('x/y', new Uint8Array([7]));
      expect(existsSync(join(dir, 'blobs', 'x', 'y'))).toBe(true);

      const s3Store = await openBlobStore(
        loadConfig({
          KVRAG_BLOB_STORE: 's3',
          KVRAG_S3_ENDPOINT: s3.endpoint,
          KVRAG_S3_BUCKET: s3.bucket,
          KVRAG_S3_ACCESS_KEY_ID: s3.accessKeyId,
          KVRAG_S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
          KVRAG_S3_FORCE_PATH_STYLE: 'true',
        }),
      );
      expect(s3Store).toBeInstanceOf(S3BlobStore);
      await s3Store.put('x/y', new Uint8Array([8]));
      expect(await s3Store.get('x/y')).toEqual(new Uint8Array([8]));
      await s3Store.close?.();
    } finally {
      await s3.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
