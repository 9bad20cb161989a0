// The object-store side of `kvrag bench kv-load`: the same artifacts in a filesystem object store (a temp
// dir; the OS page cache holds them after the write), loaded onto the device side by side two ways, every
// artifact asked for at once as a request's assembly does:
//   now     the engine tier's path: header by range, device memory reserved, the K/V sections read layer by
//           layer straight into it and checked there (EngineTier over an ArtifactStore whose host tier is
//           empty; capacity 0, so each run loads afresh)
//   before  what the object tier did before: the whole object into a buffer of its own, every checksum
//           verified, the sections uploaded (copied) to the device
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Backend } from '../gpu-runner/engine/backends/types.ts';
import {
  packedSpec,
  parseHeader,
  readPreamble,
  verifyArtifact,
} from '../gpu-runner/engine/kv/artifact-format.ts';
import { ArtifactStore } from '../gpu-runner/engine/kv/artifact-store.ts';
import { EngineTier, type KVShape } from '../gpu-runner/engine/kv/engine-tier.ts';
import { ObjectTier } from '../gpu-runner/engine/kv/object-tier.ts';
import { HostTier } from '../gpu-runner/engine/kv/tiers.ts';
import { FsBlobStore } from '../src/storage/fs.ts';

export interface ObjectLoad {
  /** bytes each path reads: now the headers and K/V sections, before the whole objects */
  bytes: { now: number; before: number };
  now(): Promise<void>;
  before(): Promise<void>;
  dispose(): void;
}

export async function objectLoad(
  b: Backend,
  shape: KVShape,
  artifacts: readonly Uint8Array[],
): Promise<ObjectLoad> {
  const dir = mkdtempSync(join(tmpdir(), 'kvrag-bench-kv-load-'));
  const headers = artifacts.map((a) => parseHeader(a));
  const fingerprint = headers[0].fingerprint;
  const blobs = new FsBlobStore(dir);
  const objects = new ObjectTier(blobs, fingerprint);
  for (const [i, h] of headers.entries()) await objects.put(h.key, artifacts[i]);
  const tier = new EngineTier(
    b,
    shape,
    new ArtifactStore({
      fingerprint,
      tokenizerHash: headers[0].tokenizerHash,
      host: new HostTier(0),
      object: objects,
    }),
    0,
  );
  const span = (i: number) => {
    const secs = [...headers[i].sections.k, ...headers[i].sections.v];
    const from = Math.min(...secs.map((r) => r.offset));
    return Math.max(...secs.map((r) => r.offset + r.bytes)) - from;
  };
  return {
    bytes: {
      now: artifacts.reduce((s, a, i) => s + readPreamble(a).headerBytes + span(i), 0),
      before: artifacts.reduce((s, a) => s + a.byteLength, 0),
    },
    now: async () => {
      await Promise.all(
        headers.map(async (h) => {
          const got = await tier.acquire(h.key);
          if (!got) throw new Error(`artifact ${h.key} not found`);
          await got.entry.ready(h.layers - 1);
          got.release();
        }),
      );
    },
    before: async () => {
      await Promise.all(
        headers.map(async (h) => {
          const bytes = await blobs.get(objects.objectKey(h.key));
          if (!bytes) throw new Error(`artifact ${h.key} not found`);
          const a = verifyArtifact(bytes);
          const p = b.uploadPackedKV(packedSpec(a.header), a.bytes, {
            k: a.header.sections.k.map((s) => s.offset),
            v: a.header.sections.v.map((s) => s.offset),
          });
          b.freePackedKV(p);
        }),
      );
    },
    dispose: () => rmSync(dir, { recursive: true, force: true }),
  };
}
