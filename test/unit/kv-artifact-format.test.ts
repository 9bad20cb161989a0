import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { artifactObjectKey } from '../../contracts/artifacts.ts';
import {
  ArtifactError,
  type ArtifactMeta,
  artifactKey,
  decodeArtifact,
  decodeSection,
  encodeArtifact,
  type LayerKV,
  PREAMBLE_BYTES,
  parseHeader,
  readPreamble,
} from '../../gpu-runner/engine/kv/artifact-format.ts';

const FP = 'a'.repeat(64);
function meta(dtype: 'f16' | 'f32', n = 7): ArtifactMeta {
  return {
    fingerprint: FP,
    tokenizerHash: 'tok-1',
    dtype,
    tokenIds: Array.from({ length: n }, (_, i) => (i * 37) % 272),
    layers: 3,
    kvHeads: 2,
    headDim: 8,
    rope: { theta: 10000, scaling: { type: 'default' } },
  };
}
function layers(m: ArtifactMeta): LayerKV[] {
  const size = m.kvHeads * m.tokenIds.length * m.headDim;
  return Array.from({ length: m.layers }, (_, l) => ({
    k: Float32Array.from({ length: size }, (_, i) => Math.sin(i * 0.37 + l) * 3),
    v: Float32Array.from({ length: size }, (_, i) => Math.cos(i * 0.11 - l) * 0.5),
  }));
}
function refused(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ArtifactError);
    return (err as ArtifactError).reason;
  }
  throw new Error('expected the artifact to be refused');
}

describe('KV artifact format', () => {
  it('round-trips f32 exactly and f16 within half precision, with an index section', () => {
    for (const dtype of ['f32', 'f16'] as const) {
      const m = meta(dtype);
      const kv = layers(m);
      const index = new Uint8Array([1, 2, 3, 4, 5]);
      const bytes = encodeArtifact(m, kv, index);
      const d = decodeArtifact(bytes, { fingerprint: FP, tokenizerHash: 'tok-1' });
      expect(d.header.key).toBe(artifactKey(m));
      expect(d.header.n).toBe(7);
      expect([...(d.index ?? [])]).toEqual([1, 2, 3, 4, 5]);
      const tol = dtype === 'f32' ? 0 : 2e-3;
      for (let l = 0; l < m.layers; l++) {
        for (const part of ['k', 'v'] as const) {
          const got = d.layers[l][part];
          const want = kv[l][part];
          let err = 0;
          for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i] - want[i]));
          expect(err).toBeLessThanOrEqual(tol);
        }
      }
    }
  });

  it('keys by content: fingerprint, dtype and token ids all change the key', () => {
    const base = artifactKey(meta('f16'));
    expect(artifactKey(meta('f16'))).toBe(base);
    expect(artifactKey(meta('f32'))).not.toBe(base);
    expect(artifactKey({ ...meta('f16'), fingerprint: 'b'.repeat(64) })).not.toBe(base);
    expect(artifactKey(meta('f16', 8))).not.toBe(base);
    expect(artifactObjectKey(FP, base)).toBe(`kv/${FP}/${base.slice(0, 2)}/${base}.kv`);
  });

  it('reads one layer from byte ranges: preamble, header, then a single section', () => {
    const m = meta('f16');
    const kv = layers(m);
    const bytes = encodeArtifact(m, kv);
    const pre = readPreamble(bytes.subarray(0, PREAMBLE_BYTES));
    const h = parseHeader(bytes.subarray(0, pre.headerBytes));
    const ref = h.sections.v[2];
    expect(ref.offset % 64).toBe(0);
    const v2 = decodeSection(h, ref, bytes.subarray(ref.offset, ref.offset + ref.bytes));
    expect(Math.abs(v2[5] - kv[2].v[5])).toBeLessThan(2e-3);
  });

  it('detects a flipped byte anywhere: header or section', () => {
    const bytes = encodeArtifact(meta('f16'), layers(meta('f16')));
    const h = parseHeader(bytes);
    for (const at of [PREAMBLE_BYTES + 10, h.sections.k[1].offset + 3, h.totalBytes - 1]) {
      const bad = bytes.slice();
      bad[at] ^= 0x40;
      expect(refused(() => decodeArtifact(bad))).toBe('checksum');
    }
  });

  it('refuses other models, other tokenizers, truncation and foreign files', () => {
    const bytes = encodeArtifact(meta('f32'), layers(meta('f32')));
    expect(refused(() => decodeArtifact(bytes, { fingerprint: 'c'.repeat(64) }))).toBe('fingerprint');
    expect(refused(() => decodeArtifact(bytes, { tokenizerHash: 'other' }))).toBe('tokenizer');
    expect(refused(() => decodeArtifact(bytes.subarray(0, bytes.length - 9)))).toBe('truncated');
    expect(refused(() => decodeArtifact(bytes.subarray(0, 20)))).toBe('truncated');
    expect(
      refused(() => decodeArtifact(new TextEncoder().encode('{"not":"an artifact"} padding padding'))),
    ).toBe('bad-magic');
  });

  it('refuses hostile headers: huge lengths and overlapping sections, even with a valid checksum', () => {
    const bytes = encodeArtifact(meta('f32'), layers(meta('f32')));
    const huge = bytes.slice();
    new DataView(huge.buffer).setUint32(12, 0xfffffff0, true);
    expect(refused(() => parseHeader(huge))).toBe('header');

    const pre = readPreamble(bytes);
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(PREAMBLE_BYTES, pre.headerBytes)));
    header.sections.v[0].offset = header.sections.k[0].offset + 4; // overlaps k[0]
    const forged = new TextEncoder().encode(JSON.stringify(header));
    const out = new Uint8Array(PREAMBLE_BYTES + forged.length);
    out.set(bytes.subarray(0, PREAMBLE_BYTES));
    const dv = new DataView(out.buffer);
    dv.setUint32(12, forged.length, true);
    dv.setUint32(16, crc32(forged) >>> 0, true);
    out.set(forged, PREAMBLE_BYTES);
    expect(refused(() => parseHeader(out))).toBe('header');
  });
});

describe('KV artifact padding', () => {
  it('refuses a flipped byte in alignment padding too', () => {
    const bytes = encodeArtifact(meta('f16'), layers(meta('f16')));
    const h = parseHeader(bytes);
    const gap = h.sections.k[0].offset + h.sections.k[0].bytes; // padding before v[0]
    expect(h.sections.v[0].offset).toBeGreaterThan(gap);
    const bad = bytes.slice();
    bad[gap] = 1;
    expect(refused(() => decodeArtifact(bad))).toBe('checksum');
  });
});
