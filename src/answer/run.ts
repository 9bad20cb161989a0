// Run a prepared answer: route the runner request (RunnerPool: cache-aware ranking, failover before the
// first token), stream its text deltas to the caller, keep deterministic answers in the answer cache, and
// log the finished answer (query_log). The caller shapes events and responses; nothing here knows HTTP.
//
//   const request = runnerRequest(p, { question }, sampling);            // prompt.ts
//   const key = answerCacheKey(tenantId, 'query', p, request);
//   const out = await runAnswer(deps.answer, p, request, { t0, signal, hit: cache?.get(key), cacheKey: key },
//     async (delta) => send(delta));
//   out.answer   {text, finishReason, usage, plan, citations}   out.ttft   out.runner {id, failed_over} | null
//   out.ttftSplit  {retrieval, queue, load, rotate, recompute, squeeze, prefill, other} ms | null
//   await recordAnswer(deps, { tenantId, requestId, question, plan: p.plan, timings, usage });
import type { GenerateRequest, RunnerTimings } from '../../contracts/runner-api.ts';
import { queryLog } from '../db/schema.ts';
import type { Plan } from '../planning/plan.ts';
import type { RouteResult } from '../routing/runner-client.ts';
import { AnswerCache } from './cache.ts';
import type { AnswerDeps, AnswerServices, CachedAnswer, Prepared } from './services.ts';

export interface AnswerRun {
  answer: CachedAnswer;
  /** ms from t0 to the first token (or to the cached answer). */
  ttft: number;
  /** Which runner answered; null for a cached answer. */
  runner: { id: string; failed_over: string[] } | null;
  /** Where ttft went (ttftSplit); null for a cached answer or a runner that does not report its parts. */
  ttftSplit: TtftSplit | null;
}

/** The parts of an answer's ttft, ms: they add up to it. */
export type TtftSplit = Record<
  'retrieval' | 'queue' | 'load' | 'rotate' | 'recompute' | 'squeeze' | 'prefill' | 'other',
  number
>;

/**
 * The answer's ttft (ms, as the API measured it from t0) split into where it went: the API's retrieval,
 * then the runner's queue wait, assembly phases and live prefill up to the first token
 * (contracts/runner-api.ts runnerTimingsSchema), and `other`: the rest (planning, routing, transport, the
 * runner reading the request before its sequence starts). Null when the runner did not report its parts.
 */
export function ttftSplit(retrievalMs: number, ttftMs: number, t: RunnerTimings): TtftSplit | null {
  if (t.prefill === undefined || t.prefill < 0) return null;
  const parts = {
    retrieval: retrievalMs,
    queue: t.queueWait,
    load: t.load ?? 0,
    rotate: t.rotate ?? 0,
    recompute: t.recompute ?? 0,
    squeeze: t.squeeze ?? 0,
    prefill: t.prefill,
  };
  const known = Object.values(parts).reduce((a, b) => a + b, 0);
  return { ...parts, other: Math.max(0, ttftMs - known) };
}

export interface RunOptions {
  /** performance.now() when the request arrived (ttft is measured from it). */
  t0: number;
  /** The client going away: the runner stops the sequence. */
  signal: AbortSignal;
  /** A cached answer to replay instead of calling a runner. */
  hit?: CachedAnswer;
  /** Where to store the answer (deterministic requests only). */
  cacheKey?: string;
  /** Forwarded to the runner, so its logs carry the caller's request id. */
  requestId?: string;
}

/**
 * The answer-cache key of a request: the tenant and what the runner would be asked (retrieved chunks
 * included), so new or changed documents miss. `family` keeps route families apart.
 */
export function answerCacheKey(
  tenantId: string,
  family: string,
  p: Prepared,
  request: GenerateRequest,
): string {
  return AnswerCache.key(tenantId, { route: family, model: p.model.fingerprint, rbody: request });
}

/**
 * Runs one generation for a prepared request — or replays `opts.hit` — calling onToken for each text delta;
 * stores the answer under `opts.cacheKey` when one is given.
 */
export async function runAnswer(
  svc: AnswerServices,
  p: Prepared,
  request: GenerateRequest,
  opts: RunOptions,
  onToken: (t: string) => Promise<void>,
): Promise<AnswerRun> {
  if (opts.hit) {
    if (opts.hit.text) await onToken(opts.hit.text);
    return { answer: opts.hit, ttft: performance.now() - opts.t0, runner: null, ttftSplit: null };
  }
  const route: RouteResult = { runnerId: '', failedOver: [] };
  let ttft = -1;
  let text = '';
  let usage: CachedAnswer['usage'] | null = null;
  for await (const ev of svc.runners.generate(
    p.model.fingerprint,
    p.artifactKeys,
    request,
    route,
    opts.signal,
    opts.requestId,
  )) {
    if (ev.type === 'token') {
      if (ttft < 0) ttft = performance.now() - opts.t0;
      text += ev.text;
      await onToken(ev.text);
    } else usage = ev.usage;
  }
  const answer: CachedAnswer = {
    text: usage?.text ?? text,
    finishReason: usage?.finishReason ?? 'stop',
    usage: usage!,
    plan: p.plan,
    citations: p.citations,
  };
  if (opts.cacheKey !== undefined) svc.cache?.set(opts.cacheKey, answer);
  if (ttft < 0) ttft = performance.now() - opts.t0;
  return {
    answer,
    ttft,
    runner: { id: route.runnerId, failed_over: route.failedOver },
    ttftSplit: ttftSplit(p.retrievalMs, ttft, answer.usage.timingsMs),
  };
}

/** One query_log row: what was asked, the plan, timings (ms) and usage in the caller's names. */
export interface AnswerRecord {
  tenantId: string;
  requestId: string;
  question: string;
  plan: Plan;
  timings: Record<string, number>;
  usage: Record<string, unknown>;
}

/** Writes one query_log row; a failure to log never fails the answer (it is logged as a warning). */
export async function recordAnswer(deps: AnswerDeps, r: AnswerRecord): Promise<void> {
  try {
    await deps.db.insert(queryLog).values(r);
  } catch (e) {
    deps.log?.('warn', 'query_log insert failed', { err: String(e) });
  }
}
