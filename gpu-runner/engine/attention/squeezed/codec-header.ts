// The squeezed-index section's front, shared by every format version (codec.ts writes v3, codec-v2.ts
// reads and writes v1/v2): little-endian u32 words
//   magic "KVSQ" | u32 version | u32 n | u32 window | u32 layers | u32 kvHeads | u32 headDim
export const INDEX_MAGIC = 0x5153564b; // "KVSQ" read as a little-endian u32
export const HEADER_WORDS = 7;

export class IndexError extends Error {
  constructor(message: string) {
    super(`squeezed index refused: ${message}`);
    this.name = 'IndexError';
  }
}

export interface IndexGeometry {
  n: number;
  layers: number;
  kvHeads: number;
  headDim: number;
}

export interface IndexFront extends IndexGeometry {
  version: number;
  window: number;
}

/** Writes the front into u[0..HEADER_WORDS). */
export function writeFront(u: Uint32Array, f: IndexFront): void {
  u.set([INDEX_MAGIC, f.version, f.n, f.window, f.layers, f.kvHeads, f.headDim]);
}

/** Reads and checks the front against the artifact's geometry (`expect`); the version is the caller's to check. */
export function readFront(bytes: Uint8Array, expect: IndexGeometry): IndexFront {
  if (bytes.byteLength % 4 !== 0 || bytes.byteLength < HEADER_WORDS * 4)
    throw new IndexError(`${bytes.byteLength} bytes is not an index`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const word = (i: number) => dv.getUint32(i * 4, true);
  if (word(0) !== INDEX_MAGIC) throw new IndexError('bad magic');
  const [version, n, window, layers, kvHeads, headDim] = [1, 2, 3, 4, 5, 6].map(word);
  if (n !== expect.n || layers !== expect.layers || kvHeads !== expect.kvHeads || headDim !== expect.headDim)
    throw new IndexError(`geometry ${n}/${layers}/${kvHeads}/${headDim} does not match the artifact`);
  if (window > n) throw new IndexError(`window ${window} > n ${n}`);
  return { version, n, window, layers, kvHeads, headDim };
}
