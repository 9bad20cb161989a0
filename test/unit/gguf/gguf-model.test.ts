// GGUF models through the engine: a GGUF exported by the project reloads with the same logits as the
// safetensors it came from; F16/Q8_0/Q4_0 files give exactly the logits of the f32 model whose weights
// are their dequantized values (each within the codec's per-element bound, quant-codecs.test.ts); the
// tokenizer, chat template and stop ids come from the metadata; fingerprints follow the stored bytes;
// ollama references resolve through a manifest + blob store; unsupported files are refused by name.
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type Engine, loadEngine } from '../../../gpu-runner/engine/engine.ts';
import { FINGERPRINT_FILE, modelFingerprint } from '../../../gpu-runner/engine/fingerprint.ts';
import { exportGguf } from '../../../gpu-runner/engine/gguf/export.ts';
import { ggufToHfRows, hfToGgufRows } from '../../../gpu-runner/engine/gguf/rope-layout.ts';
import { kv } from '../../../gpu-runner/engine/gguf/writer.ts';
import { f16ToF32, f32ToF16 } from '../../../gpu-runner/engine/half.ts';
import { dequantize, quantize } from '../../../gpu-runner/engine/quant/codecs.ts';
import { encodeSafetensors } from '../../../gpu-runner/engine/safetensors.ts';
import { tinyTensors, TINY_DEFAULTS } from '../../../gpu-runner/tools/make-tiny-model.ts';
import { loadServingModel } from '../../../workers/serving-model.ts';
import type { Config } from '../../../src/config.ts';
import { servingModelDir } from '../../../cli/model-dir.ts';
import { rewriteGguf } from '../../helpers/gguf.ts';
import { maxAbsDiff, tinyModels } from '../../helpers/tiny-model.ts';

const models = tinyModels();
afterAll(() => models.cleanup());
const llamaDir = models.make('llama', { arch: 'llama', bias: true, seed: 3 });
const qwenDir = models.make('qwen2', { arch: 'qwen2', seed: 4 });
const file = (name: string) => join(models.root, name);
const text = 'GGUF <|end|> héllo';

async function logits(model: string): Promise<{ logits: Float32Array; engine: Engine }> {
  const engine = await loadEngine(model);
  const kvc = engine.newSequence(64);
  const out = await engine.forward([{ kv: kvc, tokens: engine.encode(text) }], 'all');
  kvc.free();
  return { logits: out, engine };
}

describe('q/k rope layout', () => {
  it('interleaves each head as convert_hf_to_gguf does: GGUF row 2i+j = HF row j·d/2+i, and back', () => {
    // 2 heads of d = 4, one byte per row: HF rows 0..7
    const hf = Uint8Array.from([0, 1, 2, 3, 4, 5, 6, 7]);
    expect([...hfToGgufRows(hf, 8, 4)]).toEqual([0, 2, 1, 3, 4, 6, 5, 7]);
    const d8 = Uint8Array.from({ length: 8 }, (_, i) => i);
    expect([...hfToGgufRows(d8, 8, 8)]).toEqual([0, 4, 1, 5, 2, 6, 3, 7]);
    expect([...ggufToHfRows(hfToGgufRows(d8, 8, 8), 8, 8)]).toEqual([...d8]);
  });
});

describe('exported GGUF (F32) reloads as the same model', () => {
  for (const [arch, dir] of [
    ['llama (biases, llama3 rope scaling → rope_freqs, untied)', llamaDir],
    ['qwen2 (tied, unpermuted q/k)', qwenDir],
  ] as const) {
    it(arch, async () => {
      const out = file(`${arch.split(' ')[0]}-F32.gguf`);
      exportGguf(dir, out, 'F32');
      const a = await logits(dir);
      const b = await logits(out);
      // measured 0: the same f32 weights in the same order; only the rope frequencies take another path
      expect(maxAbsDiff(a.logits, b.logits)).toBeLessThanOrEqual(1e-5);
      // GGUF stores eps as f32
      expect(b.engine.config).toEqual({
        ...a.engine.config,
        rmsNormEps: Math.fround(a.engine.config.rmsNormEps),
        rope: b.engine.config.rope,
      });
      expect(b.engine.encode(text)).toEqual(a.engine.encode(text));
      const chat = [{ role: 'user', content: 'hi <|end|>' }];
      expect(b.engine.encodeChat(chat)).toEqual(a.engine.encodeChat(chat));
      expect(b.engine.stopTokenIds).toEqual(a.engine.stopTokenIds);
      expect(b.engine.decode(b.engine.encode(text))).toBe(text);
      a.engine.dispose();
      b.engine.dispose();
    });
  }
});

