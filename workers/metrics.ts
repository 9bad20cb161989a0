// The workers' Prometheus metrics and per-job logs: every consumed job is timed and counted by queue and
// result, and logged with its job id; gauges read at scrape time give the outbox backlog (rows not yet
// relayed) and the queue depths by state — the numbers to scale workers and runners on.
import { isNull, sql } from 'drizzle-orm';
import { outbox } from '../src/db/schema.ts';
import { Counter, Gauge, Histogram, type MetricsRegistry } from '../src/metrics.ts';
import type { JobContext, JobQueue, JobState } from '../contracts/queue.ts';
import type { WorkerDeps } from './deps.ts';
import { errorText } from './deps.ts';

/** Every queue of the pipeline (runners consume `precompute`; the depth gauge covers it too). */
export const PIPELINE_QUEUES = ['ingest', 'precompute', 'precompute-done', 'gc'] as const;
const STATES: JobState[] = ['waiting', 'delayed', 'active', 'completed', 'failed'];

export class WorkerMetrics {
  private readonly jobs: Counter;
  private readonly duration: Histogram;
  private readonly log: WorkerDeps['log'];

  constructor(reg: MetricsRegistry, deps: Pick<WorkerDeps, 'db' | 'log'>, queue: JobQueue) {
    this.log = deps.log;
    this.jobs = reg.add(
      new Counter('kvrag_worker_jobs_total', 'Jobs handled by queue and result (completed, failed).'),
    );
    this.duration = reg.add(
      new Histogram(
        'kvrag_worker_job_duration_seconds',
        'Handler time of a job try, by queue and result.',
        [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      ),
    );
    reg.add(
      new Gauge('kvrag_worker_outbox_backlog', 'Outbox rows not yet relayed to the queue.', async () => {
        const [row] = await deps.db
          .select({ n: sql<number>`count(*)::int` })
          .from(outbox)
          .where(isNull(outbox.deliveredAt));
        return [[{}, Number(row?.n ?? 0)]];
      }),
    );
    reg.add(
      new Gauge('kvrag_queue_jobs', 'Jobs in the queue by queue and state.', async () => {
        const out: [Record<string, string>, number][] = [];
        for (const q of PIPELINE_QUEUES) {
          const counts = await queue.counts(q);
          for (const s of STATES) out.push([{ queue: q, state: s }, counts[s] ?? 0]);
        }
        return out;
      }),
    );
  }

  /** `handler`, timed, counted and logged with its job id. */
  wrap<T>(
    queue: string,
    handler: (data: T, ctx: JobContext) => Promise<unknown>,
  ): (data: T, ctx: JobContext) => Promise<unknown> {
    return async (data, ctx) => {
      const t0 = performance.now();
      const fields = { queue, job_id: ctx.id, attempt: ctx.attempt };
      try {
        const result = await handler(data, ctx);
        const ms = performance.now() - t0;
        this.jobs.inc({ queue, result: 'completed' });
        this.duration.observe({ queue, result: 'completed' }, ms / 1000);
        this.log?.('info', 'job completed', { ...fields, duration_ms: Math.round(ms) });
        return result;
      } catch (err) {
        const ms = performance.now() - t0;
        this.jobs.inc({ queue, result: 'failed' });
        this.duration.observe({ queue, result: 'failed' }, ms / 1000);
        this.log?.('warn', 'job failed', { ...fields, duration_ms: Math.round(ms), err: errorText(err) });
        throw err;
      }
    };
  }
}
