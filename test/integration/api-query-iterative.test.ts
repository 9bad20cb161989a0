// Iterative retrieval (IterDRAG) through POST /v1/query on real PGlite-over-wire, in-process workers and a
// real runner: a two-hop question is answered from two retrieval steps (the second a sub-query built from
// the unanswered clause and the entity the first step found), stops when its key terms are covered, stops
// at the step cap when they cannot be, and every step is in the returned plan. The planned sparse-prefill
// policy reaches the runner.
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultSparseConfig, writeSparseConfig } from '../../gpu-runner/engine/attention/sparse/config.ts';
import { createRunner } from '../../gpu-runner/server/runner.ts';
import { chunks } from '../../src/db/schema.ts';
import type { Plan } from '../../src/planning/plan.ts';
import { inProcessSource } from '../../src/routing/runner-client.ts';
import { withRunnerToken } from '../../contracts/runner-api.ts';
import { type AnswerHarness, startAnswerHarness } from '../helpers/answer-harness.ts';

const STATIONS = ['S10', 'S11', 'S12', 'S13'];
const WEATHER = ['rain', 'snow', 'hail', 'fog'];
const TOWNS = ['Bergen', 'Narvik', 'Tromso', 'Alta'];
// one fact per document, so one per chunk
const FACTS = [
  ...STATIONS.map((s, i) => `Station ${s} logs ${WEATHER[i]} every day of the year.`),
  ...STATIONS.map((s, i) => `${s} is sited in the town of ${TOWNS[i]} by the sea.`),
];

interface Answer {
  plan: Plan;
  citations: { n: number; chunk_id: string }[];
  runner: { id: string } | null;
}

