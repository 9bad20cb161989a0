// Builds the configured blob store. The implementations are imported lazily so that a caller which only
// needs one (or the Workers build, which has neither node:fs nor wants the whole AWS SDK up front) does
// not load the other.
import { blobStoreSpec, type Config } from '../config.ts';
import type { BlobStore } from '../../contracts/blob-store.ts';

export async function openBlobStore(config: Config): Promise<BlobStore> {
  const spec = blobStoreSpec(config);
  if (spec === 's3') {
    const { S3BlobStore } = await import('./s3.ts');
    // config.ts guarantees bucket and credentials when the spec is s3.
    return new S3BlobStore({
      bucket: config.s3Bucket!,
      endpoint: config.s3Endpoint,
      region: config.s3Region,
      accessKeyId: config.s3AccessKeyId,
      secretAccessKey: config.s3SecretAccessKey,
      forcePathStyle: config.s3ForcePathStyle,
    });
  }
  const { FsBlobStore } = await import('./fs.ts');
  return new FsBlobStore(spec.slice('fs:'.length));
}
