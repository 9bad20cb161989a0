// End-to-end engine decode with squeezed attention vs dense (part of `kvrag bench squeezed`): a generated
// Llama (8 query / 2 kv heads × 64, 4 layers, hidden 512; max positions raised to fit the context) on
// the native backend (or wasm: `backend`); `chunks` chunks of random byte tokens are precomputed (with their index section) and
// assembled `independent` into one fixed context; then greedy decode of `steps` tokens with the engine's
// forward, once dense and once per budget, each on its own assembled sequence. Tokens/s by wall clock and
// by CPU time (threads 1: every kernel runs on this thread).
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SelectMode } from '../gpu-runner/engine/attention/squeezed/select.ts';
import { createBackend } from '../gpu-runner/engine/backends/registry.ts';
import { loadEngine } from '../gpu-runner/engine/engine.ts';
import { ArtifactStore } from '../gpu-runner/engine/kv/artifact-store.ts';
import { EngineTier } from '../gpu-runner/engine/kv/engine-tier.ts';
import { precomputeChunks } from '../gpu-runner/engine/kv/precompute.ts';
import { HostTier } from '../gpu-runner/engine/kv/tiers.ts';
import { Assembler } from '../gpu-runner/engine/reuse/assemble.ts';
import { makeTinyModel } from '../gpu-runner/tools/make-tiny-model.ts';

export interface DecodeRow {
  context: number;
  budget: string;
  tokS: number;
  cpuMsPerToken: number;
  /** tokens/s relative to dense (wall, CPU) */
  speedup: number;
  cpuSpeedup: number;
  keysFraction: number;
  /** share of decoded tokens equal to dense's (random weights: a rough agreement signal only) */
  sameTokens: number;
}

const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

export async function engineDecode(opts: {
  chunks: number;
  chunkTokens: number;
  steps: number;
  budgets: number[];
  threads: number;
  backend: 'native' | 'wasm';
  /** native: the runner's KV cache dtype (dense and squeezed requests alike) */
  kvDType: 'f16' | 'int8';
}): Promise<DecodeRow[]> {
  const dir = await mkdtemp(join(tmpdir(), 'kvrag-sq-decode-'));
  const context = opts.chunks * opts.chunkTokens;
  makeTinyModel(dir, {
    seed: 3,
    hidden: 512,
    layers: 4,
    heads: 8,
    kvHeads: 2,
    headDim: 64,
    intermediate: 1024,
  });
  const cfgPath = join(dir, 'config.json');
  const cfg = JSON.parse(readFileSync(cfgPath, 'utf8'));
  cfg.max_position_embeddings = context + 256;
  writeFileSync(cfgPath, JSON.stringify(cfg));
  const engine = await loadEngine(dir, {
    // a runner's KV dtype on native (dense and squeezed requests alike), f32 on wasm
    backend: await createBackend(opts.backend, {
      threads: opts.threads,
      ...(opts.backend === 'native' ? { kvDType: opts.kvDType } : {}),
    }),
  });
  try {
    const store = new ArtifactStore({
      fingerprint: engine.fingerprint,
      tokenizerHash: engine.tokenizer.hash,
      host: new HostTier(4 * 2 ** 30),
    });
    const tier = new EngineTier(engine.backend, engine.config, store, 4 * 2 ** 30);
    const asm = new Assembler(engine, tier, { dtype: 'f32' });
    let s = 12345;
    const rnd = () => {
      s = (s * 1103515245 + 12345) & 0x7fffffff;
      return s % 256;
    };
    const chunks = Array.from({ length: opts.chunks }, () => Array.from({ length: opts.chunkTokens }, rnd));
    await precomputeChunks(
      engine,
      store,
      chunks.map((tokenIds) => ({ tokenIds })),
      { dtype: 'f32' },
    );
    const question = Array.from({ length: 16 }, rnd);
    const decode = async (mode: SelectMode | null) => {
      const a = await asm.assemble({
        system: [],
        chunks,
        question,
        mode: 'independent',
        reserve: opts.steps,
        squeezed: mode,
      });
      try {
        let next = a.logits.indexOf(Math.max(...a.logits));
        const tokens: number[] = [];
        const t0 = performance.now();
        const c0 = cpuMs();
        for (let i = 0; i < opts.steps; i++) {
          const logits = await engine.forward([{ kv: a.kv, tokens: [next], attention: a.attention }]);
          next = logits.indexOf(Math.max(...logits));
          tokens.push(next);
        }
        const cpu = cpuMs() - c0;
        const wall = performance.now() - t0;
        return {
          tokens,
          tokS: (opts.steps * 1000) / wall,
          cpuMsPerToken: cpu / opts.steps,
          frac: a.fixed?.stats.fraction ?? 1,
        };
      } finally {
        a.free();
      }
    };
    await decode(null); // warm-up: artifacts resident in engine memory, kernels compiled
    const dense = await decode(null);
    const rows: DecodeRow[] = [
      {
        context,
        budget: 'dense',
        tokS: dense.tokS,
        cpuMsPerToken: dense.cpuMsPerToken,
        speedup: 1,
        cpuSpeedup: 1,
        keysFraction: 1,
        sameTokens: 1,
      },
    ];
    for (const fraction of opts.budgets) {
      const r = await decode({ kind: 'budget', fraction });
      rows.push({
        context,
        budget: `1/${Math.round(1 / fraction)}`,
        tokS: r.tokS,
        cpuMsPerToken: r.cpuMsPerToken,
        speedup: r.tokS / dense.tokS,
        cpuSpeedup: dense.cpuMsPerToken / r.cpuMsPerToken,
        keysFraction: r.frac,
        sameTokens: r.tokens.filter((t, i) => t === dense.tokens[i]).length / opts.steps,
      });
    }
    tier.clear();
    return rows;
  } finally {
    engine.dispose();
    await rm(dir, { recursive: true, force: true });
  }
}
