// An upload request → bytes + filename + content type + attributes, from either form:
//   application/json     {text, filename?, content_type?, attributes?}  (text formats only)
//   multipart/form-data  file=<the file>, attributes=<JSON object>?, filename=<override>?
// Checked before anything is written: size (config.maxUploadBytes), emptiness, a format the ingest
// parsers support (detectFormat: 415 otherwise), and for PDFs the %PDF- signature.
import type { Context } from 'hono';
import { z } from 'zod';
import { AppError, parseWith } from '../../contracts/errors.ts';
import { type DocumentFormat, detectFormat, parseContentType } from '../ingest/parse/index.ts';
import type { AppEnv } from '../services.ts';
import { attributesSchema } from './validate.ts';

export interface Upload {
  bytes: Uint8Array;
  filename: string;
  /** What the parsers will be told (charset included). */
  contentType: string;
  format: DocumentFormat;
  attributes: Record<string, string | number | boolean>;
  /** The other text fields of a multipart form (OpenAI's `purpose`), as sent. */
  fields: Record<string, string>;
}

export const jsonUploadSchema = z.strictObject({
  text: z.string().min(1),
  filename: z.string().min(1).max(255).default('document.txt'),
  content_type: z
    .string()
    .max(200)
    .optional()
    .describe('Default: text/plain (the filename extension refines it).'),
  attributes: attributesSchema.default({}),
});

/** Keeps the last path segment, drops control characters, at most 255 characters. */
export function cleanFilename(name: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping control characters is the point
  const base = (name.split(/[\\/]/).pop() ?? '').replace(/[\u0000-\u001f\u007f]/g, '').trim();
  return (base || 'document').slice(0, 255);
}

/** What the documents row and the ingest job hold of a content type (IngestJobV1 contentType). */
const MAX_CONTENT_TYPE = 255;

function check(bytes: Uint8Array, filename: string, contentType: string, max: number) {
  if (contentType.length > MAX_CONTENT_TYPE)
    throw new AppError(
      'bad_request',
      `the file's Content-Type is longer than ${MAX_CONTENT_TYPE} characters`,
    );
  if (bytes.byteLength > max) {
    throw new AppError('payload_too_large', `document is larger than the limit of ${max} bytes`, {
      limit_bytes: max,
    });
  }
  if (bytes.byteLength === 0) throw new AppError('bad_request', 'document is empty');
  const format = detectFormat({ data: bytes, contentType, filename });
  if (format === 'pdf' && new TextDecoder('latin1').decode(bytes.subarray(0, 5)) !== '%PDF-') {
    throw new AppError('bad_request', 'file is not a PDF (no %PDF- signature)');
  }
  if (format !== 'pdf' && bytes.includes(0)) {
    throw new AppError('bad_request', 'document contains NUL bytes: binary content sent as text?');
  }
  return format;
}

export async function readUpload(c: Context<AppEnv>, maxBytes: number): Promise<Upload> {
  const { mediaType } = parseContentType(c.req.header('content-type'));
  if (mediaType === 'multipart/form-data') return readMultipart(c, maxBytes);
  if (mediaType === 'application/json') return readJson(c, maxBytes);
  throw new AppError(
    'unsupported_media_type',
    'upload a document as multipart/form-data (field "file") or as application/json ({"text": …})',
  );
}

async function readJson(c: Context<AppEnv>, maxBytes: number): Promise<Upload> {
  let raw: unknown;
  try {
    raw = JSON.parse(await c.req.text());
  } catch {
    throw new AppError('bad_request', 'request body is not valid JSON');
  }
  const body = parseWith(jsonUploadSchema, raw, 'request body');
  const filename = cleanFilename(body.filename);
  const { mediaType } = parseContentType(body.content_type ?? 'text/plain');
  // the text arrived as JSON, so it is UTF-8 whatever charset the caller named
  const contentType = `${mediaType}; charset=utf-8`;
  const bytes = new TextEncoder().encode(body.text);
  const format = check(bytes, filename, contentType, maxBytes);
  if (format === 'pdf')
    throw new AppError('bad_request', 'send PDFs as multipart/form-data, not as JSON text');
  return { bytes, filename, contentType, format, attributes: body.attributes, fields: {} };
}

async function readMultipart(c: Context<AppEnv>, maxBytes: number): Promise<Upload> {
  let form: FormData;
  try {
    form = await c.req.formData();
  } catch {
    throw new AppError('bad_request', 'malformed multipart/form-data body');
  }
  const file = form.get('file');
  if (!(file instanceof File))
    throw new AppError('bad_request', 'multipart upload needs a "file" field holding the file');
  const attrField = form.get('attributes');
  let attributes: Upload['attributes'] = {};
  if (attrField !== null) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(typeof attrField === 'string' ? attrField : await attrField.text());
    } catch {
      throw new AppError('bad_request', 'the "attributes" field must be a JSON object');
    }
    attributes = parseWith(attributesSchema, parsed, 'attributes');
  }
  const override = form.get('filename');
  const filename = cleanFilename(typeof override === 'string' && override ? override : file.name);
  const contentType = file.type || 'application/octet-stream';
  const bytes = new Uint8Array(await file.arrayBuffer());
  const format = check(bytes, filename, contentType, maxBytes);
  const fields: Record<string, string> = {};
  for (const [name, value] of form.entries()) if (typeof value === 'string') fields[name] = value;
  return { bytes, filename, contentType, format, attributes, fields };
}
