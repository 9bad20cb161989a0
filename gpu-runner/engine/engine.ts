// The engine: a loaded model directory on a backend. This is what the runner and the CLI construct:
//   const engine = await loadEngine('models/tiny', { backend: 'reference' });
//   const [r] = await engine.generate([{ prompt: engine.encodeChat([{role:'user', content:'hi'}]), maxTokens: 32 }]);
import type { ModelProfile } from '../../contracts/model-profile.ts';
import { defaultSparseConfig, type SparseConfig } from './attention/sparse/config.ts';
import type { SqueezedSettings } from './attention/squeezed/calibrate.ts';
import { type BackendChoice, type BackendOptions, createBackend } from './backends/registry.ts';
import type { Backend } from './backends/types.ts';
import { type ChatMessage, ChatTemplate } from './chat-template.ts';
import { modelFingerprint } from './fingerprint.ts';
import {
  type GenerateRequest,
  type GenerateResult,
  generateRequest,
  generateResult,
} from './generate/request.ts';
import { Scheduler } from './generate/scheduler.ts';
import { SequenceKV } from './kv-cache.ts';
import { type LogitRows, Model, type StepInput } from './model.ts';
import type { ModelConfig } from './model-config.ts';
import { type ModelFiles, measuredSparseConfig, modelProfile, readModelFiles } from './model-profile.ts';
import { TextTokenizer } from './tokenizer.ts';
import { loadWeights, type WeightDType } from './weights.ts';

export interface EngineOptions {
  /**
   * A backend instance, or one by name (backends/registry.ts): 'reference' (plain TS, the oracle),
   * 'wasm' (SIMD + threads), 'webgpu', 'auto' (the best CPU backend here). Default 'reference'.
   * Engine.dispose() disposes the backend either way.
   */
  backend?: Backend | BackendChoice;
  /** Options for a backend created by name (threads, webgpu adapter). */
  backendOptions?: BackendOptions;
  /**
   * Device dtype of weight matrices: f32, f16, or q8_0 / q4_0 blocks (quantized at load unless the GGUF
   * file holds them). Default: as stored (weights.ts matrixDType: GGUF Q8_0/Q4_0 kept, Q4_K/Q6_K as
   * q8_0, floats f32). A dtype the backend does not take falls back to f32.
   */
  weightDType?: WeightDType;
  /** Cap on positions per sequence. Default: the model's max_position_embeddings (or sliding window). */
  maxContext?: number;
}

export class Engine {
  readonly dir: string;
  readonly config: ModelConfig;
  readonly tokenizer: TextTokenizer;
  readonly chatTemplate: ChatTemplate | null;
  readonly fingerprint: string;
  readonly backend: Backend;
  readonly model: Model;
  readonly maxContext: number;
  /** Ids that end generation by default: eos ids of config.json and generation_config.json, and the tokenizer's eos token. */
  readonly stopTokenIds: readonly number[];
  /** Sparse prefill per (layer, kv head): sparse.json when searched on these weights, else the default. */
  readonly sparseConfig: SparseConfig;
  /** squeezed.json (the calibrated τ); null when never calibrated. */
  readonly squeezedSettings: SqueezedSettings | null;
  /** What the runner publishes of this model (GET /v1/model, heartbeats). */
  readonly profile: ModelProfile;

  constructor(init: {
    files: ModelFiles;
    tokenizer: TextTokenizer;
    fingerprint: string;
    backend: Backend;
    model: Model;
    maxContext: number;
  }) {
    const { files } = init;
    this.dir = files.dir;
    this.config = files.config;
    this.tokenizer = init.tokenizer;
    this.fingerprint = init.fingerprint;
    this.backend = init.backend;
    this.model = init.model;
    this.maxContext = init.maxContext;
    const tpl = init.tokenizer.chatTemplate;
    this.chatTemplate = tpl ? new ChatTemplate(tpl, init.tokenizer) : null;
    const eos = init.tokenizer.eosToken ? init.tokenizer.tokenId(init.tokenizer.eosToken) : undefined;
    this.stopTokenIds = [
      ...new Set([
        ...files.config.eosTokenIds,
        ...files.generationEosIds,
        ...(eos === undefined ? [] : [eos]),
      ]),
    ];
    this.sparseConfig =
      measuredSparseConfig(files, init.fingerprint) ??
      defaultSparseConfig(files.config.layers, files.config.kvHeads);
    this.squeezedSettings = files.squeezed;
    this.profile = modelProfile(files, {
      fingerprint: init.fingerprint,
      maxContext: init.maxContext,
      chatTemplate: this.chatTemplate !== null,
    });
  }

