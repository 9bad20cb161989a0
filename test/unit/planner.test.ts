import { describe, expect, it } from 'vitest';
import { estimateDifficulty } from '../../src/planning/difficulty.ts';
import { planSchema } from '../../src/planning/plan.ts';
import {
  finalizePlan,
  nextStepK,
  type PlannerContext,
  planQuery,
  type ServedModel,
} from '../../src/planning/planner.ts';

const small: ServedModel = {
  id: 'tiny',
  contextTokens: 8192,
  tier: 'small',
  prefillTokensPerSec: 4000,
  loadTokensPerSec: 400_000,
  sparseBreakEven: 16384,
};
const large: ServedModel = {
  ...small,
  id: 'big',
  contextTokens: 32768,
  tier: 'large',
  sparseBreakEven: 8192,
};
const ctx: PlannerContext = {
  models: [small, large],
  chunkTokens: 512,
  systemTokens: 40,
  countTokens: (t) => new TextEncoder().encode(t).length,
};
const question = 'What is the passkey of the blue vault?';
const chunks = (n: number, ready: boolean, tokens = 512) =>
  Array.from({ length: n }, () => ({ tokens, ready }));

describe('planner', () => {
  it('is deterministic and produces a valid plan', () => {
    const a = planQuery({ question, collections: ['c1', 'c2'] }, ctx);
    expect(planQuery({ question, collections: ['c1', 'c2'] }, ctx)).toEqual(a);
    expect(planSchema.parse(a)).toEqual(a);
    expect(a.retrieval.steps.map((s) => s.collection)).toEqual(['c1', 'c2']);
    const mixed = [...chunks(3, true), ...chunks(2, false)];
    expect(finalizePlan(a, { question }, ctx, mixed)).toEqual(finalizePlan(a, { question }, ctx, mixed));
  });

  it('never plans more prompt than the model context holds', () => {
    for (const model of ['tiny', 'big']) {
      for (const maxTokens of [16, 256, 2048]) {
        const p = planQuery({ question, collections: ['c'], model, maxTokens }, ctx);
        const m = ctx.models.find((x) => x.id === model)!;
        const prompt = ctx.systemTokens + ctx.countTokens(question) + p.budget.documentTokens + maxTokens;
        expect(prompt).toBeLessThanOrEqual(m.contextTokens);
        expect(p.retrieval.steps[0].k * ctx.chunkTokens).toBeLessThanOrEqual(p.budget.documentTokens);
        // Finalising with more retrieved chunks than fit keeps only what fits.
        const { use } = finalizePlan(p, { question }, ctx, chunks(100, true));
        expect(use * 512).toBeLessThanOrEqual(p.budget.documentTokens);
        expect((use + 1) * 512).toBeGreaterThan(p.budget.documentTokens);
      }
    }
  });

  it('shrinks the document budget to a compute cap and to a latency budget', () => {
    const capped = planQuery({ question, collections: ['c'], model: 'big', computeBudgetTokens: 4096 }, ctx);
    expect(capped.budget.limitedBy).toBe('compute');
    expect(capped.budget.documentTokens).toBeLessThan(4096);
    // exact quality recomputes documents: 4000 tok/s within 250 ms → under 1000 tokens.
    const exact = planQuery(
      { question, collections: ['c'], model: 'big', quality: 'exact', latencyBudgetMs: 250 },
      ctx,
    );
    expect(exact.budget.limitedBy).toBe('latency');
    expect(exact.budget.documentTokens).toBeLessThan(1000);
    // fast quality loads stored chunks at 400K tok/s: the same latency admits the whole context.
    const fast = planQuery(
      { question, collections: ['c'], model: 'big', quality: 'fast', latencyBudgetMs: 250 },
      ctx,
    );
    expect(fast.budget.documentTokens).toBeGreaterThan(20 * exact.budget.documentTokens);
  });

  it('routes easy questions to the small model and hard ones to the large, by the quality knob', () => {
    const hard =
      'Compare the passkey of the blue vault with the one stored after the migration, and explain which of the two was issued first and why?';
    expect(estimateDifficulty(question)).toBeLessThan(estimateDifficulty(hard));
    expect(planQuery({ question, collections: ['c'] }, ctx).generation.model).toBe('tiny');
    expect(planQuery({ question: hard, collections: ['c'] }, ctx).generation.model).toBe('big');
    expect(planQuery({ question: hard, collections: ['c'], qualityKnob: 0 }, ctx).generation.model).toBe(
      'tiny',
    );
    expect(planQuery({ question, collections: ['c'], qualityKnob: 1 }, ctx).generation.model).toBe('big');
    expect(() => planQuery({ question, collections: ['c'], model: 'nope' }, ctx)).toThrow(/not served/);
  });

  it('chooses the reuse mode from quality and artifact availability', () => {
    const mode = (quality: 'fast' | 'balanced' | 'exact', ready: boolean) =>
      finalizePlan(
        planQuery({ question, collections: ['c'], quality }, ctx),
        { question },
        ctx,
        chunks(6, ready),
      ).plan.generation.reuse;
    expect(mode('fast', true)).toEqual({ mode: 'independent' });
    expect(mode('balanced', true)).toEqual({ mode: 'blend', blendRatio: 0.15 });
    expect(mode('exact', true)).toEqual({ mode: 'prefix' });
    expect(mode('fast', false)).toEqual({ mode: 'prefix' });
    // A 2-layer model has nothing past blend's check layer: balanced quality links instead.
    const shallow: PlannerContext = { ...ctx, models: [{ ...small, layers: 2 }, large] };
    const shallowPlan = planQuery({ question, collections: ['c'], model: 'tiny' }, shallow);
    expect(finalizePlan(shallowPlan, { question }, shallow, chunks(6, true)).plan.generation.reuse).toEqual({
      mode: 'link',
      linkTokens: 16,
    });
    // A model trained with block-diagonal chunk attention serves independent chunks at balanced quality
    // (exact quality and missing artifacts still prefill).
    const trained: PlannerContext = {
      ...ctx,
      models: [{ ...small, layers: 8, independentTrained: true }, large],
    };
    const trainedMode = (quality: 'balanced' | 'exact', ready: boolean) =>
      finalizePlan(
        planQuery({ question, collections: ['c'], model: 'tiny', quality }, trained),
        { question },
        trained,
        chunks(6, ready),
      ).plan.generation.reuse;
    expect(trainedMode('balanced', true)).toEqual({ mode: 'independent' });
    expect(trainedMode('exact', true)).toEqual({ mode: 'prefix' });
    expect(trainedMode('balanced', false)).toEqual({ mode: 'prefix' });
    const deep: PlannerContext = { ...ctx, models: [{ ...small, layers: 8 }, large] };
    expect(
      finalizePlan(
        planQuery({ question, collections: ['c'], model: 'tiny' }, deep),
        { question },
        deep,
        chunks(6, true),
      ).plan.generation.reuse.mode,
    ).toBe('blend');
    const explicit = finalizePlan(
      planQuery({ question, collections: ['c'], reuse: 'link' }, ctx),
      { question, reuse: 'link' },
      ctx,
      chunks(3, true),
    );
    expect(explicit.plan.generation.reuse).toEqual({ mode: 'link', linkTokens: 16 });
  });

  it('drops live (unstored) chunks that would break the latency budget, keeping stored ones cheap', () => {
    const p = planQuery(
      { question, collections: ['c'], model: 'big', quality: 'fast', latencyBudgetMs: 300 },
      ctx,
    );
    const stored = finalizePlan(p, { question, latencyBudgetMs: 300 }, ctx, chunks(20, true));
    expect(stored.use).toBe(20);
    const cold = finalizePlan(p, { question, latencyBudgetMs: 300 }, ctx, [
      ...chunks(2, true),
      ...chunks(18, false),
    ]);
    // 300 ms of 4000 tok/s prefill covers two 512-token live chunks at most.
    expect(cold.use).toBeLessThanOrEqual(4);
    expect(cold.use).toBeGreaterThanOrEqual(2);
  });

  it('sets squeezed budgets for long fixed contexts and sparse prefill above the break-even', () => {
    const p = planQuery({ question, collections: ['c'], model: 'big', quality: 'fast' }, ctx);
    expect(finalizePlan(p, { question }, ctx, chunks(4, true)).plan.generation.squeezed).toEqual({
      mode: 'off',
    });
    expect(finalizePlan(p, { question }, ctx, chunks(20, true)).plan.generation.squeezed).toEqual({
      mode: 'budget',
      budget: 1 / 16,
    });
    // from 4096 fixed tokens (system prefix included): below it squeezing saves too little
    const fixed = (n: number) => ctx.systemTokens + n * 512;
    const under = Math.floor((4096 - ctx.systemTokens) / 512);
    expect(fixed(under)).toBeLessThan(4096);
    expect(fixed(under + 1)).toBeGreaterThanOrEqual(4096);
    expect(finalizePlan(p, { question }, ctx, chunks(under, true)).plan.generation.squeezed).toEqual({
      mode: 'off',
    });
    expect(finalizePlan(p, { question }, ctx, chunks(under + 1, true)).plan.generation.squeezed).toEqual({
      mode: 'budget',
      budget: 1 / 16,
    });
    // balanced keeps 1/8 over independent chunks (where the eval keeps the answer), from 4096 tokens;
    // over blend (a model not trained for independent chunks) it attends every key
    const balanced = planQuery({ question, collections: ['c'], model: 'big', quality: 'balanced' }, ctx);
    expect(finalizePlan(balanced, { question }, ctx, chunks(20, true)).plan.generation.squeezed).toEqual({
      mode: 'off',
    });
    const trained: PlannerContext = { ...ctx, models: [small, { ...large, independentTrained: true }] };
    const onTrained = planQuery({ question, collections: ['c'], model: 'big', quality: 'balanced' }, trained);
    const squeezedLong = finalizePlan(onTrained, { question }, trained, chunks(20, true)).plan.generation;
    expect(squeezedLong.reuse).toEqual({ mode: 'independent' });
    expect(squeezedLong.squeezed).toEqual({ mode: 'budget', budget: 1 / 8 });
    expect(finalizePlan(onTrained, { question }, trained, chunks(4, true)).plan.generation.squeezed).toEqual({
      mode: 'off',
    });
    const exact = planQuery({ question, collections: ['c'], model: 'big', quality: 'exact' }, ctx);
    const long = finalizePlan(exact, { question }, ctx, chunks(20, true)).plan.generation;
    expect(long.squeezed).toEqual({ mode: 'off' });
    expect(long.sparse).toEqual({ mode: 'auto' }); // 10K live tokens ≥ 8192
    expect(finalizePlan(exact, { question }, ctx, chunks(4, true)).plan.generation.sparse).toEqual({
      mode: 'off',
    });
  });

  it('says why it chose each part of the final plan, in the words of the branch taken', () => {
    const why = (
      quality: 'fast' | 'balanced' | 'exact',
      n: number,
      extra: { reuse?: 'full'; k?: number } = {},
    ) =>
      finalizePlan(
        planQuery({ question, collections: ['c'], model: 'big', quality, ...extra }, ctx),
        { question, ...extra },
        ctx,
        chunks(n, true),
      ).plan.generation.why!;
    const fast = why('fast', 20);
    expect(fast.squeezed).toMatch(/^fast quality over a \d+-token fixed context: keep the best 1\/16/);
    expect(fast.reuse).toMatch(/^fast quality/);
    expect(fast.k).toMatch(
      /^20 of 20 retrieved chunks fit the \d+-token document budget \(limited by context\)/,
    );
    expect(why('fast', 4).squeezed).toMatch(/under 4096/);
    expect(why('balanced', 20).squeezed).toMatch(
      /^dense: the eval keeps the answer at 1\/8 over independent chunks only; balanced quality over blend/,
    );
    const exact = why('exact', 20);
    expect(exact.reuse).toMatch(/^exact quality/);
    expect(exact.squeezed).toMatch(/prefilled live in prefix mode/);
    expect(exact.sparse).toMatch(/reach the model's sparse break-even \(8192\)/);
    expect(why('exact', 4).sparse).toMatch(/^dense: \d+ live tokens are under the model's sparse break-even/);
    const asked = why('balanced', 4, { reuse: 'full', k: 4 });
    expect(asked.reuse).toBe('reuse full asked for by the request');
    expect(asked.k).toMatch(/^k = 4 per collection asked for by the request/);
    // nothing stored: prefix, and the reason says so
    const cold = finalizePlan(
      planQuery({ question, collections: ['c'] }, ctx),
      { question },
      ctx,
      chunks(3, false),
    );
    expect(cold.plan.generation.reuse).toEqual({ mode: 'prefix' });
    expect(cold.plan.generation.why!.reuse).toMatch(/no retrieved chunk has a stored KV artifact/);
    expect(planSchema.parse(cold.plan)).toEqual(cold.plan);
  });

  it('plans iterative retrieval with the budget spread over the steps', () => {
    const p = planQuery({ question, collections: ['c'], model: 'big', iterative: { maxSteps: 3 } }, ctx);
    expect(p.retrieval.mode).toBe('iterative');
    expect(p.retrieval.maxSteps).toBe(3);
    const first = p.retrieval.steps[0].k;
    const second = nextStepK(p, ctx, 2, first * ctx.chunkTokens);
    const third = nextStepK(p, ctx, 3, (first + second) * ctx.chunkTokens);
    expect((first + second + third) * ctx.chunkTokens).toBeLessThanOrEqual(p.budget.documentTokens);
    expect(second).toBeGreaterThan(0);
  });
});
