// Chunk KV artifacts through a real S3 protocol server (s3rver): whole round trip, byte-range reads of
// single layers, and a corrupted object refused and dropped.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArtifactStore } from '../../gpu-runner/engine/kv/artifact-store.ts';
import {
  type ArtifactMeta,
  artifactKey,
  encodeArtifact,
} from '../../gpu-runner/engine/kv/artifact-format.ts';
import { ObjectTier } from '../../gpu-runner/engine/kv/object-tier.ts';
import { HostTier } from '../../gpu-runner/engine/kv/tiers.ts';
import { S3BlobStore } from '../../src/storage/s3.ts';
import { type S3TestServer, startS3 } from '../helpers/s3-server.ts';

const FP = '0123456789abcdef'.repeat(4);
const meta: ArtifactMeta = {
  fingerprint: FP,
  tokenizerHash: 'byte-v1',
  dtype: 'f16',
  tokenIds: Array.from({ length: 96 }, (_, i) => (i * 7) % 256),
  layers: 4,
  kvHeads: 2,
  headDim: 16,
  rope: { theta: 10000, scaling: { type: 'default' } },
};
const size = meta.kvHeads * meta.tokenIds.length * meta.headDim;
const layers = Array.from({ length: meta.layers }, (_, l) => ({
  k: Float32Array.from({ length: size }, (_, i) => Math.sin(i / 7 + l)),
  v: Float32Array.from({ length: size }, (_, i) => Math.cos(i / 5 - l)),
}));

let s3: S3TestServer;
let store: S3BlobStore;
beforeAll(async () => {
  s3 = await startS3();
  store = new S3BlobStore({ ...s3, forcePathStyle: true });
});
afterAll(async () => {
  await store?.close?.();
  await s3?.stop();
});

describe('KV artifacts on S3', () => {
  it('round-trips and reads single layers by byte range', async () => {
    const tier = new ObjectTier(store, FP);
    const key = artifactKey(meta);
    const bytes = encodeArtifact(meta, layers);
    await tier.put(key, bytes);
    expect(await store.head(`kv/${FP}/${key.slice(0, 2)}/${key}.kv`)).toMatchObject({
      size: bytes.byteLength,
    });

    const header = await tier.readHeader(key);
    expect(header?.n).toBe(96);
    const before = tier.stats().bytesRead;
    const l2 = await tier.readLayer(key, header!, 2);
    // Only layer 2's two sections came over the wire, not the whole artifact.
    const sectionBytes = header!.sections.k[2].bytes + header!.sections.v[2].bytes;
    expect(tier.stats().bytesRead - before).toBe(sectionBytes);
    expect(sectionBytes * meta.layers).toBeLessThan(bytes.byteLength);
    let err = 0;
    for (let i = 0; i < size; i++)
      err = Math.max(err, Math.abs(l2.k[i] - layers[2].k[i]), Math.abs(l2.v[i] - layers[2].v[i]));
    expect(err).toBeLessThan(2e-3);

    const full = await new ArtifactStore({
      fingerprint: FP,
      tokenizerHash: 'byte-v1',
      host: new HostTier(1 << 24),
      object: tier,
    }).get(key);
    expect(full?.tier).toBe('object');
    expect(full?.artifact.layers).toHaveLength(4);
  });

  it('refuses a corrupted object, deletes it, and reports it missing so it is recomputed', async () => {
    const tier = new ObjectTier(store, FP);
    const m = { ...meta, tokenIds: meta.tokenIds.map((t) => (t + 1) % 256) };
    const key = artifactKey(m);
    const bytes = encodeArtifact(m, layers);
    bytes[bytes.length - 100] ^= 0xff;
    await tier.put(key, bytes);
    const s = new ArtifactStore({
      fingerprint: FP,
      tokenizerHash: 'byte-v1',
      host: new HostTier(1 << 24),
      object: tier,
    });
    expect(await s.get(key)).toBeNull();
    expect(s.refusals.checksum).toBe(1);
    expect(await tier.has(key)).toBe(false);
  });
});
