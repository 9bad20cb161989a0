// What one document may cost to ingest. An upload is at most KVRAG_MAX_UPLOAD_BYTES, but parsing can
// amplify it (JSON writes a key path on every value: 42 KB of nested JSON became 60 M characters; a
// flate-compressed PDF stream can inflate a thousandfold) and chunking multiplies it again into runner
// work. Each cap fails the document with a message naming the cap and its setting; nothing is stored.
import { type Config, ENV } from '../config.ts';
import { AppError } from '../../contracts/errors.ts';

export interface IngestLimits {
  /** Characters of extracted text. */
  maxChars: number;
  /** Chunks of one document (each becomes an embedding and a KV artifact). */
  maxChunks: number;
  /** Pages of a PDF. */
  maxPdfPages: number;
  /** Bytes a PDF's flate-compressed streams may inflate to, all streams together. */
  maxInflatedBytes: number;
}

/** No caps: for local tools (`kvrag chunk`) and tests that parse trusted input. */
export const NO_LIMITS: IngestLimits = {
  maxChars: Number.POSITIVE_INFINITY,
  maxChunks: Number.POSITIVE_INFINITY,
  maxPdfPages: Number.POSITIVE_INFINITY,
  maxInflatedBytes: Number.POSITIVE_INFINITY,
};

/** The caps configured for this deployment (text: 4 × the upload limit unless set). */
export function ingestLimits(c: Config): IngestLimits {
  return {
    maxChars: c.maxDocumentChars ?? 4 * c.maxUploadBytes,
    maxChunks: c.maxDocumentChunks,
    maxPdfPages: c.maxPdfPages,
    maxInflatedBytes: c.parseMemoryMb * 1024 * 1024,
  };
}

/** The error of a document over a cap: permanent (413), naming the cap's setting. */
export function overLimit(what: string, setting: keyof typeof ENV): AppError {
  return new AppError('payload_too_large', `${what} (${ENV[setting]})`);
}

/** Counts characters of extracted text as a parser produces them; throws once past the cap. */
export class TextBudget {
  private used = 0;
  readonly limit: number;

  constructor(limit: number) {
    this.limit = limit;
  }

  take(chars: number): void {
    this.used += chars;
    if (this.used > this.limit) throw tooMuchText(this.limit);
  }
}

export const tooMuchText = (limit: number) =>
  overLimit(`the document's extracted text is over the limit of ${limit} characters`, 'maxDocumentChars');
