// Request body size limits, enforced while the body streams in: a declared Content-Length over the limit
// is refused before it is stored, and the bytes are counted as they arrive (a missing or lying length
// cannot get past); nothing past the first byte over the limit is kept. The body is then handed on as one
// buffer, which every handler here needs anyway (JSON, multipart).
//
// A refused body is read to its end and dropped (within DRAIN_BYTES and DRAIN_MS) before the 413 goes out,
// as nginx's lingering close does: clients that write their whole body before reading the response
// (fetch/undici, most SDKs) would otherwise have the socket reset under them and report a network error
// instead of the 413. Past those caps the 413 goes out with the rest unread and the connection closes.
import type { MiddlewareHandler } from 'hono';
import { AppError } from '../../contracts/errors.ts';
import type { AppEnv } from '../services.ts';

/** At most this many bytes of a refused body are read and dropped before the connection is cut. */
export const DRAIN_BYTES = 8 * 1024 * 1024;
/** …and for at most this long. */
export const DRAIN_MS = 5000;

const tooLarge = (max: number) =>
  new AppError('payload_too_large', `request body is larger than the limit of ${max} bytes`, {
    limit_bytes: max,
  });

type Reader = ReadableStreamDefaultReader<Uint8Array>;

/** Reads the rest of a refused body and drops it; gives up once more than DRAIN_BYTES or DRAIN_MS have
 *  gone by without reaching its end (the 413 then goes out with the body unread, and the connection is
 *  closed after it). */
async function drain(reader: Reader): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<'timeout'>((r) => {
    timer = setTimeout(() => r('timeout'), DRAIN_MS);
  });
  try {
    for (let left = DRAIN_BYTES; left >= 0; ) {
      const got = await Promise.race([reader.read(), timeout]).catch(() => 'error' as const);
      if (got === 'timeout' || got === 'error' || got.done) return;
      left -= got.value.byteLength;
    }
  } finally {
    clearTimeout(timer);
  }
}

/** `maxBytes(c)` decides the limit per request (uploads get a larger one than JSON bodies). */
export function limitBody(maxBytes: (path: string, method: string) => number): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const raw = c.req.raw;
    if (!raw.body) return next();
    const max = maxBytes(c.req.path, c.req.method);
    const declared = raw.headers.get('content-length');
    if (declared !== null && Number(declared) > max) {
      // a declared length past the drain cap is not read at all
      if (Number(declared) <= DRAIN_BYTES) await drain(raw.body.getReader());
      throw tooLarge(max);
    }
    const reader = raw.body.getReader();
    const parts: Uint8Array[] = [];
    let size = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > max) {
        await drain(reader);
        throw tooLarge(max);
      }
      parts.push(value);
    }
    const body = new Uint8Array(size);
    let off = 0;
    for (const p of parts) {
      body.set(p, off);
      off += p.byteLength;
    }
    c.req.raw = new Request(raw, { body });
    return next();
  };
}
