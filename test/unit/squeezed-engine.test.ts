// Squeezed attention through the engine (DESIGN.md §4.2): precompute stores the index section and it
// round-trips through the artifact; an artifact without one still serves (index built at assembly);
// with every cluster selected, the assembled question's logits and every decode step's logits equal
// dense attention (reference ≤ 1e-5, wasm ≤ 1e-4); a small budget changes them and attends fewer keys;
// FixedContext on a planted context always keeps the planted keys and stays close to the dense oracle
// (also with the second level); the budget cut equals a sort-based reference.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseIndex } from '../../gpu-runner/engine/attention/squeezed/codec.ts';
import { FixedContext } from '../../gpu-runner/engine/attention/squeezed/fixed-context.ts';
import { buildIndex, completeIndex } from '../../gpu-runner/engine/attention/squeezed/index.ts';
import { toClusterMajor } from '../../gpu-runner/engine/attention/squeezed/layout.ts';
import { relativeError } from '../../gpu-runner/engine/attention/squeezed/metrics.ts';
import { chooseClusters, type SelectMode } from '../../gpu-runner/engine/attention/squeezed/select.ts';
import {
  fixedKeys,
  syntheticContext,
  syntheticQueries,
} from '../../gpu-runner/engine/attention/squeezed/synthetic.ts';
import {
  createNativeBackend,
  type NativeBackend,
  nativeBackendAvailable,
} from '../../gpu-runner/engine/backends/native/backend.ts';
import type { Backend } from '../../gpu-runner/engine/backends/types.ts';
import { createWasmBackend } from '../../gpu-runner/engine/backends/wasm/index.ts';
import { decodeLayers } from '../../gpu-runner/engine/kv/artifact-format.ts';
import { chunkKey, precomputeChunks } from '../../gpu-runner/engine/kv/precompute.ts';
import type { Assembled } from '../../gpu-runner/engine/reuse/assemble.ts';
import { type ReuseWorld, reuseWorld, seqTokens } from '../helpers/kv-reuse-suite.ts';
import { maxAbsDiff, tinyModels } from '../helpers/tiny-model.ts';

const CHUNKS = [seqTokens(150, 1), seqTokens(140, 2), seqTokens(130, 3)];
const SYSTEM = seqTokens(20, 9);
const QUESTION = seqTokens(10, 5);
const INDEX = { window: 16, pc: 0.1 };
const STEPS = 6;

/** Question logits, then STEPS greedy decode steps' logits, of one assembled sequence. */
async function run(
  w: ReuseWorld,
  squeezed: SelectMode | null,
): Promise<{ logits: Float32Array[]; out: Assembled }> {
  const out = await w.asm.assemble({
    system: SYSTEM,
    chunks: CHUNKS,
    question: QUESTION,
    mode: 'independent',
    reserve: STEPS,
    squeezed,
  });
  const logits = [out.logits];
  for (let s = 0; s < STEPS; s++) {
    const last = logits[logits.length - 1];
    const next = last.indexOf(Math.max(...last));
    logits.push(await w.engine.forward([{ kv: out.kv, tokens: [next], attention: out.attention }]));
  }
  return { logits, out };
}

/**
 * Inside a describe: a reuse world on `backend` (a 2-layer tiny model) with SYSTEM and CHUNKS precomputed
 * with their squeezed index before the suite's tests, disposed after them. → the world, once set up.
 */
function suiteWorld(backend: () => Promise<Backend | 'reference'>): () => ReuseWorld {
  const models = tinyModels();
  let w: ReuseWorld | null = null;
  beforeAll(async () => {
    const dir = models.make('sq', { layers: 2, seed: 5, hidden: 64, heads: 4, kvHeads: 2, headDim: 16 });
    w = await reuseWorld(dir, await backend());
    await precomputeChunks(
      w.engine,
      w.store,
      [SYSTEM, ...CHUNKS].map((tokenIds) => ({ tokenIds })),
      { dtype: 'f32', index: INDEX },
    );
  });
  afterAll(() => {
    w?.tier.clear();
    w?.engine.dispose();
    models.cleanup();
  });
  return () => {
    if (!w) throw new Error('suiteWorld: used before its beforeAll ran');
    return w;
  };
}

