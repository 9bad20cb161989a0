// Request body size limits, enforced while the body streams in (contracts/http-body.ts: a declared
// Content-Length over the limit is refused before it is stored, a missing or lying length cannot get past,
// and a refused body is drained within a cap before the 413 goes out). The body is then handed on as one
// buffer, which every handler here needs anyway (JSON, multipart).
import type { MiddlewareHandler } from 'hono';
import { readBodyLimited } from '../../contracts/http-body.ts';
import { AppError } from '../../contracts/errors.ts';
import type { AppEnv } from '../services.ts';

export { DRAIN_BYTES, DRAIN_MS } from '../../contracts/http-body.ts';

export const tooLarge = (max: number) =>
  new AppError('payload_too_large', `request body is larger than the limit of ${max} bytes`, {
    limit_bytes: max,
  });

/** `maxBytes(c)` decides the limit per request (uploads get a larger one than JSON bodies). */
export function limitBody(maxBytes: (path: string, method: string) => number): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const raw = c.req.raw;
    if (!raw.body) return next();
    const got = await readBodyLimited(raw, maxBytes(c.req.path, c.req.method));
    if (!got.ok) throw tooLarge(got.limit);
    c.req.raw = new Request(raw, { body: got.bytes });
    return next();
  };
}
