// Writes the engine's golden-logit fixtures: generates the tiny models (Llama and Qwen2 shapes, F32 and
// BF16 safetensors), runs the PyTorch reference forward (reference_forward.py, Debian python3-torch)
// on fixed prompts, and stores every position's logits as f32 files plus a manifest with each model's
// fingerprint (so a changed generator is caught instead of silently compared).
//
//   node gpu-runner/tools/make-golden.ts [--out test/fixtures/engine]
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { computeFingerprint } from '../engine/fingerprint.ts';
import { BYTE_VOCAB_SIZE, specialId } from './byte-tokenizer.ts';
import { makeTinyModel, type TinyArch, type TinyDType } from './make-tiny-model.ts';

export const REFERENCE_PYTHON = '/usr/bin/python3';
export const REFERENCE_SCRIPT = join(import.meta.dirname, 'reference_forward.py');

export interface GoldenVariant {
  name: string;
  arch: TinyArch;
  dtype: TinyDType;
  seed: number;
  /** Llama with attention_bias and mlp_bias. */
  bias?: boolean;
}

export const GOLDEN_VARIANTS: GoldenVariant[] = [
  { name: 'llama-f32', arch: 'llama', dtype: 'f32', seed: 7 },
  { name: 'llama-bf16', arch: 'llama', dtype: 'bf16', seed: 7 },
  { name: 'qwen2-f32', arch: 'qwen2', dtype: 'f32', seed: 11 },
  { name: 'qwen2-bf16', arch: 'qwen2', dtype: 'bf16', seed: 11 },
  { name: 'llama-bias-f32', arch: 'llama', dtype: 'f32', seed: 13, bias: true },
];

const bytes = (s: string) => [...Buffer.from(s, 'utf8')];

/** Fixed prompts: a chat turn, a document block with specials, and one longer than 64 tokens. */
export function goldenPrompts(): number[][] {
  const bos = specialId('<|bos|>');
  return [
    [bos, specialId('<|user|>'), ...bytes('hello, world'), specialId('<|end|>'), specialId('<|assistant|>')],
    [bos, specialId('<|doc|>'), ...bytes('kv café ☕'), specialId('<|/doc|>')],
    [
      bos,
      specialId('<|system|>'),
      ...bytes('The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs.'),
      specialId('<|end|>'),
    ],
  ];
}

export interface GoldenManifest {
  vocab: number;
  prompts: number[][];
  /** logits files: f32 LE, [sum(prompt lengths), vocab], prompts concatenated. */
  variants: (GoldenVariant & { fingerprint: string; file: string })[];
}

/** Whether the reference python has torch (the live golden comparison runs only then). */
export function referenceAvailable(): boolean {
  try {
    execFileSync(REFERENCE_PYTHON, ['-c', 'import torch, numpy'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Runs the PyTorch reference on each model dir for `prompts` (one process); logits [Σ len, vocab] each. */
export function referenceLogits(dirs: string[], prompts: number[][]): Float32Array[] {
  const work = mkdtempSync(join(tmpdir(), 'kvrag-ref-'));
  try {
    writeFileSync(join(work, 'prompts.json'), JSON.stringify({ prompts }));
    const args = [REFERENCE_SCRIPT, join(work, 'prompts.json')];
    for (const [i, d] of dirs.entries()) args.push(d, join(work, `out-${i}.bin`));
    execFileSync(REFERENCE_PYTHON, args, { stdio: ['ignore', 'inherit', 'inherit'] });
    return dirs.map((_, i) => {
      const b = readFileSync(join(work, `out-${i}.bin`));
      return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
    });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { out: { type: 'string', default: 'test/fixtures/engine' } } });
  const out = values.out!;
  mkdirSync(out, { recursive: true });
  const prompts = goldenPrompts();
  const manifest: GoldenManifest = { vocab: BYTE_VOCAB_SIZE, prompts, variants: [] };
  const work = mkdtempSync(join(tmpdir(), 'kvrag-golden-'));
  try {
    const dirs = GOLDEN_VARIANTS.map((v) => {
      const dir = join(work, v.name);
      makeTinyModel(dir, { arch: v.arch, dtype: v.dtype, seed: v.seed, bias: v.bias ?? false });
      return dir;
    });
    const all = referenceLogits(dirs, prompts);
    GOLDEN_VARIANTS.forEach((v, i) => {
      const file = `golden-${v.name}.f32`;
      writeFileSync(join(out, file), new Uint8Array(all[i].buffer));
      manifest.variants.push({ ...v, fingerprint: computeFingerprint(dirs[i]).fingerprint, file });
      console.log(`${v.name}: ${all[i].length / BYTE_VOCAB_SIZE} rows → ${join(out, file)}`);
    });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  writeFileSync(join(out, 'golden.json'), `${JSON.stringify(manifest)}\n`);
}
