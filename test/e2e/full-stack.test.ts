// The whole pipeline on the real distributed components at once: Postgres + pgvector (PGlite over the wire
// protocol), BullMQ on redis-server, and the S3 protocol (s3rver). Upload → outbox relay → ingest →
// precompute by the runner (artifacts in S3) → precompute-done → ready; search finds the document; a query
// streams an answer whose citations are the document's chunks and whose prompt reused the stored chunk K/V.
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chunks, documents } from '../../src/db/schema.ts';
import { BullMqJobQueue } from '../../src/queue/bullmq.ts';
import { S3BlobStore } from '../../src/storage/s3.ts';
import { type AnswerHarness, startAnswerHarness } from '../helpers/answer-harness.ts';
import { type RedisTestServer, startRedis } from '../helpers/redis-server.ts';
import { type S3TestServer, startS3 } from '../helpers/s3-server.ts';
import { collectSse } from '../helpers/sse.ts';

const TEXT = [
  'The cobalt valley record says the river turns north at the old mill.',
  'The amber ridge record says the pass is closed from November to March.',
  'The silver lake record says the ferry leaves every hour from the east pier.',
].join('\n\n');

let redis: RedisTestServer;
let s3: S3TestServer;
let blobs: S3BlobStore;
let queue: BullMqJobQueue;
let h: AnswerHarness;

beforeAll(async () => {
  [redis, s3] = await Promise.all([startRedis(), startS3()]);
  blobs = new S3BlobStore({ ...s3, forcePathStyle: true });
  queue = new BullMqJobQueue({ url: redis.url, prefix: 'full-stack' });
  h = await startAnswerHarness({ queue, blobs });
}, 120_000);
afterAll(async () => {
  await h?.close();
  await blobs?.close?.();
  await Promise.all([redis?.stop(), s3?.stop()]);
});

describe('full stack on PGlite, Redis and s3rver', () => {
  it('upload → ready → search → a query with citations and reused artifacts', async () => {
    const tenant = await h.tenant('full-stack');
    const { collection, document } = await h.ingest(tenant.key, TEXT, 'records.txt');
    const [doc] = await h.db.db.select().from(documents).where(eq(documents.id, document));
    expect(doc.status).toBe('ready');

    // The chunk artifacts are in the S3 bucket under the served model's fingerprint.
    const stored: string[] = [];
    for await (const b of blobs.list(`kv/${h.model.fingerprint}/`)) stored.push(b.key);
    const rows = await h.db.db.select().from(chunks).where(eq(chunks.documentId, document));
    expect(rows.length).toBeGreaterThan(0);
    expect(stored.length).toBe(new Set(rows.map((r) => r.contentHash)).size);

    const search = await h.expectJson<{ data: { file_id: string; content: { text: string }[] }[] }>(
      200,
      'POST',
      `/v1/collections/${collection}/search`,
      { key: tenant.key, json: { query: 'ferry east pier' } },
    );
    expect(search.data[0].file_id).toBe(document);
    expect(search.data[0].content[0].text).toContain('east pier');

    const res = await h.call('POST', '/v1/query', {
      key: tenant.key,
      json: {
        quality: 'fast',
        question: 'When does the ferry leave?',
        collection_ids: [collection],
        max_tokens: 4,
      },
    });
    expect(res.status).toBe(200);
    const events = await collectSse(res);
    expect(events[0].event).toBe('plan');
    const citations = events[1].data as { chunk_id: string; document_id: string }[];
    expect(citations.length).toBeGreaterThan(0);
    for (const c of citations)
      expect(rows.some((r) => r.id === c.chunk_id && c.document_id === document)).toBe(true);
    const done = events.at(-1)!;
    expect(done.event).toBe('done');
    const usage = (done.data as { usage: { cached_tokens: number; prompt_tokens: number } }).usage;
    const cited = citations.reduce((n, c) => n + rows.find((r) => r.id === c.chunk_id)!.tokenCount, 0);
    expect(usage.cached_tokens).toBeGreaterThanOrEqual(cited);
    expect(usage.cached_tokens).toBeLessThan(usage.prompt_tokens);
  }, 120_000);
});
