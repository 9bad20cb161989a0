// `kvrag query TEXT` as a user runs it: a separate process asking the API served over HTTP (answer harness:
// PGlite wire, in-process workers, real runner on a tiny model). Checks the streamed answer, the sources
// (the document's chunks), the usage line with cached tokens, --json, and the exit codes.
import { type ChildProcess, spawn } from 'node:child_process';
import { type ServerType, serve } from '@hono/node-server';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chunks } from '../../src/db/schema.ts';
import { DEFAULT_SYSTEM } from '../../src/answer/prompt.ts';
import { type AnswerHarness, startAnswerHarness } from '../helpers/answer-harness.ts';

function run(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    let out = '';
    let err = '';
    const child: ChildProcess = spawn(process.execPath, ['bin/kvrag.js', 'query', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.on('data', (d) => {
      out += d;
    });
    child.stderr?.on('data', (d) => {
      err += d;
    });
    child.once('exit', (code) => resolve({ code, out, err }));
  });
}

describe('kvrag query TEXT (HTTP API, real runner in-process)', () => {
  let h: AnswerHarness;
  let server: ServerType;
  let url: string;
  let key: string;
  let col: { collection: string; document: string };

  beforeAll(async () => {
    h = await startAnswerHarness();
    key = (await h.tenant('cli')).key;
    col = await h.ingest(key, 'Lamp L1 is red.\n\nLamp L2 is green.\n\nLamp L3 is blue.', 'lamps.txt');
    server = serve({ fetch: h.app.fetch, hostname: '127.0.0.1', port: 0 });
    await new Promise<void>((r) => server.once('listening', () => r()));
    url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  }, 60_000);
  afterAll(async () => {
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    await h?.close();
  });

  it('streams the answer, lists the sources and the usage; --json gives the done event', async () => {
    const args = ['Which lamp is green?', '--collection', col.collection, '--key', key, '--url', url];
    const r = await run([...args, '--max-tokens', '4', '--reuse', 'independent']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toContain('Sources:');
    expect(r.out).toMatch(/\[1\] lamps\.txt #\d+ {2}score \d\.\d{3} {2}chunk [0-9a-f-]{36}/);
    const cachedLine = /prompt (\d+) tokens \(cached (\d+)\), completion (\d+)/.exec(r.out);
    // more than the system prefix came from cache: the chunks' artifacts were reused
    expect(Number(cachedLine?.[2])).toBeGreaterThan(h.model.tokenizer.encode(DEFAULT_SYSTEM).length);

    const j = await run([...args, '--max-tokens', '4', '--reuse', 'independent', '--json']);
    expect(j.code).toBe(0);
    const done = JSON.parse(j.out) as { text: string; citations: { chunk_id: string }[] };
    const ids = (await h.db.db.select().from(chunks).where(eq(chunks.documentId, col.document))).map(
      (c) => c.id,
    );
    expect(done.citations.length).toBeGreaterThan(0);
    for (const c of done.citations) expect(ids).toContain(c.chunk_id);
    // the answer printed before "Sources:" is the answer of the done event
    expect(r.out.slice(0, r.out.indexOf('\n\nSources:'))).toBe(done.text);

    // iterative retrieval: the steps and why they stopped
    const it = await run([...args, '--max-tokens', '2', '--k', '1', '--iterative', '3']);
    expect(it.code).toBe(0);
    expect(it.out).toContain('Retrieval steps:\n  1. "Which lamp is green?" (k 1) → 1 new chunks\n');
    expect(it.out).toMatch(/ {2}stopped: (sufficient|max-steps|budget|no-sub-query|no-progress)/);
  }, 60_000);

  it('exits 1 with the error on an unknown collection or a bad key, non-zero on a usage error', async () => {
    const missing = await run(['x', '--collection', crypto.randomUUID(), '--key', key, '--url', url]);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/HTTP 404 not_found/);
    const badKey = await run(['x', '--collection', col.collection, '--key', 'kvr_nope', '--url', url]);
    expect(badKey.code).toBe(1);
    expect(badKey.err).toMatch(/HTTP 401/);
    const usage = await run(['x', '--key', key]);
    expect(usage.code).not.toBe(0);
    expect(usage.err).toMatch(/--collection is required/);
  }, 60_000);
});
