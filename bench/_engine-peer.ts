// `kvrag bench engine --peer llamacpp`: kvrag and llama.cpp (bench/_llamacpp.ts) side by side in one run,
// on the same weights and the same token ids. The project writes the GGUF itself (F32, F16 and Q8_0)
// from a generated model — by default SmolLM2-135M's shape (bench/_shapes.ts) — or from --model DIR;
// --model FILE.gguf uses that file as is. Both engines load the same GGUF file. For each format: time to
// first token from an empty cache at each size (prefill tok/s = size ÷ that time; TTFT rows are the same
// measurement), decode tokens/s after a short prompt (median of 3 runs), and the greedy tokens of both on that prompt (llama.cpp
// with its default F16 KV cache, and again with F32 as kvrag keeps it).
// kvrag runs on --backend (default auto: native where the addon loads, else wasm), or on webgpu
// (`--backend webgpu`, the device labelled); it keeps a Q8_0 file's blocks as stored where the backend
// takes them, or holds the matrices as `--weights` (f32, f16, q8_0, q4_0), and says which. llama.cpp
// runs its CPU build, or its CUDA or Vulkan build with every layer offloaded (`--peer-gpu cuda|vulkan`:
// the GPU check, bench/gpu-check.sh).
import { availableParallelism } from 'node:os';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BACKENDS, type BackendName, resolveBackendName } from '../gpu-runner/engine/backends/registry.ts';
import { type DType, isBlockDType } from '../gpu-runner/engine/backends/dtypes.ts';
import { type Engine, loadEngine } from '../gpu-runner/engine/engine.ts';
import { WEIGHT_DTYPES, type WeightDType } from '../gpu-runner/engine/weights.ts';
import { type ExportType, exportGguf } from '../gpu-runner/engine/gguf/export.ts';
import { openGguf } from '../gpu-runner/engine/gguf/location.ts';
import { makeTinyModel } from '../gpu-runner/tools/make-tiny-model.ts';
import { numberOption, parseOptions, UsageError } from '../cli/args.ts';
import { type Cell, emit, formatTable } from './_report.ts';
import { type LlamaCppGpu, type LlamaCppInfo, LlamaCppPeer } from './_llamacpp.ts';
import { modelShape } from './_shapes.ts';
import { describe, label as webgpuLabel, openBenchWebGPU, type WebGPULabel } from './_webgpu.ts';

interface Side {
  /** ms to the first token, by prompt size */
  ttftMs: Record<string, number>;
  decodeTokensPerS: number;
  tokens: number[];
}

interface FormatResult {
  format: string;
  file: string;
  /** how kvrag held the weights */
  kvragWeights: string;
  /** the device dtype of kvrag's matrices */
  kvragDType: string;
  kvrag: Side;
  llamacpp: Side;
  /** leading greedy tokens on which both agree (llama.cpp with its default F16 KV cache) */
  greedyAgree: number;
  /** llama.cpp's greedy tokens with an F32 KV cache, as kvrag keeps it, and the leading agreement */
  greedyF32Kv: { tokens: number[]; agree: number };
}

