// GGUF reader (format.ts). Like the safetensors parser, every length, count and offset is checked
// against the file before it is used, so a truncated or corrupt file fails with a message naming the
// file and the problem instead of reading garbage or allocating without bound. Tensor bytes are read
// on demand (copied, aligned).
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { ModelLoadError } from '../errors.ts';
import {
  GGML_TYPES,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GgufValueType,
  ggmlTypeName,
  SCALAR_BYTES,
} from './format.ts';

export type GgufScalar = number | boolean | string;

/** One metadata value: a scalar, or an array of scalars (nested arrays are refused). */
export type GgufKV =
  | { type: Exclude<GgufValueType, 9>; value: GgufScalar }
  | { type: 9; itemType: Exclude<GgufValueType, 9>; value: GgufScalar[] };

export interface GgufTensorInfo {
  name: string;
  /** ggml order: dims[0] is the fastest-varying (row length) */
  dims: number[];
  typeId: number;
  typeName: string;
  /** absolute byte range in the file; null for a type whose block size kvrag does not know */
  start: number;
  nbytes: number | null;
}

export interface GgufFile {
  path: string;
  size: number;
  version: number;
  alignment: number;
  dataStart: number;
  metadata: Map<string, GgufKV>;
  tensors: Map<string, GgufTensorInfo>;
}

const MAX_COUNT = 1 << 24; // metadata pairs or tensors: far above any real model
const CHUNK = 1 << 20;

/** Buffered sequential reader over a file; every read is checked against the file's size. */
class Cursor {
  #buf = Buffer.alloc(0);
  #bufStart = 0;
  pos = 0;
  readonly fd: number;
  readonly path: string;
  readonly size: number;
  constructor(fd: number, path: string, size: number) {
    this.fd = fd;
    this.path = path;
    this.size = size;
  }

  need(n: number, what: string): void {
    if (this.pos + n > this.size)
      throw new ModelLoadError(
        this.path,
        `truncated: ${what} needs ${n} bytes at offset ${this.pos}, the file has ${this.size}`,
      );
    if (this.pos + n <= this.#bufStart + this.#buf.length) return;
    const len = Math.min(Math.max(n, CHUNK), this.size - this.pos);
    const buf = Buffer.alloc(len);
    let done = 0;
    while (done < len) {
      const r = readSync(this.fd, buf, done, len - done, this.pos + done);
      if (r === 0) throw new ModelLoadError(this.path, `truncated while reading ${what}`);
      done += r;
    }
    this.#buf = buf;
    this.#bufStart = this.pos;
  }

  #at(n: number, what: string): number {
    this.need(n, what);
    const o = this.pos - this.#bufStart;
    this.pos += n;
    return o;
  }
  u8(what: string) {
    const o = this.#at(1, what);
    return this.#buf.readUInt8(o);
  }
  i8(what: string) {
    const o = this.#at(1, what);
    return this.#buf.readInt8(o);
  }
  u16(what: string) {
    const o = this.#at(2, what);
    return this.#buf.readUInt16LE(o);
  }
  i16(what: string) {
    const o = this.#at(2, what);
    return this.#buf.readInt16LE(o);
  }
  u32(what: string) {
    const o = this.#at(4, what);
    return this.#buf.readUInt32LE(o);
  }
  i32(what: string) {
    const o = this.#at(4, what);
    return this.#buf.readInt32LE(o);
  }
  f32(what: string) {
    const o = this.#at(4, what);
    return this.#buf.readFloatLE(o);
  }
  f64(what: string) {
    const o = this.#at(8, what);
    return this.#buf.readDoubleLE(o);
  }
  u64(what: string): number {
    const o = this.#at(8, what);
    const v = this.#buf.readBigUInt64LE(o);
    if (v > BigInt(Number.MAX_SAFE_INTEGER))
      throw new ModelLoadError(this.path, `${what}: value ${v} is implausibly large (corrupt file?)`);
    return Number(v);
  }
  i64(what: string): number {
    const o = this.#at(8, what);
    const v = this.#buf.readBigInt64LE(o);
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER))
      throw new ModelLoadError(this.path, `${what}: value ${v} does not fit a double exactly`);
    return Number(v);
  }
  string(what: string): string {
    const n = this.u64(`${what} (length)`);
    const o = this.#at(n, what);
    return this.#buf.toString('utf8', o, o + n);
  }
}

