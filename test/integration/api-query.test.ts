// POST /v1/query, POST /v1/chat/completions and GET /v1/models end to end: upload → workers → runner
// precompute → ready; then a query streams plan, citations, tokens and done, its citations point at the
// document's chunks and its prompt reused the stored artifacts (cached tokens > 0). Tenant isolation,
// bad inputs, the answer cache, query_log, and the OpenAI chunk format of chat completions.
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chunks, queryLog } from '../../src/db/schema.ts';
import { AnswerCache } from '../../src/answer/cache.ts';
import type { CachedAnswer } from '../../src/answer/services.ts';
import { DEFAULT_SYSTEM } from '../../src/answer/prompt.ts';
import { type AnswerHarness, startAnswerHarness } from '../helpers/answer-harness.ts';
import { envelope } from '../helpers/api-harness.ts';
import { collectSse } from '../helpers/sse.ts';

const RECORDS = Array.from(
  { length: 6 },
  (_, i) =>
    `Record R${100 + i} describes the ${['amber', 'basalt', 'cobalt', 'dune', 'ember', 'fjord'][i]} valley.`,
).join('\n\n');

interface Done {
  text: string;
  finish_reason: string;
  cited: number[];
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number; cached_tokens: number };
  timings: { retrieval_ms: number; ttft_ms: number; total_ms: number };
  ttft_split_ms: Record<string, number> | null;
  plan: {
    generation: { reuse: { mode: string }; maxTokens: number; why?: Record<string, string> };
  };
  reuse: { cached_tokens: number; mode: string };
  runner: { id: string; failed_over: string[] } | null;
  cached: boolean;
}
interface Citation {
  n: number;
  chunk_id: string;
  document_id: string;
  filename: string;
  score: number;
}

