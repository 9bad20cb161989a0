// The official `openai` npm SDK, unchanged and through its public methods only, against the API served on a
// real port (@hono/node-server over the answer harness: PGlite on the wire, filesystem blobs, in-process
// workers and a real runner): Files, Vector Stores (files, uploadAndPoll / createAndPoll, file batches,
// search with a compound filter, auto-pagination), Responses with file_search (plain and streamed,
// citations, retrieve, previous_response_id, delete), every delete, and the SDK's typed errors.
import type { AddressInfo } from 'node:net';
import { type ServerType, serve } from '@hono/node-server';
import { eq, sql } from 'drizzle-orm';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { citationMarks } from '../../src/answer/prompt.ts';
import { queryRows } from '../../src/db/client.ts';
import { responses } from '../../src/db/schema.ts';
import { type AnswerHarness, startAnswerHarness } from '../helpers/answer-harness.ts';
import { collectSse } from '../helpers/sse.ts';
import { waitFor } from '../helpers/job-queue-suite.ts';

const TEXTS = {
  g1: 'Gate G1 opens at dawn. The gate keeper of G1 is called Ada.',
  g2: 'Gate G2 opens at noon. The gate keeper of G2 is called Bo.',
  g3: 'Gate G3 opens at dusk. The gate keeper of G3 is called Cy.',
  g4: 'Gate G4 never opens. Nobody keeps gate G4.',
};
const POLL = { pollIntervalMs: 50 };

let h: AnswerHarness;
let server: ServerType;
let base: string;
let A: { id: string; key: string };
let client: OpenAI;
let other: OpenAI;

const txt = (name: string, text: string) => toFile(Buffer.from(text), name, { type: 'text/plain' });
const all = async <T>(page: AsyncIterable<T>) => {
  const out: T[] = [];
  for await (const x of page) out.push(x);
  return out;
};

