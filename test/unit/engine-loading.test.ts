// Loading model directories: config variants, and corrupted or truncated files failing with a message
// that names the file and the problem.
import {
  copyFileSync,
  cpSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { basename, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadEngine } from '../../gpu-runner/engine/engine.ts';
import { FINGERPRINT_FILE, modelFingerprint } from '../../gpu-runner/engine/fingerprint.ts';
import { parseModelConfig } from '../../gpu-runner/engine/model-config.ts';
import { ropeInvFreq } from '../../gpu-runner/engine/rope.ts';
import { tinyConfigJson, TINY_DEFAULTS } from '../../gpu-runner/tools/make-tiny-model.ts';
import { tinyModels } from '../helpers/tiny-model.ts';

const models = tinyModels();
afterAll(() => models.cleanup());

let n = 0;
/** A fresh copy of a tiny model to damage. */
function copy(opts: { shards?: number } = {}): string {
  const src = models.make(`src-${opts.shards ?? 1}`, { arch: 'llama', seed: 2, shards: opts.shards ?? 1 });
  const dst = join(models.root, `copy-${n++}`);
  cpSync(src, dst, { recursive: true });
  rmSync(join(dst, FINGERPRINT_FILE), { force: true });
  return dst;
}

/** Rewrites the JSON header of a safetensors file (same length budget not required). */
function editHeader(
  path: string,
  edit: (h: Record<string, { data_offsets: number[]; shape: number[]; dtype: string }>) => void,
) {
  const buf = readFileSync(path);
  const len = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + len).toString());
  edit(header);
  const json = Buffer.from(JSON.stringify(header));
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(path, Buffer.concat([head, json, buf.subarray(8 + len)]));
}

describe('config.json', () => {
  const base = tinyConfigJson({ ...TINY_DEFAULTS, arch: 'llama' });

  it('reads llama3 rope scaling, eos lists and explicit head_dim', () => {
    const c = parseModelConfig({ ...base, head_dim: 32 });
    expect(c.architecture).toBe('llama');
    expect(c.headDim).toBe(32);
    expect(c.eosTokenIds).toEqual([264, 257]);
    expect(c.rope.scaling.type).toBe('llama3');
    // llama3: the highest frequency is kept, the lowest divided by the factor
    const plain = ropeInvFreq({ theta: 10000, scaling: { type: 'default' } }, 16);
    const scaled = ropeInvFreq(c.rope, 16);
    expect(scaled[0]).toBe(plain[0]);
    expect(scaled[7]).toBeCloseTo(plain[7] / 8, 12);
    expect(scaled[1]).toBeLessThan(plain[1]);
    expect(scaled[1]).toBeGreaterThan(plain[1] / 8);
  });

  it('accepts rope_parameters as well as top-level rope_theta, and Mistral and Qwen2', () => {
    const q = parseModelConfig(tinyConfigJson({ ...TINY_DEFAULTS, arch: 'qwen2' }));
    expect(q).toMatchObject({ architecture: 'qwen2', qkvBias: true, tiedEmbeddings: true });
    expect(q.rope).toEqual({ theta: 1000000, scaling: { type: 'default' } });
    const m = parseModelConfig({
      ...base,
      model_type: 'mistral',
      architectures: ['MistralForCausalLM'],
      rope_scaling: null,
      sliding_window: 4096,
      eos_token_id: 2,
      head_dim: null,
    });
    expect(m).toMatchObject({
      architecture: 'mistral',
      slidingWindow: 4096,
      eosTokenIds: [2],
      headDim: 16,
      qkvBias: false,
    });
  });

  it('refuses unsupported architectures, rope types and inconsistent heads, naming the file', () => {
    expect(() =>
      parseModelConfig({ ...base, model_type: 'gpt2', architectures: ['GPT2LMHeadModel'] }, '/m/config.json'),
    ).toThrow(/\/m\/config\.json: unsupported architecture/);
    expect(() => parseModelConfig({ ...base, rope_scaling: { rope_type: 'yarn', factor: 4 } })).toThrow(
      /unsupported rope scaling "yarn"/,
    );
    expect(() => parseModelConfig({ ...base, num_key_value_heads: 3 })).toThrow(
      /not a multiple of kv heads 3/,
    );
    expect(() => parseModelConfig({ ...base, hidden_size: undefined })).toThrow(
      /config\.json: invalid field "hidden_size"/,
    );
  });
});

