// /v1/responses (OpenAI's Responses API) on the RAG use case (src/openai/responses/run.ts): create — plain
// or streamed (`stream: true`: the events of src/openai/responses/events.ts as SSE, `event:` named by
// type) — with the file_search tool over vector stores, `include: ["file_search_call.results"]`,
// `instructions`, `previous_response_id`, `max_output_tokens`; retrieve and delete stored responses.
// kvrag's plan, reuse and timings travel in the response's `kvrag` field; its knobs in the request's.
import { Hono } from 'hono';
import { streamSSE } from 'hono/streaming';
import { z } from 'zod';
import { AppError } from '../../../contracts/errors.ts';
import { REUSE_MODES } from '../../../contracts/reuse.ts';
import type { ChatMessage } from '../../../contracts/runner-api.ts';
import { createResponse, type ResponseInput, type ResponseRun } from '../../openai/responses/run.ts';
import { type InputItem, itemId, outputText } from '../../openai/responses/objects.ts';
import { deleteResponse, loadInputItems, loadResponse } from '../../openai/responses/store.ts';
import { QUALITY } from '../../planning/plan.ts';
import type { AppEnv } from '../../services.ts';
import { answerDeps, logAnswer } from '../answer-context.ts';
import { api, requireTenant } from '../auth.ts';
import { iterativeOf, iterativeSchema } from '../query.ts';
import { jsonBody, metadataSchema, queryParams } from '../validate.ts';
import { pageOf } from '../pagination.ts';
import { nowOf, openAiListQuery } from './common.ts';

const text = z.string().max(1_000_000);
const contentPart = z.union([
  z.object({ type: z.literal('input_text'), text }),
  z.object({ type: z.literal('output_text'), text }),
]);
const itemIdField = z.string().min(1).max(128).optional();
const messageItem = z.object({
  id: itemIdField,
  type: z.literal('message').optional(),
  role: z.enum(['user', 'system', 'developer', 'assistant']),
  content: z.union([text, z.array(contentPart).max(64)]),
});
/**
 * A file_search_call handed back as input (manual conversation state): kept out of the prompt, its fields
 * kept for GET …/input_items.
 */
const fileSearchCallItem = z.object({ id: itemIdField, type: z.literal('file_search_call') }).passthrough();

const fileSearchTool = z.strictObject({
  type: z.literal('file_search'),
  vector_store_ids: z.array(z.string().min(1).max(64)).min(1).max(16),
  max_num_results: z.number().int().min(1).max(50).optional(),
  filters: z.unknown().optional(),
  ranking_options: z
    .strictObject({
      ranker: z.enum(['auto', 'default-2024-11-15', 'none']).optional(),
      score_threshold: z.number().min(0).max(1).optional(),
      hybrid_search: z
        .strictObject({ embedding_weight: z.number().min(0), text_weight: z.number().min(0) })
        .refine((w) => w.embedding_weight + w.text_weight > 0, 'the weights may not both be 0')
        .optional(),
    })
    .optional(),
});

export const responseBodySchema = z.object({
  model: z.string().min(1).max(256),
  input: z.union([
    text.min(1),
    z
      .array(z.union([messageItem, fileSearchCallItem]))
      .min(1)
      .max(256),
  ]),
  instructions: text.nullish(),
  previous_response_id: z.string().max(64).nullish(),
  tools: z.array(fileSearchTool).max(1).default([]).describe('Only the file_search tool is offered.'),
  tool_choice: z
    .union([z.enum(['auto', 'none', 'required']), z.strictObject({ type: z.literal('file_search') })])
    .default('auto'),
  include: z.array(z.string().max(64)).max(16).nullish(),
  max_output_tokens: z.number().int().min(1).max(4096).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  stream: z.boolean().default(false),
  store: z.boolean().default(true),
  metadata: metadataSchema.nullish(),
  parallel_tool_calls: z.boolean().default(true),
  truncation: z.enum(['auto', 'disabled']).nullish(),
  text: z
    .object({ format: z.object({ type: z.literal('text') }).optional() })
    .nullish()
    .describe('Plain text only; structured outputs are not offered.'),
  background: z.literal(false).nullish().describe('Background responses are not offered.'),
  user: z.string().max(256).optional(),
  kvrag: z
    .strictObject({
      quality: z.enum(QUALITY).optional(),
      reuse: z.enum([...REUSE_MODES, 'auto']).optional(),
      iterative: iterativeSchema,
    })
    .optional(),
});
type ResponseBody = z.output<typeof responseBodySchema>;

/** Input items as chat messages (developer → system; parts joined); file_search_call items dropped. */
function messagesOf(input: ResponseBody['input']): ChatMessage[] {
  if (typeof input === 'string') return [{ role: 'user', content: input }];
  return input.flatMap((item) =>
    item.type !== 'file_search_call'
      ? [
          {
            role: item.role === 'developer' ? ('system' as const) : item.role,
            content: partText(item.content),
          },
        ]
      : [],
  );
}

const partText = (content: string | { text: string }[]) =>
  typeof content === 'string' ? content : content.map((p) => p.text).join('');

/**
 * The input items as stored for GET …/input_items: messages as OpenAI lists them (an assistant turn as an
 * output message), each with its given id or a new one; file_search_call items as given.
 */
