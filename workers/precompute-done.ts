// The `precompute-done` job: what a runner stored (runners never touch Postgres). In one transaction:
//   1. upsert a `ready` kv_artifacts row per stored artifact (object key, bytes, format version) —
//      idempotent on (model_fingerprint, chunk_hash), so a redelivered job changes nothing;
//   2. chunks the runner could not compute: documents still `precomputing` that contain one (and have
//      no ready artifact for it) end `failed` with the runner's error, so no document waits forever;
//   3. every `precomputing` document containing one of the reported chunks whose chunks now ALL have a
//      ready artifact of the serving model becomes `ready` — one set-based UPDATE, idempotent.
// Artifacts of a model other than the serving one are recorded but move no document.
import { and, eq, inArray, sql } from 'drizzle-orm';
import { chunks, documents, kvArtifacts } from '../src/db/schema.ts';
import { queryRows } from '../src/db/types.ts';
import { parseJob } from '../contracts/jobs.ts';
import type { WorkerDeps } from './deps.ts';

export interface PrecomputeDoneResult {
  artifacts: number;
  /** Documents this job moved to `ready`. */
  ready: string[];
  /** Documents this job moved to `failed`. */
  failed: string[];
}

export async function handlePrecomputeDone(deps: WorkerDeps, data: unknown): Promise<PrecomputeDoneResult> {
  const job = parseJob('precompute-done', data);
  const fp = job.modelFingerprint;
  const serving = fp === deps.model.fingerprint;
  return deps.db.transaction(async (tx) => {
    if (job.artifacts.length > 0) {
      await tx
        .insert(kvArtifacts)
        .values(
          job.artifacts.map((a) => ({
            chunkHash: a.chunkHash,
            modelFingerprint: fp,
            objectKey: a.objectKey,
            bytes: a.bytes,
            formatVersion: a.formatVersion,
            status: 'ready' as const,
          })),
        )
        .onConflictDoUpdate({
          target: [kvArtifacts.modelFingerprint, kvArtifacts.chunkHash],
          set: {
            objectKey: sql`excluded.object_key`,
            bytes: sql`excluded.bytes`,
            formatVersion: sql`excluded.format_version`,
            status: 'ready',
            error: null,
          },
        });
    }
    const out: PrecomputeDoneResult = { artifacts: job.artifacts.length, ready: [], failed: [] };
    if (!serving) return out;

    const stored = new Set(job.artifacts.map((a) => a.chunkHash));
    for (const f of job.failed.filter((x) => !stored.has(x.chunkHash))) {
      const rows = await tx
        .update(documents)
        .set({ status: 'failed', error: `KV precompute failed for chunk ${f.chunkHash}: ${f.error}` })
        .where(
          and(
            eq(documents.status, 'precomputing'),
            inArray(
              documents.id,
              tx
                .selectDistinct({ id: chunks.documentId })
                .from(chunks)
                .where(eq(chunks.contentHash, f.chunkHash)),
            ),
            sql`not exists (select 1 from ${kvArtifacts} a where a.chunk_hash = ${f.chunkHash}
                  and a.model_fingerprint = ${fp} and a.status = 'ready')`,
          ),
        )
        .returning({ id: documents.id });
      out.failed.push(...rows.map((r) => r.id));
    }

    if (stored.size > 0) {
      const hashes = sql.join(
        [...stored].map((h) => sql`${h}`),
        sql`, `,
      );
      const rows = await queryRows<{ id: string }>(
        tx,
        sql`update ${documents} d set status = 'ready', error = null, updated_at = now()
            where d.status = 'precomputing'
              and d.id in (select c.document_id from ${chunks} c where c.content_hash in (${hashes}))
              and not exists (
                select 1 from ${chunks} c
                left join ${kvArtifacts} a
                  on a.chunk_hash = c.content_hash and a.model_fingerprint = ${fp} and a.status = 'ready'
                where c.document_id = d.id and a.id is null)
            returning d.id`,
      );
      out.ready.push(...rows.map((r) => String(r.id)));
    }
    return out;
  });
}
