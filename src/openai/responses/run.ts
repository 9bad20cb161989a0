// Creating a response (POST /v1/responses) on the RAG use case (src/answer/): the conversation so far
// (a stored previous response's, then this turn's input), the file_search tool's vector stores as the
// collections to retrieve from, the last user message as the retrieval query, the plan and KV reuse as
// for any answer. Streaming and not share this one path: `emit` receives the events (events.ts), and
// without it the finished response is all there is.
//
// Everything that can be refused (previous response, model, vector stores, filters) is checked by
// createResponse before anything runs, so it is an HTTP error. A failure after `response.created`
// becomes `response.failed` when streaming; otherwise it is thrown.
//
//   const pending = await createResponse(deps, tenantId, input, now);   // refusals throw here
//   const run = await pending.run({ t0, signal, emit });
//   run.response   the response object (status completed | incomplete | failed)
//   run.answer     the answer run (usage, ttft, runner) when one was generated
import { AppError, asAppError } from '../../../contracts/errors.ts';
import type { ChatMessage } from '../../../contracts/runner-api.ts';
import { type RagInput, prepareAnswer, servedModels } from '../../answer/prepare.ts';
import { deterministic, runnerRequest, type Sampling, stoppedEarly } from '../../answer/prompt.ts';
import { type AnswerRun, answerCacheKey, runAnswer } from '../../answer/run.ts';
import type { AnswerDeps, Prepared } from '../../answer/services.ts';
import { parseAttributeFilter } from '../../retrieval/filters.ts';
import { fileIdOfHit } from '../vector-store-files.ts';
import { assertUsable, findVectorStores, touchVectorStores } from '../vector-stores.ts';
import { type EventSink, ResponseEvents } from './events.ts';
import {
  type FileSearchCall,
  fileCitations,
  fileSearchResults,
  type InputItem,
  itemId,
  type OutputItem,
  type OutputMessage,
  outputText,
  usageOf,
} from './objects.ts';
import { loadResponse, saveResponse } from './store.ts';

export interface FileSearchInput {
  vectorStoreIds: string[];
  /** Results per store and retrieval step (the plan's k). */
  maxNumResults?: number;
  filters?: unknown;
  scoreThreshold?: number;
  weights?: { vector: number; text: number };
}

/** One POST /v1/responses as the use case takes it (the route maps the body onto this). */
export interface ResponseInput {
  model: string;
  /** This turn's input items as chat messages (developer → system). */
  messages: ChatMessage[];
  /** The same items as given (stored for GET …/input_items). */
  inputItems: InputItem[];
  instructions?: string;
  previousResponseId?: string;
  /** The file_search tool, unless absent or tool_choice is `none`. */
  fileSearch?: FileSearchInput;
  /** include: ["file_search_call.results"]. */
  includeResults: boolean;
  maxOutputTokens?: number;
  sampling: Sampling;
  store: boolean;
  /** kvrag's own knobs (the request's `kvrag` extension field). */
  rag?: Pick<RagInput, 'quality' | 'reuse' | 'iterative'>;
  /** Request fields the response object repeats as given (tools, tool_choice, temperature, metadata…). */
  echo: Record<string, unknown>;
}

export interface ResponseRunOptions {
  /** performance.now() when the request arrived. */
  t0: number;
  signal: AbortSignal;
  requestId?: string;
  /** Streaming: where the events go. */
  emit?: EventSink;
}

/** A checked request, ready to run once. */
export interface PendingResponse {
  run(opts: ResponseRunOptions): Promise<ResponseRun>;
}

export interface ResponseRun {
  response: Record<string, unknown> & { id: string; status: string };
  /** The retrieval query (the last user message). */
  question: string;
  prepared?: Prepared;
  answer?: AnswerRun;
}

const unix = (d: Date) => Math.floor(d.getTime() / 1000);
const round = (ms: number) => Math.round(ms * 10) / 10;

/** Checks one response request (see the file header for what is refused); `run` then runs it. */
export async function createResponse(
  deps: AnswerDeps,
  tenantId: string,
  input: ResponseInput,
  now: Date,
): Promise<PendingResponse> {
  const previous = input.previousResponseId
    ? await loadResponse(deps.db, tenantId, input.previousResponseId)
    : null;
  const conversation: ChatMessage[] = [...(previous?.conversation ?? []), ...input.messages];
  const question = conversation.findLast((m) => m.role === 'user')?.content ?? '';
  if (!question.trim()) throw new AppError('bad_request', 'input must contain a non-empty user message');
  const model = (await servedModels(deps.answer)).find((m) => m.id === input.model);
  if (!model) throw new AppError('not_found', `model "${input.model}" is not served here`);
  const fs = input.fileSearch;
  if (fs) {
    assertUsable(await findVectorStores(deps.db, tenantId, fs.vectorStoreIds), now);
    if (fs.filters != null) parseAttributeFilter(fs.filters);
  }
  const checked = { previousId: previous?.id ?? null, conversation, question, model: model.id, now };
  return { run: (opts) => runResponse(deps, tenantId, input, checked, opts) };
}

interface Checked {
  previousId: string | null;
  conversation: ChatMessage[];
  question: string;
  model: string;
  now: Date;
}

