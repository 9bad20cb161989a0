// Offline chunk prefill (DESIGN.md §4.1, TurboRAG): every chunk is prefilled alone at positions 0..n-1
// and its post-RoPE K and V of every layer become one artifact under a content key. Several chunks share
// one forward step (one sequence each) for throughput; chunks whose artifact is already stored are skipped.
import { SparsePrefill } from '../attention/sparse/prefill.ts';
import { buildIndexSection, type IndexOptions } from '../attention/squeezed/index.ts';
import type { SeqAttention } from '../attention/step-attention.ts';
import type { Engine } from '../engine.ts';
import type { SequenceKV } from '../kv-cache.ts';
import {
  type ArtifactMeta,
  artifactKey,
  encodeArtifact,
  type KVDType,
  type LayerKV,
} from './artifact-format.ts';
import type { ArtifactStore } from './artifact-store.ts';

export interface PrecomputeOptions {
  /** Stored dtype. Default f16. */
  dtype?: KVDType;
  /** Upper bound on the tokens of one batched forward step. Default 4096. */
  maxBatchTokens?: number;
  /** Recompute and overwrite even when some tier holds the key (e.g. after a refusal). */
  force?: boolean;
  /** The squeezed-attention index stored with each artifact (DESIGN.md §4.2); false = none. Default {}. */
  index?: IndexOptions | false;
  /**
   * Sparse prefill of long chunks (DESIGN.md §4.3): 'auto' prefills a chunk that runs alone and reaches
   * the model's break-even (sparse.json) with its per-head patterns. Default 'off': the artifact key does
   * not record the approximation, so only deployments that accept approximate long-chunk K/V opt in.
   */
  sparse?: 'off' | 'auto';
}

export interface PrecomputeResult {
  key: string;
  tokens: number;
  /** Encoded size in bytes (0 when skipped). */
  bytes: number;
  skipped: boolean;
}

/** The identity an engine gives a chunk's artifact. */
export function chunkMeta(engine: Engine, tokenIds: readonly number[], dtype: KVDType): ArtifactMeta {
  const c = engine.config;
  return {
    fingerprint: engine.fingerprint,
    tokenizerHash: engine.tokenizer.hash,
    dtype,
    tokenIds,
    layers: c.layers,
    kvHeads: c.kvHeads,
    headDim: c.headDim,
    rope: { theta: c.rope.theta, scaling: c.rope.scaling },
  };
}

export function chunkKey(engine: Engine, tokenIds: readonly number[], dtype: KVDType = 'f16'): string {
  return artifactKey({ fingerprint: engine.fingerprint, dtype, tokenIds });
}

/** Reads every layer of positions [0, n) of a sequence to the host: [kv_head][n][head_dim] each. */
export async function readLayers(kv: SequenceKV, n: number, layers: number): Promise<LayerKV[]> {
  const out: LayerKV[] = [];
  for (let l = 0; l < layers; l++) out.push(await kv.read(l, 0, n));
  return out;
}

/** Prefills the chunks (batched), encodes and stores their artifacts; results in input order. */
export async function precomputeChunks(
  engine: Engine,
  store: ArtifactStore,
  chunks: readonly { tokenIds: readonly number[] }[],
  opts: PrecomputeOptions = {},
): Promise<PrecomputeResult[]> {
  const dtype = opts.dtype ?? 'f16';
  const maxBatch = opts.maxBatchTokens ?? 4096;
  const results: PrecomputeResult[] = chunks.map((c) => ({
    key: chunkKey(engine, c.tokenIds, dtype),
    tokens: c.tokenIds.length,
    bytes: 0,
    skipped: false,
  }));
  const todo: number[] = [];
  const seen = new Set<string>();
  for (const [i, c] of chunks.entries()) {
    if (c.tokenIds.length === 0) throw new Error(`chunk ${i} has no tokens`);
    if (c.tokenIds.length > engine.maxContext)
      throw new Error(`chunk ${i}: ${c.tokenIds.length} tokens exceed the context ${engine.maxContext}`);
    const r = results[i];
    const stored = !opts.force && Object.values(await store.where(r.key)).some(Boolean);
    if (stored || seen.has(r.key)) r.skipped = true;
    else todo.push(i);
    seen.add(r.key);
  }
  // greedy batches of whole chunks up to maxBatch tokens (a longer chunk runs alone)
  let batch: number[] = [];
  let batchTokens = 0;
  const flush = async () => {
    if (batch.length === 0) return;
    const seqs = batch.map((i) => engine.newSequence(chunks[i].tokenIds.length));
    const attention: SeqAttention | null =
      opts.sparse === 'auto' && batch.length === 1
        ? { kind: 'sparse', policy: new SparsePrefill({ mode: 'auto' }, engine.sparseConfig) }
        : null;
    try {
      await engine.forward(batch.map((i, j) => ({ kv: seqs[j], tokens: chunks[i].tokenIds, attention })));
      for (const [j, i] of batch.entries()) {
        const ids = chunks[i].tokenIds;
        const layers = await readLayers(seqs[j], ids.length, engine.config.layers);
        const meta = chunkMeta(engine, ids, dtype);
        const index = opts.index === false ? undefined : buildIndexSection(layers, meta, opts.index ?? {});
        const bytes = encodeArtifact(meta, layers, index);
        await store.put(results[i].key, bytes);
        results[i].bytes = bytes.byteLength;
      }
    } finally {
      for (const s of seqs) s.free();
    }
    batch = [];
    batchTokens = 0;
  };
  for (const i of todo) {
    const n = chunks[i].tokenIds.length;
    if (batch.length > 0 && batchTokens + n > maxBatch) await flush();
    batch.push(i);
    batchTokens += n;
  }
  await flush();
  return results;
}
