// `kvrag bench kv-load [--tokens 8192] [--chunk-tokens 512] [--layers 30] [--kv-heads 3] [--head-dim 64]
//   [--artifact-dtype f16,int8,int4] [--runs 5] [--threads N] [--backend auto|native|wasm] [--json]`
// The load path of chunk KV artifacts alone, at SmolLM2-135M's KV shape by default: a context of --tokens
// tokens in chunks of --chunk-tokens, each chunk's artifact (synthetic post-RoPE keys with outlier
// channels, values of mixed scale; no squeezed index) taken from host memory into one sequence's cache on
// a CPU backend with the packed-KV kernels (--backend: auto, what the runner picks — native where its addon
// loads, else wasm) at its offset, keys re-rotated there. Per dtype, side by side in one run (median of
// --runs after one uncounted warm-up, the paths interleaved so machine noise hits all alike):
//   verify   header and every section's crc32 (ArtifactStore)
//   upload   the sections as stored into device memory (Backend.uploadPackedKV: one copy)
//   unpack   widen / dequantize and re-rotate into the cache (Backend.kvUnpack, the kv_unpack kernel)
//   before   what loading did before kvUnpack: decode on the host (TypeScript), kvLoad into a cache of its
//            own, then kvGather → rope → kvWrite into the sequence (verify not included)
//   memcpy   copying the same artifact bytes on the host (Uint8Array.set), the bandwidth peer
//   object   the same artifacts from a filesystem object store onto the device (no unpack), every one asked
//            for at once: read layer by layer straight into device memory and checked there (now), and
//            read whole into a fresh buffer, verified and uploaded (before) — bench/_kv-object-load.ts
// ms/MiB is per MiB of artifact bytes read; maxDiff is the largest |before − kvUnpack| over the cache
// (the two paths must agree: 0 for values, f32 rounding of the rotation for keys).
import { availableParallelism } from 'node:os';
import type { Backend, KVCache, PackedKV } from '../gpu-runner/engine/backends/types.ts';
import { createBackend, resolveBackendName } from '../gpu-runner/engine/backends/registry.ts';
import {
  type ArtifactMeta,
  decodeLayers,
  encodeArtifact,
  KV_DTYPES,
  type KVDType,
  packedSpec,
  type VerifiedArtifact,
  verifyArtifact,
} from '../gpu-runner/engine/kv/artifact-format.ts';
import { copyRotated } from '../gpu-runner/engine/kv/rerotate.ts';
import { numberOption, parseOptions, UsageError } from '../cli/args.ts';
import { type ObjectLoad, objectLoad } from './_kv-object-load.ts';
import { type Cell, emit, formatTable } from './_report.ts';

export interface KvLoadRow {
  dtype: KVDType;
  /** artifact bytes of the whole context */
  bytes: number;
  verifyMs: number;
  uploadMs: number;
  unpackMs: number;
  /** verify + upload + unpack */
  loadMs: number;
  msPerMiB: number;
  beforeMs: number;
  memcpyMs: number;
  maxDiff: number;
  /** object store → device, now and before (see the header); ms/MiB of what each read */
  objectMs: number;
  objectMsPerMiB: number;
  objectBeforeMs: number;
  objectBeforeMsPerMiB: number;
}

export interface KvLoadResult {
  backend: string;
  threads: number;
  shape: { tokens: number; chunkTokens: number; layers: number; kvHeads: number; headDim: number };
  runs: number;
  rows: KvLoadRow[];
}

const mib = (b: number) => b / (1 << 20);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];

export function kvLoadTable(r: KvLoadResult): string {
  const s = r.shape;
  return [
    `KV artifact load — ${r.backend} backend, ${r.threads} threads; ${s.tokens} tokens in chunks of ${s.chunkTokens}, ${s.layers} layers × ${s.kvHeads} kv heads × ${s.headDim}; median of ${r.runs}; times in ms`,
    formatTable(
      [
        'dtype',
        'MiB',
        'verify',
        'upload',
        'unpack',
        'load',
        'ms/MiB',
        'before',
        'before/load',
        'memcpy',
        'maxDiff',
        'object',
        'ms/MiB',
        'object before',
        'ms/MiB',
        'before/now',
      ],
      r.rows.map((x): Cell[] => [
        x.dtype,
        mib(x.bytes),
        x.verifyMs,
        x.uploadMs,
        x.unpackMs,
        x.loadMs,
        x.msPerMiB,
        x.beforeMs,
        x.beforeMs / (x.unpackMs + x.uploadMs),
        x.memcpyMs,
        x.maxDiff.toExponential(1),
        x.objectMs,
        x.objectMsPerMiB,
        x.objectBeforeMs,
        x.objectBeforeMsPerMiB,
        x.objectBeforeMs / x.objectMs,
      ]),
    ),
  ].join('\n');
}

