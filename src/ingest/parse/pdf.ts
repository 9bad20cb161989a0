// PDF → text with unpdf (pdf.js built for serverless runtimes: no canvas, no worker thread, runs on
// Workers and Node). One entry per page; pages are joined by a blank line and their offsets kept so a
// chunk can cite its page. Scanned PDFs (images only) have no text and are rejected, not OCR'd.
import { extractText, getDocumentProxy } from 'unpdf';
import { AppError } from '../../../contracts/errors.ts';
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

export async function parsePdf(data: Uint8Array): Promise<PdfResult> {
  if (data.length < 8 || new TextDecoder().decode(data.subarray(0, 5)) !== '%PDF-') {
    throw new AppError('bad_request', 'not a PDF (missing %PDF- header)');
  }
  let pages: string[];
  let totalPages: number;
  try {
    // pdf.js takes ownership of (and may detach) the buffer it is given: hand it a copy
    const doc = await getDocumentProxy(new Uint8Array(data));
    try {
      ({ text: pages, totalPages } = await extractText(doc, { mergePages: false }));
    } finally {
      // releases pdf.js's in-process "worker" and its copy of the document
      await doc.loadingTask.destroy();
    }
  } catch (err) {
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
