// Chunk KV artifacts on the wire and on disk (DESIGN.md §4.1). One artifact = one chunk prefilled alone
// at positions 0..n-1: post-RoPE K and V of every layer, then an optional squeezed-attention index.
//
// Layout (all integers little-endian; sections start on 64-byte boundaries so each is range-readable):
//   preamble and JSON header (artifact-header.ts)
//   sections: k[0], v[0], k[1], v[1], …, each one layer's K or V in the artifact dtype (kv-codec.ts), with
//             its own crc32 in the header
//   index section (optional): opaque bytes of the squeezed-attention index, versioned on its own
//             (attention/squeezed/codec.ts; v3 holds the clusters alone, ~0.3% of an f16 artifact: the
//             statistics are derived from these K/V when a squeezed plan needs them, so the index costs
//             every dtype the same few bytes and an int8/int4 artifact stays ~52% / ~28% of f16's whole)
// A reader fetches the preamble, then the header, then only the sections it needs. Zero padding between
// sections is part of the check: any flipped byte of a whole artifact is refused.
import { crc32 } from 'node:zlib';
import type { PackedKVSpec } from '../backends/types.ts';
import {
  ArtifactError,
  type ArtifactHeader,
  type ArtifactMeta,
  artifactKey,
  formatVersionFor,
  MAGIC,
  PREAMBLE_BYTES,
  parseHeader,
  readPreamble,
  type SectionRef,
} from './artifact-header.ts';
import { decodeSectionValues, defaultQuant, encodeSection, isQuantized } from './kv-codec.ts';

export {
  ARTIFACT_FORMAT_VERSION,
  ArtifactError,
  type ArtifactErrorReason,
  type ArtifactHeader,
  type ArtifactIdentity,
  type ArtifactMeta,
  artifactKey,
  formatVersionFor,
  MAX_HEADER_BYTES,
  PREAMBLE_BYTES,
  parseHeader,
  readPreamble,
  type SectionRef,
} from './artifact-header.ts';
export { KV_DTYPES, type KVDType } from './kv-codec.ts';

const ALIGN = 64;

/** One layer's K and V on the host, f32: [kv_head][position][head_dim]. */
export interface LayerKV {
  k: Float32Array;
  v: Float32Array;
}

