// Where the ingest worker parses and chunks a document: off the event loop. `kvrag serve` runs the API,
// the workers and the runner in one process, so a parse that computes for seconds on the main thread
// would stop /healthz and every query with it (a JSON upload of 'x' + 400,000 spaces + 'y' once froze it
// for five minutes). ParsePool runs each parse + chunking in a worker thread with a wall-time limit and a
// heap limit; a thread over either is terminated (not asked to stop: a regex cannot be interrupted) and
// the document fails with the limit named. Threads are reused between documents; each loads the serving
// model's tokenizer once. inlineParser does the same work on the calling thread, for tests and tools.
import { Worker } from 'node:worker_threads';
import { AppError } from '../contracts/errors.ts';
import type { Tokenizer } from '../contracts/tokenizer.ts';
import type { ChunkingOptions } from '../src/ingest/chunking.ts';
import { type IngestLimits, NO_LIMITS, overLimit } from '../src/ingest/limits.ts';
import type { ParseInput } from '../src/ingest/parse/index.ts';
import { chunkTokenIds, type PlacedChunk, parseAndChunk } from '../src/ingest/prepare.ts';

export interface ParseTask {
  input: ParseInput;
  chunking: ChunkingOptions;
}

export interface ParsedForIngest {
  chunks: PlacedChunk[];
  /** Token ids of each distinct chunk text, by content hash (what its precompute job carries). */
  tokenIds: Map<string, number[]>;
}

export interface ParseCallOptions {
  /** Aborting terminates the parse (a shutdown). */
  signal?: AbortSignal;
  /** Called when chunking starts; its rejection fails the parse. */
  onChunking?: () => Promise<void>;
}

export interface DocumentParser {
  parse(task: ParseTask, opts?: ParseCallOptions): Promise<ParsedForIngest>;
  close(): Promise<void>;
}

/** Parses on the calling thread (no time limit): for tests and tools with trusted input. */
export function inlineParser(tokenizer: Tokenizer, limits: IngestLimits = NO_LIMITS): DocumentParser {
  return {
    async parse(task, opts = {}) {
      opts.signal?.throwIfAborted();
      const { chunks } = await parseAndChunk(task.input, {
        tokenizer,
        chunking: task.chunking,
        limits,
        onChunking: opts.onChunking,
      });
      return { chunks, tokenIds: chunkTokenIds(chunks, tokenizer) };
    },
    async close() {},
  };
}

export interface ParsePoolOptions {
  /** The serving model's directory: each thread loads its tokenizer. */
  modelDir: string;
  limits: IngestLimits;
  /** Wall time of one parse + chunking. */
  timeoutMs: number;
  /** Heap of each thread (V8 old generation). */
  memoryMb: number;
  /** Threads kept idle between documents (default 2). */
  keepIdle?: number;
}

/** What a parse thread posts back. */
export type ThreadMessage =
  | { type: 'ready' }
  | { type: 'chunking' }
  | { type: 'done'; chunks: PlacedChunk[]; tokenIds: Map<string, number[]> }
  | { type: 'error'; error: { name: string; message: string; code?: string } };

/** What the pool posts to a thread. */
export interface ThreadTask {
  input: ParseInput;
  chunking: ChunkingOptions;
  limits: IngestLimits;
}

const THREAD_URL = new URL('./parse-thread.ts', import.meta.url);

/** Drops the listeners this pool adds (never removeAllListeners(): Worker listens to itself internally). */
const detach = (w: Worker) => {
  for (const event of ['message', 'error', 'exit']) w.removeAllListeners(event);
};

/** An error a thread reported, as the error it was: an AppError keeps its code (and so its permanence). */
function revive(e: { name: string; message: string; code?: string }): Error {
  if (e.name === 'AppError' && e.code) return new AppError(e.code as AppError['code'], e.message);
  const err = new Error(e.message);
  err.name = e.name;
  return err;
}

export class ParsePool implements DocumentParser {
  private readonly opts: ParsePoolOptions;
  private readonly idle: Worker[] = [];
  private readonly live = new Set<Worker>();
  private closed = false;
  private warming: Promise<void> | undefined;

