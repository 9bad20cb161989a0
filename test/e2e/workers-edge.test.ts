// The Workers build end to end: wrangler bundles src/index.ts with the repository's wrangler.toml (as
// `wrangler deploy` would, without uploading), and the bundle runs in workerd through Miniflare with the
// Hyperdrive binding pointed at PGlite on the Postgres wire and a Miniflare R2 bucket. Checks: the bundle
// reaches no Node-only module; /healthz and /readyz answer; a tenant, key, collection and upload made
// through the Worker land in Postgres, R2 and the outbox; chunks inserted directly are found by an
// authenticated search; OpenAI's Files and Vector Stores write to R2 and the outbox too, vector store search
// (compound filter) and /v1/embeddings answer, /v1/responses is an OpenAI-shaped 503 (no runner routing on
// Workers) and the Worker's /openapi.json documents the OpenAI routes; with S3 settings
// instead of R2 an upload lands in s3rver; a Worker without
// bindings still answers /healthz and refuses /v1 with 503.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { eq } from 'drizzle-orm';
import { convertV4MiniflareOptions, Miniflare } from 'miniflare';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPostgresDb, type DbHandle } from '../../src/db/client.ts';
import { chunks, documents, outbox } from '../../src/db/schema.ts';
import { CONSOLE_CACHE, CONSOLE_HEADERS } from '../../src/routes/console-headers.ts';
import { createEmbeddingProvider } from '../../src/embeddings/factory.ts';
import type { R2BucketLike } from '../../src/storage/r2.ts';
import { S3BlobStore } from '../../src/storage/s3.ts';
import { sha256 } from '../helpers/db-fixtures.ts';
import { type PgliteServer, startPgliteServer, TEST_POOL } from '../helpers/pglite-server.ts';
import { type S3TestServer, startS3 } from '../helpers/s3-server.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const WRANGLER = join(ROOT, 'node_modules/wrangler/bin/wrangler.js');
const ADMIN_KEY = 'admin-key-for-workers-e2e-0123456789';
const DIM = 256;

/**
 * Modules workerd implements natively: node:buffer, node:events, node:stream (nodejs_compat) and
 * cloudflare:sockets for postgres.js's workerd build; node:async_hooks (AsyncLocalStorage) for src/index.ts.
 */
const ALLOWED_EXTERNALS = new Set([
  'node:buffer',
  'node:events',
  'node:stream',
  'node:async_hooks',
  'cloudflare:sockets',
]);
/** Modules that must never reach the Worker: Node-only drivers, servers and stores. */
const FORBIDDEN_INPUTS = [
  /node_modules\/@electric-sql\//,
  /node_modules\/ioredis\//,
  /node_modules\/bullmq\//,
  /node_modules\/@hono\/node-server\//,
  /node_modules\/unenv\//, // a Node API wrangler had to polyfill
  /node_modules\/postgres\/(src|cjs)\//, // the Node build of postgres.js instead of its workerd one
  /^src\/db\/(pglite|client|migrate)\.ts$/,
  /^src\/storage\/(fs|open)\.ts$/,
  /^src\/log\.ts$/,
];

interface SearchPage {
  object: string;
  search_query: string;
  data: { file_id: string; filename: string; score: number; content: { type: string; text: string }[] }[];
}

