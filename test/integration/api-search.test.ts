// POST /v1/collections/:id/search end to end: chunks embedded with the hash provider are inserted the
// way the ingest worker would, then searched through the API. Ranking sanity (the chunk holding the
// query terms first; full-text and vector both count), attribute filters on document and chunk
// attributes, the score threshold, bounds, the OpenAI response shape, and tenant isolation.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chunks } from '../../src/db/schema.ts';
import { createEmbeddingProvider } from '../../src/embeddings/factory.ts';
import { SearchPage } from '../../src/routes/openapi-schemas.ts';
import { envelope, type Harness, startApiHarness } from '../helpers/api-harness.ts';
import { sha256 } from '../helpers/db-fixtures.ts';

type Hit = {
  file_id: string;
  filename: string;
  score: number;
  attributes: Record<string, unknown>;
  content: { type: string; text: string }[];
};
type Page = { object: string; search_query: string; data: Hit[]; has_more: boolean; next_page: null };

const DIM = 256;
const embedder = createEmbeddingProvider({ provider: 'hash', dimension: DIM });

let h: Harness;
let a: { id: string; key: string };
let b: { id: string; key: string };
let collA: string;
let collB: string;

/** Uploads a document through the API, then writes its chunks as the ingest worker would. */
async function seed(
  t: { id: string; key: string },
  coll: string,
  filename: string,
  attributes: Record<string, unknown>,
  texts: string[],
  chunkAttributes: Record<string, unknown>[] = [],
): Promise<string> {
  const doc = await h.expectJson<{ id: string }>(201, 'POST', `/v1/collections/${coll}/documents`, {
    key: t.key,
    json: { text: texts.join('\n\n'), filename, attributes },
  });
  const vectors = await embedder.embed(texts, 'document');
  await h.db.db.insert(chunks).values(
    texts.map((text, i) => ({
      tenantId: t.id,
      collectionId: coll,
      documentId: doc.id,
      ordinal: i,
      text,
      tokenCount: text.split(/\s+/).length,
      contentHash: sha256(text),
      embedding: Array.from(vectors[i]),
      embeddingDim: DIM,
      attributes: chunkAttributes[i] ?? {},
    })),
  );
  return doc.id;
}

const search = (json: unknown, key = a.key, coll = collA) =>
  h.call('POST', `/v1/collections/${coll}/search`, { key, json });
const results = async (json: unknown, key = a.key, coll = collA) => {
  const res = await search(json, key, coll);
  const text = await res.text();
  if (res.status !== 200) throw new Error(`search ${res.status}: ${text}`);
  return JSON.parse(text) as Page;
};

let hnswDoc: string;
let pastaDoc: string;
let vacuumDoc: string;
beforeAll(async () => {
  h = await startApiHarness();
  a = await h.tenant('search-a');
  b = await h.tenant('search-b');
  const mk = async (key: string) =>
    (
      await h.expectJson<{ id: string }>(201, 'POST', '/v1/collections', {
        key,
        json: { name: 'kb', embedding: { provider: 'hash', dimension: DIM } },
      })
    ).id;
  collA = await mk(a.key);
  collB = await mk(b.key);
  hnswDoc = await seed(
    a,
    collA,
    'hnsw.md',
    { lang: 'en', year: 2024 },
    [
      'Tuning the HNSW index: raise ef_search for recall, ef_construction and m for graph quality.',
      'Iterative index scans keep filtered vector queries from returning too few rows.',
    ],
    [{ section: 'intro' }, { section: 'filters' }],
  );
  pastaDoc = await seed(a, collA, 'pasta.txt', { lang: 'it', year: 2020 }, [
    'Cook the pasta in salted boiling water until al dente, then toss with the sauce.',
    'A simple tomato sauce needs garlic, olive oil and basil.',
  ]);
  vacuumDoc = await seed(a, collA, 'vacuum.txt', { lang: 'en', year: 2019 }, [
    'Autovacuum reclaims dead tuples; bloated btree index pages slow every scan.',
  ]);
  // tenant B holds text that matches the same queries, in its own collection
  await seed(b, collB, 'b-hnsw.md', { lang: 'en', year: 2024 }, [
    'HNSW index tuning notes of tenant B: ef_search and m.',
  ]);
});
afterAll(async () => {
  await h?.close();
});

