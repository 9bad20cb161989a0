// Bytes → text for every text format, and the whitespace normalisation all parsers end with.
import { AppError } from '../../../contracts/errors.ts';

/**
 * Decodes bytes strictly (invalid sequences are an error, not U+FFFD) with the charset from the content
 * type, else UTF-8; a UTF-8 or UTF-16 byte order mark wins and is dropped.
 */
export function decodeText(data: Uint8Array | string, charset?: string): string {
  if (typeof data === 'string') return data;
  let label = charset?.trim().toLowerCase() || 'utf-8';
  if (data[0] === 0xff && data[1] === 0xfe) label = 'utf-16le';
  else if (data[0] === 0xfe && data[1] === 0xff) label = 'utf-16be';
  else if (data[0] === 0xef && data[1] === 0xbb && data[2] === 0xbf) label = 'utf-8';
  let decoder: TextDecoder;
  try {
    decoder = new TextDecoder(label, { fatal: true });
  } catch {
    throw new AppError('bad_request', `unsupported charset "${charset}"`);
  }
  try {
    return decoder.decode(data);
  } catch {
    throw new AppError('bad_request', `document is not valid ${decoder.encoding} text`);
  }
}

/**
 * Newlines to \n, no NUL (a binary file sent as text), form feeds as paragraph breaks, no trailing
 * spaces, at most one blank line in a row, trimmed. Idempotent.
 */
export function normalizeText(text: string): string {
  if (text.includes('\u0000'))
    throw new AppError('bad_request', 'document contains NUL bytes: binary content sent as text?');
  return text
    .replace(/\r\n?|\u2028|\u2029/g, '\n')
    .replace(/\f/g, '\n\n')
    .replace(/\p{Cc}/gu, (c) => (c === '\n' || c === '\t' ? c : ''))
    .replace(/[ \t\u00a0]+$/gm, '')
    .replace(/\n{3,}/g, '\n\n')
    .trim();
}

/** The parse result must hold some text; otherwise the document is rejected. */
export function requireText(text: string, what: string): string {
  if (text.trim() === '') throw new AppError('bad_request', `${what} holds no text`);
  return text;
}
