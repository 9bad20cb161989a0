// kv_artifacts.last_used_at for the artifacts answers use. `kvrag workers --artifact-max-idle` expires
// artifacts by it, so without it hot artifacts were expired by age. Written in batches, never per
// request: record() notes (model, chunk hash) pairs in memory, and flush() writes each model's pairs with
// one UPDATE per 500 — every flushEveryMs, at once when maxPending pairs are waiting, and on close(). A
// flush that fails keeps its pairs for the next one (up to a bound), so a database outage loses no use.
import { and, eq, inArray, sql } from 'drizzle-orm';
import { kvArtifacts } from '../db/schema.ts';
import type { Database } from '../db/types.ts';
import type { Log } from '../../contracts/log.ts';
import type { ArtifactUseSink } from './services.ts';

export interface ArtifactUseOptions {
  /** Default 30 s. */
  flushEveryMs?: number;
  /** Default 1000. */
  maxPending?: number;
  log?: Log;
}

const ROWS_PER_UPDATE = 500;
/** Pairs kept across failing flushes; beyond it the oldest are dropped (their next use notes them again). */
const KEEP_ACROSS_FAILURES = 100_000;

export class ArtifactUse implements ArtifactUseSink {
  private readonly db: Pick<Database, 'update'>;
  private readonly maxPending: number;
  private readonly log?: Log;
  /** fingerprint → chunk hashes used since the last flush */
  private pending = new Map<string, Set<string>>();
  private size = 0;
  private flushing: Promise<number> | undefined;
  private readonly timer: ReturnType<typeof setInterval>;

  constructor(db: Pick<Database, 'update'>, opts: ArtifactUseOptions = {}) {
    this.db = db;
    this.maxPending = opts.maxPending ?? 1000;
    this.log = opts.log;
    this.timer = setInterval(() => void this.flush(), opts.flushEveryMs ?? 30_000);
    this.timer.unref();
  }

  record(fingerprint: string, chunkHashes: Iterable<string>): void {
    let set = this.pending.get(fingerprint);
    if (!set) this.pending.set(fingerprint, (set = new Set()));
    for (const h of chunkHashes) {
      if (set.has(h)) continue;
      set.add(h);
      this.size++;
    }
    if (this.size >= this.maxPending) void this.flush();
  }

  /** Writes the pairs noted so far; resolves to the rows updated (0 when it failed: logged, kept). */
  flush(): Promise<number> {
    this.flushing ??= this.write().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  private async write(): Promise<number> {
    const batch = this.pending;
    this.pending = new Map();
    this.size = 0;
    let rows = 0;
    for (const [fingerprint, set] of batch) {
      const hashes = [...set];
      try {
        for (let i = 0; i < hashes.length; i += ROWS_PER_UPDATE) {
          const done = await this.db
            .update(kvArtifacts)
            .set({ lastUsedAt: sql`now()` })
            .where(
              and(
                eq(kvArtifacts.modelFingerprint, fingerprint),
                inArray(kvArtifacts.chunkHash, hashes.slice(i, i + ROWS_PER_UPDATE)),
              ),
            )
            .returning({ id: kvArtifacts.id });
          rows += done.length;
        }
      } catch (err) {
        this.log?.('warn', 'artifact use not written; kept for the next flush', {
          error: err instanceof Error ? err.message : String(err),
        });
        if (this.size + hashes.length <= KEEP_ACROSS_FAILURES) this.record(fingerprint, hashes);
      }
    }
    return rows;
  }

  /** Stops the timer and writes what is left. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flushing;
    await this.flush();
  }
}