interface Metafile {
  inputs: Record<string, { imports: { path: string; external?: boolean }[] }>;
}

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((res, rej) => {
    const child = spawn(cmd, args, {
      cwd: ROOT,
      env: { ...process.env, WRANGLER_SEND_METRICS: 'false', CI: '1', NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.once('error', rej);
    child.once('exit', (code) => (code === 0 ? res(out) : rej(new Error(`${cmd} exited ${code}:\n${out}`))));
  });
}

let outDir: string;
let metafile: Metafile;
let compatibilityDate: string;
/** wrangler.toml [assets] directory: the console's build, served before the Worker. */
let assetsDir: string;
let pg: PgliteServer;
let db: DbHandle;
let s3: S3TestServer;
let mf: Miniflare;

beforeAll(async () => {
  outDir = await mkdtemp(join(tmpdir(), 'kvrag-worker-'));
  const toml = await readFile(join(ROOT, 'wrangler.toml'), 'utf8');
  compatibilityDate = /^compatibility_date\s*=\s*"([\d-]+)"/m.exec(toml)?.[1] ?? '';
  assetsDir = /^\[assets\]\s*\ndirectory\s*=\s*"([^"]+)"/m.exec(toml)?.[1] ?? '';
  const [, server, s3server] = await Promise.all([
    run(process.execPath, [
      WRANGLER,
      'deploy',
      '--dry-run',
      '--outdir',
      outDir,
      '--metafile',
      join(outDir, 'meta.json'),
    ]),
    startPgliteServer(),
    startS3(),
  ]);
  pg = server;
  s3 = s3server;
  db = createPostgresDb(pg.url, TEST_POOL);
  metafile = JSON.parse(await readFile(join(outDir, 'meta.json'), 'utf8')) as Metafile;
  const worker = {
    modules: true,
    modulesRoot: outDir,
    scriptPath: join(outDir, 'index.js'),
    compatibilityDate,
  };
  mf = new Miniflare(
    convertV4MiniflareOptions({
      workers: [
        {
          ...worker,
          name: 'kvrag',
          hyperdrives: { HYPERDRIVE: pg.url },
          r2Buckets: ['BLOBS'],
          assets: { directory: join(ROOT, assetsDir), routerConfig: { has_user_worker: true } },
          bindings: { KVRAG_ADMIN_KEY: ADMIN_KEY, KVRAG_LOG_LEVEL: 'warn' },
        },
        // Blobs in an S3-compatible store instead (the AWS SDK inside workerd), here s3rver.
        {
          ...worker,
          name: 'kvrag-s3',
          hyperdrives: { HYPERDRIVE: pg.url },
          bindings: {
            KVRAG_ADMIN_KEY: ADMIN_KEY,
            KVRAG_LOG_LEVEL: 'warn',
            KVRAG_BLOB_STORE: 's3',
            KVRAG_S3_ENDPOINT: s3.endpoint,
            KVRAG_S3_BUCKET: s3.bucket,
            KVRAG_S3_REGION: s3.region,
            KVRAG_S3_ACCESS_KEY_ID: s3.accessKeyId,
            KVRAG_S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
            KVRAG_S3_FORCE_PATH_STYLE: 'true',
          },
        },
        // A secret that fails validation (an admin key under 16 characters).
        { ...worker, name: 'kvrag-misconfigured', bindings: { KVRAG_ADMIN_KEY: 'short-secret' } },
        // The same bundle with no database or blob binding: a deployment missing its setup.
        { ...worker, name: 'kvrag-unbound', bindings: { KVRAG_LOG_LEVEL: 'silent' } },
      ],
    }),
  );
  await mf.ready;
});

afterAll(async () => {
  await mf?.dispose();
  await db?.close();
  await pg?.stop();
  await s3?.stop();
  if (outDir) await rm(outDir, { recursive: true, force: true });
});

interface CallOptions {
  key?: string;
  json?: unknown;
  /** A multipart body (OpenAI's file upload). */
  form?: FormData;
  /** Which of the Miniflare workers (default: `kvrag`, the wrangler.toml bindings). */
  worker?: string;
}

/** A worker's fetch; Miniflare's types lean on @cloudflare/workers-types (not installed), hence the view. */
async function workerFetch(name: string) {
  return (await mf.getWorker(name)) as unknown as {
    fetch(url: string, init?: RequestInit): Promise<Response>;
  };
}

