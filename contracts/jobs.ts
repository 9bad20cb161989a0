// The payload of every job kvrag queues, as versioned zod contracts: plain data with a `v` field, so a
// producer and a consumer deployed at different versions agree or fail loudly. A new incompatible shape
// is a new version added beside the old one (consumers accept both until producers have moved on).
// Consumers call parseJob(); a payload that matches no version can never succeed, so it throws
// UnrecoverableJobError and the job fails at once instead of burning its retries.
import { z } from 'zod';
import { issuesText } from './errors.ts';
import type { EnqueueOptions, JobQueue } from './queue.ts';
import { UnrecoverableJobError } from './queue.ts';

const id = z.string().min(1).max(200);
/** sha256 hex of a chunk's text: chunks.content_hash = kv_artifacts.chunk_hash. */
const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'must be a lowercase sha256 hex digest');
/** Model fingerprint (see DESIGN §4.1): used inside object keys, so a conservative alphabet. */
const fingerprint = z
  .string()
  .regex(/^[A-Za-z0-9._-]{8,128}$/, 'must be 8-128 characters of A-Z a-z 0-9 . _ -');
const objectKey = z.string().min(1).max(1024);

/** `ingest`: parse → chunk → embed → enqueue precompute, for one uploaded document. */
export const IngestJobV1 = z.object({
  v: z.literal(1),
  tenantId: id,
  collectionId: id,
  documentId: id,
  /** The raw upload in the blob store. */
  objectKey,
  contentType: z.string().min(1).max(255),
  filename: z.string().max(1024),
});

/** One chunk whose KV artifact is missing: its token ids when the producer has them, else its text. */
export const PrecomputeChunkV1 = z
  .object({
    chunkHash: sha256Hex,
    tokenIds: z.array(z.number().int().nonnegative()).min(1).optional(),
    text: z.string().min(1).optional(),
    documentId: id.optional(),
    chunkId: id.optional(),
  })
  .refine((c) => (c.tokenIds === undefined) !== (c.text === undefined), 'exactly one of tokenIds and text');

/** `precompute`: runners prefill these chunks alone and store their KV artifacts. */
export const PrecomputeJobV1 = z.object({
  v: z.literal(1),
  modelFingerprint: fingerprint,
  chunks: z.array(PrecomputeChunkV1).min(1).max(1024),
});

/**
 * A completed `precompute` job as kept by the queue (for id dedupe and lookups): the chunks' hashes and
 * ids without their token ids or text, so a deleted document's content does not outlive it there.
 */
export function redactPrecomputeJob(data: unknown): unknown {
  const job = data as { chunks?: Record<string, unknown>[] };
  if (!Array.isArray(job?.chunks)) return data;
  return {
    ...job,
    chunks: job.chunks.map(({ tokenIds: _ids, text: _text, ...rest }) => rest),
    redacted: true,
  };
}

/** `precompute-done`: what a runner stored, for the `kv_artifacts` rows and document status. */
export const PrecomputeDoneJobV1 = z.object({
  v: z.literal(1),
  modelFingerprint: fingerprint,
  artifacts: z
    .array(
      z.object({
        chunkHash: sha256Hex,
        objectKey,
        bytes: z.number().int().positive(),
        formatVersion: z.number().int().positive(),
      }),
    )
    .max(1024),
  /** Chunks the runner could not compute (and why); the rest of the batch still counts. */
  failed: z.array(z.object({ chunkHash: sha256Hex, error: z.string().max(2000) })).default([]),
  runnerId: z.string().max(200).optional(),
  /**
   * The documents the precompute job was for (its chunks' documentId): only they move, so a tenant's
   * document never turns ready (or failed) because another tenant's job computed the same text. Absent
   * in jobs of older runners: every waiting document holding the chunks moves, as before.
   */
  documentIds: z.array(id).max(1024).optional(),
});

