// What a squeezed plan pays the first time it needs a block's index (bench ttft): the v3 section (the
// clusters alone) parsed, the block's K/V read back from the device as f32 (readPacked) and the statistics
// derived from them (completeIndex) — next to what the same index stored as a v2 section (f32 centroids,
// radii and value means) takes to parse. Dense plans pay none of it: the engine tier parses an index only
// when a squeezed plan asks for it.
import { encodeIndexV2 } from '../gpu-runner/engine/attention/squeezed/codec-v2.ts';
import { parseIndex } from '../gpu-runner/engine/attention/squeezed/codec.ts';
import { completeIndex } from '../gpu-runner/engine/attention/squeezed/index.ts';
import type { Engine } from '../gpu-runner/engine/engine.ts';
import { type KVDType, packedSpec } from '../gpu-runner/engine/kv/artifact-format.ts';
import type { ArtifactStore } from '../gpu-runner/engine/kv/artifact-store.ts';
import { chunkKey } from '../gpu-runner/engine/kv/precompute.ts';
import { readPacked } from '../gpu-runner/engine/kv/rerotate.ts';

export interface IndexCost {
  tokens: number;
  /** v3 sections: bytes, parse ms */
  v3Bytes: number;
  parseMs: number;
  /** K/V back to the host as f32 (readPacked) and completeIndex over them */
  readMs: number;
  deriveMs: number;
  /** the same indexes as v2 sections: bytes, parse ms */
  v2Bytes: number;
  v2ParseMs: number;
}

export async function indexCost(
  e: Engine,
  store: ArtifactStore,
  blocks: readonly (readonly number[])[],
  dtype: KVDType,
): Promise<IndexCost> {
  const cost: IndexCost = {
    tokens: 0,
    v3Bytes: 0,
    parseMs: 0,
    readMs: 0,
    deriveMs: 0,
    v2Bytes: 0,
    v2ParseMs: 0,
  };
  for (const tokens of blocks) {
    const got = await store.get(chunkKey(e, tokens, dtype));
    const a = got?.artifact;
    if (!a?.index)
      throw new Error(`bench: the ${dtype} artifact of a ${tokens.length}-token block has no index`);
    const h = a.header;
    let t = performance.now();
    const stored = parseIndex(a.index, h);
    cost.parseMs += performance.now() - t;
    if (stored.kind !== 'clusters') throw new Error('bench: precompute wrote a pre-v3 index');
    const packed = e.backend.uploadPackedKV(packedSpec(h), a.bytes, {
      k: h.sections.k.map((r) => r.offset),
      v: h.sections.v.map((r) => r.offset),
    });
    try {
      t = performance.now();
      const host = await readPacked(e.backend, e.model.invFreq, packed);
      cost.readMs += performance.now() - t;
      t = performance.now();
      const ix = completeIndex(stored.index, host);
      cost.deriveMs += performance.now() - t;
      const v2 = encodeIndexV2(ix);
      t = performance.now();
      parseIndex(v2, h);
      cost.v2ParseMs += performance.now() - t;
      cost.tokens += tokens.length;
      cost.v3Bytes += a.index.byteLength;
      cost.v2Bytes += v2.byteLength;
    } finally {
      e.backend.freePackedKV(packed);
    }
  }
  return cost;
}
