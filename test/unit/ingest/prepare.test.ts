import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { HashEmbeddingProvider } from '../../../src/embeddings/hash.ts';
import type { Tokenizer } from '../../../contracts/tokenizer.ts';
import { prepareDocument } from '../../../src/ingest/prepare.ts';

const bytes: Tokenizer = {
  encode: (t) => Array.from(new TextEncoder().encode(t)),
  decode: (ids) => new TextDecoder().decode(new Uint8Array(ids)),
};
const dot = (a: Float32Array, b: Float32Array) => a.reduce((s, x, i) => s + x * b[i], 0);
const PDF = new Uint8Array(readFileSync(new URL('../../fixtures/docs/two-pages.pdf', import.meta.url)));

describe('prepareDocument', () => {
  it('parses, chunks and embeds a PDF, mapping chunks to pages', async () => {
    const embedder = new HashEmbeddingProvider({ dimension: 256 });
    const { document, chunks } = await prepareDocument(
      { data: PDF, filename: 'two-pages.pdf' },
      { tokenizer: bytes, embedder, chunking: { size: 64, overlap: 16 }, embedBatchSize: 2 },
    );
    expect(document.format).toBe('pdf');
    expect(chunks.length).toBeGreaterThanOrEqual(3);
    for (const c of chunks) {
      expect(c.embedding.length).toBe(256);
      expect(Array.from(c.embedding)).toEqual(Array.from((await embedder.embed([c.text], 'document'))[0]));
      expect(c.pages?.length).toBeGreaterThan(0);
    }
    expect(chunks[0].pages).toEqual([1]);
    expect(chunks.at(-1)?.pages).toEqual([2]);
    // the question about page 2 retrieves a page-2 chunk first
    const [q] = await embedder.embed(['which keys does squeezed attention keep?'], 'query');
    const best = [...chunks].sort((a, b) => dot(q, b.embedding) - dot(q, a.embedding))[0];
    expect(best.pages).toContain(2);
    expect(best.text).toContain('squeezed attention');
  });

  it('stops between embedding batches when the job is cancelled', async () => {
    const ctrl = new AbortController();
    let calls = 0;
    const embedder = {
      id: 'hash' as const,
      model: 'counting',
      dimension: 8,
      async embed(texts: string[]) {
        calls++;
        ctrl.abort(new Error('shutting down'));
        return texts.map(() => new Float32Array(8));
      },
    };
    const text = 'word '.repeat(400);
    await expect(
      prepareDocument(
        { data: text, contentType: 'text/plain' },
        {
          tokenizer: bytes,
          embedder,
          chunking: { size: 64, overlap: 0 },
          embedBatchSize: 4,
          signal: ctrl.signal,
        },
      ),
    ).rejects.toThrow('shutting down');
    expect(calls).toBe(1);
  });
});
