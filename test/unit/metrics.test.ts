// The metrics registry's exposition text (read back by a strict parser), the workers' job wrapper
// (counts, durations and a failing job rethrown), and the `kvrag workers` metrics listener over HTTP.
import { describe, expect, it } from 'vitest';
import { Counter, Gauge, Histogram, MetricsRegistry } from '../../src/metrics.ts';
import { MemoryJobQueue } from '../../src/queue/memory.ts';
import type { Database } from '../../src/db/types.ts';
import { startMetricsServer } from '../../workers/metrics-server.ts';
import { WorkerMetrics } from '../../workers/metrics.ts';
import { parseExposition } from '../helpers/prometheus.ts';

describe('MetricsRegistry', () => {
  it('renders counters, histograms and gauges as parseable exposition text', async () => {
    const reg = new MetricsRegistry();
    const c = reg.add(new Counter('t_requests_total', 'Requests.'));
    const h = reg.add(new Histogram('t_seconds', 'Latency.', [0.1, 1]));
    reg.add(new Gauge('t_depth', 'Depth.', async () => [[{ queue: 'a' }, 3]]));
    c.inc({ route: '/x', status: '200' });
    c.inc({ route: '/x', status: '200' }, 2);
    c.inc({ route: 'say "hi"\\\n', status: '500' });
    for (const v of [0.05, 0.5, 5]) h.observe({ route: '/x' }, v);
    // the same name registered again (a second app in the process) is the same metric
    expect(reg.add(new Counter('t_requests_total', 'Requests.'))).toBe(c);

    const x = parseExposition(await reg.render());
    expect(x.value('t_requests_total', { route: '/x', status: '200' })).toBe(3);
    expect(x.value('t_requests_total', { route: 'say "hi"\\\n' })).toBe(1);
    expect(x.value('t_seconds_bucket', { route: '/x', le: '0.1' })).toBe(1);
    expect(x.value('t_seconds_bucket', { route: '/x', le: '1' })).toBe(2);
    expect(x.value('t_seconds_bucket', { route: '/x', le: '+Inf' })).toBe(3);
    expect(x.value('t_seconds_sum', { route: '/x' })).toBeCloseTo(5.55);
    expect(x.value('t_depth', { queue: 'a' })).toBe(3);
    expect([...x.types]).toEqual([
      ['t_requests_total', 'counter'],
      ['t_seconds', 'histogram'],
      ['t_depth', 'gauge'],
    ]);
  });

  it('leaves out a gauge that cannot be read and still renders the rest', async () => {
    const reg = new MetricsRegistry();
    reg.add(new Gauge('t_broken', 'Broken.', async () => Promise.reject(new Error('db down\nhard'))));
    reg.add(new Counter('t_ok_total', 'Ok.')).inc();
    const text = await reg.render();
    expect(text).toContain('# t_broken unavailable: db down hard');
    const x = parseExposition(text);
    expect(x.types.has('t_broken')).toBe(false);
    expect(x.value('t_ok_total')).toBe(1);
  });
});

describe('WorkerMetrics', () => {
  it('counts and times jobs by queue and result, logs job ids, and rethrows failures', async () => {
    const reg = new MetricsRegistry();
    const queue = new MemoryJobQueue();
    const logs: [string, string, Record<string, unknown> | undefined][] = [];
    // no database in this unit test: the backlog gauge fails and is left out of the text
    const db = {} as Database;
    const m = new WorkerMetrics(reg, { db, log: (l, msg, f) => logs.push([l, msg, f]) }, queue);
    const ok = m.wrap('ingest', async (n: number) => n * 2);
    const bad = m.wrap('gc', async () => {
      throw new Error('nope');
    });
    const ctx = { id: 'job-7', attempt: 2, signal: new AbortController().signal };
    expect(await ok(21, ctx)).toBe(42);
    await expect(bad(0, ctx)).rejects.toThrow('nope');

    const x = parseExposition(await reg.render());
    expect(x.value('kvrag_worker_jobs_total', { queue: 'ingest', result: 'completed' })).toBe(1);
    expect(x.value('kvrag_worker_jobs_total', { queue: 'gc', result: 'failed' })).toBe(1);
    expect(x.value('kvrag_worker_job_duration_seconds_count', { queue: 'gc', result: 'failed' })).toBe(1);
    expect(x.value('kvrag_queue_jobs', { queue: 'precompute', state: 'waiting' })).toBe(0);
    expect(logs.map(([l, msg, f]) => [l, msg, f?.job_id, f?.attempt])).toEqual([
      ['info', 'job completed', 'job-7', 2],
      ['warn', 'job failed', 'job-7', 2],
    ]);
    await queue.close();
  });
});

describe('workers metrics listener', () => {
  it('serves /metrics and /healthz on a port, 404 elsewhere', async () => {
    const reg = new MetricsRegistry();
    reg.add(new Counter('t_jobs_total', 'Jobs.')).inc({ queue: 'ingest' }, 4);
    const server = await startMetricsServer(reg, 0, '127.0.0.1');
    try {
      const base = `http://127.0.0.1:${server.port}`;
      const res = await fetch(`${base}/metrics`);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      expect(parseExposition(await res.text()).value('t_jobs_total', { queue: 'ingest' })).toBe(4);
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      expect((await fetch(`${base}/v1/anything`)).status).toBe(404);
    } finally {
      await server.close();
    }
  });
});
