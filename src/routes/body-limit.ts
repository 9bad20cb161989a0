// Request body size limits, enforced while the body streams in: a declared Content-Length over the limit
// is refused before reading, and the bytes are counted as they arrive (a missing or lying length cannot
// get past), reading stops at the first byte over. The body is then handed on as one buffer, which every
// handler here needs anyway (JSON, multipart).
import type { MiddlewareHandler } from 'hono';
import { AppError } from '../errors.ts';
import type { AppEnv } from '../services.ts';

const tooLarge = (max: number) =>
  new AppError('payload_too_large', `request body is larger than the limit of ${max} bytes`, {
    limit_bytes: max,
  });

/** `maxBytes(c)` decides the limit per request (uploads get a larger one than JSON bodies). */
export function limitBody(maxBytes: (path: string, method: string) => number): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const raw = c.req.raw;
    if (!raw.body) return next();
    const max = maxBytes(c.req.path, c.req.method);
    const declared = raw.headers.get('content-length');
    if (declared !== null && Number(declared) > max) throw tooLarge(max);
    const reader = raw.body.getReader();
    const parts: Uint8Array[] = [];
    let size = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > max) {
        await reader.cancel().catch(() => {});
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
