// The official `openai` npm client against the API served on a real port (@hono/node-server): it lists the
// models, streams a chat completion with stream_options.include_usage (RAG over a collection through the
// `kvrag` extension field) and reads a non-streaming one — with the client's own parsing of every chunk.
import type { AddressInfo } from 'node:net';
import { type ServerType, serve } from '@hono/node-server';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_SYSTEM } from '../../src/answer/prompt.ts';
import { type AnswerHarness, startAnswerHarness } from '../helpers/answer-harness.ts';

describe('openai npm client → kvrag API over HTTP', () => {
  let h: AnswerHarness;
  let server: ServerType;
  let client: OpenAI;
  let collection: string;

  beforeAll(async () => {
    h = await startAnswerHarness();
    const tenant = await h.tenant('openai');
    ({ collection } = await h.ingest(
      tenant.key,
      'Gate G1 opens at dawn.\n\nGate G2 opens at noon.\n\nGate G3 opens at dusk.',
      'gates.txt',
    ));
    server = serve({ fetch: h.app.fetch, hostname: '127.0.0.1', port: 0 });
    await new Promise<void>((r) => server.once('listening', () => r()));
    const { port } = server.address() as AddressInfo;
    client = new OpenAI({ apiKey: tenant.key, baseURL: `http://127.0.0.1:${port}/v1`, maxRetries: 0 });
  }, 60_000);
  afterAll(async () => {
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    await h?.close();
  });

  it('lists the served models', async () => {
    const ids: string[] = [];
    for await (const m of client.models.list()) ids.push(m.id);
    expect(ids).toEqual([h.served.id]);
  });

  it('streams a chat completion with usage, then the same answer without streaming', async () => {
    const params = {
      model: h.served.id,
      messages: [{ role: 'user' as const, content: 'When does gate G2 open?' }],
      max_tokens: 5,
      temperature: 0,
      // independent reuse: every chunk's K/V from its stored artifact
      kvrag: { collection_ids: [collection], reuse: 'independent' },
    };
    const stream = await client.chat.completions.create({
      ...params,
      stream: true,
      stream_options: { include_usage: true },
    });
    let content = '';
    let role: string | undefined;
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | undefined;
    const ids = new Set<string>();
    for await (const chunk of stream) {
      ids.add(chunk.id);
      expect(chunk.object).toBe('chat.completion.chunk');
      const choice = chunk.choices[0];
      if (choice) {
        role ??= choice.delta.role;
        content += choice.delta.content ?? '';
        finish = choice.finish_reason ?? finish;
      }
      if (chunk.usage) usage = chunk.usage;
    }
    expect(ids.size).toBe(1);
    expect(role).toBe('assistant');
    expect(['stop', 'length']).toContain(finish);
    expect(usage!.completion_tokens).toBeGreaterThan(0);
    expect(usage!.total_tokens).toBe(usage!.prompt_tokens + usage!.completion_tokens);
    // more than the system prefix came from cache: the chunks' artifacts were reused
    const systemTokens = h.model.tokenizer.encode(DEFAULT_SYSTEM).length;
    expect(usage!.prompt_tokens_details?.cached_tokens).toBeGreaterThan(systemTokens);

    const plain = await client.chat.completions.create(params);
    expect(plain.object).toBe('chat.completion');
    expect(plain.choices[0].message.content).toBe(content);
    expect(plain.usage?.completion_tokens).toBe(usage!.completion_tokens);
  }, 60_000);

  it('surfaces API errors as the client’s typed errors', async () => {
    await expect(
      client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }] }),
    ).rejects.toMatchObject({ status: 404 });
  });
});
