// GET /v1/jobs/:queue/:id — where a job the API scheduled stands. Jobs are born in the outbox (in the
// transaction of the change that needs them), so the outbox row is the source of truth for existence and
// ownership (its payload names the tenant): `pending` until the relay delivers it, then the queue's own
// state when a queue is attached (waiting/active/completed/failed/delayed; `unknown` once the queue has
// dropped a finished job, 404 once the delivered outbox row is past its retention). For `ingest` jobs the
// document's status comes along — what a user waits on. `last_error` never carries the queue's or the
// relay's own error text (driver errors, addresses, stack lines): for an ingest job it is the document's
// last_error, which the workers write for tenants; otherwise only that the job failed or is retrying.
import { and, eq, sql } from 'drizzle-orm';
import { Hono } from 'hono';
import { documents, outbox } from '../db/schema.ts';
import type { AppEnv } from '../services.ts';
import { api, requireTenant } from './auth.ts';
import { notFound } from '../db/ids.ts';
import { unixSeconds } from './validate.ts';

/** Queues whose jobs users may look up (the ones this API schedules). */
export const VISIBLE_QUEUES = ['ingest', 'gc'] as const;

export function jobRoutes(): Hono<AppEnv> {
  const r = new Hono<AppEnv>();
  r.get('/:queue/:id', async (c) => {
    const tenantId = requireTenant(c);
    const queue = c.req.param('queue');
    const id = c.req.param('id');
    if (!(VISIBLE_QUEUES as readonly string[]).includes(queue) || id.length > 200) throw notFound('job', id);
    const { db, jobs } = api(c);
    const [row] = await db
      .select()
      .from(outbox)
      .where(
        and(
          eq(outbox.queue, queue),
          eq(outbox.jobId, id),
          sql`${outbox.payload} ->> 'tenantId' = ${tenantId}`,
        ),
      );
    if (!row) throw notFound('job', id);

    let state: string = 'pending';
    let attempts = row.attempts;
    let lastError = row.lastError ? 'not handed to the queue yet; retrying' : null;
    if (row.deliveredAt) {
      state = 'delivered';
      lastError = null;
      if (jobs) {
        const job = await jobs.getJob(queue, id);
        state = job?.state ?? 'unknown';
        if (job) {
          attempts = job.attemptsMade;
          if (job.failedReason)
            lastError =
              job.state === 'failed'
                ? `the job failed; the service log has the reason (job ${id})`
                : 'the last try failed; retrying';
        }
      }
    }
    const payload = row.payload as { documentId?: string };
    let document: { id: string; status: string; last_error: { message: string } | null } | null | undefined;
    if (queue === 'ingest' && payload.documentId) {
      const [d] = await db
        .select({ id: documents.id, status: documents.status, error: documents.error })
        .from(documents)
        .where(and(eq(documents.id, payload.documentId), eq(documents.tenantId, tenantId)));
      document = d ? { id: d.id, status: d.status, last_error: d.error ? { message: d.error } : null } : null;
      if (d?.error) lastError = d.error;
    }
    return c.json({
      id,
      object: 'job' as const,
      queue,
      state,
      attempts,
      last_error: lastError ? { message: lastError } : null,
      created_at: unixSeconds(row.createdAt),
      delivered_at: row.deliveredAt ? unixSeconds(row.deliveredAt) : null,
      ...(document !== undefined ? { document } : {}),
    });
  });
  return r;
}
