// The runner API is closed (issue 19 §1), over real HTTP (@hono/node-server on a free port, the real runner
// app, tiny model on the reference backend): every route but /healthz refuses a missing, malformed or wrong
// credential with 401 and does no work; the current and the previous credential (rotation) are accepted;
// a chunked body without Content-Length over the limit gets 413 while the runner's heap stays far below
// the body's size; maxTokens, deadlines and precompute batches are capped by the runner's limits; the
// runner binds 127.0.0.1 unless told otherwise.
import { request } from 'node:http';
import { networkInterfaces } from 'node:os';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRunner, type Runner } from '../../gpu-runner/server/runner.ts';
import type { RunnerUsage } from '../../contracts/runner-api.ts';
import { MemoryBlobStore } from '../../src/storage/memory.ts';
import { collectSse } from '../helpers/sse.ts';
import { tinyModels } from '../helpers/tiny-model.ts';

const models = tinyModels();
const CURRENT = 'runner-auth-current-credential-0123456789abcdef';
const PREVIOUS = 'runner-auth-previous-credential-0123456789abcdef';
const LIMIT = 256 * 1024;
let runner: Runner;
let blobs: MemoryBlobStore;
let port: number;
let base: string;

beforeAll(async () => {
  blobs = new MemoryBlobStore();
  runner = await createRunner({
    modelDir: models.make('auth', { arch: 'llama', seed: 5, layers: 2 }),
    backend: 'reference',
    blobs,
    port: 0,
    credential: { current: CURRENT, previous: PREVIOUS },
    limits: { maxTokens: 8, maxDeadlineMs: 400, maxBodyBytes: LIMIT, precomputeBatch: 2 },
  });
  port = (await runner.start()).port!;
  base = `http://127.0.0.1:${port}`;
}, 30_000);
afterAll(async () => {
  await runner?.stop({ graceMs: 0 });
  models.cleanup();
});

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const json = (body: unknown, headers: Record<string, string> = {}): RequestInit => ({
  method: 'POST',
  headers: { 'content-type': 'application/json', ...headers },
  body: JSON.stringify(body),
});

/** Every route the runner serves (and one it does not), each with a request that would do work. */
const ROUTES: [string, string, (h: Record<string, string>) => RequestInit][] = [
  ['GET', '/readyz', (h) => ({ headers: h })],
  ['GET', '/metrics', (h) => ({ headers: h })],
  ['GET', '/v1/model', (h) => ({ headers: h })],
  ['GET', `/v1/artifacts/${'a'.repeat(64)}`, (h) => ({ headers: h })],
  ['POST', '/v1/generate', (h) => json({ question: 'hello', maxTokens: 2 }, h)],
  ['POST', '/v1/precompute', (h) => json({ chunks: [{ text: 'never stored' }] }, h)],
  ['GET', '/no/such/route', (h) => ({ headers: h })],
];

