// Layer-wise reading of one artifact's K/V sections from a lower tier (disk, object store) straight into
// the memory that keeps them (EngineTier: the device memory reserved for the artifact), in layer order:
// k[0] v[0] k[1] v[1] … as the format lays them out, several layers per read (at least READ_BYTES, so an
// object store is not sent a request per section). Each read is checked where it landed — every section's
// crc32 and the zero padding between — before its layers are declared ready, so a consumer can decode
// layer l while layers after it are still on their way. Reads of one artifact run one after another; a
// refused or missing part rejects every layer not yet ready and `done` — after `onRefused` has finished,
// so a consumer that recomputes the artifact writes it back only once the refused copy is gone (else the
// tier's delete of the bad copy could land after, and remove, the good one).
import { ArtifactError, type ArtifactHeader, checkSection, type SectionRef } from './artifact-format.ts';

/** Bytes one read asks for at least by default (whole layers; the last read takes what is left). */
export const READ_BYTES = 1 << 20;

export interface LayerwiseRead {
  /** Resolves when layer l's K and V are in place and verified. */
  ready(layer: number): Promise<void>;
  /** Resolves when every layer is; rejects with the first failure (ArtifactError when refused). */
  done: Promise<void>;
}

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
  reject(err: unknown): void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => {}); // a layer nobody waits for may fail without an unhandled rejection
  return { promise, resolve, reject };
}

/**
 * Groups of consecutive layers, each read as one byte range [start, end) of the artifact. Layers whose
 * sections do not lie in the format's order (k[l] < v[l] < k[l + 1]) make one group of the whole span.
 */
export function layerGroups(
  h: ArtifactHeader,
  from: number,
  readBytes = READ_BYTES,
): { layers: number[]; start: number; end: number }[] {
  const end = (r: SectionRef) => r.offset + r.bytes;
  const ordered = h.sections.k.every(
    (k, l) => k.offset >= (l === 0 ? from : end(h.sections.v[l - 1])) && h.sections.v[l].offset >= end(k),
  );
  const all = h.sections.k.map((_, l) => l);
  if (!ordered) {
    const last = Math.max(...[...h.sections.k, ...h.sections.v].map(end));
    return [{ layers: all, start: from, end: last }];
  }
  const groups: { layers: number[]; start: number; end: number }[] = [];
  let start = from;
  let layers: number[] = [];
  for (const l of all) {
    layers.push(l);
    const stop = end(h.sections.v[l]);
    if (stop - start >= readBytes || l === all.length - 1) {
      groups.push({ layers, start, end: stop });
      start = stop;
      layers = [];
    }
  }
  return groups;
}

/**
 * Reads the sections of `h` into `target` (which holds the artifact's bytes [from, from + target.length))
 * through `read` (bytes [offset, offset + dst.length) of the artifact into dst; false when gone).
 */
export function readLayerwise(
  h: ArtifactHeader,
  from: number,
  target: Uint8Array,
  read: (offset: number, dst: Uint8Array) => Promise<boolean>,
  readBytes = READ_BYTES,
  onRefused: (err: ArtifactError) => Promise<void> = async () => {},
): LayerwiseRead {
  const gates = h.sections.k.map(() => deferred());
  const run = async () => {
    for (const g of layerGroups(h, from, readBytes)) {
      const dst = target.subarray(g.start - from, g.end - from);
      if (!(await read(g.start, dst)))
        throw new ArtifactError('truncated', `bytes ${g.start}..${g.end} could not be read`);
      // sections in this range, in offset order, and the padding around them
      const refs = g.layers
        .flatMap((l) => [h.sections.k[l], h.sections.v[l]])
        .sort((a, b) => a.offset - b.offset);
      let at = g.start;
      for (const r of refs) {
        for (let i = at; i < r.offset; i++)
          if (target[i - from] !== 0) throw new ArtifactError('checksum', `non-zero padding at byte ${i}`);
        checkSection(r, target.subarray(r.offset - from, r.offset - from + r.bytes), 'section');
        at = r.offset + r.bytes;
      }
      for (const l of g.layers) gates[l].resolve();
    }
  };
  const done = run().catch(async (err: unknown) => {
    if (err instanceof ArtifactError) await onRefused(err).catch(() => {});
    throw err;
  });
  done.catch((err: unknown) => {
    for (const g of gates) g.reject(err);
  });
  return {
    ready: (layer) => {
      const g = gates[layer];
      if (!g) return Promise.reject(new RangeError(`layer ${layer} of ${gates.length}`));
      return g.promise;
    },
    done,
  };
}