function readScalar(c: Cursor, type: number, what: string): GgufScalar {
  switch (type) {
    case GgufValueType.UINT8:
      return c.u8(what);
    case GgufValueType.INT8:
      return c.i8(what);
    case GgufValueType.UINT16:
      return c.u16(what);
    case GgufValueType.INT16:
      return c.i16(what);
    case GgufValueType.UINT32:
      return c.u32(what);
    case GgufValueType.INT32:
      return c.i32(what);
    case GgufValueType.FLOAT32:
      return c.f32(what);
    case GgufValueType.BOOL: {
      const b = c.u8(what);
      if (b > 1) throw new ModelLoadError(c.path, `${what}: bool value ${b}`);
      return b === 1;
    }
    case GgufValueType.STRING:
      return c.string(what);
    case GgufValueType.UINT64:
      return c.u64(what);
    case GgufValueType.INT64:
      return c.i64(what);
    case GgufValueType.FLOAT64:
      return c.f64(what);
    default:
      throw new ModelLoadError(c.path, `${what}: unknown metadata value type ${type}`);
  }
}

function readValue(c: Cursor, key: string): GgufKV {
  const type = c.u32(`type of "${key}"`);
  if (type !== GgufValueType.ARRAY) {
    return { type: type as Exclude<GgufValueType, 9>, value: readScalar(c, type, `"${key}"`) };
  }
  const itemType = c.u32(`item type of "${key}"`);
  if (itemType === GgufValueType.ARRAY)
    throw new ModelLoadError(c.path, `"${key}": nested arrays are not supported`);
  const count = c.u64(`length of "${key}"`);
  // each item takes at least its fixed size (a string at least its 8-byte length)
  const min = SCALAR_BYTES[itemType as GgufValueType] ?? 8;
  if (count * min > c.size - c.pos)
    throw new ModelLoadError(c.path, `truncated: "${key}" claims ${count} items, more than the file holds`);
  const value: GgufScalar[] = new Array(count);
  for (let i = 0; i < count; i++) value[i] = readScalar(c, itemType, `"${key}"[${i}]`);
  return { type: 9, itemType: itemType as Exclude<GgufValueType, 9>, value };
}

/** Reads and validates a GGUF file's header (metadata and tensor infos). */
export function readGgufHeader(path: string): GgufFile {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new ModelLoadError(path, `cannot open: ${(err as Error).message}`);
  }
  try {
    const size = fstatSync(fd).size;
    const c = new Cursor(fd, path, size);
    if (size < 24) throw new ModelLoadError(path, `truncated: ${size} bytes is too short for a GGUF header`);
    if (c.u32('magic') !== GGUF_MAGIC) throw new ModelLoadError(path, 'not a GGUF file (bad magic)');
    const version = c.u32('version');
    if (version === 1) throw new ModelLoadError(path, 'GGUF version 1 is not supported (only 2 and 3)');
    if (version !== 2 && version !== 3) {
      const hint = version > 0xffff ? ' (a big-endian GGUF? only little-endian files are supported)' : '';
      throw new ModelLoadError(path, `unsupported GGUF version ${version}${hint}`);
    }
    const tensorCount = c.u64('tensor count');
    const kvCount = c.u64('metadata count');
    if (tensorCount > MAX_COUNT || kvCount > MAX_COUNT)
      throw new ModelLoadError(path, `implausible counts: ${tensorCount} tensors, ${kvCount} metadata pairs`);
    const metadata = new Map<string, GgufKV>();
    for (let i = 0; i < kvCount; i++) {
      const key = c.string(`metadata key ${i}`);
      if (metadata.has(key)) throw new ModelLoadError(path, `duplicate metadata key "${key}"`);
      metadata.set(key, readValue(c, key));
    }
    const alignKV = metadata.get('general.alignment');
    const alignment = alignKV ? Number(alignKV.value) : GGUF_DEFAULT_ALIGNMENT;
    if (!Number.isInteger(alignment) || alignment <= 0 || (alignment & (alignment - 1)) !== 0)
      throw new ModelLoadError(path, `general.alignment ${alignKV?.value} is not a power of two`);
    const infos: { name: string; dims: number[]; typeId: number; offset: number }[] = [];
    for (let i = 0; i < tensorCount; i++) {
      const name = c.string(`tensor ${i} name`);
      const nDims = c.u32(`tensor "${name}" n_dims`);
      if (nDims < 1 || nDims > 4)
        throw new ModelLoadError(path, `tensor "${name}": ${nDims} dimensions (1–4)`);
      const dims: number[] = [];
      for (let d = 0; d < nDims; d++) dims.push(c.u64(`tensor "${name}" dim ${d}`));
      infos.push({
        name,
        dims,
        typeId: c.u32(`tensor "${name}" type`),
        offset: c.u64(`tensor "${name}" offset`),
      });
    }
    const dataStart = Math.ceil(c.pos / alignment) * alignment;
    return {
      path,
      size,
      version,
      alignment,
      dataStart,
      metadata,
      tensors: checkTensors(path, size, dataStart, alignment, infos),
    };
  } finally {
    closeSync(fd);
  }
}

