// The identities of DESIGN.md §4.1 for the reuse modes, as one suite run on each backend with its own
// tolerance: independent (one chunk at slot 0) = full; prefix = full; a chunk computed at p and re-rotated
// to p' = computed at p'; blend with ratio 1 = full; link with k ≥ chunk length = full; independent with
// several chunks ≠ full but = a block-diagonal reference built from chunks computed alone at their offsets.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Backend } from '../../gpu-runner/engine/backends/types.ts';
import { type Engine, loadEngine } from '../../gpu-runner/engine/engine.ts';
import { ArtifactStore } from '../../gpu-runner/engine/kv/artifact-store.ts';
import { EngineTier } from '../../gpu-runner/engine/kv/engine-tier.ts';
import { copyRotated } from '../../gpu-runner/engine/kv/rerotate.ts';
import { HostTier } from '../../gpu-runner/engine/kv/tiers.ts';
import { type AssembleRequest, Assembler } from '../../gpu-runner/engine/reuse/assemble.ts';
import { ropeInvFreq } from '../../gpu-runner/engine/rope.ts';
import { maxAbsDiff, tinyModels } from './tiny-model.ts';

export const seqTokens = (n: number, seed: number) =>
  Array.from({ length: n }, (_, i) => (i * 37 + seed * 11 + ((i * i) % 7)) % 256);

export interface ReuseWorld {
  engine: Engine;
  store: ArtifactStore;
  tier: EngineTier;
  asm: Assembler;
}

/** A tiny 4-layer GQA Llama (so blend's selection after check layer 1 matters), f32 artifacts. */
export async function reuseWorld(dir: string, backend: Backend | 'reference'): Promise<ReuseWorld> {
  const engine = await loadEngine(dir, { backend });
  const store = new ArtifactStore({
    fingerprint: engine.fingerprint,
    tokenizerHash: engine.tokenizer.hash,
    host: new HostTier(64 << 20),
  });
  const tier = new EngineTier(engine.backend, engine.config, store, 64 << 20);
  return { engine, store, tier, asm: new Assembler(engine, tier, { dtype: 'f32' }) };
}

/** Last-token logits of the whole prompt prefilled live, in one step. */
export async function liveLogits(engine: Engine, prompt: number[]): Promise<Float32Array> {
  const kv = engine.newSequence(prompt.length);
  try {
    return await engine.forward([{ kv, tokens: prompt }]);
  } finally {
    kv.free();
  }
}

