// What the answer routes hand the RAG use case (src/answer/): its dependencies from the request's services,
// and the HTTP side of logging an answer (the route's metrics) around the use case's query_log row.
import type { Context } from 'hono';
import { routePath } from 'hono/route';
import { requireAnswerServices } from '../answer/prepare.ts';
import { type AnswerRecord, recordAnswer } from '../answer/run.ts';
import type { AnswerDeps } from '../answer/services.ts';
import type { AppEnv } from '../services.ts';
import { api } from './auth.ts';

/** The use case's dependencies; 503 `unavailable` when this server has no runners. */
export function answerDeps(c: Context<AppEnv>): AnswerDeps {
  const { db, embeddings, answer } = api(c);
  return { db, embeddings, answer: requireAnswerServices(answer), log: c.get('services').log };
}

/** Records the answer's metrics under this route and its query_log row; never fails the answer. */
export async function logAnswer(
  c: Context<AppEnv>,
  deps: AnswerDeps,
  r: Omit<AnswerRecord, 'requestId'>,
): Promise<void> {
  c.get('metrics')?.answered({
    route: routePath(c),
    cachedAnswer: r.usage.cached_answer === true,
    retrievalMs: r.timings.retrieval_ms ?? 0,
    ttftMs: r.timings.ttft_ms ?? 0,
    totalMs: r.timings.total_ms ?? 0,
  });
  await recordAnswer(deps, { ...r, requestId: c.get('requestId') });
}
