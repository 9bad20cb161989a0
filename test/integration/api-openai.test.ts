// OpenAI's platform routes against the API harness (PGlite on the wire, filesystem blobs, no workers: an
// attached file stays `in_progress`, which is what batch cancel and the counts need): cancel, expiry on a
// pinned clock, conflicts, nothing written by refused requests, collections as vector stores, embeddings.
import { and, eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/client.ts';
import { documents } from '../../src/db/schema.ts';
import { isOpenAiPath } from '../../src/routes/openai/errors.ts';
import {
  FileBatch,
  FileObject,
  VectorStore,
  VectorStoreFile,
  VectorStoreSearchPage,
} from '../../src/routes/openai/openapi.ts';
import { type Harness, startApiHarness } from '../helpers/api-harness.ts';

let h: Harness;
let T: { id: string; key: string };
let clock = new Date('2030-01-01T00:00:00Z');

// biome-ignore lint/suspicious/noExplicitAny: JSON bodies under test, read field by field
const call = <R = Record<string, any>>(status: number, method: string, path: string, json?: unknown) =>
  h.expectJson<R>(status, method, `/v1${path}`, { key: T.key, json });

async function upload(text: string, name = 'f.txt'): Promise<string> {
  const form = new FormData();
  form.set('file', new File([text], name, { type: 'text/plain' }));
  form.set('purpose', 'assistants');
  return (await h.expectJson<{ id: string }>(200, 'POST', '/v1/files', { key: T.key, body: form })).id;
}

type Counts = Record<'in_progress' | 'completed' | 'failed' | 'cancelled' | 'total', number>;

beforeAll(async () => {
  h = await startApiHarness();
  h.api.now = () => clock;
  T = await h.tenant('openai-api');
}, 60_000);
afterAll(async () => {
  await h?.close();
});

describe('file batches', () => {
  it('counts files in progress, and cancel removes them (documents, copies) with gc jobs', async () => {
    const store = await call<{ id: string }>(200, 'POST', '/vector_stores', { name: 'batch' });
    const files = [await upload('batch one'), await upload('batch two')];
    const batch = await call<{ id: string; status: string; file_counts: Counts }>(
      200,
      'POST',
      `/vector_stores/${store.id}/file_batches`,
      { file_ids: files, attributes: { lot: 7 } },
    );
    expect(batch.status).toBe('in_progress');
    expect(batch.file_counts).toEqual({ in_progress: 2, completed: 0, failed: 0, cancelled: 0, total: 2 });
    const listed = await call<{ data: { id: string; status: string; attributes: unknown }[] }>(
      200,
      'GET',
      `/vector_stores/${store.id}/file_batches/${batch.id}/files?filter=in_progress`,
    );
    expect(listed.data.map((f) => f.id).sort()).toEqual([...files].sort());
    expect(listed.data.every((f) => JSON.stringify(f.attributes) === '{"lot":7}')).toBe(true);
    const copies = await h.db.db.select().from(documents).where(eq(documents.batchId, batch.id));
    expect(copies).toHaveLength(2);

    const cancelled = await call<{ status: string; file_counts: Counts }>(
      200,
      'POST',
      `/vector_stores/${store.id}/file_batches/${batch.id}/cancel`,
    );
    expect(cancelled.status).toBe('cancelled');
    expect(cancelled.file_counts).toEqual({
      in_progress: 0,
      completed: 0,
      failed: 0,
      cancelled: 2,
      total: 2,
    });
    expect(await h.db.db.select().from(documents).where(eq(documents.batchId, batch.id))).toEqual([]);
    const { blobs } = await h.snapshot();
    for (const d of copies) expect(blobs).not.toContain(d.objectKey);
    for (const id of files) expect(blobs).toContain(`uploads/${T.id}/files/${id}`);
    const gc = await queryRows<{ job_id: string }>(
      h.db.db,
      sql`select job_id from outbox where queue = 'gc' and job_id in (${sql.join(
        copies.map((d) => sql`${`gc-${d.id}`}`),
        sql`, `,
      )})`,
    );
    expect(gc).toHaveLength(2);
    const store2 = await call<{ file_counts: Counts; status: string }>(
      200,
      'GET',
      `/vector_stores/${store.id}`,
    );
    expect(store2.file_counts).toEqual({ in_progress: 0, completed: 0, failed: 0, cancelled: 2, total: 2 });
    // the files themselves stay, and can be attached again
    await call(200, 'POST', `/vector_stores/${store.id}/files`, { file_id: files[0] });
  });

  it('refuses a file listed twice (400), identical content (409), a missing file (404), writing nothing', async () => {
    const store = await call<{ id: string }>(200, 'POST', '/vector_stores', { name: 'conflicts' });
    const a = await upload('same words');
    const b = await upload('same words', 'copy.txt');
    const before = await h.snapshot();
    const path = `/vector_stores/${store.id}/file_batches`;
    expect(
      (await call<{ error: { code: string } }>(400, 'POST', path, { file_ids: [a, a] })).error.code,
    ).toBe('bad_request');
    const twin = await call<{ error: { message: string; type: string } }>(409, 'POST', path, {
      file_ids: [a, b],
    });
    expect(twin.error.type).toBe('invalid_request_error');
    const missing = crypto.randomUUID();
    const gone = await call<{ error: { message: string } }>(404, 'POST', path, { file_ids: [a, missing] });
    expect(gone.error.message).toContain(missing);
    expect(await h.snapshot()).toEqual(before);
    await call(200, 'POST', `/vector_stores/${store.id}/files`, { file_id: a });
    const again = await call<{ error: { message: string } }>(
      409,
      'POST',
      `/vector_stores/${store.id}/files`,
      {
        file_id: b,
      },
    );
    expect(again.error.message).toContain(a);
  });
});

describe('vector stores', () => {
  it('expire after their days without use: status expired, search refused, until expires_after is cleared', async () => {
    const created = await call<{ id: string; expires_at: number; expires_after: unknown; status: string }>(
      200,
      'POST',
      '/vector_stores',
      { name: 'short-lived', expires_after: { anchor: 'last_active_at', days: 1 } },
    );
    expect(created.expires_after).toEqual({ anchor: 'last_active_at', days: 1 });
    expect(created.expires_at).toBe(Math.floor(clock.getTime() / 1000) + 86_400);
    expect(created.status).toBe('completed');
    clock = new Date(clock.getTime() + 2 * 86_400_000);
    expect((await call<{ status: string }>(200, 'GET', `/vector_stores/${created.id}`)).status).toBe(
      'expired',
    );
    await call(400, 'POST', `/vector_stores/${created.id}/search`, { query: 'anything' });
    const kept = await call<{ status: string; expires_at: null }>(
      200,
      'POST',
      `/vector_stores/${created.id}`,
      {
        expires_after: null,
      },
    );
    expect(kept).toMatchObject({ status: 'completed', expires_at: null });
    await call(200, 'POST', `/vector_stores/${created.id}/search`, { query: 'anything' });
  });

  it('a collection made through /v1/collections is a vector store; its documents are its files', async () => {
    const col = await call<{ id: string }>(201, 'POST', '/collections', {
      name: 'plain',
      embedding: { dimension: 256 },
    });
    const doc = await call<{ id: string }>(201, 'POST', `/collections/${col.id}/documents`, {
      text: 'plain text',
    });
    const v = await call<{ name: string; file_counts: Counts; last_active_at: null }>(
      200,
      'GET',
      `/vector_stores/${col.id}`,
    );
    expect(v).toMatchObject({ name: 'plain', last_active_at: null });
    expect(v.file_counts).toEqual({ in_progress: 1, completed: 0, failed: 0, cancelled: 0, total: 1 });
    const f = await call<{ id: string; status: string }>(
      200,
      'GET',
      `/vector_stores/${col.id}/files/${doc.id}`,
    );
    expect(f).toMatchObject({ id: doc.id, status: 'in_progress' });
    const renamed = await call<{ name: string }>(200, 'POST', `/vector_stores/${col.id}`, {
      name: 'nicer name',
    });
    expect(renamed.name).toBe('nicer name');
    // the embeddings of a store's provider: its dimension, float and base64 alike
    const floats = await call<{ data: { embedding: number[] }[]; model: string }>(
      200,
      'POST',
      '/embeddings',
      {
        model: col.id,
        input: ['plain text'],
      },
    );
    expect(floats.data[0].embedding).toHaveLength(256);
    const b64 = await call<{ data: { embedding: string }[] }>(200, 'POST', '/embeddings', {
      model: col.id,
      input: 'plain text',
      encoding_format: 'base64',
    });
    const bytes = Buffer.from(b64.data[0].embedding, 'base64');
    const decoded = Array.from(new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4));
    expect(decoded).toEqual(floats.data[0].embedding.map((x) => Math.fround(x)));
    const bad = await call<{ error: { param: string } }>(400, 'POST', '/embeddings', {
      model: col.id,
      input: 'x',
      dimensions: 384,
    });
    expect(bad.error.param).toBe('dimensions');
    await call(404, 'POST', '/embeddings', { model: 'text-embedding-3-small', input: 'x' });
  });
});

