// Prompt assembly for one request: [system prefix][chunk 1]…[chunk k][question] in one sequence's KV
// cache, by reuse mode (DESIGN.md §4.1):
//   full        prefill everything live (the baseline)
//   prefix      the system prefix from its artifact (exact), the rest prefilled live
//   independent every block from its artifact, keys re-rotated by Δ = slot offset (TurboRAG); only the
//               question is prefilled; chunks never attend to each other
//   blend       independent, then CacheBlend's selective recompute of chunk tokens
//   link        independent, then EPIC's recompute of the first k tokens of each chunk not at slot 0
// RoPE position = cache slot throughout, so artifacts (computed at 0..n-1) move by Δ = their offset.
// place() builds the context alone (the scheduler prefills the question in its batched steps, and starts
// reading a waiting request's artifacts early through prefetch()); assemble() is place + the question.
import { FixedContext, type PlacedBlock } from '../attention/squeezed/fixed-context.ts';
import { buildIndex } from '../attention/squeezed/index.ts';
import { toClusterMajor } from '../attention/squeezed/layout.ts';
import type { SelectMode } from '../attention/squeezed/select.ts';
import type { SqueezedIndex } from '../attention/squeezed/types.ts';
import type { SeqAttention } from '../attention/step-attention.ts';
import type { Engine } from '../engine.ts';
import type { KVDType } from '../kv/artifact-format.ts';
import type { AcquiredKV, EngineTier } from '../kv/engine-tier.ts';
import { chunkKey, precomputeChunks } from '../kv/precompute.ts';
import { readPacked, unpackRotated } from '../kv/rerotate.ts';
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
    const placed = await this.place({ ...req, capacity: context + req.question.length + (req.reserve ?? 0) });
    try {
      const tq = performance.now();
      const logits = await e.forward(
        [{ kv: placed.kv, tokens: req.question, attention: placed.attention }],
        'last',
      );
      await e.backend.sync();
      const rep = placed.report;
      rep.tokens += req.question.length;
      rep.questionTokens = req.question.length;
      rep.timingsMs.question = performance.now() - tq;
      rep.timingsMs.total += rep.timingsMs.question;
      return { ...placed, logits };
    } catch (err) {
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
    const e = this.engine;
    const b = e.backend;
    const blocks = contextBlocks(req);
    const context = blocks.reduce((s, bl) => s + bl.tokens.length, 0);
    const ahead = prefetched instanceof ArtifactPrefetch ? prefetched : null;
    let kv: SequenceKV;
    try {
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
      timingsMs: { load: 0, rotate: 0, recompute: 0, squeeze: 0, question: 0, total: 0 },
      squeezed: null,
    };
    let fixed: FixedContext | null = null;
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
      // every artifact is asked for at once (unless prefetched already): reads from slower tiers (disk,
      // object store) overlap each other and the decoding of the blocks placed before them
      const pending = blocks
        .slice(0, reused)
        .map((bl) => ahead?.take(this.key(bl.tokens)) ?? this.tier.acquire(this.key(bl.tokens)));
      prefetched?.release(); // what it held beyond these
      for (const p of pending) p.catch(() => {}); // a failed read surfaces where it is awaited
      try {
        for (const [i, block] of blocks.slice(0, reused).entries())
          indexes[i] = await this.placeBlock(kv, block, pending[i], report, !!req.squeezed);
      } finally {
        // handles are released once each: this frees the ones of blocks a failure left unplaced
        for (const p of pending)
          p.then(
            (g) => g?.release(),
            () => {},
          );
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
      return {
        kv,
        fixed,
        attention,
        report,
        free: () => {
          kv.free();
          owned?.dispose();
        },
      };
    } catch (err) {
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
    );
    return { report: { ...rep, used: true }, fixed };
  }

  /**
   * Decodes a block's artifact (`acquired`: the engine tier's handle on it, or null when no tier has it)
   * into kv at block.offset, keys re-rotated by Δ = offset; returns its index when asked.
   */
  private async placeBlock(
    kv: SequenceKV,
    block: ChunkPlacement,
    acquired: Promise<AcquiredKV | null>,
    report: AssembleReport,
    wantIndex: boolean,
  ): Promise<SqueezedIndex | null> {
    const b = this.engine.backend;
    const key = this.key(block.tokens);
    let t = performance.now();
    let got: AcquiredKV | null = await acquired;
    if (!got) {
      // missing or refused in every tier: compute it now (and store it), then use it
      await precomputeChunks(this.engine, this.tier.store, [{ tokenIds: block.tokens }], {
        dtype: this.dtype,
        force: true,
      });
      report.precomputedTokens += block.tokens.length;
      got = await this.tier.acquire(key);
      if (!got) throw new Error(`artifact ${key} missing right after it was computed`);
    }
    report.bytesLoaded[got.tier] = (report.bytesLoaded[got.tier] ?? 0) + got.bytes;
    report.artifactsByTier[got.tier] = (report.artifactsByTier[got.tier] ?? 0) + 1;
    await b.sync();
    report.timingsMs.load += performance.now() - t;
    t = performance.now();
    try {
      const n = block.tokens.length;
      kv.ensureRoom(0);
      unpackRotated(b, this.engine.model.invFreq, got.entry.packed, kv.cache, block.offset);
      kv.length = Math.max(kv.length, block.offset + n);
      await b.sync();
      report.timingsMs.rotate += performance.now() - t;
      if (!wantIndex) return null;
      if (!got.entry.index) {
        // an artifact stored without a (usable) index: build it once from the resident keys, keep it
        t = performance.now();
        const layers = await readPacked(b, this.engine.model.invFreq, got.entry.packed);
        got.entry.index = buildIndex(layers, {
          n,
          kvHeads: this.engine.config.kvHeads,
          headDim: this.engine.config.headDim,
        });
        report.squeezed = {
          used: false,
          indexedBlocks: 0,
          unindexedTokens: 0,
          builtIndexes: (report.squeezed?.builtIndexes ?? 0) + 1,
        };
        report.timingsMs.squeeze += performance.now() - t;
      }
      return got.entry.index;
    } finally {
      got.release();
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
