// How one section of a chunk KV artifact (one layer's K or V, f32 [kv_head][n][head_dim]) is stored in
// each artifact dtype (DESIGN.md §4.1), and the reference decoder: plain TypeScript, the oracle that the
// backends' load kernels are tested against.
//
//   f32, f16    the values as they are, [kv_head][n][head_dim] (format version 1)
//   int8, int4  KIVI-style (format version 2):
//     K per channel: for each kv head, channel c and group of G = keyGroup tokens, a minimum m and a step s
//       (f16); code q ∈ [0, 2^bits − 1], x ≈ m + s·q. Each channel gets its own range, so the few channels
//       with large values (keys' outlier channels) neither clip nor coarsen the others; the group along the
//       tokens follows the slow drift of the low-frequency RoPE channels.
//     V per token: for each kv head, token and group of valueGroup channels, a step s (f16); signed code
//       q ∈ [−2^(bits−1), 2^(bits−1) − 1], x ≈ s·q, with s = (the group's value of largest magnitude) /
//       −2^(bits−1), so that value lands exactly on the most negative code (ggml Q4_0's rule).
//   A quantized section is three blocks, each starting on a 16-byte boundary of the section:
//     codes  [kv_head][n][row]: row = head_dim bytes (int8) or head_dim/2 (int4: byte j holds channel j in
//            its low nibble and channel j + head_dim/2 in its high one, a rotate-half pair, so re-rotation
//            reads one byte per pair). K codes unsigned; V codes two's complement (int8) or offset by 8 (int4).
//     steps  f16: K [kv_head][ceil(n/G)][head_dim]; V [kv_head][n][head_dim/valueGroup]
//     minima f16 (K only): [kv_head][ceil(n/G)][head_dim]
//   With quant.keyTransform 'hadamard' (int4's default) the key codes, steps and minima describe each key
//   row multiplied by H/√head_dim (hadamardRows); decoding multiplies by it again.
import { ARTIFACT_DTYPES, type ArtifactDType } from '../../../contracts/artifacts.ts';
import { f16Table, f32ToF16 } from '../half.ts';

export const KV_DTYPES = ARTIFACT_DTYPES;
export type KVDType = ArtifactDType;
export type QuantDType = 'int8' | 'int4';

export const isQuantized = (d: KVDType): d is QuantDType => d === 'int8' || d === 'int4';
export const bitsOf = (d: QuantDType): 8 | 4 => (d === 'int8' ? 8 : 4);

/** Group sizes of a quantized artifact, recorded in its header. */
export interface QuantParams {
  /** tokens per key (min, step) pair of a channel */
  keyGroup: number;
  /** channels per value step of a token */
  valueGroup: number;
  /**
   * 'hadamard': each key row (one head vector) is multiplied by the orthonormal Hadamard matrix
   * H/√head_dim before it is quantized, and again (H is its own inverse) after it is dequantized: the
   * rotation spreads the keys' outlier channels over all channels, so their per-channel ranges are alike.
   * Absent: keys quantized as they are (every artifact written before it existed).
   */
  keyTransform?: 'hadamard';
}

/**
 * Defaults, sized by bytes per token at head_dim 64: int8 K 1 + 4/128, V 1 + 2/64 bytes per value (51.6% of
 * f16); int4 K 0.5 + 4/64, V 0.5 + 2/64 (27.3%). Of the int4 layouts within 28% (keys 64 / values 64,
 * keys 128 / values 32), 64/64 moved the bundled model's next-token distribution least (KL to f16
 * artifacts over 9 held-out episodes at 2K: 4e-6 vs 1e-4); `kvrag eval --artifact-dtype` measures answers.
 */
export const DEFAULT_QUANT: Record<QuantDType, QuantParams> = {
  int8: { keyGroup: 128, valueGroup: 64 },
  int4: { keyGroup: 64, valueGroup: 64, keyTransform: 'hadamard' },
};

/** Whether keys of this head_dim can take the Hadamard rotation (a power of two, at least 4). */
export const hadamardFits = (headDim: number): boolean => headDim >= 4 && (headDim & (headDim - 1)) === 0;

/**
 * The params a new artifact of `dtype` uses for this head_dim (valueGroup at most head_dim; the key
 * rotation only where the head_dim takes it).
 */
export function defaultQuant(dtype: QuantDType, headDim: number): QuantParams {
  const d = DEFAULT_QUANT[dtype];
  return {
    keyGroup: d.keyGroup,
    valueGroup: headDim % d.valueGroup === 0 ? d.valueGroup : headDim,
    ...(d.keyTransform && hadamardFits(headDim) ? { keyTransform: d.keyTransform } : {}),
  };
}

/**
 * In place: row ← (H/√d)·row for each row of d values, H the Sylvester Hadamard matrix (fast
 * Walsh–Hadamard butterflies, f64). Orthonormal and symmetric, so applying it twice gives the row back.
 */
