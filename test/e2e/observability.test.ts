// Logs and metrics of `kvrag serve` (embedded: PGlite, fs blobs, in-process queue, workers and runner on
// the bundled model) after real requests: the x-request-id is echoed (or generated), the API's access log
// and the runner's per-sequence log carry the same id, worker logs carry job ids, and /metrics parses as
// Prometheus text with the request, answer-cache and worker series the requests produced.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseExposition } from '../helpers/prometheus.ts';
import { spawnServe, stopServe } from '../helpers/serve-process.ts';

const ADMIN = 'e2e-admin-key-0123456789abcdef';

let child: ChildProcess;
let url: string;
let cwd: string;
let stderr: () => string;

beforeAll(async () => {
  cwd = mkdtempSync(join(tmpdir(), 'kvrag-observability-'));
  const serve = spawnServe({ cwd, env: { KVRAG_PORT: '0', KVRAG_ADMIN_KEY: ADMIN } });
  child = serve.child;
  stderr = serve.stderr;
  url = await serve.url;
}, 90_000);
afterAll(async () => {
  await stopServe(child);
  if (cwd) rmSync(cwd, { recursive: true, force: true });
});

async function call(key: string, method: string, path: string, body?: unknown, requestId?: string) {
  return fetch(`${url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${key}`,
      'content-type': 'application/json',
      ...(requestId ? { 'x-request-id': requestId } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

const logLines = () =>
  stderr()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

describe('observability of kvrag serve', () => {
  it('request ids across API and runner logs, job ids in worker logs, and /metrics', async () => {
    const tenant = (await (await call(ADMIN, 'POST', '/v1/admin/tenants', { name: 'obs' })).json()) as {
      id: string;
    };
    const key = (
      (await (await call(ADMIN, 'POST', `/v1/admin/tenants/${tenant.id}/keys`, {})).json()) as {
        key: string;
      }
    ).key;
    const coll = (await (await call(key, 'POST', '/v1/collections', { name: 'obs' })).json()) as {
      id: string;
    };
    const doc = (await (
      await call(key, 'POST', `/v1/collections/${coll.id}/documents`, {
        filename: 'relay.md',
        text: '# Relay\n\nThe relay moves outbox rows to the queue every few milliseconds.',
      })
    ).json()) as { id: string };
    let status = '';
    for (let i = 0; i < 240 && status !== 'ready' && status !== 'failed'; i++) {
      const res = await call(key, 'GET', `/v1/collections/${coll.id}/documents/${doc.id}`);
      status = ((await res.json()) as { status: string }).status;
      if (status !== 'ready') await new Promise((r) => setTimeout(r, 250));
    }
    expect(status).toBe('ready');

    // the caller's id is echoed; without one (or with a malformed one) the server makes one
    const search = await call(
      key,
      'POST',
      `/v1/collections/${coll.id}/search`,
      { query: 'relay' },
      'obs-search-1',
    );
    expect(search.status).toBe(200);
    expect(search.headers.get('x-request-id')).toBe('obs-search-1');
    const missing = await call(key, 'GET', '/v1/no-such-route', undefined, 'bad id with spaces');
    expect(missing.status).toBe(404);
    expect(missing.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);

    // the same deterministic question twice: a miss, then a hit of the answer cache
    const q = {
      question: 'What does the relay move?',
      collection_ids: [coll.id],
      max_tokens: 4,
      stream: false,
    };
    for (const id of ['obs-query-1', 'obs-query-2']) {
      const res = await call(key, 'POST', '/v1/query', q, id);
      expect(res.status).toBe(200);
      expect(res.headers.get('x-request-id')).toBe(id);
      await res.json();
    }

    const m = await fetch(`${url}/metrics`);
    expect(m.status).toBe(200);
    expect(m.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const x = parseExposition(await m.text());
    const searchRoute = { route: '/v1/collections/:collection/search', status: '200' };
    expect(x.value('kvrag_api_requests_total', { method: 'POST', ...searchRoute })).toBe(1);
    expect(x.value('kvrag_api_request_duration_seconds_count', { method: 'POST', ...searchRoute })).toBe(1);
    expect(x.value('kvrag_api_requests_total', { route: 'unmatched', status: '404' })).toBe(1);
    expect(x.value('kvrag_api_requests_total', { route: '/v1/query', status: '200' })).toBe(2);
    expect(x.value('kvrag_api_answer_cache_total', { route: '/v1/query', result: 'miss' })).toBe(1);
    expect(x.value('kvrag_api_answer_cache_total', { route: '/v1/query', result: 'hit' })).toBe(1);
    expect(x.value('kvrag_api_answer_seconds_count', { route: '/v1/query', cached: 'false' })).toBe(1);
    expect(x.value('kvrag_api_retrieval_seconds_count', { route: '/v1/query' })).toBe(2);
    expect(x.value('kvrag_worker_jobs_total', { queue: 'ingest', result: 'completed' })).toBe(1);
    expect(
      x.value('kvrag_worker_jobs_total', { queue: 'precompute-done', result: 'completed' }),
    ).toBeGreaterThan(0);
    expect(x.value('kvrag_worker_job_duration_seconds_count', { queue: 'ingest', result: 'completed' })).toBe(
      1,
    );
    // read from the outbox table at scrape time (rows whose in-process job has not finished still count)
    expect(x.value('kvrag_worker_outbox_backlog')).toBeTypeOf('number');
    expect(x.value('kvrag_queue_jobs', { queue: 'ingest', state: 'waiting' })).toBe(0);
    expect(x.types.get('kvrag_api_request_duration_seconds')).toBe('histogram');

    // logs: one JSON object per line; the query's id on the API access line and the runner's sequence line
    const lines = logLines();
    const access = lines.find((l) => l.msg === 'request' && l.request_id === 'obs-query-1');
    expect(access).toMatchObject({ level: 'info', method: 'POST', route: '/v1/query', status: 200 });
    const seq = lines.find((l) => l.msg === 'sequence finished' && l.request_id === 'obs-query-1');
    expect(seq).toMatchObject({ level: 'info', completion_tokens: expect.any(Number) });
    // the cached answer never reached the runner
    expect(lines.some((l) => l.msg === 'sequence finished' && l.request_id === 'obs-query-2')).toBe(false);
    const job = lines.find((l) => l.msg === 'job completed' && l.queue === 'ingest');
    expect(job).toMatchObject({ job_id: expect.any(String), attempt: 1, duration_ms: expect.any(Number) });
  }, 120_000);
});