describe('BF16 tensors', () => {
  it('read as the BF16 safetensors of the same model', async () => {
    const src = file('bf16-src.gguf');
    exportGguf(llamaDir, src, 'F32');
    // every tensor but rope_freqs rounded to bf16 (nearest even), as make-tiny-model writes BF16
    const bf16 = rewriteGguf(src, file('bf16.gguf'), {
      tensors: (ts) =>
        ts.map((t) => {
          if (t.name === 'rope_freqs.weight') return t;
          return {
            ...t,
            type: 'BF16' as const,
            data: () => {
              const u = new Uint32Array(t.data().slice().buffer);
              const out = new Uint16Array(u.length);
              for (let i = 0; i < u.length; i++) out[i] = (u[i] + 0x7fff + ((u[i] >>> 16) & 1)) >>> 16;
              return new Uint8Array(out.buffer);
            },
          };
        }),
    });
    const ref = await logits(
      models.make('llama-bf16', { arch: 'llama', bias: true, seed: 3, dtype: 'bf16' }),
    );
    const got = await logits(bf16);
    expect(maxAbsDiff(ref.logits, got.logits)).toBeLessThanOrEqual(1e-5);
    ref.engine.dispose();
    got.engine.dispose();
  });
});

/** A copy of the llama model whose matrices hold `roundTrip(matrix)` (what a quantized file decodes to). */
function fakeQuantized(name: string, roundTrip: (x: Float32Array) => Float32Array): string {
  const dir = file(name);
  mkdirSync(dir, { recursive: true });
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json'])
    copyFileSync(join(llamaDir, f), join(dir, f));
  const tensors = tinyTensors({ ...TINY_DEFAULTS, arch: 'llama', bias: true, seed: 3 }).map((t) => {
    const data = t.shape.length === 2 ? roundTrip(t.data) : t.data;
    return { name: t.name, shape: t.shape, dtype: 'F32' as const, data: new Uint8Array(data.buffer) };
  });
  writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(tensors));
  return dir;
}

describe('quantized GGUF reloads as its dequantized weights', () => {
  const cases = [
    ['F16', (x: Float32Array) => f16ToF32(f32ToF16(x))],
    ['Q8_0', (x: Float32Array) => dequantize('Q8_0', quantize('Q8_0', x), x.length)],
    ['Q4_0', (x: Float32Array) => dequantize('Q4_0', quantize('Q4_0', x), x.length)],
  ] as const;
  for (const [type, roundTrip] of cases) {
    it(type, async () => {
      const out = file(`llama-${type}.gguf`);
      exportGguf(llamaDir, out, type);
      const ref = await logits(fakeQuantized(`fake-${type}`, roundTrip));
      const got = await logits(out);
      expect(maxAbsDiff(ref.logits, got.logits)).toBeLessThanOrEqual(1e-5);
      // and it is a different model from the f32 one
      const f32 = await logits(llamaDir);
      expect(maxAbsDiff(f32.logits, got.logits)).toBeGreaterThan(1e-4);
      for (const e of [ref, got, f32]) e.engine.dispose();
    });
  }
});

describe('fingerprints and serving', () => {
  it('follow the bytes as stored, are cached beside the file, and serve the ingest side', () => {
    const f32 = file('fp-F32.gguf');
    const q8 = file('fp-Q8_0.gguf');
    exportGguf(llamaDir, f32, 'F32');
    exportGguf(llamaDir, q8, 'Q8_0');
    const a = modelFingerprint(f32);
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(existsSync(`${f32}${FINGERPRINT_FILE}`)).toBe(true);
    expect(modelFingerprint(f32)).toBe(a);
    expect(modelFingerprint(q8)).not.toBe(a);
    expect(modelFingerprint(llamaDir)).not.toBe(a);
    // same weights, one metadata value changed: another model as far as artifacts go
    const renamed = rewriteGguf(f32, file('fp-renamed.gguf'), {
      meta: (m) => m.set('general.name', kv.str('other')),
    });
    expect(modelFingerprint(renamed)).not.toBe(a);
    const serving = loadServingModel(f32);
    expect(serving.fingerprint).toBe(a);
    expect(serving.tokenizer.encode('abc')).toEqual([97, 98, 99]);
    expect(servingModelDir({ modelDir: 'ollama:qwen2.5:0.5b' } as Config)).toBe('ollama:qwen2.5:0.5b');
    expect(servingModelDir({ modelDir: 'm.gguf' } as Config)).toBe(join(process.cwd(), 'm.gguf'));
  });
});

