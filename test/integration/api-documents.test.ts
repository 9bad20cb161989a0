// /v1/collections/:id/documents end to end: JSON and multipart uploads, the document row and its ingest
// outbox row written together, idempotent re-upload, size/type/shape refusals that leave no rows or
// blobs, list with pagination and status filter, delete (chunks cascade, blob gone, gc scheduled),
// job status, and tenant isolation on every route.
import { and, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collections, documents, outbox } from '../../src/db/schema.ts';
import { MemoryJobQueue } from '../../src/queue/memory.ts';
import { envelope, type Harness, startApiHarness } from '../helpers/api-harness.ts';
import { insertChunks, sha256 } from '../helpers/db-fixtures.ts';
import { minimalPdf } from '../helpers/minimal-pdf.ts';

type Doc = {
  id: string;
  status: string;
  filename: string;
  content_type: string;
  bytes: number;
  sha256: string;
  attributes: Record<string, unknown>;
  ingest_job_id: string;
};
type Page = { data: Doc[]; has_more: boolean; last_id: string | null };

const MAX_UPLOAD = 64 * 1024;
let h: Harness;
let a: { id: string; key: string };
let b: { id: string; key: string };
let coll: string;
let collB: string;
beforeAll(async () => {
  h = await startApiHarness({ maxUploadBytes: MAX_UPLOAD });
  a = await h.tenant('docs-a');
  b = await h.tenant('docs-b');
  coll = (
    await h.expectJson<{ id: string }>(201, 'POST', '/v1/collections', {
      key: a.key,
      json: { name: 'c', embedding: { dimension: 256 } },
    })
  ).id;
  collB = (
    await h.expectJson<{ id: string }>(201, 'POST', '/v1/collections', { key: b.key, json: { name: 'c' } })
  ).id;
});
afterAll(async () => {
  await h?.close();
});

const docsPath = (c = coll) => `/v1/collections/${c}/documents`;
const uploadJson = (json: unknown, key = a.key, c = coll) => h.call('POST', docsPath(c), { key, json });
function multipart(file: Blob, name: string, extra: Record<string, string> = {}): FormData {
  const form = new FormData();
  form.set('file', file, name);
  for (const [k, v] of Object.entries(extra)) form.set(k, v);
  return form;
}