/** Deterministic keys with two outlier channels and a slow drift, values of mixed scale (mulberry32). */
function synthetic(
  n: number,
  kvHeads: number,
  d: number,
  seed: number,
): { k: Float32Array; v: Float32Array } {
  let s = seed >>> 0;
  const rnd = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  };
  const size = kvHeads * n * d;
  const k = new Float32Array(size);
  const v = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    const c = i % d;
    k[i] = (c === 3 || c === d / 2 + 3 ? 12 : 1) * rnd() + (c === d - 1 ? 4 : 0);
    v[i] = (1 + (Math.floor(i / d) % 4)) * rnd();
  }
  return { k, v };
}

async function time(b: Backend, fn: () => void | Promise<void>): Promise<number> {
  const t = performance.now();
  await fn();
  await b.sync();
  return performance.now() - t;
}

export async function run(args: string[]): Promise<number> {
  const { values } = parseOptions(args, {
    json: { type: 'boolean', default: false },
    tokens: { type: 'string' },
    'chunk-tokens': { type: 'string' },
    layers: { type: 'string' },
    'kv-heads': { type: 'string' },
    'head-dim': { type: 'string' },
    'artifact-dtype': { type: 'string', default: 'f16,int8,int4' },
    runs: { type: 'string' },
    threads: { type: 'string' },
    backend: { type: 'string', default: 'auto' },
  });
  if (!['auto', 'native', 'wasm'].includes(values.backend ?? ''))
    throw new UsageError(`--backend: "${values.backend}" (auto, native, wasm)`);
  const shape = {
    tokens: numberOption('tokens', values.tokens, 8192),
    chunkTokens: numberOption('chunk-tokens', values['chunk-tokens'], 512),
    layers: numberOption('layers', values.layers, 30),
    kvHeads: numberOption('kv-heads', values['kv-heads'], 3),
    headDim: numberOption('head-dim', values['head-dim'], 64),
  };
  if (shape.tokens % shape.chunkTokens !== 0 || shape.headDim % 2 !== 0)
    throw new UsageError('--tokens must be a whole number of chunks and --head-dim even');
  const dtypes = (values['artifact-dtype'] ?? '').split(',') as KVDType[];
  for (const d of dtypes)
    if (!(KV_DTYPES as readonly string[]).includes(d))
      throw new UsageError(`--artifact-dtype: unknown dtype "${d}" (${KV_DTYPES.join(', ')})`);
  const runs = numberOption('runs', values.runs, 5);
  const threads = numberOption('threads', values.threads, availableParallelism());
  const b = await createBackend(await resolveBackendName(values.backend as 'auto' | 'native' | 'wasm'), {
    threads,
  });
  const { layers, kvHeads, headDim, chunkTokens: n } = shape;
  const chunks = shape.tokens / n;
  const d2 = headDim / 2;
  const invFreq = b.upload({
    dtype: 'f32',
    shape: [d2],
    data: Float32Array.from({ length: d2 }, (_, i) => 1 / 10000 ** ((2 * i) / headDim)),
  });
  const spec = { layers, kvHeads, headDim, capacity: shape.tokens };
  const seq = b.createKVCache(spec);
  const ref = b.createKVCache(spec);
  const objects = new Map<KVDType, ObjectLoad>();
  try {
    const data = Array.from({ length: chunks }, (_, c) =>
      Array.from({ length: layers }, (_, l) => synthetic(n, kvHeads, headDim, c * 1000 + l)),
    );
    const artifacts = new Map(
      dtypes.map((dtype) => [
        dtype,
        data.map((layerKV, c) => {
          const meta: ArtifactMeta = {
            fingerprint: 'b'.repeat(64),
            tokenizerHash: 'bench',
            dtype,
            tokenIds: Array.from({ length: n }, (_, i) => (c * n + i) % 256),
            layers,
            kvHeads,
            headDim,
            rope: { theta: 10000, scaling: null },
          };
          return encodeArtifact(meta, layerKV);
        }),
      ]),
    );
    const rows: KvLoadRow[] = [];
    type Sample = Omit<KvLoadRow, 'dtype' | 'bytes' | 'msPerMiB' | 'objectMsPerMiB' | 'objectBeforeMsPerMiB'>;
    const samples = new Map(dtypes.map((dt) => [dt, [] as Sample[]]));
    for (const [dtype, arts] of artifacts)
      objects.set(dtype, await objectLoad(b, { layers, kvHeads, headDim, rope: { theta: 10000 } }, arts));
    const sink = new Uint8Array(Math.max(...[...artifacts.values()].map((as) => as[0].byteLength)) * chunks);
    // run −1 warms up (JIT, first touch of the memory) and is not counted
    for (let r = -1; r < runs; r++) {
      for (const dtype of r % 2 ? [...dtypes].reverse() : dtypes) {
        const arts = artifacts.get(dtype)!;
        let verified: VerifiedArtifact[] = [];
        let packed: PackedKV[] = [];
        const verifyMs = await time(b, () => {
          verified = arts.map((a) => verifyArtifact(a));
        });
        const uploadMs = await time(b, () => {
          packed = verified.map((a) =>
            b.uploadPackedKV(packedSpec(a.header), a.bytes, {
              k: a.header.sections.k.map((s) => s.offset),
              v: a.header.sections.v.map((s) => s.offset),
            }),
          );
        });
        const unpackMs = await time(b, () => {
          for (const [c, p] of packed.entries())
            for (let l = 0; l < layers; l++) b.kvUnpack(seq, l, c * n, p, c * n, invFreq);
        });
        for (const p of packed) b.freePackedKV(p);
        const beforeMs = await time(b, () => beforePath(b, verified, invFreq, ref, n));
        let at = 0;
        const memcpyMs = await time(b, () => {
          for (const a of arts) {
            sink.set(a, at);
            at += a.byteLength;
          }
        });
        const maxDiff = r === 0 ? await maxAbsDiff(b, seq, ref, layers, shape.tokens) : 0;
        const obj = objects.get(dtype)!;
        const objectMs = await time(b, obj.now);
        const objectBeforeMs = await time(b, obj.before);
        if (r < 0) continue;
        samples.get(dtype)!.push({
          verifyMs,
          uploadMs,
          unpackMs,
          loadMs: verifyMs + uploadMs + unpackMs,
          beforeMs,
          memcpyMs,
          maxDiff,
          objectMs,
          objectBeforeMs,
        });
      }
    }
    for (const dtype of dtypes) {
      const xs = samples.get(dtype)!;
      const bytes = artifacts.get(dtype)!.reduce((s, a) => s + a.byteLength, 0);
      const m = (f: (x: (typeof xs)[number]) => number) => median(xs.map(f));
      const loadMs = m((x) => x.loadMs);
      rows.push({
        dtype,
        bytes,
        verifyMs: m((x) => x.verifyMs),
        uploadMs: m((x) => x.uploadMs),
        unpackMs: m((x) => x.unpackMs),
        loadMs,
        msPerMiB: loadMs / mib(bytes),
        beforeMs: m((x) => x.beforeMs),
        memcpyMs: m((x) => x.memcpyMs),
        maxDiff: Math.max(...xs.map((x) => x.maxDiff)),
        objectMs: m((x) => x.objectMs),
        objectMsPerMiB: m((x) => x.objectMs) / mib(objects.get(dtype)!.bytes.now),
        objectBeforeMs: m((x) => x.objectBeforeMs),
        objectBeforeMsPerMiB: m((x) => x.objectBeforeMs) / mib(objects.get(dtype)!.bytes.before),
      });
    }
    const result: KvLoadResult = { backend: b.name, threads, shape, runs, rows };
    emit(values.json ?? false, result, () => kvLoadTable(result));
    return 0;
  } finally {
    for (const o of objects.values()) o.dispose();
    b.freeKVCache(seq);
    b.freeKVCache(ref);
    b.free(invFreq);
    b.dispose();
  }
}

