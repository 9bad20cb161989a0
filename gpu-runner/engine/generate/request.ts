// What a generation request is, how it can end and what it reports — for the runner's requests (prompt
// as blocks, reuse modes, squeezed/sparse controls) and direct engine use alike (Engine.generate passes
// its prompt as the question of a `full` request) — and the one check every request passes.
import type { SparseControl, SparseStats } from '../attention/sparse/prefill.ts';
import type { SelectMode } from '../attention/squeezed/select.ts';
import { EngineError } from '../errors.ts';
import type { ReuseMode } from '../reuse/types.ts';
import type { SamplingInput } from '../sampler.ts';

export type FinishReason = 'stop' | 'length' | 'aborted' | 'deadline' | 'shutdown' | 'error';

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

/** Usage and timings of a finished sequence (the SSE `done` event). */
export interface SeqUsage {
  finishReason: FinishReason;
  error?: string;
  text: string;
  tokens: number[];
  promptTokens: number;
  completionTokens: number;
  /** Prompt tokens whose K/V came from stored artifacts. */
  cachedTokens: number;
  /** Prompt tokens computed live (prefill, selective recompute, recompute after preemption). */
  prefillTokens: number;
  decodeTokens: number;
  /** Dense causal attention: Σ over computed tokens of the keys each one attended (per layer and head). */
  keysAttended: number;
  bytesLoaded: Record<string, number>;
  preemptions: number;
  timingsMs: { queueWait: number; ttft: number; total: number; assemble: number };
  /** When squeezed attention was asked for: fixed-context keys attended (Σ steps × layers × kv heads). */
  squeezed?: SqueezedUsage;
  /** When sparse prefill was asked for: the patterns that ran, density, whether all of it ran dense. */
  sparse?: SparseStats & { note?: string };
}

export interface SqueezedUsage {
  keysAttended: number;
  /** keysAttended / fixed-context keys over the same steps, layers and kv heads (1 = dense) */
  fraction: number;
  bytesTouched: number;
  /** fixed-context tokens without an index (attended in full) */
  unindexedTokens: number;
  /** why it was not used, when it was not (e.g. full mode, a backend without attentionRanges) */
  note?: string;
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

/** Throws EngineError('bad_request') naming the problem of a request that can never run. */
export function checkRequest(r: SeqRequest, limits: RequestLimits): void {
  const bad = (message: string) => new EngineError('bad_request', message);
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

export function generateResult(u: SeqUsage): GenerateResult {
  return {
    tokens: u.tokens,
    text: u.text,
    finishReason: u.finishReason,
    promptTokens: u.promptTokens,
    ttftMs: u.timingsMs.ttft,
    totalMs: u.timingsMs.total,
  };
}
