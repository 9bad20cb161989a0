// The answer side through `kvrag serve` over real HTTP (embedded mode: PGlite on disk, filesystem blobs,
// in-process workers and runner on the bundled model): upload → ready, GET /v1/models names the bundled
// model, and `kvrag query --json` (a separate process) gets an answer whose citations are the uploaded
// document's chunks and whose prompt reused the stored chunk artifacts.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { servingModelDir } from '../../cli/model-dir.ts';
import { DEFAULT_SYSTEM } from '../../src/answer/prompt.ts';
import { loadServingModel } from '../../workers/serving-model.ts';
import { callJson, runKvrag, spawnServe, stopServe } from '../helpers/serve-process.ts';

const ADMIN = 'e2e-admin-key-0123456789abcdef';

let child: ChildProcess;
let url: string;
let cwd: string;

beforeAll(async () => {
  cwd = mkdtempSync(join(tmpdir(), 'kvrag-serve-query-'));
  const serve = spawnServe({ cwd, env: { KVRAG_PORT: '0', KVRAG_ADMIN_KEY: ADMIN } });
  child = serve.child;
  url = await serve.url;
}, 90_000);
afterAll(async () => {
  await stopServe(child);
  if (cwd) rmSync(cwd, { recursive: true, force: true });
});

const call = <T>(k: string, method: string, path: string, body?: unknown) =>
  callJson<T>(url, k, method, path, body);

describe('answers through kvrag serve', () => {
  it('upload → ready → kvrag query cites the document and reuses its artifacts', async () => {
    const tenant = await call<{ id: string }>(ADMIN, 'POST', '/v1/admin/tenants', { name: 'e2e' });
    const k = (await call<{ key: string }>(ADMIN, 'POST', `/v1/admin/tenants/${tenant.body.id}/keys`, {}))
      .body.key;
    const coll = await call<{ id: string }>(k, 'POST', '/v1/collections', { name: 'e2e' });
    expect(coll.status).toBe(201);
    const doc = await call<{ id: string }>(k, 'POST', `/v1/collections/${coll.body.id}/documents`, {
      filename: 'relay.md',
      text: '# Relay\n\nThe relay moves outbox rows to the queue every few milliseconds.',
    });
    expect(doc.status).toBe(201);
    let status = 'queued';
    for (let i = 0; i < 240 && status !== 'ready' && status !== 'failed'; i++) {
      status = (
        await call<{ status: string }>(k, 'GET', `/v1/collections/${coll.body.id}/documents/${doc.body.id}`)
      ).body.status;
      if (status !== 'ready') await new Promise((r) => setTimeout(r, 250));
    }
    expect(status).toBe('ready');

    const models = await call<{ object: string; data: { id: string; object: string }[] }>(
      k,
      'GET',
      '/v1/models',
    );
    expect(models.status).toBe(200);
    expect(models.body.data.map((m) => m.id)).toEqual(['kvrag-tiny']);

    const r = await runKvrag([
      'query',
      'What does the relay move?',
      '--collection',
      coll.body.id,
      '--key',
      k,
      '--url',
      url,
      '--max-tokens',
      '8',
      '--json',
    ]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const done = JSON.parse(r.out) as {
      citations: { document_id: string; filename: string }[];
      usage: { cached_tokens: number; completion_tokens: number };
      runner: { id: string };
      plan: { generation: { reuse: { mode: string } } };
    };
    // the bundled model was trained with block-diagonal chunks (reuse.json): the planner serves them
    // independent at the default (balanced) quality
    expect(done.plan.generation.reuse.mode).toBe('independent');
    expect(done.citations.length).toBeGreaterThan(0);
    for (const c of done.citations)
      expect(c).toMatchObject({ document_id: doc.body.id, filename: 'relay.md' });
    expect(done.usage.completion_tokens).toBeGreaterThan(0);
    // more than the system prefix came from cache: the chunk's stored artifact was reused
    const model = loadServingModel(servingModelDir(loadConfig({})));
    expect(done.usage.cached_tokens).toBeGreaterThan(model.tokenizer.encode(DEFAULT_SYSTEM).length);
    expect(done.runner.id).toBe('in-process');
  }, 90_000);
});
