// The runner request of a prepared answer (contracts/runner-api.ts GenerateRequest): the prepared fixed
// context, the prompt — a question as text, or chat messages rendered with the model's template — the
// plan's generation settings (max tokens, reuse mode, squeezed attention, sparse prefill) and sampling.
// Also what the callers read back from an answer's text: its `[n]` citation markers.
import type { ChatMessage, GenerateRequest } from '../../contracts/runner-api.ts';
import type { Prepared } from './services.ts';

export const DEFAULT_SYSTEM =
  'Answer the question using the numbered sources below. Cite sources as [n] after the facts they support.\n';

/** Upper bound of the tokens of a text for byte-level tokenizers: its UTF-8 length. */
export const countTokens = (s: string) => new TextEncoder().encode(s).length;

/** What follows the fixed context: a question as text (the caller's own framing), or chat messages. */
export type Prompt = { question: string } | { messages: ChatMessage[] };

export interface Sampling {
  /** Default 0 (greedy). */
  temperature?: number;
  /** Default 1. */
  topP?: number;
  seed?: number;
  stop?: string[];
}

/**
 * The prompt of a bare question (POST /v1/query). A model with a chat template gets it as its user turn, so
 * the answer starts the assistant turn, as the model was tuned; without one, a plain transcript ending in
 * "Answer:". That transcript made templated models continue with the byte that follows a colon in the
 * documents -- a space (" 482913").
 */
export function questionPrompt(p: Prepared, question: string): Prompt {
  return p.model.chatTemplate
    ? { messages: [{ role: 'user', content: question }] }
    : { question: `\nQuestion: ${question}\nAnswer:` };
}

/** The runner request for a prepared answer and a prompt. */
export function runnerRequest(p: Prepared, prompt: Prompt, s: Sampling): GenerateRequest {
  const g = p.plan.generation;
  let promptPart: Prompt = prompt;
  if ('messages' in prompt && !p.model.chatTemplate) {
    // no chat template: a plain transcript ending with the assistant's turn
    const lines = prompt.messages.map((m) => `${m.role}: ${m.content}`);
    promptPart = { question: `\n${lines.join('\n')}\nassistant:` };
  }
  return {
    system: p.context.system,
    chunks: p.context.chunks,
    ...promptPart,
    maxTokens: g.maxTokens,
    sampling: {
      temperature: s.temperature ?? 0,
      topP: s.topP ?? 1,
      ...(s.seed !== undefined ? { seed: s.seed } : {}),
    },
    stop: s.stop ?? [],
    reuse: {
      mode: g.reuse.mode,
      ...(g.reuse.blendRatio !== undefined ? { blendRatio: g.reuse.blendRatio } : {}),
      ...(g.reuse.linkTokens !== undefined ? { linkTokens: g.reuse.linkTokens } : {}),
    },
    // squeezed attention and sparse prefill as planned (the plan holds the runner's own controls); the
    // runner attends chunks without a squeezed index densely, and prefills densely below break-even
    squeezed: g.squeezed,
    sparse: g.sparse,
  };
}

/** Whether the runner stopped an answer for its length (max tokens, or the deadline) rather than its end. */
export const stoppedEarly = (finishReason: string) =>
  finishReason === 'length' || finishReason === 'deadline';

/** Whether repeated identical requests give the same answer (greedy, or seeded sampling). */
export const deterministic = (s: Sampling) => (s.temperature ?? 0) === 0 || s.seed !== undefined;

/** One `[n]` marker of an answer naming source n, at `index` (UTF-16 offset of its `[`) in the text. */
export interface CitationMark {
  n: number;
  index: number;
}

/** Every `[n]` marker of an answer that names one of its `count` sources, in order of appearance. */
export function citationMarks(text: string, count: number): CitationMark[] {
  const out: CitationMark[] = [];
  for (const m of text.matchAll(/\[(\d{1,3})\]/g)) {
    const n = Number(m[1]);
    if (n >= 1 && n <= count) out.push({ n, index: m.index });
  }
  return out;
}

/** The sources an answer cites, in order of first appearance. */
export function citedNumbers(text: string, count: number): number[] {
  return [...new Set(citationMarks(text, count).map((m) => m.n))];
}
