// The whole API against real components: createApp over PGlite served on the wire (postgres.js, as in
// production), a filesystem blob store in a temp dir, the hash embedding provider. Requests go through
// app.request(); counts of rows and blobs let tests prove that failed requests leave nothing behind.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import type { Hono } from 'hono';
import { createApp } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import { createPostgresDb, type DbHandle, queryRows } from '../../src/db/client.ts';
import type { PostgresOptions } from '../../src/db/postgres.ts';
import { createEmbeddingResolver } from '../../src/embeddings/resolver.ts';
import type { AuthFailureStore } from '../../src/auth-failure-store.ts';
import type { Log } from '../../contracts/log.ts';
import type { ApiServices, AppEnv } from '../../src/services.ts';
import type { BlobStore } from '../../contracts/blob-store.ts';
import { FsBlobStore } from '../../src/storage/fs.ts';
import { type PgliteServer, startPgliteServer, TEST_POOL } from './pglite-server.ts';

export const ADMIN_KEY = 'admin-key-for-tests-0123456789';

export interface CallOptions {
  key?: string | null;
  json?: unknown;
  body?: BodyInit;
  headers?: Record<string, string>;
}

export interface Harness {
  app: Hono<AppEnv>;
  db: DbHandle;
  blobs: BlobStore;
  /** The app's API services; tests may attach or detach `jobs`. */
  api: ApiServices;
  call(method: string, path: string, opts?: CallOptions): Promise<Response>;
  /** Parsed JSON of a call that must answer `status`; throws with the body otherwise. */
  expectJson<T = Record<string, unknown>>(
    status: number,
    method: string,
    path: string,
    opts?: CallOptions,
  ): Promise<T>;
  /** A fresh tenant and one API key for it. */
  tenant(name: string): Promise<{ id: string; key: string }>;
  /** Row counts of the tables a request could write, and every blob key. */
  snapshot(): Promise<{ rows: Record<string, number>; blobs: string[] }>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  maxBodyBytes?: number;
  maxUploadBytes?: number;
  /** Default: a FsBlobStore in a temp dir. */
  blobs?: BlobStore;
  /** More settings, by environment variable (KVRAG_AUTH_FAILURE_LIMIT, …). */
  env?: Record<string, string>;
  /** Failed-auth counters (default: in memory, per app). */
  authFailures?: AuthFailureStore;
  /** The URL to connect with instead of the PGlite server's own (a fault proxy in front of it). */
  dbVia?: (serverUrl: string) => Promise<string>;
  /** postgres.js options (default TEST_POOL). */
  pool?: PostgresOptions;
}

export async function startApiHarness(opts: HarnessOptions = {}): Promise<Harness> {
  const server: PgliteServer = await startPgliteServer();
  const db = createPostgresDb(opts.dbVia ? await opts.dbVia(server.url) : server.url, opts.pool ?? TEST_POOL);
  const dir = await mkdtemp(join(tmpdir(), 'kvrag-api-'));
  const blobs = opts.blobs ?? new FsBlobStore(join(dir, 'blobs'));
  const config = loadConfig({
    KVRAG_ADMIN_KEY: ADMIN_KEY,
    KVRAG_MAX_BODY_BYTES: String(opts.maxBodyBytes ?? 64 * 1024),
    KVRAG_MAX_UPLOAD_BYTES: String(opts.maxUploadBytes ?? 256 * 1024),
    ...opts.env,
  });
  const api: ApiServices = { db: db.db, blobs, embeddings: createEmbeddingResolver() };
  // a 5xx's cause on stderr (the app logs it, the client sees only "internal error"): what a CI log needs
  // to explain a failure that does not reproduce
  const log: Log = (level, msg, fields) => {
    if (level === 'error') console.error(JSON.stringify({ level, msg, ...fields }));
  };
  const app = createApp({ config, readiness: {}, api, authFailures: opts.authFailures, log });

  const call = (method: string, path: string, o: CallOptions = {}) => {
    const headers: Record<string, string> = { ...o.headers };
    if (o.key !== null) headers.authorization = `Bearer ${o.key ?? ADMIN_KEY}`;
    let body = o.body;
    if (o.json !== undefined) {
      body = JSON.stringify(o.json);
      headers['content-type'] ??= 'application/json';
    }
    return Promise.resolve(app.request(path, { method, headers, body }));
  };

  const expectJson = async <T>(status: number, method: string, path: string, o?: CallOptions) => {
    const res = await call(method, path, o);
    const text = await res.text();
    if (res.status !== status)
      throw new Error(`${method} ${path}: expected ${status}, got ${res.status}: ${text}`);
    return JSON.parse(text) as T;
  };

  return {
    app,
    db,
    blobs,
    api,
    call,
    expectJson,
    async tenant(name) {
      const t = await expectJson<{ id: string }>(201, 'POST', '/v1/admin/tenants', { json: { name } });
      const k = await expectJson<{ key: string }>(201, 'POST', `/v1/admin/tenants/${t.id}/keys`, {
        json: { name: 'test' },
      });
      return { id: t.id, key: k.key };
    },
    async snapshot() {
      const rows: Record<string, number> = {};
      for (const t of [
        'tenants',
        'api_keys',
        'collections',
        'documents',
        'chunks',
        'outbox',
        'files',
        'vector_stores',
        'file_batches',
        'responses',
      ]) {
        const [r] = await queryRows<{ n: number }>(
          db.db,
          sql`select count(*)::int as n from ${sql.identifier(t)}`,
        );
        rows[t] = Number(r.n);
      }
      const keys: string[] = [];
      for await (const b of blobs.list('')) keys.push(b.key);
      return { rows, blobs: keys };
    },
    async close() {
      await db.close();
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The error envelope of a response, checked for shape and request id. */
export async function envelope(
  res: Response,
): Promise<{ code: string; message: string; request_id: string }> {
  const body = (await res.json()) as { error: { code: string; message: string; request_id: string } };
  if (
    !body.error ||
    typeof body.error.code !== 'string' ||
    body.error.request_id !== res.headers.get('x-request-id')
  ) {
    throw new Error(`not an error envelope: ${JSON.stringify(body)}`);
  }
  return body.error;
}