describe('search', () => {
  it('ranks the chunk holding the query terms first and answers in the vector store page shape', async () => {
    const page = await results({ query: 'HNSW index tuning ef_search' });
    expect(page).toMatchObject({
      object: 'vector_store.search_results.page',
      search_query: 'HNSW index tuning ef_search',
      has_more: false,
      next_page: null,
    });
    // rewrite_query: the question's content words are searched, and search_query says what was
    const rewritten = await results({
      query: 'How do I tune the HNSW index ef_search?',
      rewrite_query: true,
    });
    expect(rewritten.search_query).toBe('tune HNSW index ef_search');
    expect(rewritten.data[0].content).toEqual(page.data[0].content);
    // as documented in /openapi.json, down to the result items
    expect(SearchPage.safeParse(page).success).toBe(true);
    for (const item of page.data)
      expect(Object.keys(item).sort()).toEqual(Object.keys(SearchPage.shape.data.element.shape).sort());
    const top = page.data[0];
    expect(top.file_id).toBe(hnswDoc);
    expect(top.filename).toBe('hnsw.md');
    expect(top.content).toEqual([{ type: 'text', text: expect.stringContaining('Tuning the HNSW index') }]);
    // document attributes with the chunk's over them
    expect(top.attributes).toEqual({ lang: 'en', year: 2024, section: 'intro' });
    // in both rankings (every chunk is a vector candidate; only this one matches every query word)
    expect(top.score).toBeGreaterThan(0.5);
    expect(top.score).toBeLessThanOrEqual(1);
    const scores = page.data.map((d) => d.score);
    expect(scores).toEqual([...scores].sort((x, y) => y - x));
    expect(scores.every((s) => s > 0 && s <= 1)).toBe(true);

    const pasta = await results({ query: 'cook pasta' });
    expect(pasta.data[0].file_id).toBe(pastaDoc);
    const vacuum = await results({ query: 'autovacuum dead tuples' });
    expect(vacuum.data[0].file_id).toBe(vacuumDoc);
  });

  it('max_num_results caps the results; bounds are enforced', async () => {
    expect((await results({ query: 'index', max_num_results: 2 })).data).toHaveLength(2);
    expect((await results({ query: 'index' })).data.length).toBeLessThanOrEqual(10);
    for (const n of [0, 51, 2.5]) {
      const res = await search({ query: 'index', max_num_results: n });
      expect(res.status, String(n)).toBe(400);
      expect((await envelope(res)).code).toBe('bad_request');
    }
  });

  it('filters on document and chunk attributes exclude what does not match', async () => {
    const it = await results({
      query: 'index sauce pasta tuning',
      filters: { type: 'eq', key: 'lang', value: 'it' },
    });
    expect(new Set(it.data.map((d) => d.file_id))).toEqual(new Set([pastaDoc]));
    const recentEn = await results({
      query: 'index scan',
      filters: {
        type: 'and',
        filters: [
          { type: 'eq', key: 'lang', value: 'en' },
          { type: 'gte', key: 'year', value: 2020 },
        ],
      },
    });
    expect(recentEn.data.length).toBeGreaterThan(0);
    expect(new Set(recentEn.data.map((d) => d.file_id))).toEqual(new Set([hnswDoc]));
    const section = await results({
      query: 'index',
      filters: { type: 'eq', key: 'section', value: 'filters' },
    });
    expect(section.data.map((d) => d.content[0].text)).toEqual([
      expect.stringContaining('Iterative index scans'),
    ]);
    const notIn = await results({
      query: 'index pasta',
      filters: { type: 'nin', key: 'lang', value: ['en'] },
    });
    expect(notIn.data.every((d) => d.file_id === pastaDoc)).toBe(true);
    const or = await results({
      query: 'index pasta autovacuum',
      max_num_results: 50,
      filters: {
        type: 'or',
        filters: [
          { type: 'lt', key: 'year', value: 2020 },
          { type: 'eq', key: 'lang', value: 'it' },
        ],
      },
    });
    expect(new Set(or.data.map((d) => d.file_id))).toEqual(new Set([pastaDoc, vacuumDoc]));
  });

  it('updated document attributes apply to filters at once; another tenant cannot update them', async () => {
    const path = `/v1/collections/${collA}/documents/${vacuumDoc}`;
    const byB = await h.call('POST', path, { key: b.key, json: { attributes: { lang: 'it' } } });
    expect(byB.status).toBe(404);
    const updated = await h.expectJson<{ attributes: unknown }>(200, 'POST', path, {
      key: a.key,
      json: { attributes: { lang: 'it', year: 2019 } },
    });
    expect(updated.attributes).toEqual({ lang: 'it', year: 2019 });
    try {
      const it = await results({
        query: 'index autovacuum pasta',
        max_num_results: 50,
        filters: { type: 'eq', key: 'lang', value: 'it' },
      });
      expect(new Set(it.data.map((d) => d.file_id))).toEqual(new Set([pastaDoc, vacuumDoc]));
      expect(
        (await h.call('POST', path, { key: a.key, json: { attributes: { 'bad key': 1 } } })).status,
      ).toBe(400);
    } finally {
      await h.expectJson(200, 'POST', path, { key: a.key, json: { attributes: { lang: 'en', year: 2019 } } });
    }
  });

  it('a bad filter is a 400 envelope', async () => {
    for (const filters of [
      { type: 'like', key: 'lang', value: 'e%' },
      { type: 'eq', key: 'bad key', value: 1 },
      { type: 'in', key: 'lang', value: [] },
      { type: 'and', filters: [] },
      { type: 'eq', key: 'lang' },
      'lang = en',
    ]) {
      const res = await search({ query: 'index', filters });
      expect(res.status, JSON.stringify(filters)).toBe(400);
      expect((await envelope(res)).code).toBe('bad_request');
    }
    // hostile nesting (2000 levels) is refused before validation recurses
    const deep = `${'{"type":"and","filters":['.repeat(2000)}{"type":"eq","key":"a","value":1}${']}'.repeat(2000)}`;
    const res = await h.call('POST', `/v1/collections/${collA}/search`, {
      key: a.key,
      body: `{"query":"index","filters":${deep}}`,
      headers: { 'content-type': 'application/json' },
    });
    expect(res.status).toBe(400);
    expect((await envelope(res)).message).toMatch(/nest at most/);
  });

  it('the score threshold drops weaker results', async () => {
    const all = await results({ query: 'HNSW index tuning', max_num_results: 50 });
    const strong = await results({
      query: 'HNSW index tuning',
      max_num_results: 50,
      ranking_options: { score_threshold: 0.9 },
    });
    expect(all.data.some((d) => d.score < 0.9)).toBe(true);
    expect(strong.data.length).toBeGreaterThan(0);
    expect(strong.data.length).toBeLessThan(all.data.length);
    expect(strong.data.every((d) => d.score >= 0.9)).toBe(true);
    expect(strong.data).toEqual(all.data.filter((d) => d.score >= 0.9));
    expect((await search({ query: 'x', ranking_options: { score_threshold: 1.5 } })).status).toBe(400);
  });

  it('tenant B cannot search tenant A’s collection, and B’s search never returns A’s chunks', async () => {
    const res = await search({ query: 'HNSW index tuning' }, b.key, collA);
    expect(res.status).toBe(404);
    expect((await envelope(res)).code).toBe('not_found');
    const own = await results({ query: 'HNSW index tuning', max_num_results: 50 }, b.key, collB);
    expect(own.data.length).toBeGreaterThan(0);
    expect(own.data.every((d) => d.filename === 'b-hnsw.md')).toBe(true);
    expect((await search({ query: 'x' }, a.key, '00000000-0000-4000-8000-000000000000')).status).toBe(404);
  });

  it('malformed bodies are 400s', async () => {
    const bad = await h.call('POST', `/v1/collections/${collA}/search`, {
      key: a.key,
      body: '{"query":',
      headers: { 'content-type': 'application/json' },
    });
    expect(bad.status).toBe(400);
    expect((await search({})).status).toBe(400);
    expect((await search({ query: '' })).status).toBe(400);
    expect((await search({ query: 'x', rewrite_query: 'yes' })).status).toBe(400);
  });
});
