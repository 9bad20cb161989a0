// The GGUF reader and writer: a round trip of every value type the writer emits, and damaged files
// failing with a message that names the file and the problem (nothing read past the end, no allocation
// sized by a corrupt count).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readGgufHeader, readGgufTensorBytes } from '../../../gpu-runner/engine/gguf/reader.ts';
import { kv, writeGguf } from '../../../gpu-runner/engine/gguf/writer.ts';
import { quantize } from '../../../gpu-runner/engine/quant/codecs.ts';

const root = mkdtempSync(join(tmpdir(), 'kvrag-gguf-file-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const f32 = new Float32Array(64).map((_, i) => i / 8 - 3);
const q8 = quantize('Q8_0', f32);
let n = 0;

function sample(): string {
  const path = join(root, `s${n++}.gguf`);
  const meta = new Map([
    ['general.architecture', kv.str('llama')],
    ['a.u32', kv.u32(4000000000)],
    ['a.i32', kv.i32(-7)],
    ['a.f32', kv.f32(0.5)],
    ['a.bool', kv.bool(true)],
    ['a.strs', kv.strs(['x', 'ÿ ü', ''])],
    ['a.i32s', kv.i32s([1, -2, 3])],
    ['a.f32s', kv.f32s([0.25, -1])],
  ]);
  writeGguf(path, meta, [
    { name: 'w', type: 'F32', dims: [32, 2], data: () => new Uint8Array(f32.buffer) },
    { name: 'q', type: 'Q8_0', dims: [32, 2], data: () => q8 },
  ]);
  return path;
}

/** Byte offset of a tensor info's `offset` field (after its name, n_dims, dims and type). */
function offsetField(buf: Buffer, name: string, dims: number): number {
  const at = buf.indexOf(Buffer.from(name), 24 + 8 * 8);
  return at + name.length + 4 + 8 * dims + 4;
}

function damaged(edit: (b: Buffer) => Buffer | undefined): string {
  const path = sample();
  const buf = readFileSync(path);
  writeFileSync(path, edit(buf) ?? buf);
  return path;
}

describe('GGUF reader/writer', () => {
  it('round-trips metadata of every written type and tensors at aligned offsets', () => {
    const g = readGgufHeader(sample());
    expect(g.version).toBe(3);
    const v = (k: string) => g.metadata.get(k)?.value;
    expect(v('general.architecture')).toBe('llama');
    expect(v('a.u32')).toBe(4000000000);
    expect(v('a.i32')).toBe(-7);
    expect(v('a.f32')).toBe(0.5);
    expect(v('a.bool')).toBe(true);
    expect(v('a.strs')).toEqual(['x', 'ÿ ü', '']);
    expect(v('a.i32s')).toEqual([1, -2, 3]);
    expect(v('a.f32s')).toEqual([0.25, -1]);
    const w = g.tensors.get('w')!;
    const q = g.tensors.get('q')!;
    expect([w.typeName, w.dims, w.nbytes]).toEqual(['F32', [32, 2], 256]);
    expect([q.typeName, q.dims, q.nbytes]).toEqual(['Q8_0', [32, 2], 68]);
    expect(g.dataStart % 32).toBe(0);
    expect((q.start - g.dataStart) % 32).toBe(0);
    expect(new Float32Array(readGgufTensorBytes(g, w).buffer)).toEqual(f32);
    expect(readGgufTensorBytes(g, q)).toEqual(q8);
  });

  it('refuses a file that is not GGUF, GGUF v1 and big-endian files', () => {
    expect(() => readGgufHeader(damaged((b) => void b.write('GGUX', 0)))).toThrow(
      /s\d+\.gguf: not a GGUF file/,
    );
    expect(() => readGgufHeader(damaged((b) => void b.writeUInt32LE(1, 4)))).toThrow(
      /version 1 is not supported/,
    );
    expect(() => readGgufHeader(damaged((b) => void b.writeUInt32BE(3, 4)))).toThrow(/big-endian/);
  });

  it('names truncation in the metadata and in the tensor data', () => {
    expect(() => readGgufHeader(damaged((b) => b.subarray(0, 60)))).toThrow(/truncated/);
    const cut = damaged((b) => b.subarray(0, b.length - 40));
    expect(() => readGgufHeader(cut)).toThrow(/truncated: tensor "q" \(Q8_0 \[32,2\]\) ends past the end/);
  });

  it('refuses lengths and counts larger than the file before allocating for them', () => {
    // the first key's length field sits right after the 24-byte preamble
    expect(() => readGgufHeader(damaged((b) => void b.writeBigUInt64LE(1n << 40n, 24)))).toThrow(/truncated/);
    const arr = damaged((b) => {
      const at = b.indexOf(Buffer.from('a.strs')) + 6 + 4 + 4; // key, value type, item type
      b.writeBigUInt64LE(1n << 33n, at);
      return b;
    });
    expect(() => readGgufHeader(arr)).toThrow(/"a.strs" claims 8589934592 items/);
    expect(() => readGgufHeader(damaged((b) => void b.writeBigUInt64LE(1n << 60n, 8)))).toThrow(
      /implausibly large|implausible counts/,
    );
  });

  it('refuses misaligned, overlapping and over-dimensioned tensors', () => {
    const mis = damaged((b) => void b.writeBigUInt64LE(8n, offsetField(b, 'q', 2)));
    expect(() => readGgufHeader(mis)).toThrow(/tensor "q": offset 8 is not a multiple of 32/);
    const overlap = damaged((b) => void b.writeBigUInt64LE(0n, offsetField(b, 'q', 2)));
    expect(() => readGgufHeader(overlap)).toThrow(/tensors "(w|q)" and "(w|q)" overlap/);
    // tensor info "w": u64 name length 1, "w", then u32 n_dims
    const nameW = Buffer.from([1, 0, 0, 0, 0, 0, 0, 0, 'w'.charCodeAt(0)]);
    const dims = damaged((b) => void b.writeUInt32LE(5, b.indexOf(nameW) + nameW.length));
    expect(() => readGgufHeader(dims)).toThrow(/tensor "w": 5 dimensions/);
  });
});
