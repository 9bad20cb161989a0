// Weight matrices in the engine as f16 or ggml Q8_0 / Q4_0 blocks: which device dtype each stored type
// gets (matrixDType), that the blocks and halves are what the device keeps (memory used = their bytes),
// that the reference computes exactly with the blocks' values, that a GGUF file's Q8_0 / Q4_0 blocks go up
// untouched (the same logits as the safetensors quantized at load) and Q4_K / Q6_K tensors as Q8_0, and
// that KVRAG_WEIGHT_DTYPE takes every device dtype. The error bound against f32 is the parity suite's
// (test/helpers/backend-parity-suite.ts), run for every backend.
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DTYPES, hostEntries } from '../../gpu-runner/engine/backends/dtypes.ts';
import type { Tensor } from '../../gpu-runner/engine/backends/types.ts';
import { createWasmBackend } from '../../gpu-runner/engine/backends/wasm/index.ts';
import { type Engine, loadEngine } from '../../gpu-runner/engine/engine.ts';
import { exportGguf } from '../../gpu-runner/engine/gguf/export.ts';
import type { GgmlLoadType } from '../../gpu-runner/engine/gguf/format.ts';
import { f32ToF16 } from '../../gpu-runner/engine/half.ts';
import { quantBytes } from '../../gpu-runner/engine/quant/blocks.ts';
import { dequantize, quantize } from '../../gpu-runner/engine/quant/codecs.ts';
import { encodeSafetensors } from '../../gpu-runner/engine/safetensors.ts';
import { matrixDType, WEIGHT_DTYPES } from '../../gpu-runner/engine/weights.ts';
import { TINY_DEFAULTS, tinyTensors } from '../../gpu-runner/tools/make-tiny-model.ts';
import { loadConfig } from '../../src/config.ts';
import { rewriteGguf } from '../helpers/gguf.ts';
import { maxAbsDiff, tinyModels } from '../helpers/tiny-model.ts';

const models = tinyModels();
afterAll(() => models.cleanup());
const llama = { arch: 'llama' as const, seed: 3 };
const dir = models.make('llama', llama);
const tokens = (n: number, seed: number) => Array.from({ length: n }, (_, i) => (i * 37 + seed * 11) % 256);
const engines: Engine[] = [];
afterAll(() => {
  for (const e of engines) e.dispose();
});

async function load(model: string, opts: Parameters<typeof loadEngine>[1] = {}): Promise<Engine> {
  const e = await loadEngine(model, opts);
  engines.push(e);
  return e;
}
async function logitsAll(e: Engine, prompt: number[]): Promise<Float32Array> {
  const kv = e.newSequence(prompt.length);
  const out = await e.forward([{ kv, tokens: prompt }], 'all');
  kv.free();
  return out;
}
function matrices(e: Engine): Tensor[] {
  const w = e.model.weights;
  const layers = w.layers.flatMap((l) => [l.q, l.k, l.v, l.o, l.gate, l.up, l.down]);
  return [...new Set([w.embed, w.lmHead, ...layers])];
}

describe('matrixDType: the device dtype of each stored matrix', () => {
  const all = ['f32', 'f16', 'q8_0', 'q4_0'] as const;
  it.each([
    // stored, requested, backend takes, row length → device
    ['F32', undefined, all, 64, 'f32'],
    ['F16', undefined, all, 64, 'f32'],
    ['BF16', undefined, all, 64, 'f32'],
    ['Q8_0', undefined, all, 64, 'q8_0'],
    ['Q4_0', undefined, all, 64, 'q4_0'],
    ['Q4_K', undefined, all, 256, 'q8_0'],
    ['Q6_K', undefined, all, 256, 'q8_0'],
    ['F32', 'q4_0', all, 64, 'q4_0'],
    ['Q4_0', 'q8_0', all, 64, 'q8_0'],
    ['Q8_0', 'f16', all, 64, 'f16'],
    ['F32', 'q8_0', all, 40, 'f32'], // rows of 40 are not whole blocks of 32
    ['Q8_0', undefined, ['f32', 'f16'], 64, 'f32'], // a backend without block kernels
    ['F32', 'f16', ['f32'], 64, 'f32'],
  ] as const)('%s asked as %s → …', (stored, want, takes, row, device) => {
    expect(matrixDType(stored, want, takes, row)).toBe(device);
  });

  it('KVRAG_WEIGHT_DTYPE takes each of them, unset means as stored, others are refused', () => {
    for (const d of WEIGHT_DTYPES) expect(loadConfig({ KVRAG_WEIGHT_DTYPE: d }).weightDType).toBe(d);
    expect(loadConfig({}).weightDType).toBeUndefined();
    expect(() => loadConfig({ KVRAG_WEIGHT_DTYPE: 'q6_k' })).toThrow(/KVRAG_WEIGHT_DTYPE/);
  });
});

