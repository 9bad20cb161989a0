// The official `openai` npm SDK, unchanged and through its public methods only, against a real `kvrag
// serve` process (embedded mode: PGlite on disk, filesystem blobs, in-process workers and runner on the
// bundled model): Files, Vector Stores (files, uploadAndPoll / createAndPoll, file batches, search with a
// compound filter, auto-pagination), Responses with file_search (plain and streamed, citations, retrieve,
// previous_response_id, delete), every delete, and the SDK's typed errors. Then a second client written
// against the raw HTTP shapes of OpenAI's API reference, and README's example (docs/openai-client.mjs) run
// as it is, all against the same process.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { citationMarks, DEFAULT_SYSTEM } from '../../src/answer/prompt.ts';
import { HASH_MODEL } from '../../src/embeddings/hash.ts';
import { FsBlobStore } from '../../src/storage/fs.ts';
import { waitFor } from '../helpers/job-queue-suite.ts';
import { cleanEnv, REPO_ROOT, spawnServe, stopServe } from '../helpers/serve-process.ts';
import { collectSse } from '../helpers/sse.ts';

const ADMIN = 'e2e-admin-key-0123456789abcdef';
const TEXTS = {
  g1: 'Gate G1 opens at dawn. The gate keeper of G1 is called Ada.',
  g2: 'Gate G2 opens at noon. The gate keeper of G2 is called Bo.',
  g3: 'Gate G3 opens at dusk. The gate keeper of G3 is called Cy.',
  g4: 'Gate G4 never opens. Nobody keeps gate G4.',
};
const POLL = { pollIntervalMs: 50 };

let child: ChildProcess;
let cwd: string;
let root: string;
let model: string;
let A: { id: string; key: string };
let client: OpenAI;
let other: OpenAI;

