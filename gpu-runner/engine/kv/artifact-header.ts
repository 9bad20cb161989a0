// The self-describing front of a chunk KV artifact (DESIGN.md §4.1): preamble, JSON header, content key.
//
//   preamble, 32 bytes: magic "KVRAGKV\0" | u32 format version | u32 header length | u32 crc32(header)
//                       | u32 reserved (0) | u64 total bytes
//   header: UTF-8 JSON (ArtifactHeader), including every section's offset, length and crc32
//
// Format versions: 1 holds f32/f16 sections; 2 adds the quantized dtypes (int8, int4) and their group
// sizes (`quant`). An artifact is written in the lowest version that can hold its dtype, and the content
// key hashes that version: f16/f32 artifacts keep version 1's bytes and keys, so artifacts stored before
// version 2 are still found and read, and runners that only read version 1 still read every f16/f32
// artifact written now.
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { z } from 'zod';
import {
  isQuantized,
  KV_DTYPES,
  type KVDType,
  type QuantParams,
  quantProblem,
  sectionLayout,
} from './kv-codec.ts';

/** The newest format version this build reads and writes. */
export const ARTIFACT_FORMAT_VERSION = 2;
export const PREAMBLE_BYTES = 32;
export const MAGIC = new TextEncoder().encode('KVRAGKV\0');
/** Upper bound on a header's size; a larger claimed length is a hostile or corrupt file. */
export const MAX_HEADER_BYTES = 1 << 22;

/** The format version an artifact of `dtype` is written in (and its key hashes). */
export const formatVersionFor = (dtype: KVDType): 1 | 2 => (isQuantized(dtype) ? 2 : 1);

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
  /** int8/int4: group sizes (default: defaultQuant for the dtype). */
  quant?: QuantParams;
}

const headerSchema = z.object({
  v: z.union([z.literal(1), z.literal(2)]),
  key: z.string().regex(/^[0-9a-f]{64}$/),
  fingerprint: z.string().regex(/^[0-9a-f]{64}$/),
  tokenizerHash: z.string().min(1).max(128),
  dtype: z.enum(KV_DTYPES),
  tokenIds: z.array(z.number().int().nonnegative()),
  n: z.number().int().positive(),
  layers: z.number().int().positive().max(1024),
  kvHeads: z.number().int().positive().max(1024),
  headDim: z.number().int().positive().max(4096),
  rope: z.object({ theta: z.number().positive(), scaling: z.unknown() }),
  /** version 2, int8/int4 only */
  quant: z
    .object({
      keyGroup: z.number().int(),
      valueGroup: z.number().int(),
      keyTransform: z.literal('hadamard').optional(),
    })
    .strict()
    .optional(),
  sections: z.object({ k: z.array(sectionSchema), v: z.array(sectionSchema) }),
  index: sectionSchema.nullable(),
  totalBytes: z.number().int().positive(),
});
export type ArtifactHeader = z.infer<typeof headerSchema>;

/** Content key: sha256 over (model fingerprint, format version, dtype, token ids). Hex. */
export function artifactKey(id: ArtifactIdentity): string {
  const h = createHash('sha256');
  h.update(`kvrag-kv\0${id.fingerprint}\0v${formatVersionFor(id.dtype)}\0${id.dtype}\0`);
  const ids = new Uint32Array(id.tokenIds.length);
  ids.set(id.tokenIds);
  h.update(new Uint8Array(ids.buffer));
  return h.digest('hex');
}

/** Reads the preamble: how many bytes (from 0) hold preamble + header. */
export function readPreamble(bytes: Uint8Array): {
  version: number;
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
  if (version < 1 || version > ARTIFACT_FORMAT_VERSION) {
    throw new ArtifactError(
      'version',
      `format version ${version}, this build reads 1..${ARTIFACT_FORMAT_VERSION}`,
    );
  }
  const len = dv.getUint32(12, true);
  if (len === 0 || len > MAX_HEADER_BYTES)
    throw new ArtifactError('header', `header length ${len} out of range`);
  const total = Number(dv.getBigUint64(24, true));
  return { version, headerBytes: PREAMBLE_BYTES + len, headerCrc: dv.getUint32(16, true), totalBytes: total };
}

/** A section's expected size per the header's dtype, geometry and group sizes. */
export function sectionBytes(h: ArtifactHeader, part: 'k' | 'v'): number {
  return sectionLayout(h.dtype, part, h, h.quant ?? null).bytes;
}

/** The header's dtype, version and group sizes agree; throws ArtifactError('header') otherwise. */
function checkEncoding(h: ArtifactHeader, preambleVersion: number): void {
  if (h.v !== preambleVersion)
    throw new ArtifactError('header', 'header version disagrees with the preamble');
  if (h.v !== formatVersionFor(h.dtype))
    throw new ArtifactError(
      'header',
      `dtype ${h.dtype} is written in format version ${formatVersionFor(h.dtype)}`,
    );
  if (isQuantized(h.dtype)) {
    if (!h.quant) throw new ArtifactError('header', `a ${h.dtype} artifact without group sizes`);
    const why = quantProblem(h.dtype, h, h.quant);
    if (why) throw new ArtifactError('header', why);
  } else if (h.quant) throw new ArtifactError('header', `group sizes on a ${h.dtype} artifact`);
}

/**
 * Parses and validates the header from the first bytes of an artifact (at least preamble + header).
 * Checks the header checksum, the schema, the encoding, section bounds, sizes and non-overlap, the key,
 * and — when `expect` is given — the model fingerprint and tokenizer.
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
  let h: ArtifactHeader;
  try {
    h = headerSchema.parse(JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(raw)));
  } catch (err) {
    throw new ArtifactError('header', `invalid header: ${(err as Error).message.slice(0, 200)}`);
  }
  checkEncoding(h, pre.version);
  if (h.totalBytes !== pre.totalBytes)
    throw new ArtifactError('header', 'total length disagrees with the preamble');
  if (h.tokenIds.length !== h.n)
    throw new ArtifactError('header', `n = ${h.n} but ${h.tokenIds.length} token ids`);
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
  for (const part of ['k', 'v'] as const) {
    const want = sectionBytes(h, part);
    for (const s of h.sections[part])
      if (s.bytes !== want)
        throw new ArtifactError('header', `section of ${s.bytes} bytes, expected ${want}`);
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