/**
 * `gc`: storage no longer referenced after a delete. Rows are already gone when it runs: the worker
 * deletes the blobs (idempotent) and the KV artifacts of `chunkHashes` that no remaining chunk uses.
 */
export const GcJobV1 = z
  .object({
    v: z.literal(1),
    tenantId: id,
    /** Absent for storage outside collections (an OpenAI File's upload, a deleted tenant's files). */
    collectionId: id.optional(),
    /** Absent when the whole collection was deleted. */
    documentId: id.optional(),
    /** The OpenAI File whose upload `blobKeys` names. */
    fileId: id.optional(),
    blobKeys: z.array(objectKey).default([]),
    /** Every blob under this prefix goes too (collection and tenant deletes). */
    blobPrefix: objectKey.optional(),
    chunkHashes: z.array(sha256Hex).default([]),
  })
  .refine((j) => j.collectionId || j.fileId || j.blobPrefix, {
    message: 'collectionId, fileId or blobPrefix is required',
    path: ['collectionId'],
  });

/** Every version each queue's consumers accept, by version number. */
export const JOB_CONTRACTS = {
  ingest: { 1: IngestJobV1 },
  precompute: { 1: PrecomputeJobV1 },
  'precompute-done': { 1: PrecomputeDoneJobV1 },
  gc: { 1: GcJobV1 },
} as const;

export type JobName = keyof typeof JOB_CONTRACTS;
export const JOB_NAMES = Object.keys(JOB_CONTRACTS) as JobName[];

type Versions<N extends JobName> = (typeof JOB_CONTRACTS)[N];
/** Any accepted version of a queue's payload (what a consumer receives). */
export type JobPayload<N extends JobName> = z.output<Versions<N>[keyof Versions<N>]>;
/** What a producer writes: the input shape of any accepted version. */
export type JobInput<N extends JobName> = z.input<Versions<N>[keyof Versions<N>]>;

export type IngestJob = z.output<typeof IngestJobV1>;
export type PrecomputeJob = z.output<typeof PrecomputeJobV1>;
export type PrecomputeDoneJob = z.output<typeof PrecomputeDoneJobV1>;
export type GcJob = z.output<typeof GcJobV1>;

export function isJobName(name: string): name is JobName {
  return Object.hasOwn(JOB_CONTRACTS, name);
}

function schemaFor(name: JobName, data: unknown): z.ZodType {
  const v = (data as { v?: unknown } | null)?.v;
  const versions = JOB_CONTRACTS[name] as Record<number, z.ZodType>;
  const schema = typeof v === 'number' ? versions[v] : undefined;
  if (!schema) {
    throw new UnrecoverableJobError(
      `${name} job: unsupported payload version ${JSON.stringify(v)} (accepted: ${Object.keys(versions).join(', ')})`,
    );
  }
  return schema;
}

/** Validates a consumed payload; throws UnrecoverableJobError naming each problem. */
export function parseJob<N extends JobName>(name: N, data: unknown): JobPayload<N> {
  const parsed = schemaFor(name, data).safeParse(data);
  if (!parsed.success) {
    throw new UnrecoverableJobError(`${name} job: invalid payload: ${issuesText(parsed.error)}`);
  }
  return parsed.data as JobPayload<N>;
}

/**
 * Validates a payload on the producer side (a bad one is a bug here, so the zod error is thrown as is)
 * and returns it normalised; used by enqueueJob and by whoever writes outbox rows.
 */
export function checkJob<N extends JobName>(name: N, payload: JobInput<N>): JobPayload<N> {
  const schema = schemaFor(name, payload);
  return schema.parse(payload) as JobPayload<N>;
}

/** Enqueues a payload after checking it against its contract. */
export function enqueueJob<N extends JobName>(
  queue: JobQueue,
  name: N,
  payload: JobInput<N>,
  opts?: EnqueueOptions,
): Promise<string> {
  return queue.enqueue(name, checkJob(name, payload), opts);
}
