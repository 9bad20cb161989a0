// Hostile uploads against the parse pool (workers/parse-pool.ts): each parse runs in a worker thread that
// the pool terminates past its time limit. The linear-parser tests feed runs that the old quadratic
// regexes needed minutes for (trailing blanks: 20,000 blanks took 1 s, so 160,000 take a minute; the
// ATX-heading, table-separator and charset regexes were slower still) and expect the exact text back:
// were a parser quadratic again, the pool's time limit would fire and the test fail with "took longer
// than … and was stopped" instead of hanging the run. The cap tests expect each cap to stop the document
// with a message naming its setting.
import { afterAll, describe, expect, it } from 'vitest';
import { AppError } from '../../../contracts/errors.ts';
import { type IngestLimits, NO_LIMITS } from '../../../src/ingest/limits.ts';
import type { ParseInput } from '../../../src/ingest/parse/index.ts';
import { ParsePool } from '../../../workers/parse-pool.ts';
import { minimalPdf } from '../../helpers/minimal-pdf.ts';

const MODEL_DIR = new URL('../../../models/kvrag-tiny', import.meta.url).pathname;
const RUN = 160_000;
const spaces = ' '.repeat(RUN);
/** Generous for a linear parse + chunking on a loaded 2-core machine; a quadratic parse needs minutes. */
const BUDGET_MS = 30_000;

const pools: ParsePool[] = [];
function pool(limits: Partial<IngestLimits> = {}, timeoutMs = BUDGET_MS, memoryMb = 512): ParsePool {
  const p = new ParsePool({ modelDir: MODEL_DIR, limits: { ...NO_LIMITS, ...limits }, timeoutMs, memoryMb });
  pools.push(p);
  return p;
}
afterAll(async () => {
  await Promise.all(pools.map((p) => p.close()));
});

const linear = pool();
/** The chunks' text joined back (overlap 0: the chunks are exact consecutive slices of the text). */
async function textOf(input: ParseInput): Promise<string> {
  const { chunks } = await linear.parse({ input, chunking: { size: 4096, overlap: 0 } });
  return chunks.map((c) => c.text).join('');
}

async function failure(
  p: ParsePool,
  input: ParseInput,
  chunking = { size: 512, overlap: 0 },
): Promise<AppError> {
  const err = await p.parse({ input, chunking }).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AppError);
  return err as AppError;
}

describe('parsers stay linear on long runs (within the parse time limit)', () => {
  it('plain text: trailing blanks go, blanks inside a line stay', async () => {
    const blanks = ' \t\u00a0'.repeat(RUN / 3);
    expect(await textOf({ data: `x${blanks}y\nz${blanks}`, contentType: 'text/plain' })).toBe(
      `x${blanks}y\nz`,
    );
  });

  it('Markdown: an ATX heading with a long run inside', async () => {
    const md = `# a${spaces}b\n\n${'>'.repeat(RUN)} deep quote`;
    const text = await textOf({ data: md, filename: 'a.md' });
    expect(text).toBe(`a${spaces}b\n\ndeep quote`);
  });

  it('Markdown: a table separator candidate with a long run inside', async () => {
    const text = await textOf({ data: `a | b\n|---${spaces}x`, filename: 'a.md' });
    // not a separator: `a | b` stays a plain line and the next line is a pipe row of its own
    expect(text).toBe(`a | b\n|---${spaces}x`);
  });

  it('HTML whose dropped elements leave a long run, and a Content-Type whose charset holds long runs', async () => {
    const html = `<p>a${'<script>x</script>'.repeat(RUN / 10)}b</p><table><tr><td>c${spaces}</td><td>d</td></tr></table>`;
    const contentType = `text/html; charset=${spaces}=${spaces}x"`;
    expect(await textOf({ data: html, contentType })).toBe('a b\n\nc | d');
  });
});

