// Bearer authentication for /v1: the operator's admin key (config.adminKey) or a tenant's API key.
// Unknown, malformed and revoked keys all get the same 401 envelope, so a caller learns nothing about
// which keys exist. Repeated failures from one address or against one key prefix are refused with 429
// (auth-failures.ts). Route guards: requireTenant (tenant data routes), requireAdmin (admin routes).
import { and, eq, isNull } from 'drizzle-orm';
import type { Context, MiddlewareHandler } from 'hono';
import { apiKeys } from '../db/schema.ts';
import { AppError } from '../../contracts/errors.ts';
import type { ApiServices, AppEnv } from '../services.ts';
import { authGuard } from './auth-failures.ts';
import { constantTimeEqual, looksLikeApiKey, sha256Hex, visiblePrefix } from './keys.ts';

/** The API dependencies, or 503 when this process was built without them. */
export function api(c: Context<AppEnv>): ApiServices {
  const deps = c.get('services').api;
  if (!deps) throw new AppError('unavailable', 'this server has no database configured for the API');
  return deps;
}

function bearer(header: string | undefined): string {
  const m = /^Bearer[ ]+(\S+)\s*$/i.exec(header ?? '');
  if (!m) {
    throw new AppError('unauthorized', 'missing API key: send "Authorization: Bearer <key>"');
  }
  return m[1];
}

const invalidKey = () => new AppError('unauthorized', 'invalid API key');

export function authenticate(): MiddlewareHandler<AppEnv> {
  // sha256 of the admin key, computed once per app
  let adminHash: Promise<string> | null = null;
  return async (c, next) => {
    const token = bearer(c.req.header('authorization'));
    const guard = authGuard(c, looksLikeApiKey(token) ? visiblePrefix(token) : null);
    await guard.check();
    const hash = await sha256Hex(token);
    const adminKey = c.get('services').config.adminKey;
    if (adminKey) {
      adminHash ??= sha256Hex(adminKey);
      if (constantTimeEqual(hash, await adminHash)) {
        c.set('principal', { kind: 'admin' });
        return next();
      }
    }
    if (!looksLikeApiKey(token)) {
      await guard.fail();
      throw invalidKey();
    }
    const candidates = await api(c)
      .db.select({ id: apiKeys.id, tenantId: apiKeys.tenantId, keyHash: apiKeys.keyHash })
      .from(apiKeys)
      .where(and(eq(apiKeys.prefix, visiblePrefix(token)), isNull(apiKeys.revokedAt)));
    // compare against every candidate, not stopping at the first match
    let match: (typeof candidates)[number] | undefined;
    for (const k of candidates) if (constantTimeEqual(hash, k.keyHash)) match = k;
    if (!match) {
      await guard.fail();
      throw invalidKey();
    }
    c.set('principal', { kind: 'tenant', tenantId: match.tenantId, keyId: match.id });
    return next();
  };
}

/** The caller's tenant id; 403 for the admin key, which acts on no tenant's data. */
export function requireTenant(c: Context<AppEnv>): string {
  const p = c.get('principal');
  if (p?.kind !== 'tenant') {
    throw new AppError('forbidden', 'this route needs a tenant API key; the admin key manages tenants only');
  }
  return p.tenantId;
}

export function requireAdmin(c: Context<AppEnv>): void {
  if (c.get('principal')?.kind !== 'admin') throw new AppError('forbidden', 'this route needs the admin key');
}
