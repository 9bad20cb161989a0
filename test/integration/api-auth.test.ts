// Auth and admin routes end to end: tenants and keys created with the admin key, keys stored hashed and
// shown once, every bad credential a 401 envelope, each key kind kept to its own routes, request ids,
// JSON body limits, and the OpenAPI document.
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { apiKeys, outbox } from '../../src/db/schema.ts';
import { sha256Hex } from '../../src/routes/keys.ts';
import { DRAIN_BYTES } from '../../src/routes/body-limit.ts';
import {
  ApiKey,
  Collection,
  Document,
  ErrorEnvelope,
  Job,
  listOf,
  NewApiKey,
  SearchPage,
  Tenant,
} from '../../src/routes/openapi-schemas.ts';
import { ADMIN_KEY, envelope, type Harness, startApiHarness } from '../helpers/api-harness.ts';

let h: Harness;
beforeAll(async () => {
  h = await startApiHarness({ maxBodyBytes: 4096 });
});
afterAll(async () => {
  await h?.close();
});

describe('admin: tenants and keys', () => {
  it('creates a tenant and a key; the key is returned once and stored only as sha256 + prefix', async () => {
    const t = await h.expectJson<{ id: string; object: string; name: string }>(
      201,
      'POST',
      '/v1/admin/tenants',
      {
        json: { name: 'acme' },
      },
    );
    expect(t).toMatchObject({ object: 'tenant', name: 'acme' });
    const k = await h.expectJson<{ id: string; key: string; prefix: string; tenant_id: string }>(
      201,
      'POST',
      `/v1/admin/tenants/${t.id}/keys`,
      { json: { name: 'ci' } },
    );
    expect(k.key).toMatch(/^kvrag_[A-Za-z0-9_-]{43}$/);
    expect(k.key.startsWith(k.prefix)).toBe(true);
    expect(k.tenant_id).toBe(t.id);
    const [row] = await h.db.db.select().from(apiKeys).where(eq(apiKeys.id, k.id));
    expect(row.keyHash).toBe(await sha256Hex(k.key));
    expect(JSON.stringify(row)).not.toContain(k.key);

    const list = await h.expectJson<{ data: Record<string, unknown>[] }>(
      200,
      'GET',
      `/v1/admin/tenants/${t.id}/keys`,
    );
    expect(list.data.map((x) => x.id)).toEqual([k.id]);
    expect(list.data[0].key).toBeUndefined();
    expect(await h.expectJson(200, 'GET', `/v1/admin/tenants/${t.id}`)).toMatchObject({
      id: t.id,
      name: 'acme',
    });

    // the new key works on tenant routes
    await h.expectJson(200, 'GET', '/v1/collections', { key: k.key });
  });

  it('revoking a key makes it a 401 at once, and revoking again is a no-op', async () => {
    const t = await h.tenant('revoker');
    await h.expectJson(200, 'GET', '/v1/collections', { key: t.key });
    const [row] = await h.db.db.select().from(apiKeys).where(eq(apiKeys.tenantId, t.id));
    const revoked = await h.expectJson<{ revoked_at: number | null }>(
      200,
      'DELETE',
      `/v1/admin/tenants/${t.id}/keys/${row.id}`,
    );
    expect(revoked.revoked_at).toEqual(expect.any(Number));
    const res = await h.call('GET', '/v1/collections', { key: t.key });
    expect(res.status).toBe(401);
    expect((await envelope(res)).code).toBe('unauthorized');
    await h.expectJson(200, 'DELETE', `/v1/admin/tenants/${t.id}/keys/${row.id}`);
  });

  it('a key of another tenant cannot be revoked through the wrong tenant', async () => {
    const a = await h.tenant('a-keys');
    const b = await h.tenant('b-keys');
    const [keyA] = await h.db.db.select().from(apiKeys).where(eq(apiKeys.tenantId, a.id));
    const res = await h.call('DELETE', `/v1/admin/tenants/${b.id}/keys/${keyA.id}`);
    expect(res.status).toBe(404);
    await h.expectJson(200, 'GET', '/v1/collections', { key: a.key });
  });

  it('keys for an unknown tenant: 404, nothing written', async () => {
    const before = await h.snapshot();
    const res = await h.call('POST', '/v1/admin/tenants/00000000-0000-4000-8000-000000000000/keys', {
      json: {},
    });
    expect(res.status).toBe(404);
    expect((await envelope(res)).code).toBe('not_found');
    expect(await h.snapshot()).toEqual(before);
  });

  it('deleting a tenant removes its keys, collections, documents, files and blobs, and schedules gc', async () => {
    const keep = await h.tenant('keeper');
    const gone = await h.tenant('leaver');
    const mk = async (t: { key: string }, name: string) => {
      const c = await h.expectJson<{ id: string }>(201, 'POST', '/v1/collections', {
        key: t.key,
        json: { name },
      });
      await h.expectJson(201, 'POST', `/v1/collections/${c.id}/documents`, {
        key: t.key,
        json: { text: `text of ${name}` },
      });
      return c.id;
    };
    const keptColl = await mk(keep, 'k');
    const goneColls = [await mk(gone, 'g1'), await mk(gone, 'g2')];
    // and an OpenAI File, which lives outside collections
    const form = new FormData();
    form.set('file', new File(['a file of the leaver'], 'f.txt', { type: 'text/plain' }));
    form.set('purpose', 'assistants');
    await h.expectJson(200, 'POST', '/v1/files', { key: gone.key, body: form });
    const before = await h.snapshot();
    expect(before.blobs.filter((k) => k.startsWith(`uploads/${gone.id}/`))).toHaveLength(3);

    expect(await h.expectJson(200, 'DELETE', `/v1/admin/tenants/${gone.id}`)).toEqual({
      id: gone.id,
      object: 'tenant.deleted',
      deleted: true,
    });
    const after = await h.snapshot();
    expect(after.blobs.filter((k) => k.startsWith(`uploads/${gone.id}/`))).toEqual([]);
    expect(after.blobs.filter((k) => k.startsWith(`uploads/${keep.id}/${keptColl}/`))).toHaveLength(1);
    expect(after.rows).toMatchObject({
      tenants: before.rows.tenants - 1,
      api_keys: before.rows.api_keys - 1,
      collections: before.rows.collections - 2,
      documents: before.rows.documents - 2,
      files: before.rows.files - 1,
      outbox: before.rows.outbox + 3,
    });
    const [files] = await h.db.db
      .select()
      .from(outbox)
      .where(eq(outbox.jobId, `gc-files-${gone.id}`));
    expect(files.payload).toMatchObject({ tenantId: gone.id, blobPrefix: `uploads/${gone.id}/files/` });
    for (const c of goneColls) {
      const [gc] = await h.db.db
        .select()
        .from(outbox)
        .where(eq(outbox.jobId, `gc-${c}`));
      expect(gc.payload).toMatchObject({
        tenantId: gone.id,
        collectionId: c,
        blobPrefix: `uploads/${gone.id}/${c}/`,
      });
    }
    expect((await h.call('GET', '/v1/collections', { key: gone.key })).status).toBe(401);
    await h.expectJson(200, 'GET', `/v1/collections/${keptColl}`, { key: keep.key });
    expect((await h.call('DELETE', `/v1/admin/tenants/${gone.id}`)).status).toBe(404);
    expect((await h.call('DELETE', `/v1/admin/tenants/${keep.id}`, { key: keep.key })).status).toBe(403);
  });

  it('lists tenants with cursor pagination', async () => {
    for (const n of ['p1', 'p2', 'p3']) await h.tenant(n);
    const all = await h.expectJson<{ data: { id: string }[] }>(
      200,
      'GET',
      '/v1/admin/tenants?limit=100&order=asc',
    );
    const first = await h.expectJson<{ data: { id: string }[]; has_more: boolean; last_id: string }>(
      200,
      'GET',
      '/v1/admin/tenants?limit=2&order=asc',
    );
    expect(first.data.map((x) => x.id)).toEqual(all.data.slice(0, 2).map((x) => x.id));
    expect(first.has_more).toBe(true);
    const second = await h.expectJson<{ data: { id: string }[] }>(
      200,
      'GET',
      `/v1/admin/tenants?limit=2&order=asc&after=${first.last_id}`,
    );
    expect(second.data.map((x) => x.id)).toEqual(all.data.slice(2, 4).map((x) => x.id));
  });
});

