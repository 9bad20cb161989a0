// The OpenAI-compatible provider against a real HTTP server on 127.0.0.1 that speaks POST /v1/embeddings
// and injects failures (503, 429 with Retry-After, dropped connections, stalls, wrong dimensions).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { hashEmbed } from '../../../src/embeddings/hash.ts';
import { OpenAiEmbeddingProvider, planBatches, utf8Length } from '../../../src/embeddings/openai.ts';
import { AppError } from '../../../contracts/errors.ts';

const DIM = 16;

type Fault =
  | { kind: 'status'; status: number; body?: unknown; headers?: Record<string, string> }
  | { kind: 'drop' }
  | { kind: 'stall'; ms: number }
  | { kind: 'dimension'; dim: number }
  | { kind: 'base64' };

interface Seen {
  auth: string | undefined;
  body: { model: string; input: string[]; dimensions?: number };
}

let server: Server;
let baseUrl: string;
let faults: Fault[] = [];
let seen: Seen[] = [];

/** The server's embedding of a text: the hash embedding, so expected vectors are known independently. */
const vectorOf = (text: string, dim = DIM) => Array.from(hashEmbed(text, dim));

function handle(req: IncomingMessage, res: ServerResponse) {
  let raw = '';
  req.on('data', (c) => (raw += c));
  req.on('end', () => {
    if (req.method !== 'POST' || req.url !== '/v1/embeddings') {
      res
        .writeHead(404, { 'content-type': 'application/json' })
        .end(JSON.stringify({ error: { message: 'nope' } }));
      return;
    }
    const body = JSON.parse(raw) as Seen['body'];
    seen.push({ auth: req.headers.authorization, body });
    const fault = faults.shift();
    if (fault?.kind === 'drop') {
      req.socket.destroy();
      return;
    }
    if (fault?.kind === 'stall') {
      setTimeout(() => res.destroyed || res.end(), fault.ms);
      return;
    }
    if (fault?.kind === 'status') {
      res.writeHead(fault.status, { 'content-type': 'application/json', ...fault.headers });
      res.end(JSON.stringify(fault.body ?? { error: { message: `injected ${fault.status}` } }));
      return;
    }
    const dim = fault?.kind === 'dimension' ? fault.dim : DIM;
    // answer in reverse order: the client must restore input order from `index`
    const data = body.input
      .map((t, index) => {
        const v = vectorOf(t, dim);
        const embedding =
          fault?.kind === 'base64' ? Buffer.from(new Float32Array(v).buffer).toString('base64') : v;
        return { object: 'embedding', index, embedding };
      })
      .reverse();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        object: 'list',
        data,
        model: body.model,
        usage: { prompt_tokens: 1, total_tokens: 1 },
      }),
    );
  });
}

beforeAll(async () => {
  server = createServer(handle);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));
beforeEach(() => {
  faults = [];
  seen = [];
});

const provider = (extra: Partial<ConstructorParameters<typeof OpenAiEmbeddingProvider>[0]> = {}) =>
  new OpenAiEmbeddingProvider({
    baseUrl,
    apiKey: 'sk-test',
    model: 'test-embed',
    dimension: DIM,
    initialBackoffMs: 1,
    maxBackoffMs: 20,
    ...extra,
  });

async function appError(p: Promise<unknown>): Promise<AppError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AppError);
  return err as AppError;
}