export function hadamardRows(x: Float32Array | Float64Array, d: number): void {
  const scale = 1 / Math.sqrt(d);
  const row = new Float64Array(d);
  for (let at = 0; at < x.length; at += d) {
    for (let c = 0; c < d; c++) row[c] = x[at + c];
    for (let h = 1; h < d; h *= 2)
      for (let i = 0; i < d; i += 2 * h)
        for (let j = i; j < i + h; j++) {
          const a = row[j];
          const b = row[j + h];
          row[j] = a + b;
          row[j + h] = a - b;
        }
    for (let c = 0; c < d; c++) x[at + c] = row[c] * scale;
  }
}

export interface SectionGeometry {
  kvHeads: number;
  n: number;
  headDim: number;
}

/** Byte offsets of a section's blocks (relative to the section start) and its total size. */
export interface SectionLayout {
  bytes: number;
  /** quantized only: code row bytes, and where steps and minima (K; 0 for V) start */
  row: number;
  steps: number;
  mins: number;
}

const pad16 = (x: number) => Math.ceil(x / 16) * 16;

/** Why these group sizes cannot describe a section of this geometry; null when they can. */
export function quantProblem(dtype: QuantDType, g: SectionGeometry, q: QuantParams): string | null {
  if (!Number.isInteger(q.keyGroup) || q.keyGroup < 1 || q.keyGroup > 1 << 16)
    return `keyGroup ${q.keyGroup} is not in [1, 65536]`;
  if (!Number.isInteger(q.valueGroup) || q.valueGroup < 1 || g.headDim % q.valueGroup !== 0)
    return `valueGroup ${q.valueGroup} does not divide head_dim ${g.headDim}`;
  if (dtype === 'int4' && g.headDim % 2 !== 0) return `int4 needs an even head_dim, got ${g.headDim}`;
  if (q.keyTransform !== undefined && (q.keyTransform !== 'hadamard' || !hadamardFits(g.headDim)))
    return `key transform ${q.keyTransform} does not fit head_dim ${g.headDim}`;
  return null;
}

export function sectionLayout(
  dtype: KVDType,
  part: 'k' | 'v',
  g: SectionGeometry,
  q: QuantParams | null,
): SectionLayout {
  const values = g.kvHeads * g.n * g.headDim;
  if (!isQuantized(dtype)) return { bytes: values * (dtype === 'f16' ? 2 : 4), row: 0, steps: 0, mins: 0 };
  if (!q) throw new Error(`a ${dtype} section needs group sizes`);
  const row = (g.headDim * bitsOf(dtype)) / 8;
  const steps = pad16(g.kvHeads * g.n * row);
  if (part === 'k') {
    const params = g.kvHeads * Math.ceil(g.n / q.keyGroup) * g.headDim * 2;
    const mins = steps + pad16(params);
    return { bytes: mins + params, row, steps, mins };
  }
  return { bytes: steps + g.kvHeads * g.n * (g.headDim / q.valueGroup) * 2, row, steps, mins: 0 };
}

/** Encodes one section. x: [kv_head][n][head_dim] f32. */
export function encodeSection(
  dtype: KVDType,
  part: 'k' | 'v',
  g: SectionGeometry,
  q: QuantParams | null,
  x: Float32Array,
): Uint8Array {
  if (dtype === 'f32') return new Uint8Array(Float32Array.from(x).buffer);
  if (dtype === 'f16') return new Uint8Array(f32ToF16(x).buffer);
  const lay = sectionLayout(dtype, part, g, q);
  const out = new Uint8Array(lay.bytes);
  if (part === 'k' && q?.keyTransform === 'hadamard') {
    const rotated = Float32Array.from(x);
    hadamardRows(rotated, g.headDim);
    encodeKeys(dtype, g, q, rotated, out, lay);
  } else if (part === 'k') encodeKeys(dtype, g, q!, x, out, lay);
  else encodeValues(dtype, g, q!, x, out, lay);
  return out;
}

/** Writes code `c` (already in range, unsigned form) of channel `ch` of a row starting at `at`. */
function putCode(out: Uint8Array, at: number, ch: number, c: number, bits: 8 | 4, half: number): void {
  if (bits === 8) out[at + ch] = c;
  else if (ch < half) out[at + ch] = (out[at + ch] & 0xf0) | c;
  else out[at + ch - half] = (out[at + ch - half] & 0x0f) | (c << 4);
}