describe('the device keeps the dtype it was given', () => {
  it.each(['f16', 'q8_0', 'q4_0'] as const)(
    'wasm, %s: memory used by the weights = their stored bytes',
    async (dt) => {
      const backend = await createWasmBackend({ threads: 1 });
      const mem = backend.kernels.rt.mem;
      const before = mem.used;
      const e = await load(dir, { backend, weightDType: dt });
      const bytes = (t: Tensor) => {
        const entries = hostEntries(t.dtype, t.shape) as number;
        const entryBytes = t.dtype === 'f16' ? 2 : DTYPES[t.dtype].block === 1 ? 4 : 1;
        return Math.ceil((entries * entryBytes) / 64) * 64; // the allocator's 64-byte granules
      };
      const w = e.model.weights;
      const small = [w.norm, ...w.layers.flatMap((l) => [l.inputNorm, l.postNorm]), e.model.invFreq];
      const mats = matrices(e);
      for (const m of mats) expect(m.dtype).toBe(dt);
      const expected = [...mats, ...small].reduce((s, t) => s + bytes(t), 0);
      expect(mem.used - before).toBe(expected);
    },
  );

  it('the reference computes exactly with the blocks: q8_0 weights = f32 weights holding their values', async () => {
    // a copy of the model whose matrices hold dequantize(quantize(matrix))
    const fake = join(models.root, 'fake-q8');
    mkdirSync(fake, { recursive: true });
    for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json'])
      copyFileSync(join(dir, f), join(fake, f));
    const tensors = tinyTensors({ ...TINY_DEFAULTS, ...llama }).map((t) => {
      const data =
        t.shape.length === 2 ? dequantize('Q8_0', quantize('Q8_0', t.data), t.data.length) : t.data;
      return { name: t.name, shape: t.shape, dtype: 'F32' as const, data: new Uint8Array(data.buffer) };
    });
    writeFileSync(join(fake, 'model.safetensors'), encodeSafetensors(tensors));
    const prompt = tokens(30, 1);
    const q8 = await logitsAll(await load(dir, { weightDType: 'q8_0' }), prompt);
    expect(maxAbsDiff(q8, await logitsAll(await load(fake), prompt))).toBe(0);
    expect(maxAbsDiff(q8, await logitsAll(await load(dir), prompt))).toBeGreaterThan(0);
  });
});

describe('GGUF blocks', () => {
  it.each(['Q8_0', 'Q4_0'] as const)(
    'a %s file goes up as stored: the logits of the safetensors quantized at load, on wasm',
    async (type) => {
      const file = join(models.root, `llama-${type}.gguf`);
      exportGguf(dir, file, type);
      const dt = type === 'Q8_0' ? 'q8_0' : 'q4_0';
      const fromFile = await load(file, { backend: await createWasmBackend({ threads: 1 }) });
      for (const m of matrices(fromFile)) expect(m.dtype).toBe(dt);
      const atLoad = await load(dir, { backend: await createWasmBackend({ threads: 1 }), weightDType: dt });
      const prompt = tokens(30, 2);
      expect(maxAbsDiff(await logitsAll(fromFile, prompt), await logitsAll(atLoad, prompt))).toBe(0);
      // asked for f32, the same file is dequantized: the reference's exact product with the blocks
      const f32 = await load(file, { weightDType: 'f32' });
      expect(f32.model.weights.layers[0].q.dtype).toBe('f32');
      const ref = await load(file);
      expect(maxAbsDiff(await logitsAll(f32, prompt), await logitsAll(ref, prompt))).toBe(0);
    },
  );

  it('Q4_K and Q6_K tensors go up as Q8_0 (their values re-quantized)', async () => {
    // K-quants need rows of 256: a model with hidden 256; its embedding stored as Q6_K, MLP as Q4_K
    const wide = models.make('llama-256', {
      ...llama,
      hidden: 256,
      intermediate: 256,
      heads: 4,
      headDim: 64,
    });
    const f32File = join(models.root, 'llama-256.gguf');
    exportGguf(wide, f32File, 'F32');
    const blocks = (type: 'Q4_K' | 'Q6_K', n: number, seed: number) => {
      const out = new Uint8Array(quantBytes(type, n));
      let s = seed;
      for (let i = 0; i < out.length; i++) out[i] = (s = (s * 1103515245 + 12345) >>> 0) >>> 24;
      // finite, small super-block scales: d (and Q4_K's dmin) = 2^-10 as f16
      const bytes = type === 'Q4_K' ? 144 : 210;
      const half = f32ToF16(Float32Array.of(2 ** -10))[0];
      for (let b = 0; b < out.length; b += bytes)
        for (const o of type === 'Q4_K' ? [0, 2] : [208]) {
          out[b + o] = half & 0xff;
          out[b + o + 1] = half >> 8;
        }
      return out;
    };
    const kinds: Record<string, 'Q4_K' | 'Q6_K'> = { token_embd: 'Q6_K', ffn_up: 'Q4_K', ffn_gate: 'Q4_K' };
    const stored = new Map<string, Uint8Array>();
    const file = rewriteGguf(f32File, join(models.root, 'llama-256-k.gguf'), {
      tensors: (ts) =>
        ts.map((t, i) => {
          const type = kinds[t.name.replace(/^blk\.\d+\./, '').replace(/\.weight$/, '')];
          if (!type) return t;
          const data = blocks(
            type,
            t.dims.reduce((a, b) => a * b, 1),
            i + 1,
          );
          stored.set(t.name, data);
          return { ...t, type: type as GgmlLoadType, data: () => data };
        }),
    });
    const e = await load(file);
    const w = e.model.weights;
    expect(w.embed.dtype).toBe('q8_0');
    expect(w.layers[0].up.dtype).toBe('q8_0');
    expect(w.layers[0].q.dtype).toBe('f32');
    // an embedding row as the engine reads it = the Q6_K row re-quantized to Q8_0, exactly
    const b = e.backend;
    const ids = b.upload({ dtype: 'i32', shape: [2], data: Int32Array.of(5, 200) });
    const rows = await b.read(b.gather(w.embed, ids));
    const embed = dequantize('Q6_K', stored.get('token_embd.weight')!, 272 * 256);
    for (const [i, id] of [5, 200].entries()) {
      const row = embed.subarray(id * 256, (id + 1) * 256);
      expect(rows.subarray(i * 256, (i + 1) * 256)).toEqual(dequantize('Q8_0', quantize('Q8_0', row), 256));
    }
    expect(await logitsAll(e, tokens(8, 3))).toSatisfy((l: Float32Array) => l.every(Number.isFinite));
  });
});
