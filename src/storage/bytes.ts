// Byte plumbing shared by the blob stores: iterate a body (bytes or a web stream) as chunks, and
// gather a stream into one buffer.

/** Yields the body's bytes as chunks; a Uint8Array body is one chunk. */
export async function* bodyChunks(body: Uint8Array | ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array> {
  if (body instanceof Uint8Array) {
    yield body;
    return;
  }
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      if (value && value.byteLength > 0) yield value;
    }
  } finally {
    reader.releaseLock();
  }
}

/** Concatenates chunks into one buffer. */
export function concatBytes(chunks: Uint8Array[], total?: number): Uint8Array {
  const size = total ?? chunks.reduce((n, c) => n + c.byteLength, 0);
  if (chunks.length === 1 && chunks[0].byteLength === size) return chunks[0];
  const out = new Uint8Array(size);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.byteLength;
  }
  return out;
}

/** Reads a whole web stream into one buffer. */
export async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const c of bodyChunks(stream)) chunks.push(c);
  return concatBytes(chunks);
}

/** Fixed-size parts from a chunked body: every part but the last is exactly partSize bytes. */
export async function* fixedParts(
  chunks: AsyncIterable<Uint8Array>,
  partSize: number,
): AsyncGenerator<Uint8Array> {
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  for await (let chunk of chunks) {
    while (pendingBytes + chunk.byteLength >= partSize) {
      const take = partSize - pendingBytes;
      pending.push(chunk.slice(0, take));
      yield concatBytes(pending, partSize);
      chunk = chunk.subarray(take);
      pending = [];
      pendingBytes = 0;
    }
    if (chunk.byteLength > 0) {
      // Copy: the producer may reuse its buffer once we ask for the next chunk.
      pending.push(chunk.slice());
      pendingBytes += chunk.byteLength;
    }
  }
  if (pendingBytes > 0) yield concatBytes(pending, pendingBytes);
}