describe('runner credential', () => {
  it('every route but /healthz refuses a missing, malformed or wrong credential with 401, doing no work', async () => {
    const stepsBefore = runner.core.scheduler.stats().steps;
    const refused: Record<string, string>[] = [
      {},
      { authorization: CURRENT },
      { authorization: `Basic ${Buffer.from(`x:${CURRENT}`).toString('base64')}` },
      { authorization: 'Bearer ' },
      bearer(`${CURRENT}x`),
      bearer(CURRENT.slice(0, -1)),
      bearer('y'.repeat(48)),
    ];
    for (const [method, path, init] of ROUTES) {
      for (const h of refused) {
        const res = await fetch(`${base}${path}`, { method, ...init(h) });
        expect(res.status, `${method} ${path} with ${JSON.stringify(h)}`).toBe(401);
        expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
        const body = (await res.json()) as { error: { code: string } };
        expect(body.error.code).toBe('unauthorized');
      }
    }
    // nothing ran and nothing was stored
    expect(runner.core.scheduler.stats().steps).toBe(stepsBefore);
    const stored = [];
    for await (const b of blobs.list('')) stored.push(b.key);
    expect(stored).toEqual([]);
    // /healthz is open (liveness probes), and says nothing but that the process is up
    const health = await fetch(`${base}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ ok: true });
  });

  it('the current and the previous credential are both accepted (rotation without downtime)', async () => {
    for (const token of [CURRENT, PREVIOUS]) {
      const ready = await fetch(`${base}/readyz`, { headers: bearer(token) });
      expect(ready.status).toBe(200);
      expect(((await ready.json()) as { fingerprint: string }).fingerprint).toBe(
        runner.core.engine.fingerprint,
      );
      const gen = await fetch(`${base}/v1/generate`, json({ question: 'hi', maxTokens: 2 }, bearer(token)));
      expect(gen.status).toBe(200);
      expect((await collectSse(gen)).at(-1)!.event).toBe('done');
    }
  });
});

/** Streams `total` bytes of a JSON-looking body with chunked transfer encoding (no Content-Length). */
function chunkedPost(
  total: number,
  headers: Record<string, string>,
): Promise<{ status: number; sent: number; body: string }> {
  return new Promise((resolve, reject) => {
    const piece = Buffer.alloc(64 * 1024, 0x20);
    let sent = 0;
    let answered = false;
    const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/generate', headers }, (res) => {
      answered = true;
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, sent, body: Buffer.concat(parts).toString() }),
      );
    });
    req.on('error', (e) => {
      if (!answered) reject(e);
    });
    const write = () => {
      while (!answered && sent < total) {
        sent += piece.length;
        if (!req.write(piece)) return void req.once('drain', write);
      }
      if (!answered) req.end();
    };
    req.write('{"question": "');
    write();
  });
}

describe('request bodies', () => {
  it('a chunked body over the limit gets 413 while the runner heap stays far below the body size', async () => {
    const total = 192 * 1024 * 1024;
    const mem = () => {
      const m = process.memoryUsage();
      return m.heapUsed + m.arrayBuffers;
    };
    const before = mem();
    let peak = before;
    const sampler = setInterval(() => {
      peak = Math.max(peak, mem());
    }, 2);
    const res = await chunkedPost(total, {
      'content-type': 'application/json',
      'transfer-encoding': 'chunked',
      ...bearer(CURRENT),
    }).finally(() => clearInterval(sampler));
    expect(res.status).toBe(413);
    expect(JSON.parse(res.body).error.code).toBe('payload_too_large');
    // the runner answered long before the client was done: it stopped reading past the limit (+ drain cap)
    expect(res.sent).toBeLessThan(total / 4);
    // heap + buffers grew by a small multiple of the limit and drain window, never by the body's size
    expect(peak - before).toBeLessThan(48 * 1024 * 1024);
  });

  it('a declared Content-Length over the limit is refused before it is read', async () => {
    const body = JSON.stringify({ question: 'x'.repeat(LIMIT) });
    const res = await fetch(`${base}/v1/generate`, json(JSON.parse(body), bearer(CURRENT)));
    expect(res.status).toBe(413);
    // a body just under the limit (whitespace padding is valid JSON) is read and parsed as usual
    const padded = `${JSON.stringify({ question: 'hi', maxTokens: 1 })}${' '.repeat(LIMIT - 100)}`;
    const ok = await fetch(`${base}/v1/generate`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(CURRENT) },
      body: padded,
    });
    expect(ok.status).toBe(200);
    await collectSse(ok);
  });
});

describe('caps from configuration', () => {
  it('maxTokens and deadlineMs over the caps are refused with 400 naming the cap', async () => {
    for (const [body, cap] of [
      [{ question: 'a', maxTokens: 9 }, 'cap of 8'],
      [{ question: 'a', maxTokens: 2, deadlineMs: 401 }, 'cap of 400'],
    ] as const) {
      const res = await fetch(`${base}/v1/generate`, json(body, bearer(CURRENT)));
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { message: string } }).error.message).toContain(cap);
    }
  });

  it('a request without a deadline gets the cap as its deadline', async () => {
    // slow down the engine so 8 tokens take longer than the 400 ms cap: each step waits on the mutex
    const mutex = runner.core.scheduler.mutex;
    const run = mutex.run.bind(mutex);
    mutex.run = (fn) =>
      run(async () => {
        await new Promise((r) => setTimeout(r, 120));
        return fn();
      });
    try {
      const res = await fetch(
        `${base}/v1/generate`,
        json({ question: 'slow', maxTokens: 8, ignoreEos: true }, bearer(CURRENT)),
      );
      const done = (await collectSse(res)).at(-1)!;
      expect(done.event).toBe('done');
      expect((done.data as RunnerUsage).finishReason).toBe('deadline');
      expect((done.data as RunnerUsage).completionTokens).toBeLessThan(8);
    } finally {
      mutex.run = run;
    }
  });

  it('POST /v1/precompute holds the engine for at most precomputeBatch chunks at a time', async () => {
    const mutex = runner.core.scheduler.mutex;
    const run = mutex.run.bind(mutex);
    let holds = 0;
    mutex.run = (fn) => {
      holds++;
      return run(fn);
    };
    try {
      const chunks = Array.from({ length: 5 }, (_, i) => ({ text: `chunk number ${i} of five` }));
      const res = await fetch(`${base}/v1/precompute`, json({ chunks }, bearer(CURRENT)));
      expect(res.status).toBe(200);
      const { artifacts } = (await res.json()) as { artifacts: { skipped: boolean }[] };
      expect(artifacts.filter((a) => !a.skipped)).toHaveLength(5);
      expect(holds).toBe(3); // ceil(5 / 2)
    } finally {
      mutex.run = run;
    }
  });
});

describe('bind address', () => {
  it('a runner given no host listens on 127.0.0.1 only', async () => {
    expect(runner.core.url).toBe(`http://127.0.0.1:${port}`);
    const external = Object.values(networkInterfaces())
      .flat()
      .find((a) => a && a.family === 'IPv4' && !a.internal)?.address;
    // where the machine has another address, nothing answers there
    if (external) {
      const reached = await new Promise<boolean>((resolve) => {
        const s = connect({ host: external, port }, () => {
          s.destroy();
          resolve(true);
        });
        s.on('error', () => resolve(false));
      });
      expect(reached).toBe(false);
    }
  });
});
