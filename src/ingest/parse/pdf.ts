// PDF → text with unpdf (pdf.js built for serverless runtimes: no canvas, no worker thread, runs on
// Workers and Node). One entry per page; pages are joined by a blank line and their offsets kept so a
// chunk can cite its page. Scanned PDFs (images only) have no text and are rejected, not OCR'd.
//
// Bounded before and during extraction (src/ingest/limits.ts): the page count is checked before any page
// is read; the text is counted as pdf.js streams it, page by page, and extraction stops at the cap; and
// before pdf.js sees the file, its flate streams are inflated once just to count their bytes — pdf.js
// keeps a stream's whole inflated content in memory (outside the JS heap, so no heap limit stops it), and
// a few hundred KB of deflate can inflate to gigabytes.
import { getDocumentProxy } from 'unpdf';
import { AppError } from '../../../contracts/errors.ts';
import { type IngestLimits, NO_LIMITS, overLimit, TextBudget } from '../limits.ts';
import { normalizeText } from './text.ts';

export interface PdfPage {
  /** 1-based page number. */
  page: number;
  /** Offsets of the page's text in the document text: [startChar, endChar). */
  startChar: number;
  endChar: number;
}

export interface PdfResult {
  text: string;
  pages: PdfPage[];
  totalPages: number;
}

type PdfLimits = Pick<IngestLimits, 'maxChars' | 'maxPdfPages' | 'maxInflatedBytes'>;

/** A pdf.js page, as far as text extraction needs it. */
interface TextPage {
  streamTextContent(): ReadableStream<{ items: { str?: string; hasEOL?: boolean }[] }>;
  cleanup(): void;
}

export async function parsePdf(data: Uint8Array, limits: PdfLimits = NO_LIMITS): Promise<PdfResult> {
  if (data.length < 8 || new TextDecoder().decode(data.subarray(0, 5)) !== '%PDF-') {
    throw new AppError('bad_request', 'not a PDF (missing %PDF- header)');
  }
  await checkInflatedSize(data, limits.maxInflatedBytes);
  const budget = new TextBudget(limits.maxChars);
  const pages: string[] = [];
  let totalPages: number;
  try {
    // pdf.js takes ownership of (and may detach) the buffer it is given: hand it a copy
    const doc = await getDocumentProxy(new Uint8Array(data));
    try {
      totalPages = doc.numPages;
      if (totalPages > limits.maxPdfPages) {
        throw overLimit(
          `the PDF has ${totalPages} pages, over the limit of ${limits.maxPdfPages}`,
          'maxPdfPages',
        );
      }
      for (let p = 1; p <= totalPages; p++) {
        const page = (await doc.getPage(p)) as unknown as TextPage;
        pages.push(await pageText(page, budget));
        page.cleanup();
      }
    } finally {
      // releases pdf.js's in-process "worker" and its copy of the document
      await doc.loadingTask.destroy();
    }
  } catch (err) {
    if (err instanceof AppError) throw err;
    const e = err as Error;
    if (e?.name === 'PasswordException')
      throw new AppError('bad_request', 'PDF is encrypted with a password');
    throw new AppError('bad_request', `unreadable PDF: ${e?.message ?? String(err)}`);
  }
  const parts: string[] = [];
  const offsets: PdfPage[] = [];
  let at = 0;
  pages.forEach((raw, i) => {
    const t = normalizeText(raw);
    if (!t) return;
    if (parts.length > 0) at += 2; // the '\n\n' joining pages
    offsets.push({ page: i + 1, startChar: at, endChar: at + t.length });
    parts.push(t);
    at += t.length;
  });
  const text = parts.join('\n\n');
  if (!text)
    throw new AppError('bad_request', `PDF has no extractable text (${totalPages} pages; scanned images?)`);
  return { text, pages: offsets, totalPages };
}

/**
 * A page's text items joined (a line break after items that end a line), counted as they stream. Past
 * the budget it stops reading; the stream is left to the document's destroy() (cancelling it here makes
 * pdf.js enqueue into a closed stream and throw outside any caller).
 */
async function pageText(page: TextPage, budget: TextBudget): Promise<string> {
  const reader = page.streamTextContent().getReader();
  const out: string[] = [];
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return out.join('');
    for (const item of value.items) {
      if (item.str == null) continue;
      const s = item.hasEOL ? `${item.str}\n` : item.str;
      budget.take(s.length);
      out.push(s);
    }
  }
}

/**
 * Inflates every zlib stream of the file (the bytes between `stream` and `endstream` that start with a
 * zlib header) only to count the output, and refuses the file once the total passes `cap`.
 */
async function checkInflatedSize(data: Uint8Array, cap: number): Promise<void> {
  if (!Number.isFinite(cap)) return;
  // one byte per character, so string offsets are byte offsets
  const text = new TextDecoder('latin1').decode(data);
  let total = 0;
  let at = 0;
  for (;;) {
    const kw = text.indexOf('stream', at);
    if (kw < 0) return;
    at = kw + 6;
    if (kw >= 3 && text.startsWith('end', kw - 3)) continue;
    const start = text[at] === '\r' && text[at + 1] === '\n' ? at + 2 : text[at] === '\n' ? at + 1 : -1;
    if (start < 0) continue;
    const end = text.indexOf('endstream', start);
    const body = data.subarray(start, end < 0 ? data.length : end);
    total += await inflatedBytes(body, cap - total);
    if (total > cap) {
      throw overLimit(
        `the PDF's compressed streams inflate to more than ${cap} bytes (a decompression bomb?)`,
        'parseMemoryMb',
      );
    }
    at = end < 0 ? data.length : end + 9;
  }
}

/** Bytes a zlib stream inflates to, counting stops just past `cap`; 0 for data without a zlib header. */
async function inflatedBytes(body: Uint8Array, cap: number): Promise<number> {
  // RFC 1950 header: compression method 8 (deflate), header checksum a multiple of 31
  if (body.length < 2 || (body[0] & 0x0f) !== 8 || ((body[0] << 8) | body[1]) % 31 !== 0) return 0;
  const inflate = new DecompressionStream('deflate');
  const writer = inflate.writable.getWriter();
  writer.write(new Uint8Array(body)).catch(() => {});
  writer.close().catch(() => {});
  const reader = inflate.readable.getReader();
  let n = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      n += value.byteLength;
      if (n > cap) break;
    }
  } catch {
    // corrupt data, or bytes after the end of the zlib stream: what inflated so far counts
  }
  await reader.cancel().catch(() => {});
  return n;
}