beforeAll(async () => {
  h = await startAnswerHarness();
  A = await h.tenant('openai-a');
  const B = await h.tenant('openai-b');
  server = serve({ fetch: h.app.fetch, hostname: '127.0.0.1', port: 0 });
  await new Promise<void>((r) => server.once('listening', () => r()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  client = new OpenAI({ apiKey: A.key, baseURL: base, maxRetries: 0 });
  other = new OpenAI({ apiKey: B.key, baseURL: base, maxRetries: 0 });
}, 60_000);
afterAll(async () => {
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  await h?.close();
});

describe('openai SDK → Files and Vector Stores', () => {
  let vs: OpenAI.VectorStores.VectorStore;
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
      client.vectorStores.fileBatches.listFiles(batch.id, { vector_store_id: vs.id }),
    );
    const byName = new Map<string, string>();
    for (const f of inBatch) byName.set((await client.files.retrieve(f.id)).filename, f.id);
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
    const stores = await all(client.vectorStores.list({ limit: 1 }));
    expect(stores.map((s) => s.id)).toContain(vs.id);
    const content = await all(client.vectorStores.files.content(ids.g2, { vector_store_id: vs.id }));
    expect(content.map((p) => p.text).join('')).toBe(TEXTS.g2);
  });

  it('searches with a compound filter', async () => {
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
  });

  describe('responses with file_search', () => {
    const params = () => ({
      model: h.served.id,
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
    let first: OpenAI.Responses.Response;

    it('answers with a file_search_call and a message whose citations name the store’s files', async () => {
      first = await client.responses.create(params());
      expect(first.object).toBe('response');
      expect(['completed', 'incomplete']).toContain(first.status);
      const [call, msg] = first.output;
      expect(call.type).toBe('file_search_call');
      if (call.type !== 'file_search_call') return;
      expect(call.status).toBe('completed');
      expect(call.queries).toEqual(['When does gate G2 open?']);
      expect(call.results!.length).toBeGreaterThan(0);
      for (const x of call.results!) expect(Object.values(ids)).toContain(x.file_id);
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
    }, 60_000);

    it('continues a conversation with previous_response_id, then deletes the responses', async () => {
      const next = await client.responses.create({
        ...params(),
        previous_response_id: first.id,
        input: 'And gate G3?',
      });
      expect(next.previous_response_id).toBe(first.id);
      const [row] = await h.db.db.select().from(responses).where(eq(responses.id, next.id));
      expect(row.conversation.map((m) => m.role)).toEqual(['user', 'assistant', 'user', 'assistant']);
      expect(row.conversation[0].content).toBe('When does gate G2 open?');
      expect(row.conversation[1].content).toBe(first.output_text);
      expect(row.conversation[2].content).toBe('And gate G3?');

      await client.responses.delete(next.id);
      await expect(client.responses.retrieve(next.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
      // the first one stays until deleted itself
      expect((await client.responses.retrieve(first.id)).id).toBe(first.id);
      await client.responses.delete(first.id);
    }, 60_000);
  });

  describe('errors as the SDK’s typed errors', () => {
    it('404 for a wrong id and for another tenant’s ids (never 403)', async () => {
      const missing = crypto.randomUUID();
      const e = await client.vectorStores.retrieve(missing).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(OpenAI.NotFoundError);
      expect(e).toMatchObject({ status: 404, type: 'invalid_request_error', code: 'not_found' });
      for (const call of [
        () => other.vectorStores.retrieve(vs.id),
        () => other.files.retrieve(ids.g1),
        () => other.files.content(ids.g1),
        () => other.vectorStores.files.retrieve(ids.g1, { vector_store_id: vs.id }),
        () => other.vectorStores.search(vs.id, { query: 'gate' }),
        () => other.vectorStores.files.create(vs.id, { file_id: ids.g1 }),
        () =>
          other.responses.create({
            model: h.served.id,
            input: 'hi',
            tools: [{ type: 'file_search', vector_store_ids: [vs.id] }],
          }),
      ])
        await expect(call()).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    });

    it('400 for bad input (with the field in param), 409 for a file attached twice', async () => {
      const bad = await client.files
        .create({ file: await txt('x.txt', 'x'), purpose: 'nope' as 'assistants' })
        .catch((x: unknown) => x);
      expect(bad).toBeInstanceOf(OpenAI.BadRequestError);
      expect(bad).toMatchObject({ param: 'purpose' });
      await expect(
        client.vectorStores.search(vs.id, { query: 'gate', rewrite_query: true }),
      ).rejects.toBeInstanceOf(OpenAI.BadRequestError);
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

  it('deletes: a store file, a file (gone from the store too), the store; then gc empties the tenant’s uploads', async () => {
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
    for (const id of [ids.g1, ids.g3, ids.g4]) await client.files.delete(id);
    expect(await all(client.files.list())).toEqual([]);
    await waitFor(
      async () => {
        for await (const b of h.blobs.list(`uploads/${A.id}/`)) return !b;
        return true;
      },
      'the tenant’s uploads to be collected',
      20_000,
    );
    const [left] = await queryRows<{ n: number }>(
      h.db.db,
      sql`select count(*)::int as n from documents where tenant_id = ${A.id}`,
    );
    expect(Number(left.n)).toBe(0);
  }, 60_000);
});

// A second client written against the raw HTTP shapes of OpenAI's API reference: the fields the SDK does
// not type-check (object names, file_counts, SSE event names and order, the error object's keys).
describe('raw HTTP shapes', () => {
  const call = (method: string, path: string, body?: unknown) =>
    fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${A.key}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  let store: string;
  let doc: string;

  beforeAll(async () => {
    // a collection made through kvrag's own API is a vector store, its documents its files
    ({ collection: store, document: doc } = await h.ingest(A.key, TEXTS.g2, 'g2.txt'));
  }, 60_000);

  it('vector store, vector store file and list objects', async () => {
    const v = await (await call('GET', `/vector_stores/${store}`)).json();
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
      status: 'completed',
      usage_bytes: TEXTS.g2.length,
      file_counts: { in_progress: 0, completed: 1, failed: 0, cancelled: 0, total: 1 },
      expires_at: null,
    });
    expect(Number.isInteger(v.created_at)).toBe(true);
    const list = await (await call('GET', `/vector_stores/${store}/files`)).json();
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

  it('streams SSE events named by their type, numbered, from response.created to response.completed', async () => {
    const res = await call('POST', '/responses', {
      model: h.served.id,
      input: [{ role: 'user', content: [{ type: 'input_text', text: 'Who keeps gate G2?' }] }],
      instructions: 'Answer briefly.',
      tools: [{ type: 'file_search', vector_store_ids: [store] }],
      max_output_tokens: 4,
      temperature: 0,
      stream: true,
      store: false,
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
    const last = events.at(-1)!;
    expect(['response.completed', 'response.incomplete']).toContain(last.event);
    const final = (last.data as { response: { output: { type: string }[]; usage: unknown; store: boolean } })
      .response;
    expect(final.output.map((o) => o.type)).toEqual(['file_search_call', 'message']);
    expect(final.store).toBe(false);
    // store: false keeps nothing
    const id = (final as unknown as { id: string }).id;
    expect((await call('GET', `/responses/${id}`)).status).toBe(404);
  }, 60_000);

  it('errors carry OpenAI’s error object', async () => {
    const res = await call('POST', '/responses', { model: h.served.id, input: 7 });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: Record<string, unknown> };
    expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'param', 'request_id', 'type']);
    expect(body.error).toMatchObject({ type: 'invalid_request_error', param: 'input', code: 'bad_request' });
    expect(body.error.request_id).toBe(res.headers.get('x-request-id'));
    const anon = await fetch(`${base}/vector_stores`);
    expect(anon.status).toBe(401);
    expect(((await anon.json()) as { error: Record<string, unknown> }).error).toMatchObject({
      type: 'authentication_error',
      param: null,
    });
  });
});
