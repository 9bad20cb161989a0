// What the GPU check runs (steps 2–5 of bench/gpu-check.sh; step 1, making the GPU usable, is the shell
// script's): each step a child command with a time limit, in order of importance within the budget —
// correctness first (adapter, parity), the kernels, then per model shape (smaller first) the model, the
// engine and the llama.cpp peers on it, then TTFT. The webgpu steps need step 2 to have found an adapter
// (on a GPU run a hardware one). The dry run
// (`--dry-run`, what test/unit/gpu-check.test.ts runs on llvmpipe) has the same steps at tiny shapes,
// one parity file, one model, and llama.cpp's CPU build standing in for its GPU builds.
import { join } from 'node:path';

export type PeerGpu = 'cuda' | 'vulkan' | 'none';

export interface StepSpec {
  /** unique id, e.g. 'engine:smollm2' */
  id: string;
  /** the step number (2 adapter, 3 parity, 4 benchmarks, 5 llama.cpp peer) */
  part: 2 | 3 | 4 | 5;
  title: string;
  /** arguments after `node` */
  argv: string[];
  timeoutS: number;
  /** how the result is read: the last JSON line on stdout, or vitest's JSON report */
  output: 'json' | 'vitest';
  /** set when the step is not run, with the reason */
  notRun?: string;
  /** ids of steps that must have passed (their output is this step's input) */
  needs?: string[];
}

export interface PeerAvailability {
  gpu: PeerGpu;
  /** null: present and runnable; else why not */
  missing: string | null;
}

export interface PlanOptions {
  dryRun: boolean;
  /** scratch folder for models (outside $OUT: only the report and log come back) */
  work: string;
  /** vitest's JSON report */
  vitestJson: string;
  peers: PeerAvailability[];
}

const KVRAG = ['bin/kvrag.js'];

/** Sizes of the full check (an H100 in ≤ 8 minutes) and of the dry run (llvmpipe in well under a minute). */
export function sizes(dryRun: boolean) {
  return dryRun
    ? {
        shapes: ['tiny'],
        kernelRows: '16',
        promptTokens: '32',
        decodeTokens: '4',
        batch: '2',
        peerPrefill: '16,32',
        ttftContext: '128',
        ttftChunk: '64',
        ttftQuestion: '8',
        maxPositions: '512',
        parityFiles: ['test/unit/webgpu/kv-f16.test.ts'],
      }
    : {
        shapes: ['smollm2', 'qwen2.5-1.5b'],
        kernelRows: '512,2048',
        promptTokens: '512',
        decodeTokens: '32',
        batch: '4',
        peerPrefill: '512,2048,8192',
        ttftContext: '8192,32768',
        ttftChunk: '512',
        ttftQuestion: '32',
        maxPositions: '16384',
        parityFiles: [],
      };
}

export function gpuCheckPlan(o: PlanOptions): StepSpec[] {
  const z = sizes(o.dryRun);
  const model = (shape: string) => join(o.work, `model-${shape}`);
  const steps: StepSpec[] = [
    {
      id: 'adapter',
      part: 2,
      title: 'the adapter Dawn picks and its features',
      argv: ['bench/gpu-check/adapter.ts', ...(o.dryRun ? [] : ['--hardware'])],
      timeoutS: 60,
      output: 'json',
    },
    {
      id: 'parity',
      part: 3,
      title: 'webgpu parity suites on this adapter',
      argv: [
        'node_modules/vitest/vitest.mjs',
        'run',
        '--config',
        'bench/gpu-check/vitest.config.ts',
        '--reporter=default',
        '--reporter=json',
        `--outputFile.json=${o.vitestJson}`,
        ...z.parityFiles,
      ],
      timeoutS: 180,
      output: 'vitest',
      needs: ['adapter'],
    },
  ];
  steps.push({
    id: 'kernels',
    part: 4,
    title: 'bench kernels on webgpu (f16 weights, tiled vs subgroup-matrix)',
    argv: [
      ...KVRAG,
      'bench',
      'kernels',
      '--backend',
      'webgpu',
      '--shape',
      z.shapes.join(','),
      '--rows',
      z.kernelRows,
      '--json',
    ],
    timeoutS: 150,
    output: 'json',
    needs: ['adapter'],
  });
  // per shape: its model, the engine on it, then the peers on the same weights — so the first shape's
  // whole comparison is done before the larger model is generated
  for (const shape of z.shapes) {
    steps.push({
      id: `model:${shape}`,
      part: 4,
      title: `generate a ${shape}-shaped model (f16 weights)`,
      argv: [
        'bench/gpu-check/make-model.ts',
        '--shape',
        shape,
        '--out',
        model(shape),
        '--max-positions',
        z.maxPositions,
      ],
      // Qwen2.5-1.5B's shape: 1.5G seeded values generated on one core, 3 GB written
      timeoutS: 180,
      output: 'json',
    });
    steps.push({
      id: `engine:${shape}`,
      part: 4,
      title: `bench engine on webgpu, ${shape} shape, f16 weights`,
      argv: [
        ...KVRAG,
        'bench',
        'engine',
        '--backend',
        'webgpu',
        '--weights',
        'f16',
        '--model',
        model(shape),
        '--prompt-tokens',
        z.promptTokens,
        '--decode-tokens',
        z.decodeTokens,
        '--batch',
        z.batch,
        '--json',
      ],
      timeoutS: 120,
      output: 'json',
      needs: ['adapter', `model:${shape}`],
    });
    for (const peer of o.peers)
      steps.push({
        id: `peer:${peer.gpu}:${shape}`,
        part: 5,
        title: `kvrag webgpu vs llama.cpp ${peer.gpu === 'none' ? 'CPU' : peer.gpu} build, ${shape} shape, same F16 GGUF`,
        argv: [
          ...KVRAG,
          'bench',
          'engine',
          '--peer',
          'llamacpp',
          '--peer-gpu',
          peer.gpu,
          '--backend',
          'webgpu',
          '--weights',
          'f16',
          '--formats',
          'f16',
          '--model',
          model(shape),
          '--prefill',
          z.peerPrefill,
          '--ttft',
          z.peerPrefill.split(',').at(-1)!,
          '--decode-tokens',
          z.decodeTokens,
          '--json',
        ],
        timeoutS: 180,
        output: 'json',
        needs: ['adapter', `model:${shape}`],
        ...(peer.missing ? { notRun: peer.missing } : {}),
      });
  }
  steps.push({
    id: 'ttft',
    part: 4,
    title: 'bench ttft on webgpu: full vs independent',
    argv: [
      ...KVRAG,
      'bench',
      'ttft',
      '--backend',
      'webgpu',
      '--weights',
      'f16',
      '--context',
      z.ttftContext,
      '--chunk-tokens',
      z.ttftChunk,
      '--question',
      z.ttftQuestion,
      '--system',
      z.ttftQuestion,
      '--modes',
      'full,independent',
      '--temps',
      'warm',
      '--runs',
      o.dryRun ? '1' : '2',
      // the dry run uses its tiny model; the full check the bench's own (hidden 512, 8 layers)
      ...(o.dryRun ? ['--model', model(z.shapes[0])] : []),
      '--json',
    ],
    timeoutS: 180,
    output: 'json',
    needs: ['adapter', ...(o.dryRun ? [`model:${z.shapes[0]}`] : [])],
  });
  return steps;
}
