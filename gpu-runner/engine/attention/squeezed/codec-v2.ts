// Index sections of format v1/v2 (before v3 stored the clusters alone), little-endian, every field 4 bytes,
// after the front (codec-header.ts):
//   per (layer, kv head): u32 k | f32 centroids [k][headDim] | i32 starts [k+1] | i32 order [n − window]
//   version 2 adds, per head after its order: f32 pair radii [k][headDim/2] | u32 flags (1: value means
//   present) | [f32 value means [k][headDim]] | when window > 0: f32 window centroid [headDim] | f32 window
//   pair radii [headDim/2] | [f32 window mean value [headDim]] (bracketed parts only with flag 1).
// Artifacts stored before v3 hold these (~5.5 KB per token on the SmolLM2-135M shape): they still read
// (codec.ts parseIndex), v1 heads with radius/values/win null. The writer is kept so that stays tested.
// Every count is validated against the bytes present before anything is allocated, and starts/order must
// describe a partition of the clustered positions: a hostile or corrupt section is refused with IndexError.
import { HEADER_WORDS, type IndexFront, IndexError, writeFront } from './codec-header.ts';
import { clusteredCount, type HeadIndex, type SqueezedIndex } from './types.ts';

/** The v2 section of ix (v1 when it has no summaries): what artifacts stored before v3 hold. */
export function encodeIndexV2(ix: SqueezedIndex): Uint8Array {
  const clustered = clusteredCount(ix);
  if (ix.heads.length !== ix.layers * ix.kvHeads) throw new Error('encodeIndex: heads ≠ layers × kvHeads');
  const d = ix.headDim;
  const v2 = ix.heads.every((h) => h.radius && (ix.window === 0 || h.win));
  const summaryWords = (h: (typeof ix.heads)[number]) => {
    const vals = h.values ? 1 : 0;
    return (h.k * d) / 2 + 1 + vals * h.k * d + (ix.window > 0 ? d + d / 2 + vals * d : 0);
  };
  let words = HEADER_WORDS;
  for (const h of ix.heads) words += 1 + h.k * d + h.k + 1 + clustered + (v2 ? summaryWords(h) : 0);
  const out = new ArrayBuffer(words * 4);
  const u = new Uint32Array(out);
  const f = new Float32Array(out);
  const i32 = new Int32Array(out);
  writeFront(u, { ...ix, version: v2 ? 2 : 1 });
  let at = HEADER_WORDS;
  for (const h of ix.heads) {
    if (h.order.length !== clustered || h.starts.length !== h.k + 1) throw new Error('encodeIndex: bad head');
    u[at++] = h.k;
    f.set(h.centroids, at);
    at += h.k * ix.headDim;
    i32.set(h.starts, at);
    at += h.k + 1;
    i32.set(h.order, at);
    at += clustered;
    if (!v2) continue;
    f.set(h.radius!, at);
    at += (h.k * d) / 2;
    const vals = h.values !== null && (ix.window === 0 || h.win!.value !== null);
    u[at++] = vals ? 1 : 0;
    if (vals) {
      f.set(h.values!, at);
      at += h.k * d;
    }
    if (ix.window === 0) continue;
    f.set(h.win!.centroid, at);
    f.set(h.win!.radius, at + d);
    at += d + d / 2;
    if (vals) {
      f.set(h.win!.value!, at);
      at += d;
    }
  }
  return new Uint8Array(out);
}

/** The heads of a v1/v2 section whose front (already checked) is `front`. */
export function parseIndexV2(bytes: Uint8Array, front: IndexFront): SqueezedIndex {
  const { version, n, window, layers, kvHeads, headDim } = front;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const word = (i: number) => dv.getUint32(i * 4, true);
  const clustered = n - window;
  const total = bytes.byteLength / 4;
  let at = HEADER_WORDS;
  const need = (words: number, what: string) => {
    if (at + words > total) throw new IndexError(`truncated in ${what}`);
  };
  const heads: HeadIndex[] = [];
  const seen = new Uint8Array(clustered);
  for (let hi = 0; hi < layers * kvHeads; hi++) {
    need(1, 'cluster count');
    const k = word(at++);
    if (k > clustered || (clustered > 0 && k === 0))
      throw new IndexError(`head ${hi}: ${k} clusters for ${clustered} keys`);
    need(k * headDim + k + 1 + clustered, `head ${hi}`);
    const floats = (count: number, what: string) => {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) {
        const x = dv.getFloat32((at + i) * 4, true);
        if (!Number.isFinite(x)) throw new IndexError(`head ${hi}: non-finite ${what}`);
        out[i] = x;
      }
      at += count;
      return out;
    };
    const centroids = floats(k * headDim, 'centroid');
    const starts = new Int32Array(k + 1);
    for (let c = 0; c <= k; c++) starts[c] = dv.getInt32((at + c) * 4, true);
    at += k + 1;
    if (starts[0] !== 0 || starts[k] !== clustered)
      throw new IndexError(`head ${hi}: starts do not span the keys`);
    for (let c = 0; c < k; c++)
      if (starts[c + 1] <= starts[c]) throw new IndexError(`head ${hi}: empty or decreasing cluster ${c}`);
    const order = new Int32Array(clustered);
    seen.fill(0);
    for (let i = 0; i < clustered; i++) {
      const p = dv.getInt32((at + i) * 4, true);
      if (p < 0 || p >= clustered || seen[p]) throw new IndexError(`head ${hi}: order is not a permutation`);
      seen[p] = 1;
      order[i] = p;
    }
    at += clustered;
    if (version === 1) {
      heads.push({ k, centroids, starts, order, radius: null, values: null, win: null });
      continue;
    }
    if (headDim % 2 !== 0) throw new IndexError(`odd head_dim ${headDim}`);
    const half = headDim / 2;
    need(k * half + 1, `head ${hi} radii`);
    const radius = floats(k * half, 'radius');
    if (radius.some((r) => r < 0)) throw new IndexError(`head ${hi}: negative radius`);
    const flags = word(at++);
    if (flags > 1) throw new IndexError(`head ${hi}: flags ${flags}`);
    const winWords = window > 0 ? headDim + half + flags * headDim : 0;
    need(flags * k * headDim + winWords, `head ${hi} summaries`);
    const values = flags ? floats(k * headDim, 'value mean') : null;
    let win = null;
    if (window > 0) {
      const centroid = floats(headDim, 'window centroid');
      const r = floats(half, 'window radius');
      if (r.some((x) => x < 0)) throw new IndexError(`head ${hi}: negative radius`);
      win = { centroid, radius: r, value: flags ? floats(headDim, 'window value') : null };
    }
    heads.push({ k, centroids, starts, order, radius, values, win });
  }
  if (at !== total) throw new IndexError(`${(total - at) * 4} trailing bytes`);
  return { n, window, layers, kvHeads, headDim, heads };
}