function checkTensors(
  path: string,
  size: number,
  dataStart: number,
  alignment: number,
  infos: { name: string; dims: number[]; typeId: number; offset: number }[],
): Map<string, GgufTensorInfo> {
  const tensors = new Map<string, GgufTensorInfo>();
  for (const { name, dims, typeId, offset } of infos) {
    if (tensors.has(name)) throw new ModelLoadError(path, `duplicate tensor "${name}"`);
    if (offset % alignment !== 0)
      throw new ModelLoadError(path, `tensor "${name}": offset ${offset} is not a multiple of ${alignment}`);
    const t = GGML_TYPES[typeId];
    let nbytes: number | null = null;
    if (t?.blockSize && t.blockBytes) {
      if (dims[0] % t.blockSize !== 0)
        throw new ModelLoadError(
          path,
          `tensor "${name}": row length ${dims[0]} is not a multiple of the ${t.name} block (${t.blockSize})`,
        );
      const elements = dims.reduce((a, b) => a * b, 1);
      nbytes = (elements / t.blockSize) * t.blockBytes;
      if (!Number.isSafeInteger(nbytes) || dataStart + offset + nbytes > size)
        throw new ModelLoadError(
          path,
          `truncated: tensor "${name}" (${t.name} [${dims}]) ends past the end of the file (${size} bytes)`,
        );
    }
    tensors.set(name, {
      name,
      dims,
      typeId,
      typeName: ggmlTypeName(typeId),
      start: dataStart + offset,
      nbytes,
    });
  }
  const sized = [...tensors.values()].filter((t) => t.nbytes !== null).sort((a, b) => a.start - b.start);
  for (let i = 1; i < sized.length; i++) {
    if (sized[i].start < sized[i - 1].start + sized[i - 1].nbytes!)
      throw new ModelLoadError(path, `tensors "${sized[i - 1].name}" and "${sized[i].name}" overlap`);
  }
  return tensors;
}

/** The raw bytes of one tensor as stored (a fresh copy). */
export function readGgufTensorBytes(file: GgufFile, info: GgufTensorInfo): Uint8Array {
  if (info.nbytes === null)
    throw new ModelLoadError(
      file.path,
      `tensor "${info.name}" has type ${info.typeName}, which kvrag cannot read`,
    );
  const out = new Uint8Array(info.nbytes);
  const fd = openSync(file.path, 'r');
  try {
    let done = 0;
    while (done < out.length) {
      const n = readSync(fd, out, done, out.length - done, info.start + done);
      if (n === 0) throw new ModelLoadError(file.path, `truncated while reading tensor "${info.name}"`);
      done += n;
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

/** A metadata value, or undefined. */
export function meta(file: GgufFile, key: string): GgufScalar | GgufScalar[] | undefined {
  return file.metadata.get(key)?.value;
}

export function metaNumber(file: GgufFile, key: string, required: true): number;
export function metaNumber(file: GgufFile, key: string, required?: false): number | undefined;
export function metaNumber(file: GgufFile, key: string, required = false): number | undefined {
  const v = meta(file, key);
  if (v === undefined) {
    if (required) throw new ModelLoadError(file.path, `missing metadata "${key}"`);
    return undefined;
  }
  if (typeof v !== 'number') throw new ModelLoadError(file.path, `metadata "${key}" is not a number`);
  return v;
}

export function metaString(file: GgufFile, key: string): string | undefined {
  const v = meta(file, key);
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new ModelLoadError(file.path, `metadata "${key}" is not a string`);
  return v;
}

export function metaArray<T extends GgufScalar>(
  file: GgufFile,
  key: string,
  kind: 'string' | 'number' | 'boolean',
): T[] | undefined {
  const v = meta(file, key);
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.some((x) => typeof x !== kind))
    throw new ModelLoadError(file.path, `metadata "${key}" is not an array of ${kind}s`);
  return v as T[];
}