describe('OpenAI-compatible embeddings', () => {
  it('embeds in input order, with the key, model and batching limits', async () => {
    const texts = Array.from({ length: 10 }, (_, i) => `text number ${i} ${'x'.repeat(i)}`);
    const out = await provider({ maxBatchInputs: 3 }).embed(texts, 'document');
    expect(out.map((v) => Array.from(v))).toEqual(
      texts.map((t) => Array.from(new Float32Array(vectorOf(t)))),
    );
    expect(seen.map((s) => s.body.input.length)).toEqual([3, 3, 3, 1]);
    expect(seen.every((s) => s.auth === 'Bearer sk-test' && s.body.model === 'test-embed')).toBe(true);
    expect(seen[0].body.dimensions).toBeUndefined();
  });

  it('splits batches by estimated tokens and sends `dimensions` when asked', async () => {
    const texts = ['aaaa', 'bbbb', 'cccc', 'dddddddddddd', 'e'];
    await provider({ maxBatchTokens: 8, countTokens: (t) => t.length, sendDimensions: true }).embed(
      texts,
      'document',
    );
    // 4+4 | 4 | 12 (alone, over the limit) | 1
    expect(seen.map((s) => s.body.input)).toEqual([['aaaa', 'bbbb'], ['cccc'], ['dddddddddddd'], ['e']]);
    expect(seen[0].body.dimensions).toBe(DIM);
  });

  it('prefixes queries and documents for instruction models', async () => {
    const p = provider({ queryPrefix: 'query: ', documentPrefix: 'passage: ' });
    await p.embed(['q'], 'query');
    await p.embed(['d'], 'document');
    expect(seen.map((s) => s.body.input[0])).toEqual(['query: q', 'passage: d']);
  });

  it('retries 503, 429 (honouring Retry-After), dropped connections and stalls, then succeeds', async () => {
    faults = [
      { kind: 'status', status: 503 },
      { kind: 'status', status: 429, headers: { 'retry-after': '0' } },
      { kind: 'drop' },
      { kind: 'stall', ms: 2000 },
    ];
    const t0 = Date.now();
    const [v] = await provider({ timeoutMs: 200 }).embed(['hello'], 'query');
    expect(Array.from(v)).toEqual(Array.from(new Float32Array(vectorOf('hello'))));
    expect(seen.length).toBe(5);
    expect(Date.now() - t0).toBeLessThan(1500);
  });

  it('gives up after maxRetries with upstream_unavailable (retryable)', async () => {
    faults = Array.from({ length: 10 }, () => ({ kind: 'status', status: 500 }) as const);
    const err = await appError(provider({ maxRetries: 2 }).embed(['x'], 'document'));
    expect(err.code).toBe('upstream_unavailable');
    expect(err.retryable).toBe(true);
    expect(err.message).toContain('3 tries');
    expect(err.message).toContain('HTTP 500');
    expect(seen.length).toBe(3);
  });

  it('fails at once with a clear error on 4xx: input rejected vs settings wrong', async () => {
    faults = [{ kind: 'status', status: 400, body: { error: { message: 'input too long for model' } } }];
    const bad = await appError(provider().embed(['x'], 'document'));
    expect(bad.code).toBe('bad_request');
    expect(bad.message).toContain('input too long for model');
    expect(seen.length).toBe(1);

    faults = [{ kind: 'status', status: 401, body: { error: { message: 'Incorrect API key provided' } } }];
    const auth = await appError(provider().embed(['x'], 'document'));
    expect(auth.code).toBe('invalid_config');
    expect(auth.retryable).toBe(false);
    expect(auth.message).toContain('HTTP 401');
    expect(auth.message).toContain('Incorrect API key provided');
    expect(auth.message).not.toContain('sk-test');
    expect(seen.length).toBe(2);

    const wrongPath = await appError(
      provider({ baseUrl: baseUrl.replace('/v1', '/v2') }).embed(['x'], 'query'),
    );
    expect(wrongPath.code).toBe('invalid_config');
    expect(wrongPath.message).toContain('HTTP 404');
  });

  it("rejects vectors whose length is not the collection's dimension", async () => {
    faults = [{ kind: 'dimension', dim: DIM + 8 }];
    const err = await appError(provider().embed(['x', 'y'], 'document'));
    expect(err.code).toBe('invalid_config');
    expect(err.message).toContain(`length ${DIM + 8}`);
    expect(err.message).toContain(`dimension is ${DIM}`);
    expect(seen.length).toBe(1);
  });

  it('accepts base64-encoded float32 responses', async () => {
    faults = [{ kind: 'base64' }];
    const [a, b] = await provider().embed(['alpha', 'beta'], 'document');
    expect(Array.from(a)).toEqual(Array.from(new Float32Array(vectorOf('alpha'))));
    expect(Array.from(b)).toEqual(Array.from(new Float32Array(vectorOf('beta'))));
  });

  it('network errors on an unreachable port also end in upstream_unavailable', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const err = await appError(
      provider({ baseUrl: `http://127.0.0.1:${port}/v1`, maxRetries: 1 }).embed(['x'], 'query'),
    );
    expect(err.code).toBe('upstream_unavailable');
    expect(err.message).toContain('network error');
  });

  it('returns [] for no texts without calling the server', async () => {
    expect(await provider().embed([], 'document')).toEqual([]);
    expect(seen.length).toBe(0);
  });
});

describe('batch planning', () => {
  it('never exceeds either limit except for a single oversized input', () => {
    const texts = Array.from({ length: 50 }, (_, i) => 'w'.repeat((i * 37) % 23));
    const count = (t: string) => t.length + 1;
    const batches = planBatches(texts, 4, 30, count);
    expect(batches[0][0]).toBe(0);
    expect(batches.at(-1)?.[1]).toBe(50);
    for (let i = 0; i < batches.length; i++) {
      const [a, b] = batches[i];
      if (i > 0) expect(a).toBe(batches[i - 1][1]);
      expect(b - a).toBeGreaterThan(0);
      expect(b - a).toBeLessThanOrEqual(4);
      const tokens = texts.slice(a, b).reduce((s, t) => s + count(t), 0);
      if (b - a > 1) expect(tokens).toBeLessThanOrEqual(30);
    }
  });

  it('counts UTF-8 bytes like TextEncoder', () => {
    for (const s of ['', 'abc', 'é', '日本', '😀x', 'bad\ud800']) {
      expect(utf8Length(s)).toBe(new TextEncoder().encode(s).length);
    }
  });
});