describe('files', () => {
  it('refused uploads write nothing: not multipart, no purpose, an unsupported format, too large', async () => {
    const before = await h.snapshot();
    await call(415, 'POST', '/files', { text: 'json is not a file upload' });
    const noPurpose = new FormData();
    noPurpose.set('file', new File(['x'], 'x.txt', { type: 'text/plain' }));
    expect((await h.call('POST', '/v1/files', { key: T.key, body: noPurpose })).status).toBe(400);
    const binary = new FormData();
    binary.set('file', new File([new Uint8Array([1, 0, 2])], 'x.txt', { type: 'text/plain' }));
    binary.set('purpose', 'assistants');
    expect((await h.call('POST', '/v1/files', { key: T.key, body: binary })).status).toBe(400);
    const big = new FormData();
    big.set('file', new File(['x'.repeat(300 * 1024)], 'big.txt', { type: 'text/plain' }));
    big.set('purpose', 'assistants');
    expect((await h.call('POST', '/v1/files', { key: T.key, body: big })).status).toBe(413);
    expect(await h.snapshot()).toEqual(before);
  });

  it('deleting a file removes it from every vector store, with gc jobs for both copies', async () => {
    const id = await upload('attached twice');
    const stores = [
      await call<{ id: string }>(200, 'POST', '/vector_stores', { name: 's1', file_ids: [id] }),
      await call<{ id: string }>(200, 'POST', '/vector_stores', { name: 's2', file_ids: [id] }),
    ];
    const docs = await h.db.db.select().from(documents).where(eq(documents.fileId, id));
    expect(docs).toHaveLength(2);
    await call(200, 'DELETE', `/files/${id}`);
    for (const s of stores) await call(404, 'GET', `/vector_stores/${s.id}/files/${id}`);
    expect(
      await h.db.db
        .select()
        .from(documents)
        .where(and(eq(documents.tenantId, T.id), eq(documents.fileId, id))),
    ).toEqual([]);
    const gc = await queryRows<{ payload: { blobKeys: string[] } }>(
      h.db.db,
      sql`select payload from outbox where queue = 'gc' and job_id in (${`gc-${id}`}, ${`gc-${docs[0].id}`}, ${`gc-${docs[1].id}`})`,
    );
    expect(gc.flatMap((r) => r.payload.blobKeys).sort()).toEqual(
      [`uploads/${T.id}/files/${id}`, docs[0].objectKey, docs[1].objectKey].sort(),
    );
    await call(404, 'GET', `/files/${id}`);
  });

  it('answers unknown paths under the OpenAI prefixes in OpenAI’s error shape', async () => {
    const res = await h.call('GET', '/v1/files/x/y/z', { key: T.key });
    expect(res.status).toBe(404);
    const body = (await res.json()) as { error: Record<string, unknown> };
    expect(body.error).toMatchObject({ type: 'invalid_request_error', code: 'not_found', param: null });
  });
});