describe('ollama store', () => {
  const store = file('ollama-models');
  const blobFile = file('llama-ollama.gguf');
  exportGguf(llamaDir, blobFile, 'Q8_0');
  const digest = 'ab'.repeat(32);
  const blob = join(store, 'blobs', `sha256-${digest}`);
  const manifestDir = join(store, 'manifests', 'registry.ollama.ai', 'library', 'tiny');
  mkdirSync(join(store, 'blobs'), { recursive: true });
  mkdirSync(manifestDir, { recursive: true });
  copyFileSync(blobFile, blob);
  const manifest = (layers: object[]) => JSON.stringify({ schemaVersion: 2, layers });
  const modelLayer = {
    mediaType: 'application/vnd.ollama.image.model',
    digest: `sha256:${digest}`,
    size: statSync(blob).size,
  };
  writeFileSync(
    join(manifestDir, 'q8'),
    manifest([
      modelLayer,
      { mediaType: 'application/vnd.ollama.image.template', digest: `sha256:${'cd'.repeat(32)}` },
    ]),
  );
  writeFileSync(join(manifestDir, 'nomodel'), manifest([]));
  writeFileSync(join(manifestDir, 'badsize'), manifest([{ ...modelLayer, size: 5 }]));

  it('loads ollama:NAME:TAG from $OLLAMA_MODELS through the manifest and the blob', async () => {
    const prev = process.env.OLLAMA_MODELS;
    process.env.OLLAMA_MODELS = store;
    try {
      const e = await loadEngine('ollama:tiny:q8');
      const ref = await logits(blobFile);
      const kvc = e.newSequence(64);
      expect(maxAbsDiff(await e.forward([{ kv: kvc, tokens: e.encode(text) }], 'all'), ref.logits)).toBe(0);
      expect(e.fingerprint).toBe(modelFingerprint(blobFile));
      expect(readFileSync(blob).length).toBe(modelLayer.size); // the store is not written into
      expect(existsSync(`${blob}${FINGERPRINT_FILE}`)).toBe(false);
      e.dispose();
      ref.engine.dispose();
      await expect(loadEngine('ollama:tiny')).rejects.toThrow(/no ollama manifest at .*tiny\/latest/);
      await expect(loadEngine('ollama:tiny:nomodel')).rejects.toThrow(
        /expected one application\/vnd.ollama.image.model layer, found 0/,
      );
      await expect(loadEngine('ollama:tiny:badsize')).rejects.toThrow(/the manifest says 5/);
      await expect(loadEngine('ollama:../../etc:passwd')).rejects.toThrow(
        /not a valid ollama model reference/,
      );
    } finally {
      if (prev === undefined) delete process.env.OLLAMA_MODELS;
      else process.env.OLLAMA_MODELS = prev;
    }
  });
});

describe('refusals', () => {
  const base = file('base-F32.gguf');
  exportGguf(llamaDir, base, 'F32');

  it('names an unsupported architecture, tensor type, tokenizer and pre-tokenizer', async () => {
    const phi = rewriteGguf(base, file('phi.gguf'), {
      meta: (m) => m.set('general.architecture', kv.str('phi3')),
    });
    await expect(loadEngine(phi)).rejects.toThrow(
      /phi\.gguf: unsupported GGUF architecture "phi3" \(supported: llama, mistral, qwen2\)/,
    );
    const q50 = rewriteGguf(base, file('q5.gguf'), {
      tensors: (ts) =>
        ts.map((t) =>
          t.name === 'blk.0.attn_v.weight'
            ? {
                ...t,
                type: 'Q4_0' as const,
                data: () => quantize('Q4_0', new Float32Array(t.dims[0] * t.dims[1])),
              }
            : t,
        ),
    });
    // a Q4_0 file loads; the same bytes declared as IQ4_NL (id 20, also 18 bytes per 32) are refused by name
    await expect(loadEngine(q50).then((e) => e.dispose())).resolves.toBeUndefined();
    const buf = readFileSync(q50);
    const at = buf.indexOf(Buffer.from('blk.0.attn_v.weight'));
    buf.writeUInt32LE(20, at + 'blk.0.attn_v.weight'.length + 4 + 16);
    writeFileSync(q50, buf);
    await expect(loadEngine(q50)).rejects.toThrow(
      /tensor "blk.0.attn_v.weight" has type IQ4_NL; kvrag loads F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K/,
    );
    const bert = rewriteGguf(base, file('bert.gguf'), {
      meta: (m) => {
        m.delete('tokenizer.huggingface.json');
        m.set('tokenizer.ggml.model', kv.str('bert'));
      },
    });
    await expect(loadEngine(bert)).rejects.toThrow(
      /tokenizer.ggml.model "bert" is not supported \(gpt2, llama\)/,
    );
    const pre = rewriteGguf(base, file('pre.gguf'), {
      meta: (m) => {
        m.delete('tokenizer.huggingface.json');
        m.set('tokenizer.ggml.pre', kv.str('deepseek-coder'));
      },
    });
    await expect(loadEngine(pre)).rejects.toThrow(/tokenizer.ggml.pre "deepseek-coder" is not supported/);
  });
});

