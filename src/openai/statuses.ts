// kvrag's document lifecycle in OpenAI's terms. A vector store file is `in_progress` until its document is
// `ready` (chunks embedded and their KV artifacts computed: search and answers at full speed), `completed`
// then, or `failed` with `last_error`. Cancelled files (file-batches.ts) are removed, so only counted.
import type { DocumentStatus } from '../db/schema.ts';
import type { StatusCounts } from '../documents/counts.ts';
import { isRetriesExhausted } from '../documents/failure.ts';

export type FileStatus = 'in_progress' | 'completed' | 'failed' | 'cancelled';

export const fileStatusOf = (s: DocumentStatus): FileStatus =>
  s === 'ready' ? 'completed' : s === 'failed' ? 'failed' : 'in_progress';

/** The document statuses a file status filter selects (none for `cancelled`: those files are gone). */
export function documentStatusesOf(s: FileStatus): DocumentStatus[] {
  if (s === 'completed') return ['ready'];
  if (s === 'failed') return ['failed'];
  if (s === 'cancelled') return [];
  return ['queued', 'parsing', 'chunking', 'embedding', 'precomputing'];
}

/**
 * OpenAI's `last_error` of a failed document: `server_error` when ingestion gave up on a fault of the
 * service (retries exhausted), `invalid_file` when the file itself could not be indexed.
 */
export function lastErrorOf(status: DocumentStatus, error: string | null) {
  if (status !== 'failed') return null;
  const message = error ?? 'the file could not be indexed';
  return {
    code: isRetriesExhausted(message) ? ('server_error' as const) : ('invalid_file' as const),
    message,
  };
}

export interface FileCounts {
  in_progress: number;
  completed: number;
  failed: number;
  cancelled: number;
  total: number;
}

/** Per-status document counts folded into OpenAI's file_counts, plus the files cancelled. */
export function fileCountsOf(c: StatusCounts, cancelled = 0): FileCounts {
  return {
    in_progress: c.total - c.ready - c.failed,
    completed: c.ready,
    failed: c.failed,
    cancelled,
    total: c.total + cancelled,
  };
}
