// Object key and byte-range rules shared by every BlobStore implementation, so a key that works on the
// filesystem store works on S3 and the other way round, and no key can escape the filesystem root.
import { AppError } from '../../contracts/errors.ts';
import type { ByteRange } from '../../contracts/blob-store.ts';

/** S3's limit on a key, in UTF-8 bytes. */
export const MAX_KEY_BYTES = 1024;

/** Segments starting with this are reserved for the stores' own files (the fs store's temp files). */
export const RESERVED_SEGMENT_PREFIX = '.kvrag-';

const encoder = new TextEncoder();

function reject(what: string, value: string, why: string): never {
  throw new AppError('bad_request', `invalid blob ${what} ${JSON.stringify(value)}: ${why}`);
}

/**
 * A key is `/`-separated segments: no empty segments (so no leading or trailing `/`, no `//`), no `.` or
 * `..` segments, no backslashes, no NUL or other control characters, at most 1024 UTF-8 bytes.
 * Throws AppError('bad_request') otherwise.
 */
export function validateKey(key: string): string {
  if (typeof key !== 'string' || key.length === 0) reject('key', String(key), 'empty');
  checkChars('key', key);
  for (const seg of key.split('/')) {
    if (seg === '') reject('key', key, 'empty path segment (leading, trailing or double "/")');
    checkSegment('key', key, seg);
  }
  return key;
}

/**
 * A list prefix is a key's beginning: empty (everything) or segments as in a key, where the last may be
 * partial or empty (`kv/ab` and `kv/` are both fine).
 */
export function validatePrefix(prefix: string): string {
  if (typeof prefix !== 'string') reject('prefix', String(prefix), 'not a string');
  if (prefix === '') return prefix;
  checkChars('prefix', prefix);
  const segs = prefix.split('/');
  segs.forEach((seg, i) => {
    const last = i === segs.length - 1;
    if (seg === '' && !last) reject('prefix', prefix, 'empty path segment (leading or double "/")');
    // A partial last segment "." or ".." could still grow into a valid key (".x"), but never legitimately
    // names a directory to walk into; refuse it too.
    if (seg !== '') checkSegment('prefix', prefix, seg);
  });
  return prefix;
}

function checkChars(what: string, value: string): void {
  if (encoder.encode(value).length > MAX_KEY_BYTES) reject(what, value, `longer than ${MAX_KEY_BYTES} bytes`);
  if (value.includes('\\')) reject(what, value, 'backslash');
  // biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
  if (/[\u0000-\u001f\u007f]/.test(value)) reject(what, value, 'NUL or control character');
}

function checkSegment(what: string, value: string, seg: string): void {
  if (seg === '.' || seg === '..') reject(what, value, `"${seg}" path segment`);
  if (seg.startsWith(RESERVED_SEGMENT_PREFIX))
    reject(what, value, `segments starting "${RESERVED_SEGMENT_PREFIX}" are reserved`);
}

/** A validated range resolved against an object size: [start, endExclusive), clipped to the object. */
export interface ResolvedRange {
  start: number;
  endExclusive: number;
}

/** Checks a range's shape (non-negative integers, end ≥ start); throws AppError('bad_request'). */
export function validateRange(range: ByteRange): ByteRange {
  const { start, end } = range;
  if (!Number.isSafeInteger(start) || start < 0) {
    throw new AppError('bad_request', `invalid byte range: start ${start} must be a non-negative integer`);
  }
  if (end !== undefined && (!Number.isSafeInteger(end) || end < start)) {
    throw new AppError('bad_request', `invalid byte range: end ${end} must be an integer ≥ start ${start}`);
  }
  return range;
}

/**
 * Resolves a range against the object's size. A range that starts at or past the end reads nothing
 * (an empty result, on every store); an end past the last byte is clipped.
 */
export function resolveRange(range: ByteRange | undefined, size: number): ResolvedRange {
  if (!range) return { start: 0, endExclusive: size };
  validateRange(range);
  const start = Math.min(range.start, size);
  const endExclusive = range.end === undefined ? size : Math.min(range.end + 1, size);
  return { start, endExclusive: Math.max(start, endExclusive) };
}
