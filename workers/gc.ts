// Garbage collection of storage nothing references any more.
//
// `gc` job (written to the outbox by document and collection deletes, after the rows are gone): delete
// the raw upload blobs it names (and everything under blobPrefix), then the KV artifacts of its chunk
// hashes that no remaining chunk references. The periodic sweep does the same for every artifact (a
// missed job, a runner's on-demand artifact nobody ingested), optionally expires artifacts unused for
// longer than maxIdleMs — referenced or not: only the artifact goes, the runner recomputes it on demand
// and the chunk keeps its status — deletes artifact objects under `kv/` that have no row, and upload
// blobs under `uploads/` that no document names (an upload whose row was never committed).
//
// Races (READ COMMITTED Postgres):
// - a chunk referencing a hash is being written while gc runs: artifacts are deleted only through
//   `FOR UPDATE SKIP LOCKED`, and the ingest transaction reads the artifacts it relies on `FOR SHARE`
//   (workers/ingest.ts). If ingest locked them first, gc skips them (after commit a chunk references
//   them); if gc deleted first, ingest's locking read no longer sees them and schedules precompute.
// - the upload route writes a blob and then commits its row: the sweep leaves uploads younger than graceMs
//   alone, so only a blob whose row never came (the process died in between) is taken for an orphan;
// - a runner stores an object and then reports it: the sweep leaves objects younger than graceMs alone,
//   and only artifacts whose row is older than graceMs are sweep candidates.
// Rows go first (one transaction per batch), then their objects: a reader never finds a row whose object
// was deleted before the row. An object whose delete fails is left to the orphan sweep.
//
// gc deletes only under the prefixes it owns: artifact objects (kv/<fp>/<hh>/<key>.kv, the shape
// artifactObjectKey gives) and a tenant's own uploads (uploads/<tenant>/…). A row or job naming any other
// key (a forged precompute-done before its claims were checked, a forged gc job) cannot make it delete
// that object: the key is logged and left alone.
import { sql } from 'drizzle-orm';
import { isArtifactObjectKey } from '../contracts/artifacts.ts';
import { documents, kvArtifacts } from '../src/db/schema.ts';
import type { Database } from '../src/db/types.ts';
import { parseJob } from '../contracts/jobs.ts';
import { UnrecoverableJobError } from '../contracts/queue.ts';
import { tenantUploadPrefix } from '../src/storage/upload-keys.ts';
import type { BlobStore } from '../contracts/blob-store.ts';
import { errorText, type WorkerDeps } from './deps.ts';

/** Where artifact objects live (gpu-runner/engine/kv/artifact-format.ts artifactObjectKey). */
export const ARTIFACT_PREFIX = 'kv/';
/** Where raw uploads live (src/routes/upload-keys.ts). */
const UPLOAD_PREFIX = 'uploads/';
const BATCH = 500;

export interface GcOptions {
  /** Expire artifacts whose last use (or creation, if never used) is older than this; absent = never. */
  maxIdleMs?: number;
  /**
   * The sweep ignores rows and objects younger than this (default 1 hour): longer than a runner's store →
   * precompute-done → row delay is expected to last even with a backlog, so an object whose row is about
   * to be written is not taken for an orphan.
   */
  graceMs?: number;
}

export interface GcResult {
  blobsDeleted: number;
  artifactsDeleted: number;
  orphanObjectsDeleted: number;
  /** Upload blobs no document names (an upload whose transaction never committed), past the grace. */
  orphanUploadsDeleted?: number;
}

type Exec = Pick<Database, 'execute' | 'transaction'>;

async function rows<T>(db: Pick<Database, 'execute'>, q: ReturnType<typeof sql>): Promise<T[]> {
  const r = (await db.execute(q)) as unknown;
  return (Array.isArray(r) ? r : (r as { rows: T[] }).rows) as T[];
}

/**
 * Deletes, batch by batch, the artifacts matching `scope` that no chunk references (or, with maxIdleMs,
 * that are idle too long), rows first then objects. Returns how many rows went.
 */
export async function collectArtifacts(
  db: Exec,
  blobs: BlobStore,
  scope: { chunkHashes?: string[]; olderThanMs?: number },
  opts: GcOptions & { log?: WorkerDeps['log'] } = {},
): Promise<number> {
  const hashes = scope.chunkHashes;
  if (hashes && hashes.length === 0 && opts.maxIdleMs === undefined) return 0;
  const hashList = hashes?.length
    ? sql.join(
        hashes.map((h) => sql`${h}`),
        sql`, `,
      )
    : null;
  const inScope = sql.join(
    [
      hashes ? (hashList ? sql`a.chunk_hash in (${hashList})` : sql`false`) : sql`true`,
      scope.olderThanMs !== undefined
        ? sql`a.created_at < now() - ${`${Math.floor(scope.olderThanMs)} milliseconds`}::interval`
        : sql`true`,
    ],
    sql` and `,
  );
  const unreferenced = sql`not exists (select 1 from chunks c where c.content_hash = a.chunk_hash)`;
  const idle =
    opts.maxIdleMs !== undefined
      ? sql`coalesce(a.last_used_at, a.created_at) < now() - ${`${Math.floor(opts.maxIdleMs)} milliseconds`}::interval`
      : sql`false`;
  let total = 0;
  for (;;) {
    const gone = await db.transaction(async (tx) =>
      rows<{ object_key: string }>(
        tx,
        sql`delete from ${kvArtifacts} where id in (
              select a.id from ${kvArtifacts} a
              where ${inScope} and (${unreferenced} or ${idle})
              limit ${BATCH} for update skip locked)
            returning object_key`,
      ),
    );
    total += gone.length;
    for (const { object_key } of gone) {
      if (!isArtifactObjectKey(object_key)) {
        opts.log?.('error', 'gc: artifact row named an object outside kv/; object left alone', {
          key: object_key,
        });
        continue;
      }
      await blobs.delete(object_key).catch((err: unknown) => {
        opts.log?.('warn', 'gc: artifact object left for the orphan sweep', {
          key: object_key,
          error: errorText(err),
        });
      });
    }
    if (gone.length < BATCH) return total;
  }
}

