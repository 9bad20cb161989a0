// Chunk KV artifacts on the wire and on disk (DESIGN.md §4.1). One artifact = one chunk prefilled alone
// at positions 0..n-1: post-RoPE K and V of every layer, then an optional squeezed-attention index.
//
// Layout (all integers little-endian; sections start on 64-byte boundaries so each is range-readable):
//   preamble, 32 bytes: magic "KVRAGKV\0" | u32 format version | u32 header length | u32 crc32(header)
//                       | u32 reserved (0) | u64 total bytes
//   header: UTF-8 JSON (ArtifactHeader), including every section's offset, length and crc32
//   sections: k[0], v[0], k[1], v[1], …, each [kv_head][position][head_dim] in the artifact dtype
//   index section (optional): opaque bytes of the squeezed-attention index
// A reader fetches the preamble, then the header, then only the sections it needs.
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { z } from 'zod';
import { f16ToF32, f32ToF16 } from '../half.ts';

export const ARTIFACT_FORMAT_VERSION = 1;
export const PREAMBLE_BYTES = 32;
const MAGIC = new TextEncoder().encode('KVRAGKV\0');
const ALIGN = 64;
/** Upper bound on a header's size; a larger claimed length is a hostile or corrupt file. */
export const MAX_HEADER_BYTES = 1 << 22;

export type KVDType = 'f16' | 'f32';

export type ArtifactErrorReason =
  | 'truncated'
  | 'bad-magic'
  | 'version'
  | 'header'
  | 'checksum'
  | 'fingerprint'
  | 'tokenizer'
  | 'key';

/** An artifact that must not be used; `reason` says why. The caller recomputes it. */
export class ArtifactError extends Error {
  readonly reason: ArtifactErrorReason;
  constructor(reason: ArtifactErrorReason, message: string) {
    super(`KV artifact refused (${reason}): ${message}`);
    this.name = 'ArtifactError';
    this.reason = reason;
  }
}

const sectionSchema = z.object({
  offset: z.number().int().nonnegative(),
  bytes: z.number().int().nonnegative(),
  crc32: z.number().int().nonnegative().max(0xffffffff),
});
export type SectionRef = z.infer<typeof sectionSchema>;

/** What identifies the contents: the key hashes fingerprint, format version, dtype and token ids. */
export interface ArtifactIdentity {
  fingerprint: string;
  dtype: KVDType;
  tokenIds: readonly number[];
}

export interface ArtifactMeta extends ArtifactIdentity {
  tokenizerHash: string;
  layers: number;
  kvHeads: number;
  headDim: number;
  /** RoPE parameters the keys were rotated with (re-rotation must use the same). */
  rope: { theta: number; scaling: unknown };
}

const headerSchema = z.object({
  v: z.literal(ARTIFACT_FORMAT_VERSION),
  key: z.string().regex(/^[0-9a-f]{64}$/),
  fingerprint: z.string().regex(/^[0-9a-f]{64}$/),
  tokenizerHash: z.string().min(1).max(128),
  dtype: z.enum(['f16', 'f32']),
  tokenIds: z.array(z.number().int().nonnegative()),
  n: z.number().int().positive(),
  layers: z.number().int().positive().max(1024),
  kvHeads: z.number().int().positive().max(1024),
  headDim: z.number().int().positive().max(4096),
  rope: z.object({ theta: z.number().positive(), scaling: z.unknown() }),
  sections: z.object({ k: z.array(sectionSchema), v: z.array(sectionSchema) }),
  index: sectionSchema.nullable(),
  totalBytes: z.number().int().positive(),
});
export type ArtifactHeader = z.infer<typeof headerSchema>;

/** One layer's K and V on the host, f32: [kv_head][position][head_dim]. */
export interface LayerKV {
  k: Float32Array;
  v: Float32Array;
}

/** Content key: sha256 over (model fingerprint, format version, dtype, token ids). Hex. */
export function artifactKey(id: ArtifactIdentity): string {
  const h = createHash('sha256');
  h.update(`kvrag-kv\0${id.fingerprint}\0v${ARTIFACT_FORMAT_VERSION}\0${id.dtype}\0`);
  const ids = new Uint32Array(id.tokenIds.length);
  ids.set(id.tokenIds);
  h.update(new Uint8Array(ids.buffer));
  return h.digest('hex');
}

const align = (x: number) => Math.ceil(x / ALIGN) * ALIGN;
const elemBytes = (d: KVDType) => (d === 'f16' ? 2 : 4);