describe('authentication', () => {
  it('every bad credential is the same 401 envelope', async () => {
    const t = await h.tenant('auth-shapes');
    const wrongButWellFormed =
      `${t.key.slice(0, -4)}AAAA` === t.key ? `${t.key.slice(0, -4)}BBBB` : `${t.key.slice(0, -4)}AAAA`;
    const cases: Record<string, string>[] = [
      {},
      { authorization: 'Basic dXNlcjpwYXNz' },
      { authorization: 'Bearer' },
      { authorization: 'Bearer not-a-key' },
      { authorization: `Bearer ${wrongButWellFormed}` },
      { authorization: `Bearer kvrag_${'x'.repeat(43)}` },
      { authorization: `Bearer ${ADMIN_KEY}x` },
    ];
    for (const headers of cases) {
      const res = await h.call('GET', '/v1/collections', { key: null, headers });
      expect(res.status, JSON.stringify(headers)).toBe(401);
      const err = await envelope(res);
      expect(err.code).toBe('unauthorized');
    }
  });

  it('tenant keys cannot use admin routes; the admin key cannot read tenant data', async () => {
    const t = await h.tenant('scopes');
    const res = await h.call('POST', '/v1/admin/tenants', { key: t.key, json: { name: 'evil' } });
    expect(res.status).toBe(403);
    expect((await envelope(res)).code).toBe('forbidden');
    const res2 = await h.call('GET', '/v1/collections');
    expect(res2.status).toBe(403);
  });

  it('echoes a caller request id on errors too', async () => {
    const res = await h.call('GET', '/v1/collections', { key: null, headers: { 'x-request-id': 'req-42' } });
    expect(res.headers.get('x-request-id')).toBe('req-42');
    expect((await envelope(res)).request_id).toBe('req-42');
  });
});