describe('corrupted or truncated model files', () => {
  it('a truncated safetensors file', async () => {
    const dir = copy();
    const file = join(dir, 'model.safetensors');
    truncateSync(file, statSync(file).size - 100);
    await expect(loadEngine(dir)).rejects.toThrow(
      new RegExp(`${file}: truncated: tensor ".*" ends at byte \\d+ but the file has \\d+ bytes`),
    );
  });

  it('a file cut inside its header, and one shorter than the header length', async () => {
    const dir = copy();
    const file = join(dir, 'model.safetensors');
    truncateSync(file, 200);
    await expect(loadEngine(dir)).rejects.toThrow(
      new RegExp(`${file}: truncated: header says \\d+ bytes but the file has 192`),
    );
    truncateSync(file, 5);
    await expect(loadEngine(dir)).rejects.toThrow(
      `${file}: truncated: 5 bytes, too short for the 8-byte header length`,
    );
  });

  it('a garbage header length and an unparsable header', async () => {
    const dir = copy();
    const file = join(dir, 'model.safetensors');
    const buf = readFileSync(file);
    buf.writeBigUInt64LE(2n ** 40n, 0);
    writeFileSync(file, buf);
    await expect(loadEngine(dir)).rejects.toThrow(`${file}: header length 1099511627776 is implausible`);
    buf.writeBigUInt64LE(
      BigInt(Number(readFileSync(join(copy(), 'model.safetensors')).readBigUInt64LE(0))),
      0,
    );
    buf[8] = 0x7b + 1; // '{' → '|'
    writeFileSync(file, buf);
    await expect(loadEngine(dir)).rejects.toThrow(`${file}: header is not valid JSON`);
  });

  it('offsets that disagree with the shape, overlap, or an unsupported dtype', async () => {
    const dir = copy();
    const file = join(dir, 'model.safetensors');
    editHeader(file, (h) => {
      h['model.norm.weight'].shape = [65];
    });
    await expect(loadEngine(dir)).rejects.toThrow(
      `${file}: tensor "model.norm.weight": data_offsets span 256 bytes but F32 [65] needs 260`,
    );
    const dir2 = copy();
    const file2 = join(dir2, 'model.safetensors');
    editHeader(file2, (h) => {
      const [a, b] = h['model.norm.weight'].data_offsets;
      h['model.norm.weight'].data_offsets = [a - 4, b - 4];
    });
    await expect(loadEngine(dir2)).rejects.toThrow(/overlap/);
    const dir3 = copy();
    editHeader(join(dir3, 'model.safetensors'), (h) => {
      h['model.norm.weight'].dtype = 'I8';
    });
    await expect(loadEngine(dir3)).rejects.toThrow(/tensor "model.norm.weight": unsupported dtype "I8"/);
  });

  it('a tensor with the wrong shape for the config, or missing', async () => {
    const dir = copy();
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...cfg, intermediate_size: 128 }));
    await expect(loadEngine(dir)).rejects.toThrow(
      `${join(dir, 'model.safetensors')}: tensor "model.layers.0.mlp.gate_proj.weight" has shape [96,64], expected [128,64]`,
    );
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...cfg, num_hidden_layers: 3 }));
    await expect(loadEngine(dir)).rejects.toThrow(/missing tensor "model.layers.2.input_layernorm.weight"/);
  });

  it('a sharded model with a missing shard or a tensor the index promises', async () => {
    const dir = copy({ shards: 2 });
    const shard = join(dir, 'model-00002-of-00002.safetensors');
    rmSync(shard);
    await expect(loadEngine(dir)).rejects.toThrow(
      `${join(dir, 'model.safetensors.index.json')}: weight_map names "model-00002-of-00002.safetensors", which is missing`,
    );
    const dir2 = copy({ shards: 2 });
    const index = JSON.parse(readFileSync(join(dir2, 'model.safetensors.index.json'), 'utf8'));
    index.weight_map['model.extra.weight'] = 'model-00001-of-00002.safetensors';
    writeFileSync(join(dir2, 'model.safetensors.index.json'), JSON.stringify(index));
    await expect(loadEngine(dir2)).rejects.toThrow(
      /model-00001-of-00002\.safetensors: tensor "model.extra.weight" listed in the index is missing/,
    );
  });

  it('a weight_map path leaving the model directory is refused before anything is read', async () => {
    const dir = copy({ shards: 2 });
    // a real safetensors file outside the model directory, which the index tries to pull in
    const outside = join(dir, '..', `outside-${Date.now()}.safetensors`);
    copyFileSync(join(dir, 'model-00001-of-00002.safetensors'), outside);
    try {
      for (const bad of [
        `../${basename(outside)}`,
        outside,
        'sub/../../x.safetensors',
        'model-00001-of-00002.safetensors/../../x.safetensors',
      ]) {
        const index = JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8'));
        const name = Object.keys(index.weight_map)[0];
        index.weight_map[name] = bad;
        const copyDir = copy({ shards: 2 });
        writeFileSync(join(copyDir, 'model.safetensors.index.json'), JSON.stringify(index));
        await expect(loadEngine(copyDir), bad).rejects.toThrow(/not a file in the model directory/);
      }
    } finally {
      rmSync(outside, { force: true });
    }
  });

  it('a missing model file or config', async () => {
    const dir = copy();
    rmSync(join(dir, 'model.safetensors'));
    await expect(loadEngine(dir)).rejects.toThrow(
      `${dir}: no model.safetensors or model.safetensors.index.json`,
    );
    rmSync(join(dir, 'config.json'));
    await expect(loadEngine(dir)).rejects.toThrow(`${dir}: not a model directory (no config.json)`);
  });
});

