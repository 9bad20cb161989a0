import { readFileSync } from 'node:fs';
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
  type KVDType,
  type LayerKV,
  PREAMBLE_BYTES,
  parseHeader,
  readPreamble,
} from '../../gpu-runner/engine/kv/artifact-format.ts';
import {
  decodeSectionValues,
  defaultQuant,
  encodeSection,
  hadamardRows,
  isQuantized,
  sectionLayout,
} from '../../gpu-runner/engine/kv/kv-codec.ts';

const FP = 'a'.repeat(64);
function meta(dtype: KVDType, n = 7): ArtifactMeta {
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
const maxDiff = (a: Float32Array, b: Float32Array) =>
  a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);
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
    const v2 = decodeSection(h, 'v', ref, bytes.subarray(ref.offset, ref.offset + ref.bytes));
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

describe('compressed sections (int8, int4)', () => {
  const geometry = (n: number, headDim = 64, kvHeads = 3) => ({ n, headDim, kvHeads });
  /** Keys with a few outlier channels (large offset and range), values of mixed scale per token. */
  function realistic(g: { kvHeads: number; n: number; headDim: number }) {
    const size = g.kvHeads * g.n * g.headDim;
    const k = new Float32Array(size);
    const v = new Float32Array(size);
    for (let i = 0; i < size; i++) {
      const c = i % g.headDim;
      const t = Math.floor(i / g.headDim) % g.n;
      const outlier = c === 3 || c === 40 ? 25 : 1;
      k[i] = outlier * (Math.sin(t * 0.3 + c) + (c === 3 ? 2 : 0)) + 0.1 * Math.cos(i * 1.7);
      v[i] = (1 + (t % 5)) * Math.sin(i * 0.91);
    }
    return { k, v };
  }

  it('keys: per channel and token group, each value within half a step of its group', () => {
    for (const dtype of ['int8', 'int4'] as const) {
      const g = geometry(150, 16, 2);
      // as stored without the key rotation (int4's default rotates: the bound holds in the rotated basis)
      const { keyGroup, valueGroup } = defaultQuant(dtype, g.headDim);
      const q = { keyGroup, valueGroup };
      const { k } = realistic(g);
      const got = decodeSectionValues(dtype, 'k', g, q, encodeSection(dtype, 'k', g, q, k));
      const top = dtype === 'int8' ? 255 : 15;
      for (let h = 0; h < g.kvHeads; h++)
        for (let t0 = 0; t0 < g.n; t0 += q.keyGroup)
          for (let c = 0; c < g.headDim; c++) {
            const at = (t: number) => (h * g.n + t) * g.headDim + c;
            const ts = Array.from({ length: Math.min(q.keyGroup, g.n - t0) }, (_, i) => t0 + i);
            const lo = Math.min(...ts.map((t) => k[at(t)]));
            const hi = Math.max(...ts.map((t) => k[at(t)]));
            // half a step, plus f16 rounding of the minimum and of the step (times the largest code)
            const bound = ((hi - lo) / top) * (0.5 + top * 2 ** -11) + Math.abs(lo) * 2 ** -11 + 1e-7;
            for (const t of ts) expect(Math.abs(got[at(t)] - k[at(t)])).toBeLessThanOrEqual(bound);
          }
    }
  });

  it('int4 keys rotated by H/√d (the default) decode as the rotated keys quantized and rotated back', () => {
    const g = geometry(150, 64, 2);
    const q = defaultQuant('int4', g.headDim);
    expect(q.keyTransform).toBe('hadamard');
    expect(defaultQuant('int4', 48).keyTransform).toBeUndefined(); // not a power of two
    const { k } = realistic(g);
    const plain = { keyGroup: q.keyGroup, valueGroup: q.valueGroup };
    const rotated = decodeSectionValues('int4', 'k', g, q, encodeSection('int4', 'k', g, q, k));
    // decoding rotates back: the same as quantizing the rotated keys as they are and rotating the result
    const hk = Float32Array.from(k);
    hadamardRows(hk, g.headDim);
    const viaPlain = decodeSectionValues('int4', 'k', g, plain, encodeSection('int4', 'k', g, plain, hk));
    hadamardRows(viaPlain, g.headDim);
    expect(maxDiff(rotated, viaPlain)).toBeLessThan(1e-5);
    // H is orthonormal and its own inverse
    hadamardRows(hk, g.headDim);
    expect(maxDiff(hk, k)).toBeLessThan(1e-4);
  });

  it('values: per token and channel group, the largest magnitude kept, the rest within half a step', () => {
    for (const dtype of ['int8', 'int4'] as const) {
      const g = geometry(9, 32, 2);
      const q = { keyGroup: 4, valueGroup: 16 };
      const { v } = realistic(g);
      const got = decodeSectionValues(dtype, 'v', g, q, encodeSection(dtype, 'v', g, q, v));
      const neg = dtype === 'int8' ? 128 : 8;
      for (let r = 0; r < g.kvHeads * g.n; r++)
        for (let c0 = 0; c0 < g.headDim; c0 += q.valueGroup) {
          const idx = Array.from({ length: q.valueGroup }, (_, i) => r * g.headDim + c0 + i);
          const amax = Math.max(...idx.map((i) => Math.abs(v[i])));
          const ext = v[idx.find((i) => Math.abs(v[i]) === amax) ?? 0];
          const step = (amax / neg) * (1 + 2 ** -11); // |s|, f16-rounded
          const tol = 1e-7 + amax * 2 ** -10;
          expect(Math.abs(got[idx.find((i) => v[i] === ext) ?? 0] - ext)).toBeLessThanOrEqual(tol);
          for (const i of idx) {
            // the far end has one code less (−neg … neg − 1): values past it clip to the last code
            const past = -Math.sign(ext) * v[i] - (neg - 1) * step;
            const bound = Math.max(past, step / 2);
            expect(Math.abs(got[i] - v[i])).toBeLessThanOrEqual(bound + tol);
          }
        }
    }
  });

  it('bytes per token at head_dim 64: int8 ≤ 52% and int4 ≤ 28% of f16, whole artifacts included', () => {
    const size = (dtype: KVDType) => {
      const m = { ...meta(dtype, 512), kvHeads: 3, headDim: 64, layers: 2 };
      const g = { kvHeads: 3, n: 512, headDim: 64 };
      const data = realistic(g);
      const q = isQuantized(dtype) ? defaultQuant(dtype, 64) : null;
      const perToken = (sectionLayout(dtype, 'k', g, q).bytes + sectionLayout(dtype, 'v', g, q).bytes) / 512;
      return { whole: encodeArtifact(m, [data, data]).byteLength, perToken };
    };
    const f16 = size('f16');
    for (const [dtype, limit] of [
      ['int8', 0.52],
      ['int4', 0.28],
    ] as const) {
      const s = size(dtype);
      expect(s.whole / f16.whole).toBeLessThanOrEqual(limit);
      expect(s.perToken / f16.perToken).toBeLessThanOrEqual(limit);
    }
  });

  it('int4 packs the rotate-half pair (channel j, channel j + d/2) into byte j', () => {
    const g = { kvHeads: 1, n: 1, headDim: 4 };
    // the largest magnitude is −8, so the step is −8 / −8 = 1 and the codes are the values themselves
    const x = Float32Array.from([-8, 1, 7, -3]);
    const bytes = encodeSection('int4', 'v', g, { keyGroup: 1, valueGroup: 4 }, x);
    // stored offset by 8: [0, 9, 15, 5]; byte 0 = ch0 | ch2 << 4, byte 1 = ch1 | ch3 << 4
    expect([...bytes.subarray(0, 2)]).toEqual([0 | (15 << 4), 9 | (5 << 4)]);
    expect([...decodeSectionValues('int4', 'v', g, { keyGroup: 1, valueGroup: 4 }, bytes)]).toEqual([...x]);
  });

  it('round-trips whole artifacts in format version 2 and refuses a flipped byte in every block', () => {
    for (const dtype of ['int8', 'int4'] as const) {
      const m = meta(dtype, 40);
      const kv = layers(m);
      const bytes = encodeArtifact(m, kv, new Uint8Array([1, 2, 3]));
      expect(readPreamble(bytes).version).toBe(2);
      const d = decodeArtifact(bytes, { fingerprint: FP, tokenizerHash: 'tok-1' });
      expect(d.header).toMatchObject({ v: 2, dtype, quant: defaultQuant(dtype, m.headDim) });
      const g = { kvHeads: m.kvHeads, n: 40, headDim: m.headDim };
      for (const part of ['k', 'v'] as const) {
        const lay = sectionLayout(dtype, part, g, d.header.quant ?? null);
        const ref = d.header.sections[part][1];
        expect(ref.bytes).toBe(lay.bytes);
        const want = decodeSectionValues(
          dtype,
          part,
          g,
          d.header.quant ?? null,
          encodeSection(dtype, part, g, d.header.quant ?? null, kv[1][part]),
        );
        expect(maxDiff(d.layers[1][part], want)).toBe(0);
        // codes, steps and (keys) minima: a flip in any of them is refused
        for (const at of [0, lay.steps + 1, ...(part === 'k' ? [lay.mins + 1] : [])]) {
          const bad = bytes.slice();
          bad[ref.offset + at] ^= 0x04;
          expect(refused(() => decodeArtifact(bad))).toBe('checksum');
        }
      }
    }
  });

  it('refuses a header whose dtype, version and group sizes disagree', () => {
    const forge = (bytes: Uint8Array, edit: (h: Record<string, unknown>) => void, version?: number) => {
      const pre = readPreamble(bytes);
      const header = JSON.parse(new TextDecoder().decode(bytes.subarray(PREAMBLE_BYTES, pre.headerBytes)));
      edit(header);
      const forged = new TextEncoder().encode(JSON.stringify(header));
      const out = new Uint8Array(PREAMBLE_BYTES + forged.length);
      out.set(bytes.subarray(0, PREAMBLE_BYTES));
      const dv = new DataView(out.buffer);
      if (version !== undefined) dv.setUint32(8, version, true);
      dv.setUint32(12, forged.length, true);
      dv.setUint32(16, crc32(forged) >>> 0, true);
      out.set(forged, PREAMBLE_BYTES);
      return out;
    };
    const int8 = encodeArtifact(meta('int8'), layers(meta('int8')));
    const f16 = encodeArtifact(meta('f16'), layers(meta('f16')));
    expect(refused(() => parseHeader(forge(int8, (h) => delete h.quant)))).toBe('header');
    expect(refused(() => parseHeader(forge(int8, (h) => (h.quant = { keyGroup: 0, valueGroup: 8 }))))).toBe(
      'header',
    );
    expect(refused(() => parseHeader(forge(int8, (h) => (h.quant = { keyGroup: 8, valueGroup: 3 }))))).toBe(
      'header',
    );
    expect(refused(() => parseHeader(forge(int8, (h) => (h.v = 1), 1)))).toBe('header');
    expect(refused(() => parseHeader(forge(f16, (h) => (h.v = 2), 2)))).toBe('header');
    expect(refused(() => parseHeader(forge(f16, (h) => (h.quant = { keyGroup: 8, valueGroup: 8 }))))).toBe(
      'header',
    );
    const rot = (t: string) => (h: Record<string, unknown>) => {
      h.quant = { ...(h.quant as object), keyTransform: t };
    };
    expect(refused(() => parseHeader(forge(int8, rot('fourier'))))).toBe('header');
    const odd = encodeArtifact({ ...meta('int8'), headDim: 12 }, layers({ ...meta('int8'), headDim: 12 }));
    expect(refused(() => parseHeader(forge(odd, rot('hadamard'))))).toBe('header'); // 12: not a power of two
    const future = int8.slice();
    new DataView(future.buffer).setUint32(8, 3, true);
    expect(refused(() => parseHeader(future))).toBe('version');
  });
});

