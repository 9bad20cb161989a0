// Prompt assembly for one request: [system prefix][chunk 1]…[chunk k][question] in one sequence's KV
// cache, by reuse mode (DESIGN.md §4.1):
//   full        prefill everything live (the baseline)
//   prefix      the system prefix from its artifact (exact), the rest prefilled live
//   independent every block from its artifact, keys re-rotated by Δ = slot offset (TurboRAG); only the
//               question is prefilled; chunks never attend to each other. Dense, it is layer-wise: each
//               block's layers are placed as they arrive (EngineTier reads lower tiers layer by layer) and
//               the question's layer l starts once layer l of every block is placed, so loading overlaps
//               the question's earlier layers (LMCache's layer-wise retrieval)
//   blend       independent, then CacheBlend's selective recompute of chunk tokens
//   link        independent, then EPIC's recompute of the first k tokens of each chunk not at slot 0
// RoPE position = cache slot throughout, so artifacts (computed at 0..n-1) move by Δ = their offset.
// place() builds the context alone (the scheduler prefills the question in its batched steps, and starts
// reading a waiting request's artifacts early through prefetch()); assemble() is place + the question.
import { FixedContext, type PlacedBlock } from '../attention/squeezed/fixed-context.ts';
import { buildIndex, completeIndex } from '../attention/squeezed/index.ts';
import { toClusterMajor } from '../attention/squeezed/layout.ts';
import type { SelectMode } from '../attention/squeezed/select.ts';
import type { SqueezedIndex } from '../attention/squeezed/types.ts';
import type { SeqAttention } from '../attention/step-attention.ts';
import type { Engine } from '../engine.ts';
import { ArtifactError, type KVDType } from '../kv/artifact-format.ts';
import type { AcquiredKV, EngineTier } from '../kv/engine-tier.ts';
import { chunkKey, precomputeChunks } from '../kv/precompute.ts';
import { readPacked, unpackLayer } from '../kv/rerotate.ts';
import type { SequenceKV } from '../kv-cache.ts';
import { ArtifactPrefetch } from './prefetch.ts';
import { blendChunks, type ChunkPlacement, linkChunks } from './selective.ts';
import type {
  AssembleReport,
  AssembleRequest,
  Assembled,
  ContextRequest,
  PlaceRequest,
  Placed,
  Prefetch,
  SequenceAssembler,
  SqueezedReport,
} from './types.ts';

export type { AssembleReport, AssembleRequest, Assembled, Placed, SqueezedReport };

export class Assembler implements SequenceAssembler {
  readonly engine: Engine;
  readonly tier: EngineTier;
  readonly dtype: KVDType;

  constructor(engine: Engine, tier: EngineTier, opts: { dtype?: KVDType } = {}) {
    this.engine = engine;
    this.tier = tier;
    this.dtype = opts.dtype ?? 'f16';
  }

  /** Builds the sequence and prefills the question. The caller frees result.kv. */
  async assemble(req: AssembleRequest): Promise<Assembled> {
    if (req.question.length === 0) throw new Error('assemble: empty question');
    const e = this.engine;
    const context = contextBlocks(req).reduce((s, bl) => s + bl.tokens.length, 0);
    const { placed, ready, placing } = await this.build(
      { ...req, capacity: context + req.question.length + (req.reserve ?? 0) },
      null,
      true,
    );
    try {
      const tq = performance.now();
      const logits = await e.forward(
        [{ kv: placed.kv, tokens: req.question, attention: placed.attention }],
        'last',
        ready,
      );
      await placing; // every layer was placed
      await e.backend.sync();
      const rep = placed.report;
      rep.tokens += req.question.length;
      rep.questionTokens = req.question.length;
      rep.timingsMs.question = performance.now() - tq;
      rep.timingsMs.total += rep.timingsMs.question;
      return { ...placed, logits };
    } catch (err) {
      // placements still running write into the cache: let them finish (or fail) before it is freed
      await placing?.catch(() => {});
      placed.free();
      throw err;
    }
  }

  /** Starts reading the artifacts a later place() of this context takes (the engine tier's handles). */
  prefetch(req: ContextRequest): Prefetch {
    const p = new ArtifactPrefetch();
    for (const bl of reusedBlocks(req)) p.add(this.key(bl.tokens), this.tier.acquire(this.key(bl.tokens)));
    return p;
  }

