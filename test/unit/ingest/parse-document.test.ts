import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { AppError } from '../../../contracts/errors.ts';
import { detectFormat, type ParseInput, parseDocument } from '../../../src/ingest/parse/index.ts';
import { minimalPdf } from '../../helpers/minimal-pdf.ts';

const utf8 = (s: string) => new TextEncoder().encode(s);
const FIXTURE = new Uint8Array(readFileSync(new URL('../../fixtures/docs/two-pages.pdf', import.meta.url)));
const FIXTURE_PAGES = [
  ['Chunk KV caches are precomputed offline.', 'Retrieval fuses vector and full-text ranks (RRF).'],
  ['Page two: squeezed attention keeps the important keys.', 'Caf\u00e9 na\u00efve \\ back-slash.'],
];

async function rejected(input: ParseInput): Promise<AppError> {
  const err = await parseDocument(input).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AppError);
  return err as AppError;
}

describe('format detection', () => {
  const fmt = (contentType?: string, filename?: string, data: Uint8Array | string = 'x') =>
    detectFormat({ data, contentType, filename });

  it('uses a specific content type, ignoring parameters and case', () => {
    expect(fmt('text/markdown; charset=utf-8')).toBe('md');
    expect(fmt('TEXT/HTML')).toBe('html');
    expect(fmt('application/vnd.api+json')).toBe('json');
    expect(fmt('application/x-ndjson')).toBe('jsonl');
    expect(fmt('application/pdf', 'notes.txt')).toBe('pdf');
  });

  it('falls back to the extension for generic types, and text/plain defers to a richer extension', () => {
    expect(fmt(undefined, 'README.MD')).toBe('md');
    expect(fmt('application/octet-stream', 'page.htm')).toBe('html');
    expect(fmt('text/plain', 'data.jsonl')).toBe('jsonl');
    expect(fmt('text/plain', 'notes.txt')).toBe('txt');
    expect(fmt('text/plain', 'scan.pdf')).toBe('txt');
    expect(fmt('application/octet-stream', 'blob', FIXTURE)).toBe('pdf'); // %PDF- signature
  });

  it('answers unsupported_media_type (415) for anything else', () => {
    for (const [ct, name] of [
      ['image/png', 'x.png'],
      ['application/msword', 'x.md'],
      [undefined, 'archive.zip'],
      [undefined, undefined],
    ] as const) {
      let err: unknown;
      try {
        fmt(ct, name);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(AppError);
      expect((err as AppError).code).toBe('unsupported_media_type');
      expect((err as AppError).status).toBe(415);
    }
  });
});

describe('parseDocument', () => {
  it('parses text with its charset and strips a BOM', async () => {
    const latin1 = new Uint8Array([0x63, 0x61, 0x66, 0xe9, 0x0d, 0x0a, 0x6f, 0x6b]); // "café\r\nok"
    expect(await parseDocument({ data: latin1, contentType: 'text/plain; charset=iso-8859-1' })).toEqual({
      format: 'txt',
      text: 'café\nok',
    });
    const bom = new Uint8Array([0xef, 0xbb, 0xbf, ...utf8('# Title\n\nbody')]);
    expect(await parseDocument({ data: bom, filename: 'a.md' })).toEqual({
      format: 'md',
      text: 'Title\n\nbody',
      title: 'Title',
    });
    const utf16 = new Uint8Array([0xff, 0xfe, 0x68, 0x00, 0x69, 0x00]);
    expect((await parseDocument({ data: utf16, contentType: 'text/plain' })).text).toBe('hi');
  });

  it('dispatches html and json', async () => {
    const html = await parseDocument({
      data: utf8('<title>T</title><p>Hello <b>world</b></p>'),
      contentType: 'text/html',
    });
    expect(html).toEqual({ format: 'html', text: 'Hello world', title: 'T' });
    const json = await parseDocument({ data: '{"a":{"b":"c"}}', filename: 'x.json' });
    expect(json).toEqual({ format: 'json', text: 'a.b: c' });
  });

  it('rejects empty, blank, undecodable and binary documents with bad_request', async () => {
    expect((await rejected({ data: new Uint8Array(), contentType: 'text/plain' })).message).toContain(
      'empty',
    );
    expect((await rejected({ data: utf8(' \n\t '), contentType: 'text/plain' })).message).toContain(
      'no text',
    );
    expect((await rejected({ data: utf8('<script>x()</script>'), contentType: 'text/html' })).code).toBe(
      'bad_request',
    );
    expect((await rejected({ data: '{"a": null}', contentType: 'application/json' })).code).toBe(
      'bad_request',
    );
    const bad = await rejected({ data: new Uint8Array([0x61, 0xff, 0xfe, 0x62]), contentType: 'text/plain' });
    expect(bad.code).toBe('bad_request');
    expect(bad.message).toContain('not valid utf-8');
    expect((await rejected({ data: utf8('a\u0000b'), filename: 'x.txt' })).message).toContain('NUL');
    expect(
      (await rejected({ data: utf8('x'), contentType: 'text/plain; charset=klingon' })).message,
    ).toContain('charset');
  });
});

describe('pdf', () => {
  it('extracts the committed fixture page by page, with page offsets', async () => {
    const doc = await parseDocument({ data: FIXTURE, contentType: 'application/pdf' });
    expect(doc.format).toBe('pdf');
    expect(doc.text).toBe(FIXTURE_PAGES.map((p) => p.join('\n')).join('\n\n'));
    const first = FIXTURE_PAGES[0].join('\n').length;
    const second = FIXTURE_PAGES[1].join('\n').length;
    expect(doc.pages).toEqual([
      { page: 1, startChar: 0, endChar: first },
      { page: 2, startChar: first + 2, endChar: first + 2 + second },
    ]);
    for (const [i, p] of (doc.pages ?? []).entries()) {
      expect(doc.text.slice(p.startChar, p.endChar)).toBe(FIXTURE_PAGES[i].join('\n'));
    }
  });

  it('the fixture is what the generator writes (so it can be regenerated)', () => {
    expect(Buffer.from(minimalPdf(FIXTURE_PAGES)).equals(Buffer.from(FIXTURE))).toBe(true);
  });

  it('skips pages without text and rejects PDFs without any', async () => {
    const doc = await parseDocument({
      data: minimalPdf([['first'], [], ['third (page 3)']]),
      filename: 'x.pdf',
    });
    expect(doc.text).toBe('first\n\nthird (page 3)');
    expect(doc.pages?.map((p) => p.page)).toEqual([1, 3]);
    const empty = await rejected({ data: minimalPdf([[], []]), contentType: 'application/pdf' });
    expect(empty.message).toContain('no extractable text');
  });

  it('rejects corrupt and truncated PDFs with bad_request', async () => {
    expect((await rejected({ data: utf8('hello'), contentType: 'application/pdf' })).message).toContain(
      'not a PDF',
    );
    const truncated = await rejected({ data: FIXTURE.subarray(0, 200), contentType: 'application/pdf' });
    expect(truncated.code).toBe('bad_request');
    const garbage = new Uint8Array([
      ...utf8('%PDF-1.7\n'),
      ...new Uint8Array(500).map((_, i) => (i * 7919) % 256),
    ]);
    expect((await rejected({ data: garbage, contentType: 'application/pdf' })).code).toBe('bad_request');
  });
});