function engineSuite(name: string, backend: () => Promise<Backend | 'reference'>, tol: number) {
  describe(`squeezed attention through the engine (${name})`, () => {
    const world = suiteWorld(backend);
    let w: ReuseWorld;
    beforeAll(() => {
      w = world();
    });

    it('precompute stores the index section; it round-trips through the artifact', async () => {
      const got = await w.store.get(chunkKey(w.engine, CHUNKS[0], 'f32'));
      expect(got?.artifact.index).toBeTruthy();
      const { header, index } = got!.artifact;
      const layers = decodeLayers(got!.artifact);
      const stored = parseIndex(index!, header);
      if (stored.kind !== 'clusters') throw new Error(`a ${stored.kind} index, not v3's clusters`);
      const parsed = completeIndex(stored.index, layers);
      const rebuilt = buildIndex(
        layers,
        { n: header.n, kvHeads: header.kvHeads, headDim: header.headDim },
        INDEX,
      );
      expect(parsed).toEqual(rebuilt);
      expect(parsed.window).toBe(16);
      expect(parsed.heads[0].k).toBe(Math.ceil(0.1 * (150 - 16)));
    });

    it(`selecting every cluster equals dense for the question and every decode step (≤ ${tol})`, async () => {
      const dense = await run(w, null);
      const all = await run(w, { kind: 'budget', fraction: 1 });
      try {
        expect(all.out.fixed).not.toBeNull();
        expect(dense.out.fixed).toBeNull();
        for (let s = 0; s <= STEPS; s++)
          expect(maxAbsDiff(all.logits[s], dense.logits[s])).toBeLessThanOrEqual(tol);
        const st = all.out.fixed!.stats;
        expect(st.fraction).toBe(1);
        // the question's rows (each selects for itself) + STEPS decode steps, every layer and kv head,
        // the whole fixed context
        const n = SYSTEM.length + CHUNKS.reduce((a, c) => a + c.length, 0);
        expect(st.fixedKeys).toBe((QUESTION.length + STEPS) * 2 * 2 * n);
      } finally {
        dense.out.free();
        all.out.free();
      }
    });

    it('a small budget attends at most its share of keys and changes the logits', async () => {
      const dense = await run(w, null);
      const few = await run(w, { kind: 'budget', fraction: 1 / 4 });
      try {
        const st = few.out.fixed!.stats;
        // windows (but the last block's) and live tokens count inside the budget, never exceeded
        expect(st.fraction).toBeGreaterThan(1 / 8);
        expect(st.fraction).toBeLessThanOrEqual(1 / 4);
        expect(st.bytesTouched).toBeLessThan(st.fixedKeys * 2 * 16 * 4);
        expect(maxAbsDiff(few.logits[0], dense.logits[0])).toBeGreaterThan(tol);
        // (how close depends on attention structure, which a random tiny model lacks: see the planted test)
      } finally {
        dense.out.free();
        few.out.free();
      }
    });

    it('an artifact without an index still serves: the index is built at assembly, once', async () => {
      const chunk = seqTokens(120, 42);
      await precomputeChunks(w.engine, w.store, [{ tokenIds: chunk }], { dtype: 'f32', index: false });
      expect((await w.store.get(chunkKey(w.engine, chunk, 'f32')))?.artifact.index).toBeNull();
      const ask = () =>
        w.asm.assemble({
          system: [],
          chunks: [chunk],
          question: QUESTION,
          mode: 'independent',
          squeezed: { kind: 'budget', fraction: 1 },
        });
      const first = await ask();
      const again = await ask();
      try {
        expect(first.report.squeezed).toMatchObject({ used: true, builtIndexes: 1, indexedBlocks: 1 });
        expect(again.report.squeezed).toMatchObject({ used: true, builtIndexes: 0, indexedBlocks: 1 });
        expect(maxAbsDiff(first.logits, again.logits)).toBe(0);
      } finally {
        first.free();
        again.free();
      }
    });
  });
}

engineSuite('reference', async () => 'reference', 1e-5);
engineSuite('wasm', async () => createWasmBackend({ threads: 2 }), 1e-4);

