// The `precompute-done` job: what a runner stored (runners never touch Postgres). First every claimed
// artifact is checked (artifact-check.ts: the canonical key of a real chunk of the serving model, an
// artifact there whose token ids are that chunk's); what fails the check is logged and ignored. Then, in
// one transaction:
//   1. upsert a `ready` kv_artifacts row per checked artifact (object key, bytes, format version) —
//      idempotent on (model_fingerprint, chunk_hash), so a redelivered job changes nothing;
//   2. chunks the runner could not compute: documents still `precomputing` that contain one (and have
//      no ready artifact for it) end `failed`, so no document waits forever;
//   3. every `precomputing` document containing one of the reported chunks whose chunks now ALL have a
//      ready artifact of the serving model becomes `ready` — one set-based UPDATE, idempotent.
// Steps 2 and 3 move only the documents the job names (documentIds), so one tenant's job never readies or
// fails another tenant's document holding the same text (no cross-tenant side channel through status).
// The tenant sees a runner failure's reason only when it is one of the runner's own input checks; the
// rest goes to the log.
import { sql } from 'drizzle-orm';
import { chunks, documents, kvArtifacts } from '../src/db/schema.ts';
import { queryRows } from '../src/db/types.ts';
import { parseJob } from '../contracts/jobs.ts';
import { checkArtifactClaims } from './artifact-check.ts';
import type { WorkerDeps } from './deps.ts';

/** Runner failure reasons a tenant may read (the runner's input checks); anything else stays in the log. */
const TENANT_SAFE_REASON =
  /^(chunk encodes to no tokens|chunk of \d+ tokens exceeds the model context \d+|token ids outside the vocabulary)$/;

export interface PrecomputeDoneResult {
  /** Artifacts recorded (claims that passed the check). */
  artifacts: number;
  /** Claims that failed the check, with why. */
  refused: { chunkHash: string; reason: string }[];
  /** Documents this job moved to `ready`. */
  ready: string[];
  /** Documents this job moved to `failed`. */
  failed: string[];
}

export async function handlePrecomputeDone(deps: WorkerDeps, data: unknown): Promise<PrecomputeDoneResult> {
  const job = parseJob('precompute-done', data);
  const fp = job.modelFingerprint;
  const serving = fp === deps.model.fingerprint;
  const checked = await checkArtifactClaims(deps, fp, job.artifacts);
  for (const r of checked.refused)
    deps.log?.('error', 'precompute-done: artifact claim refused', { runner: job.runnerId, model: fp, ...r });
  // only the job's own documents move (older runners' jobs name none: every waiting holder moves)
  const scope = job.documentIds
    ? job.documentIds.length > 0
      ? sql`and d.id::text in (${sql.join(
          job.documentIds.map((id) => sql`${id}`),
          sql`, `,
        )})`
      : sql`and false`
    : sql``;
  return deps.db.transaction(async (tx) => {
    if (checked.accepted.length > 0) {
      await tx
        .insert(kvArtifacts)
        .values(
          checked.accepted.map((a) => ({
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
    const out: PrecomputeDoneResult = {
      artifacts: checked.accepted.length,
      refused: checked.refused.map(({ chunkHash, reason }) => ({ chunkHash, reason })),
      ready: [],
      failed: [],
    };
    if (!serving) return out;

    const stored = new Set(checked.accepted.map((a) => a.chunkHash));
    for (const f of job.failed.filter((x) => !stored.has(x.chunkHash))) {
      const reason = TENANT_SAFE_REASON.test(f.error) ? f.error : 'the runner could not compute it';
      const rows = await queryRows<{ id: string }>(
        tx,
        sql`update ${documents} d set status = 'failed', updated_at = now(),
              error = ${`KV precompute failed for chunk ${f.chunkHash.slice(0, 12)}…: ${reason}`}
            where d.status = 'precomputing' ${scope}
              and d.id in (select c.document_id from ${chunks} c where c.content_hash = ${f.chunkHash})
              and not exists (select 1 from ${kvArtifacts} a where a.chunk_hash = ${f.chunkHash}
                and a.model_fingerprint = ${fp} and a.status = 'ready')
            returning d.id`,
      );
      if (rows.length > 0)
        deps.log?.('warn', 'precompute failed for a chunk', {
          chunkHash: f.chunkHash,
          error: f.error,
          documents: rows.map((r) => String(r.id)),
        });
      out.failed.push(...rows.map((r) => String(r.id)));
    }

    if (stored.size > 0) {
      const hashes = sql.join(
        [...stored].map((h) => sql`${h}`),
        sql`, `,
      );
      const rows = await queryRows<{ id: string }>(
        tx,
        sql`update ${documents} d set status = 'ready', error = null, updated_at = now()
            where d.status = 'precomputing' ${scope}
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