describe('answer routes (PGlite wire, in-process workers, real runner on a tiny model)', () => {
  let h: AnswerHarness;
  let tenant: { id: string; key: string };
  let other: { id: string; key: string };
  let col: { collection: string; document: string };

  beforeAll(async () => {
    h = await startAnswerHarness();
    [tenant, other] = [await h.tenant('a'), await h.tenant('b')];
    col = await h.ingest(tenant.key, RECORDS, 'records.txt');
  }, 60_000);
  afterAll(async () => {
    await h?.close();
  });

  const systemTokens = () => h.model.tokenizer.encode(DEFAULT_SYSTEM).length;
  const query = (json: unknown, key = tenant.key) => h.call('POST', '/v1/query', { key, json });

  it('streams plan, citations, tokens and done; citations are the document chunks; artifacts reused', async () => {
    // fast quality: independent reuse (TurboRAG), every chunk from its artifact
    const res = await query({
      quality: 'fast',
      question: 'Which record describes the cobalt valley?',
      collection_ids: [col.collection],
      max_tokens: 6,
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const events = await collectSse(res);
    const names = events.map((e) => e.event);
    expect(names.slice(0, 2)).toEqual(['plan', 'citations']);
    expect(names.at(-1)).toBe('done');
    expect(names.slice(2, -1).every((n) => n === 'token')).toBe(true);

    const citations = events[1].data as Citation[];
    const rows = await h.db.db.select().from(chunks).where(eq(chunks.documentId, col.document));
    expect(citations.length).toBeGreaterThan(0);
    expect(citations.map((c) => c.n)).toEqual(citations.map((_, i) => i + 1));
    for (const c of citations) {
      const row = rows.find((r) => r.id === c.chunk_id);
      expect(row, `citation [${c.n}] names a chunk of the document`).toBeDefined();
      expect(c).toMatchObject({ document_id: col.document, filename: 'records.txt' });
    }
    // the best-scored source is the chunk holding the asked-for words
    expect(rows.find((r) => r.id === citations[0].chunk_id)!.text).toContain('cobalt');

    const done = events.at(-1)!.data as Done;
    const streamed = events
      .filter((e) => e.event === 'token')
      .map((e) => (e.data as { text: string }).text)
      .join('');
    expect(done.text).toBe(streamed);
    expect(done.usage.completion_tokens).toBeGreaterThan(0);
    expect(done.usage.completion_tokens).toBeLessThanOrEqual(6);
    expect(done.plan.generation.reuse.mode).toBe('independent');
    // beyond the system prefix: the chunks' stored K/V was reused
    const chunkTokens = citations.reduce((a, c) => a + rows.find((r) => r.id === c.chunk_id)!.tokenCount, 0);
    expect(done.usage.cached_tokens).toBeGreaterThan(systemTokens());
    expect(done.usage.cached_tokens).toBeGreaterThanOrEqual(systemTokens() + Math.floor(0.8 * chunkTokens));
    expect(done.usage.cached_tokens).toBeLessThan(done.usage.prompt_tokens);
    expect(done.reuse.cached_tokens).toBe(done.usage.cached_tokens);
    expect(done.timings.ttft_ms).toBeLessThanOrEqual(done.timings.total_ms);
    // where the ttft went: retrieval, then the runner's phases; the parts add up to the measured ttft
    const split = done.ttft_split_ms!;
    expect(Object.keys(split).sort()).toEqual(
      ['load', 'other', 'prefill', 'queue', 'recompute', 'retrieval', 'rotate', 'squeeze'].sort(),
    );
    expect(split.retrieval).toBe(done.timings.retrieval_ms);
    expect(split.load).toBeGreaterThan(0);
    expect(split.prefill).toBeGreaterThan(0);
    const sum = Object.values(split).reduce((a, b) => a + b, 0);
    expect(Math.abs(sum - done.timings.ttft_ms)).toBeLessThanOrEqual(0.5); // each part rounded to 0.1 ms
    // and why the plan is what it is
    expect(done.plan.generation.why).toMatchObject({
      reuse: expect.stringMatching(/^fast quality/),
      k: expect.stringContaining(`${citations.length} of`),
      squeezed: expect.stringMatching(/^dense: a \d+-token fixed context is under 4096/),
      sparse: expect.stringMatching(/^dense/),
    });
    expect(done.runner).toEqual({ id: 'in-process', failed_over: [] });
    expect(done.cached).toBe(false);
    for (const n of done.cited) expect(n).toBeLessThanOrEqual(citations.length);

    const logs = await h.db.db.select().from(queryLog).where(eq(queryLog.tenantId, tenant.id));
    const log = logs.find((l) => l.question === 'Which record describes the cobalt valley?');
    expect(log?.plan).toMatchObject({ generation: { reuse: { mode: done.plan.generation.reuse.mode } } });
    expect(log?.usage).toMatchObject({ cached_tokens: done.usage.cached_tokens });
  }, 60_000);

  it('answers a repeated request from the answer cache; the runner answers it the same way again', async () => {
    const body = {
      question: 'Where is the ember valley?',
      collection_ids: [col.collection],
      max_tokens: 5,
      stream: false,
    };
    const first = await h.expectJson<Done & { citations: Citation[] }>(200, 'POST', '/v1/query', {
      key: tenant.key,
      json: body,
    });
    expect(first.cached).toBe(false);
    const hits = h.answer.cache!.hits;
    // whitespace differences normalise to the same request
    const again = await h.expectJson<Done & { citations: Citation[] }>(200, 'POST', '/v1/query', {
      key: tenant.key,
      json: { ...body, question: '  Where is the   ember valley? ' },
    });
    expect(again.cached).toBe(true);
    expect(again.ttft_split_ms).toBeNull(); // no prefill ran for a cached answer
    expect(first.ttft_split_ms?.prefill).toBeGreaterThan(0);
    expect(h.answer.cache!.hits).toBe(hits + 1);
    expect(again.text).toBe(first.text);
    expect(again.citations).toEqual(first.citations);
    // another tenant never gets it (and cannot see the collection)
    expect((await query(body, other.key)).status).toBe(404);
    // with an empty cache the runner is called again and, greedy, says the same
    h.answer.cache = new AnswerCache<CachedAnswer>();
    const fresh = await h.expectJson<Done>(200, 'POST', '/v1/query', { key: tenant.key, json: body });
    expect(fresh.cached).toBe(false);
    expect(fresh.text).toBe(first.text);
    expect(fresh.usage).toEqual(first.usage);

    // a new document retrieved for the question changes what the runner would be asked: a miss
    const repeat = await h.expectJson<Done>(200, 'POST', '/v1/query', { key: tenant.key, json: body });
    expect(repeat.cached).toBe(true);
    const added = await h.upload(
      tenant.key,
      col.collection,
      'The ember valley lies east of the cobalt valley.',
      'more.txt',
    );
    const after = await h.expectJson<Done & { citations: Citation[] }>(200, 'POST', '/v1/query', {
      key: tenant.key,
      json: body,
    });
    expect(after.cached).toBe(false);
    expect(after.citations.map((c) => c.document_id)).toContain(added);
  }, 60_000);

  it('applies filters and the latency budget of the request to retrieval', async () => {
    const base = {
      question: 'Which record describes the dune valley?',
      collection_ids: [col.collection],
      max_tokens: 2,
      stream: false,
    };
    const all = await h.expectJson<Done & { citations: Citation[] }>(200, 'POST', '/v1/query', {
      key: tenant.key,
      json: base,
    });
    expect(all.citations.length).toBeGreaterThan(1);
    // no chunk has lang=xx: nothing retrieved, the model answers without sources
    const none = await h.expectJson<Done & { citations: Citation[] }>(200, 'POST', '/v1/query', {
      key: tenant.key,
      json: { ...base, filters: { type: 'eq', key: 'lang', value: 'xx' } },
    });
    expect(none.citations).toEqual([]);
    // only the system prefix can come from a cache then
    expect(none.usage.cached_tokens).toBeLessThanOrEqual(systemTokens());
    const badFilter = await query({ ...base, filters: { type: 'near', key: 'lang', value: 1 } });
    expect(badFilter.status).toBe(400);
    // a 1 ms time-to-first-token budget leaves room for at most one stored chunk
    const tight = await h.expectJson<
      Done & { citations: Citation[]; plan: { budget: { limitedBy: string } } }
    >(200, 'POST', '/v1/query', { key: tenant.key, json: { ...base, latency_budget_ms: 1 } });
    expect(tight.plan.budget.limitedBy).toBe('latency');
    expect(tight.citations.length).toBeLessThan(all.citations.length);
  }, 60_000);

  it('keeps tenants apart and refuses bad input with envelopes', async () => {
    const res = await query({ question: 'cobalt', collection_ids: [col.collection] }, other.key);
    expect(res.status).toBe(404);
    expect((await envelope(res)).code).toBe('not_found');
    const chat = await h.call('POST', '/v1/chat/completions', {
      key: other.key,
      json: {
        model: h.served.id,
        messages: [{ role: 'user', content: 'cobalt' }],
        kvrag: { collection_ids: [col.collection] },
      },
    });
    expect(chat.status).toBe(404);

    expect(
      (
        await h.call('POST', '/v1/query', {
          key: null,
          json: { question: 'x', collection_ids: [col.collection] },
        })
      ).status,
    ).toBe(401);
    for (const bad of [
      {},
      { question: '', collection_ids: [col.collection] },
      { question: 'x', collection_ids: [] },
      { question: 'x', collection_ids: [col.collection], max_tokens: 0 },
      { question: 'x', collection_ids: [col.collection], reuse: 'sometimes' },
      { question: 'x', collection_ids: [col.collection], extra: 1 },
    ]) {
      const r = await query(bad);
      expect(r.status, JSON.stringify(bad)).toBe(400);
      expect((await envelope(r)).code).toBe('bad_request');
    }
    expect((await query({ question: 'x', collection_ids: ['not-a-uuid'] })).status).toBe(404);
    const text = await h.call('POST', '/v1/query', {
      key: tenant.key,
      body: 'question=x',
      headers: { 'content-type': 'text/plain' },
    });
    expect(text.status).toBe(415);
    const unknownModel = await h.call('POST', '/v1/chat/completions', {
      key: tenant.key,
      json: { model: 'nope', messages: [{ role: 'user', content: 'hi' }] },
    });
    expect(unknownModel.status).toBe(404);
    const noUser = await h.call('POST', '/v1/chat/completions', {
      key: tenant.key,
      json: { model: h.served.id, messages: [{ role: 'system', content: 'hi' }] },
    });
    expect(noUser.status).toBe(400);
  });

  it('documents the answer routes in /openapi.json', async () => {
    const doc = await h.expectJson<{ paths: Record<string, Record<string, { requestBody?: unknown }>> }>(
      200,
      'GET',
      '/openapi.json',
      { key: null },
    );
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining(['/v1/query', '/v1/chat/completions', '/v1/models']),
    );
    const body = JSON.stringify(doc.paths['/v1/query'].post.requestBody);
    for (const field of ['question', 'collection_ids', 'max_tokens', 'latency_budget_ms'])
      expect(body).toContain(field);
    expect(JSON.stringify(doc.paths['/v1/chat/completions'].post.requestBody)).toContain('stream_options');
  });

  it('chat completions without collections answer from the model alone', async () => {
    const out = await h.expectJson<{
      choices: { message: { content: string } }[];
      usage: { completion_tokens: number };
      kvrag: { citations: unknown[]; plan: { retrieval: { steps: unknown[] } } };
    }>(200, 'POST', '/v1/chat/completions', {
      key: tenant.key,
      json: {
        model: h.served.id,
        messages: [{ role: 'user', content: 'Say hi.' }],
        max_completion_tokens: 3,
        seed: 7,
      },
    });
    expect(out.usage.completion_tokens).toBeGreaterThan(0);
    expect(out.usage.completion_tokens).toBeLessThanOrEqual(3);
    expect(out.kvrag.citations).toEqual([]);
    expect(out.kvrag.plan.retrieval.steps).toEqual([]);
  }, 60_000);

  it('GET /v1/models lists the served models', async () => {
    const list = await h.expectJson(200, 'GET', '/v1/models', { key: tenant.key });
    expect(list).toEqual({
      object: 'list',
      data: [{ id: h.served.id, object: 'model', created: h.served.created, owned_by: 'kvrag' }],
    });
  });

  it('chat completions stream OpenAI chunks (constant id/created, usage chunk, [DONE]) with RAG over a collection', async () => {
    const res = await h.call('POST', '/v1/chat/completions', {
      key: tenant.key,
      json: {
        model: h.served.id,
        messages: [{ role: 'user', content: 'Which record describes the basalt valley?' }],
        stream: true,
        stream_options: { include_usage: true },
        max_tokens: 5,
        temperature: 0,
        kvrag: { collection_ids: [col.collection], reuse: 'independent' },
      },
    });
    expect(res.status).toBe(200);
    const raw = await res.text();
    const datas = raw
      .split('\n')
      .filter((l) => l.startsWith('data:'))
      .map((l) => l.slice(5).trim());
    expect(datas.at(-1)).toBe('[DONE]');
    const chunksOut = datas.slice(0, -1).map(
      (d) =>
        JSON.parse(d) as Record<string, unknown> & {
          choices: {
            index: number;
            delta: { role?: string; content?: string };
            finish_reason: string | null;
          }[];
        },
    );
    const ids = new Set(chunksOut.map((c) => c.id));
    const created = new Set(chunksOut.map((c) => c.created));
    expect(ids.size).toBe(1);
    expect(created.size).toBe(1);
    for (const c of chunksOut)
      expect(c).toMatchObject({ object: 'chat.completion.chunk', model: h.served.id });
    expect(chunksOut[0].choices[0].delta.role).toBe('assistant');
    const usageChunk = chunksOut.at(-1)!;
    expect(usageChunk.choices).toEqual([]);
    const usage = usageChunk.usage as {
      prompt_tokens: number;
      completion_tokens: number;
      total_tokens: number;
      prompt_tokens_details: { cached_tokens: number };
    };
    expect(usage.total_tokens).toBe(usage.prompt_tokens + usage.completion_tokens);
    expect(usage.prompt_tokens_details.cached_tokens).toBeGreaterThan(systemTokens());
    const finals = chunksOut.filter((c) => c.choices[0]?.finish_reason);
    expect(finals).toHaveLength(1);
    expect((finals[0].kvrag as { citations: Citation[] }).citations[0].document_id).toBe(col.document);
    const content = chunksOut.map((c) => c.choices[0]?.delta.content ?? '').join('');
    expect(usage.completion_tokens).toBeGreaterThan(0);

    // the same request without streaming: a chat.completion with the same content (greedy)
    const plain = await h.expectJson<{
      object: string;
      choices: { message: { role: string; content: string }; finish_reason: string }[];
      usage: typeof usage;
    }>(200, 'POST', '/v1/chat/completions', {
      key: tenant.key,
      json: {
        model: h.served.id,
        messages: [{ role: 'user', content: 'Which record describes the basalt valley?' }],
        max_tokens: 5,
        temperature: 0,
        kvrag: { collection_ids: [col.collection], reuse: 'independent' },
      },
    });
    expect(plain.object).toBe('chat.completion');
    expect(plain.choices[0].message).toEqual({ role: 'assistant', content });
    expect(plain.usage.completion_tokens).toBe(usage.completion_tokens);
  }, 60_000);
});
