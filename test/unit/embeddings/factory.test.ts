import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEmbeddingProvider, parseEmbeddingSpec } from '../../../src/embeddings/factory.ts';
import { hashEmbed } from '../../../src/embeddings/hash.ts';
import { embeddingFingerprint } from '../../../src/embeddings/types.ts';
import { type WorkersAiBinding, WorkersAiEmbeddingProvider } from '../../../src/embeddings/workers-ai.ts';
import { AppError } from '../../../contracts/errors.ts';

/** An in-memory Workers AI binding with the real response shape ({shape, data}); records its calls. */
function fakeAi(dim: number, opts: { fail?: boolean } = {}) {
  const calls: { model: string; text: string[] }[] = [];
  const ai: WorkersAiBinding = {
    async run(model, { text }) {
      calls.push({ model, text });
      if (opts.fail) throw new Error('3040: capacity temporarily exceeded');
      return { shape: [text.length, dim], data: text.map((t) => Array.from(hashEmbed(t, dim))) };
    },
  };
  return { ai, calls };
}

describe('workers-ai provider', () => {
  it('defaults to bge-base (768 dims), batches by 100 and keeps order', async () => {
    const { ai, calls } = fakeAi(768);
    const p = new WorkersAiEmbeddingProvider({ ai });
    expect(embeddingFingerprint(p)).toBe('workers-ai:@cf/baai/bge-base-en-v1.5:768');
    const texts = Array.from({ length: 250 }, (_, i) => `doc ${i}`);
    const out = await p.embed(texts, 'document');
    expect(calls.map((c) => c.text.length)).toEqual([100, 100, 50]);
    expect(calls.every((c) => c.model === '@cf/baai/bge-base-en-v1.5')).toBe(true);
    expect(Array.from(out[137])).toEqual(Array.from(hashEmbed('doc 137', 768)));
  });

  it('adds the query instruction to queries only', async () => {
    const { ai, calls } = fakeAi(384);
    const p = new WorkersAiEmbeddingProvider({ ai, model: '@cf/baai/bge-small-en-v1.5', queryPrefix: 'Q: ' });
    await p.embed(['a'], 'query');
    await p.embed(['b'], 'document');
    expect(calls.map((c) => c.text[0])).toEqual(['Q: a', 'b']);
  });

  it('checks the dimension and wraps binding failures', async () => {
    const wrong = new WorkersAiEmbeddingProvider({ ai: fakeAi(1024).ai });
    await expect(wrong.embed(['x'], 'query')).rejects.toMatchObject({ code: 'invalid_config' });
    await expect(wrong.embed(['x'], 'query')).rejects.toThrow(/length 1024.*dimension is 768/);
    const failing = new WorkersAiEmbeddingProvider({ ai: fakeAi(768, { fail: true }).ai });
    await expect(failing.embed(['x'], 'query')).rejects.toMatchObject({ code: 'upstream_unavailable' });
    expect(() => new WorkersAiEmbeddingProvider({ ai: fakeAi(8).ai, model: '@cf/unknown/model' })).toThrow(
      AppError,
    );
  });
});

describe('createEmbeddingProvider', () => {
  let server: Server;
  let url: string;
  const auths: (string | undefined)[] = [];
  beforeAll(async () => {
    server = createServer((req, res) => {
      auths.push(req.headers.authorization);
      req.resume();
      req.on('end', () =>
        res.end(JSON.stringify({ data: [{ index: 0, embedding: Array.from(hashEmbed('x', 8)) }] })),
      );
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('builds each provider from a validated spec with defaults', async () => {
    const h = createEmbeddingProvider({ provider: 'hash' });
    expect([h.id, h.model, h.dimension]).toEqual(['hash', 'kvrag-hash-v1', 384]);
    expect(createEmbeddingProvider({ provider: 'hash', dimension: 64 }).dimension).toBe(64);

    const o = createEmbeddingProvider(
      { provider: 'openai', baseUrl: url, model: 'm', dimension: 8 },
      { openAiApiKey: 'sk-from-env' },
    );
    expect([o.id, o.model, o.dimension]).toEqual(['openai', 'm', 8]);
    expect(Array.from((await o.embed(['x'], 'query'))[0])).toEqual(Array.from(hashEmbed('x', 8)));
    expect(auths.at(-1)).toBe('Bearer sk-from-env');

    const w = createEmbeddingProvider({ provider: 'workers-ai' }, { ai: fakeAi(768).ai });
    expect([w.id, w.model, w.dimension]).toEqual(['workers-ai', '@cf/baai/bge-base-en-v1.5', 768]);
  });

  it('rejects bad specs with invalid_config naming the field', () => {
    const bad = (spec: unknown) => {
      try {
        parseEmbeddingSpec(spec);
      } catch (e) {
        expect(e).toBeInstanceOf(AppError);
        expect((e as AppError).code).toBe('invalid_config');
        return (e as AppError).message;
      }
      throw new Error('expected a rejection');
    };
    expect(bad({ provider: 'nope' })).toContain('provider');
    expect(bad({ provider: 'openai', baseUrl: 'ftp://x', model: 'm', dimension: 8 })).toContain('baseUrl');
    expect(bad({ provider: 'openai', baseUrl: url, model: 'm' })).toContain('dimension');
    expect(bad({ provider: 'hash', dimension: 0 })).toContain('dimension');
    expect(() => createEmbeddingProvider({ provider: 'workers-ai' })).toThrow(/binding/);
  });
});