// A runner's native backend keeps f16 caches (KVRAG_NATIVE_KV_DTYPE), for squeezed sequences too
// (reuse/assemble.ts): the fused native step reads their f16 K/V rows.
if (await nativeBackendAvailable())
  describe('squeezed attention through the engine (native, f16 caches)', () => {
    const world = suiteWorld(() => createNativeBackend({ threads: 2, kvDType: 'f16' }));
    let w: ReuseWorld;
    beforeAll(() => {
      w = world();
    });

    it('a squeezed sequence gets an f16 cache like a dense one and the fused step; logits agree', async () => {
      const b = w.engine.backend as NativeBackend;
      const dense = await run(w, null);
      const all = await run(w, { kind: 'budget', fraction: 1 });
      try {
        expect(b.cacheOf(dense.out.kv.cache).half).toBe(true);
        expect(b.cacheOf(all.out.kv.cache).half).toBe(true);
        const span = { cache: all.out.kv.cache, row: 0, count: 1, pos: all.out.kv.length };
        expect(all.out.fixed!.fuses(span)).toBe(true);
        // every cluster selected = dense over the same f16 K/V (kv-f16.test.ts's bound, summation order aside)
        for (let s = 0; s <= STEPS; s++)
          expect(maxAbsDiff(all.logits[s], dense.logits[s])).toBeLessThanOrEqual(1e-2);
      } finally {
        dense.out.free();
        all.out.free();
      }
    });
  });

// An int8 cache (KVRAG_NATIVE_KV_DTYPE, a runner's default): the fused step reads its int8 rows and scales; the
// unfused path (keysFor + attentionRanges over f32 copies) reads the same codes.
if (await nativeBackendAvailable())
  describe('squeezed attention through the engine (native, int8 caches)', () => {
    const world = suiteWorld(() => createNativeBackend({ threads: 2, kvDType: 'int8' }));
    let w: ReuseWorld;
    beforeAll(() => {
      w = world();
    });

    it('every cluster selected over int8 caches = dense over the same caches, fused and unfused', async () => {
      const b = w.engine.backend as NativeBackend;
      const dense = await run(w, null);
      const fused = await run(w, { kind: 'budget', fraction: 1 });
      const host = await run(w, { kind: 'budget', fraction: 1, fused: false });
      try {
        for (const [all, fuses] of [
          [fused, true],
          [host, false],
        ] as const) {
          expect(b.cacheOf(all.out.kv.cache).dtype).toBe('int8');
          const span = { cache: all.out.kv.cache, row: 0, count: 1, pos: all.out.kv.length };
          expect(all.out.fixed!.fuses(span)).toBe(fuses);
          for (let s = 0; s <= STEPS; s++)
            expect(maxAbsDiff(all.logits[s], dense.logits[s])).toBeLessThanOrEqual(1e-4);
        }
      } finally {
        for (const r of [dense, fused, host]) r.out.free();
      }
    });
  });