describe('format version 1 artifacts', () => {
  // written by the version 1 encoder (before int8/int4 existed): f16, 2 layers, 1 kv head, head_dim 4, 3 tokens
  const fixture = new Uint8Array(readFileSync(new URL('../fixtures/kv/artifact-v1-f16.kv', import.meta.url)));
  const v1Meta: ArtifactMeta = {
    fingerprint: 'f'.repeat(64),
    tokenizerHash: 'byte-v1',
    dtype: 'f16',
    tokenIds: [5, 17, 250],
    layers: 2,
    kvHeads: 1,
    headDim: 4,
    rope: { theta: 10000, scaling: { type: 'default' } },
  };
  const v1Layers = [0, 1].map((l) => ({
    k: Float32Array.from({ length: 12 }, (_, i) => (i + l * 12) / 8 - 1),
    v: Float32Array.from({ length: 12 }, (_, i) => -(i + l * 12) / 4),
  }));

  it('are still read, under the same key, and f16 is still written byte for byte as version 1', () => {
    const d = decodeArtifact(fixture, { fingerprint: v1Meta.fingerprint, key: artifactKey(v1Meta) });
    expect(d.header.v).toBe(1);
    expect([...(d.index ?? [])]).toEqual([9, 8, 7]);
    for (let l = 0; l < 2; l++) {
      expect([...d.layers[l].k]).toEqual([...v1Layers[l].k]);
      expect([...d.layers[l].v]).toEqual([...v1Layers[l].v]);
    }
    expect(encodeArtifact(v1Meta, v1Layers, new Uint8Array([9, 8, 7]))).toEqual(fixture);
  });
});