  constructor(opts: ParsePoolOptions) {
    this.opts = opts;
  }

  /** Starts a thread ahead of the first document (loading modules and the tokenizer takes a while). */
  warm(): void {
    this.warming ??= this.spawn()
      .then(
        (w) => this.release(w),
        () => {}, // the first parse spawns again and reports the error
      )
      .finally(() => {
        this.warming = undefined;
      });
  }

  /** A thread with the tokenizer loaded. */
  private spawn(): Promise<Worker> {
    const w = new Worker(THREAD_URL, {
      workerData: { modelDir: this.opts.modelDir },
      resourceLimits: { maxOldGenerationSizeMb: this.opts.memoryMb },
    });
    this.live.add(w);
    return new Promise((resolve, reject) => {
      const fail = (err: Error) => {
        this.discard(w);
        reject(err);
      };
      w.once('message', (m: ThreadMessage) => {
        detach(w);
        if (m.type === 'ready') resolve(w);
        else fail(m.type === 'error' ? revive(m.error) : new Error(`parse thread sent ${m.type} at start`));
      });
      w.once('error', fail);
      w.once('exit', (code) => fail(new Error(`parse thread exited (${code}) while starting`)));
    });
  }

  private discard(w: Worker): void {
    detach(w);
    w.on('error', () => {}); // a dying thread's late error is no one's to handle
    this.live.delete(w);
    void w.terminate();
  }

  private release(w: Worker): void {
    detach(w);
    if (this.closed || this.idle.length >= (this.opts.keepIdle ?? 2)) {
      this.discard(w);
      return;
    }
    w.unref(); // an idle thread never keeps the process alive
    // one that fails while idle (a library's late error) is dropped, never reused
    const drop = () => {
      const i = this.idle.indexOf(w);
      if (i >= 0) this.idle.splice(i, 1);
      this.discard(w);
    };
    w.once('error', drop);
    w.once('exit', drop);
    this.idle.push(w);
  }

  async parse(task: ParseTask, opts: ParseCallOptions = {}): Promise<ParsedForIngest> {
    if (this.closed) throw new Error('the parse pool is closed');
    opts.signal?.throwIfAborted();
    if (this.idle.length === 0 && this.warming) await this.warming;
    const w = this.idle.pop() ?? (await this.spawn());
    detach(w);
    w.ref();
    const { timeoutMs, memoryMb, limits } = this.opts;
    return new Promise<ParsedForIngest>((resolve, reject) => {
      let settled = false;
      let stage: Promise<void> = Promise.resolve();
      const settle = (keep: boolean, then: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        if (keep) this.release(w);
        else this.discard(w);
        then();
      };
      const kill = (err: unknown) => settle(false, () => reject(err));
      const timer = setTimeout(
        () =>
          kill(
            overLimit(
              `parsing and chunking the document took longer than ${timeoutMs / 1000} s and was stopped`,
              'parseTimeoutS',
            ),
          ),
        timeoutMs,
      );
      const onAbort = () => kill(opts.signal?.reason ?? new Error('parse aborted'));
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      w.on('message', (m: ThreadMessage) => {
        if (m.type === 'chunking') {
          stage = opts.onChunking?.() ?? stage;
          stage.catch(kill);
        } else if (m.type === 'done') {
          settle(true, () => stage.then(() => resolve({ chunks: m.chunks, tokenIds: m.tokenIds }), reject));
        } else if (m.type === 'error') {
          settle(true, () => reject(revive(m.error)));
        }
      });
      w.once('error', (err: Error & { code?: string }) =>
        kill(
          err.code === 'ERR_WORKER_OUT_OF_MEMORY'
            ? overLimit(`parsing the document needed more than ${memoryMb} MB of memory`, 'parseMemoryMb')
            : err,
        ),
      );
      w.once('exit', (code) => kill(new Error(`parse thread exited (${code})`)));
      const message: ThreadTask = { input: task.input, chunking: task.chunking, limits };
      w.postMessage(message);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.warming;
    const all = [...this.live];
    this.idle.length = 0;
    this.live.clear();
    await Promise.all(all.map((w) => w.terminate()));
  }
}
