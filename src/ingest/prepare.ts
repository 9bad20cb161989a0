// One document from upload bytes to embedded chunks, without storage: parse → token-aware chunking →
// embedding (kind 'document'). The ingest worker stores the result; tests and the CLI use it directly.
import type { EmbeddingProvider } from '../embeddings/types.ts';
import { AppError } from '../../contracts/errors.ts';
import type { Tokenizer } from '../../contracts/tokenizer.ts';
import { type Chunk, type ChunkingOptions, chunkText } from './chunking.ts';
import { type ParsedDocument, type ParseInput, parseDocument } from './parse/index.ts';

export interface PreparedChunk extends Chunk {
  /** embedding: [dimension] of the provider, from the chunk text. */
  embedding: Float32Array;
  /** PDF only: 1-based pages the chunk's text overlaps, ascending. */
  pages?: number[];
}

export interface PreparedDocument {
  document: ParsedDocument;
  chunks: PreparedChunk[];
}

export interface PrepareDeps {
  /** The runner model's tokenizer: chunk sizes are in its tokens. */
  tokenizer: Tokenizer;
  embedder: EmbeddingProvider;
  chunking?: ChunkingOptions;
  /** Texts per embed() call (default 64); the provider may split further. */
  embedBatchSize?: number;
  /** Checked between embedding batches: a cancelled job stops early. */
  signal?: AbortSignal;
  /** Called as each later stage starts (the ingest worker persists it as the document's status). */
  onStage?: (stage: 'chunking' | 'embedding') => Promise<void>;
}

export async function prepareDocument(input: ParseInput, deps: PrepareDeps): Promise<PreparedDocument> {
  const document = await parseDocument(input);
  await deps.onStage?.('chunking');
  const chunks = await chunkText(document.text, deps.tokenizer, deps.chunking);
  await deps.onStage?.('embedding');
  const batch = Math.max(1, deps.embedBatchSize ?? 64);
  const vectors: Float32Array[] = [];
  for (let i = 0; i < chunks.length; i += batch) {
    // timers and I/O get a turn between batches (a local embedder computes without awaiting anything)
    if (i > 0) await new Promise((resolve) => setTimeout(resolve, 0));
    deps.signal?.throwIfAborted();
    const texts = chunks.slice(i, i + batch).map((c) => c.text);
    const out = await deps.embedder.embed(texts, 'document');
    if (out.length !== texts.length) {
      throw new AppError(
        'upstream_unavailable',
        `embedder returned ${out.length} vectors for ${texts.length} texts`,
      );
    }
    vectors.push(...out);
  }
  const pages = document.pages;
  return {
    document,
    chunks: chunks.map((c, i) => {
      const prepared: PreparedChunk = { ...c, embedding: vectors[i] };
      if (pages) {
        prepared.pages = pages
          .filter((p) => p.startChar < c.endChar && p.endChar > c.startChar)
          .map((p) => p.page);
      }
      return prepared;
    }),
  };
}
