import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Tokenizer } from '../../../contracts/tokenizer.ts';
import { type Chunk, chunkText, parseChunkingOptions, sha256Hex } from '../../../src/ingest/chunking.ts';

/** Byte-level tokenizer: one token per UTF-8 byte (what the project's own models use). */
const bytes: Tokenizer = {
  encode: (t) => Array.from(new TextEncoder().encode(t)),
  decode: (ids) => new TextDecoder().decode(new Uint8Array(ids)),
};
const nbytes = (t: string) => new TextEncoder().encode(t).length;

/** A word-level tokenizer (words, single punctuation marks and whitespace runs are tokens): tokens span many chars. */
function wordTokenizer(): Tokenizer {
  const vocab = new Map<string, number>();
  const inv: string[] = [];
  return {
    encode: (t) =>
      (t.match(/\s+|[\p{L}\p{N}]+|[^\s\p{L}\p{N}]/gu) ?? []).map((piece) => {
        let id = vocab.get(piece);
        if (id === undefined) {
          id = inv.length;
          vocab.set(piece, id);
          inv.push(piece);
        }
        return id;
      }),
    decode: (ids) => ids.map((i) => inv[i]).join(''),
  };
}

/** Deterministic pseudo-random prose: paragraphs of sentences of words, some non-ASCII. */
function prose(
  seed: number,
  paragraphs: number,
  sentencesPer: [number, number],
  wordsPer: [number, number],
): string {
  let s = seed >>> 0;
  const rnd = (a: number, b: number) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return a + (s % (b - a + 1));
  };
  const words = [
    'kv',
    'cache',
    'chunk',
    'naïve',
    'résumé',
    'attention',
    'token',
    '日本語',
    'emoji😀',
    'prefill',
    'a',
    'query',
  ];
  const ps: string[] = [];
  for (let p = 0; p < paragraphs; p++) {
    const ss: string[] = [];
    for (let k = rnd(...sentencesPer); k > 0; k--) {
      const ws = Array.from({ length: rnd(...wordsPer) }, () => words[rnd(0, words.length - 1)]);
      ws[0] = ws[0][0].toUpperCase() + ws[0].slice(1);
      ss.push(`${ws.join(' ')}${['.', '!', '?'][rnd(0, 2)]}`);
    }
    ps.push(ss.join(' '));
  }
  return ps.join('\n\n');
}

