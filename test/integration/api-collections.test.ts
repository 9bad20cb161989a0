// /v1/collections end to end: create/get/list/delete, cursor pagination, validation, tenant isolation
// (another tenant's collection is a 404, never a 403), and deletes that schedule gc and leave no blobs.
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { outbox } from '../../src/db/schema.ts';
import { envelope, type Harness, startApiHarness } from '../helpers/api-harness.ts';

type Coll = { id: string; name: string; embedding: { provider: string; model: string; dimension: number } };
type Page = { data: { id: string }[]; has_more: boolean; first_id: string | null; last_id: string | null };

let h: Harness;
let a: { id: string; key: string };
let b: { id: string; key: string };
beforeAll(async () => {
  h = await startApiHarness();
  a = await h.tenant('tenant-a');
  b = await h.tenant('tenant-b');
});
afterAll(async () => {
  await h?.close();
});

const create = (key: string, json: unknown) =>
  h.expectJson<Coll>(201, 'POST', '/v1/collections', { key, json });

describe('collections', () => {
  it('creates with an embedding provider and dimension, gets it back with document counts', async () => {
    const c = await create(a.key, {
      name: 'docs',
      embedding: { provider: 'hash', dimension: 256 },
      metadata: { team: 'x' },
    });
    expect(c).toMatchObject({
      object: 'collection',
      name: 'docs',
      embedding: { provider: 'hash', model: 'kvrag-hash-v1', dimension: 256 },
      chunking: { size: 512, overlap: 64 },
      metadata: { team: 'x' },
      document_counts: { queued: 0, ready: 0, total: 0 },
    });
    expect(await h.expectJson(200, 'GET', `/v1/collections/${c.id}`, { key: a.key })).toEqual(c);
  });

  it('refuses bad settings with 400 and a duplicate name with 409, writing nothing', async () => {
    await create(a.key, { name: 'dup' });
    const before = await h.snapshot();
    for (const json of [
      { name: 'x', embedding: { provider: 'hash', dimension: 300 } }, // no HNSW index for 300
      { name: 'x', embedding: { provider: 'openai', dimension: 256 } }, // not offered by this deployment
      { name: 'x', embedding: { provider: 'hash', model: 'other', dimension: 256 } },
      { name: 'x', chunking: { size: 128, overlap: 100 } }, // overlap > size/2
      { name: '' },
      { name: 'x', unknown: 1 },
    ]) {
      const res = await h.call('POST', '/v1/collections', { key: a.key, json });
      expect(res.status, JSON.stringify(json)).toBe(400);
      expect((await envelope(res)).code).toMatch(/bad_request|invalid_config/);
    }
    const dup = await h.call('POST', '/v1/collections', { key: a.key, json: { name: 'dup' } });
    expect(dup.status).toBe(409);
    expect((await envelope(dup)).code).toBe('conflict');
    // the same name is free for another tenant
    await create(b.key, { name: 'dup' });
    const after = await h.snapshot();
    expect(after.rows.collections).toBe(before.rows.collections + 1);
  });

  it('paginates with limit/order/after/before and rejects bad cursors and limits', async () => {
    const t = await h.tenant('pager');
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await create(t.key, { name: `c${i}` })).id);
    const desc = await h.expectJson<Page>(200, 'GET', '/v1/collections?limit=100', { key: t.key });
    expect(desc.data.map((x) => x.id)).toEqual([...ids].reverse());

    const p1 = await h.expectJson<Page>(200, 'GET', '/v1/collections?limit=2&order=asc', { key: t.key });
    expect(p1.data.map((x) => x.id)).toEqual(ids.slice(0, 2));
    expect(p1).toMatchObject({ has_more: true, first_id: ids[0], last_id: ids[1] });
    const p2 = await h.expectJson<Page>(200, 'GET', `/v1/collections?limit=2&order=asc&after=${p1.last_id}`, {
      key: t.key,
    });
    expect(p2.data.map((x) => x.id)).toEqual(ids.slice(2, 4));
    const p3 = await h.expectJson<Page>(200, 'GET', `/v1/collections?limit=2&order=asc&after=${p2.last_id}`, {
      key: t.key,
    });
    expect(p3.data.map((x) => x.id)).toEqual(ids.slice(4));
    expect(p3.has_more).toBe(false);
    const back = await h.expectJson<Page>(200, 'GET', `/v1/collections?limit=2&order=asc&before=${ids[4]}`, {
      key: t.key,
    });
    expect(back.data.map((x) => x.id)).toEqual(ids.slice(2, 4));

    const other = (await h.expectJson<Page>(200, 'GET', '/v1/collections', { key: a.key })).data[0].id;
    for (const q of [
      'after=not-a-uuid',
      'after=00000000-0000-4000-8000-000000000000',
      `after=${other}`, // another tenant's id is no cursor here
      `after=${ids[0]}&before=${ids[1]}`,
      'limit=0',
      'limit=101',
      'limit=abc',
      'order=sideways',
    ]) {
      const res = await h.call('GET', `/v1/collections?${q}`, { key: t.key });
      expect(res.status, q).toBe(400);
      expect((await envelope(res)).code).toBe('bad_request');
    }
  });

  it('tenant B can neither read, list nor delete tenant A’s collection (404, as if absent)', async () => {
    const c = await create(a.key, { name: 'private' });
    const get = await h.call('GET', `/v1/collections/${c.id}`, { key: b.key });
    expect(get.status).toBe(404);
    expect((await envelope(get)).code).toBe('not_found');
    const list = await h.expectJson<Page>(200, 'GET', '/v1/collections?limit=100', { key: b.key });
    expect(list.data.map((x) => x.id)).not.toContain(c.id);
    const del = await h.call('DELETE', `/v1/collections/${c.id}`, { key: b.key });
    expect(del.status).toBe(404);
    await h.expectJson(200, 'GET', `/v1/collections/${c.id}`, { key: a.key });
    expect((await h.call('GET', '/v1/collections/nonsense', { key: a.key })).status).toBe(404);
  });

  it('delete removes the collection, its documents and blobs, and schedules a gc job', async () => {
    const c = await create(a.key, { name: 'doomed' });
    const doc = await h.expectJson<{ id: string }>(201, 'POST', `/v1/collections/${c.id}/documents`, {
      key: a.key,
      json: { text: 'some text to remove', filename: 'a.txt' },
    });
    const before = await h.snapshot();
    expect(before.blobs.filter((k) => k.includes(c.id))).toHaveLength(1);
    const res = await h.expectJson(200, 'DELETE', `/v1/collections/${c.id}`, { key: a.key });
    expect(res).toEqual({ id: c.id, object: 'collection.deleted', deleted: true });
    const after = await h.snapshot();
    expect(after.blobs.filter((k) => k.includes(c.id))).toEqual([]);
    expect(after.rows.documents).toBe(before.rows.documents - 1);
    expect(after.rows.collections).toBe(before.rows.collections - 1);
    const [gc] = await h.db.db
      .select()
      .from(outbox)
      .where(eq(outbox.jobId, `gc-${c.id}`));
    expect(gc.queue).toBe('gc');
    expect(gc.payload).toMatchObject({
      v: 1,
      tenantId: a.id,
      collectionId: c.id,
      blobPrefix: `uploads/${a.id}/${c.id}/`,
    });
    expect((gc.payload as { blobKeys: string[] }).blobKeys).toEqual([`uploads/${a.id}/${c.id}/${doc.id}`]);
    expect((await h.call('GET', `/v1/collections/${c.id}`, { key: a.key })).status).toBe(404);
    expect((await h.call('DELETE', `/v1/collections/${c.id}`, { key: a.key })).status).toBe(404);
  });
});
