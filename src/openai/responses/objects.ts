// The Responses API's objects as kvrag builds them (shapes from OpenAI's API reference and the `openai`
// SDK's types): the file_search_call and message output items, output text with file_citation
// annotations, usage. An answer cites its numbered sources as `[n]` (src/answer/prompt.ts); each marker
// becomes one file_citation whose `index` is the marker's offset in the text (UTF-16 code units), naming
// source n's vector store file.
import type { RunnerUsage } from '../../../contracts/runner-api.ts';
import { citationMarks } from '../../answer/prompt.ts';
import type { HybridHit } from '../../retrieval/hybrid.ts';
import { fileIdOfHit } from '../vector-store-files.ts';

/** An id for an output item: OpenAI's style, a type prefix and 32 hex digits. */
export const itemId = (prefix: 'fs' | 'msg') => `${prefix}_${crypto.randomUUID().replaceAll('-', '')}`;

export interface FileSearchResult {
  file_id: string;
  filename: string;
  score: number;
  text: string;
  attributes: Record<string, unknown>;
}

export interface FileSearchCall {
  id: string;
  type: 'file_search_call';
  status: 'in_progress' | 'searching' | 'completed' | 'failed';
  queries: string[];
  results: FileSearchResult[] | null;
}

export interface FileCitation {
  type: 'file_citation';
  file_id: string;
  filename: string;
  index: number;
}

export interface OutputText {
  type: 'output_text';
  text: string;
  annotations: FileCitation[];
  logprobs: never[];
}

export interface OutputMessage {
  id: string;
  type: 'message';
  role: 'assistant';
  status: 'in_progress' | 'completed' | 'incomplete';
  content: OutputText[];
}

export type OutputItem = FileSearchCall | OutputMessage;

/** A message given as input, as GET /v1/responses/{id}/input_items lists it. */
export interface InputMessage {
  id: string;
  type: 'message';
  role: 'user' | 'system' | 'developer';
  status: 'completed';
  content: { type: 'input_text'; text: string }[];
}

/**
 * One input item of a response, kept as the request gave it (ids given to messages that had none):
 * earlier assistant turns handed back are output messages, file_search_call items keep their fields.
 */
export type InputItem =
  | InputMessage
  | OutputMessage
  | ({ id: string; type: 'file_search_call' } & Record<string, unknown>);

export function fileSearchResults(sources: readonly HybridHit[]): FileSearchResult[] {
  return sources.map((h) => ({
    file_id: fileIdOfHit(h),
    filename: h.filename,
    score: h.score,
    text: h.text,
    attributes: h.attributes,
  }));
}

/** One file_citation per `[n]` marker of the text naming source n (sources[n - 1]). */
export function fileCitations(text: string, sources: readonly HybridHit[]): FileCitation[] {
  return citationMarks(text, sources.length).map(({ n, index }) => {
    const h = sources[n - 1];
    return { type: 'file_citation', file_id: fileIdOfHit(h), filename: h.filename, index };
  });
}

export const outputText = (text: string, annotations: FileCitation[]): OutputText => ({
  type: 'output_text',
  text,
  annotations,
  logprobs: [],
});

export function usageOf(u: RunnerUsage) {
  return {
    input_tokens: u.promptTokens,
    input_tokens_details: { cached_tokens: u.cachedTokens },
    output_tokens: u.completionTokens,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: u.promptTokens + u.completionTokens,
  };
}
