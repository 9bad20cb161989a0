// The parity suite every non-reference backend runs: the same tiny models (Llama and Qwen2 shapes, f32
// and f16 weights) through the real engine give the same logits as `reference` (prefill of every
// position, decode steps, a mixed batch), the same greedy generations, and match the committed PyTorch
// golden fixtures; the engine identities hold on the backend alone; the KV-cache ops and the remaining
// ops agree op by op. Each backend states its tolerances (see its test file).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BLOCK_QUANT } from '../../gpu-runner/engine/backends/dtypes.ts';
import { createReferenceBackend } from '../../gpu-runner/engine/backends/reference/index.ts';
import type { Backend, Tensor } from '../../gpu-runner/engine/backends/types.ts';
import { type Engine, loadEngine } from '../../gpu-runner/engine/engine.ts';
import { computeFingerprint } from '../../gpu-runner/engine/fingerprint.ts';
import { dequantize, quantize } from '../../gpu-runner/engine/quant/codecs.ts';
import type { GoldenManifest } from '../../gpu-runner/tools/make-golden.ts';
import { quantizedActivationBound } from './quant-ref.ts';
import { maxAbsDiff, rmsRel, tinyModels } from './tiny-model.ts';
import { rand, relErr } from './wasm-runtime.ts';

export interface ParityTolerances {
  /** max |Δ| of logits vs reference and vs the PyTorch goldens. */
  logits: number;
  /** max |Δ| of the KV cache after decode steps. */
  kv: number;
  /** max |Δ| of the engine identities on the backend alone (decode = longer prefill, batch = alone). */
  identities: number;
  /** relative error of single ops (relErr). */
  op: number;
  rope: number;
  /** relative error of an f16-weight matmul. */
  f16Matmul: number;
}

const tokens = (n: number, seed: number) => Array.from({ length: n }, (_, i) => (i * 37 + seed * 11) % 256);

async function logitsAll(engine: Engine, prompt: number[]): Promise<Float32Array> {
  const kv = engine.newSequence(prompt.length);
  const out = await engine.forward([{ kv, tokens: prompt }], 'all');
  kv.free();
  return out;
}

