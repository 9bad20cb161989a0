// One document from upload bytes to embedded chunks, without storage, in two steps:
//   parseAndChunk: parse → token-aware chunking (CPU only, bounded by IngestLimits; the ingest worker runs
//     it in a worker thread with a time limit, workers/parse-pool.ts), plus the token ids of each distinct
//     chunk (what its precompute job carries);
//   embedChunks: embedding (kind 'document'), in batches.
// prepareDocument does both; tests and the CLI use it directly.
import type { EmbeddingProvider } from '../embeddings/types.ts';
import { AppError } from '../../contracts/errors.ts';
import type { Tokenizer } from '../../contracts/tokenizer.ts';
import { type Chunk, type ChunkingOptions, chunkText } from './chunking.ts';
import { type IngestLimits, NO_LIMITS } from './limits.ts';
import { type ParsedDocument, type ParseInput, parseDocument } from './parse/index.ts';

/** A chunk and, for a PDF, the 1-based pages its text overlaps (ascending). */
export interface PlacedChunk extends Chunk {
  pages?: number[];
}

export interface PreparedChunk extends PlacedChunk {
  /** embedding: [dimension] of the provider, from the chunk text. */
  embedding: Float32Array;
}

export interface PreparedDocument {
  document: ParsedDocument;
  chunks: PreparedChunk[];
}

export interface ChunkedDocument {
  document: ParsedDocument;
  chunks: PlacedChunk[];
}

export interface ParseAndChunkOptions {
  /** The runner model's tokenizer: chunk sizes are in its tokens. */
  tokenizer: Tokenizer;
  chunking?: ChunkingOptions;
  /** Default: none (trusted input). */
  limits?: IngestLimits;
  /** Called when chunking starts (the ingest worker persists it as the document's status). */
  onChunking?: () => void | Promise<void>;
}

export async function parseAndChunk(input: ParseInput, opts: ParseAndChunkOptions): Promise<ChunkedDocument> {
  const limits = opts.limits ?? NO_LIMITS;
  const document = await parseDocument(input, limits);
  await opts.onChunking?.();
  const chunks: PlacedChunk[] = await chunkText(
    document.text,
    opts.tokenizer,
    opts.chunking,
    limits.maxChunks,
  );
  const pages = document.pages;
  if (pages) {
    for (const c of chunks) {
      c.pages = pages.filter((p) => p.startChar < c.endChar && p.endChar > c.startChar).map((p) => p.page);
    }
  }
  return { document, chunks };
}

/** The token ids of each distinct chunk text, by content hash. */
export function chunkTokenIds(chunks: readonly Chunk[], tokenizer: Tokenizer): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const c of chunks) if (!out.has(c.contentHash)) out.set(c.contentHash, tokenizer.encode(c.text));
  return out;
}

export interface EmbedOptions {
  /** Texts per embed() call (default 64); the provider may split further. */
  batchSize?: number;
  /** Checked between embedding batches: a cancelled job stops early. */
  signal?: AbortSignal;
}

export async function embedChunks(
  chunks: readonly PlacedChunk[],
  embedder: EmbeddingProvider,
  opts: EmbedOptions = {},
): Promise<PreparedChunk[]> {
  const batch = Math.max(1, opts.batchSize ?? 64);
  const out: PreparedChunk[] = [];
  for (let i = 0; i < chunks.length; i += batch) {
    // timers and I/O get a turn between batches (a local embedder computes without awaiting anything)
    if (i > 0) await new Promise((resolve) => setTimeout(resolve, 0));
    opts.signal?.throwIfAborted();
    const part = chunks.slice(i, i + batch);
    const vectors = await embedder.embed(
      part.map((c) => c.text),
      'document',
    );
    if (vectors.length !== part.length) {
      throw new AppError(
        'upstream_unavailable',
        `embedder returned ${vectors.length} vectors for ${part.length} texts`,
      );
    }
    for (const [j, c] of part.entries()) out.push({ ...c, embedding: vectors[j] });
  }
  return out;
}

export interface PrepareDeps extends Omit<ParseAndChunkOptions, 'onChunking'> {
  embedder: EmbeddingProvider;
  /** Texts per embed() call (default 64). */
  embedBatchSize?: number;
  signal?: AbortSignal;
}

export async function prepareDocument(input: ParseInput, deps: PrepareDeps): Promise<PreparedDocument> {
  const { document, chunks } = await parseAndChunk(input, deps);
  return {
    document,
    chunks: await embedChunks(chunks, deps.embedder, { batchSize: deps.embedBatchSize, signal: deps.signal }),
  };
}