describe('upload', () => {
  it('JSON text: 201, status queued, blob stored under the tenant, row and ingest outbox row together', async () => {
    const text = 'Kubernetes operators reconcile desired state.';
    const res = await uploadJson({ text, filename: 'ops.md', attributes: { team: 'infra', year: 2024 } });
    expect(res.status).toBe(201);
    const doc = (await res.json()) as Doc;
    expect(doc).toMatchObject({
      object: 'document',
      collection_id: coll,
      filename: 'ops.md',
      content_type: 'text/plain; charset=utf-8',
      bytes: Buffer.byteLength(text),
      sha256: sha256(text),
      status: 'queued',
      attributes: { team: 'infra', year: 2024 },
      last_error: null,
    });
    const key = `uploads/${a.id}/${coll}/${doc.id}`;
    expect(new TextDecoder().decode((await h.blobs.get(key))!)).toBe(text);
    const [job] = await h.db.db.select().from(outbox).where(eq(outbox.jobId, doc.ingest_job_id));
    expect(job).toMatchObject({
      queue: 'ingest',
      deliveredAt: null,
      payload: {
        v: 1,
        tenantId: a.id,
        collectionId: coll,
        documentId: doc.id,
        objectKey: key,
        filename: 'ops.md',
      },
    });
    const content = await h.call('GET', `${docsPath()}/${doc.id}/content`, { key: a.key });
    expect(await content.text()).toBe(text);
  });

  it('multipart files of each supported type; PDF kept byte for byte', async () => {
    const pdf = minimalPdf([['Hello PDF']]);
    const cases: [Blob, string, string][] = [
      [new Blob(['# Title\n\nbody'], { type: 'text/markdown' }), 'readme.md', 'text/markdown'],
      [new Blob(['<html><body><p>hi</p></body></html>'], { type: 'text/html' }), 'page.html', 'text/html'],
      [new Blob(['{"a": "b"}'], { type: 'application/json' }), 'data.json', 'application/json'],
      [new Blob(['plain words']), 'notes.txt', 'application/octet-stream'],
      [new Blob([pdf as Uint8Array<ArrayBuffer>], { type: 'application/pdf' }), 'doc.pdf', 'application/pdf'],
    ];
    for (const [blob, name, type] of cases) {
      const res = await h.call('POST', docsPath(), {
        key: a.key,
        body: multipart(blob, `dir/../${name}`, { attributes: '{"kind":"file"}' }),
      });
      expect(res.status, name).toBe(201);
      const doc = (await res.json()) as Doc;
      expect(doc).toMatchObject({
        filename: name,
        content_type: type,
        bytes: blob.size,
        attributes: { kind: 'file' },
      });
    }
    const [row] = await h.db.db
      .select()
      .from(documents)
      .where(and(eq(documents.filename, 'doc.pdf'), eq(documents.tenantId, a.id)));
    expect(await h.blobs.get(row.objectKey!)).toEqual(pdf);
  });

  it('re-uploading identical content returns the existing document with 200 and writes nothing', async () => {
    const first = await uploadJson({ text: 'same bytes twice', filename: 'one.txt' });
    expect(first.status).toBe(201);
    const doc = (await first.json()) as Doc;
    const before = await h.snapshot();
    const again = await h.call('POST', docsPath(), {
      key: a.key,
      body: multipart(new Blob(['same bytes twice']), 'two.txt'),
    });
    expect(again.status).toBe(200);
    expect(((await again.json()) as Doc).id).toBe(doc.id);
    expect(await h.snapshot()).toEqual(before);
    // identical content in another tenant's collection is a different document
    const other = await uploadJson({ text: 'same bytes twice' }, b.key, collB);
    expect(other.status).toBe(201);
  });

  it('concurrent identical uploads make one document and one blob', async () => {
    const text = `raced upload ${Date.now()}`;
    const results = await Promise.all([0, 1, 2].map(() => uploadJson({ text })));
    const statuses = results.map((r) => r.status).sort();
    expect(statuses).toEqual([200, 200, 201]);
    const ids = new Set(await Promise.all(results.map(async (r) => ((await r.json()) as Doc).id)));
    expect(ids.size).toBe(1);
    const [id] = [...ids];
    const blobs = (await h.snapshot()).blobs.filter((k) => k.startsWith(`uploads/${a.id}/${coll}/`));
    expect(blobs).toContain(`uploads/${a.id}/${coll}/${id}`);
    const rows = await h.db.db
      .select()
      .from(documents)
      .where(eq(documents.contentHash, sha256(text)));
    expect(rows).toHaveLength(1);
    // every blob in the collection belongs to a document row
    const all = await h.db.db
      .select({ k: documents.objectKey })
      .from(documents)
      .where(eq(documents.collectionId, coll));
    expect(blobs.sort()).toEqual(all.map((r) => r.k!).sort());
  });

  it('bad uploads are 4xx envelopes and leave no rows and no blobs', async () => {
    const before = await h.snapshot();
    const big = 'x'.repeat(MAX_UPLOAD + 1);
    const cases: [string, () => Promise<Response>, number][] = [
      [
        'oversize multipart',
        () => h.call('POST', docsPath(), { key: a.key, body: multipart(new Blob([big]), 'big.txt') }),
        413,
      ],
      ['oversize JSON text', () => uploadJson({ text: big }), 413],
      [
        'oversize raw body',
        () => h.call('POST', docsPath(), { key: a.key, json: { text: 'y'.repeat(MAX_UPLOAD + 70 * 1024) } }),
        413,
      ],
      [
        'unsupported type',
        () =>
          h.call('POST', docsPath(), {
            key: a.key,
            body: multipart(new Blob(['PK\u0003\u0004'], { type: 'application/zip' }), 'a.zip'),
          }),
        415,
      ],
      [
        'unsupported extension',
        () => h.call('POST', docsPath(), { key: a.key, body: multipart(new Blob(['data']), 'a.exe') }),
        415,
      ],
      [
        'fake PDF',
        () =>
          h.call('POST', docsPath(), {
            key: a.key,
            body: multipart(new Blob(['not a pdf'], { type: 'application/pdf' }), 'a.pdf'),
          }),
        400,
      ],
      [
        'binary as text',
        () =>
          h.call('POST', docsPath(), {
            key: a.key,
            body: multipart(new Blob([new Uint8Array([104, 0, 105])]), 'a.txt'),
          }),
        400,
      ],
      [
        'empty file',
        () => h.call('POST', docsPath(), { key: a.key, body: multipart(new Blob([]), 'a.txt') }),
        400,
      ],
      [
        'no file field',
        () =>
          h.call('POST', docsPath(), {
            key: a.key,
            body: (() => {
              const f = new FormData();
              f.set('text', 'x');
              return f;
            })(),
          }),
        400,
      ],
      [
        'bad attributes',
        () =>
          h.call('POST', docsPath(), {
            key: a.key,
            body: multipart(new Blob(['ok']), 'a.txt', { attributes: '{"bad key": 1}' }),
          }),
        400,
      ],
      [
        'attributes not JSON',
        () =>
          h.call('POST', docsPath(), {
            key: a.key,
            body: multipart(new Blob(['ok']), 'a.txt', { attributes: '{' }),
          }),
        400,
      ],
      [
        'malformed JSON',
        () =>
          h.call('POST', docsPath(), {
            key: a.key,
            body: '{"text": "x"',
            headers: { 'content-type': 'application/json' },
          }),
        400,
      ],
      ['missing text', () => uploadJson({ filename: 'a.txt' }), 400],
      [
        'malformed multipart',
        () =>
          h.call('POST', docsPath(), {
            key: a.key,
            body: '--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\nunterminated',
            headers: { 'content-type': 'multipart/form-data; boundary=xyz' },
          }),
        400,
      ],
      [
        'a file part whose Content-Type is over 255 characters',
        () =>
          h.call('POST', docsPath(), {
            key: a.key,
            body: multipart(
              new Blob(['ok'], { type: `text/plain; charset=utf-8; x=${'y'.repeat(300)}` }),
              'a.txt',
            ),
          }),
        400,
      ],
      [
        'a request Content-Type over 255 characters',
        () =>
          h.call('POST', docsPath(), {
            key: a.key,
            body: multipart(new Blob(['ok']), 'a.txt'),
            headers: { 'content-type': `multipart/form-data; boundary=${'b'.repeat(300)}` },
          }),
        400,
      ],
      ['PDF as JSON text', () => uploadJson({ text: '%PDF-1.4', content_type: 'application/pdf' }), 400],
      [
        'wrong content type',
        () =>
          h.call('POST', docsPath(), { key: a.key, body: 'text', headers: { 'content-type': 'text/plain' } }),
        415,
      ],
      [
        'unknown collection',
        () => uploadJson({ text: 'x' }, a.key, '00000000-0000-4000-8000-000000000000'),
        404,
      ],
      ['another tenant’s collection', () => uploadJson({ text: 'x' }, a.key, collB), 404],
    ];
    for (const [name, run, status] of cases) {
      const res = await run();
      expect(res.status, name).toBe(status);
      await envelope(res);
    }
    expect(await h.snapshot()).toEqual(before);
  });
});