async function runResponse(
  deps: AnswerDeps,
  tenantId: string,
  input: ResponseInput,
  { previousId, conversation, question, model, now }: Checked,
  opts: ResponseRunOptions,
): Promise<ResponseRun> {
  const fs = input.fileSearch;

  const output: OutputItem[] = [];
  const response: ResponseRun['response'] = {
    id: crypto.randomUUID(),
    object: 'response',
    created_at: unix(now),
    status: 'in_progress',
    error: null,
    incomplete_details: null,
    model,
    output,
    previous_response_id: previousId,
    usage: null,
    ...input.echo,
  };
  const events = opts.emit ? new ResponseEvents(opts.emit) : null;
  const emit = async (type: string, fields: Record<string, unknown>) => events?.emit(type, fields);
  await emit('response.created', { response });
  await emit('response.in_progress', { response });

  let fsCall: FileSearchCall | undefined;
  try {
    if (fs) {
      fsCall = {
        id: itemId('fs'),
        type: 'file_search_call',
        status: 'in_progress',
        queries: [question],
        results: null,
      };
      output.push(fsCall);
      const at = { output_index: 0, item_id: fsCall.id };
      await emit('response.output_item.added', { output_index: 0, item: fsCall });
      await emit('response.file_search_call.in_progress', at);
      fsCall.status = 'searching';
      await emit('response.file_search_call.searching', at);
    }
    const p = await prepareAnswer(deps, tenantId, {
      question,
      collectionIds: fs?.vectorStoreIds ?? [],
      filters: fs?.filters ?? undefined,
      k: fs?.maxNumResults,
      scoreThreshold: fs?.scoreThreshold,
      weights: fs?.weights,
      maxTokens: input.maxOutputTokens,
      model,
      ...input.rag,
    });
    if (fs && fsCall) {
      await touchVectorStores(deps.db, tenantId, fs.vectorStoreIds, now);
      fsCall.status = 'completed';
      fsCall.results = input.includeResults ? fileSearchResults(p.sources) : null;
      await emit('response.file_search_call.completed', { output_index: 0, item_id: fsCall.id });
      await emit('response.output_item.done', { output_index: 0, item: fsCall });
    }

    const msg: OutputMessage = {
      id: itemId('msg'),
      type: 'message',
      role: 'assistant',
      status: 'in_progress',
      content: [],
    };
    const at = { item_id: msg.id, output_index: output.length, content_index: 0 };
    output.push(msg);
    await emit('response.output_item.added', { output_index: at.output_index, item: msg });
    msg.content.push(outputText('', []));
    await emit('response.content_part.added', { ...at, part: msg.content[0] });

    const messages: ChatMessage[] = input.instructions
      ? [{ role: 'system', content: input.instructions }, ...conversation]
      : conversation;
    const request = runnerRequest(p, { messages }, input.sampling);
    const cacheKey = answerCacheKey(tenantId, 'responses', p, request);
    const cacheable = deterministic(input.sampling);
    const hit = cacheable ? deps.answer.cache?.get(cacheKey) : undefined;
    const run = await runAnswer(
      deps.answer,
      p,
      request,
      {
        t0: opts.t0,
        signal: opts.signal,
        hit,
        requestId: opts.requestId,
        ...(cacheable ? { cacheKey } : {}),
      },
      (delta) => emit('response.output_text.delta', { ...at, delta, logprobs: [] }),
    );

    const text = run.answer.text;
    const annotations = fileCitations(text, p.sources);
    for (const [i, annotation] of annotations.entries())
      await emit('response.output_text.annotation.added', { ...at, annotation_index: i, annotation });
    await emit('response.output_text.done', { ...at, text, logprobs: [] });
    msg.content[0] = outputText(text, annotations);
    await emit('response.content_part.done', { ...at, part: msg.content[0] });
    const incomplete = stoppedEarly(run.answer.finishReason);
    msg.status = incomplete ? 'incomplete' : 'completed';
    await emit('response.output_item.done', { output_index: at.output_index, item: msg });

    Object.assign(response, {
      status: incomplete ? 'incomplete' : 'completed',
      incomplete_details: incomplete ? { reason: 'max_output_tokens' } : null,
      completed_at: incomplete ? null : unix(new Date()),
      usage: usageOf(run.answer.usage),
      // kvrag's extension: unchanged clients ignore it
      kvrag: {
        plan: p.plan,
        // each source [n] with the vector store file it came from
        citations: p.citations.map((cit, i) => ({ ...cit, file_id: fileIdOfHit(p.sources[i]) })),
        cached_answer: !!hit,
        runner: run.runner,
        timings: {
          retrieval_ms: round(p.retrievalMs),
          ttft_ms: round(run.ttft),
          total_ms: round(performance.now() - opts.t0),
        },
      },
    });
    // stored before the last event: a client that retrieves it on `response.completed` finds it
    if (input.store)
      await saveResponse(deps.db, {
        id: response.id,
        tenantId,
        previousResponseId: previousId,
        body: response,
        conversation: [...conversation, { role: 'assistant', content: text }],
        inputItems: input.inputItems,
      });
    await emit(incomplete ? 'response.incomplete' : 'response.completed', { response });
    return { response, question, prepared: p, answer: run };
  } catch (e) {
    if (!events) throw e;
    const err = asAppError(e);
    if (fsCall && fsCall.status !== 'completed') fsCall.status = 'failed';
    for (const item of output)
      if (item.type === 'message' && item.status === 'in_progress') item.status = 'incomplete';
    Object.assign(response, {
      status: 'failed',
      error: {
        code: err.code === 'rate_limited' ? 'rate_limit_exceeded' : 'server_error',
        message: err.message,
      },
    });
    await emit('response.failed', { response });
    deps.log?.('warn', 'response failed after it started', { response: response.id, err: String(e) });
    if (input.store)
      await saveResponse(deps.db, {
        id: response.id,
        tenantId,
        previousResponseId: previousId,
        body: response,
        conversation,
        inputItems: input.inputItems,
      }).catch(() => {});
    return { response, question };
  }
}
