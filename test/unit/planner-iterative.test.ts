// The iterative-retrieval loop (src/planning/iterative.ts) over a small in-memory corpus searched by shared
// words: sub-queries from the open clause plus the bridge entity, the sufficiency stop, the step cap, the
// document budget, and repeated sub-queries. The same loop runs over PGlite in
// test/integration/api-query-iterative.test.ts.
import { describe, expect, it } from 'vitest';
import {
  bridgeEntities,
  clauses,
  keyTerms,
  missingTerms,
  nextSubQuery,
  runRetrieval,
  searchQuery,
} from '../../src/planning/iterative.ts';
import { type PlannerContext, planQuery, type ServedModel } from '../../src/planning/planner.ts';

const model: ServedModel = {
  id: 'm',
  contextTokens: 4096,
  tier: 'small',
  prefillTokensPerSec: 1000,
  loadTokensPerSec: 100_000,
  sparseBreakEven: 1 << 20,
};
const ctx: PlannerContext = {
  models: [model],
  chunkTokens: 50,
  systemTokens: 20,
  countTokens: (t) => t.length,
};
const CORPUS = [
  'Station S12 logs hail every day.',
  'Station S10 logs rain every day.',
  'S12 is sited in the town of Tromso.',
  'S10 is sited in the town of Bergen.',
  'Tromso has a harbour master named Ada.',
].map((text, i) => ({ chunkId: `c${i}`, text, tokenCount: 50 }));

// ranks chunks by shared key terms, then corpus order; the k best with at least one shared term
const search = (query: string, k: number) => {
  const q = new Set(keyTerms(query));
  return CORPUS.map((c, i) => ({ ...c, score: keyTerms(c.text).filter((t) => q.has(t)).length - i / 100 }))
    .filter((c) => c.score > 0)
    .sort((a, b) => b.score - a.score)
    .slice(0, k);
};
const run = (question: string, maxSteps: number, over: Partial<PlannerContext> = {}) => {
  const c = { ...ctx, ...over };
  const plan = planQuery({ question, collections: ['col'], k: 1, iterative: { maxSteps } }, c);
  return runRetrieval(plan, question, c, async (s) => search(s.query, s.k), { k: 1 });
};

describe('iterative retrieval', () => {
  it('splits the question into clauses and key terms, and finds bridge entities', () => {
    const q = 'Which station logs hail, and which town is it sited in?';
    expect(keyTerms(q)).toEqual(['station', 'log', 'hail', 'town', 'sited']);
    expect(clauses(q)).toEqual(['Which station logs hail', 'which town is it sited in']);
    expect(bridgeEntities('Station S12 logs hail every day.', q)).toEqual(['S12']);
    expect(missingTerms(keyTerms(q), ['Station S12 logs hail every day.'])).toEqual(['town', 'sited']);
    expect(nextSubQuery(q, ['town', 'sited'], ['S12'], [q])).toBe('which town is it sited in S12');
    // asked already: the missing terms themselves, then nothing
    expect(nextSubQuery(q, ['town'], [], [q, 'which town is it sited in'])).toBe('town');
    expect(nextSubQuery(q, ['town'], [], [q, 'which town is it sited in', 'town'])).toBeNull();
  });

  it('rewrites a question for search: its content words as written, each once', () => {
    expect(searchQuery('What is the default port of the server, and which Port does it log?')).toBe(
      'default port server log',
    );
    expect(searchQuery('Who keeps gate G2?')).toBe('keeps gate G2');
    // nothing but question words: the question itself is searched
    expect(searchQuery('  What is it? ')).toBe('What is it?');
  });

  it('follows a three-hop chain until the question is covered', async () => {
    const q = 'Which station logs hail, which town is it sited in, and who is the harbour master there?';
    const { plan, hits } = await run(q, 4);
    expect(plan.retrieval.steps.map((s) => s.query)).toEqual([
      q,
      'which town is it sited in S12',
      'who is the harbour master there S12 Tromso',
    ]);
    expect(plan.retrieval.stop).toBe('sufficient');
    expect(hits.map((h) => h.chunkId)).toEqual(['c0', 'c2', 'c4']);
    expect(plan.retrieval.steps.map((s) => s.covered)).toEqual([0.429, 0.714, 1]); // of 7 key terms
  });

  it('stops at the step cap and when the budget is spent', async () => {
    const q = 'Which station logs hail, which town is it sited in, and who is the harbour master there?';
    const capped = await run(q, 2);
    expect(capped.plan.retrieval.steps).toHaveLength(2);
    expect(capped.plan.retrieval.stop).toBe('max-steps');
    expect(capped.plan.retrieval.missingTerms).toEqual(['harbour', 'master']);
    // a context that leaves room for two chunks: the third step has no budget
    const tight = await run(q, 4, { models: [{ ...model, contextTokens: 20 + q.length + 256 + 16 + 100 }] });
    expect(tight.plan.retrieval.steps).toHaveLength(2);
    expect(tight.plan.retrieval.stop).toBe('budget');
  });

  it('stops when a step adds nothing, and is deterministic', async () => {
    const q = 'Which station logs hail, and what is its altitude?';
    const a = await run(q, 5);
    expect(a.plan.retrieval.stop).toBe('no-progress');
    expect(a.plan.retrieval.missingTerms).toEqual(['altitude']);
    expect(await run(q, 5)).toEqual(a);
  });
});
