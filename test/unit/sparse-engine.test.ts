// Sparse prefill inside the engine and the runner (DESIGN.md §4.3), reference backend, a generated tiny
// Llama: a plan that keeps every key (A-shape whose window covers the prompt) gives the dense logits;
// a narrow A-shape from the config's `auto` runs sparse (density < 1) and still gives finite logits; below
// the config's break-even `auto` stays dense. Through the scheduler: a `full` request's usage reports the
// pattern and density; without sparse there are no stats; the request schema takes the agreed shape.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultSparseConfig, type SparseConfig } from '../../gpu-runner/engine/attention/sparse/config.ts';
import { SparsePrefill } from '../../gpu-runner/engine/attention/sparse/prefill.ts';
import { type Engine, loadEngine } from '../../gpu-runner/engine/engine.ts';
import { Scheduler } from '../../gpu-runner/engine/generate/scheduler.ts';
import { generateBodySchema } from '../../contracts/runner-api.ts';
import type { SeqRequest } from '../../gpu-runner/engine/generate/request.ts';
import { maxAbsDiff, tinyModels } from '../helpers/tiny-model.ts';

const models = tinyModels();
let engine: Engine;
beforeAll(async () => {
  engine = await loadEngine(models.make('llama', { arch: 'llama', seed: 7 }));
});
afterAll(() => {
  engine.dispose();
  models.cleanup();
});

const N = 300;
const prompt = () =>
  Array.from({ length: N }, (_, i) => (i * 37 + 11) % Math.min(200, engine.config.vocabSize));

async function prefill(sparse: SparsePrefill | null): Promise<Float32Array> {
  const kv = engine.newSequence(N);
  try {
    const attention = sparse ? { kind: 'sparse' as const, policy: sparse } : null;
    return await engine.forward([{ kv, tokens: prompt(), attention }]);
  } finally {
    kv.free();
  }
}

function narrowConfig(breakEven: number): SparseConfig {
  const c = defaultSparseConfig(engine.config.layers, engine.config.kvHeads);
  const narrow = { pattern: 'a-shape' as const, sink: 16, local: 32 };
  return { ...c, breakEven, layers: c.layers.map((l) => l.map(() => narrow)) };
}

describe('sparse prefill in the engine', () => {
  it('a plan covering every key gives the dense logits; a narrow one runs sparse', async () => {
    const dense = await prefill(null);
    const cfg = defaultSparseConfig(engine.config.layers, engine.config.kvHeads);
    const wide = new SparsePrefill({ mode: 'pattern', pattern: 'a-shape' }, cfg); // window 1024 ≥ N
    expect(maxAbsDiff(await prefill(wide), dense)).toBeLessThan(1e-4);
    expect(wide.stats()).toMatchObject({ pattern: 'a-shape', dense: false });
    expect(wide.stats().density).toBeCloseTo(1, 9);

    const narrow = new SparsePrefill({ mode: 'auto' }, narrowConfig(128));
    const out = await prefill(narrow);
    expect(out.every(Number.isFinite)).toBe(true);
    expect(maxAbsDiff(out, dense)).toBeGreaterThan(0);
    const st = narrow.stats();
    expect(st.dense).toBe(false);
    expect(st.density).toBeGreaterThan(0.2);
    expect(st.density).toBeLessThan(0.5);

    const below = new SparsePrefill({ mode: 'auto' }, narrowConfig(N + 1));
    expect(maxAbsDiff(await prefill(below), dense)).toBe(0);
    expect(below.stats()).toEqual({ pattern: 'dense', density: 1, dense: true });
    const off = new SparsePrefill({ mode: 'off' }, narrowConfig(1));
    expect(maxAbsDiff(await prefill(off), dense)).toBe(0);
  });
});

describe('sparse prefill through the scheduler', () => {
  const req = (sparse: SeqRequest['sparse']): SeqRequest => ({
    system: [],
    chunks: [],
    question: prompt(),
    mode: 'full',
    maxTokens: 4,
    stopTokenIds: [],
    sparse,
  });

  it('reports the pattern and density in usage, and none without sparse', async () => {
    const s = new Scheduler(engine, { maxRunning: 2 });
    const dense = await s.submit(req(undefined));
    const sparse = await s.submit(req({ mode: 'pattern', pattern: 'a-shape' }));
    expect(dense.sparse).toBeUndefined();
    expect(sparse.sparse).toMatchObject({ pattern: 'a-shape', dense: false });
    expect(sparse.tokens).toEqual(dense.tokens); // the window covers the whole prompt
    expect(sparse.prefillTokens).toBe(dense.prefillTokens);
    const short = await s.submit({ ...req({ mode: 'auto' }), question: prompt().slice(0, 40) });
    expect(short.sparse).toMatchObject({ pattern: 'dense', dense: true });
    expect(s.stats().kvBytesInUse).toBe(0);
  });

  it('the request schema takes off / auto / pattern and the old placeholder', () => {
    const body = (sparse: unknown) => generateBodySchema.safeParse({ question: 'q', sparse });
    const ok = (sparse: unknown) => {
      const r = body(sparse);
      return r.success ? r.data.sparse : 'refused';
    };
    expect(ok({ mode: 'auto' })).toEqual({ mode: 'auto' });
    expect(ok({ mode: 'pattern', pattern: 'vertical-slash' })).toEqual({
      mode: 'pattern',
      pattern: 'vertical-slash',
    });
    expect(ok({ enabled: false })).toEqual({ mode: 'off' });
    expect(ok({ mode: 'pattern', pattern: 'nope' })).toBe('refused');
    expect(ok({ mode: 'auto', extra: 1 })).toBe('refused');
  });
});
