// The API through `kvrag serve` over real HTTP (embedded mode: PGlite on disk, filesystem blobs): the
// admin key from the environment creates a tenant and key, the key creates a collection, a multipart
// upload becomes a queued document with its raw bytes on disk, the in-process workers and runner take it to
// `ready` with its chunk KV artifact stored, search finds it, and an upload over
// KVRAG_MAX_UPLOAD_BYTES is refused with a 413 envelope that the client gets to read: the server drains the
// refused body first, also when the client pauses mid-body (a reset socket would lose the response).
import type { ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnServe, stopServe } from '../helpers/serve-process.ts';

const ADMIN = 'e2e-admin-key-0123456789abcdef';

let child: ChildProcess;
let url: string;
let cwd: string;

beforeAll(async () => {
  cwd = mkdtempSync(join(tmpdir(), 'kvrag-api-serve-'));
  const serve = spawnServe({
    cwd,
    env: { KVRAG_PORT: '0', KVRAG_ADMIN_KEY: ADMIN, KVRAG_MAX_UPLOAD_BYTES: '100000' },
  });
  child = serve.child;
  url = await serve.url;
});
afterAll(async () => {
  await stopServe(child);
  if (cwd) rmSync(cwd, { recursive: true, force: true });
});

async function call<T = Record<string, unknown>>(key: string, method: string, path: string, body?: unknown) {
  const init: RequestInit = { method, headers: { authorization: `Bearer ${key}` } };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)['content-type'] = 'application/json';
  }
  const res = await fetch(`${url}${path}`, init);
  return { status: res.status, body: (await res.json()) as T, requestId: res.headers.get('x-request-id') };
}

/** POSTs `parts` over a plain socket, pausing `pauseMs` between them. Returns the raw response, the first
 *  socket error, and whether the server ended the connection before the whole body was written: a client
 *  like fetch/undici, still writing then, fails with EPIPE/ECONNRESET instead of reading the response. */
function rawPost(headers: string[], parts: Buffer[], pauseMs: number) {
  const { hostname, port } = new URL(url);
  return new Promise<{ response: string; error?: string; endedMidBody: boolean }>((resolve) => {
    const sock = connect(Number(port), hostname);
    let response = '';
    let error: string | undefined;
    let sent = false;
    let endedMidBody = false;
    sock.on('data', (d) => {
      response += d.toString();
    });
    sock.on('error', (e) => {
      error ??= String(e);
    });
    sock.on('end', () => {
      endedMidBody = !sent;
    });
    sock.on('close', () => resolve({ response, error, endedMidBody }));
    sock.once('connect', async () => {
      sock.write(`${headers.join('\r\n')}\r\n\r\n`);
      for (const [i, p] of parts.entries()) {
        if (i > 0) await new Promise((r) => setTimeout(r, pauseMs));
        if (sock.writable) sock.write(p, i === parts.length - 1 ? () => (sent = true) : undefined);
      }
    });
  });
}

describe('API over kvrag serve', () => {
  it('admin → tenant key → collection → upload → search, and a 413 for an oversize upload', async () => {
    const tenant = await call<{ id: string }>(ADMIN, 'POST', '/v1/admin/tenants', { name: 'e2e' });
    expect(tenant.status).toBe(201);
    const key = await call<{ key: string }>(ADMIN, 'POST', `/v1/admin/tenants/${tenant.body.id}/keys`, {});
    expect(key.status).toBe(201);
    const k = key.body.key;

    const coll = await call<{ id: string }>(k, 'POST', '/v1/collections', {
      name: 'e2e',
      embedding: { dimension: 256 },
    });
    expect(coll.status).toBe(201);

    const form = new FormData();
    form.set(
      'file',
      new Blob(['# Notes\n\nThe relay moves outbox rows to the queue.'], { type: 'text/markdown' }),
      'notes.md',
    );
    const doc = await call<{ id: string; status: string }>(
      k,
      'POST',
      `/v1/collections/${coll.body.id}/documents`,
      form,
    );
    expect(doc.status).toBe(201);
    expect(doc.body.status).toBe('queued');
    expect(
      existsSync(join(cwd, '.kvrag', 'blobs', 'uploads', tenant.body.id, coll.body.id, doc.body.id)),
    ).toBe(true);

    // The in-process workers and runner take it through parsing, chunking, embedding and KV precompute.
    const seen = new Set<string>();
    let status = 'queued';
    for (let i = 0; i < 240 && status !== 'ready' && status !== 'failed'; i++) {
      const got = await call<{ status: string }>(
        k,
        'GET',
        `/v1/collections/${coll.body.id}/documents/${doc.body.id}`,
      );
      expect(got.status).toBe(200);
      status = got.body.status;
      seen.add(status);
      if (status !== 'ready') await new Promise((r) => setTimeout(r, 250));
    }
    expect(status).toBe('ready');
    // The chunk's KV artifact is in the object store, under the served model's fingerprint.
    const kvRoot = join(cwd, '.kvrag', 'blobs', 'kv');
    expect(existsSync(kvRoot)).toBe(true);
    expect(readdirSync(kvRoot, { recursive: true }).some((f) => String(f).endsWith('.kv'))).toBe(true);

    const search = await call<{ object: string; data: { file_id: string; content: { text: string }[] }[] }>(
      k,
      'POST',
      `/v1/collections/${coll.body.id}/search`,
      { query: 'outbox relay' },
    );
    expect(search.status).toBe(200);
    expect(search.body.object).toBe('vector_store.search_results.page');
    expect(search.body.data[0].file_id).toBe(doc.body.id);
    expect(search.body.data[0].content[0].text).toContain('relay moves outbox rows');

    const big = new FormData();
    big.set('file', new Blob(['x'.repeat(300_000)]), 'big.txt');
    const refused = await call<{ error: { code: string; request_id: string } }>(
      k,
      'POST',
      `/v1/collections/${coll.body.id}/documents`,
      big,
    );
    expect(refused.status).toBe(413);
    expect(refused.body.error.code).toBe('payload_too_large');
    expect(refused.body.error.request_id).toBe(refused.requestId);
    // A client still sending when the limit is known (declared length) gets the whole 413, not a reset.
    const half = Buffer.alloc(150_000, 'x');
    const raw = await rawPost(
      [
        `POST /v1/collections/${coll.body.id}/documents HTTP/1.1`,
        `host: ${new URL(url).host}`,
        `authorization: Bearer ${k}`,
        'content-type: multipart/form-data; boundary=b',
        `content-length: ${2 * half.length}`,
      ],
      [half, half],
      300,
    );
    expect(raw.error).toBeUndefined();
    expect(raw.endedMidBody).toBe(false);
    expect(raw.response).toMatch(/^HTTP\/1\.1 413 /);
    expect(raw.response.toLowerCase()).toContain('connection: close');
    expect(raw.response).toContain('"payload_too_large"');
    const list = await call<{ data: unknown[] }>(k, 'GET', `/v1/collections/${coll.body.id}/documents`);
    expect(list.body.data).toHaveLength(1);

    const anon = await fetch(`${url}/v1/collections`);
    expect(anon.status).toBe(401);
  });
});