/** Position after the next whitespace run following pos (where the word after pos's word starts). */
function nextWordStart(doc: string, pos: number): number {
  const re = /\s+(?=\S)/g;
  re.lastIndex = pos;
  const m = re.exec(doc);
  return m ? m.index + m[0].length : doc.length;
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Invariants every chunking must hold, whatever the options. */
async function checkInvariants(doc: string, chunks: Chunk[], tok: Tokenizer, size: number, overlap: number) {
  expect(chunks.length).toBeGreaterThan(0);
  expect(chunks[0].startChar).toBe(0);
  expect(chunks.at(-1)?.endChar).toBe(doc.length);
  for (const [i, c] of chunks.entries()) {
    expect(c.ordinal).toBe(i);
    expect(c.text).toBe(doc.slice(c.startChar, c.endChar));
    expect(c.tokenCount).toBe(tok.encode(c.text).length);
    expect(c.tokenCount).toBeLessThanOrEqual(size);
    expect(c.text.length).toBeGreaterThan(0);
    expect(LONE_SURROGATE.test(c.text)).toBe(false);
    expect(c.contentHash).toBe(createHash('sha256').update(c.text, 'utf8').digest('hex'));
    if (i > 0) {
      const prev = chunks[i - 1];
      expect(c.startChar).toBeGreaterThan(prev.startChar);
      expect(c.startChar).toBeLessThanOrEqual(prev.endChar); // no gap: the chunks cover the document
      expect(c.endChar).toBeGreaterThan(prev.endChar);
      expect(tok.encode(doc.slice(c.startChar, prev.endChar)).length).toBeLessThanOrEqual(overlap);
    }
  }
}

describe('chunking options', () => {
  it('defaults to 512/64 with slack size/8 and validates ranges', () => {
    expect(parseChunkingOptions()).toEqual({ size: 512, overlap: 64, slack: 64 });
    expect(parseChunkingOptions({ size: 4096, overlap: 2048 })).toEqual({
      size: 4096,
      overlap: 2048,
      slack: 512,
    });
    for (const bad of [
      { size: 63 },
      { size: 4097 },
      { size: 512, overlap: 257 },
      { overlap: -1 },
      { size: 100.5 },
      { slack: 200 },
    ]) {
      expect(() => parseChunkingOptions(bad)).toThrow(expect.objectContaining({ code: 'bad_request' }));
    }
  });

  it('gives no chunks for empty or blank text', async () => {
    expect(await chunkText('', bytes)).toEqual([]);
    expect(await chunkText(' \n\n\t ', bytes)).toEqual([]);
  });

  it('keeps a short text whole and hashes it with sha256', async () => {
    const [c, ...rest] = await chunkText('Hello, world.', bytes);
    expect(rest).toEqual([]);
    expect(c).toEqual({
      ordinal: 0,
      text: 'Hello, world.',
      tokenCount: 13,
      contentHash: createHash('sha256').update('Hello, world.').digest('hex'),
      startChar: 0,
      endChar: 13,
    });
    expect(await sha256Hex('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });
});

describe('chunking with a byte-level tokenizer', () => {
  const doc = prose(7, 60, [2, 6], [3, 14]);

  for (const [size, overlap] of [
    [64, 0],
    [64, 32],
    [128, 16],
    [512, 64],
    [1000, 500],
  ] as const) {
    it(`holds the invariants at size ${size}, overlap ${overlap}`, async () => {
      const chunks = await chunkText(doc, bytes, { size, overlap });
      await checkInvariants(doc, chunks, bytes, size, overlap);
      const { slack } = parseChunkingOptions({ size, overlap });
      // a chunk short of the slack window could not take one more word
      for (const c of chunks.slice(0, -1)) {
        if (c.tokenCount < size - slack)
          expect(nbytes(doc.slice(c.startChar, nextWordStart(doc, c.endChar)))).toBeGreaterThan(size);
      }
      if (overlap === 0) expect(chunks.map((c) => c.text).join('')).toBe(doc);
      else {
        // each overlap is as large as fits: adding the previous word would exceed `overlap`
        for (let i = 1; i < chunks.length; i++) {
          const shared = nbytes(doc.slice(chunks[i].startChar, chunks[i - 1].endChar));
          expect(shared).toBeGreaterThan(overlap - 16);
        }
      }
    });
  }

  it('ends chunks at paragraph breaks when one lies in the slack window', async () => {
    // paragraphs of 40–60 bytes: every 64-token window below the size holds a paragraph break
    const paras = prose(3, 200, [1, 1], [4, 7])
      .split('\n\n')
      .map((p) => p.slice(0, 45).trimEnd());
    const text = paras.join('\n\n');
    const chunks = await chunkText(text, bytes, { size: 256, overlap: 0, slack: 64 });
    expect(chunks.length).toBeGreaterThan(10);
    for (const c of chunks.slice(0, -1)) expect(c.text.endsWith('\n\n')).toBe(true);
  });

  it('ends chunks at sentence ends when there are no paragraphs', async () => {
    const text = prose(11, 1, [300, 300], [2, 2]);
    expect(text.includes('\n')).toBe(false);
    const chunks = await chunkText(text, bytes, { size: 128, overlap: 0, slack: 32 });
    expect(chunks.length).toBeGreaterThan(10);
    for (const c of chunks.slice(0, -1)) expect(c.text).toMatch(/[.!?] $/);
  });

  it('cuts text without spaces between code points, never inside a character', async () => {
    const text = '日本語のテキスト😀は空白がありません🎉'.repeat(40);
    const chunks = await chunkText(text, bytes, { size: 64, overlap: 16 });
    await checkInvariants(text, chunks, bytes, 64, 16);
    // 3- and 4-byte characters: a forced cut wastes at most 3 bytes
    for (const c of chunks.slice(0, -1)) expect(c.tokenCount).toBeGreaterThan(60);
    for (let i = 1; i < chunks.length; i++) {
      expect(nbytes(text.slice(chunks[i].startChar, chunks[i - 1].endChar))).toBeGreaterThan(12);
    }
  });

  it('prefers a CJK sentence end (。) within the window', async () => {
    const text = 'これは文です。'.repeat(60); // 21 bytes per sentence
    const chunks = await chunkText(text, bytes, { size: 128, overlap: 0, slack: 32 });
    for (const c of chunks.slice(0, -1)) expect(c.text.endsWith('。')).toBe(true);
    expect(chunks.map((c) => c.text).join('')).toBe(text);
  });

  it('splits a word longer than the chunk and resumes at word boundaries', async () => {
    const text = `${prose(5, 3, [3, 3], [5, 8])} ${'x'.repeat(700)} ${prose(6, 3, [3, 3], [5, 8])}`;
    const chunks = await chunkText(text, bytes, { size: 128, overlap: 32 });
    await checkInvariants(text, chunks, bytes, 128, 32);
    expect(chunks.some((c) => c.text === 'x'.repeat(128))).toBe(true);
  });
});

describe('chunking, randomised', () => {
  it('holds the invariants over many documents, sizes and overlaps, for both tokenizers', async () => {
    let seed = 12345;
    const rnd = (a: number, b: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return a + (seed % (b - a + 1));
    };
    for (let round = 0; round < 24; round++) {
      const tok = round % 2 === 0 ? bytes : wordTokenizer();
      let doc = prose(rnd(1, 1e6), rnd(1, 30), [1, 6], [1, 16]);
      if (round % 5 === 0) doc = doc.replace(/ /g, '');
      if (round % 7 === 0) doc = `${doc}\n\n${'z'.repeat(rnd(100, 3000))}`;
      const size = rnd(64, 700);
      const overlap = rnd(0, Math.floor(size / 2));
      const chunks = await chunkText(doc, tok, { size, overlap });
      await checkInvariants(doc, chunks, tok, size, overlap);
    }
  });
});

describe('chunking with a multi-character tokenizer', () => {
  it('counts the given tokenizer, not bytes or chars', async () => {
    const tok = wordTokenizer();
    const doc = prose(42, 40, [2, 5], [4, 12]);
    const chunks = await chunkText(doc, tok, { size: 100, overlap: 20 });
    await checkInvariants(doc, chunks, tok, 100, 20);
    for (const c of chunks.slice(0, -1)) {
      if (c.tokenCount < 100 - 12)
        expect(tok.encode(doc.slice(c.startChar, nextWordStart(doc, c.endChar))).length).toBeGreaterThan(100);
    }
    // a 100-token chunk of words is far more than 100 bytes
    expect(nbytes(chunks[0].text)).toBeGreaterThan(250);
  });

  it('chunks a 1 MB document quickly', async () => {
    const doc = prose(1, 3500, [3, 8], [4, 14]);
    expect(doc.length).toBeGreaterThan(1_000_000);
    const t0 = performance.now();
    const chunks = await chunkText(doc, bytes, { size: 512, overlap: 64 });
    const ms = performance.now() - t0;
    await checkInvariants(doc, chunks, bytes, 512, 64);
    console.log(
      `chunked ${(doc.length / 1e6).toFixed(2)} M chars into ${chunks.length} chunks in ${ms.toFixed(0)} ms`,
    );
  });
});