function toDType(x: Float32Array, dtype: KVDType): Uint8Array {
  const out = dtype === 'f16' ? f32ToF16(x) : Float32Array.from(x);
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/** Serialises an artifact. layers[l].k/v: [kv_head][n][head_dim] f32; stored in meta.dtype. */
export function encodeArtifact(
  meta: ArtifactMeta,
  layers: readonly LayerKV[],
  index?: Uint8Array,
): Uint8Array {
  const n = meta.tokenIds.length;
  const perSection = meta.kvHeads * n * meta.headDim;
  if (n === 0) throw new Error('an artifact needs at least one token');
  if (layers.length !== meta.layers) throw new Error(`expected ${meta.layers} layers, got ${layers.length}`);
  const payloads: Uint8Array[] = [];
  for (const [l, layer] of layers.entries()) {
    for (const part of [layer.k, layer.v]) {
      if (part.length !== perSection)
        throw new Error(`layer ${l}: expected ${perSection} values, got ${part.length}`);
      payloads.push(toDType(part, meta.dtype));
    }
  }
  const build = (offsets: number[], total: number, indexRef: SectionRef | null) => {
    const refs = payloads.map((p, i) => ({ offset: offsets[i], bytes: p.byteLength, crc32: crc32(p) >>> 0 }));
    const header: ArtifactHeader = {
      v: ARTIFACT_FORMAT_VERSION,
      key: artifactKey(meta),
      fingerprint: meta.fingerprint,
      tokenizerHash: meta.tokenizerHash,
      dtype: meta.dtype,
      tokenIds: [...meta.tokenIds],
      n,
      layers: meta.layers,
      kvHeads: meta.kvHeads,
      headDim: meta.headDim,
      rope: meta.rope,
      sections: { k: refs.filter((_, i) => i % 2 === 0), v: refs.filter((_, i) => i % 2 === 1) },
      index: indexRef,
      totalBytes: total,
    };
    return new TextEncoder().encode(JSON.stringify(header));
  };
  // Offsets depend on the header length, which depends on the offsets' digits: settle by iterating.
  let headerLen = 0;
  for (;;) {
    let at = align(PREAMBLE_BYTES + headerLen);
    let end = at;
    const offsets = payloads.map((p) => {
      const o = at;
      end = at + p.byteLength;
      at = align(end);
      return o;
    });
    const indexRef = index ? { offset: at, bytes: index.byteLength, crc32: crc32(index) >>> 0 } : null;
    const total = index ? at + index.byteLength : end;
    const header = build(offsets, total, indexRef);
    if (header.byteLength > headerLen) {
      headerLen = header.byteLength + 64;
      continue;
    }
    const out = new Uint8Array(total);
    const dv = new DataView(out.buffer);
    out.set(MAGIC, 0);
    dv.setUint32(8, ARTIFACT_FORMAT_VERSION, true);
    dv.setUint32(12, header.byteLength, true);
    dv.setUint32(16, crc32(header) >>> 0, true);
    dv.setUint32(20, 0, true);
    dv.setBigUint64(24, BigInt(total), true);
    out.set(header, PREAMBLE_BYTES);
    payloads.forEach((p, i) => {
      out.set(p, offsets[i]);
    });
    if (index && indexRef) out.set(index, indexRef.offset);
    return out;
  }
}

/** Reads the preamble: how many bytes (from 0) hold preamble + header. */
export function readPreamble(bytes: Uint8Array): {
  headerBytes: number;
  headerCrc: number;
  totalBytes: number;
} {
  if (bytes.byteLength < PREAMBLE_BYTES)
    throw new ArtifactError('truncated', `${bytes.byteLength} bytes, no preamble`);
  for (let i = 0; i < MAGIC.length; i++) {
    if (bytes[i] !== MAGIC[i]) throw new ArtifactError('bad-magic', 'not a kvrag KV artifact');
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = dv.getUint32(8, true);
  if (version !== ARTIFACT_FORMAT_VERSION) {
    throw new ArtifactError(
      'version',
      `format version ${version}, this build reads ${ARTIFACT_FORMAT_VERSION}`,
    );
  }
  const len = dv.getUint32(12, true);
  if (len === 0 || len > MAX_HEADER_BYTES)
    throw new ArtifactError('header', `header length ${len} out of range`);
  const total = Number(dv.getBigUint64(24, true));
  return { headerBytes: PREAMBLE_BYTES + len, headerCrc: dv.getUint32(16, true), totalBytes: total };
}

/**
 * Parses and validates the header from the first bytes of an artifact (at least preamble + header).
 * Checks the header checksum, the schema, section bounds, sizes and non-overlap, the key, and — when
 * `expect` is given — the model fingerprint and tokenizer.
 */
export function parseHeader(
  bytes: Uint8Array,
  expect?: { fingerprint?: string; tokenizerHash?: string; key?: string },
): ArtifactHeader {
  const pre = readPreamble(bytes);
  if (bytes.byteLength < pre.headerBytes) {
    throw new ArtifactError('truncated', `header needs ${pre.headerBytes} bytes, have ${bytes.byteLength}`);
  }
  const raw = bytes.subarray(PREAMBLE_BYTES, pre.headerBytes);
  if (crc32(raw) >>> 0 !== pre.headerCrc) throw new ArtifactError('checksum', 'header checksum mismatch');
  let parsed: ArtifactHeader;
  try {
    parsed = headerSchema.parse(JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(raw)));
  } catch (err) {
    throw new ArtifactError('header', `invalid header: ${(err as Error).message.slice(0, 200)}`);
  }
  const h = parsed;
  if (h.totalBytes !== pre.totalBytes)
    throw new ArtifactError('header', 'total length disagrees with the preamble');
  if (h.tokenIds.length !== h.n)
    throw new ArtifactError('header', `n = ${h.n} but ${h.tokenIds.length} token ids`);
  const want = h.kvHeads * h.n * h.headDim * elemBytes(h.dtype);
  if (h.sections.k.length !== h.layers || h.sections.v.length !== h.layers) {
    throw new ArtifactError('header', 'section count does not match the layer count');
  }
  const all = [...h.sections.k, ...h.sections.v, ...(h.index ? [h.index] : [])].sort(
    (a, b) => a.offset - b.offset,
  );
  let end = pre.headerBytes;
  for (const s of all) {
    if (s.offset < end) throw new ArtifactError('header', `section at ${s.offset} overlaps the previous one`);
    end = s.offset + s.bytes;
    if (end > h.totalBytes) throw new ArtifactError('header', `section at ${s.offset} runs past the end`);
  }
  for (const s of [...h.sections.k, ...h.sections.v]) {
    if (s.bytes !== want) throw new ArtifactError('header', `section of ${s.bytes} bytes, expected ${want}`);
  }
  if (artifactKey(h) !== h.key) throw new ArtifactError('key', 'content key does not match the token ids');
  if (expect?.key && expect.key !== h.key)
    throw new ArtifactError('key', `asked for ${expect.key}, got ${h.key}`);
  if (expect?.fingerprint && expect.fingerprint !== h.fingerprint) {
    throw new ArtifactError(
      'fingerprint',
      `computed by model ${h.fingerprint.slice(0, 12)}…, not this model`,
    );
  }
  if (expect?.tokenizerHash && expect.tokenizerHash !== h.tokenizerHash) {
    throw new ArtifactError('tokenizer', 'computed with a different tokenizer');
  }
  return h;
}

/** Decodes one section's bytes (checksum verified) to f32 [kv_head][n][head_dim]. */
export function decodeSection(h: ArtifactHeader, ref: SectionRef, bytes: Uint8Array): Float32Array {
  if (bytes.byteLength !== ref.bytes)
    throw new ArtifactError('truncated', `section: ${bytes.byteLength} of ${ref.bytes} bytes`);
  if (crc32(bytes) >>> 0 !== ref.crc32)
    throw new ArtifactError('checksum', `section at ${ref.offset}: checksum mismatch`);
  const copy = bytes.slice(); // own, aligned buffer
  return h.dtype === 'f16'
    ? f16ToF32(new Uint16Array(copy.buffer, 0, copy.byteLength / 2))
    : new Float32Array(copy.buffer, 0, copy.byteLength / 4);
}

export interface DecodedArtifact {
  header: ArtifactHeader;
  layers: LayerKV[];
  index: Uint8Array | null;
}

/** Parses and fully verifies a whole artifact held in memory. */
export function decodeArtifact(
  bytes: Uint8Array,
  expect?: { fingerprint?: string; tokenizerHash?: string; key?: string },
): DecodedArtifact {
  const header = parseHeader(bytes, expect);
  if (bytes.byteLength !== header.totalBytes) {
    throw new ArtifactError('truncated', `${bytes.byteLength} bytes, header says ${header.totalBytes}`);
  }
  const at = (r: SectionRef) => bytes.subarray(r.offset, r.offset + r.bytes);
  // Alignment padding carries no data, but it must be zero: any flipped byte in the file is refused.
  const sections = [...header.sections.k, ...header.sections.v, ...(header.index ? [header.index] : [])];
  sections.sort((a, b) => a.offset - b.offset);
  let from = readPreamble(bytes).headerBytes;
  for (const s of [...sections, { offset: header.totalBytes, bytes: 0 }]) {
    for (let i = from; i < s.offset; i++) {
      if (bytes[i] !== 0) throw new ArtifactError('checksum', `non-zero padding at byte ${i}`);
    }
    from = s.offset + s.bytes;
  }
  const layers = header.sections.k.map((k, l) => ({
    k: decodeSection(header, k, at(k)),
    v: decodeSection(header, header.sections.v[l], at(header.sections.v[l])),
  }));
  let index: Uint8Array | null = null;
  if (header.index) {
    index = at(header.index).slice();
    if (crc32(index) >>> 0 !== header.index.crc32)
      throw new ArtifactError('checksum', 'index section checksum mismatch');
  }
  return { header, layers, index };
}