/** Registers the parity describes for backend `name` made by `make` (a fresh backend per call). */
export function backendParitySuite(
  label: string,
  backendName: string,
  make: () => Promise<Backend>,
  tol: ParityTolerances,
): void {
  const models = tinyModels();
  afterAll(() => models.cleanup());
  describe(`${label} backend vs reference`, () => {
    const engines: Engine[] = [];
    async function pair(
      name: string,
      opts: Parameters<typeof models.make>[1],
      weightDType: 'f32' | 'f16' = 'f32',
    ) {
      const dir = models.make(name, opts);
      const ref = await loadEngine(dir, { weightDType });
      const dev = await loadEngine(dir, { weightDType, backend: await make() });
      engines.push(ref, dev);
      return { ref, dev };
    }
    afterAll(() => {
      for (const e of engines) e.dispose();
    });

    it.each([
      ['llama', 'f32'],
      ['qwen2', 'f32'],
      ['llama', 'f16'],
    ] as const)(
      '%s (%s weights): prefill logits at every position of a 90-token prompt',
      async (arch, dt) => {
        const { ref, dev } = await pair(arch, { arch, seed: 3 }, dt);
        expect(dev.backend.name).toBe(backendName);
        const prompt = tokens(90, 1);
        const a = await logitsAll(ref, prompt);
        const b = await logitsAll(dev, prompt);
        expect(maxAbsDiff(b, a)).toBeLessThanOrEqual(tol.logits);
      },
    );

    it.each(['q8_0', 'q4_0'] as const)(
      'llama (%s weights): logits within the rounding bound of the f32 reference',
      async (dt) => {
        // The reference computes exactly with the blocks' values, so rounding the weights to `dt` moves
        // the f32 logits by E(dt) (rms relative). Integer kernels also round the activations to Q8_0
        // blocks — the same 8-bit rounding, on blocks less uniform than the weights' (larger max/rms):
        // allowed 2·E(q8_0) against the reference on the same blocks, and E(dt) + 2·E(q8_0) against f32.
        const dir = models.make('llama-quant', { arch: 'llama', seed: 3 });
        const f32 = await loadEngine(dir);
        const ref = await loadEngine(dir, { weightDType: dt });
        const ref8 = dt === 'q8_0' ? ref : await loadEngine(dir, { weightDType: 'q8_0' });
        const dev = await loadEngine(dir, { weightDType: dt, backend: await make() });
        engines.push(f32, ref, dev, ...(ref8 === ref ? [] : [ref8]));
        if (!dev.backend.caps.weightDTypes.includes(dt)) {
          expect(dev.model.weights.layers[0].q.dtype).toBe('f32'); // falls back to f32 weights
          return;
        }
        expect(dev.model.weights.layers[0].q.dtype).toBe(dt);
        const prompt = tokens(40, 2);
        const [a, q, q8, d] = await Promise.all([f32, ref, ref8, dev].map((e) => logitsAll(e, prompt)));
        const eDt = rmsRel(q, a);
        const e8 = rmsRel(q8, a);
        expect(e8).toBeGreaterThan(0);
        expect(rmsRel(d, q)).toBeLessThanOrEqual(2 * e8);
        expect(rmsRel(d, a)).toBeLessThanOrEqual(eDt + 2 * e8);
      },
    );

    it('decode steps and a mixed batch (prefill + decode in one step) match, over caches that held NaN', async () => {
      const { ref, dev } = await pair('llama-gqa', { arch: 'llama', seed: 7, heads: 8, kvHeads: 2 });
      // poisoned: every position of each fresh cache holds NaN before the steps (a cache's memory is not
      // cleared; no reader may touch a position nobody wrote, or NaN · 0 would reach the logits)
      const run = async (e: Engine, poisoned = false) => {
        const kvs = [e.newSequence(40), e.newSequence(40)];
        if (poisoned) {
          const { layers, kvHeads, headDim } = e.config;
          const nan = new Float32Array(kvHeads * 40 * headDim).fill(Number.NaN);
          for (const kv of kvs) {
            for (let l = 0; l < layers; l++) kv.load(l, 0, { k: nan, v: nan });
            kv.truncate(0);
          }
        }
        const outs: Float32Array[] = [];
        outs.push(
          await e.forward([
            { kv: kvs[0], tokens: tokens(12, 2) },
            { kv: kvs[1], tokens: tokens(3, 3) },
          ]),
        );
        for (let s = 0; s < 4; s++) {
          outs.push(
            await e.forward([
              { kv: kvs[0], tokens: [s + 5] },
              { kv: kvs[1], tokens: [s, s + 1, s + 2] },
            ]),
          );
        }
        const kvState = await kvs[1].read(1, 0, 15);
        for (const kv of kvs) kv.free();
        return { outs, kvState };
      };
      const r = await run(ref);
      const d = await run(dev);
      const p = await run(dev, true);
      r.outs.forEach((o, i) => {
        expect(maxAbsDiff(d.outs[i], o)).toBeLessThanOrEqual(tol.logits);
        expect(maxAbsDiff(p.outs[i], d.outs[i])).toBeLessThanOrEqual(tol.identities);
      });
      expect(maxAbsDiff(d.kvState.k, r.kvState.k)).toBeLessThanOrEqual(tol.kv);
      expect(maxAbsDiff(d.kvState.v, r.kvState.v)).toBeLessThanOrEqual(tol.kv);
    });

    it('the engine identities hold on the backend alone (decode = longer prefill, batch = each alone)', async () => {
      const { dev } = await pair('llama-identities', { arch: 'llama', seed: 11 });
      const last = async (prompt: number[]) => {
        const kv = dev.newSequence(40);
        const out = await dev.forward([{ kv, tokens: prompt }]);
        kv.free();
        return out;
      };
      const prompt = tokens(21, 1);
      const kv = dev.newSequence(40);
      await dev.forward([{ kv, tokens: prompt.slice(0, 20) }]);
      const decoded = await dev.forward([{ kv, tokens: prompt.slice(20) }]);
      kv.free();
      expect(maxAbsDiff(decoded, await last(prompt))).toBeLessThanOrEqual(tol.identities);
      const prompts = [tokens(5, 2), tokens(13, 3), tokens(1, 4)];
      const kvs = prompts.map(() => dev.newSequence(40));
      const batched = await dev.forward(prompts.map((p, i) => ({ kv: kvs[i], tokens: p })));
      const vocab = dev.config.vocabSize;
      for (let i = 0; i < prompts.length; i++) {
        expect(
          maxAbsDiff(batched.subarray(i * vocab, (i + 1) * vocab), await last(prompts[i])),
        ).toBeLessThanOrEqual(tol.identities);
      }
      for (const k of kvs) k.free();
    });

    it('greedy generation produces the same tokens', async () => {
      const { ref, dev } = await pair('qwen2-gen', { arch: 'qwen2', seed: 9 });
      const req = { prompt: tokens(20, 4), maxTokens: 24, stopTokenIds: [] };
      const [a] = await ref.generate([req]);
      const [b] = await dev.generate([req]);
      expect(b.tokens).toEqual(a.tokens);
      expect(b.tokens.length).toBe(24);
    });

    it('matches the committed PyTorch golden logits (within the logits tolerance)', async () => {
      const fixtures = join(import.meta.dirname, '../fixtures/engine');
      const manifest = JSON.parse(readFileSync(join(fixtures, 'golden.json'), 'utf8')) as GoldenManifest;
      const backend = await make();
      try {
        for (const v of manifest.variants) {
          const dir = models.make(v.name, {
            arch: v.arch,
            dtype: v.dtype,
            seed: v.seed,
            bias: v.bias ?? false,
          });
          expect(computeFingerprint(dir).fingerprint).toBe(v.fingerprint); // the fixture's exact model
          const engine = await loadEngine(dir, { backend });
          const b = readFileSync(join(fixtures, v.file));
          const golden = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
          let o = 0;
          for (const p of manifest.prompts) {
            const got = await logitsAll(engine, p);
            expect(maxAbsDiff(got, golden.subarray(o, o + got.length))).toBeLessThanOrEqual(tol.logits);
            o += got.length;
          }
          expect(o).toBe(golden.length);
          engine.model.dispose();
        }
      } finally {
        backend.dispose();
      }
    });
  });

  describe(`${label} backend ops vs reference`, () => {
    let dev: Backend;
    const ref = createReferenceBackend();
    beforeAll(async () => {
      dev = await make();
    });
    afterAll(() => dev.dispose());

    const both = <T>(f: (b: Backend) => T): [T, T] => [f(ref), f(dev)];
    async function same(t: [Tensor, Tensor], bound = tol.op): Promise<void> {
      const [a, b] = [await ref.read(t[0]), await dev.read(t[1])];
      expect(t[1].shape).toEqual(t[0].shape);
      expect(relErr(b, a)).toBeLessThanOrEqual(bound);
      ref.free(t[0]);
      dev.free(t[1]);
    }

    it('softmax, argmax, sliceRows, gather of activations, rope with position deltas', async () => {
      const x = rand(7 * 48, 1, 4);
      const [xr, xw] = both((b) => b.upload({ dtype: 'f32', shape: [7, 48], data: x }));
      await same(both((b) => b.softmax(b === ref ? xr : xw)));
      const am = both((b) => b.argmax(b === ref ? xr : xw));
      expect(await dev.readInt(am[1])).toEqual(await ref.readInt(am[0]));
      await same(
        both((b) => b.sliceRows(b === ref ? xr : xw, 2, 4)),
        0,
      );
      const ids = both((b) => b.upload({ dtype: 'i32', shape: [3], data: Int32Array.from([6, 0, 6]) }));
      await same(
        both((b) => b.gather(b === ref ? xr : xw, b === ref ? ids[0] : ids[1])),
        0,
      );
      const pos = both((b) =>
        b.upload({ dtype: 'i32', shape: [7], data: Int32Array.from([0, -5, 9, 300, -1000, 4, 7]) }),
      );
      const inv = both((b) => b.upload({ dtype: 'f32', shape: [8], data: rand(8, 2).map(Math.abs) }));
      await same(
        both((b) => (b === ref ? b.rope(xr, pos[0], inv[0], 16) : b.rope(xw, pos[1], inv[1], 16))),
        tol.rope,
      );
      expect(() =>
        dev.gather(xw, dev.upload({ dtype: 'i32', shape: [1], data: Int32Array.from([7]) })),
      ).toThrow(/outside/);
      dev.free(xw);
      expect(() => dev.softmax(xw)).toThrow(/after free/);
    });

    it('f16 weights with subnormals, zeros and (separately) values ≥ 64: matmul and gather match', async () => {
      const [N, K] = [12, 40];
      const small = new Uint16Array(N * K);
      for (let i = 0; i < small.length; i++)
        small[i] = ((i * 2654435761) % 0x7c00) | (i % 3 === 0 ? 0x8000 : 0);
      for (let i = 0; i < small.length; i += 7) small[i] = (i * 31) % 0x400; // subnormals and zeros
      for (let i = 0; i < small.length; i++) if (((small[i] >> 10) & 0x1f) > 20) small[i] &= 0x83ff; // |w| < 64
      const large = small.slice();
      large[5] = 0x5a00; // 192: cannot be pre-scaled, stays IEEE
      for (const bits of [small, large]) {
        for (const M of [1, 5]) {
          const x = rand(M * K, M);
          const y = both((b) =>
            b.matmul(
              b.upload({ dtype: 'f32', shape: [M, K], data: x }),
              b.upload({ dtype: 'f16', shape: [N, K], data: bits }),
            ),
          );
          await same(y, tol.f16Matmul);
        }
        const ids = Int32Array.from([0, 11, 4]);
        await same(
          both((b) =>
            b.gather(
              b.upload({ dtype: 'f16', shape: [N, K], data: bits }),
              b.upload({ dtype: 'i32', shape: [3], data: ids }),
            ),
          ),
          0,
        );
      }
    });

    it('q8_0 / q4_0 weights: gathered rows equal the reference, matmul within the activation rounding', async () => {
      // 37 rows: not a whole number of the native packing's 16-row groups
      const [N, K] = [37, 64];
      for (const dt of ['q8_0', 'q4_0'] as const) {
        if (!dev.caps.weightDTypes.includes(dt)) continue;
        const data = quantize(BLOCK_QUANT[dt], rand(N * K, 9));
        const w = both((b) => b.upload({ dtype: dt, shape: [N, K], data }));
        const ids = both((b) => b.upload({ dtype: 'i32', shape: [4], data: Int32Array.of(0, 36, 17, 16) }));
        await same(
          both((b) => (b === ref ? b.gather(w[0], ids[0]) : b.gather(w[1], ids[1]))),
          0,
        );
        const wf = dequantize(BLOCK_QUANT[dt], data, N * K);
        const bias = rand(N, 5);
        for (const M of [1, 5]) {
          const x = rand(M * K, M + 3);
          const y = both((b) => {
            const xt = b.upload({ dtype: 'f32', shape: [M, K], data: x });
            const bt = b.upload({ dtype: 'f32', shape: [N], data: bias });
            return b.matmul(xt, b === ref ? w[0] : w[1], bt);
          });
          const [a, d] = [await ref.read(y[0]), await dev.read(y[1])];
          const bound = quantizedActivationBound(x, wf, M, N, K);
          for (let i = 0; i < M * N; i++) expect(Math.abs(d[i] - a[i])).toBeLessThanOrEqual(bound[i]);
        }
      }
    });

    it('KV cache: kvWrite/kvRead/kvLoad/kvGather agree, writes beyond capacity throw', async () => {
      const spec = { layers: 2, kvHeads: 3, headDim: 8, capacity: 10 };
      const [cr, cw] = both((b) => b.createKVCache(spec));
      const k = rand(4 * 24, 5);
      const v = rand(4 * 24, 6);
      for (const b of [ref, dev]) {
        const c = b === ref ? cr : cw;
        const kt = b.upload({ dtype: 'f32', shape: [4, 24], data: k });
        const vt = b.upload({ dtype: 'f32', shape: [4, 24], data: v });
        b.kvWrite(1, kt, vt, [{ cache: c, row: 1, count: 3, pos: 5 }]);
        b.kvLoad(c, 0, 2, { k: rand(3 * 2 * 8, 7), v: rand(3 * 2 * 8, 8) });
        expect(() => b.kvWrite(0, kt, vt, [{ cache: c, row: 0, count: 4, pos: 8 }])).toThrow(/capacity/);
      }
      // the positions written (a cache's other positions hold whatever its memory held: nothing reads them)
      for (const [layer, start, count] of [
        [0, 2, 2],
        [1, 5, 3],
      ]) {
        const a = await ref.kvRead(cr, layer, start, count);
        const w = await dev.kvRead(cw, layer, start, count);
        expect(w.k).toEqual(a.k);
        expect(w.v).toEqual(a.v);
        const ga = ref.kvGather(cr, layer, start, count);
        const gw = dev.kvGather(cw, layer, start, count);
        await same([ga.k, gw.k], 0);
        await same([ga.v, gw.v], 0);
      }
      dev.freeKVCache(cw);
      await expect(dev.kvRead(cw, 0, 0, 1)).rejects.toThrow(/freeKVCache/);
    });
  });
}