/** A request to the served API with a bearer key; the JSON body when there is one. */
async function call(key: string | null, method: string, path: string, body?: unknown) {
  const res = await fetch(`${root}${path}`, {
    method,
    headers: {
      ...(key ? { authorization: `Bearer ${key}` } : {}),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  // biome-ignore lint/suspicious/noExplicitAny: the raw client reads the reference's shapes itself
  return { status: res.status, headers: res.headers, body: (text ? JSON.parse(text) : null) as any };
}

/** A tenant and its API key, made with the admin key. */
async function tenant(name: string): Promise<{ id: string; key: string }> {
  const t = await call(ADMIN, 'POST', '/v1/admin/tenants', { name });
  const k = await call(ADMIN, 'POST', `/v1/admin/tenants/${t.body.id}/keys`, {});
  return { id: t.body.id, key: k.body.key };
}

const sdk = (key: string) => new OpenAI({ apiKey: key, baseURL: `${root}/v1`, maxRetries: 0 });
const txt = (name: string, text: string) => toFile(Buffer.from(text), name, { type: 'text/plain' });
const all = async <T>(page: AsyncIterable<T>) => {
  const out: T[] = [];
  for await (const x of page) out.push(x);
  return out;
};

beforeAll(async () => {
  cwd = mkdtempSync(join(tmpdir(), 'kvrag-openai-serve-'));
  const serve = spawnServe({ cwd, env: { KVRAG_PORT: '0', KVRAG_ADMIN_KEY: ADMIN } });
  child = serve.child;
  root = await serve.url;
  A = await tenant('openai-a');
  client = sdk(A.key);
  other = sdk((await tenant('openai-b')).key);
  [{ id: model }] = (await client.models.list()).data;
}, 120_000);
afterAll(async () => {
  await stopServe(child);
  if (cwd) rmSync(cwd, { recursive: true, force: true });
});

describe('openai SDK → Files and Vector Stores', () => {
  let vs: OpenAI.VectorStores.VectorStore;
  let first: OpenAI.Responses.Response;
  const ids: Record<keyof typeof TEXTS, string> = { g1: '', g2: '', g3: '', g4: '' };

  it('uploads a file, reads it back and lists it', async () => {
    const f = await client.files.create({ file: await txt('g1.txt', TEXTS.g1), purpose: 'assistants' });
    expect(f).toMatchObject({
      object: 'file',
      filename: 'g1.txt',
      purpose: 'assistants',
      bytes: TEXTS.g1.length,
    });
    ids.g1 = f.id;
    expect((await client.files.retrieve(f.id)).id).toBe(f.id);
    expect(await (await client.files.content(f.id)).text()).toBe(TEXTS.g1);
  });

  it('creates a vector store, attaches files one by one and in a batch, and polls them to completed', async () => {
    vs = await client.vectorStores.create({
      name: 'gates',
      metadata: { team: 'ops' },
      chunking_strategy: { type: 'static', static: { max_chunk_size_tokens: 100, chunk_overlap_tokens: 0 } },
    });
    expect(vs).toMatchObject({
      object: 'vector_store',
      name: 'gates',
      status: 'completed',
      metadata: { team: 'ops' },
    });

    const one = await client.vectorStores.files.createAndPoll(
      vs.id,
      { file_id: ids.g1, attributes: { gate: 'G1', floor: 1 } },
      POLL,
    );
    expect(one).toMatchObject({
      id: ids.g1,
      object: 'vector_store.file',
      status: 'completed',
      last_error: null,
    });
    expect(one.attributes).toEqual({ gate: 'G1', floor: 1 });

    const two = await client.vectorStores.files.uploadAndPoll(vs.id, await txt('g2.txt', TEXTS.g2), POLL);
    expect(two.status).toBe('completed');
    ids.g2 = two.id;
    await client.vectorStores.files.update(two.id, {
      vector_store_id: vs.id,
      attributes: { gate: 'G2', floor: 2 },
    });

    const batch = await client.vectorStores.fileBatches.uploadAndPoll(vs.id, {
      files: [await txt('g3.txt', TEXTS.g3), await txt('g4.txt', TEXTS.g4)],
    });
    expect(batch).toMatchObject({
      object: 'vector_store.files_batch',
      vector_store_id: vs.id,
      status: 'completed',
    });
    expect(batch.file_counts).toEqual({ in_progress: 0, completed: 2, failed: 0, cancelled: 0, total: 2 });
    const inBatch = await all(
      client.vectorStores.fileBatches.listFiles(batch.id, { vector_store_id: vs.id, limit: 1 }),
    );
    const byName = new Map<string, string>();
    for (const f of inBatch) byName.set((await client.files.retrieve(f.id)).filename, f.id);
    expect([...byName.keys()].sort()).toEqual(['g3.txt', 'g4.txt']);
    ids.g3 = byName.get('g3.txt')!;
    ids.g4 = byName.get('g4.txt')!;
    await client.vectorStores.files.update(ids.g3, {
      vector_store_id: vs.id,
      attributes: { gate: 'G3', floor: 3 },
    });

    const now = await client.vectorStores.retrieve(vs.id);
    expect(now.file_counts).toEqual({ in_progress: 0, completed: 4, failed: 0, cancelled: 0, total: 4 });
    expect(now.usage_bytes).toBe(Object.values(TEXTS).reduce((n, t) => n + t.length, 0));
    expect(now.status).toBe('completed');
  }, 120_000);

  it('lists with auto-pagination, filters by status, and returns the parsed content', async () => {
    const files = await all(client.vectorStores.files.list(vs.id, { limit: 3 }));
    expect(files.map((f) => f.id).sort()).toEqual(Object.values(ids).sort());
    expect(await all(client.vectorStores.files.list(vs.id, { filter: 'failed' }))).toEqual([]);
    const uploaded = await all(client.files.list({ limit: 2, purpose: 'assistants' }));
    expect(uploaded.map((f) => f.id).sort()).toEqual(Object.values(ids).sort());
    const spare = await client.vectorStores.create({ name: 'spare' });
    const stores = await all(client.vectorStores.list({ limit: 1 }));
    expect(stores.map((s) => s.id).sort()).toEqual([vs.id, spare.id].sort());
    expect((await client.vectorStores.delete(spare.id)).deleted).toBe(true);
    const content = await all(client.vectorStores.files.content(ids.g2, { vector_store_id: vs.id }));
    expect(content.map((p) => p.text).join('')).toBe(TEXTS.g2);
  });

  it('searches with a compound filter, and with the query rewritten', async () => {
    const hits = await all(
      client.vectorStores.search(vs.id, {
        query: 'when does the gate open',
        max_num_results: 10,
        filters: {
          type: 'or',
          filters: [
            { type: 'eq', key: 'gate', value: 'G2' },
            { type: 'gte', key: 'floor', value: 3 },
          ],
        },
      }),
    );
    expect(new Set(hits.map((x) => x.file_id))).toEqual(new Set([ids.g2, ids.g3]));
    for (const x of hits) {
      expect(x.content[0].type).toBe('text');
      expect(x.score).toBeGreaterThan(0);
    }
    const plain = await all(client.vectorStores.search(vs.id, { query: ['keeper Bo', 'noon'] }));
    expect(plain[0].file_id).toBe(ids.g2);
    // rewrite_query: the question's content words are searched, and search_query says so
    const asked = 'Who is the keeper of gate G2, please?';
    const rewritten = await all(client.vectorStores.search(vs.id, { query: asked, rewrite_query: true }));
    expect(rewritten[0].file_id).toBe(ids.g2);
    const page = await call(A.key, 'POST', `/v1/vector_stores/${vs.id}/search`, {
      query: asked,
      rewrite_query: true,
    });
    expect(page.body.search_query).toEqual(['keeper gate G2']);
  });

  it('embeds with the vector store’s provider (the SDK asks for base64 and decodes it)', async () => {
    const e = await client.embeddings.create({ model: vs.id, input: ['gate keeper', 'noon'] });
    expect(e.data.map((d) => d.index)).toEqual([0, 1]);
    const hash = (await call(A.key, 'POST', '/v1/embeddings', { model: HASH_MODEL, input: 'noon' })).body;
    // the store was made with the default embedding (the hash model at its default dimension)
    expect(e.data[1].embedding).toEqual(hash.data[0].embedding);
  });

  describe('responses with file_search', () => {
    const params = () => ({
      model,
      input: 'When does gate G2 open?',
      tools: [{ type: 'file_search' as const, vector_store_ids: [vs.id], max_num_results: 3 }],
      include: ['file_search_call.results' as const],
      max_output_tokens: 6,
      temperature: 0,
    });
    type Kvrag = { citations: { n: number; file_id: string; filename: string }[] };
    /** The annotations the text's [n] markers imply, from the sources the response reports. */
    const expectedCitations = (text: string, r: OpenAI.Responses.Response) => {
      const cited = (r as unknown as { kvrag: Kvrag }).kvrag.citations;
      return citationMarks(text, cited.length).map(({ n, index }) => ({
        type: 'file_citation',
        file_id: cited[n - 1].file_id,
        filename: cited[n - 1].filename,
        index,
      }));
    };

    it('answers with a file_search_call and a message whose citations name the store’s files', async () => {
      first = await client.responses.create(params());
      expect(first.object).toBe('response');
      expect(['completed', 'incomplete']).toContain(first.status);
      const [fsCall, msg] = first.output;
      expect(fsCall.type).toBe('file_search_call');
      if (fsCall.type !== 'file_search_call') return;
      expect(fsCall.status).toBe('completed');
      expect(fsCall.queries).toEqual(['When does gate G2 open?']);
      expect(fsCall.results!.length).toBeGreaterThan(0);
      for (const x of fsCall.results!) expect(Object.values(ids)).toContain(x.file_id);
      expect(msg.type).toBe('message');
      if (msg.type !== 'message') return;
      const part = msg.content[0];
      if (part.type !== 'output_text') throw new Error('no output_text');
      expect(first.output_text).toBe(part.text);
      expect(part.annotations).toEqual(expectedCitations(part.text, first));
      expect(first.usage!.output_tokens).toBeGreaterThan(0);
      expect(first.usage!.output_tokens).toBeLessThanOrEqual(6);
      expect(first.usage!.total_tokens).toBe(first.usage!.input_tokens + first.usage!.output_tokens);
    }, 60_000);

    it('streams the same answer through responses.stream, events in order', async () => {
      const stream = client.responses.stream(params());
      const types: string[] = [];
      const seqs: number[] = [];
      let deltas = '';
      for await (const e of stream) {
        types.push(e.type);
        seqs.push(e.sequence_number);
        if (e.type === 'response.output_text.delta') deltas += e.delta;
      }
      const final = await stream.finalResponse();
      expect(seqs).toEqual(seqs.map((_, i) => i));
      const head = [
        'response.created',
        'response.in_progress',
        'response.output_item.added',
        'response.file_search_call.in_progress',
        'response.file_search_call.searching',
        'response.file_search_call.completed',
        'response.output_item.done',
        'response.output_item.added',
        'response.content_part.added',
      ];
      expect(types.slice(0, head.length)).toEqual(head);
      const rest = types.slice(head.length);
      const nDeltas = rest.filter((t) => t === 'response.output_text.delta').length;
      const nNotes = rest.filter((t) => t === 'response.output_text.annotation.added').length;
      expect(nDeltas).toBeGreaterThan(0);
      expect(rest).toEqual([
        ...Array(nDeltas).fill('response.output_text.delta'),
        ...Array(nNotes).fill('response.output_text.annotation.added'),
        'response.output_text.done',
        'response.content_part.done',
        'response.output_item.done',
        final.status === 'incomplete' ? 'response.incomplete' : 'response.completed',
      ]);
      expect(final.output_text).toBe(deltas);
      // greedy, same request: the same text as the plain call, and the same citations
      expect(final.output_text).toBe(first.output_text);
      const msg = final.output[1];
      if (msg.type !== 'message' || msg.content[0].type !== 'output_text') throw new Error('no message');
      expect(msg.content[0].annotations).toEqual(expectedCitations(final.output_text, final));
      expect(nNotes).toBe(msg.content[0].annotations.length);
      // stored: retrieve gives the streamed response back
      const again = await client.responses.retrieve(final.id);
      expect(again.id).toBe(final.id);
      expect(again.output.map((o) => o.id)).toEqual(final.output.map((o) => o.id));
      expect(again.output_text).toBe(final.output_text);
      expect(again.usage).toEqual(final.usage);
      await client.responses.delete(final.id);
    }, 60_000);

    it('continues a conversation with previous_response_id: the earlier turns are in the prompt', async () => {
      const turn = { ...params(), input: 'And gate G3?' };
      const next = await client.responses.create({ ...turn, previous_response_id: first.id });
      expect(next.previous_response_id).toBe(first.id);
      // the same question alone (not stored), retrieving the same chunks: the bundled model is byte-level,
      // so the continued prompt holds at least the first question's and answer's bytes more
      const alone = await client.responses.create({ ...turn, store: false });
      expect(alone.previous_response_id).toBeNull();
      const earlier = Buffer.byteLength(params().input) + Buffer.byteLength(first.output_text);
      expect(next.usage!.input_tokens - alone.usage!.input_tokens).toBeGreaterThanOrEqual(earlier);
      await expect(client.responses.retrieve(alone.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
      // its input items are this turn's own, not the first turn's
      const listed = await client.responses.inputItems.list(next.id);
      expect(listed.data.map((it) => it.type === 'message' && it.role)).toEqual(['user']);
      const item = listed.data[0];
      if (item.type !== 'message') throw new Error('not a message');
      expect(item.id).toMatch(/^msg_[0-9a-f]{32}$/);
      expect(item.content).toEqual([{ type: 'input_text', text: 'And gate G3?' }]);

      await client.responses.delete(next.id);
      await expect(client.responses.retrieve(next.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
      // the first one stays until deleted itself
      expect((await client.responses.retrieve(first.id)).id).toBe(first.id);
    }, 60_000);

    it('lists a response’s input items page by page, in either order, as the request gave them', async () => {
      const given = [
        { role: 'developer' as const, content: 'Answer briefly.' },
        { id: 'msg_given', role: 'assistant' as const, content: 'Gate G2 opens at dawn.' },
        { role: 'user' as const, content: [{ type: 'input_text' as const, text: 'And gate G3?' }] },
      ];
      const r = await client.responses.create({ ...params(), input: given });
      const asc: string[] = [];
      // limit 1: the SDK's auto-pagination follows has_more / after through three pages
      for await (const it of client.responses.inputItems.list(r.id, { limit: 1, order: 'asc' })) {
        if (it.type !== 'message') throw new Error(`unexpected ${it.type}`);
        const part = it.content[0];
        asc.push(`${it.role}:${'text' in part ? part.text : ''}`);
        if (it.role === 'assistant') expect(it.id).toBe('msg_given');
      }
      expect(asc).toEqual([
        'developer:Answer briefly.',
        'assistant:Gate G2 opens at dawn.',
        'user:And gate G3?',
      ]);
      const desc = await client.responses.inputItems.list(r.id);
      expect(desc.data.map((it) => it.type === 'message' && it.role)).toEqual([
        'user',
        'assistant',
        'developer',
      ]);
      expect(desc.has_more).toBe(false);
      await expect(client.responses.inputItems.list(r.id, { after: 'msg_nowhere' })).rejects.toBeInstanceOf(
        OpenAI.BadRequestError,
      );
      await client.responses.delete(r.id);
      await expect(client.responses.inputItems.list(r.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    }, 60_000);
  });

  describe('errors as the SDK’s typed errors', () => {
    it('404 for a wrong id and for another tenant’s ids, reads and deletes alike (never 403)', async () => {
      const missing = crypto.randomUUID();
      const e = await client.vectorStores.retrieve(missing).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(OpenAI.NotFoundError);
      expect(e).toMatchObject({ status: 404, type: 'invalid_request_error', code: 'not_found' });
      await expect(client.files.retrieve(missing)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
      await expect(client.responses.retrieve(missing)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
      for (const theirs of [
        () => other.vectorStores.retrieve(vs.id),
        () => other.files.retrieve(ids.g1),
        () => other.files.content(ids.g1),
        () => other.vectorStores.files.retrieve(ids.g1, { vector_store_id: vs.id }),
        () => other.vectorStores.search(vs.id, { query: 'gate' }),
        () => other.vectorStores.files.create(vs.id, { file_id: ids.g1 }),
        () => other.responses.retrieve(first.id),
        () =>
          other.responses.create({
            model,
            input: 'hi',
            tools: [{ type: 'file_search', vector_store_ids: [vs.id] }],
          }),
        () => other.responses.create({ model, input: 'hi', previous_response_id: first.id }),
        () => other.vectorStores.files.delete(ids.g1, { vector_store_id: vs.id }),
        () => other.files.delete(ids.g1),
        () => other.vectorStores.delete(vs.id),
        () => other.responses.delete(first.id),
      ]) {
        const err = await theirs().catch((x: unknown) => x);
        expect(err).toBeInstanceOf(OpenAI.NotFoundError);
        expect((err as InstanceType<typeof OpenAI.NotFoundError>).status).toBe(404);
      }
      // nothing of theirs was deleted
      expect((await client.vectorStores.files.retrieve(ids.g1, { vector_store_id: vs.id })).id).toBe(ids.g1);
      expect((await client.responses.retrieve(first.id)).id).toBe(first.id);
      expect((await client.vectorStores.retrieve(vs.id)).file_counts.total).toBe(4);
    });

    it('400 for bad input (with the field in param), 409 for a file attached twice', async () => {
      const bad = await client.files
        .create({ file: await txt('x.txt', 'x'), purpose: 'nope' as 'assistants' })
        .catch((x: unknown) => x);
      expect(bad).toBeInstanceOf(OpenAI.BadRequestError);
      expect(bad).toMatchObject({ param: 'purpose' });
      await expect(
        client.vectorStores.search(vs.id, {
          query: 'gate',
          filters: { type: 'eq', key: 'bad key', value: 1 },
        }),
      ).rejects.toBeInstanceOf(OpenAI.BadRequestError);
      await expect(client.vectorStores.files.create(vs.id, { file_id: ids.g1 })).rejects.toBeInstanceOf(
        OpenAI.ConflictError,
      );
    });
  });

  it('deletes: a response, a store file, a file (gone from the store too), the store; gc empties the tenant’s uploads', async () => {
    await client.responses.delete(first.id);
    await expect(client.responses.retrieve(first.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    const del = await client.vectorStores.files.delete(ids.g4, { vector_store_id: vs.id });
    expect(del).toEqual({ id: ids.g4, object: 'vector_store.file.deleted', deleted: true });
    expect((await client.files.retrieve(ids.g4)).id).toBe(ids.g4);
    expect(await client.files.delete(ids.g2)).toEqual({ id: ids.g2, object: 'file', deleted: true });
    await expect(
      client.vectorStores.files.retrieve(ids.g2, { vector_store_id: vs.id }),
    ).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    expect((await client.vectorStores.retrieve(vs.id)).file_counts.total).toBe(2);
    expect(await client.vectorStores.delete(vs.id)).toEqual({
      id: vs.id,
      object: 'vector_store.deleted',
      deleted: true,
    });
    await expect(client.vectorStores.retrieve(vs.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    // the same collection through kvrag's own API: gone too, in kvrag's envelope
    const own = await call(A.key, 'GET', `/v1/collections/${vs.id}`);
    expect(own.status).toBe(404);
    expect(own.body.error).toMatchObject({ code: 'not_found' });
    expect(own.body.error.type).toBeUndefined();
    for (const id of [ids.g1, ids.g3, ids.g4]) await client.files.delete(id);
    expect(await all(client.files.list())).toEqual([]);
    // the served process's blob store, read from its directory: the gc jobs removed every upload
    const blobs = new FsBlobStore(join(cwd, '.kvrag/blobs'));
    await waitFor(
      async () => {
        for await (const b of blobs.list(`uploads/${A.id}/`)) return !b;
        return true;
      },
      'the tenant’s uploads to be collected',
      20_000,
    );
  }, 60_000);
});

// A second client written against the raw HTTP shapes of OpenAI's API reference: the fields the SDK does
// not type-check (object names and keys, file_counts, SSE event names and order, the error object's keys).
describe('raw HTTP shapes', () => {
  let R: { id: string; key: string };
  let store: string;
  let doc: string;
  const raw = (method: string, path: string, body?: unknown) => call(R.key, method, `/v1${path}`, body);

  beforeAll(async () => {
    R = await tenant('openai-raw');
    // a collection made through kvrag's own API is a vector store, its documents its files
    const col = await raw('POST', '/collections', { name: 'raw', chunking: { size: 64, overlap: 0 } });
    store = col.body.id;
    doc = (await raw('POST', `/collections/${store}/documents`, { text: TEXTS.g2, filename: 'g2.txt' })).body
      .id;
    await waitFor(
      async () => (await raw('GET', `/vector_stores/${store}`)).body.file_counts.completed === 1,
      'the document to be ingested',
      30_000,
    );
  }, 60_000);

  it('vector store, vector store file and list objects', async () => {
    const v = (await raw('GET', `/vector_stores/${store}`)).body;
    expect(Object.keys(v).sort()).toEqual(
      [
        'created_at',
        'expires_at',
        'file_counts',
        'id',
        'last_active_at',
        'metadata',
        'name',
        'object',
        'status',
        'usage_bytes',
      ].sort(),
    );
    expect(v).toMatchObject({
      id: store,
      object: 'vector_store',
      name: 'raw',
      status: 'completed',
      usage_bytes: TEXTS.g2.length,
      file_counts: { in_progress: 0, completed: 1, failed: 0, cancelled: 0, total: 1 },
      expires_at: null,
    });
    expect(Number.isInteger(v.created_at)).toBe(true);
    const list = (await raw('GET', `/vector_stores/${store}/files`)).body;
    expect(list).toMatchObject({ object: 'list', first_id: doc, last_id: doc, has_more: false });
    expect(list.data[0]).toMatchObject({
      id: doc,
      object: 'vector_store.file',
      vector_store_id: store,
      status: 'completed',
      last_error: null,
      usage_bytes: TEXTS.g2.length,
      chunking_strategy: { type: 'static', static: { max_chunk_size_tokens: 64, chunk_overlap_tokens: 0 } },
    });
  });

  it('a multipart file, a file batch counting it, and the deleted objects', async () => {
    const form = new FormData();
    form.set('file', new File([TEXTS.g3], 'g3.txt', { type: 'text/plain' }));
    form.set('purpose', 'assistants');
    const up = await fetch(`${root}/v1/files`, {
      method: 'POST',
      headers: { authorization: `Bearer ${R.key}` },
      body: form,
    });
    expect(up.status).toBe(200);
    const file = (await up.json()) as Record<string, unknown>;
    expect(Object.keys(file).sort()).toEqual(
      [
        'bytes',
        'created_at',
        'expires_at',
        'filename',
        'id',
        'object',
        'purpose',
        'status',
        'status_details',
      ].sort(),
    );
    expect(file).toMatchObject({ object: 'file', bytes: TEXTS.g3.length, filename: 'g3.txt' });
    const made = (await raw('POST', `/vector_stores/${store}/file_batches`, { file_ids: [file.id] })).body;
    expect(Object.keys(made).sort()).toEqual(
      ['created_at', 'file_counts', 'id', 'object', 'status', 'vector_store_id'].sort(),
    );
    expect(made).toMatchObject({ object: 'vector_store.files_batch', vector_store_id: store });
    expect(made.file_counts.total).toBe(1);
    expect(made.file_counts.in_progress + made.file_counts.completed).toBe(1);
    const done = await waitFor(
      async () => {
        const b = (await raw('GET', `/vector_stores/${store}/file_batches/${made.id}`)).body;
        return b.status === 'completed' ? b : null;
      },
      'the batch to complete',
      30_000,
    );
    expect(done.file_counts).toEqual({ in_progress: 0, completed: 1, failed: 0, cancelled: 0, total: 1 });
    expect((await raw('GET', `/vector_stores/${store}`)).body.file_counts.total).toBe(2);
    const del = await raw('DELETE', `/vector_stores/${store}/files/${file.id}`);
    expect(del.body).toEqual({ id: file.id, object: 'vector_store.file.deleted', deleted: true });
    expect((await raw('DELETE', `/files/${file.id}`)).body).toEqual({
      id: file.id,
      object: 'file',
      deleted: true,
    });
  }, 60_000);

  it('embeddings: OpenAI’s list of embedding objects, float or base64 of the same vector', async () => {
    const input = ['gate keeper', 'noon'];
    const f = (await raw('POST', '/embeddings', { model: HASH_MODEL, input, encoding_format: 'float' })).body;
    expect(f).toMatchObject({ object: 'list', model: HASH_MODEL });
    expect(f.data.map((d: { object: string; index: number }) => [d.object, d.index])).toEqual([
      ['embedding', 0],
      ['embedding', 1],
    ]);
    const b = (await raw('POST', '/embeddings', { model: HASH_MODEL, input, encoding_format: 'base64' }))
      .body;
    const decoded = Array.from(
      new Float32Array(new Uint8Array(Buffer.from(b.data[0].embedding, 'base64')).buffer),
    );
    expect(decoded).toEqual(f.data[0].embedding);
    expect(Object.keys(f.usage).sort()).toEqual(['prompt_tokens', 'total_tokens']);
  });

  it('streams SSE events named by their type, numbered, from response.created to response.completed', async () => {
    const res = await fetch(`${root}/v1/responses`, {
      method: 'POST',
      headers: { authorization: `Bearer ${R.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        model,
        input: [{ role: 'user', content: [{ type: 'input_text', text: 'Who keeps gate G2?' }] }],
        instructions: 'Answer briefly.',
        tools: [{ type: 'file_search', vector_store_ids: [store] }],
        max_output_tokens: 4,
        temperature: 0,
        stream: true,
        store: false,
      }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const events = await collectSse(res);
    for (const [i, e] of events.entries()) {
      const data = e.data as { type: string; sequence_number: number };
      expect(data.type).toBe(e.event);
      expect(data.sequence_number).toBe(i);
    }
    const created = events[0].data as { response: Record<string, unknown> };
    expect(events[0].event).toBe('response.created');
    expect(created.response).toMatchObject({
      object: 'response',
      status: 'in_progress',
      output: [],
      instructions: 'Answer briefly.',
    });
    const names = events.map((e) => e.event);
    const at = (name: string) => names.indexOf(name);
    expect(at('response.file_search_call.in_progress')).toBeLessThan(
      at('response.file_search_call.searching'),
    );
    expect(at('response.file_search_call.searching')).toBeLessThan(at('response.file_search_call.completed'));
    expect(at('response.file_search_call.completed')).toBeLessThan(at('response.output_text.delta'));
    expect(at('response.output_text.delta')).toBeGreaterThan(0);
    const last = events.at(-1)!;
    expect(['response.completed', 'response.incomplete']).toContain(last.event);
    const final = (last.data as { response: { id: string; output: { type: string }[]; store: boolean } })
      .response;
    expect(final.output.map((o) => o.type)).toEqual(['file_search_call', 'message']);
    expect(final.store).toBe(false);
    // store: false keeps nothing
    expect((await raw('GET', `/responses/${final.id}`)).status).toBe(404);
  }, 60_000);

  it('errors carry OpenAI’s error object on these routes, kvrag’s envelope elsewhere', async () => {
    const res = await raw('POST', '/responses', { model, input: 7 });
    expect(res.status).toBe(400);
    expect(Object.keys(res.body.error).sort()).toEqual(['code', 'message', 'param', 'request_id', 'type']);
    expect(res.body.error).toMatchObject({
      type: 'invalid_request_error',
      param: 'input',
      code: 'bad_request',
    });
    expect(res.body.error.request_id).toBe(res.headers.get('x-request-id'));
    const anon = await call(null, 'GET', '/v1/vector_stores');
    expect(anon.status).toBe(401);
    expect(anon.body.error).toMatchObject({ type: 'authentication_error', param: null });
    const own = await call(null, 'GET', '/v1/collections');
    expect(own.status).toBe(401);
    expect(own.body.error.code).toBe('unauthorized');
    expect(own.body.error.type).toBeUndefined();
  });
});

it('README’s example (docs/openai-client.mjs) runs unchanged against kvrag serve', async () => {
  const { key } = await tenant('openai-example');
  const out = await new Promise<{ code: number | null; stdout: string; stderr: string }>((done) => {
    let stdout = '';
    let stderr = '';
    const p = spawn(process.execPath, [resolve(REPO_ROOT, 'docs/openai-client.mjs')], {
      cwd: REPO_ROOT,
      env: { ...cleanEnv, OPENAI_BASE_URL: `${root}/v1`, OPENAI_API_KEY: key },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    p.stdout?.on('data', (d) => {
      stdout += d;
    });
    p.stderr?.on('data', (d) => {
      stderr += d;
    });
    p.once('exit', (code) => done({ code, stdout, stderr }));
  });
  expect(out.code, out.stderr).toBe(0);
  const lines = out.stdout.split('\n');
  expect(lines).toContain('file completed');
  expect(lines.find((l) => l.startsWith('search '))).toMatch(/^search records\.txt \d\.\d{3}$/);
  const answer = /^answer (".*") (\d+)$/.exec(lines.find((l) => l.startsWith('answer ')) ?? '');
  expect(answer).not.toBeNull();
  // the retrieved chunk came from its stored KV artifact: more prompt tokens from cache than the system
  // prefix holds (the bundled model is byte-level: one token per byte)
  expect(Number(answer![2])).toBeGreaterThan(Buffer.byteLength(DEFAULT_SYSTEM));
  // greedy: the streamed answer is the plain one
  expect(lines.find((l) => l.startsWith('streamed '))).toBe(`streamed ${answer![1]}`);
  expect(lines.at(-2)).toBe('cleaned up');
}, 120_000);