  /**
   * Builds a sequence's cache of `capacity` positions holding the context by reuse mode, its question not
   * yet prefilled. Artifacts come from `prefetched` where it holds them (then it is spent), else from the
   * tier now. The caller frees result.kv.
   */
  async place(req: PlaceRequest, prefetched?: Prefetch | null): Promise<Placed> {
    return (await this.build(req, prefetched ?? null, false)).placed;
  }

  /**
   * place(), and with `layerwise` (dense `independent` only) it returns before the blocks are placed:
   * `ready(l)` resolves once layer l of every block is in the cache (the question's forward waits on it),
   * `placing` once all are (or rejects with the failure; the cache must not be freed before it settles).
   */
  private async build(
    req: PlaceRequest,
    prefetched: Prefetch | null,
    layerwise: boolean,
  ): Promise<{ placed: Placed; ready?: (layer: number) => Promise<void>; placing: Promise<void> | null }> {
    const e = this.engine;
    const b = e.backend;
    const blocks = contextBlocks(req);
    const context = blocks.reduce((s, bl) => s + bl.tokens.length, 0);
    const ahead = prefetched instanceof ArtifactPrefetch ? prefetched : null;
    let kv: SequenceKV;
    try {
      // the runner's cache dtype for squeezed requests too: the fused native step reads f32, f16 or int8 rows
      kv = e.newSequence(req.capacity);
    } catch (err) {
      prefetched?.release();
      throw err;
    }
    const report: AssembleReport = {
      mode: req.mode,
      tokens: context,
      cachedTokens: 0,
      recomputedTokens: 0,
      precomputedTokens: 0,
      questionTokens: 0,
      bytesLoaded: {},
      artifactsByTier: {},
      timingsMs: { load: 0, rotate: 0, recompute: 0, squeeze: 0, question: 0, wait: 0, total: 0 },
      squeezed: null,
    };
    let fixed: FixedContext | null = null;
    let pendingPlacements: Promise<unknown> | null = null;
    let ready: ((layer: number) => Promise<void>) | undefined;
    const t0 = performance.now();
    const lap = async (phase: keyof AssembleReport['timingsMs'], from: number) => {
      await b.sync();
      const now = performance.now();
      report.timingsMs[phase] += now - from;
      return now;
    };
    try {
      const hasSystem = req.system.length > 0;
      const reused = reusedBlocks(req).length;
      const indexes: (SqueezedIndex | null)[] = blocks.map(() => null);
      // every artifact is asked for at once (or taken from the prefetch): reads from slower tiers (disk,
      // object store) overlap each other, the placing of the layers that are already there and
      // (layer-wise) the question's layers
      kv.length = Math.max(kv.length, ...blocks.slice(0, reused).map((bl) => bl.offset + bl.tokens.length));
      const placing = blocks.slice(0, reused).map((bl) => {
        const key = this.key(bl.tokens);
        const acquired = ahead?.take(key) ?? this.tier.acquire(key);
        return new BlockPlacement(this, kv, bl, acquired, report, t0, !!req.squeezed);
      });
      prefetched?.release(); // what it held beyond these
      pendingPlacements = Promise.allSettled(placing.map((p) => p.done));
      if (layerwise && req.mode === 'independent' && !req.squeezed && reused > 0)
        ready = async (layer: number) => {
          const t = performance.now();
          await Promise.all(placing.map((p) => p.placed(layer)));
          report.timingsMs.wait += performance.now() - t;
        };
      else {
        for (const [i, p] of placing.entries()) indexes[i] = await p.done;
        pendingPlacements = null;
      }
      if (reused < blocks.length) {
        const t = performance.now();
        const live = blocks.slice(reused).flatMap((bl) => [...bl.tokens]);
        await e.forward([{ kv, tokens: live }]);
        report.recomputedTokens += live.length;
        await lap('recompute', t);
      }
      report.cachedTokens = blocks.slice(0, reused).reduce((s, bl) => s + bl.tokens.length, 0);
      const chunkBlocks = blocks.slice(hasSystem ? 1 : 0);
      if (req.mode === 'blend' || req.mode === 'link') {
        const t = performance.now();
        const sel =
          req.mode === 'blend'
            ? await blendChunks(e.model, kv, chunkBlocks, {
                ratio: req.blendRatio ?? 0.15,
                checkLayer: req.checkLayer ?? 1,
              })
            : await linkChunks(e.model, kv, chunkBlocks, { linkTokens: req.linkTokens ?? 16 });
        report.recomputedTokens += sel.recomputedTokens;
        // tokens recomputed in the last layer no longer hold any cached K/V there
        report.cachedTokens -= sel.perLayerRows[sel.perLayerRows.length - 1] ?? 0;
        await lap('recompute', t);
      }
      if (req.squeezed) {
        const t = performance.now();
        ({ report: report.squeezed, fixed } = await this.squeeze(kv, blocks, indexes, req.squeezed, report));
        await lap('squeeze', t);
      }
      const attention: SeqAttention | null = fixed ? { kind: 'ranges', source: fixed } : null;
      report.timingsMs.total = performance.now() - t0;
      const owned = fixed;
      const placed: Placed = {
        kv,
        fixed,
        attention,
        report,
        free: () => {
          kv.free();
          owned?.dispose();
        },
      };
      const all = pendingPlacements && Promise.all(placing.map((p) => p.done)).then(() => {});
      all?.catch(() => {}); // a failure surfaces where the caller awaits it
      return { placed, ready, placing: all };
    } catch (err) {
      // placements still running write into kv: let them finish (or fail) before it is freed
      await pendingPlacements;
      kv.free();
      fixed?.dispose();
      throw err;
    }
  }

