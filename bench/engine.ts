// `kvrag bench engine [--json]`: prefill and decode throughput of the engine on the reference backend.
// Uses --model DIR, or a generated model (hidden 256, 4 layers, 8 q / 2 kv heads, head_dim 32, vocab 272).
// Reports prefill tokens/s (one sequence), decode tokens/s (one sequence, greedy) and batched decode
// tokens/s (B sequences stepping together), plus the matmul GFLOP/s those imply.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Engine, loadEngine } from '../gpu-runner/engine/engine.ts';
import { makeTinyModel } from '../gpu-runner/tools/make-tiny-model.ts';
import { numberOption, parseOptions } from '../src/cli/args.ts';
import { emit, formatTable } from './_report.ts';

const BENCH_MODEL = {
  arch: 'llama' as const,
  hidden: 256,
  layers: 4,
  heads: 8,
  kvHeads: 2,
  headDim: 32,
  intermediate: 704,
};

/** Weight FLOPs per token: 2 · (parameters touched by matmuls). Attention FLOPs are excluded. */
function matmulFlopsPerToken(e: Engine): number {
  const c = e.config;
  const perLayer =
    c.hiddenSize * c.headDim * (2 * c.heads + 2 * c.kvHeads) + 3 * c.hiddenSize * c.intermediateSize;
  return 2 * (c.layers * perLayer + c.vocabSize * c.hiddenSize);
}

export async function run(args: string[]): Promise<number> {
  const { values } = parseOptions(args, {
    json: { type: 'boolean', default: false },
    model: { type: 'string' },
    'prompt-tokens': { type: 'string' },
    'decode-tokens': { type: 'string' },
    batch: { type: 'string' },
  });
  const promptTokens = numberOption('prompt-tokens', values['prompt-tokens'], 128);
  const decodeTokens = numberOption('decode-tokens', values['decode-tokens'], 32);
  const batch = numberOption('batch', values.batch, 4);
  const tmp = values.model ? null : mkdtempSync(join(tmpdir(), 'kvrag-bench-engine-'));
  try {
    const dir = values.model ?? join(tmp!, 'model');
    if (tmp) makeTinyModel(dir, { ...BENCH_MODEL, seed: 1 });
    const engine = await loadEngine(dir);
    const prompt = Array.from({ length: promptTokens }, (_, i) => (i * 31 + 7) % 256);
    const flops = matmulFlopsPerToken(engine);

    // warm-up (JIT) on a short prompt
    await engine.generate([{ prompt: prompt.slice(0, 8), maxTokens: 2, stopTokenIds: [] }]);

    const kv = engine.newSequence(promptTokens);
    let t = performance.now();
    await engine.forward([{ kv, tokens: prompt }]);
    const prefillMs = performance.now() - t;
    kv.free();

    const [one] = await engine.generate([{ prompt, maxTokens: decodeTokens + 1, stopTokenIds: [] }]);
    const decodeMs = one.totalMs - one.ttftMs;

    t = performance.now();
    const many = await engine.generate(
      Array.from({ length: batch }, (_, b) => ({
        prompt: prompt.slice(0, 16).map((x) => (x + b) % 256),
        maxTokens: decodeTokens + 1,
        stopTokenIds: [],
      })),
    );
    const batchDecodeMs = Math.max(...many.map((r) => r.totalMs - r.ttftMs));

    const result = {
      backend: engine.backend.name,
      model: values.model ?? 'generated',
      config: {
        hidden: engine.config.hiddenSize,
        layers: engine.config.layers,
        heads: engine.config.heads,
        kvHeads: engine.config.kvHeads,
        headDim: engine.config.headDim,
        intermediate: engine.config.intermediateSize,
        vocab: engine.config.vocabSize,
      },
      promptTokens,
      decodeTokens,
      batch,
      prefillTokensPerS: (promptTokens * 1000) / prefillMs,
      decodeTokensPerS: (decodeTokens * 1000) / decodeMs,
      batchDecodeTokensPerS: (batch * decodeTokens * 1000) / batchDecodeMs,
      prefillGflops: (promptTokens * flops) / prefillMs / 1e6,
      decodeGflops: (decodeTokens * flops) / decodeMs / 1e6,
    };
    engine.dispose();
    emit(values.json!, result, () =>
      [
        `engine bench — ${result.backend} backend, ${result.model} model (hidden ${result.config.hidden}, ${result.config.layers} layers)`,
        formatTable(
          ['phase', 'tokens', 'tokens/s', 'matmul GFLOP/s'],
          [
            ['prefill (1 seq)', promptTokens, result.prefillTokensPerS, result.prefillGflops],
            ['decode (1 seq)', decodeTokens, result.decodeTokensPerS, result.decodeGflops],
            [`decode (${batch} seqs)`, batch * decodeTokens, result.batchDecodeTokensPerS, null],
          ],
        ),
      ].join('\n'),
    );
    return 0;
  } finally {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }
}
