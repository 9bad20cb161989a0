// GGUF writer (format.ts): metadata and tensor infos are built in memory, then the tensors are streamed
// to the file one at a time (each produced on demand), each at an offset that is a multiple of the
// alignment, so a model larger than memory's comfort can be written.
import { closeSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import {
  GGML_TYPE_ID,
  GGML_TYPES,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  type GgmlLoadType,
  GgufValueType,
} from './format.ts';
import type { GgufKV, GgufScalar } from './reader.ts';

export interface GgufWriteTensor {
  name: string;
  type: GgmlLoadType;
  /** ggml order: dims[0] is the row length */
  dims: number[];
  /** the tensor's bytes in `type`'s layout, produced when it is written */
  data: () => Uint8Array;
}

/** Typed metadata values for the writer. */
export const kv = {
  str: (value: string): GgufKV => ({ type: GgufValueType.STRING, value }),
  u32: (value: number): GgufKV => ({ type: GgufValueType.UINT32, value }),
  i32: (value: number): GgufKV => ({ type: GgufValueType.INT32, value }),
  f32: (value: number): GgufKV => ({ type: GgufValueType.FLOAT32, value }),
  bool: (value: boolean): GgufKV => ({ type: GgufValueType.BOOL, value }),
  strs: (value: string[]): GgufKV => ({ type: 9, itemType: GgufValueType.STRING, value }),
  i32s: (value: number[]): GgufKV => ({ type: 9, itemType: GgufValueType.INT32, value }),
  f32s: (value: number[]): GgufKV => ({ type: 9, itemType: GgufValueType.FLOAT32, value }),
};

class Bytes {
  #parts: Buffer[] = [];
  length = 0;
  push(b: Buffer): void {
    this.#parts.push(b);
    this.length += b.length;
  }
  u32(v: number) {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.push(b);
  }
  u64(v: number) {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  string(s: string) {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.push(b);
  }
  scalar(type: number, v: GgufScalar) {
    const b = Buffer.alloc(8);
    switch (type) {
      case GgufValueType.STRING:
        return this.string(String(v));
      case GgufValueType.UINT8:
        return this.push(Buffer.from([Number(v)]));
      case GgufValueType.BOOL:
        return this.push(Buffer.from([v ? 1 : 0]));
      case GgufValueType.INT32:
        b.writeInt32LE(Number(v));
        return this.push(b.subarray(0, 4));
      case GgufValueType.UINT32:
        return this.u32(Number(v));
      case GgufValueType.FLOAT32:
        b.writeFloatLE(Number(v));
        return this.push(b.subarray(0, 4));
      case GgufValueType.UINT64:
        return this.u64(Number(v));
      case GgufValueType.FLOAT64:
        b.writeDoubleLE(Number(v));
        return this.push(b);
      default:
        throw new Error(`GGUF writer: value type ${type} is not supported`);
    }
  }
  concat(): Buffer {
    return Buffer.concat(this.#parts);
  }
}

function tensorBytes(t: GgufWriteTensor): number {
  const { blockSize, blockBytes } = GGML_TYPES[GGML_TYPE_ID[t.type]];
  const n = t.dims.reduce((a, b) => a * b, 1);
  if (t.dims[0] % blockSize! !== 0)
    throw new Error(
      `tensor "${t.name}": row length ${t.dims[0]} is not a multiple of the ${t.type} block (${blockSize})`,
    );
  return (n / blockSize!) * blockBytes!;
}

const pad = (n: number, a: number) => Math.ceil(n / a) * a;

/** Writes a GGUF v3 file atomically (a temporary file renamed into place). */
export function writeGguf(
  path: string,
  metadata: ReadonlyMap<string, GgufKV>,
  tensors: readonly GgufWriteTensor[],
  alignment = GGUF_DEFAULT_ALIGNMENT,
): void {
  const head = new Bytes();
  head.u32(GGUF_MAGIC);
  head.u32(3);
  head.u64(tensors.length);
  const meta = new Map(metadata);
  if (alignment !== GGUF_DEFAULT_ALIGNMENT) meta.set('general.alignment', kv.u32(alignment));
  head.u64(meta.size);
  for (const [key, v] of meta) {
    head.string(key);
    head.u32(v.type);
    if (v.type === 9) {
      head.u32(v.itemType);
      head.u64(v.value.length);
      for (const x of v.value) head.scalar(v.itemType, x);
    } else head.scalar(v.type, v.value);
  }
  let offset = 0;
  const sizes = tensors.map(tensorBytes);
  tensors.forEach((t, i) => {
    head.string(t.name);
    head.u32(t.dims.length);
    for (const d of t.dims) head.u64(d);
    head.u32(GGML_TYPE_ID[t.type]);
    head.u64(offset);
    offset = pad(offset + sizes[i], alignment);
  });
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  let open = true;
  try {
    const header = head.concat();
    let at = 0;
    const write = (b: Uint8Array) => {
      let done = 0;
      while (done < b.length) done += writeSync(fd, b, done, b.length - done, at + done);
      at += b.length;
    };
    write(header);
    write(new Uint8Array(pad(at, alignment) - at));
    tensors.forEach((t, i) => {
      const data = t.data();
      if (data.length !== sizes[i])
        throw new Error(`tensor "${t.name}": ${data.length} bytes, ${t.type} [${t.dims}] needs ${sizes[i]}`);
      write(data);
      write(new Uint8Array(pad(at, alignment) - at));
    });
    closeSync(fd);
    open = false;
    renameSync(tmp, path);
  } catch (err) {
    if (open) closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
}