describe('tokenizer from tokenizer.ggml.* metadata', () => {
  it('gpt2 byte-level BPE: the exported vocabulary without tokenizer.huggingface.json encodes the same', async () => {
    const src = file('tok-F32.gguf');
    exportGguf(llamaDir, src, 'F32');
    const plain = rewriteGguf(src, file('tok-plain.gguf'), {
      meta: (m) => m.delete('tokenizer.huggingface.json'),
    });
    const a = await loadEngine(src);
    const b = await loadEngine(plain);
    for (const s of [text, 'line one\n\nline 2: 12345 ok?', '']) expect(b.encode(s)).toEqual(a.encode(s));
    expect(b.encodeChat([{ role: 'user', content: 'x' }])).toEqual(
      a.encodeChat([{ role: 'user', content: 'x' }]),
    );
    a.dispose();
    b.dispose();
  });

  it('llama SentencePiece: highest-score pair first, byte fallback, "▁" spaces', async () => {
    const src = file('spm-src.gguf');
    exportGguf(llamaDir, src, 'F32');
    // 272 rows: <unk>, <s>, </s>, 256 byte tokens, then pieces
    const pieces: [string, number][] = [
      ['▁', -20],
      ['h', -21],
      ['e', -22],
      ['l', -23],
      ['o', -24],
      ['▁h', -1],
      ['ll', -2],
      ['▁he', -3],
      ['llo', -4],
      ['▁hello', -5],
      ['he', -10],
    ];
    const tokens = ['<unk>', '<s>', '</s>'];
    const types = [2, 3, 3];
    const scores = [0, 0, 0];
    for (let b = 0; b < 256; b++) {
      tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
      types.push(6);
      scores.push(0);
    }
    for (const [p, s] of pieces) {
      tokens.push(p);
      types.push(1);
      scores.push(s);
    }
    while (tokens.length < 272) {
      tokens.push(`[PAD${tokens.length}]`);
      types.push(5);
      scores.push(-1000);
    }
    const spm = rewriteGguf(src, file('spm.gguf'), {
      meta: (m) => {
        m.delete('tokenizer.huggingface.json');
        m.delete('tokenizer.ggml.merges');
        m.set('tokenizer.ggml.model', kv.str('llama'));
        m.set('tokenizer.ggml.tokens', kv.strs(tokens));
        m.set('tokenizer.ggml.token_type', kv.i32s(types));
        m.set('tokenizer.ggml.scores', kv.f32s(scores));
        m.set('tokenizer.ggml.bos_token_id', kv.u32(1));
        m.set('tokenizer.ggml.eos_token_id', kv.u32(2));
        m.delete('tokenizer.ggml.eot_token_id');
      },
    });
    const e = await loadEngine(spm);
    const id = (t: string) => tokens.indexOf(t);
    // "▁hello": ▁h (−1), then ll (−2), ▁he (−3), llo (−4), ▁hello (−5); "i" is not a piece → byte 0x69
    expect(e.encode('hello hi')).toEqual([id('▁hello'), id('▁h'), id('<0x69>')]);
    expect(e.decode(e.encode('hello hi'))).toBe('hello hi');
    expect(e.tokenizer.bosToken).toBe('<s>');
    expect(e.stopTokenIds).toEqual([2]);
    e.dispose();
  });
});
