// Layer-wise reading of chunk artifacts from a lower tier (kv/layerwise.ts, EngineTier): sections land in
// the caller's memory in layer order, each checked there (crc32, zero padding) before its layer is ready;
// a corrupt section, non-zero padding or a short read fail that layer and every later one (earlier ones
// stay good); and through the assembler, the question's first layer runs while the artifacts' last layers
// are still unread, a section refused midway is recomputed, and either way the logits equal a load of the
// same artifacts from host memory.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ByteRange } from '../../contracts/blob-store.ts';
import { type Engine, loadEngine } from '../../gpu-runner/engine/engine.ts';
import {
  type ArtifactHeader,
  ArtifactError,
  type ArtifactMeta,
  encodeArtifact,
  type KVDType,
  parseHeader,
} from '../../gpu-runner/engine/kv/artifact-format.ts';
import { ArtifactStore } from '../../gpu-runner/engine/kv/artifact-store.ts';
import { EngineTier } from '../../gpu-runner/engine/kv/engine-tier.ts';
import { layerGroups, readLayerwise } from '../../gpu-runner/engine/kv/layerwise.ts';
import { ObjectTier } from '../../gpu-runner/engine/kv/object-tier.ts';
import { chunkKey, precomputeChunks } from '../../gpu-runner/engine/kv/precompute.ts';
import { HostTier } from '../../gpu-runner/engine/kv/tiers.ts';
import { Assembler } from '../../gpu-runner/engine/reuse/assemble.ts';
import { MemoryBlobStore } from '../../src/storage/memory.ts';
import { seqTokens } from '../helpers/kv-reuse-suite.ts';
import { maxAbsDiff, tinyModels } from '../helpers/tiny-model.ts';

// --- readLayerwise on an encoded artifact ------------------------------------------------------------

const LAYERS = 4;
/** 3 tokens × 1 kv head × 4 dims: f16 sections of 24 bytes, so zero padding follows each (64-byte align) */
function artifact(dtype: KVDType): { bytes: Uint8Array; h: ArtifactHeader; from: number; to: number } {
  const n = 3;
  const meta: ArtifactMeta = {
    fingerprint: 'a'.repeat(64),
    tokenizerHash: 't',
    dtype,
    tokenIds: [1, 2, 3],
    layers: LAYERS,
    kvHeads: 1,
    headDim: 4,
    rope: { theta: 10000, scaling: null },
  };
  const layer = (l: number) => ({
    k: Float32Array.from({ length: n * 4 }, (_, i) => Math.sin(l * 7 + i)),
    v: Float32Array.from({ length: n * 4 }, (_, i) => Math.cos(l * 5 + i)),
  });
  const bytes = encodeArtifact(
    meta,
    Array.from({ length: LAYERS }, (_, l) => layer(l)),
  );
  const h = parseHeader(bytes);
  const secs = [...h.sections.k, ...h.sections.v];
  return {
    bytes,
    h,
    from: Math.min(...secs.map((r) => r.offset)),
    to: Math.max(...secs.map((r) => r.offset + r.bytes)),
  };
}

/** Reads from `bytes`, logging each range asked for. */
const reader = (bytes: Uint8Array, log: [number, number][]) => async (offset: number, dst: Uint8Array) => {
  log.push([offset, offset + dst.byteLength]);
  if (offset + dst.byteLength > bytes.byteLength) return false;
  dst.set(bytes.subarray(offset, offset + dst.byteLength));
  return true;
};

/** Which layers became ready and which failed, and why. */
async function outcome(r: ReturnType<typeof readLayerwise>): Promise<(string | true)[]> {
  return Promise.all(
    Array.from({ length: LAYERS }, (_, l) =>
      r.ready(l).then(
        () => true as const,
        (err: unknown) => (err instanceof ArtifactError ? err.reason : String(err)),
      ),
    ),
  );
}

