// The artifact's index section (DESIGN.md §4.2), format v3: the clusters alone. Little-endian u32 words:
//   front (codec-header.ts: magic "KVSQ" | version 3 | n | window | layers | kvHeads | headDim)
//   per (layer, kv head): u32 k | labels: ceil((n − window)·b / 32) words, b = bitsFor(k), the cluster of
//   clustered position p in bits [p·b, (p+1)·b) of the word stream (least significant first), the bits
//   past the last label zero.
// The statistics (centroids, pair radii, value means, the window's summary) are the artifact's own K/V
// summarised, so they are not stored: completeIndex (index.ts) derives them from the decoded K/V when a
// squeezed plan first needs the index. A head's members are ascending within their cluster, as the
// builder writes them, so the labels give back its starts/order exactly. On the SmolLM2-135M shape (30
// layers × 3 kv heads, ~45 clusters per 512-token chunk: 6 bits) that is ~68 bytes per token where v2's
// f32 statistics took ~5.5 KB (f16 K/V: 23 KB).
// Sections of format v1/v2 (codec-v2.ts) still read, as complete indexes. parseIndex validates every
// count against the bytes present and the artifact's geometry before it allocates and checks the labels
// name only non-empty clusters: a hostile or corrupt section is refused with IndexError.
import { HEADER_WORDS, IndexError, type IndexGeometry, readFront, writeFront } from './codec-header.ts';
import { parseIndexV2 } from './codec-v2.ts';
import {
  type ClusterIndex,
  clusteredCount,
  type HeadClusters,
  type SqueezedIndex,
  type StoredIndex,
} from './types.ts';

export { IndexError } from './codec-header.ts';

export const INDEX_FORMAT_VERSION = 3;

/** Bits per label for k clusters (0 when there is at most one). */
export const bitsFor = (k: number) => (k <= 1 ? 0 : 32 - Math.clz32(k - 1));

const labelWords = (clustered: number, k: number) => Math.ceil((clustered * bitsFor(k)) / 32);

/** The v3 section of an index (its statistics, if any, are not stored). */
export function encodeIndex(ix: SqueezedIndex | ClusterIndex): Uint8Array {
  const clustered = clusteredCount(ix);
  if (ix.heads.length !== ix.layers * ix.kvHeads) throw new Error('encodeIndex: heads ≠ layers × kvHeads');
  let words = HEADER_WORDS;
  for (const h of ix.heads) words += 1 + labelWords(clustered, h.k);
  const u = new Uint32Array(words);
  writeFront(u, { ...ix, version: INDEX_FORMAT_VERSION });
  let at = HEADER_WORDS;
  for (const h of ix.heads) {
    if (h.order.length !== clustered || h.starts.length !== h.k + 1) throw new Error('encodeIndex: bad head');
    u[at++] = h.k;
    const b = bitsFor(h.k);
    if (b > 0)
      for (let c = 0; c < h.k; c++)
        for (let t = h.starts[c]; t < h.starts[c + 1]; t++) {
          const bit = h.order[t] * b;
          const w = at + (bit >>> 5);
          const off = bit & 31;
          u[w] |= c << off;
          if (off + b > 32) u[w + 1] |= c >>> (32 - off);
        }
    at += labelWords(clustered, h.k);
  }
  return new Uint8Array(u.buffer);
}

/** Parses an index section of any version; `expect` is the artifact's geometry (header n, layers, kvHeads, headDim). */
export function parseIndex(bytes: Uint8Array, expect: IndexGeometry): StoredIndex {
  const front = readFront(bytes, expect);
  if (front.version === 1 || front.version === 2)
    return { kind: 'complete', index: parseIndexV2(bytes, front) };
  if (front.version !== INDEX_FORMAT_VERSION) throw new IndexError(`version ${front.version}`);
  const { n, window, layers, kvHeads, headDim } = front;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const word = (i: number) => dv.getUint32(i * 4, true);
  const clustered = n - window;
  const total = bytes.byteLength / 4;
  const labels = new Uint32Array(clustered);
  let at = HEADER_WORDS;
  const heads: HeadClusters[] = [];
  for (let hi = 0; hi < layers * kvHeads; hi++) {
    if (at + 1 > total) throw new IndexError('truncated in cluster count');
    const k = word(at++);
    if (k > clustered || (clustered > 0 && k === 0))
      throw new IndexError(`head ${hi}: ${k} clusters for ${clustered} keys`);
    const b = bitsFor(k);
    const nw = labelWords(clustered, k);
    if (at + nw > total) throw new IndexError(`truncated in head ${hi}`);
    const count = new Int32Array(k);
    const mask = b === 32 ? 0xffffffff : (1 << b) - 1;
    for (let p = 0; p < clustered && b > 0; p++) {
      const bit = p * b;
      const w = at + (bit >>> 5);
      const off = bit & 31;
      let c = word(w) >>> off;
      if (off + b > 32) c |= word(w + 1) << (32 - off);
      c = (c & mask) >>> 0;
      if (c >= k) throw new IndexError(`head ${hi}: label ${c} of ${k} clusters`);
      labels[p] = c;
      count[c]++;
    }
    if (b === 0) {
      labels.fill(0); // one cluster (k = 1) or none
      count.fill(clustered);
    }
    const used = clustered * b;
    if (used % 32 !== 0 && word(at + nw - 1) >>> (used % 32) !== 0)
      throw new IndexError(`head ${hi}: non-zero bits after the labels`);
    at += nw;
    const starts = new Int32Array(k + 1);
    for (let c = 0; c < k; c++) {
      if (count[c] === 0) throw new IndexError(`head ${hi}: empty cluster ${c}`);
      starts[c + 1] = starts[c] + count[c];
    }
    // members ascending within their cluster (counting sort by label)
    const fill = starts.slice(0, k);
    const order = new Int32Array(clustered);
    for (let p = 0; p < clustered; p++) order[fill[labels[p]]++] = p;
    heads.push({ k, starts, order });
  }
  if (at !== total) throw new IndexError(`${(total - at) * 4} trailing bytes`);
  return { kind: 'clusters', index: { n, window, layers, kvHeads, headDim, heads } };
}
