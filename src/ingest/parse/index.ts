// parseDocument: uploaded bytes (or text) → plain text for chunking, dispatched by content type and file
// extension. A specific content type decides; a generic one (absent, application/octet-stream, and
// text/plain for a file whose extension names a richer text format) defers to the extension, then to
// the %PDF- signature. Unsupported → AppError('unsupported_media_type'); empty, undecodable or malformed
// → AppError('bad_request'). Web APIs only: runs on Workers.
import { AppError } from '../../../contracts/errors.ts';
import { type IngestLimits, NO_LIMITS, TextBudget, tooMuchText } from '../limits.ts';
import { parseHtml } from './html.ts';
import { parseJson, parseJsonLines } from './json.ts';
import { parseMarkdown } from './markdown.ts';
import type { PdfPage } from './pdf.ts';
import { decodeText, normalizeText, requireText } from './text.ts';

export type DocumentFormat = 'txt' | 'md' | 'html' | 'json' | 'jsonl' | 'pdf';

export const SUPPORTED_FORMATS: readonly DocumentFormat[] = ['txt', 'md', 'html', 'json', 'jsonl', 'pdf'];

export interface ParseInput {
  data: Uint8Array | string;
  /** The upload's Content-Type, parameters (charset) included. */
  contentType?: string;
  /** The upload's file name; its extension is used when the content type is generic. */
  filename?: string;
}

export interface ParsedDocument {
  format: DocumentFormat;
  /** Normalised plain text: \n newlines, paragraphs separated by one blank line, trimmed. */
  text: string;
  /** From <title>, a Markdown level-1 heading. */
  title?: string;
  /** PDF only: where each page's text lies in `text`. */
  pages?: PdfPage[];
}

const BY_MEDIA_TYPE: Record<string, DocumentFormat> = {
  'text/plain': 'txt',
  'text/markdown': 'md',
  'text/x-markdown': 'md',
  'text/html': 'html',
  'application/xhtml+xml': 'html',
  'application/json': 'json',
  'text/json': 'json',
  'application/x-ndjson': 'jsonl',
  'application/ndjson': 'jsonl',
  'application/jsonl': 'jsonl',
  'application/x-jsonlines': 'jsonl',
  'application/pdf': 'pdf',
  'application/x-pdf': 'pdf',
};

const BY_EXTENSION: Record<string, DocumentFormat> = {
  txt: 'txt',
  text: 'txt',
  log: 'txt',
  md: 'md',
  markdown: 'md',
  mdown: 'md',
  mkd: 'md',
  html: 'html',
  htm: 'html',
  xhtml: 'html',
  json: 'json',
  jsonl: 'jsonl',
  ndjson: 'jsonl',
  pdf: 'pdf',
};

const GENERIC = new Set(['', 'application/octet-stream', 'binary/octet-stream', 'application/unknown']);

/** `type/subtype` lowercased and the charset parameter of a Content-Type header. */
export function parseContentType(header: string | undefined): { mediaType: string; charset?: string } {
  if (!header) return { mediaType: '' };
  const [type, ...params] = header.split(';');
  let charset: string | undefined;
  for (const p of params) {
    // split by hand: `\s*` around a value that may hold spaces backtracks over every split of a run
    const eq = p.indexOf('=');
    if (eq < 0 || p.slice(0, eq).trim().toLowerCase() !== 'charset') continue;
    let value = p.slice(eq + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    value = value.trim();
    if (value !== '' && !value.includes('"')) charset = value;
  }
  return { mediaType: type.trim().toLowerCase(), charset };
}

const extensionOf = (filename: string | undefined) => {
  const m = /\.([A-Za-z0-9]+)$/.exec(filename ?? '');
  return m ? m[1].toLowerCase() : '';
};

/** Which parser handles an upload; AppError('unsupported_media_type') when none does. */
export function detectFormat(input: ParseInput): DocumentFormat {
  const { mediaType } = parseContentType(input.contentType);
  const byExt = BY_EXTENSION[extensionOf(input.filename)];
  const byType =
    BY_MEDIA_TYPE[mediaType] ?? (/^application\/[\w.+-]+\+json$/.test(mediaType) ? 'json' : undefined);
  if (byType === 'txt' && byExt && byExt !== 'pdf') return byExt;
  if (byType) return byType;
  if (GENERIC.has(mediaType)) {
    if (byExt) return byExt;
    const d = input.data;
    if (typeof d !== 'string' && d.length >= 5 && String.fromCharCode(...d.subarray(0, 5)) === '%PDF-')
      return 'pdf';
  }
  const what =
    mediaType && !GENERIC.has(mediaType)
      ? `content type ${mediaType}`
      : `file ${JSON.stringify(input.filename ?? '')}`;
  throw new AppError(
    'unsupported_media_type',
    `cannot ingest ${what}: supported are text, Markdown, HTML, JSON, JSON Lines and PDF`,
    { supported: SUPPORTED_FORMATS },
  );
}

/**
 * Parses an upload. `limits` caps the text (JSON is counted while it is walked, a PDF while pdf.js
 * streams it; the other formats cannot grow past their input and are checked after), the PDF pages and
 * what a PDF's streams inflate to: over a cap is AppError('payload_too_large') naming it.
 */
export async function parseDocument(
  input: ParseInput,
  limits: Omit<IngestLimits, 'maxChunks'> = NO_LIMITS,
): Promise<ParsedDocument> {
  const format = detectFormat(input);
  if (input.data.length === 0) throw new AppError('bad_request', 'document is empty');
  if (format === 'pdf') {
    if (typeof input.data === 'string') throw new AppError('bad_request', 'a PDF must be sent as bytes');
    // loaded on first use: pdf.js is large and most documents are not PDFs
    const { parsePdf } = await import('./pdf.ts');
    const { text, pages } = await parsePdf(input.data, limits);
    return { format, text, pages };
  }
  const source = decodeText(input.data, parseContentType(input.contentType).charset);
  if (source.includes('\u0000'))
    throw new AppError('bad_request', 'document contains NUL bytes: binary content sent as text?');
  let doc: ParsedDocument;
  switch (format) {
    case 'txt':
      doc = { format, text: normalizeText(source) };
      break;
    case 'md': {
      const { text, title } = parseMarkdown(source);
      doc = { format, text, title };
      break;
    }
    case 'html': {
      const { text, title } = parseHtml(source);
      doc = { format, text, title };
      break;
    }
    case 'json':
      doc = { format, text: parseJson(source, new TextBudget(limits.maxChars)) };
      break;
    case 'jsonl':
      doc = { format, text: parseJsonLines(source, new TextBudget(limits.maxChars)) };
      break;
  }
  if (doc.text.length > limits.maxChars) throw tooMuchText(limits.maxChars);
  requireText(doc.text, `the ${format} document`);
  if (doc.title === undefined) delete doc.title;
  return doc;
}
