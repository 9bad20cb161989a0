// What a generation request is, how it can end and what it reports — for the runner's requests (prompt
// as blocks, reuse modes, squeezed/sparse controls) and direct engine use alike (Engine.generate passes
// its prompt as the question of a `full` request) — and the one check every request passes.
import type { ReuseMode } from '../../../contracts/reuse.ts';
import type { FinishReason, RunnerUsage, SamplingInput } from '../../../contracts/runner-api.ts';
import type { SparseControl } from '../../../contracts/sparse.ts';
import type { SelectMode } from '../attention/squeezed/select.ts';
import { InvalidRequestError } from '../errors.ts';

/** Sampling, stop rules and streaming of one request. Token ids are already encoded. */
export interface DecodeOptions {
  maxTokens: number;
  sampling?: SamplingInput;
  /** Token ids that end generation (not part of the output). Default: the model's eos ids. */
  stopTokenIds?: readonly number[];
  /** Strings that end generation; the output is cut before the first one. */
  stopStrings?: readonly string[];
  /** Client gone: the sequence ends and its KV memory is freed at the next step. */
  signal?: AbortSignal;
  /** Absolute time (ms, performance.now() clock) after which the sequence ends with 'deadline'. */
  deadline?: number;
  /** Streaming: called with each newly final piece of text (never part of a stop string). */
  onText?: (delta: string) => void;
  /** Called with each generated token id (stop tokens excluded). */
  onToken?: (id: number) => void;
}

/** What a client asks the scheduler for: the prompt as [system][chunks…][question] and a reuse mode. */
export interface SeqRequest extends DecodeOptions {
  system: readonly number[];
  chunks: readonly (readonly number[])[];
  question: readonly number[];
  mode: ReuseMode;
  blendRatio?: number;
  linkTokens?: number;
  /** Squeezed attention over the fixed context (resolved control); null/absent = dense. */
  squeezed?: SelectMode | null;
  /** Sparse prefill of the live tokens (DESIGN.md §4.3); null/absent/off = dense. */
  sparse?: SparseControl | null;
}

export const promptLength = (r: SeqRequest): number =>
  r.system.length + r.chunks.reduce((s, c) => s + c.length, 0) + r.question.length;

/** What a request is checked against. */
export interface RequestLimits {
  maxContext: number;
  vocabSize: number;
  /** Whether reuse modes other than `full` can be served (an artifact store is attached). */
  canAssemble: boolean;
}

/** Throws InvalidRequestError naming the problem of a request that can never run. */
export function checkRequest(r: SeqRequest, limits: RequestLimits): void {
  const bad = (message: string) => new InvalidRequestError(message);
  const prompt = promptLength(r);
  if (r.question.length === 0 && r.mode !== 'full') throw bad(`reuse mode ${r.mode} needs a question`);
  if (prompt === 0) throw bad('empty prompt');
  if (!Number.isInteger(r.maxTokens) || r.maxTokens < 1)
    throw bad(`maxTokens must be a positive integer, got ${r.maxTokens}`);
  if (prompt + r.maxTokens > limits.maxContext)
    throw bad(`prompt ${prompt} + maxTokens ${r.maxTokens} exceed the model context ${limits.maxContext}`);
  const ids = [r.system, ...r.chunks, r.question];
  if (ids.some((t) => t.some((id) => !Number.isInteger(id) || id < 0 || id >= limits.vocabSize)))
    throw bad('token ids outside the vocabulary');
  if (r.mode !== 'full' && !limits.canAssemble) throw bad(`reuse mode ${r.mode} needs an artifact store`);
}

/** Engine.generate's request: prompt token ids (already templated), generated from as a `full` request. */
export interface GenerateRequest extends DecodeOptions {
  prompt: readonly number[];
}

export interface GenerateResult {
  tokens: number[];
  text: string;
  finishReason: FinishReason;
  promptTokens: number;
  /** ms from the call to the first generated token (prefill + first sample). */
  ttftMs: number;
  totalMs: number;
}

export function generateRequest({ prompt, ...opts }: GenerateRequest): SeqRequest {
  return { system: [], chunks: [], question: prompt, mode: 'full', ...opts };
}

export function generateResult(u: RunnerUsage): GenerateResult {
  return {
    tokens: u.tokens,
    text: u.text,
    finishReason: u.finishReason,
    promptTokens: u.promptTokens,
    ttftMs: u.timingsMs.ttft,
    totalMs: u.timingsMs.total,
  };
}