describe('context', () => {
  it("caps the context at a Mistral sliding window and at the caller's maxContext", async () => {
    const dir = copy();
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    expect((await loadEngine(dir)).maxContext).toBe(512);
    expect((await loadEngine(dir, { maxContext: 100 })).maxContext).toBe(100);
    writeFileSync(
      join(dir, 'config.json'),
      JSON.stringify({
        ...cfg,
        model_type: 'mistral',
        architectures: ['MistralForCausalLM'],
        sliding_window: 64,
      }),
    );
    const mistral = await loadEngine(dir);
    expect(mistral.config.architecture).toBe('mistral');
    expect(mistral.maxContext).toBe(64);
  });
});

describe('stop ids', () => {
  it('joins the eos ids of config.json, generation_config.json and the tokenizer', async () => {
    const dir = copy();
    writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: [258, 264] }));
    const engine = await loadEngine(dir);
    expect([...engine.stopTokenIds].sort()).toEqual([257, 258, 264]);
    writeFileSync(join(dir, 'generation_config.json'), '{"eos_token_id": "x"}');
    await expect(loadEngine(dir)).rejects.toThrow(
      `${join(dir, 'generation_config.json')}: eos_token_id must be token ids`,
    );
  });
});

describe('fingerprint', () => {
  it('is stable, cached next to the model, and changes with the weights', async () => {
    const dir = copy();
    const a = modelFingerprint(dir);
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    const cache = JSON.parse(readFileSync(join(dir, FINGERPRINT_FILE), 'utf8'));
    expect(cache.fingerprint).toBe(a);
    expect(Object.keys(cache.files).sort()).toEqual(['config.json', 'model.safetensors']);
    // a stale cache entry for unchanged files is trusted (that is what the cache is for) ...
    writeFileSync(join(dir, FINGERPRINT_FILE), JSON.stringify({ ...cache, fingerprint: 'f'.repeat(64) }));
    expect(modelFingerprint(dir)).toBe('f'.repeat(64));
    // ... but any change of size or mtime recomputes it
    const file = join(dir, 'model.safetensors');
    const buf = readFileSync(file);
    buf[buf.length - 1] ^= 1;
    writeFileSync(file, buf);
    utimesSync(file, new Date(), new Date(Date.now() + 5000));
    const b = modelFingerprint(dir);
    expect(b).not.toBe(a);
    expect(b).not.toBe('f'.repeat(64));
    buf[buf.length - 1] ^= 1;
    writeFileSync(file, buf);
    utimesSync(file, new Date(), new Date(Date.now() + 10000));
    expect(modelFingerprint(dir)).toBe(a);
  });
});