/**
 * Deletes the objects under `prefix` older than `cutoff` (ms since the epoch) that `known` does not
 * name, `BATCH` keys at a time; `known(keys)` answers which of the keys a row still names. An object
 * without a modification time counts as old unless `keepUndated`.
 */
async function sweepOrphans(
  blobs: BlobStore,
  prefix: string,
  cutoff: number,
  keepUndated: boolean,
  known: (keys: string[]) => Promise<Set<string>>,
): Promise<number> {
  let deleted = 0;
  let batch: string[] = [];
  const flush = async () => {
    if (batch.length === 0) return;
    const keep = await known(batch);
    for (const k of batch) {
      if (keep.has(k)) continue;
      await blobs.delete(k);
      deleted++;
    }
    batch = [];
  };
  for await (const info of blobs.list(prefix)) {
    const t = info.lastModified?.getTime();
    if (t === undefined ? keepUndated : t > cutoff) continue;
    batch.push(info.key);
    if (batch.length >= BATCH) await flush();
  }
  await flush();
  return deleted;
}

const sqlList = (values: string[]) =>
  sql.join(
    values.map((v) => sql`${v}`),
    sql`, `,
  );

/** Deletes objects under kv/ older than graceMs that no kv_artifacts row names. */
export async function collectOrphanObjects(db: Exec, blobs: BlobStore, graceMs: number): Promise<number> {
  return sweepOrphans(blobs, ARTIFACT_PREFIX, Date.now() - graceMs, false, async (keys) => {
    const known = await rows<{ object_key: string }>(
      db,
      sql`select object_key from ${kvArtifacts} where object_key in (${sqlList(keys)})`,
    );
    return new Set(known.map((r) => r.object_key));
  });
}

/**
 * Deletes upload blobs under uploads/ older than graceMs that no document row names: the upload route
 * writes the blob before the row's transaction, and a process that dies in between leaves the blob
 * behind (the route removes it itself when the transaction fails).
 */
export async function collectOrphanUploads(db: Exec, blobs: BlobStore, graceMs: number): Promise<number> {
  return sweepOrphans(blobs, UPLOAD_PREFIX, Date.now() - graceMs, true, async (keys) => {
    // named by a row's object_key, or at a row's own upload key (uploads/<tenant>/<collection>/<id>)
    const ids = keys.map((k) => k.slice(k.lastIndexOf('/') + 1));
    const known = await rows<{ key: string }>(
      db,
      sql`select object_key as key from ${documents} where object_key in (${sqlList(keys)})
          union all
          select 'uploads/' || tenant_id || '/' || collection_id || '/' || id as key from ${documents}
          where id::text in (${sqlList(ids)})`,
    );
    return new Set(known.map((r) => r.key));
  });
}

/** The `gc` job handler. Idempotent: deleting what is already gone is not an error. */
export async function handleGc(deps: WorkerDeps, data: unknown): Promise<GcResult> {
  const job = parseJob('gc', data);
  // a job may only delete its own tenant's uploads (a bad key or prefix could name any object)
  const own = tenantUploadPrefix(job.tenantId);
  const outside = [...job.blobKeys, ...(job.blobPrefix ? [job.blobPrefix] : [])].filter(
    (k) => !k.startsWith(own) || k.split('/').includes('..'),
  );
  if (outside.length > 0) {
    throw new UnrecoverableJobError(
      `gc job: ${outside.map((k) => JSON.stringify(k)).join(', ')} outside the tenant's uploads`,
    );
  }
  let blobsDeleted = 0;
  for (const key of job.blobKeys) {
    await deps.blobs.delete(key);
    blobsDeleted++;
  }
  if (job.blobPrefix) {
    const keys: string[] = [];
    for await (const b of deps.blobs.list(job.blobPrefix)) keys.push(b.key);
    for (const key of keys) await deps.blobs.delete(key);
    blobsDeleted += keys.length;
  }
  const artifactsDeleted = await collectArtifacts(
    deps.db,
    deps.blobs,
    { chunkHashes: job.chunkHashes },
    { log: deps.log },
  );
  deps.log?.('info', 'gc job done', { documentId: job.documentId, blobsDeleted, artifactsDeleted });
  return { blobsDeleted, artifactsDeleted, orphanObjectsDeleted: 0 };
}

/** One periodic sweep over every artifact (and the orphan objects). */
export async function sweepArtifacts(deps: WorkerDeps, opts: GcOptions = {}): Promise<GcResult> {
  const graceMs = opts.graceMs ?? 3600_000;
  const artifactsDeleted = await collectArtifacts(
    deps.db,
    deps.blobs,
    { olderThanMs: graceMs },
    { maxIdleMs: opts.maxIdleMs, log: deps.log },
  );
  const orphanObjectsDeleted = await collectOrphanObjects(deps.db, deps.blobs, graceMs);
  const orphanUploadsDeleted = await collectOrphanUploads(deps.db, deps.blobs, graceMs);
  if (artifactsDeleted + orphanObjectsDeleted + orphanUploadsDeleted > 0) {
    deps.log?.('info', 'gc sweep', { artifactsDeleted, orphanObjectsDeleted, orphanUploadsDeleted });
  }
  return { blobsDeleted: 0, artifactsDeleted, orphanObjectsDeleted, orphanUploadsDeleted };
}