export function reuseIdentitySuite(
  name: string,
  backend: () => Promise<Backend | 'reference'>,
  tol: number,
): void {
  describe(`reuse identities (${name}, ≤ ${tol})`, () => {
    const models = tinyModels();
    let w: ReuseWorld;
    beforeAll(async () => {
      const dir = models.make('reuse', { layers: 4, seed: 7, hidden: 64, heads: 4, kvHeads: 2, headDim: 16 });
      w = await reuseWorld(dir, await backend());
    });
    afterAll(() => {
      w?.tier.clear();
      w?.engine.dispose();
      models.cleanup();
    });
    const system = seqTokens(9, 1);
    const chunks = [seqTokens(13, 2), seqTokens(11, 3), seqTokens(17, 4)];
    const question = seqTokens(5, 5);
    const prompt = [...system, ...chunks.flat(), ...question];

    async function run(req: Partial<AssembleRequest> & Pick<AssembleRequest, 'mode'>) {
      const r = await w.asm.assemble({ system, chunks, question, ...req });
      r.kv.free();
      return r;
    }

    it('full equals a plain live prefill', async () => {
      const r = await run({ mode: 'full' });
      expect(maxAbsDiff(r.logits, await liveLogits(w.engine, prompt))).toBeLessThanOrEqual(tol);
      expect(r.report.cachedTokens).toBe(0);
    });

    it('independent with one chunk at offset 0 equals full', async () => {
      const req = { system: [], chunks: [chunks[0]], question };
      const ind = await w.asm.assemble({ ...req, mode: 'independent' });
      const full = await w.asm.assemble({ ...req, mode: 'full' });
      expect(ind.report.cachedTokens).toBe(13);
      expect(maxAbsDiff(ind.logits, full.logits)).toBeLessThanOrEqual(tol);
      for (const l of [0, w.engine.config.layers - 1]) {
        const a = await ind.kv.read(l, 0, 18);
        const b = await full.kv.read(l, 0, 18);
        expect(maxAbsDiff(a.k, b.k)).toBeLessThanOrEqual(tol);
        expect(maxAbsDiff(a.v, b.v)).toBeLessThanOrEqual(tol);
      }
      ind.kv.free();
      full.kv.free();
    });

    it('prefix equals full (the system prefix from its artifact)', async () => {
      const p = await run({ mode: 'prefix' });
      expect(p.report.cachedTokens).toBe(system.length);
      expect(p.report.recomputedTokens).toBe(41);
      expect(maxAbsDiff(p.logits, (await run({ mode: 'full' })).logits)).toBeLessThanOrEqual(tol);
    });

    it("a chunk computed at p and re-rotated to p' equals it computed alone at p'", async () => {
      const e = w.engine;
      const b = e.backend;
      const chunk = chunks[2];
      const n = chunk.length;
      const [p, p2] = [23, 301];
      const atP = e.newSequence(n);
      const atP2 = e.newSequence(n);
      const moved = e.newSequence(n);
      await e.forward([{ kv: atP, tokens: chunk, ropeOffset: p }]);
      await e.forward([{ kv: atP2, tokens: chunk, ropeOffset: p2 }]);
      const invFreq = b.upload({ dtype: 'f32', shape: [8], data: ropeInvFreq(e.config.rope, 16) });
      copyRotated(b, invFreq, {
        src: atP.cache,
        srcStart: 0,
        count: n,
        dst: moved.cache,
        dstPos: 0,
        delta: p2 - p,
      });
      moved.length = n;
      b.free(invFreq);
      let worst = 0;
      for (let l = 0; l < e.config.layers; l++) {
        const a = await moved.read(l, 0, n);
        const c = await atP2.read(l, 0, n);
        worst = Math.max(worst, maxAbsDiff(a.k, c.k), maxAbsDiff(a.v, c.v));
      }
      // and it is a real move: the keys at p differ from those at p'
      const k0 = (await atP.read(1, 0, n)).k;
      expect(maxAbsDiff(k0, (await atP2.read(1, 0, n)).k)).toBeGreaterThan(0.01);
      expect(worst).toBeLessThanOrEqual(tol);
      for (const s of [atP, atP2, moved]) s.free();
    });

    it('blend with ratio 1 equals full; ratio 0.15 recomputes 15% after the check layer', async () => {
      const full = await run({ mode: 'full' });
      const b1 = await run({ mode: 'blend', blendRatio: 1 });
      expect(maxAbsDiff(b1.logits, full.logits)).toBeLessThanOrEqual(tol);
      const b15 = await run({ mode: 'blend', blendRatio: 0.15 });
      const n = 41;
      const kept = Math.ceil(0.15 * n);
      // layers 0 and 1 run for all 41 chunk tokens, layers 2 and 3 for the top 7
      expect(b15.report.recomputedTokens).toBeCloseTo((2 * n + 2 * kept) / 4, 9);
      expect(b15.report.cachedTokens).toBe(system.length + n - kept);
      expect(maxAbsDiff(b15.logits, full.logits)).toBeGreaterThan(tol);
    });

    it('link with k ≥ chunk length equals full; k = 4 recomputes 4 tokens per chunk', async () => {
      const full = await run({ mode: 'full' });
      const l = await run({ mode: 'link', linkTokens: 64 });
      expect(maxAbsDiff(l.logits, full.logits)).toBeLessThanOrEqual(tol);
      const l4 = await run({ mode: 'link', linkTokens: 4 });
      // with a system prefix every retrieved chunk starts after slot 0, so each gets its first 4 recomputed
      expect(l4.report.recomputedTokens).toBe(12);
      // without one, the first chunk sits at slot 0 and is exact as cached
      const noSys = await w.asm.assemble({ system: [], chunks, question, mode: 'link', linkTokens: 4 });
      noSys.kv.free();
      expect(noSys.report.recomputedTokens).toBe(8);
    });

    it('independent with several chunks differs from full but equals a block-diagonal reference', async () => {
      const e = w.engine;
      const ind = await run({ mode: 'independent' });
      const full = await run({ mode: 'full' });
      expect(ind.report.cachedTokens).toBe(system.length + 41);
      expect(ind.report.recomputedTokens).toBe(0);
      expect(maxAbsDiff(ind.logits, full.logits)).toBeGreaterThan(1e-3);
      // reference: each block prefilled alone at its own RoPE offset, K/V stacked, question on top
      const ref = e.newSequence(prompt.length);
      let at = 0;
      for (const block of [system, ...chunks]) {
        const alone = e.newSequence(block.length);
        await e.forward([{ kv: alone, tokens: block, ropeOffset: at }]);
        for (let l = 0; l < e.config.layers; l++) ref.load(l, at, await alone.read(l, 0, block.length));
        alone.free();
        at += block.length;
      }
      const refLogits = await e.forward([{ kv: ref, tokens: question }]);
      ref.free();
      expect(maxAbsDiff(ind.logits, refLogits)).toBeLessThanOrEqual(tol);
    });
  });
}
