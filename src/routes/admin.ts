// Operator routes, admin key only: tenants (create, get, list, delete with all their data) and their
// API keys. A key is returned in full once, when
// created; afterwards only its visible prefix. Revoking sets revoked_at (the row stays, for audit).
import { and, eq, sql } from 'drizzle-orm';
import { Hono } from 'hono';
import { z } from 'zod';
import { type ApiKey, apiKeys, collections, type Tenant, tenants } from '../db/schema.ts';
import type { AppEnv } from '../services.ts';
import { api, requireAdmin } from './auth.ts';
import { scheduleCollectionGc } from '../documents/remove.ts';
import { generateApiKey } from './keys.ts';
import { listQuerySchema, paginate, toPage } from './pagination.ts';
import { filesPrefix, tenantUploadPrefix } from '../storage/upload-keys.ts';
import { scheduleGc } from '../queue/job-outbox.ts';
import { notFound } from '../db/ids.ts';
import { jsonBody, pathId, queryParams, unixSeconds } from './validate.ts';

export const createTenantSchema = z.strictObject({ name: z.string().trim().min(1).max(200) });
export const createKeySchema = z.strictObject({ name: z.string().trim().min(1).max(200).default('default') });

export const tenantObject = (t: Tenant) => ({
  id: t.id,
  object: 'tenant' as const,
  name: t.name,
  created_at: unixSeconds(t.createdAt),
});

export const apiKeyObject = (k: ApiKey) => ({
  id: k.id,
  object: 'api_key' as const,
  tenant_id: k.tenantId,
  name: k.name,
  prefix: k.prefix,
  created_at: unixSeconds(k.createdAt),
  revoked_at: k.revokedAt ? unixSeconds(k.revokedAt) : null,
});

export function adminRoutes(): Hono<AppEnv> {
  const r = new Hono<AppEnv>();
  r.use('*', async (c, next) => {
    requireAdmin(c);
    await next();
  });

  r.post('/tenants', async (c) => {
    const body = await jsonBody(c, createTenantSchema);
    const [row] = await api(c).db.insert(tenants).values({ name: body.name }).returning();
    return c.json(tenantObject(row), 201);
  });

  r.get('/tenants', async (c) => {
    const q = queryParams(c, listQuerySchema);
    const { db } = api(c);
    const { rows, hasMore } = await paginate(db, tenants, sql`true`, q, (where, order, limit) =>
      db
        .select()
        .from(tenants)
        .where(where)
        .orderBy(...order)
        .limit(limit),
    );
    return c.json(toPage(rows, hasMore, tenantObject));
  });

  r.get('/tenants/:tenant', async (c) => {
    const id = pathId(c, 'tenant', 'tenant');
    const [row] = await api(c).db.select().from(tenants).where(eq(tenants.id, id));
    if (!row) throw notFound('tenant', id);
    return c.json(tenantObject(row));
  });

  // Everything the tenant owns goes (rows cascade); one gc job per collection collects its storage, and one
  // the tenant's OpenAI Files.
  r.delete('/tenants/:tenant', async (c) => {
    const id = pathId(c, 'tenant', 'tenant');
    const { db, blobs } = api(c);
    const found = await db.transaction(async (tx) => {
      const [row] = await tx.select({ id: tenants.id }).from(tenants).where(eq(tenants.id, id));
      if (!row) return false;
      const owned = await tx
        .select({ id: collections.id })
        .from(collections)
        .where(eq(collections.tenantId, id));
      for (const col of owned) await scheduleCollectionGc(tx, id, col.id);
      // OpenAI Files live outside collections: one more job for them
      await scheduleGc(tx, { tenantId: id, blobPrefix: filesPrefix(id) }, `files-${id}`);
      await tx.delete(tenants).where(eq(tenants.id, id));
      return true;
    });
    if (!found) throw notFound('tenant', id);
    try {
      for await (const b of blobs.list(tenantUploadPrefix(id))) await blobs.delete(b.key);
    } catch (err) {
      c.get('services').log?.('warn', 'tenant blobs left for gc', { tenant: id, err: String(err) });
    }
    return c.json({ id, object: 'tenant.deleted' as const, deleted: true });
  });

  r.post('/tenants/:tenant/keys', async (c) => {
    const tenantId = pathId(c, 'tenant', 'tenant');
    const body = await jsonBody(c, createKeySchema);
    const { db } = api(c);
    const [tenant] = await db.select({ id: tenants.id }).from(tenants).where(eq(tenants.id, tenantId));
    if (!tenant) throw notFound('tenant', tenantId);
    const { key, prefix, hash } = await generateApiKey();
    const [row] = await db
      .insert(apiKeys)
      .values({ tenantId, name: body.name, prefix, keyHash: hash })
      .returning();
    // the only time the key itself is shown
    return c.json({ ...apiKeyObject(row), key }, 201);
  });

  r.get('/tenants/:tenant/keys', async (c) => {
    const tenantId = pathId(c, 'tenant', 'tenant');
    const q = queryParams(c, listQuerySchema);
    const { db } = api(c);
    const [tenant] = await db.select({ id: tenants.id }).from(tenants).where(eq(tenants.id, tenantId));
    if (!tenant) throw notFound('tenant', tenantId);
    const { rows, hasMore } = await paginate(
      db,
      apiKeys,
      eq(apiKeys.tenantId, tenantId),
      q,
      (where, order, limit) =>
        db
          .select()
          .from(apiKeys)
          .where(where)
          .orderBy(...order)
          .limit(limit),
    );
    return c.json(toPage(rows, hasMore, apiKeyObject));
  });

  r.delete('/tenants/:tenant/keys/:key', async (c) => {
    const tenantId = pathId(c, 'tenant', 'tenant');
    const keyId = pathId(c, 'key', 'API key');
    const { db } = api(c);
    const [existing] = await db
      .select()
      .from(apiKeys)
      .where(and(eq(apiKeys.id, keyId), eq(apiKeys.tenantId, tenantId)));
    if (!existing) throw notFound('API key', keyId);
    if (existing.revokedAt) return c.json(apiKeyObject(existing));
    const [row] = await db
      .update(apiKeys)
      .set({ revokedAt: (api(c).now ?? (() => new Date()))() })
      .where(eq(apiKeys.id, keyId))
      .returning();
    return c.json(apiKeyObject(row));
  });

  return r;
}
