// The generation loop: prefills several prompts in one step, then decodes all live sequences together
// one token per step, with per-request sampling, stop tokens, stop strings, max tokens, and streaming
// text deltas that never split a UTF-8 character or leak part of a stop string.
import type { SamplingInput } from '../../contracts/runner-api.ts';
import { Detokenizer } from './detokenizer.ts';
import { InvalidRequestError } from './errors.ts';
import { SequenceKV } from './kv-cache.ts';
import type { Model, StepInput } from './model.ts';
import { Sampler } from './sampler.ts';
import { emitUntilStop } from './stop.ts';
import type { TextTokenizer } from './tokenizer.ts';

export interface GenerateRequest {
  /** Prompt token ids (already templated). */
  prompt: readonly number[];
  maxTokens: number;
  sampling?: SamplingInput;
  /** Token ids that end generation (not part of the output). Default: the model's eos ids. */
  stopTokenIds?: readonly number[];
  /** Strings that end generation; the output is cut before the first one. */
  stopStrings?: readonly string[];
  /** Streaming: called with each newly final piece of text. */
  onText?: (delta: string) => void;
  /** Called with each generated token id (stop tokens excluded). */
  onToken?: (id: number) => void;
  signal?: AbortSignal;
}

export type FinishReason = 'stop' | 'length' | 'aborted';

export interface GenerateResult {
  tokens: number[];
  text: string;
  finishReason: FinishReason;
  promptTokens: number;
  /** ms from start to the first generated token (prefill + first sample). */
  ttftMs: number;
  totalMs: number;
}

export interface GenerateContext {
  model: Model;
  tokenizer: TextTokenizer;
  defaultStopIds: readonly number[];
  maxContext: number;
}

class Live {
  readonly req: GenerateRequest;
  readonly kv: SequenceKV;
  readonly sampler: Sampler;
  readonly detok: Detokenizer;
  readonly stopIds: Set<number>;
  readonly tokens: number[] = [];
  emitted = 0;
  finish: FinishReason | null = null;
  text = '';
  ttftMs = 0;
  totalMs = 0;
  constructor(ctx: GenerateContext, req: GenerateRequest) {
    this.req = req;
    this.sampler = new Sampler(req.sampling);
    this.detok = new Detokenizer(ctx.tokenizer);
    this.stopIds = new Set(req.stopTokenIds ?? ctx.defaultStopIds);
    const capacity = req.prompt.length + req.maxTokens;
    // request problems: the runner answers them as 400s
    if (req.prompt.length === 0) throw new InvalidRequestError('empty prompt');
    if (!Number.isInteger(req.maxTokens) || req.maxTokens < 1) {
      throw new InvalidRequestError(`max tokens must be a positive integer, got ${req.maxTokens}`);
    }
    if (capacity > ctx.maxContext) {
      throw new InvalidRequestError(
        `prompt ${req.prompt.length} + max tokens ${req.maxTokens} exceed the model context ${ctx.maxContext}`,
      );
    }
    this.kv = new SequenceKV(ctx.model.backend, ctx.model.cfg, capacity);
  }

  /** Accepts a sampled token; sets `finish` when the sequence is done. */
  accept(id: number, t0: number): void {
    if (this.tokens.length === 0) this.ttftMs = performance.now() - t0;
    if (this.stopIds.has(id)) {
      this.#end('stop');
      return;
    }
    this.tokens.push(id);
    this.req.onToken?.(id);
    this.detok.push(id);
    if (this.#emit(false)) return;
    if (this.tokens.length >= this.req.maxTokens) this.#end('length');
  }

  abort(): void {
    this.#end('aborted');
  }

  /** Streams safe text; true when a stop string ended the sequence. */
  #emit(final: boolean): boolean {
    const text = this.detok.text;
    const r = emitUntilStop(text, this.emitted, this.req.stopStrings ?? [], final, this.req.onText);
    this.emitted = r.emitted;
    if (r.stopAt >= 0) {
      this.text = text.slice(0, r.stopAt);
      this.finish = 'stop';
      return true;
    }
    return false;
  }

  #end(reason: FinishReason): void {
    this.detok.flush();
    if (!this.#emit(true)) {
      this.text = this.detok.text;
      this.finish = reason;
    }
  }
}

/** Runs all requests to completion, batching them step by step. Results are in request order. */
export async function generateBatch(
  ctx: GenerateContext,
  requests: readonly GenerateRequest[],
): Promise<GenerateResult[]> {
  const t0 = performance.now();
  const live: Live[] = [];
  try {
    for (const r of requests) live.push(new Live(ctx, r));
    let step: { seq: Live; input: StepInput }[] = live.map((s) => ({
      seq: s,
      input: { kv: s.kv, tokens: s.req.prompt },
    }));
    while (step.length > 0) {
      const ids = await sampleStep(
        ctx.model,
        step.map((s) => s.seq.sampler),
        step.map((s) => s.input),
      );
      const now = performance.now();
      step.forEach((s, i) => {
        if (s.seq.req.signal?.aborted) s.seq.abort();
        else s.seq.accept(ids[i], t0);
        if (s.seq.finish) s.seq.totalMs = now - t0;
      });
      step = step
        .filter((s) => !s.seq.finish)
        .map((s) => ({
          seq: s.seq,
          input: { kv: s.seq.kv, tokens: [s.seq.tokens[s.seq.tokens.length - 1]] },
        }));
    }
    return live.map((s) => ({
      tokens: s.tokens,
      text: s.text,
      finishReason: s.finish!,
      promptTokens: s.req.prompt.length,
      ttftMs: s.ttftMs,
      totalMs: s.totalMs,
    }));
  } finally {
    for (const s of live) s.kv.free();
  }
}

/** One forward step; samples one token per input. Greedy-only steps take the argmax on the device. */
async function sampleStep(model: Model, samplers: Sampler[], inputs: StepInput[]): Promise<number[]> {
  const b = model.backend;
  const logits = model.forward(inputs, 'last'); // [inputs, vocab]
  try {
    if (samplers.every((s) => s.greedy)) {
      const idx = b.argmax(logits);
      const out = await b.readInt(idx);
      b.free(idx);
      return Array.from(out);
    }
    const host = await b.read(logits);
    const vocab = logits.shape[1];
    return samplers.map((s, i) => s.sample(host.subarray(i * vocab, (i + 1) * vocab)));
  } finally {
    b.free(logits);
  }
}