function encodeKeys(
  dtype: QuantDType,
  g: SectionGeometry,
  q: QuantParams,
  x: Float32Array,
  out: Uint8Array,
  lay: SectionLayout,
): void {
  const { kvHeads, n, headDim: d } = g;
  const bits = bitsOf(dtype);
  const top = (1 << bits) - 1;
  const groups = Math.ceil(n / q.keyGroup);
  const steps = new Uint16Array(out.buffer, lay.steps, kvHeads * groups * d);
  const mins = new Uint16Array(out.buffer, lay.mins, kvHeads * groups * d);
  const lo = new Float32Array(d);
  const hi = new Float32Array(d);
  for (let h = 0; h < kvHeads; h++) {
    for (let gi = 0; gi < groups; gi++) {
      const t0 = gi * q.keyGroup;
      const t1 = Math.min(n, t0 + q.keyGroup);
      lo.fill(Number.POSITIVE_INFINITY);
      hi.fill(Number.NEGATIVE_INFINITY);
      for (let t = t0; t < t1; t++) {
        const base = (h * n + t) * d;
        for (let c = 0; c < d; c++) {
          const v = x[base + c];
          if (v < lo[c]) lo[c] = v;
          if (v > hi[c]) hi[c] = v;
        }
      }
      // quantize against the stored (f16-rounded) min and step, so decode sees exactly what encode used
      const p = (h * groups + gi) * d;
      mins.set(f32ToF16(lo), p);
      steps.set(f32ToF16(hi.map((v, c) => (v - lo[c]) / top)), p);
      for (let t = t0; t < t1; t++) {
        const base = (h * n + t) * d;
        const at = (h * n + t) * lay.row;
        for (let c = 0; c < d; c++) {
          const s = f16Table[steps[p + c]];
          const m = f16Table[mins[p + c]];
          const code = s > 0 ? Math.min(top, Math.max(0, Math.round((x[base + c] - m) / s))) : 0;
          putCode(out, at, c, code, bits, d / 2);
        }
      }
    }
  }
}

function encodeValues(
  dtype: QuantDType,
  g: SectionGeometry,
  q: QuantParams,
  x: Float32Array,
  out: Uint8Array,
  lay: SectionLayout,
): void {
  const { kvHeads, n, headDim: d } = g;
  const bits = bitsOf(dtype);
  const neg = 1 << (bits - 1); // codes [−neg, neg − 1]
  const per = d / q.valueGroup;
  const steps = new Uint16Array(out.buffer, lay.steps, kvHeads * n * per);
  const one = new Float32Array(1);
  for (let r = 0; r < kvHeads * n; r++) {
    const base = r * d;
    for (let gi = 0; gi < per; gi++) {
      const c0 = gi * q.valueGroup;
      let ext = 0;
      for (let c = c0; c < c0 + q.valueGroup; c++)
        if (Math.abs(x[base + c]) > Math.abs(ext)) ext = x[base + c];
      one[0] = ext / -neg;
      const bitsS = f32ToF16(one)[0];
      steps[r * per + gi] = bitsS;
      const s = f16Table[bitsS];
      for (let c = c0; c < c0 + q.valueGroup; c++) {
        const code = s !== 0 ? Math.min(neg - 1, Math.max(-neg, Math.round(x[base + c] / s))) : 0;
        putCode(out, r * lay.row, c, bits === 8 ? code & 0xff : code + neg, bits, d / 2);
      }
    }
  }
}

/**
 * Reference decoder: a section's bytes (its own buffer or a view) → f32 [kv_head][n][head_dim].
 * The bytes must already be verified (checksum) and of layout.bytes length.
 */
export function decodeSectionValues(
  dtype: KVDType,
  part: 'k' | 'v',
  g: SectionGeometry,
  q: QuantParams | null,
  bytes: Uint8Array,
): Float32Array {
  const count = g.kvHeads * g.n * g.headDim;
  const lay = sectionLayout(dtype, part, g, q);
  if (bytes.byteLength !== lay.bytes)
    throw new Error(`section of ${bytes.byteLength} bytes, expected ${lay.bytes}`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(count);
  if (dtype === 'f32') {
    for (let i = 0; i < count; i++) out[i] = dv.getFloat32(i * 4, true);
    return out;
  }
  const half = (at: number) => f16Table[dv.getUint16(at, true)];
  if (dtype === 'f16') {
    for (let i = 0; i < count; i++) out[i] = half(i * 2);
    return out;
  }
  const { kvHeads, n, headDim: d } = g;
  const bits = bitsOf(dtype);
  // code of channel c in the row at byte `at`, unsigned form
  const code = (at: number, c: number) =>
    bits === 8 ? bytes[at + c] : c < d / 2 ? bytes[at + c] & 15 : bytes[at + c - d / 2] >> 4;
  if (part === 'k') {
    const groups = Math.ceil(n / q!.keyGroup);
    for (let h = 0; h < kvHeads; h++)
      for (let t = 0; t < n; t++) {
        const p = (h * groups + Math.floor(t / q!.keyGroup)) * d;
        for (let c = 0; c < d; c++)
          out[(h * n + t) * d + c] =
            half(lay.mins + (p + c) * 2) + half(lay.steps + (p + c) * 2) * code((h * n + t) * lay.row, c);
      }
    if (q!.keyTransform === 'hadamard') hadamardRows(out, d);
    return out;
  }
  const per = d / q!.valueGroup;
  const neg = 1 << (bits - 1);
  for (let r = 0; r < kvHeads * n; r++)
    for (let c = 0; c < d; c++) {
      const u = code(r * lay.row, c);
      const signed = bits === 8 ? (u << 24) >> 24 : u - neg;
      out[r * d + c] = half(lay.steps + (r * per + Math.floor(c / q!.valueGroup)) * 2) * signed;
    }
  return out;
}
