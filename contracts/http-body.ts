// Reading a request body under a size limit while it streams in, for every HTTP server of kvrag (the API's
// body-limit middleware and the runner's routes). A declared Content-Length over the limit is refused
// before a byte is read; without one (chunked) or with a lying one, bytes are counted as they arrive and
// nothing past the first byte over the limit is kept, so a refused body never grows the heap past the
// limit. Web-standard only (runs on Node and Workers); imports nothing of the project.
//
// A refused body is read to its end and dropped (within DRAIN_BYTES and DRAIN_MS) before the caller
// answers 413, as nginx's lingering close does: clients that write their whole body before reading the
// response (fetch/undici, most SDKs) would otherwise have the socket reset under them and report a network
// error instead of the 413. Past those caps the 413 goes out with the rest unread and the connection closes.

/** At most this many bytes of a refused body are read and dropped before the connection is cut. */
export const DRAIN_BYTES = 8 * 1024 * 1024;
/** …and for at most this long. */
export const DRAIN_MS = 5000;

export type LimitedBody = { ok: true; bytes: Uint8Array<ArrayBuffer> } | { ok: false; limit: number };

type Reader = ReadableStreamDefaultReader<Uint8Array>;

/** Reads the rest of a refused body and drops it; gives up past DRAIN_BYTES or DRAIN_MS. */
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
    reader.releaseLock();
  }
}

/** The body of `req` as one buffer, or `{ok: false}` once it is known to be over `maxBytes`. */
export async function readBodyLimited(req: Request, maxBytes: number): Promise<LimitedBody> {
  if (!req.body) return { ok: true, bytes: new Uint8Array(0) };
  const declared = req.headers.get('content-length');
  if (declared !== null && Number(declared) > maxBytes) {
    // a declared length past the drain cap is not read at all
    if (Number(declared) <= DRAIN_BYTES) await drain(req.body.getReader());
    return { ok: false, limit: maxBytes };
  }
  const reader = req.body.getReader();
  const parts: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      parts.length = 0;
      await drain(reader);
      return { ok: false, limit: maxBytes };
    }
    parts.push(value);
  }
  const bytes = new Uint8Array(size);
  let off = 0;
  for (const p of parts) {
    bytes.set(p, off);
    off += p.byteLength;
  }
  return { ok: true, bytes };
}
