// Packed chunk KV artifacts at the Backend interface: uploadPackedKV / kvUnpack / freePackedKV. The kernel
// paths (wasm's kv_unpack, and the native backend's addon kernel where the addon is built) and the
// checking layer's host path (reference backend) put the same values in the cache for every dtype, keys re-rotated as rope() would (1e-5: f32 sin/cos of the two); wrong arguments are refused
// with BackendArgumentError naming the op, before anything is written.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNativeBackend } from '../../gpu-runner/engine/backends/native/backend.ts';
import { createReferenceBackend } from '../../gpu-runner/engine/backends/reference/index.ts';
import type { Backend, PackedKV, PackedKVSpec, Tensor } from '../../gpu-runner/engine/backends/types.ts';
import { createWasmBackend } from '../../gpu-runner/engine/backends/wasm/index.ts';
import { BackendArgumentError } from '../../gpu-runner/engine/errors.ts';
import {
  defaultQuant,
  encodeSection,
  isQuantized,
  KV_DTYPES,
  type KVDType,
  sectionLayout,
} from '../../gpu-runner/engine/kv/kv-codec.ts';
import { native } from '../helpers/native.ts';
import { rand, relErr } from '../helpers/wasm-runtime.ts';

const G = { layers: 2, kvHeads: 2, headDim: 16, n: 21 };
const CAP = 40;

/** Sections of a 2-layer artifact laid out one after another with a gap, and their offsets. */
function packed(dtype: KVDType): {
  spec: PackedKVSpec;
  bytes: Uint8Array;
  offsets: { k: number[]; v: number[] };
} {
  const quant = isQuantized(dtype) ? { ...defaultQuant(dtype, G.headDim), keyGroup: 8 } : null;
  const spec = { ...G, dtype, quant };
  const parts: Uint8Array[] = [];
  const offsets = { k: [] as number[], v: [] as number[] };
  let at = 8; // sections need not start at 0
  for (let l = 0; l < G.layers; l++)
    for (const part of ['k', 'v'] as const) {
      const x = rand(G.kvHeads * G.n * G.headDim, 10 * l + (part === 'k' ? 1 : 2), 3);
      const s = encodeSection(dtype, part, spec, quant, x);
      offsets[part].push(at);
      parts.push(s);
      at += s.byteLength + 8;
    }
  const bytes = new Uint8Array(at);
  let o = 8;
  for (const p of parts) {
    bytes.set(p, o);
    o += p.byteLength + 8;
  }
  return { spec, bytes, offsets };
}

let ref: Backend;
let wasm: Backend;
let nat: Backend | null = null;
beforeAll(async () => {
  ref = createReferenceBackend();
  wasm = await createWasmBackend({ threads: 2, splitAll: true });
  if (native.ok) nat = await createNativeBackend({ threads: 2 });
});
afterAll(() => {
  ref.dispose();
  wasm.dispose();
  nat?.dispose();
});

const invFreqOf = (b: Backend): Tensor =>
  b.upload({
    dtype: 'f32',
    shape: [G.headDim / 2],
    data: Float32Array.from({ length: G.headDim / 2 }, (_, i) => 1 / 10000 ** ((2 * i) / G.headDim)),
  });

async function unpacked(b: Backend, dtype: KVDType, pos: number, delta: number) {
  const { spec, bytes, offsets } = packed(dtype);
  const p = b.uploadPackedKV(spec, bytes, offsets);
  const cache = b.createKVCache({ layers: G.layers, kvHeads: G.kvHeads, headDim: G.headDim, capacity: CAP });
  const inv = invFreqOf(b);
  for (let l = 0; l < G.layers; l++) b.kvUnpack(cache, l, pos, p, delta, inv);
  const out = [];
  for (let l = 0; l < G.layers; l++) out.push(await b.kvRead(cache, l, pos, G.n));
  b.freeKVCache(cache);
  b.freePackedKV(p);
  b.free(inv);
  return out;
}

// the native backend where the addon is built (test/unit/native/addon.test.ts fails where it should be)
const kernelPaths: [string, () => Backend][] = [
  ['wasm', () => wasm],
  ...(native.ok ? [['native', () => nat!] as [string, () => Backend]] : []),
];