  private key(tokens: readonly number[]): string {
    return chunkKey(this.engine, tokens, this.dtype);
  }

  /**
   * Puts the fixed context cluster-major in the cache (each indexed block per its index) and builds the
   * FixedContext that the question and every later step of the sequence attend through.
   */
  private async squeeze(
    kv: SequenceKV,
    blocks: readonly ChunkPlacement[],
    indexes: readonly (SqueezedIndex | null)[],
    mode: SelectMode,
    report: AssembleReport,
  ): Promise<{ report: SqueezedReport; fixed: FixedContext | null }> {
    const b = this.engine.backend;
    const cfg = this.engine.config;
    const rep: SqueezedReport = {
      used: false,
      indexedBlocks: indexes.filter(Boolean).length,
      builtIndexes: report.squeezed?.builtIndexes ?? 0,
      unindexedTokens: blocks.reduce((s, bl, i) => s + (indexes[i] ? 0 : bl.tokens.length), 0),
    };
    if (!b.caps.attentionRanges || !b.caps.readNow)
      return { report: { ...rep, reason: `backend ${b.name} lacks attentionRanges` }, fixed: null };
    if (blocks.length === 0) return { report: { ...rep, reason: 'no fixed context' }, fixed: null };
    // cache order does not matter to attention over the fixed context (RoPE is applied): regroup by cluster
    for (const [i, bl] of blocks.entries()) {
      const ix = indexes[i];
      if (!ix) continue;
      for (let l = 0; l < cfg.layers; l++) {
        const host = await kv.read(l, bl.offset, ix.n);
        kv.load(l, bl.offset, { k: toClusterMajor(ix, l, host.k), v: toClusterMajor(ix, l, host.v) });
      }
    }
    // the fixed context's keys, cache order, per layer [kv_head][n][d]: per-key scoring's int8 copy
    const n = blocks.reduce((t, bl) => t + bl.tokens.length, 0);
    const keys: Float32Array[] = [];
    if (mode.scoring !== 'clusters')
      for (let l = 0; l < cfg.layers; l++) keys.push((await kv.read(l, 0, n)).k);
    const placed: PlacedBlock[] = blocks.map((bl, i) => ({
      offset: bl.offset,
      n: bl.tokens.length,
      index: indexes[i],
    }));
    const fixed = new FixedContext(
      b,
      {
        layers: cfg.layers,
        heads: cfg.heads,
        kvHeads: cfg.kvHeads,
        headDim: cfg.headDim,
        scale: 1 / Math.sqrt(cfg.headDim),
      },
      placed,
      mode,
      this.engine.model.invFreq,
      undefined,
      mode.scoring !== 'clusters' ? keys : null,
    );
    return { report: { ...rep, used: true }, fixed };
  }
}

/**
 * One block taken from its artifact: acquired from the engine tier (computed and stored first when no tier
 * has a good copy), each layer decoded into the sequence's cache at block.offset (keys re-rotated by
 * Δ = offset) as soon as it is on the device. A layer-wise read refused midway is recomputed, and the
 * layers not yet placed come from the new artifact (the same values: the chunk's prefill is deterministic).
 */
class BlockPlacement {
  /** Resolves to the block's index (when asked for) once every layer is placed. */
  readonly done: Promise<SqueezedIndex | null>;
  private readonly gates: { promise: Promise<void>; resolve(): void }[];
  private failure: unknown = null;