describe('/openapi.json', () => {
  it('documents every OpenAI route, and the objects are the documented shapes, no field more', async () => {
    const doc = await h.expectJson<{ paths: Record<string, Record<string, unknown>> }>(
      200,
      'GET',
      '/openapi.json',
      {
        key: null,
      },
    );
    let n = 0;
    for (const r of h.app.routes) {
      if (r.method === 'ALL' || !isOpenAiPath(r.path)) continue;
      const p = r.path.replace(/:(\w+)/g, '{$1}');
      expect(doc.paths[p]?.[r.method.toLowerCase()], `${r.method} ${p}`).toBeDefined();
      n++;
    }
    // files 5, vector stores 6 (search included), store files 6, batches 4, responses 4, embeddings 1
    expect(n).toBe(26);

    const file = await upload('documented shapes');
    const store = await call(200, 'POST', '/vector_stores', {
      name: 'doc',
      expires_after: { anchor: 'last_active_at', days: 3 },
    });
    const attached = await call(200, 'POST', `/vector_stores/${store.id}/files`, {
      file_id: file,
      chunking_strategy: { type: 'static', static: { max_chunk_size_tokens: 200, chunk_overlap_tokens: 20 } },
    });
    expect(attached.chunking_strategy).toEqual({
      type: 'static',
      static: { max_chunk_size_tokens: 200, chunk_overlap_tokens: 20 },
    });
    const other = await upload('another documented shape');
    const batch = await call(200, 'POST', `/vector_stores/${store.id}/file_batches`, { file_ids: [other] });
    const page = await call(200, 'POST', `/vector_stores/${store.id}/search`, { query: 'shapes' });
    for (const [schema, value] of [
      [FileObject, await call(200, 'GET', `/files/${file}`)],
      [VectorStore, await call(200, 'GET', `/vector_stores/${store.id}`)],
      [VectorStoreFile, attached],
      [FileBatch, batch],
      [VectorStoreSearchPage, page],
    ] as const)
      expect(schema.strict().safeParse(value).error).toBeUndefined();
  });
});
