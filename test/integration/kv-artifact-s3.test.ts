// Chunk KV artifacts through a real S3 protocol server (s3rver), for every artifact dtype: whole round
// trip, byte-range reads of single layers, a corrupted object refused and dropped, and a corrupt
// compressed section refused, recomputed by the engine and written back.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArtifactStore } from '../../gpu-runner/engine/kv/artifact-store.ts';
import { loadEngine } from '../../gpu-runner/engine/engine.ts';
import {
  type ArtifactMeta,
  artifactKey,
  decodeSection,
  encodeArtifact,
  KV_DTYPES,
  verifyArtifact,
} from '../../gpu-runner/engine/kv/artifact-format.ts';
import { EngineTier } from '../../gpu-runner/engine/kv/engine-tier.ts';
import { precomputeChunks } from '../../gpu-runner/engine/kv/precompute.ts';
import { Assembler } from '../../gpu-runner/engine/reuse/assemble.ts';
import { ObjectTier } from '../../gpu-runner/engine/kv/object-tier.ts';
import { HostTier } from '../../gpu-runner/engine/kv/tiers.ts';
import { S3BlobStore } from '../../src/storage/s3.ts';
import { seqTokens } from '../helpers/kv-reuse-suite.ts';
import { type S3TestServer, startS3 } from '../helpers/s3-server.ts';
import { tinyModels } from '../helpers/tiny-model.ts';

const FP = '0123456789abcdef'.repeat(4);
const base: ArtifactMeta = {
  fingerprint: FP,
  tokenizerHash: 'byte-v1',
  dtype: 'f16',
  tokenIds: Array.from({ length: 96 }, (_, i) => (i * 7) % 256),
  layers: 4,
  kvHeads: 2,
  headDim: 16,
  rope: { theta: 10000, scaling: { type: 'default' } },
};
const size = base.kvHeads * base.tokenIds.length * base.headDim;
const layers = Array.from({ length: base.layers }, (_, l) => ({
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

describe.each(KV_DTYPES)('%s KV artifacts on S3', (dtype) => {
  const meta = { ...base, dtype };
  it('round-trips and reads single layers by byte range', async () => {
    const tier = new ObjectTier(store, FP);
    const key = artifactKey(meta);
    const bytes = encodeArtifact(meta, layers);
    const whole = verifyArtifact(bytes).header;
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
    // what the whole artifact decodes to, for this layer
    const at = (part: 'k' | 'v') => {
      const ref = whole.sections[part][2];
      return decodeSection(whole, part, ref, bytes.subarray(ref.offset, ref.offset + ref.bytes));
    };
    expect(l2.k).toEqual(at('k'));
    expect(l2.v).toEqual(at('v'));

    const full = await new ArtifactStore({
      fingerprint: FP,
      tokenizerHash: 'byte-v1',
      host: new HostTier(1 << 24),
      object: tier,
    }).get(key);
    expect(full?.tier).toBe('object');
    expect(full?.artifact.header).toEqual(whole);
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

describe.each(KV_DTYPES)('%s artifacts of a real engine on S3', (dtype) => {
  it('a corrupt section is refused, deleted, recomputed and written back', async () => {
    const models = tinyModels();
    const engine = await loadEngine(
      models.make('s3', { layers: 2, hidden: 32, heads: 2, kvHeads: 1, headDim: 16 }),
    );
    try {
      const object = new ObjectTier(store, engine.fingerprint);
      const writer = new ArtifactStore({
        fingerprint: engine.fingerprint,
        tokenizerHash: engine.tokenizer.hash,
        host: new HostTier(1 << 24),
        object,
      });
      const chunk = seqTokens(33, dtype.length);
      const [r] = await precomputeChunks(engine, writer, [{ tokenIds: chunk }], { dtype });
      const good = await store.get(object.objectKey(r.key));
      if (!good) throw new Error('not on S3');
      const bad = good.slice();
      const v0 = verifyArtifact(good).header.sections.v[0];
      bad[v0.offset + 5] ^= 0x01;
      await object.put(r.key, bad);
      // a fresh runner: nothing in host memory, the corrupt copy on S3
      const reader = new ArtifactStore({
        fingerprint: engine.fingerprint,
        tokenizerHash: engine.tokenizer.hash,
        host: new HostTier(1 << 24),
        object,
      });
      const asm = new Assembler(engine, new EngineTier(engine.backend, engine.config, reader, 0), { dtype });
      const out = await asm.assemble({
        system: [],
        chunks: [chunk],
        question: seqTokens(3, 9),
        mode: 'independent',
      });
      out.kv.free();
      expect(reader.refusals.checksum).toBe(1);
      expect(out.report.precomputedTokens).toBe(chunk.length);
      expect(await store.get(object.objectKey(r.key))).toEqual(good);
    } finally {
      engine.dispose();
      models.cleanup();
    }
  });
});