describe.each(['f16', 'int4'] as const)('readLayerwise (%s)', (dtype) => {
  it('reads the sections in place, layer by layer, in the format order', async () => {
    const a = artifact(dtype);
    const target = new Uint8Array(a.to - a.from);
    const log: [number, number][] = [];
    const r = readLayerwise(a.h, a.from, target, reader(a.bytes, log), 1);
    const order: number[] = [];
    for (let l = 0; l < LAYERS; l++) r.ready(l).then(() => order.push(l));
    await r.done;
    await Promise.resolve();
    expect(order).toEqual([0, 1, 2, 3]);
    expect(target).toEqual(a.bytes.subarray(a.from, a.to));
    // one read per layer, back to back from the first section to the last
    expect(log).toEqual(layerGroups(a.h, a.from, 1).map((g) => [g.start, g.end]));
    expect(log.length).toBe(LAYERS);
    expect(log[0][0]).toBe(a.from);
    expect(log[LAYERS - 1][1]).toBe(a.to);
    // the default reads a small artifact at once
    expect(layerGroups(a.h, a.from)).toHaveLength(1);
  });

  it('refuses a flipped section byte from that layer on; earlier layers stay good', async () => {
    const a = artifact(dtype);
    const bad = a.bytes.slice();
    bad[a.h.sections.v[2].offset] ^= 0x10;
    const r = readLayerwise(a.h, a.from, new Uint8Array(a.to - a.from), reader(bad, []), 1);
    await expect(r.done).rejects.toThrow(ArtifactError);
    expect(await outcome(r)).toEqual([true, true, 'checksum', 'checksum']);
  });

  it('rejects the layers only after the refused copy is dropped (a write-back cannot race the delete)', async () => {
    const a = artifact(dtype);
    const bad = a.bytes.slice();
    bad[a.h.sections.k[1].offset] ^= 0x01;
    const events: string[] = [];
    let dropped!: () => void;
    const r = readLayerwise(a.h, a.from, new Uint8Array(a.to - a.from), reader(bad, []), 1, (err) => {
      events.push(`refused ${err.reason}`);
      return new Promise<void>((resolve) => {
        dropped = () => {
          events.push('dropped');
          resolve();
        };
      });
    });
    const layer1 = r.ready(1).catch(() => events.push('layer 1 rejected'));
    await r.ready(0);
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(events).toEqual(['refused checksum']); // the drop is still in flight: nobody told yet
    dropped();
    await layer1;
    expect(events).toEqual(['refused checksum', 'dropped', 'layer 1 rejected']);
  });

  it('refuses non-zero padding between sections and a short read', async () => {
    const a = artifact(dtype);
    const k1 = a.h.sections.k[1];
    expect(a.h.sections.v[1].offset).toBeGreaterThan(k1.offset + k1.bytes); // there is padding
    const bad = a.bytes.slice();
    bad[k1.offset + k1.bytes] = 1;
    const padded = readLayerwise(a.h, a.from, new Uint8Array(a.to - a.from), reader(bad, []), 1);
    expect(await outcome(padded)).toEqual([true, 'checksum', 'checksum', 'checksum']);
    const short = a.bytes.subarray(0, a.h.sections.k[3].offset + 8);
    const cut = readLayerwise(a.h, a.from, new Uint8Array(a.to - a.from), reader(short, []), 1);
    expect(await outcome(cut)).toEqual([true, true, true, 'truncated']);
  });
});

// --- through the engine tier and the assembler ---------------------------------------------------------

/** An in-memory object store whose range reads of a key from gateAt[key] on wait until open() (no readInto). */
class GatedStore extends MemoryBlobStore {
  readonly gateAt = new Map<string, number>();
  waiting = 0;
  private opened: Promise<void> = Promise.resolve();
  private release: () => void = () => {};
  hold(): void {
    this.opened = new Promise((r) => {
      this.release = r;
    });
  }
  open(): void {
    this.release();
  }
  override async get(key: string, range?: ByteRange): Promise<Uint8Array | null> {
    if (range && range.start >= (this.gateAt.get(key) ?? Number.POSITIVE_INFINITY)) {
      this.waiting++;
      await this.opened;
      this.waiting--;
    }
    return super.get(key, range);
  }
}