describe.each(kernelPaths)('packed KV: kernel path (%s) = host path (reference)', (_, kernelBackend) => {
  it.each(KV_DTYPES)('%s, at position 7, keys re-rotated by 7 and by −3', async (dtype) => {
    const kb = kernelBackend();
    expect([ref.caps.kvUnpack, kb.caps.kvUnpack]).toEqual([false, true]);
    for (const delta of [7, -3, 0]) {
      const a = await unpacked(ref, dtype, 7, delta);
      const b = await unpacked(kb, dtype, 7, delta);
      for (let l = 0; l < G.layers; l++) {
        expect(b[l].v).toEqual(a[l].v);
        if (delta === 0) expect(b[l].k).toEqual(a[l].k);
        else expect(relErr(b[l].k, a[l].k)).toBeLessThan(1e-5);
      }
    }
  });

  it('holds the span of the sections only: bytes = first section start to last section end', () => {
    const { spec, bytes, offsets } = packed('int4');
    const kb = kernelBackend();
    const p = kb.uploadPackedKV(spec, bytes, offsets);
    const last = offsets.v[G.layers - 1] + sectionLayout('int4', 'v', spec, spec.quant).bytes;
    expect(p.bytes).toBe(last - 8);
    kb.freePackedKV(p);
  });
});

describe.each([
  ['reference', () => ref],
  ['wasm', () => wasm],
] as const)('packed KV argument checks (%s)', (_, backend) => {
  const refused = (fn: () => unknown, pattern: RegExp) => {
    try {
      fn();
    } catch (err) {
      expect(err).toBeInstanceOf(BackendArgumentError);
      expect((err as Error).message).toMatch(pattern);
      return;
    }
    throw new Error('expected a BackendArgumentError');
  };

  it('refuses bad uploads, mismatched caches, positions past capacity and use after free', () => {
    const b = backend();
    const { spec, bytes, offsets } = packed('int8');
    refused(
      () => b.uploadPackedKV(spec, bytes.subarray(0, bytes.length - 20), offsets),
      /uploadPackedKV.*outside/,
    );
    refused(() => b.uploadPackedKV({ ...spec, quant: null }, bytes, offsets), /needs group sizes/);
    refused(
      () => b.uploadPackedKV({ ...spec, quant: { keyGroup: 8, valueGroup: 5 } }, bytes, offsets),
      /valueGroup/,
    );
    refused(
      () => b.uploadPackedKV(spec, bytes, { k: offsets.k.slice(1), v: offsets.v }),
      /1\/2 section offsets/,
    );
    const p: PackedKV = b.uploadPackedKV(spec, bytes, offsets);
    const inv = invFreqOf(b);
    const other = b.createKVCache({ layers: 2, kvHeads: 1, headDim: 16, capacity: CAP });
    const cache = b.createKVCache({ layers: 2, kvHeads: 2, headDim: 16, capacity: CAP });
    refused(() => b.kvUnpack(other, 0, 0, p, 0, inv), /kvUnpack.*2×2×16 into a 2×1×16 cache/);
    refused(() => b.kvUnpack(cache, 0, CAP - G.n + 1, p, 0, inv), /kvUnpack.*outside capacity/);
    refused(() => b.kvUnpack(cache, 2, 0, p, 0, inv), /kvUnpack.*layer 2/);
    refused(() => b.kvUnpack(cache, 0, 0, p, 0.5, inv), /delta 0.5/);
    const wrongFreq = b.upload({ dtype: 'f32', shape: [4], data: new Float32Array(4) });
    refused(() => b.kvUnpack(cache, 0, 0, p, 0, wrongFreq), /invFreq \[4\]/);
    b.freePackedKV(p);
    refused(() => b.kvUnpack(cache, 0, 0, p, 0, inv), /after freePackedKV/);
    const foreign = (b === ref ? wasm : ref).uploadPackedKV(spec, bytes, offsets);
    refused(() => b.kvUnpack(cache, 0, 0, foreign, 0, inv), /another backend/);
    (b === ref ? wasm : ref).freePackedKV(foreign);
    for (const t of [inv, wrongFreq]) b.free(t);
    b.freeKVCache(other);
    b.freeKVCache(cache);
  });
});