describe('upload racing a collection delete', () => {
  it('a collection deleted while its upload is in flight: 404, and the blob is removed again', async () => {
    const c = (
      await h.expectJson<{ id: string }>(201, 'POST', '/v1/collections', {
        key: a.key,
        json: { name: 'vanishing' },
      })
    ).id;
    const real = h.api.blobs;
    // the blob store is the real one; its put lets the delete commit first, as a concurrent request would
    h.api.blobs = Object.assign(Object.create(real) as typeof real, {
      put: async (...args: Parameters<typeof real.put>) => {
        await h.db.db.delete(collections).where(eq(collections.id, c));
        return real.put(...args);
      },
    });
    try {
      const res = await uploadJson({ text: 'arrives too late' }, a.key, c);
      expect(res.status).toBe(404);
      expect((await envelope(res)).code).toBe('not_found');
    } finally {
      h.api.blobs = real;
    }
    expect((await h.snapshot()).blobs.filter((k) => k.includes(c))).toEqual([]);
    expect(await h.db.db.select().from(documents).where(eq(documents.collectionId, c))).toEqual([]);
  });
});

describe('list, get, delete', () => {
  it('lists with pagination and a status filter', async () => {
    const c = (
      await h.expectJson<{ id: string }>(201, 'POST', '/v1/collections', {
        key: a.key,
        json: { name: 'listing' },
      })
    ).id;
    const ids: string[] = [];
    for (let i = 0; i < 4; i++)
      ids.push(
        (await h.expectJson<Doc>(201, 'POST', docsPath(c), { key: a.key, json: { text: `doc ${i}` } })).id,
      );
    await h.db.db.update(documents).set({ status: 'ready' }).where(eq(documents.id, ids[1]));
    const p1 = await h.expectJson<Page>(200, 'GET', `${docsPath(c)}?limit=3`, { key: a.key });
    expect(p1.data.map((d) => d.id)).toEqual([ids[3], ids[2], ids[1]]);
    expect(p1.has_more).toBe(true);
    const p2 = await h.expectJson<Page>(200, 'GET', `${docsPath(c)}?limit=3&after=${p1.last_id}`, {
      key: a.key,
    });
    expect(p2.data.map((d) => d.id)).toEqual([ids[0]]);
    const ready = await h.expectJson<Page>(200, 'GET', `${docsPath(c)}?status=ready`, { key: a.key });
    expect(ready.data.map((d) => d.id)).toEqual([ids[1]]);
    expect((await h.call('GET', `${docsPath(c)}?status=done`, { key: a.key })).status).toBe(400);
    expect(
      (
        await h.call(
          'GET',
          `${docsPath(c)}?after=${ids[0].replace(/.$/, (ch) => (ch === 'f' ? '0' : 'f'))}`,
          { key: a.key },
        )
      ).status,
    ).toBe(400);
    const collection = await h.expectJson<{ document_counts: Record<string, number> }>(
      200,
      'GET',
      `/v1/collections/${c}`,
      { key: a.key },
    );
    expect(collection.document_counts).toMatchObject({ queued: 3, ready: 1, total: 4 });
  });

  it('delete removes the row, its chunks and its blob, and schedules gc with the chunk hashes', async () => {
    const doc = await h.expectJson<Doc>(201, 'POST', docsPath(), {
      key: a.key,
      json: { text: 'to be deleted soon' },
    });
    const [row] = await h.db.db.select().from(documents).where(eq(documents.id, doc.id));
    await insertChunks(
      h.db.db,
      { tenantId: a.id, collectionId: coll, documentId: doc.id },
      ['to be', 'deleted soon'],
      [
        Array.from({ length: 256 }, (_, i) => (i === 0 ? 1 : 0)),
        Array.from({ length: 256 }, (_, i) => (i === 1 ? 1 : 0)),
      ],
    );
    const before = await h.snapshot();
    expect(before.blobs).toContain(row.objectKey);
    const res = await h.expectJson(200, 'DELETE', `${docsPath()}/${doc.id}`, { key: a.key });
    expect(res).toEqual({ id: doc.id, object: 'document.deleted', deleted: true });
    const after = await h.snapshot();
    expect(after.rows.documents).toBe(before.rows.documents - 1);
    expect(after.rows.chunks).toBe(before.rows.chunks - 2);
    expect(after.blobs).not.toContain(row.objectKey);
    const [gc] = await h.db.db
      .select()
      .from(outbox)
      .where(eq(outbox.jobId, `gc-${doc.id}`));
    expect(gc.queue).toBe('gc');
    expect(gc.payload).toMatchObject({ tenantId: a.id, documentId: doc.id, blobKeys: [row.objectKey] });
    expect((gc.payload as { chunkHashes: string[] }).chunkHashes.sort()).toEqual(
      [sha256('to be'), sha256('deleted soon')].sort(),
    );
    expect((await h.call('GET', `${docsPath()}/${doc.id}`, { key: a.key })).status).toBe(404);
    // the same content can be uploaded again afterwards: a new document
    const again = await uploadJson({ text: 'to be deleted soon' });
    expect(again.status).toBe(201);
  });

  it('tenant B cannot get, list, download or delete tenant A’s documents (404)', async () => {
    const doc = await h.expectJson<Doc>(201, 'POST', docsPath(), {
      key: a.key,
      json: { text: 'secret of A' },
    });
    for (const [method, path] of [
      ['GET', `${docsPath()}/${doc.id}`],
      ['GET', `${docsPath()}/${doc.id}/content`],
      ['DELETE', `${docsPath()}/${doc.id}`],
      ['GET', docsPath()],
      // B's own collection with A's document id
      ['GET', `${docsPath(collB)}/${doc.id}`],
      ['DELETE', `${docsPath(collB)}/${doc.id}`],
    ] as const) {
      const res = await h.call(method, path, { key: b.key });
      expect(res.status, `${method} ${path}`).toBe(404);
      expect((await envelope(res)).code).toBe('not_found');
    }
    await h.expectJson(200, 'GET', `${docsPath()}/${doc.id}`, { key: a.key });
  });
});