  constructor(
    asm: Assembler,
    kv: SequenceKV,
    block: ChunkPlacement,
    acquired: Promise<AcquiredKV | null>,
    report: AssembleReport,
    t0: number,
    wantIndex: boolean,
  ) {
    this.gates = Array.from({ length: asm.engine.config.layers }, () => {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => {
        resolve = r;
      });
      return { promise, resolve };
    });
    this.done = this.run(asm, kv, block, acquired, report, t0, wantIndex);
    this.done.then(
      () => {},
      (err: unknown) => {
        this.failure = err;
        for (const g of this.gates) g.resolve(); // waiters look at `failure`
      },
    );
  }

  /** Resolves once layer `layer` is in the cache; rejects when the placement failed. */
  async placed(layer: number): Promise<void> {
    await this.gates[layer].promise;
    if (this.failure) throw this.failure;
  }

  private async run(
    asm: Assembler,
    kv: SequenceKV,
    block: ChunkPlacement,
    acquired: Promise<AcquiredKV | null>,
    report: AssembleReport,
    t0: number,
    wantIndex: boolean,
  ): Promise<SqueezedIndex | null> {
    const e = asm.engine;
    const b = e.backend;
    const key = chunkKey(e, block.tokens, asm.dtype);
    const layers = e.config.layers;
    let got: AcquiredKV | null = await acquired;
    let layer = 0;
    try {
      for (let attempt = 0; ; attempt++) {
        if (!got) {
          // missing or refused in every tier: compute it now (and store it), then use it
          await precomputeChunks(e, asm.tier.store, [{ tokenIds: block.tokens }], {
            dtype: asm.dtype,
            force: true,
          });
          report.precomputedTokens += block.tokens.length;
          got = await asm.tier.acquire(key);
          if (!got) throw new Error(`artifact ${key} missing right after it was computed`);
        }
        report.bytesLoaded[got.tier] = (report.bytesLoaded[got.tier] ?? 0) + got.bytes;
        report.artifactsByTier[got.tier] = (report.artifactsByTier[got.tier] ?? 0) + 1;
        // load: until the last layer's bytes are on the device and verified (not placed)
        got.entry.ready(layers - 1).then(
          () => {
            report.timingsMs.load = Math.max(report.timingsMs.load, performance.now() - t0);
          },
          () => {},
        );
        try {
          for (; layer < layers; layer++) {
            await got.entry.ready(layer);
            const t = performance.now();
            unpackLayer(b, e.model.invFreq, got.entry.packed, kv.cache, block.offset, layer);
            report.timingsMs.rotate += performance.now() - t;
            this.gates[layer].resolve();
          }
          break;
        } catch (err) {
          // a layer-wise read refused (or lost) midway: the tier dropped it; recompute once
          if (attempt > 0 || !(err instanceof ArtifactError)) throw err;
          got.release();
          got = null;
        }
      }
      if (!wantIndex) return null;
      const entry = got.entry;
      const stored = await asm.tier.indexOf(entry);
      if (stored?.kind === 'complete') return stored.index;
      // a v3 index stores the clusters alone: their statistics come from the resident K/V, once. An
      // artifact stored without a (usable) index: build it once from the resident keys. Either is kept.
      const t = performance.now();
      const host = await readPacked(b, e.model.invFreq, entry.packed);
      if (stored) entry.index = completeIndex(stored.index, host);
      else {
        entry.index = buildIndex(host, {
          n: block.tokens.length,
          kvHeads: e.config.kvHeads,
          headDim: e.config.headDim,
        });
        report.squeezed = {
          used: false,
          indexedBlocks: 0,
          unindexedTokens: 0,
          builtIndexes: (report.squeezed?.builtIndexes ?? 0) + 1,
        };
      }
      report.timingsMs.squeeze += performance.now() - t;
      return entry.index;
    } finally {
      got?.release();
    }
  }
}

/** The context's non-empty blocks at their cache offsets: [system][chunk 1]…[chunk k]. */
function contextBlocks(req: ContextRequest): ChunkPlacement[] {
  const blocks: ChunkPlacement[] = [];
  let at = 0;
  for (const tokens of [req.system, ...req.chunks]) {
    if (tokens.length === 0) continue;
    blocks.push({ offset: at, tokens });
    at += tokens.length;
  }
  return blocks;
}

/** The leading blocks taken from artifacts: none (full), the system prefix (prefix), all (the others). */
function reusedBlocks(req: ContextRequest): ChunkPlacement[] {
  const blocks = contextBlocks(req);
  if (req.mode === 'full') return [];
  if (req.mode === 'prefix') return req.system.length > 0 ? blocks.slice(0, 1) : [];
  return blocks;
}