describe('request limits and validation', () => {
  it('a JSON body over maxBodyBytes is a 413 whether or not it declares its length', async () => {
    const big = { name: 'x'.repeat(5000) };
    const streamed = await h.call('POST', '/v1/admin/tenants', { json: big });
    expect(streamed.status).toBe(413);
    expect((await envelope(streamed)).code).toBe('payload_too_large');
    // the unread rest of the body: the client must not reuse the connection
    expect(streamed.headers.get('connection')).toBe('close');
    const body = JSON.stringify(big);
    const declared = await h.call('POST', '/v1/admin/tenants', {
      body,
      headers: { 'content-type': 'application/json', 'content-length': String(body.length) },
    });
    expect(declared.status).toBe(413);
  });

  it('stops reading an endless body at the limit plus the drain cap instead of buffering it', async () => {
    let pulled = 0;
    const endless = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled++;
        controller.enqueue(new Uint8Array(1024).fill(32));
      },
    });
    const res = await h.app.request('/v1/admin/tenants', {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
      body: endless,
      duplex: 'half',
    } as RequestInit);
    expect(res.status).toBe(413);
    expect((await envelope(res)).code).toBe('payload_too_large');
    // limit 4096 bytes = 4 chunks of 1 KiB, then DRAIN_BYTES more are read and dropped (so a client still
    // sending gets to read the 413); the stream may have been asked for a couple ahead
    const drained = DRAIN_BYTES / 1024;
    expect(pulled).toBeGreaterThanOrEqual(4 + drained);
    expect(pulled).toBeLessThan(10 + drained);
  });

  it('an anonymous caller gets 401 before any body is read', async () => {
    let pulled = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled++;
        controller.enqueue(new Uint8Array(1024));
      },
    });
    const res = await h.app.request('/v1/admin/tenants', {
      method: 'POST',
      body,
      duplex: 'half',
    } as RequestInit);
    expect(res.status).toBe(401);
    expect(pulled).toBeLessThan(3);
  });

  it('malformed JSON, a wrong content type and unknown fields are 4xx envelopes that write nothing', async () => {
    const before = await h.snapshot();
    const bad = await h.call('POST', '/v1/admin/tenants', {
      body: '{"name": ',
      headers: { 'content-type': 'application/json' },
    });
    expect(bad.status).toBe(400);
    expect((await envelope(bad)).message).toMatch(/not valid JSON/);
    const type = await h.call('POST', '/v1/admin/tenants', {
      body: 'name=x',
      headers: { 'content-type': 'text/plain' },
    });
    expect(type.status).toBe(415);
    const extra = await h.call('POST', '/v1/admin/tenants', { json: { name: 'x', admin: true } });
    expect(extra.status).toBe(400);
    expect(await h.snapshot()).toEqual(before);
  });
});