function inputItemsOf(input: ResponseBody['input']): InputItem[] {
  const items = typeof input === 'string' ? [{ role: 'user' as const, content: input }] : input;
  return items.map((item): InputItem => {
    if (item.type === 'file_search_call') return { ...item, id: item.id ?? itemId('fs') };
    const id = item.id ?? itemId('msg');
    const textOf = partText(item.content);
    if (item.role === 'assistant')
      return {
        id,
        type: 'message',
        role: 'assistant',
        status: 'completed',
        content: [outputText(textOf, [])],
      };
    return {
      id,
      type: 'message',
      role: item.role,
      status: 'completed',
      content: [{ type: 'input_text', text: textOf }],
    };
  });
}

/** The use case's input from the body. */
function inputOf(body: ResponseBody): ResponseInput {
  const tool = body.tool_choice === 'none' ? undefined : body.tools[0];
  if (body.tool_choice !== 'auto' && body.tool_choice !== 'none' && !tool)
    throw new AppError('bad_request', 'tool_choice asks for file_search but no file_search tool is given', {
      issues: [{ path: ['tool_choice'] }],
    });
  const hybrid = tool?.ranking_options?.hybrid_search;
  return {
    model: body.model,
    messages: messagesOf(body.input),
    inputItems: inputItemsOf(body.input),
    instructions: body.instructions ?? undefined,
    previousResponseId: body.previous_response_id ?? undefined,
    fileSearch: tool && {
      vectorStoreIds: tool.vector_store_ids,
      maxNumResults: tool.max_num_results,
      filters: tool.filters,
      scoreThreshold: tool.ranking_options?.score_threshold,
      weights: hybrid && { vector: hybrid.embedding_weight, text: hybrid.text_weight },
    },
    includeResults: body.include?.includes('file_search_call.results') ?? false,
    maxOutputTokens: body.max_output_tokens ?? undefined,
    sampling: { temperature: body.temperature ?? 1, topP: body.top_p ?? 1 },
    store: body.store,
    rag: body.kvrag && {
      quality: body.kvrag.quality,
      reuse: body.kvrag.reuse,
      iterative: iterativeOf(body.kvrag.iterative),
    },
    echo: {
      instructions: body.instructions ?? null,
      max_output_tokens: body.max_output_tokens ?? null,
      metadata: body.metadata ?? {},
      parallel_tool_calls: body.parallel_tool_calls,
      store: body.store,
      temperature: body.temperature ?? 1,
      text: { format: { type: 'text' } },
      tool_choice: body.tool_choice,
      tools: body.tools,
      top_p: body.top_p ?? 1,
      truncation: body.truncation ?? 'disabled',
      ...(body.user !== undefined ? { user: body.user } : {}),
    },
  };
}

export function responseRoutes(): Hono<AppEnv> {
  const r = new Hono<AppEnv>();

  r.post('/', async (c) => {
    const t0 = performance.now();
    const tenantId = requireTenant(c);
    const body = await jsonBody(c, responseBodySchema);
    const deps = answerDeps(c);
    // refusals (404, 400) are thrown here, before anything is streamed
    const pending = await createResponse(deps, tenantId, inputOf(body), nowOf(c));
    const opts = { t0, signal: c.req.raw.signal, requestId: c.get('requestId') };
    const log = async (run: ResponseRun) => {
      if (!run.prepared || !run.answer) return;
      const u = run.answer.answer.usage;
      await logAnswer(c, deps, {
        tenantId,
        question: run.question,
        plan: run.prepared.plan,
        timings: {
          retrieval_ms: Math.round(run.prepared.retrievalMs * 10) / 10,
          ttft_ms: Math.round(run.answer.ttft * 10) / 10,
          total_ms: Math.round((performance.now() - t0) * 10) / 10,
        },
        usage: {
          input_tokens: u.promptTokens,
          output_tokens: u.completionTokens,
          cached_tokens: u.cachedTokens,
          cached_answer: run.answer.runner === null,
          route: 'responses',
        },
      });
    };
    if (!body.stream) {
      const run = await pending.run(opts);
      await log(run);
      return c.json(run.response);
    }
    return streamSSE(c, async (stream) => {
      const run = await pending.run({
        ...opts,
        emit: (e) => stream.writeSSE({ event: e.type, data: JSON.stringify(e) }),
      });
      await log(run);
    });
  });

  r.get('/:response', async (c) => {
    const tenantId = requireTenant(c);
    const q = queryParams(c, z.object({ stream: z.enum(['true', 'false']).optional() }).passthrough());
    if (q.stream === 'true')
      throw new AppError('bad_request', 'streaming a stored response again is not offered');
    const row = await loadResponse(api(c).db, tenantId, c.req.param('response'));
    return c.json(row.body);
  });

  r.get('/:response/input_items', async (c) => {
    const tenantId = requireTenant(c);
    // `include` names extra fields of output items; input items here have none to add
    const q = queryParams(c, openAiListQuery.extend({ include: z.unknown().optional() }));
    const items = await loadInputItems(api(c).db, tenantId, c.req.param('response'));
    return c.json(pageOf(items, q));
  });

  r.delete('/:response', async (c) => {
    const tenantId = requireTenant(c);
    const id = c.req.param('response');
    await deleteResponse(api(c).db, tenantId, id);
    return c.json({ id: id.toLowerCase(), object: 'response' as const, deleted: true });
  });

  return r;
}
