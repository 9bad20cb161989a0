// The runner request the answer use case builds from a plan (runnerRequest) must be one the runner accepts
// (contracts/runner-api.ts generateBodySchema): reuse settings, the plan's squeezed-attention control
// and its sparse-prefill policy travel as planned.
import { describe, expect, it } from 'vitest';
import { generateBodySchema } from '../../contracts/runner-api.ts';
import type { GenerationPlan } from '../../src/planning/plan.ts';
import { type PlannerContext, planQuery, type ServedModel } from '../../src/planning/planner.ts';
import type { AnswerModel } from '../../src/answer/models.ts';
import type { Prepared } from '../../src/answer/services.ts';
import { DEFAULT_SYSTEM, questionPrompt, runnerRequest } from '../../src/answer/prompt.ts';

const served: ServedModel = {
  id: 'm',
  contextTokens: 32768,
  tier: 'small',
  prefillTokensPerSec: 4000,
  loadTokensPerSec: 400_000,
  sparseBreakEven: 8192,
};
const ctx: PlannerContext = {
  models: [served],
  chunkTokens: 512,
  systemTokens: 40,
  countTokens: (t) => t.length,
};
const model: AnswerModel = { ...served, fingerprint: 'f'.repeat(64), chatTemplate: false, created: 1 };

function prepared(generation: Partial<GenerationPlan>, chatTemplate = false): Prepared {
  const plan = planQuery({ question: 'q?', collections: ['c'] }, ctx);
  return {
    plan: { ...plan, generation: { ...plan.generation, ...generation } },
    model: { ...model, chatTemplate },
    citations: [],
    sources: [],
    artifactKeys: ['a'.repeat(64)],
    context: {
      system: DEFAULT_SYSTEM,
      chunks: [{ text: '[1] ' }, { key: 'a'.repeat(64), text: 'A chunk.' }],
    },
    retrievalMs: 0,
  };
}

describe('plan → runner request', () => {
  it('forwards every squeezed control the planner can emit, in a shape the runner accepts', () => {
    for (const squeezed of [
      { mode: 'off' },
      { mode: 'budget', budget: 1 / 8 },
      { mode: 'threshold' },
      { mode: 'threshold', threshold: 2 },
    ] as GenerationPlan['squeezed'][]) {
      const body = runnerRequest(prepared({ squeezed }), { question: 'Q' }, {});
      const parsed = generateBodySchema.safeParse(body);
      expect(parsed.success, JSON.stringify(parsed.error?.issues)).toBe(true);
      expect(parsed.data?.squeezed).toEqual(squeezed);
    }
  });

  it('forwards reuse settings and every sparse-prefill policy, in a shape the runner accepts', () => {
    for (const sparse of [
      { mode: 'off' },
      { mode: 'auto' },
      { mode: 'pattern', pattern: 'vertical-slash' },
    ] as const) {
      const body = runnerRequest(
        prepared({ sparse, reuse: { mode: 'blend', blendRatio: 0.15 } }),
        { question: 'Q' },
        { temperature: 0 },
      );
      const parsed = generateBodySchema.parse(body);
      expect(parsed.reuse).toEqual({ mode: 'blend', blendRatio: 0.15 });
      expect(parsed.sparse).toEqual(sparse);
    }
  });

  it('sends a bare question (POST /v1/query) as the user turn of a model with a chat template', () => {
    // through the template the answer starts the assistant turn; a transcript ending in "Answer:" made the
    // bundled model continue with the byte after a colon in its documents, a space (" 482913")
    const chat = generateBodySchema.parse(
      runnerRequest(prepared({}, true), questionPrompt(prepared({}, true), 'Q?'), {}),
    );
    expect(chat.messages).toEqual([{ role: 'user', content: 'Q?' }]);
    expect(chat.question).toBeUndefined();
    const plain = generateBodySchema.parse(
      runnerRequest(prepared({}), questionPrompt(prepared({}), 'Q?'), {}),
    );
    expect(plain.question).toBe('\nQuestion: Q?\nAnswer:');
    expect(plain.messages).toBeUndefined();
  });
});