describe('OpenAPI', () => {
  it('serves an OpenAPI 3.1 document whose $refs all resolve', async () => {
    const res = await h.call('GET', '/openapi.json', { key: null });
    expect(res.status).toBe(200);
    const doc = (await res.json()) as {
      openapi: string;
      paths: Record<string, unknown>;
      components: { schemas: Record<string, unknown> };
    };
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        '/v1/collections',
        '/v1/collections/{collection}/documents',
        '/v1/collections/{collection}/search',
        '/v1/jobs/{queue}/{id}',
      ]),
    );
    const refs = [...JSON.stringify(doc).matchAll(/"\$ref":"#\/([^"]+)"/g)].map((m) => m[1]);
    expect(refs.length).toBeGreaterThan(10);
    for (const ref of refs) {
      let node: unknown = doc;
      for (const part of ref.split('/')) node = (node as Record<string, unknown>)?.[part];
      expect(node, ref).toBeDefined();
    }
    // the search request documents the recursive filter and the result cap
    const search = doc.components.schemas.SearchRequest as {
      properties: Record<string, { maximum?: number; $ref?: string }>;
    };
    expect(search.properties.max_num_results.maximum).toBe(50);
    expect(search.properties.filters.$ref).toBe('#/components/schemas/AttributeFilter');
  });
});

/** The response parses with its documented schema, and carries no top-level field the schema lacks. */
function conforms(schema: z.ZodObject, value: unknown): void {
  const r = schema.safeParse(value);
  expect(r.success, JSON.stringify(r.error?.issues)).toBe(true);
  expect(Object.keys(value as object).filter((k) => !(k in schema.shape))).toEqual([]);
}

describe('responses match the OpenAPI document', () => {
  it('tenant, key, collection, document, search page, job and error envelope', async () => {
    const tenant = await h.expectJson(201, 'POST', '/v1/admin/tenants', { json: { name: 'documented' } });
    conforms(Tenant, tenant);
    const key = await h.expectJson<{ key: string }>(201, 'POST', `/v1/admin/tenants/${tenant.id}/keys`, {
      json: {},
    });
    conforms(NewApiKey, key);
    conforms(listOf(ApiKey), await h.expectJson(200, 'GET', `/v1/admin/tenants/${tenant.id}/keys`));
    const k = key.key;
    const coll = await h.expectJson<{ id: string }>(201, 'POST', '/v1/collections', {
      key: k,
      json: { name: 'd' },
    });
    conforms(Collection, coll);
    conforms(listOf(Collection), await h.expectJson(200, 'GET', '/v1/collections', { key: k }));
    const doc = await h.expectJson<{ id: string; ingest_job_id: string }>(
      201,
      'POST',
      `/v1/collections/${coll.id}/documents`,
      {
        key: k,
        json: { text: 'documented text', attributes: { a: 1 } },
      },
    );
    conforms(Document, doc);
    conforms(
      listOf(Document),
      await h.expectJson(200, 'GET', `/v1/collections/${coll.id}/documents`, { key: k }),
    );
    conforms(
      SearchPage,
      await h.expectJson(200, 'POST', `/v1/collections/${coll.id}/search`, {
        key: k,
        json: { query: 'text' },
      }),
    );
    conforms(Job, await h.expectJson(200, 'GET', `/v1/jobs/ingest/${doc.ingest_job_id}`, { key: k }));
    const res = await h.call('GET', `/v1/collections/${doc.id}`, { key: k });
    conforms(ErrorEnvelope, await res.json());
  });
});
