// llama.cpp as a benchmark peer, through node-llama-cpp's prebuilt builds (a devDependency; nothing is
// downloaded or compiled at run time: `build: 'never'`): the CPU build by default, or the CUDA or Vulkan
// build (`gpu`, every layer offloaded) where its package (@node-llama-cpp/linux-x64-cuda, -vulkan) and
// the GPU's libraries are present. The prebuilt packages hold one libggml-cpu variant per x86 family
// (haswell, skylakex, icelake, zen4, …) and ggml loads the best one for this CPU; `variant` reports
// which one this process mapped.
import { readFileSync } from 'node:fs';

/** Which llama.cpp build runs the model: the CPU build, or a GPU build with every layer offloaded. */
export type LlamaCppGpu = false | 'cuda' | 'vulkan';

export interface LlamaCppInfo {
  /** false (CPU build) or the GPU build in use ('cuda', 'vulkan') */
  gpu: LlamaCppGpu;
  /** the GPU devices llama.cpp sees (empty for the CPU build) */
  gpuDevices: string[];
  /** node-llama-cpp's build type ("prebuilt" here) and llama.cpp release */
  build: string;
  release: string;
  /** the libggml-cpu-*.so this process loaded, e.g. "zen4" (null if it could not be seen) */
  variant: string | null;
  /** llama_print_system_info: the CPU features ggml was built for */
  systemInfo: string;
}

export interface PeerTiming {
  /** ms from an empty cache to the first generated token */
  ttftMs: number;
}

export interface PeerDecode {
  tokens: number[];
  /** ms per generated token after the first */
  msPerToken: number;
}

type NodeLlamaCpp = typeof import('node-llama-cpp');
type Token = import('node-llama-cpp').Token;
/** node-llama-cpp brands token ids; ours are plain vocabulary indices. */
const asTokens = (ids: readonly number[]) => ids as unknown as Token[];

function loadedVariant(): string | null {
  try {
    const maps = readFileSync('/proc/self/maps', 'utf8');
    const m = /libggml-cpu-([A-Za-z0-9_]+)\.so/.exec(maps);
    if (m) return m[1];
    return /libggml-cpu\.so/.test(maps) ? 'generic' : null;
  } catch {
    return null;
  }
}

/** One llama.cpp model with one context and sequence, evaluated on token ids. */
export class LlamaCppPeer {
  readonly info: LlamaCppInfo;
  readonly #dispose: () => Promise<void>;
  readonly #seq: import('node-llama-cpp').LlamaContextSequence;

  private constructor(
    info: LlamaCppInfo,
    seq: import('node-llama-cpp').LlamaContextSequence,
    dispose: () => Promise<void>,
  ) {
    this.info = info;
    this.#seq = seq;
    this.#dispose = dispose;
  }

  static async open(
    modelPath: string,
    opts: {
      contextSize: number;
      threads: number;
      batchSize: number;
      flashAttention: boolean;
      gpu?: LlamaCppGpu;
    },
  ): Promise<LlamaCppPeer> {
    const gpu = opts.gpu ?? false;
    let lib: NodeLlamaCpp;
    try {
      lib = await import('node-llama-cpp');
    } catch (err) {
      throw new Error(`--peer llamacpp needs the node-llama-cpp devDependency: ${(err as Error).message}`);
    }
    const llama = await lib.getLlama({
      gpu,
      build: 'never',
      progressLogs: false,
      logLevel: lib.LlamaLogLevel.error,
    });
    if (llama.gpu !== gpu) {
      await llama.dispose();
      throw new Error(`llama.cpp: asked for the ${gpu || 'CPU'} build, got ${llama.gpu || 'CPU'}`);
    }
    const model = await llama.loadModel({ modelPath, gpuLayers: gpu ? 'max' : 0 });
    const context = await model.createContext({
      contextSize: opts.contextSize,
      threads: opts.threads,
      batchSize: opts.batchSize,
      flashAttention: opts.flashAttention,
    });
    const info: LlamaCppInfo = {
      gpu,
      gpuDevices: gpu ? await llama.getGpuDeviceNames() : [],
      build: llama.buildType,
      release: llama.llamaCppRelease.release,
      variant: loadedVariant(),
      systemInfo: llama.systemInfo.trim(),
    };
    return new LlamaCppPeer(info, context.getSequence(), async () => {
      await context.dispose();
      await model.dispose();
      await llama.dispose();
    });
  }

  /** Prefill of `prompt` from an empty cache up to the first (greedy) token. */
  async ttft(prompt: readonly number[]): Promise<PeerTiming> {
    await this.#seq.clearHistory();
    const it = this.#seq.evaluate(asTokens([...prompt]), { temperature: 0 });
    const t0 = performance.now();
    await it.next();
    const ttftMs = performance.now() - t0;
    await it.return();
    return { ttftMs };
  }

  /** `count` greedy tokens after `prompt`; the time per token excludes the first (the prefill). */
  async decode(prompt: readonly number[], count: number): Promise<PeerDecode> {
    await this.#seq.clearHistory();
    const tokens: number[] = [];
    let t1 = 0;
    for await (const tok of this.#seq.evaluate(asTokens([...prompt]), { temperature: 0 })) {
      tokens.push(tok as unknown as number);
      if (tokens.length === 1) t1 = performance.now();
      if (tokens.length >= count) break;
    }
    return { tokens, msPerToken: (performance.now() - t1) / Math.max(1, count - 1) };
  }

  dispose(): Promise<void> {
    return this.#dispose();
  }
}