const models = tinyModels();
let engine: Engine;
beforeAll(async () => {
  const dir = models.make('lw', { layers: 3, seed: 3, hidden: 64, heads: 4, kvHeads: 2, headDim: 16 });
  engine = await loadEngine(dir);
});
afterAll(() => {
  engine.dispose();
  models.cleanup();
});

const system = seqTokens(6, 1);
const chunks = [seqTokens(30, 2), seqTokens(17, 3)];
const request = { system, chunks, question: seqTokens(4, 4), mode: 'independent' as const };

function runner(blobs: MemoryBlobStore) {
  const host = new HostTier(64 << 20);
  const store = new ArtifactStore({
    fingerprint: engine.fingerprint,
    tokenizerHash: engine.tokenizer.hash,
    host,
    object: new ObjectTier(blobs, engine.fingerprint),
  });
  // one layer per read, so the layers of these small artifacts arrive one by one
  const tier = new EngineTier(engine.backend, engine.config, store, 64 << 20, { readBytes: 1 });
  return { host, store, asm: new Assembler(engine, tier, { dtype: 'f16' }) };
}

async function stored(blobs: MemoryBlobStore) {
  const w = runner(blobs);
  await precomputeChunks(
    engine,
    w.store,
    [system, ...chunks].map((tokenIds) => ({ tokenIds })),
  );
  const warm = await w.asm.assemble(request); // from host memory, uploaded whole
  warm.kv.free();
  expect(warm.report.artifactsByTier).toEqual({ host: 3 });
  return {
    logits: warm.logits,
    headers: await Promise.all([system, ...chunks].map((b) => w.store.get(chunkKey(engine, b)))),
  };
}

describe('layer-wise loading through the assembler', () => {
  it("starts the question's first layer before the artifacts' last layers are read", async () => {
    const blobs = new GatedStore();
    const { logits, headers } = await stored(blobs);
    // hold back every read from the last layer's K section on, in every artifact
    const objects = new ObjectTier(blobs, engine.fingerprint);
    for (const g of headers) {
      const h = g!.artifact.header;
      blobs.gateAt.set(objects.objectKey(h.key), h.sections.k[2].offset);
    }
    blobs.hold();
    const layersRun: number[] = [];
    const layer = engine.model.layer.bind(engine.model);
    engine.model.layer = (l, x, rows, hooks) => {
      layersRun.push(l);
      return layer(l, x, rows, hooks);
    };
    try {
      const cold = runner(blobs);
      const pending = cold.asm.assemble(request);
      for (let i = 0; i < 200 && layersRun.length < 2; i++) await new Promise((r) => setTimeout(r, 5));
      expect(layersRun).toEqual([0, 1]); // the question's layers 0 and 1 ran …
      expect(blobs.waiting).toBe(3); // … while each artifact's last layer was still unread
      blobs.open();
      const out = await pending;
      out.kv.free();
      expect(layersRun).toEqual([0, 1, 2]);
      expect(out.report.artifactsByTier).toEqual({ object: 3 });
      expect(out.report.timingsMs.wait).toBeGreaterThan(0);
      expect(maxAbsDiff(out.logits, logits)).toBe(0);
    } finally {
      engine.model.layer = layer;
    }
  });

  it('a section refused midway is recomputed, written back, and the answer is unchanged', async () => {
    const blobs = new GatedStore();
    const { logits, headers } = await stored(blobs);
    const h = headers[1]!.artifact.header;
    const objectKey = new ObjectTier(blobs, engine.fingerprint).objectKey(h.key);
    const bad = (await blobs.get(objectKey))!.slice();
    bad[h.sections.v[1].offset + 3] ^= 0x40;
    await blobs.put(objectKey, bad);
    const cold = runner(blobs);
    const out = await cold.asm.assemble(request);
    out.kv.free();
    expect(maxAbsDiff(out.logits, logits)).toBe(0);
    expect(cold.store.refusals).toEqual({ checksum: 1 });
    expect(out.report.precomputedTokens).toBe(chunks[0].length);
    // the object store holds a good copy again
    expect((await blobs.get(objectKey))?.byteLength).toBe(bad.byteLength);
    expect(await blobs.get(objectKey)).not.toEqual(bad);
  });
});