describe('jobs', () => {
  it('reports an ingest job from the outbox with its document, to its tenant only', async () => {
    const doc = await h.expectJson<Doc>(201, 'POST', docsPath(), {
      key: a.key,
      json: { text: 'watch my job' },
    });
    const job = await h.expectJson(200, 'GET', `/v1/jobs/ingest/${doc.ingest_job_id}`, { key: a.key });
    expect(job).toMatchObject({
      id: doc.ingest_job_id,
      object: 'job',
      queue: 'ingest',
      state: 'pending',
      document: { id: doc.id, status: 'queued', last_error: null },
    });
    expect((await h.call('GET', `/v1/jobs/ingest/${doc.ingest_job_id}`, { key: b.key })).status).toBe(404);
    expect((await h.call('GET', `/v1/jobs/precompute/${doc.ingest_job_id}`, { key: a.key })).status).toBe(
      404,
    );
    expect((await h.call('GET', '/v1/jobs/ingest/ingest-nothing', { key: a.key })).status).toBe(404);

    // once relayed (no queue attached to this app) and the document failed
    await h.db.db.update(outbox).set({ deliveredAt: new Date() }).where(eq(outbox.jobId, doc.ingest_job_id));
    await h.db.db
      .update(documents)
      .set({ status: 'failed', error: 'parse error' })
      .where(eq(documents.id, doc.id));
    const later = await h.expectJson(200, 'GET', `/v1/jobs/ingest/${doc.ingest_job_id}`, { key: a.key });
    expect(later).toMatchObject({
      state: 'delivered',
      document: { status: 'failed', last_error: { message: 'parse error' } },
    });
  });

  it('with a queue attached, a relayed job reports the queue’s state, and that it failed without the queue’s error text', async () => {
    const doc = await h.expectJson<Doc>(201, 'POST', docsPath(), {
      key: a.key,
      json: { text: 'queued for real' },
    });
    const queue = new MemoryJobQueue();
    h.api.jobs = queue;
    try {
      // what the relay does: enqueue under the outbox job id, mark the row delivered
      const [row] = await h.db.db.select().from(outbox).where(eq(outbox.jobId, doc.ingest_job_id));
      await queue.enqueue('ingest', row.payload, { jobId: row.jobId, attempts: 1 });
      await h.db.db.update(outbox).set({ deliveredAt: new Date() }).where(eq(outbox.id, row.id));
      const waiting = await h.expectJson(200, 'GET', `/v1/jobs/ingest/${doc.ingest_job_id}`, { key: a.key });
      expect(waiting).toMatchObject({ state: 'waiting', attempts: 0 });

      const consumer = queue.consume('ingest', async () => {
        throw new Error('parser exploded');
      });
      let job = { state: '' };
      for (let i = 0; job.state !== 'failed' && i < 100; i++) {
        await new Promise((r) => setTimeout(r, 20));
        job = await h.expectJson(200, 'GET', `/v1/jobs/ingest/${doc.ingest_job_id}`, { key: a.key });
      }
      await consumer.close();
      // the queue's own error text stays in the service log; the tenant learns that the job failed
      expect(job).toMatchObject({
        state: 'failed',
        attempts: 1,
        last_error: { message: expect.stringContaining('failed') },
      });
      expect(JSON.stringify(job)).not.toContain('parser exploded');
      // once the worker wrote the document's tenant-facing error, that is the job's last_error
      await h.db.db
        .update(documents)
        .set({ status: 'failed', error: 'the PDF has no pages' })
        .where(eq(documents.id, doc.id));
      const described = await h.expectJson(200, 'GET', `/v1/jobs/ingest/${doc.ingest_job_id}`, {
        key: a.key,
      });
      expect(described).toMatchObject({ last_error: { message: 'the PDF has no pages' } });
      expect((await h.call('GET', `/v1/jobs/ingest/${doc.ingest_job_id}`, { key: b.key })).status).toBe(404);
    } finally {
      h.api.jobs = undefined;
      await queue.close();
    }
  });
});