const list = (name: string, v: string) =>
  v
    .split(',')
    .filter(Boolean)
    .map((x) => {
      const n = Number(x);
      if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${name}: "${x}" is not a positive integer`);
      return n;
    });

/** Prompt of n token ids from the byte range (no special tokens). */
const promptOf = (n: number) => Array.from({ length: n }, (_, i) => (i * 31 + 7) % 256);

/**
 * Decode is memory-bound (F32: every weight read per token) and one 32-token run lasts about a second, so
 * a neighbour's burst on the VM's memory moves a single run by ±30%: each side's decode is the median of
 * this many runs (greedy tokens from the first; they are the same each run).
 */
const DECODE_RUNS = 3;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Progress on stderr: a full run takes many minutes. */
const note = (line: string) => process.stderr.write(`${line}\n`);

async function measureKvrag(
  engine: Engine,
  sizes: number[],
  decodePrompt: number[],
  decode: number,
): Promise<Side> {
  await engine.generate([{ prompt: promptOf(8), maxTokens: 4, stopTokenIds: [] }]); // warm-up: prefill and decode
  const ttftMs: Record<string, number> = {};
  for (const n of sizes) {
    const [r] = await engine.generate([{ prompt: promptOf(n), maxTokens: 1, stopTokenIds: [] }]);
    ttftMs[n] = r.ttftMs;
    note(`  kvrag: ${n} tokens to first token in ${(r.ttftMs / 1000).toFixed(2)} s`);
  }
  const runs: { tokPerS: number; tokens: number[] }[] = [];
  for (let i = 0; i < DECODE_RUNS; i++) {
    const [r] = await engine.generate([{ prompt: decodePrompt, maxTokens: decode, stopTokenIds: [] }]);
    runs.push({ tokPerS: ((decode - 1) * 1000) / (r.totalMs - r.ttftMs), tokens: r.tokens });
  }
  return { ttftMs, decodeTokensPerS: median(runs.map((r) => r.tokPerS)), tokens: runs[0].tokens };
}

async function measurePeer(
  peer: LlamaCppPeer,
  sizes: number[],
  decodePrompt: number[],
  decode: number,
): Promise<Side> {
  await peer.decode(promptOf(8), 4); // warm-up: prefill and decode
  const ttftMs: Record<string, number> = {};
  for (const n of sizes) {
    ttftMs[n] = (await peer.ttft(promptOf(n))).ttftMs;
    note(`  llama.cpp: ${n} tokens to first token in ${(ttftMs[n] / 1000).toFixed(2)} s`);
  }
  const runs: { tokPerS: number; tokens: number[] }[] = [];
  for (let i = 0; i < DECODE_RUNS; i++) {
    const d = await peer.decode(decodePrompt, decode);
    runs.push({ tokPerS: 1000 / d.msPerToken, tokens: d.tokens });
  }
  return { ttftMs, decodeTokensPerS: median(runs.map((r) => r.tokPerS)), tokens: runs[0].tokens };
}

/** How kvrag holds a file's matrices on its backend (`held`: the device dtype of a q projection). */
function heldAs(format: string, held: string): string {
  if (format.toLowerCase() !== held) return `${held} (${format} converted at load)`;
  return isBlockDType(held as DType) ? `${held} blocks as stored` : held;
}

function leadingAgreement(a: number[], b: number[]): number {
  let k = 0;
  while (k < a.length && k < b.length && a[k] === b[k]) k++;
  return k;
}

export async function run(args: string[]): Promise<number> {
  const { values } = parseOptions(args, {
    peer: { type: 'string' },
    json: { type: 'boolean', default: false },
    model: { type: 'string' },
    shape: { type: 'string', default: 'smollm2' },
    formats: { type: 'string', default: 'f32,q8_0' },
    prefill: { type: 'string', default: '512,2048,8192' },
    ttft: { type: 'string', default: '4096,8192' },
    'decode-prompt': { type: 'string' },
    'decode-tokens': { type: 'string' },
    threads: { type: 'string' },
    'batch-size': { type: 'string' },
    'flash-attention': { type: 'boolean', default: false },
    backend: { type: 'string' },
    weights: { type: 'string' },
    'peer-gpu': { type: 'string', default: 'none' },
  });
  if (values.peer !== 'llamacpp') throw new UsageError(`--peer: unknown peer "${values.peer}" (llamacpp)`);
  const shape = modelShape('shape', values.shape!);
  const formats = values.formats!.split(',').map((f) => f.toUpperCase());
  for (const f of formats)
    if (f !== 'F32' && f !== 'F16' && f !== 'Q8_0')
      throw new UsageError(`--formats: "${f}" (f32, f16, q8_0)`);
  const weights = values.weights as WeightDType | undefined;
  if (weights !== undefined && !WEIGHT_DTYPES.includes(weights))
    throw new UsageError(`--weights: "${weights}" (${WEIGHT_DTYPES.join(', ')})`);
  const peerGpu = ({ none: false, cuda: 'cuda', vulkan: 'vulkan' } as const)[
    values['peer-gpu'] as 'none' | 'cuda' | 'vulkan'
  ] as LlamaCppGpu | undefined;
  if (peerGpu === undefined) throw new UsageError(`--peer-gpu: "${values['peer-gpu']}" (none, cuda, vulkan)`);
  const prefill = list('prefill', values.prefill!);
  const ttft = list('ttft', values.ttft!);
  const sizes = [...new Set([...prefill, ...ttft])].sort((a, b) => a - b);
  const decodePrompt = promptOf(numberOption('decode-prompt', values['decode-prompt'], 64));
  const decode = numberOption('decode-tokens', values['decode-tokens'], 32);
  if (!Number.isInteger(decode) || decode < 2) throw new UsageError('--decode-tokens must be an integer ≥ 2');
  const threads = numberOption('threads', values.threads, availableParallelism());
  const batchSize = numberOption('batch-size', values['batch-size'], 512);
  const cpu = BACKENDS.filter((b) => b.priority > 0).map((b) => b.name) as string[];
  if (values.backend !== undefined && values.backend !== 'webgpu' && !cpu.includes(values.backend))
    throw new UsageError(`--backend: "${values.backend}" (${[...cpu, 'webgpu'].join(', ')})`);
  const backendKind =
    values.backend === 'webgpu'
      ? 'webgpu'
      : await resolveBackendName((values.backend as BackendName | undefined) ?? 'auto');
  const contextSize = Math.max(...sizes, decodePrompt.length + decode) + 8;

  const tmp = mkdtempSync(join(tmpdir(), 'kvrag-bench-peer-'));
  try {
    let files: { format: string; file: string }[];
    let modelLabel: string;
    if (values.model?.endsWith('.gguf')) {
      files = [
        {
          // the file's matrix type, as its first layer's q projection holds it
          format: openGguf(values.model).tensors.get('blk.0.attn_q.weight')?.typeName ?? 'unknown',
          file: values.model,
        },
      ];
      modelLabel = values.model;
    } else {
      const dir = values.model ?? join(tmp, 'model');
      if (!values.model) makeTinyModel(dir, { ...shape, seed: 1, maxPositions: contextSize });
      modelLabel = values.model ?? `generated ${shape.label}`;
      files = formats.map((format) => {
        const file = join(tmp, `model-${format}.gguf`);
        exportGguf(dir, file, format as ExportType);
        return { format, file };
      });
    }
    const results: FormatResult[] = [];
    let info: LlamaCppInfo | null = null;
    let config: Engine['config'] | null = null;
    let device: WebGPULabel | null = null;
    for (const { format, file } of files) {
      // webgpu: opened here to label the device the numbers come from; CPU backends by name
      let gpu: Awaited<ReturnType<typeof openBenchWebGPU>>['backend'] = null;
      if (backendKind === 'webgpu') {
        const g = await openBenchWebGPU();
        if (!g.backend) throw new UsageError(`--backend webgpu: ${g.note}`);
        device = webgpuLabel(g.backend);
        gpu = g.backend;
      }
      const engine = await loadEngine(file, {
        backend: gpu ?? backendKind,
        backendOptions: { threads },
        weightDType: weights,
      });
      let kvrag: Side;
      const held = engine.model.weights.layers[0].q.dtype;
      try {
        if (engine.maxContext < contextSize)
          throw new UsageError(
            `${file}: context ${engine.maxContext} is below the ${contextSize} positions asked for`,
          );
        config = engine.config;
        kvrag = await measureKvrag(engine, sizes, decodePrompt, decode);
      } finally {
        engine.dispose();
      }
      const peer = await LlamaCppPeer.open(file, {
        contextSize,
        threads,
        batchSize,
        flashAttention: values['flash-attention']!,
        gpu: peerGpu,
      });
      let llamacpp: Side;
      try {
        info = peer.info;
        llamacpp = await measurePeer(peer, sizes, decodePrompt, decode);
      } finally {
        await peer.dispose();
      }
      // the greedy check again with llama.cpp's KV cache in F32, as kvrag keeps it: the speed rows keep
      // llama.cpp's default (F16), whose rounding alone can flip a near-tied token of random weights
      const exact = await LlamaCppPeer.open(file, {
        contextSize: decodePrompt.length + decode + 8,
        threads,
        batchSize,
        flashAttention: values['flash-attention']!,
        gpu: peerGpu,
        kvCache: 'F32',
      });
      let f32KvTokens: number[];
      try {
        f32KvTokens = (await exact.decode(decodePrompt, decode)).tokens;
      } finally {
        await exact.dispose();
      }
      results.push({
        format,
        file,
        kvragWeights: heldAs(format, held),
        kvragDType: held,
        kvrag,
        llamacpp,
        greedyAgree: leadingAgreement(kvrag.tokens, llamacpp.tokens),
        greedyF32Kv: { tokens: f32KvTokens, agree: leadingAgreement(kvrag.tokens, f32KvTokens) },
      });
    }
    const c = config!;
    const result = {
      model: modelLabel,
      config: {
        hidden: c.hiddenSize,
        layers: c.layers,
        heads: c.heads,
        kvHeads: c.kvHeads,
        headDim: c.headDim,
        intermediate: c.intermediateSize,
        vocab: c.vocabSize,
      },
      threads,
      kvrag: { backend: backendKind, weights: weights ?? 'as stored', ...(device ? { device } : {}) },
      llamacpp: { ...info!, batchSize, flashAttention: values['flash-attention']! },
      prefill,
      ttft,
      decodePromptTokens: decodePrompt.length,
      decodeTokens: decode,
      formats: results,
    };
    emit(values.json!, result, () => table(result));
    return 0;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

function table(r: {
  model: string;
  config: Record<string, number>;
  threads: number;
  kvrag: { backend: string; weights: string; device?: WebGPULabel };
  llamacpp: LlamaCppInfo & { batchSize: number; flashAttention: boolean };
  prefill: number[];
  ttft: number[];
  decodePromptTokens: number;
  decodeTokens: number;
  formats: FormatResult[];
}): string {
  const c = r.config;
  const cols = ['metric'];
  for (const f of r.formats)
    cols.push(
      `kvrag ${f.kvragDType === f.format.toLowerCase() ? f.format : `${f.format} (as ${f.kvragDType})`}`,
      `llama.cpp ${f.format}`,
      'kvrag ÷ llama.cpp',
    );
  const rows: Cell[][] = [];
  const k = (n: number) => (n >= 1024 && n % 1024 === 0 ? `${n / 1024}K` : String(n));
  for (const n of r.prefill) {
    rows.push([
      `prefill ${k(n)} tok/s`,
      ...r.formats.flatMap((f) => {
        const [a, b] = [(n * 1000) / f.kvrag.ttftMs[n], (n * 1000) / f.llamacpp.ttftMs[n]];
        return [a, b, `${(a / b).toFixed(2)}×`];
      }),
    ]);
  }
  for (const n of r.ttft) {
    rows.push([
      `TTFT ${k(n)} prompt, s`,
      ...r.formats.flatMap((f) => {
        const [a, b] = [f.kvrag.ttftMs[n] / 1000, f.llamacpp.ttftMs[n] / 1000];
        return [a, b, `${(b / a).toFixed(2)}×`];
      }),
    ]);
  }
  rows.push([
    'decode tok/s',
    ...r.formats.flatMap((f) => {
      const [a, b] = [f.kvrag.decodeTokensPerS, f.llamacpp.decodeTokensPerS];
      return [a, b, `${(a / b).toFixed(2)}×`];
    }),
  ]);
  rows.push([
    `greedy tokens agree (llama.cpp KV F16)`,
    ...r.formats.flatMap((f) => [`${f.greedyAgree}/${r.decodeTokens}`, null, null]),
  ]);
  rows.push([
    `greedy tokens agree (llama.cpp KV F32)`,
    ...r.formats.flatMap((f) => [`${f.greedyF32Kv.agree}/${r.decodeTokens}`, null, null]),
  ]);
  const l = r.llamacpp;
  return [
    `engine vs llama.cpp — ${r.model} (hidden ${c.hidden}, ${c.layers} layers, ${c.heads}/${c.kvHeads} heads × ${c.headDim}, ffn ${c.intermediate}, vocab ${c.vocab}); ${r.threads} threads each`,
    `llama.cpp: node-llama-cpp ${l.build} ${l.gpu ? `${l.gpu} build (all layers on ${l.gpuDevices.join(', ') || 'the GPU'})` : 'CPU build'}, llama.cpp ${l.release}, CPU variant ${l.variant ?? 'unknown'}; batch ${l.batchSize}, flash attention ${l.flashAttention ? 'on' : 'off'}, KV cache F16 (its default; kvrag's is f32; the last greedy row reruns it with F32)`,
    `  ${l.systemInfo}`,
    `kvrag: ${r.kvrag.device ? describe(r.kvrag.device) : `${r.kvrag.backend} backend`}; ${r.formats.map((f) => `${f.format}: ${f.kvragWeights}`).join('; ')}`,
    formatTable(cols, rows),
    `kvrag ÷ llama.cpp: speed ratio (> 1: kvrag faster). TTFT = empty cache to first token; prefill tok/s = size ÷ TTFT.`,
    `decode: ${r.decodeTokens} greedy tokens after a ${r.decodePromptTokens}-token prompt, one sequence.`,
    ...r.formats.map(
      (f) =>
        `greedy ${f.format}: kvrag ${JSON.stringify(f.kvrag.tokens)}\n${' '.repeat(8 + f.format.length)}llama.cpp ${JSON.stringify(f.llamacpp.tokens)}\n${' '.repeat(8 + f.format.length)}llama.cpp, KV F32 ${JSON.stringify(f.greedyF32Kv.tokens)}`,
    ),
  ].join('\n');
}