describe('FixedContext on a planted context (wasm)', () => {
  const N = 2048;
  const LIVE = 4;
  const H = 8;
  const KVH = 2;
  const D = 32;
  const scale = 1 / Math.sqrt(D);
  it('keeps planted keys at every budget and stays close to dense at 1/8', async () => {
    const b = await createWasmBackend({ threads: 2 });
    try {
      const ctx = syntheticContext({ cap: N + LIVE, kvHeads: KVH, headDim: D, topics: 40, seed: 4 });
      const q = syntheticQueries(ctx, { rows: 1, heads: H, kvHeads: KVH, headDim: D, topics: 40, seed: 8 });
      // plant, for kv head g, a key aligned with its group's first query at position 100 + 7g
      const planted = [100, 107];
      for (let g = 0; g < KVH; g++) {
        const qo = g * (H / KVH) * D;
        for (let e = 0; e < D; e++) ctx.k[(g * (N + LIVE) + planted[g]) * D + e] = q[qo + e] * 3;
      }
      const ix = buildIndex([{ k: fixedKeys(ctx, KVH, N, D) }], { n: N, kvHeads: KVH, headDim: D });
      const major = (x: Float32Array) => {
        const m = toClusterMajor(ix, 0, fixedKeys({ ...ctx, k: x }, KVH, N, D));
        const out = x.slice();
        for (let g = 0; g < KVH; g++) out.set(m.subarray(g * N * D, (g + 1) * N * D), g * (N + LIVE) * D);
        return out;
      };
      const spec = { layers: 1, kvHeads: KVH, headDim: D, capacity: N + LIVE };
      const plain = b.createKVCache(spec);
      const grouped = b.createKVCache(spec);
      b.kvLoad(plain, 0, 0, { k: ctx.k, v: ctx.v });
      b.kvLoad(grouped, 0, 0, { k: major(ctx.k), v: major(ctx.v) });
      // offset 0: the centroids are rotated by 0, whatever the frequencies
      const invFreq = b.upload({ dtype: 'f32', shape: [D / 2], data: new Float32Array(D / 2).fill(0.5) });
      const qt = b.upload({ dtype: 'f32', shape: [1, H * D], data: q });
      const denseT = b.attention(qt, 0, [{ cache: plain, row: 0, count: 1, pos: N + LIVE - 1 }], H, scale);
      const dense = await b.read(denseT);
      b.free(denseT);
      for (const [fraction, twoLevelFrom] of [
        [1 / 16, Number.POSITIVE_INFINITY],
        [1 / 8, Number.POSITIVE_INFINITY],
        [1 / 3, Number.POSITIVE_INFINITY],
        [1 / 8, 0], // second level: groups scored first
      ]) {
        // one block at offset 0: no rotation, so the stored centroids are used as they are
        const fc = new FixedContext(
          b,
          { layers: 1, heads: H, kvHeads: KVH, headDim: D, scale },
          [{ offset: 0, n: N, index: ix }],
          { kind: 'budget', fraction },
          invFreq,
          twoLevelFrom,
        );
        const span = { cache: grouped, row: 0, count: 1, pos: N + LIVE - 1 };
        const keys = fc.keysFor(q, span, 0).keys;
        for (let g = 0; g < KVH; g++) {
          const slot = ix.heads[g].order.indexOf(planted[g]);
          const r = keys[g];
          let inside = false;
          for (let t = 0; t < r.length; t += 2) inside ||= r[t] <= slot && slot < r[t + 1];
          expect(inside).toBe(true);
          expect(r[r.length - 1]).toBe(N + LIVE); // live tokens
        }
        const outT = b.attentionRanges(qt, 0, [span], [keys], H, scale);
        const err = relativeError(await b.read(outT), dense);
        b.free(outT);
        if (fraction === 1 / 8) expect(err, `two-level from ${twoLevelFrom}`).toBeLessThan(0.2);
        expect(fc.stats.fraction).toBeLessThanOrEqual(fraction); // live tokens and window inside it
        expect(fc.stats.fraction).toBeGreaterThan(fraction - 0.05);
        fc.dispose();
      }
      for (const t of [invFreq, qt]) b.free(t);
      b.freeKVCache(plain);
      b.freeKVCache(grouped);
    } finally {
      b.dispose();
    }
  });
});

describe('budget cut', () => {
  it('keeps exactly the best clusters by score until the target (ties included), like a sort', () => {
    let seed = 7;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    for (let trial = 0; trial < 20; trial++) {
      const k = 50 + trial * 37;
      const sizes = Array.from({ length: k }, () => 1 + Math.floor(rnd() * 40));
      const starts = Int32Array.from([
        0,
        ...sizes.map((_, i) => sizes.slice(0, i + 1).reduce((a, b) => a + b, 0)),
      ]);
      // a spread of magnitudes (and some ties) so both the bucket and the in-bucket order matter
      const score = Float32Array.from({ length: k }, () => (rnd() < 0.1 ? 0.5 : rnd() * 10 ** (-rnd() * 6)));
      const n = starts[k] + 64;
      const fraction = 0.05 + rnd() * 0.5;
      const got = chooseClusters({ k, starts }, score, n, 64, { kind: 'budget', fraction });
      const target = Math.ceil(fraction * n) - 64;
      const byScore = Array.from({ length: k }, (_, j) => j).sort((a, b) => score[b] - score[a]);
      let have = 0;
      const taken = new Set<number>();
      for (const j of byScore) {
        if (have + sizes[j] > target) break;
        have += sizes[j];
        taken.add(j);
      }
      const want = Array.from({ length: k }, (_, j) => j).filter((j) => taken.has(j));
      expect(got).toEqual(want);
      expect(got.reduce((x, j) => x + sizes[j], 0)).toBeLessThanOrEqual(target);
    }
  });
});
