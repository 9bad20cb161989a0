// `kvrag chunk FILE`: shows what ingestion makes of a file — the parsed text's format and size, and
// its chunks in the model tokenizer's tokens — without a database. For tuning chunk sizes and for
// checking a parser on real documents.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { AppError } from '../../contracts/errors.ts';
import { chunkText } from '../../src/ingest/chunking.ts';
import { parseDocument } from '../../src/ingest/parse/index.ts';
import { numberOption, parseOptions, UsageError } from '../args.ts';
import type { Command } from '../command.ts';

const BYTE_TOKENIZER = fileURLToPath(new URL('../../gpu-runner/tools/tokenizer/', import.meta.url));

export const command: Command = {
  summary: 'Parse a document and print its chunks (token counts, offsets, pages); no database needed.',
  usage:
    'kvrag chunk FILE [--content-type TYPE] [--size N] [--overlap N] [--tokenizer DIR] [--json] (DIR holds tokenizer.json; default: the byte tokenizer)',
  async run(args) {
    const { values, positionals } = parseOptions(
      args,
      {
        'content-type': { type: 'string' },
        size: { type: 'string' },
        overlap: { type: 'string' },
        tokenizer: { type: 'string' },
        json: { type: 'boolean', default: false },
      },
      true,
    );
    const file = positionals[0];
    if (!file || positionals.length > 1) throw new UsageError('give exactly one FILE');
    let data: Uint8Array;
    try {
      data = new Uint8Array(readFileSync(file));
    } catch (err) {
      throw new UsageError(`cannot read ${file}: ${(err as Error).message}`);
    }
    const { readTokenizerFiles, TextTokenizer } = await import('../../gpu-runner/engine/tokenizer.ts');
    const tokenizer = new TextTokenizer(readTokenizerFiles(values.tokenizer ?? BYTE_TOKENIZER));
    const size = numberOption('size', values.size, 512);
    const overlap = numberOption('overlap', values.overlap, 64);
    try {
      const doc = await parseDocument({ data, contentType: values['content-type'], filename: file });
      const chunks = await chunkText(doc.text, tokenizer, { size, overlap });
      const pagesOf = (s: number, e: number) =>
        doc.pages?.filter((p) => p.startChar < e && p.endChar > s).map((p) => p.page);
      if (values.json) {
        const out = {
          format: doc.format,
          title: doc.title ?? null,
          chars: doc.text.length,
          chunks: chunks.map((c) => ({ ...c, pages: pagesOf(c.startChar, c.endChar) ?? null })),
        };
        console.log(JSON.stringify(out, null, 2));
        return 0;
      }
      console.log(
        `${file}: ${doc.format}, ${doc.text.length} chars, ${chunks.length} chunks${doc.title ? `, title "${doc.title}"` : ''}`,
      );
      console.log('  #  tokens       chars  pages  text');
      for (const c of chunks) {
        const pages = pagesOf(c.startChar, c.endChar)?.join(',') ?? '';
        const preview = c.text.replace(/\s+/g, ' ').trim().slice(0, 60);
        const range = `${c.startChar}-${c.endChar}`;
        console.log(
          `${String(c.ordinal).padStart(3)}  ${String(c.tokenCount).padStart(6)}  ${range.padStart(10)}  ${pages.padStart(5)}  ${preview}`,
        );
      }
      return 0;
    } catch (err) {
      if (err instanceof AppError) {
        console.error(`kvrag chunk: ${err.message}`);
        return 1;
      }
      throw err;
    }
  },
};
