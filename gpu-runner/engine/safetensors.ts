// safetensors reader: u64 LE header length N, N bytes of JSON header, then tensor data at offsets
// relative to 8 + N. Headers and offsets are validated so a truncated or inconsistent file fails with
// a message naming the file and the problem. Tensor bytes are copied (they may be unaligned).
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { ModelLoadError } from './errors.ts';

export type SafetensorsDType = 'F32' | 'F16' | 'BF16';

const DTYPE_BYTES: Record<SafetensorsDType, number> = { F32: 4, F16: 2, BF16: 2 };
/** Headers above this are refused: no real header is that large, a corrupt length would be. */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface TensorInfo {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** Absolute byte range in the file. */
  start: number;
  end: number;
}

export interface SafetensorsFile {
  path: string;
  size: number;
  tensors: Map<string, TensorInfo>;
}

function readExactly(fd: number, path: string, length: number, position: number): Buffer {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buf, done, length - done, position + done);
    if (n === 0)
      throw new ModelLoadError(path, `truncated: wanted ${length} bytes at offset ${position}, got ${done}`);
    done += n;
  }
  return buf;
}

/** Reads and validates the header of one .safetensors file. */
export function readSafetensorsHeader(path: string): SafetensorsFile {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new ModelLoadError(path, `cannot open: ${(err as Error).message}`);
  }
  try {
    const size = fstatSync(fd).size;
    if (size < 8)
      throw new ModelLoadError(path, `truncated: ${size} bytes, too short for the 8-byte header length`);
    const n = Number(readExactly(fd, path, 8, 0).readBigUInt64LE(0));
    if (n > MAX_HEADER_BYTES)
      throw new ModelLoadError(path, `header length ${n} is implausible (corrupt file?)`);
    if (8 + n > size)
      throw new ModelLoadError(path, `truncated: header says ${n} bytes but the file has ${size - 8}`);
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(readExactly(fd, path, n, 8).toString('utf8'));
    } catch (err) {
      throw new ModelLoadError(path, `header is not valid JSON: ${(err as Error).message}`);
    }
    if (typeof header !== 'object' || header === null || Array.isArray(header)) {
      throw new ModelLoadError(path, 'header is not a JSON object');
    }
    return { path, size, tensors: validateEntries(path, header, 8 + n, size) };
  } finally {
    closeSync(fd);
  }
}

function validateEntries(
  path: string,
  header: Record<string, unknown>,
  dataStart: number,
  size: number,
): Map<string, TensorInfo> {
  const tensors = new Map<string, TensorInfo>();
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e !== 'object' || e === null)
      throw new ModelLoadError(path, `tensor "${name}": entry is not an object`);
    if (typeof e.dtype !== 'string' || !(e.dtype in DTYPE_BYTES)) {
      throw new ModelLoadError(
        path,
        `tensor "${name}": unsupported dtype ${JSON.stringify(e.dtype)} (F32, F16, BF16)`,
      );
    }
    const dtype = e.dtype as SafetensorsDType;
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new ModelLoadError(path, `tensor "${name}": invalid shape ${JSON.stringify(e.shape)}`);
    }
    const shape = e.shape as number[];
    const off = e.data_offsets;
    if (
      !Array.isArray(off) ||
      off.length !== 2 ||
      !off.every((o) => Number.isInteger(o) && o >= 0) ||
      off[0] > off[1]
    ) {
      throw new ModelLoadError(path, `tensor "${name}": invalid data_offsets ${JSON.stringify(off)}`);
    }
    const expected = shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype];
    if (off[1] - off[0] !== expected) {
      throw new ModelLoadError(
        path,
        `tensor "${name}": data_offsets span ${off[1] - off[0]} bytes but ${dtype} [${shape}] needs ${expected}`,
      );
    }
    if (dataStart + off[1] > size) {
      throw new ModelLoadError(
        path,
        `truncated: tensor "${name}" ends at byte ${dataStart + off[1]} but the file has ${size} bytes`,
      );
    }
    tensors.set(name, { name, dtype, shape, start: dataStart + off[0], end: dataStart + off[1] });
  }
  const sorted = [...tensors.values()].sort((a, b) => a.start - b.start);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].start < sorted[i - 1].end) {
      throw new ModelLoadError(path, `tensors "${sorted[i - 1].name}" and "${sorted[i].name}" overlap`);
    }
  }
  return tensors;
}

/** Raw bytes of one tensor (a fresh, aligned copy). */
export function readTensorBytes(file: SafetensorsFile, info: TensorInfo): Uint8Array {
  const fd = openSync(file.path, 'r');
  try {
    return new Uint8Array(readExactly(fd, file.path, info.end - info.start, info.start));
  } finally {
    closeSync(fd);
  }
}

/** Writes a safetensors file (used by the tiny-model generator and tests). */
export function encodeSafetensors(
  tensors: { name: string; dtype: SafetensorsDType; shape: number[]; data: Uint8Array }[],
  metadata: Record<string, string> = { format: 'pt' },
): Buffer {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.length] };
    offset += t.data.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8); // keep data 8-byte aligned, as the Rust writer does
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([head, Buffer.from(json), ...tensors.map((t) => Buffer.from(t.data))]);
}
