// The shipped trained model (models/kvrag-tiny, written by gpu-runner/tools/train/train.py): a normal
// HF directory the engine loads, within the repo size budget, with the byte tokenizer and the
// episode format of gpu-runner/tools/train/EPISODES.md, and the engine's greedy output equal to the
// PyTorch model's (fixture from gpu-runner/tools/train/golden.py).
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Engine, loadEngine } from '../../gpu-runner/engine/engine.ts';
import { readModelConfig } from '../../gpu-runner/engine/model-config.ts';
import { readSafetensorsHeader } from '../../gpu-runner/engine/safetensors.ts';
import { readTokenizerFiles, TextTokenizer } from '../../gpu-runner/engine/tokenizer.ts';

const root = new URL('../../', import.meta.url).pathname;
const modelDir = join(root, 'models/kvrag-tiny');
const tokenizerDir = join(root, 'gpu-runner/tools/tokenizer');

interface GoldenCase {
  kind: string;
  prompt_ids: number[];
  gold_answer: string;
  torch_greedy_ids: number[];
}
const golden = JSON.parse(readFileSync(join(root, 'test/fixtures/kvrag-tiny-greedy.json'), 'utf8')) as {
  model_safetensors_sha256: string;
  max_new_tokens: number;
  cases: GoldenCase[];
};

describe('models/kvrag-tiny directory', () => {
  it('holds the HF files and stays within 25 MB', () => {
    const files = readdirSync(modelDir).sort();
    for (const f of [
      'README.md',
      'config.json',
      'generation_config.json',
      'model.safetensors',
      'tokenizer.json',
      'tokenizer_config.json',
    ]) {
      expect(files).toContain(f);
    }
    const bytes = files.reduce((n, f) => n + statSync(join(modelDir, f)).size, 0);
    expect(bytes).toBeLessThanOrEqual(25 * 1024 * 1024);
  });

  it('is a GQA Llama over the 272-token byte vocabulary with 8K positions and <|end|> as a stop id', () => {
    const c = readModelConfig(join(modelDir, 'config.json'));
    expect(c.architecture).toBe('llama');
    expect(c.vocabSize).toBe(272);
    expect(c.kvHeads).toBeLessThan(c.heads);
    expect(c.heads % c.kvHeads).toBe(0);
    expect(c.maxPositionEmbeddings).toBeGreaterThanOrEqual(8192);
    expect(c.eosTokenIds).toContain(264);
    expect(c.bosTokenId).toBe(256);
  });

  it('has every weight under its HF name with the shape the config implies', () => {
    const c = readModelConfig(join(modelDir, 'config.json'));
    const st = readSafetensorsHeader(join(modelDir, 'model.safetensors'));
    const q = c.heads * c.headDim;
    const kv = c.kvHeads * c.headDim;
    const want: Record<string, number[]> = {
      'model.embed_tokens.weight': [c.vocabSize, c.hiddenSize],
      'model.norm.weight': [c.hiddenSize],
    };
    if (!c.tiedEmbeddings) want['lm_head.weight'] = [c.vocabSize, c.hiddenSize];
    for (let l = 0; l < c.layers; l++) {
      const p = `model.layers.${l}`;
      want[`${p}.self_attn.q_proj.weight`] = [q, c.hiddenSize];
      want[`${p}.self_attn.k_proj.weight`] = [kv, c.hiddenSize];
      want[`${p}.self_attn.v_proj.weight`] = [kv, c.hiddenSize];
      want[`${p}.self_attn.o_proj.weight`] = [c.hiddenSize, q];
      want[`${p}.mlp.gate_proj.weight`] = [c.intermediateSize, c.hiddenSize];
      want[`${p}.mlp.up_proj.weight`] = [c.intermediateSize, c.hiddenSize];
      want[`${p}.mlp.down_proj.weight`] = [c.hiddenSize, c.intermediateSize];
      want[`${p}.input_layernorm.weight`] = [c.hiddenSize];
      want[`${p}.post_attention_layernorm.weight`] = [c.hiddenSize];
    }
    const got = Object.fromEntries([...st.tensors.values()].map((t) => [t.name, t.shape]));
    expect(got).toEqual(want);
  });

  it('ships the byte tokenizer unchanged, encoding the episode format to the documented ids', () => {
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) {
      expect(readFileSync(join(modelDir, f), 'utf8')).toBe(readFileSync(join(tokenizerDir, f), 'utf8'));
    }
    const tok = new TextTokenizer(readTokenizerFiles(modelDir));
    const ids = tok.encodeWithSpecials(
      '<|bos|><|system|>S<|end|><|doc|>Ab<|/doc|><|user|>Q?<|end|><|assistant|>7<|end|>',
    );
    expect(ids).toEqual([256, 259, 83, 264, 262, 65, 98, 263, 260, 81, 63, 264, 261, 55, 264]);
  });
});

describe('engine greedy output on kvrag-tiny equals the PyTorch model', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await loadEngine(modelDir, { backend: 'reference' });
  });
  afterAll(() => engine?.dispose());

  it('uses the weights the golden fixture was made from (rerun golden.py after a new export)', () => {
    const sha = createHash('sha256')
      .update(readFileSync(join(modelDir, 'model.safetensors')))
      .digest('hex');
    expect(sha).toBe(golden.model_safetensors_sha256);
  });

  it('continues each held-out prompt with the same tokens', async () => {
    const results = await engine.generate(
      golden.cases.map((c) => ({ prompt: c.prompt_ids, maxTokens: golden.max_new_tokens })),
    );
    results.forEach((r, i) => {
      const want = golden.cases[i].torch_greedy_ids;
      const stopped = want.length > 0 && engine.stopTokenIds.includes(want[want.length - 1]);
      expect(r.tokens).toEqual(stopped ? want.slice(0, -1) : want);
      expect(r.finishReason).toBe(stopped ? 'stop' : 'length');
    });
  }, 60_000);
});