describe('POST /v1/query iterative retrieval (PGlite wire, real runner)', () => {
  let h: AnswerHarness;
  let tenant: { id: string; key: string };
  let col: { collection: string };
  const textOf = new Map<string, string>();

  beforeAll(async () => {
    h = await startAnswerHarness();
    tenant = await h.tenant('iter');
    col = await h.ingest(tenant.key, FACTS[0], 'fact-0.txt');
    await Promise.all(
      FACTS.slice(1).map((f, i) => h.upload(tenant.key, col.collection, f, `fact-${i + 1}.txt`)),
    );
    for (const r of await h.db.db.select().from(chunks)) textOf.set(r.id, r.text);
  }, 180_000);
  afterAll(async () => {
    await h?.close();
  });

  const ask = (json: Record<string, unknown>) =>
    h.expectJson<Answer>(200, 'POST', '/v1/query', {
      key: tenant.key,
      json: { collection_ids: [col.collection], max_tokens: 2, stream: false, k: 1, ...json },
    });
  const cited = (a: Answer) => a.citations.map((c) => textOf.get(c.chunk_id)?.trim());

  it('answers a two-hop question from two steps: the second asks the open clause with the bridge entity', async () => {
    const question = 'Which station logs hail, and which town is it sited in?';
    const single = await ask({ question });
    expect(single.plan.retrieval.mode).toBe('single');
    expect(single.plan.retrieval.stop).toBeUndefined();
    expect(cited(single)).toEqual(['Station S12 logs hail every day of the year.']);

    const iter = await ask({ question, iterative: { max_steps: 3 } });
    const r = iter.plan.retrieval;
    expect(r.mode).toBe('iterative');
    expect(r.maxSteps).toBe(3);
    expect(r.steps.map((s) => [s.step, s.query, s.k, s.found])).toEqual([
      [1, question, 1, 1],
      [2, 'which town is it sited in S12', 1, 1],
    ]);
    expect(r.steps[0].covered).toBeLessThan(1);
    expect(r.steps[1].covered).toBe(1);
    expect(r.stop).toBe('sufficient');
    expect(r.missingTerms).toEqual([]);
    // both hops are in the prompt, the first step's chunk first
    expect(cited(iter)).toEqual([
      'Station S12 logs hail every day of the year.',
      'S12 is sited in the town of Tromso by the sea.',
    ]);
    expect(iter.runner?.id).toBe('in-process');
  }, 60_000);

  it('stops after one step when the first retrieval already covers the question', async () => {
    const a = await ask({ question: 'Which station logs fog?', iterative: true });
    expect(a.plan.retrieval.maxSteps).toBe(3);
    expect(a.plan.retrieval.steps).toHaveLength(1);
    expect(a.plan.retrieval.stop).toBe('sufficient');
    expect(cited(a)).toEqual(['Station S13 logs fog every day of the year.']);
  }, 60_000);

  it('stops at the step cap, or when a step covers nothing new, and says which terms stayed missing', async () => {
    const question = 'Which station logs hail, which town is it sited in, and what is its altitude?';
    const capped = await ask({ question, iterative: { max_steps: 2 } });
    expect(capped.plan.retrieval.steps.map((s) => s.step)).toEqual([1, 2]);
    expect(capped.plan.retrieval.stop).toBe('max-steps');
    expect(capped.plan.retrieval.missingTerms).toEqual(['altitude']);
    // the second step asked the clause still open after the first (with the entities the first step found)
    const [first, second] = capped.plan.retrieval.steps;
    expect(first.query).toBe(question);
    expect(
      ['Which station logs hail', 'which town is it sited in'].some((c) => second.query.startsWith(c)),
    ).toBe(true);
    expect(cited(capped)).toHaveLength(2);

    // with room for a third step, it asks for the missing term, finds a chunk without it and stops
    const more = await ask({ question, iterative: { max_steps: 5 } });
    const steps = more.plan.retrieval.steps;
    expect(steps).toHaveLength(3);
    expect(steps[2].query.startsWith('what is its altitude')).toBe(true);
    expect(steps[2].covered).toBe(steps[1].covered);
    expect(more.plan.retrieval.stop).toBe('no-progress');
  }, 60_000);

  it('chat completions take the same option in their kvrag field and return the steps in the plan', async () => {
    const question = 'Which station logs hail, and which town is it sited in?';
    const out = await h.expectJson<{ kvrag: { plan: Plan } }>(200, 'POST', '/v1/chat/completions', {
      key: tenant.key,
      json: {
        model: h.served.id,
        messages: [{ role: 'user', content: question }],
        max_tokens: 2,
        kvrag: { collection_ids: [col.collection], k: 1, iterative: { max_steps: 3 } },
      },
    });
    expect(out.kvrag.plan.retrieval.steps.map((s) => s.query)).toEqual([
      question,
      'which town is it sited in S12',
    ]);
    expect(out.kvrag.plan.retrieval.stop).toBe('sufficient');
  }, 60_000);

  it('a runner whose sparse.json break-even the question passes: the plan says auto, the runner runs it', async () => {
    // sparse.json searched on these weights, measured break-even 8 live tokens; a runner loaded on it reports
    // the break-even in its profile, which is all the API plans from
    const e = h.runner.core.engine;
    expect(h.served.sparseBreakEven).toBeNull(); // the harness model has no sparse.json
    const written = writeSparseConfig(e.dir, {
      ...defaultSparseConfig(e.config.layers, e.config.kvHeads, e.fingerprint),
      breakEven: 8,
    });
    const measured = await createRunner({ modelDir: e.dir, backend: 'reference', blobs: h.blobs });
    await measured.start();
    expect(measured.core.engine.profile.sparseBreakEven).toBe(8);
    h.useSource(
      inProcessSource(
        withRunnerToken((r) => measured.app.fetch(r), measured.core.credential.current),
        measured.core.engine.profile,
      ),
    );
    try {
      const a = await ask({ question: 'Which station logs rain?', max_tokens: 3 });
      expect(a.plan.generation.sparse).toEqual({ mode: 'auto' });
      expect(a.runner?.id).toBe('in-process');
      const done = a as unknown as {
        usage: { completion_tokens: number };
        reuse: { sparse: { pattern: string; dense: boolean } | null; squeezed: unknown };
      };
      expect(done.usage.completion_tokens).toBeGreaterThan(0);
      // the runner reports what it ran: with the same measured break-even, the question's live prefill ran
      // sparse (per-head patterns of its sparse.json)
      expect(done.reuse.sparse).toMatchObject({ dense: false });
      expect(done.reuse.sparse?.pattern).not.toBe('dense');
      expect(done.reuse.squeezed).toBeNull();
    } finally {
      h.useSource(
        inProcessSource(
          withRunnerToken((r) => h.runner.app.fetch(r), h.runner.core.credential.current),
          e.profile,
        ),
      );
      await measured.stop({ graceMs: 0 });
      rmSync(written);
    }
    // the harness's own runner again: its profile (no measured break-even) replaces the other one
    const back = await ask({ question: 'Which station logs rain?', max_tokens: 3 });
    expect(back.plan.generation.sparse).toEqual({ mode: 'off' });
  }, 60_000);

  it('refuses malformed iterative options with a 400 envelope', async () => {
    for (const iterative of [{ max_steps: 0 }, { max_steps: 9 }, { steps: 2 }, 'yes']) {
      const res = await h.call('POST', '/v1/query', {
        key: tenant.key,
        json: { question: 'Which station logs rain?', collection_ids: [col.collection], iterative },
      });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('bad_request');
    }
  });
});