describe('caps end the document with the cap named', () => {
  it('nested JSON whose key paths amplify it stops at the text cap before the text exists', async () => {
    // 42 KB: 7,000 levels of {"k": …} with a value at every level — the old walk wrote ~150 M characters
    let json = '"leaf"';
    for (let i = 0; i < 7000; i++) json = `{"v":${i},"k":${json}}`;
    expect(json.length).toBeLessThan(110_000);
    const err = await failure(pool({ maxChars: 1_000_000 }), { data: json, contentType: 'application/json' });
    expect(err.code).toBe('payload_too_large');
    expect(err.message).toMatch(
      /extracted text is over the limit of 1000000 characters \(KVRAG_MAX_DOCUMENT_CHARS\)/,
    );
  });

  it('a document that makes too many chunks', async () => {
    const err = await failure(
      pool({ maxChunks: 50 }),
      { data: `x${spaces}y`, contentType: 'text/plain' },
      {
        size: 64,
        overlap: 0,
      },
    );
    expect(err.message).toBe('the document makes more than 50 chunks (KVRAG_MAX_DOCUMENT_CHUNKS)');
  });

  it('a PDF with thousands of pages is refused before any page is read', async () => {
    const pdf = minimalPdf(Array.from({ length: 3000 }, (_, i) => [`page ${i + 1}`]));
    const err = await failure(pool({ maxPdfPages: 1000 }), { data: pdf, contentType: 'application/pdf' });
    expect(err.message).toBe('the PDF has 3000 pages, over the limit of 1000 (KVRAG_MAX_PDF_PAGES)');
  });

  it('a PDF whose flate stream inflates a thousandfold (a decompression bomb)', async () => {
    const pdf = minimalPdf([['hello']], { deflate: true, padTo: 24 * 1024 * 1024 });
    expect(pdf.length).toBeLessThan(100_000);
    const cap = { maxInflatedBytes: 4 * 1024 * 1024 };
    const err = await failure(pool(cap), { data: pdf, contentType: 'application/pdf' });
    expect(err.message).toMatch(
      /compressed streams inflate to more than 4194304 bytes.*\(KVRAG_PARSE_MEMORY_MB\)/,
    );
    // a deflated PDF under the cap is read normally
    const ok = await pool(cap).parse({
      input: { data: minimalPdf([['hello']], { deflate: true }), contentType: 'application/pdf' },
      chunking: {},
    });
    expect(ok.chunks.map((c) => c.text)).toEqual(['hello']);
  });

  it('the PDF text cap stops extraction as pdf.js streams the page', async () => {
    const page = Array.from({ length: 400 }, (_, i) => `line ${i} of a long page`);
    const err = await failure(pool({ maxChars: 2000 }), {
      data: minimalPdf([page, page]),
      contentType: 'application/pdf',
    });
    expect(err.message).toMatch(/over the limit of 2000 characters/);
  });

  it('the time limit terminates a parse that runs too long; the pool goes on with a fresh thread', async () => {
    const p = pool({}, 1);
    // 2 MB of unbalanced emphasis markers: seconds of inline rewriting on a 2-core machine
    const err = await failure(p, { data: '**a '.repeat(500_000), filename: 'slow.md' });
    expect(err.message).toBe(
      'parsing and chunking the document took longer than 0.001 s and was stopped (KVRAG_PARSE_TIMEOUT_S)',
    );
    const fast = pool({}, BUDGET_MS);
    const ok = await fast.parse({
      input: { data: 'after the kill', contentType: 'text/plain' },
      chunking: {},
    });
    expect(ok.chunks.map((c) => c.text)).toEqual(['after the kill']);
  });

  it('the memory limit terminates a parse whose heap outgrows it', async () => {
    // JSON.parse of 600,000 small objects needs far more than 32 MB of heap
    const json = `[${Array.from({ length: 600_000 }, (_, i) => `{"n":${i}}`).join(',')}]`;
    const err = await failure(pool({}, BUDGET_MS, 32), { data: json, contentType: 'application/json' });
    expect(err.message).toBe('parsing the document needed more than 32 MB of memory (KVRAG_PARSE_MEMORY_MB)');
  });

  it('keeps a thread that failed on a cap for the next document', async () => {
    const p = pool({ maxChunks: 1 });
    await failure(
      p,
      { data: 'one. two. three. '.repeat(100), contentType: 'text/plain' },
      { size: 64, overlap: 0 },
    );
    const ok = await p.parse({ input: { data: 'short', contentType: 'text/plain' }, chunking: {} });
    expect(ok.tokenIds.get(ok.chunks[0].contentHash)).toEqual(Array.from(new TextEncoder().encode('short')));
  });
});