const align = (x: number) => Math.ceil(x / ALIGN) * ALIGN;

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
  const version = formatVersionFor(meta.dtype);
  const quant = isQuantized(meta.dtype) ? (meta.quant ?? defaultQuant(meta.dtype, meta.headDim)) : null;
  const geometry = { kvHeads: meta.kvHeads, n, headDim: meta.headDim };
  const payloads: Uint8Array[] = [];
  for (const [l, layer] of layers.entries()) {
    for (const part of ['k', 'v'] as const) {
      if (layer[part].length !== perSection)
        throw new Error(`layer ${l}: expected ${perSection} values, got ${layer[part].length}`);
      payloads.push(encodeSection(meta.dtype, part, geometry, quant, layer[part]));
    }
  }
  const build = (offsets: number[], total: number, indexRef: SectionRef | null) => {
    const refs = payloads.map((p, i) => ({ offset: offsets[i], bytes: p.byteLength, crc32: crc32(p) >>> 0 }));
    // field order is part of the bytes: version 1 artifacts are byte-identical to what version 1 wrote
    const header: ArtifactHeader = {
      v: version,
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
      ...(quant
        ? {
            quant: {
              keyGroup: quant.keyGroup,
              valueGroup: quant.valueGroup,
              ...(quant.keyTransform ? { keyTransform: quant.keyTransform } : {}),
            },
          }
        : {}),
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
    dv.setUint32(8, version, true);
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

/** A whole artifact whose header and every checksum were verified; sections are views into `bytes`. */
export interface VerifiedArtifact {
  header: ArtifactHeader;
  bytes: Uint8Array;
  index: Uint8Array | null;
}

/** Throws ArtifactError('checksum') unless `bytes` (one section's) match its crc32. */
export function checkSection(ref: SectionRef, bytes: Uint8Array, what: string): void {
  if (bytes.byteLength !== ref.bytes)
    throw new ArtifactError('truncated', `${what}: ${bytes.byteLength} of ${ref.bytes} bytes`);
  if (crc32(bytes) >>> 0 !== ref.crc32)
    throw new ArtifactError('checksum', `${what} at ${ref.offset}: checksum mismatch`);
}

/** Verifies a whole artifact held in memory: header, every section's checksum, zero padding. No copies. */
export function verifyArtifact(
  bytes: Uint8Array,
  expect?: { fingerprint?: string; tokenizerHash?: string; key?: string },
): VerifiedArtifact {
  const header = parseHeader(bytes, expect);
  if (bytes.byteLength !== header.totalBytes) {
    throw new ArtifactError('truncated', `${bytes.byteLength} bytes, header says ${header.totalBytes}`);
  }
  const at = (r: SectionRef) => bytes.subarray(r.offset, r.offset + r.bytes);
  const sections = [...header.sections.k, ...header.sections.v, ...(header.index ? [header.index] : [])];
  sections.sort((a, b) => a.offset - b.offset);
  let from = readPreamble(bytes).headerBytes;
  for (const s of [...sections, { offset: header.totalBytes, bytes: 0, crc32: 0 }]) {
    for (let i = from; i < s.offset; i++) {
      if (bytes[i] !== 0) throw new ArtifactError('checksum', `non-zero padding at byte ${i}`);
    }
    if (s.offset < header.totalBytes)
      checkSection(s, at(s), s === header.index ? 'index section' : 'section');
    from = s.offset + s.bytes;
  }
  return { header, bytes, index: header.index ? at(header.index) : null };
}

/** One layer's K or V of a verified artifact: its bytes, a view. */
export function sectionOf(a: VerifiedArtifact, part: 'k' | 'v', layer: number): Uint8Array {
  const ref = a.header.sections[part][layer];
  return a.bytes.subarray(ref.offset, ref.offset + ref.bytes);
}

/** Decodes one section's bytes (checksum verified here) to f32 [kv_head][n][head_dim]: the reference decoder. */
export function decodeSection(
  h: ArtifactHeader,
  part: 'k' | 'v',
  ref: SectionRef,
  bytes: Uint8Array,
): Float32Array {
  checkSection(ref, bytes, 'section');
  return decodeSectionValues(h.dtype, part, h, h.quant ?? null, bytes);
}

/** What a backend needs to hold and decode the artifact's sections (Backend.uploadPackedKV). */
export function packedSpec(h: ArtifactHeader): PackedKVSpec {
  const { layers, kvHeads, headDim, n, dtype } = h;
  return { layers, kvHeads, headDim, n, dtype, quant: h.quant ? { ...h.quant } : null };
}

/** Every layer of a verified artifact decoded to f32 on the host (reference decoder). */
export function decodeLayers(a: VerifiedArtifact): LayerKV[] {
  const h = a.header;
  return h.sections.k.map((_, l) => ({
    k: decodeSectionValues(h.dtype, 'k', h, h.quant ?? null, sectionOf(a, 'k', l)),
    v: decodeSectionValues(h.dtype, 'v', h, h.quant ?? null, sectionOf(a, 'v', l)),
  }));
}

export interface DecodedArtifact {
  header: ArtifactHeader;
  layers: LayerKV[];
  index: Uint8Array | null;
}

/** Parses, fully verifies and decodes a whole artifact held in memory (index copied out). */
export function decodeArtifact(
  bytes: Uint8Array,
  expect?: { fingerprint?: string; tokenizerHash?: string; key?: string },
): DecodedArtifact {
  const a = verifyArtifact(bytes, expect);
  return { header: a.header, layers: decodeLayers(a), index: a.index ? a.index.slice() : null };
}