  encode(text: string): number[] {
    return this.tokenizer.encode(text);
  }

  /**
   * Renders the chat template (ending with the assistant prompt) and encodes it: the template's special
   * tokens become special ids, special-token strings inside message contents stay plain text.
   */
  encodeChat(messages: readonly ChatMessage[]): number[] {
    if (!this.chatTemplate) throw new Error(`${this.dir}: tokenizer_config.json has no chat_template`);
    const pieces = this.chatTemplate.renderPieces(messages, this.tokenizer.specialStrings, true);
    return pieces.flatMap((p) =>
      p.plain ? this.tokenizer.encode(p.text) : this.tokenizer.encodeWithSpecials(p.text),
    );
  }

  decode(ids: readonly number[]): string {
    return this.tokenizer.decode(ids, true);
  }

  /** A fresh, empty per-sequence KV cache with room for `capacity` positions. */
  newSequence(capacity: number): SequenceKV {
    if (capacity > this.maxContext)
      throw new Error(`capacity ${capacity} exceeds max context ${this.maxContext}`);
    return new SequenceKV(this.backend, this.config, capacity);
  }

  /**
   * One forward step over several sequences (appends their K/V); returns host logits:
   * [inputs, vocab] for 'last', [total new tokens, vocab] for 'all'.
   */
  async forward(
    inputs: readonly StepInput[],
    rows: LogitRows = 'last',
    /** Layer l starts once ready(l) resolves (Model.forwardWhenReady); absent = at once. */
    ready?: (layer: number) => Promise<void>,
  ): Promise<Float32Array> {
    const t = ready
      ? await this.model.forwardWhenReady(inputs, rows, ready)
      : this.model.forward(inputs, rows);
    try {
      return await this.backend.read(t);
    } finally {
      this.backend.free(t);
    }
  }

  /**
   * Generates for several requests together; results in request order. A local scheduler (the runner's
   * continuous batching) runs them to completion: every prompt is prefilled in one step, then all live
   * sequences decode together, each cache sized for its prompt + maxTokens up front.
   */
  async generate(requests: readonly GenerateRequest[]): Promise<GenerateResult[]> {
    const all = Number.POSITIVE_INFINITY;
    const s = new Scheduler(this, {
      background: false,
      maxRunning: all,
      maxStepTokens: all,
      kvBytes: all,
      growBlock: all,
    });
    const seqs = requests.map((r) => s.enqueue(generateRequest(r)));
    await s.run();
    const failed = seqs.find((q) => q.finish === 'error');
    if (failed) throw failed.cause;
    return Promise.all(seqs.map(async (q) => generateResult(await q.done)));
  }

  dispose(): void {
    this.model.dispose();
    this.backend.dispose();
  }
}

/**
 * Loads a model: a Hugging Face directory, a GGUF file, or `ollama:NAME[:TAG]` (a GGUF in ollama's store;
 * its quantized tensors stay blocks where the backend takes them, see weights.ts matrixDType).
 */
export async function loadEngine(dir: string, opts: EngineOptions = {}): Promise<Engine> {
  const files = readModelFiles(dir);
  const { config } = files;
  const tokenizer = new TextTokenizer(files.tokenizer);
  const choice = opts.backend ?? 'reference';
  const backend = typeof choice === 'object' ? choice : await createBackend(choice, opts.backendOptions);
  try {
    const weights = loadWeights(dir, config, backend, opts.weightDType);
    const fingerprint = modelFingerprint(dir);
    const modelMax = Math.min(config.maxPositionEmbeddings, config.slidingWindow ?? Number.POSITIVE_INFINITY);
    const maxContext = Math.min(opts.maxContext ?? modelMax, modelMax);
    const model = new Model(config, weights, backend);
    return new Engine({ files, tokenizer, fingerprint, backend, model, maxContext });
  } catch (err) {
    // a backend made here is ours to free (this also stops a wasm backend's workers)
    if (typeof opts.backend !== 'object') backend.dispose();
    throw err;
  }
}