async function call(method: string, path: string, opts: CallOptions = {}) {
  const headers: Record<string, string> = {};
  if (opts.key) headers.authorization = `Bearer ${opts.key}`;
  if (opts.json !== undefined) headers['content-type'] = 'application/json';
  let body: BodyInit | undefined = opts.json === undefined ? undefined : JSON.stringify(opts.json);
  if (opts.form) {
    // encoded here, boundary and all: the form as bytes crosses into workerd unchanged
    const encoded = new Request('http://form.test', { method: 'POST', body: opts.form });
    headers['content-type'] = encoded.headers.get('content-type')!;
    body = await encoded.arrayBuffer();
  }
  const res = await (await workerFetch(opts.worker ?? 'kvrag')).fetch(`http://kvrag.test${path}`, {
    method,
    headers,
    body,
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> & { data?: unknown } };
}

async function expectJson<T>(status: number, method: string, path: string, opts?: CallOptions) {
  const res = await call(method, path, opts);
  if (res.status !== status)
    throw new Error(`${method} ${path}: expected ${status}, got ${res.status}: ${JSON.stringify(res.body)}`);
  return res.body as T;
}

/** A tenant, its API key and a hash-embedding collection, all made through the worker. */
async function setupTenant(worker: string, name: string) {
  const tenant = await expectJson<{ id: string }>(201, 'POST', '/v1/admin/tenants', {
    worker,
    key: ADMIN_KEY,
    json: { name },
  });
  const { key } = await expectJson<{ key: string }>(201, 'POST', `/v1/admin/tenants/${tenant.id}/keys`, {
    worker,
    key: ADMIN_KEY,
    json: { name: `${name}-key` },
  });
  const coll = await expectJson<{ id: string }>(201, 'POST', '/v1/collections', {
    worker,
    key,
    json: { name: 'kb', embedding: { provider: 'hash', dimension: DIM } },
  });
  return { tenantId: tenant.id, key, collectionId: coll.id };
}

describe('Workers build (wrangler bundle in workerd via Miniflare)', () => {
  it('targets a 2026 compatibility date after 2026-08-04 without listing nodejs_compat', async () => {
    expect(compatibilityDate > '2026-08-04' && compatibilityDate < '2027-01-01').toBe(true);
    const toml = await readFile(join(ROOT, 'wrangler.toml'), 'utf8');
    expect(toml).not.toMatch(/^\s*compatibility_flags\s*=.*nodejs_compat/m);
  });

  it('bundles no Node-only module', () => {
    const inputs = Object.keys(metafile.inputs);
    expect(inputs).toContain('src/index.ts');
    expect(inputs.some((i) => i.includes('node_modules/postgres/cf/'))).toBe(true);
    expect(inputs.filter((i) => FORBIDDEN_INPUTS.some((re) => re.test(i)))).toEqual([]);
    const externals = new Set<string>();
    for (const { imports } of Object.values(metafile.inputs))
      for (const im of imports) if (im.external && im.path !== '<runtime>') externals.add(im.path);
    expect([...externals].filter((e) => !ALLOWED_EXTERNALS.has(e))).toEqual([]);
  });

  it("serves the console's build as static assets at / while /v1 and /healthz reach the Worker", async () => {
    expect(assetsDir).toBe('dist/console');
    const built = await readFile(join(ROOT, assetsDir, 'index.html'), 'utf8');
    // through Miniflare's entry (the first worker, `kvrag`), where the assets router sits before the Worker
    const worker = {
      fetch: (url: string) => mf.dispatchFetch(url) as unknown as Promise<Response>,
    };
    const page = await worker.fetch('http://kvrag.test/');
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(await page.text()).toBe(built);
    // the build's _headers apply there too: the same policy the API sends on Node
    for (const [k, v] of Object.entries(CONSOLE_HEADERS)) expect(page.headers.get(k)).toBe(v);
    const script = /src="(\/assets\/[^"]+\.js)"/.exec(built)![1];
    const js = await worker.fetch(`http://kvrag.test${script}`);
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toMatch(/javascript/);
    expect((await js.text()).length).toBeGreaterThan(1000);
    expect(js.headers.get('cache-control')).toBe(CONSOLE_CACHE.hashed);
    expect((await worker.fetch('http://kvrag.test/healthz')).status).toBe(200);
    // the API is still the Worker's: an unauthenticated /v1 call gets its envelope
    const api = await worker.fetch('http://kvrag.test/v1/collections');
    expect(api.status).toBe(401);
    expect(((await api.json()) as { error: { code: string } }).error.code).toBe('unauthorized');
  });

  it('answers /healthz and /readyz (database through Hyperdrive, blobs in R2)', async () => {
    expect(await expectJson(200, 'GET', '/healthz')).toEqual({ status: 'ok' });
    expect(await expectJson(200, 'GET', '/readyz')).toEqual({
      status: 'ready',
      checks: { database: 'ok', blobs: 'ok' },
    });
  });

  it('writes an upload to R2 and the outbox, and finds inserted chunks by an authenticated search', async () => {
    const { tenantId, key, collectionId } = await setupTenant('kvrag', 'edge');
    const texts = [
      'Hyperdrive pools Postgres connections close to the Worker.',
      'R2 keeps the uploaded documents and the chunk KV caches.',
      'Sourdough needs a long, cold proof for an open crumb.',
    ];
    const doc = await expectJson<{ id: string; status: string }>(
      201,
      'POST',
      `/v1/collections/${collectionId}/documents`,
      {
        key,
        json: { text: texts.join('\n\n'), filename: 'edge.txt' },
      },
    );
    expect(doc.status).toBe('queued');

    // The upload is in the R2 bucket, and its ingest job in the outbox for the relay.
    const [row] = await db.db.select().from(documents).where(eq(documents.id, doc.id));
    // Miniflare's types lean on @cloudflare/workers-types, not installed: view the proxy by its shape.
    const bucket = (await mf.getR2Bucket('BLOBS', 'kvrag')) as unknown as R2BucketLike;
    const object = await bucket.get(row.objectKey!);
    expect(new TextDecoder().decode(await object!.arrayBuffer())).toBe(texts.join('\n\n'));
    const jobs = await db.db
      .select()
      .from(outbox)
      .where(eq(outbox.jobId, `ingest-${doc.id}`));
    expect(jobs.map((j) => j.queue)).toEqual(['ingest']);

    // Chunks as the ingest worker would write them (hash embeddings, as the collection says).
    const vectors = await createEmbeddingProvider({ provider: 'hash', dimension: DIM }).embed(
      texts,
      'document',
    );
    await db.db.insert(chunks).values(
      texts.map((text, i) => ({
        tenantId,
        collectionId,
        documentId: doc.id,
        ordinal: i,
        text,
        tokenCount: text.split(/\s+/).length,
        contentHash: sha256(text),
        embedding: Array.from(vectors[i]),
        embeddingDim: DIM,
      })),
    );

    const page = await expectJson<SearchPage>(200, 'POST', `/v1/collections/${collectionId}/search`, {
      key,
      json: { query: 'sourdough cold proof', max_num_results: 3 },
    });
    expect(page.object).toBe('vector_store.search_results.page');
    expect(page.data.length).toBeGreaterThan(0);
    expect(page.data[0]).toMatchObject({
      file_id: doc.id,
      filename: 'edge.txt',
      content: [{ type: 'text', text: texts[2] }],
    });
    const scores = page.data.map((d) => d.score);
    expect(scores).toEqual([...scores].sort((x, y) => y - x));

    // Concurrent requests on one isolate (one app): each has its own services and gets its own answer.
    const queries = ['Hyperdrive pools Postgres', 'R2 uploaded documents', 'sourdough cold proof'];
    const pages = await Promise.all(
      Array.from({ length: 9 }, (_, i) =>
        expectJson<SearchPage>(200, 'POST', `/v1/collections/${collectionId}/search`, {
          key,
          json: { query: queries[i % 3], max_num_results: 1 },
        }),
      ),
    );
    expect(pages.map((p) => p.data[0]?.content[0].text)).toEqual(
      Array.from({ length: 9 }, (_, i) => texts[i % 3]),
    );

    // Without a key, or with a wrong one: the envelope, and nothing searched.
    const anonymous = await call('POST', `/v1/collections/${collectionId}/search`, {
      json: { query: 'sourdough' },
    });
    expect(anonymous.status).toBe(401);
    expect(anonymous.body).toMatchObject({ error: { code: 'unauthorized' } });
    const wrong = await call('POST', `/v1/collections/${collectionId}/search`, {
      key: `${key.slice(0, -4)}zzzz`,
      json: { query: 'sourdough' },
    });
    expect(wrong.status).toBe(401);
  });

  it('serves OpenAI Files, Vector Stores, search and embeddings: copies in R2, ingest jobs in the outbox', async () => {
    const { key } = await setupTenant('kvrag', 'edge-openai');
    const form = new FormData();
    form.set('file', new File(['Workers keep files in R2.'], 'w.txt', { type: 'text/plain' }));
    form.set('purpose', 'assistants');
    const file = await expectJson<{ id: string; object: string }>(200, 'POST', '/v1/files', { key, form });
    expect(file.object).toBe('file');
    const store = await expectJson<{ id: string; file_counts: { in_progress: number } }>(
      200,
      'POST',
      '/v1/vector_stores',
      { key, json: { name: 'edge', file_ids: [file.id], embedding: { dimension: DIM } } },
    );
    expect(store.file_counts.in_progress).toBe(1);
    const [doc] = await db.db.select().from(documents).where(eq(documents.fileId, file.id));
    const bucket = (await mf.getR2Bucket('BLOBS', 'kvrag')) as unknown as R2BucketLike;
    for (const k of [`uploads/${doc.tenantId}/files/${file.id}`, doc.objectKey!])
      expect(new TextDecoder().decode(await (await bucket.get(k))!.arrayBuffer())).toBe(
        'Workers keep files in R2.',
      );
    const jobs = await db.db
      .select()
      .from(outbox)
      .where(eq(outbox.jobId, `ingest-${doc.id}`));
    expect(jobs).toHaveLength(1);
    const missing = await call('GET', `/v1/vector_stores/${crypto.randomUUID()}`, { key });
    expect(missing.status).toBe(404);
    expect(missing.body).toMatchObject({
      error: { type: 'invalid_request_error', code: 'not_found', param: null },
    });

    // a second file attached with attributes; chunks for both as the ingest worker would write them
    // (hash embeddings, as the store says); search with a compound filter finds only the matching file
    const form2 = new FormData();
    form2.set('file', new File(['Gate G2 opens at noon.'], 'g2.txt', { type: 'text/plain' }));
    form2.set('purpose', 'assistants');
    const file2 = await expectJson<{ id: string }>(200, 'POST', '/v1/files', { key, form: form2 });
    const attached = await expectJson<{ status: string; attributes: unknown }>(
      200,
      'POST',
      `/v1/vector_stores/${store.id}/files`,
      { key, json: { file_id: file2.id, attributes: { gate: 'G2', floor: 2 } } },
    );
    expect(attached).toMatchObject({ status: 'in_progress', attributes: { gate: 'G2', floor: 2 } });
    const docs = await db.db.select().from(documents).where(eq(documents.collectionId, store.id));
    const texts = new Map([
      [file.id, 'Workers keep files in R2.'],
      [file2.id, 'Gate G2 opens at noon.'],
    ]);
    const embedder = createEmbeddingProvider({ provider: 'hash', dimension: DIM });
    for (const d of docs) {
      const text = texts.get(d.fileId!)!;
      const [vector] = await embedder.embed([text], 'document');
      await db.db.insert(chunks).values({
        tenantId: d.tenantId,
        collectionId: store.id,
        documentId: d.id,
        ordinal: 0,
        text,
        tokenCount: text.split(/\s+/).length,
        contentHash: sha256(text),
        embedding: Array.from(vector),
        embeddingDim: DIM,
      });
    }
    const filters = {
      type: 'or',
      filters: [
        { type: 'eq', key: 'gate', value: 'G2' },
        { type: 'gte', key: 'floor', value: 3 },
      ],
    };
    const page = await expectJson<SearchPage>(200, 'POST', `/v1/vector_stores/${store.id}/search`, {
      key,
      json: { query: ['files', 'gate noon'], filters },
    });
    expect(page.object).toBe('vector_store.search_results.page');
    expect(page.data.map((d) => [d.file_id, d.filename])).toEqual([[file2.id, 'g2.txt']]);
    const unfiltered = await expectJson<SearchPage>(200, 'POST', `/v1/vector_stores/${store.id}/search`, {
      key,
      json: { query: ['files', 'gate noon'] },
    });
    expect(new Set(unfiltered.data.map((d) => d.file_id))).toEqual(new Set([file.id, file2.id]));

    // embeddings with the store's provider: the vector its search compares against
    const emb = await expectJson<{ object: string; data: { embedding: number[] }[] }>(
      200,
      'POST',
      '/v1/embeddings',
      { key, json: { model: store.id, input: 'Gate G2 opens at noon.', encoding_format: 'float' } },
    );
    const [expected] = await embedder.embed(['Gate G2 opens at noon.'], 'document');
    expect(emb.object).toBe('list');
    expect(emb.data[0].embedding).toEqual(Array.from(expected));

    // the Workers build routes to no runner: responses answer 503 in OpenAI's shape, as /v1/query does
    const response = await call('POST', '/v1/responses', {
      key,
      json: { model: 'any', input: 'When?', tools: [{ type: 'file_search', vector_store_ids: [store.id] }] },
    });
    expect(response.status).toBe(503);
    expect(response.body).toMatchObject({ error: { type: 'server_error', code: 'unavailable' } });
    // and /openapi.json, served by the Worker, documents the OpenAI routes
    const spec = await expectJson<{ paths: Record<string, unknown> }>(200, 'GET', '/openapi.json');
    for (const path of [
      '/v1/files',
      '/v1/vector_stores/{vector_store}/search',
      '/v1/vector_stores/{vector_store}/file_batches',
      '/v1/responses',
      '/v1/embeddings',
    ])
      expect(Object.keys(spec.paths)).toContain(path);
  });

  it('keeps uploads in an S3-compatible store when configured so (AWS SDK in workerd, s3rver)', async () => {
    expect(await expectJson(200, 'GET', '/readyz', { worker: 'kvrag-s3' })).toEqual({
      status: 'ready',
      checks: { database: 'ok', blobs: 'ok' },
    });
    const { key, collectionId } = await setupTenant('kvrag-s3', 'edge-s3');
    const text = 'An upload through the S3 protocol from inside workerd.';
    const doc = await expectJson<{ id: string }>(201, 'POST', `/v1/collections/${collectionId}/documents`, {
      worker: 'kvrag-s3',
      key,
      json: { text, filename: 's3.txt' },
    });
    const [row] = await db.db.select().from(documents).where(eq(documents.id, doc.id));
    const store = new S3BlobStore({ ...s3, forcePathStyle: true });
    try {
      expect(new TextDecoder().decode((await store.get(row.objectKey!))!)).toBe(text);
    } finally {
      await store.close();
    }
  });

  it('without bindings still answers /healthz, fails /readyz (what is missing goes to the log) and refuses /v1', async () => {
    const worker = await workerFetch('kvrag-unbound');
    const get = async (path: string, init?: RequestInit) => {
      const res = await worker.fetch(`http://kvrag.test${path}`, init);
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    expect(await get('/healthz')).toEqual({ status: 200, body: { status: 'ok' } });
    const ready = await get('/readyz');
    expect(ready.status).toBe(503);
    expect(ready.body).toEqual({ status: 'not_ready', checks: { configuration: 'error' } });
    const search = await get('/v1/collections/x/search', {
      method: 'POST',
      headers: { authorization: `Bearer kvrag_${'a'.repeat(43)}`, 'content-type': 'application/json' },
      body: '{"query":"x"}',
    });
    expect(search.status).toBe(503);
    expect(search.body).toMatchObject({ error: { code: 'unavailable' } });
  });

  it('with an invalid setting answers 503 naming the variable, never its value', async () => {
    for (const path of ['/healthz', '/v1/collections']) {
      const res = await (await workerFetch('kvrag-misconfigured')).fetch(`http://kvrag.test${path}`);
      expect(res.status).toBe(503);
      const text = await res.text();
      expect(JSON.parse(text)).toMatchObject({
        error: { code: 'unavailable', message: expect.stringContaining('KVRAG_ADMIN_KEY') },
      });
      expect(text).not.toContain('short-secret');
      expect(res.headers.get('x-request-id')).toBeTruthy();
    }
  });
});
