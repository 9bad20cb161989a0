// The BlobStore contract against the in-memory store used by unit tests elsewhere.
import { MemoryBlobStore } from '../../src/storage/memory.ts';
import { blobStoreSuite } from '../helpers/blob-store-suite.ts';

blobStoreSuite('memory', async () => ({ store: new MemoryBlobStore(), cleanup: async () => {} }), {
  largeBytes: 10 * 1000 * 1000,
});