/** The load path before kvUnpack: host decode, kvLoad into the artifact's own cache, copy re-rotated. */
function beforePath(
  b: Backend,
  arts: readonly VerifiedArtifact[],
  invFreq: Parameters<typeof copyRotated>[1],
  dst: KVCache,
  n: number,
): void {
  for (const [c, a] of arts.entries()) {
    const h = a.header;
    const own = b.createKVCache({ layers: h.layers, kvHeads: h.kvHeads, headDim: h.headDim, capacity: n });
    decodeLayers(a).forEach((block, l) => {
      b.kvLoad(own, l, 0, block);
    });
    copyRotated(b, invFreq, { src: own, srcStart: 0, count: n, dst, dstPos: c * n });
    b.freeKVCache(own);
  }
}

async function maxAbsDiff(
  b: Backend,
  x: KVCache,
  y: KVCache,
  layers: number,
  tokens: number,
): Promise<number> {
  let m = 0;
  for (let l = 0; l < layers; l++) {
    const [p, q] = [await b.kvRead(x, l, 0, tokens), await b.kvRead(y, l, 0, tokens)];
    for (const part of ['k', 'v'] as const)
      for (let i = 0; i < p[part].length; i++) m = Math.max(m, Math.abs(p[part][i] - q[part][i]));
  }
  return m;
}
