// The runner's HTTP API (Hono): POST /v1/generate (SSE), POST /v1/precompute, GET /v1/artifacts/:key,
// GET /v1/model (the model profile), /healthz, /readyz, /metrics. Every route but /healthz requires the
// runner credential (auth.ts); bodies are read under core.limits.maxBodyBytes while they stream in and
// checked with zod, generate requests against the operator's caps (core.limits); every error is the
// envelope of contracts/errors.ts (engine errors mapped in ./errors.ts).
import { type Context, Hono } from 'hono';
import { readBodyLimited } from '../../contracts/http-body.ts';
import { streamSSE } from 'hono/streaming';
import { AppError, parseWith, toEnvelope } from '../../contracts/errors.ts';
import type { Log } from '../../contracts/log.ts';
import { artifactObjectKey, isArtifactKey } from '../../contracts/artifacts.ts';
import type { SeqRequest } from '../engine/generate/request.ts';
import { precomputeChunks } from '../engine/kv/precompute.ts';
import { requireRunnerCredential } from './auth.ts';
import { blockTokens, type RunnerCore, type RunnerLimits, tierStats } from './core.ts';
import { runnerError } from './errors.ts';
import { squeezedMode } from './squeezed-control.ts';
import { type GenerateBody, generateBodySchema, precomputeBodySchema } from '../../contracts/runner-api.ts';

type RunnerEnv = { Variables: { requestId: string } };

export function createRunnerApp(core: RunnerCore, log?: Log): Hono<RunnerEnv> {
  const app = new Hono<RunnerEnv>();

  app.use('*', async (c, next) => {
    const incoming = c.req.header('x-request-id');
    const id = incoming && /^[\w.-]{1,128}$/.test(incoming) ? incoming : crypto.randomUUID();
    c.set('requestId', id);
    c.header('x-request-id', id);
    await next();
  });
  app.notFound((c) =>
    c.json(toEnvelope(new AppError('not_found', 'no such route'), c.get('requestId') ?? ''), 404),
  );
  app.onError((e, c) => {
    const err = runnerError(e);
    if (err.status >= 500)
      log?.('error', 'runner request failed', { request_id: c.get('requestId'), err: String(e) });
    return c.json(toEnvelope(err, c.get('requestId') ?? ''), err.status as 400);
  });

  app.get('/healthz', (c) => c.json({ ok: true }));
  const authenticate = requireRunnerCredential(core.credential);
  app.use('*', (c, next) => (c.req.path === '/healthz' ? next() : authenticate(c, next)));
  app.get('/readyz', (c) =>
    core.ready
      ? c.json({ ready: true, fingerprint: core.engine.fingerprint })
      : c.json(toEnvelope(new AppError('unavailable', 'runner is not ready'), c.get('requestId')), 503),
  );
  // what the API plans from (contracts/model-profile.ts); the same object rides in every heartbeat
  app.get('/v1/model', (c) => c.json(core.engine.profile));
  app.get('/metrics', (c) =>
    c.text(
      core.metrics.render({ scheduler: () => core.scheduler.stats(), tiers: () => tierStats(core) }),
      200,
      {
        'content-type': 'text/plain; version=0.0.4; charset=utf-8',
      },
    ),
  );

  app.get('/v1/artifacts/:key', async (c) => {
    const key = c.req.param('key');
    if (!isArtifactKey(key))
      throw new AppError('bad_request', 'artifact key must be 64 lowercase hex characters');
    const tiers = { engine: core.engineTier.has(key), ...(await core.store.where(key)) };
    const order = ['engine', 'host', 'disk', 'object'] as const;
    const tier = order.find((t) => tiers[t as keyof typeof tiers]) ?? null;
    return c.json({
      key,
      present: tier !== null,
      tier,
      tiers,
      objectKey: artifactObjectKey(core.engine.fingerprint, key),
    });
  });

  app.post('/v1/precompute', async (c) => {
    if (!core.ready) throw new AppError('unavailable', 'runner is shutting down');
    const body = parseWith(precomputeBodySchema, await jsonOf(c.req.raw, core.limits), 'request body');
    const chunks = body.chunks.map((ch) => ({ tokenIds: ch.tokenIds ?? core.engine.encode(ch.text!) }));
    for (const [i, ch] of chunks.entries()) {
      if (ch.tokenIds.length === 0) throw new AppError('bad_request', `chunk ${i} encodes to no tokens`);
      if (ch.tokenIds.length > core.engine.maxContext)
        throw new AppError('bad_request', `chunk ${i} exceeds the model context ${core.engine.maxContext}`);
      if (ch.tokenIds.some((t) => t >= core.engine.config.vocabSize))
        throw new AppError('bad_request', `chunk ${i} has token ids outside the vocabulary`);
    }
    // at most precomputeBatch chunks per hold of the engine, so generation goes on between batches
    const results = [];
    for (let i = 0; i < chunks.length; i += core.limits.precomputeBatch) {
      const part = chunks.slice(i, i + core.limits.precomputeBatch);
      results.push(
        ...(await core.scheduler.mutex.run(() =>
          precomputeChunks(core.engine, core.store, part, { dtype: body.dtype ?? core.dtype }),
        )),
      );
    }
    for (const r of results) core.metrics.precompute(r.skipped ? 'skipped' : 'stored', 1);
    return c.json({
      fingerprint: core.engine.fingerprint,
      artifacts: results.map((r) => ({ ...r, objectKey: artifactObjectKey(core.engine.fingerprint, r.key) })),
    });
  });

  app.post('/v1/generate', async (c) => {
    if (!core.ready) throw new AppError('unavailable', 'runner is shutting down');
    // an idle scheduler's admission window waits for this request while it is read (a burst's first step)
    const read = core.scheduler.arriving();
    try {
      return await generate(c);
    } finally {
      read();
    }
  });

  /** POST /v1/generate once admitted to be read: body, caps, the sequence queued, the SSE stream. */
  const generate = async (c: Context<RunnerEnv>) => {
    const body = parseWith(generateBodySchema, await jsonOf(c.req.raw, core.limits), 'request body');
    checkCaps(body, core.limits);
    const ac = new AbortController();
    // the client going away (request signal) ends the sequence and frees its KV memory
    c.req.raw.signal.addEventListener('abort', () => ac.abort(), { once: true });
    const queue: { event: string; data: unknown }[] = [];
    let wake: (() => void) | null = null;
    const push = (event: string, data: unknown) => {
      queue.push({ event, data });
      wake?.();
    };
    const req = await toSeqRequest(core, body, ac.signal);
    req.onText = (text) => push('token', { text });
    const requestId = c.get('requestId');
    // one log line per sequence, under the request id the API forwarded
    const done = core.scheduler.submit(req).then(
      (usage) => {
        log?.('info', 'sequence finished', {
          request_id: requestId,
          mode: req.mode,
          finish_reason: usage.finishReason,
          prompt_tokens: usage.promptTokens,
          cached_tokens: usage.cachedTokens,
          prefill_tokens: usage.prefillTokens,
          completion_tokens: usage.completionTokens,
          preemptions: usage.preemptions,
          queue_wait_ms: usage.timingsMs.queueWait,
          ttft_ms: usage.timingsMs.ttft,
          total_ms: usage.timingsMs.total,
        });
        push('done', usage);
      },
      (err) => {
        const e = runnerError(err);
        log?.(e.status >= 500 ? 'error' : 'warn', 'sequence failed', {
          request_id: requestId,
          code: e.code,
          err: e.message,
        });
        push('error', toEnvelope(e, requestId).error);
      },
    );
    return streamSSE(c, async (stream) => {
      stream.onAbort(() => ac.abort());
      for (;;) {
        while (queue.length > 0) {
          const m = queue.shift()!;
          await stream.writeSSE({ event: m.event, data: JSON.stringify(m.data) });
          if (m.event === 'done' || m.event === 'error') return;
        }
        if (stream.aborted) {
          await done;
          return;
        }
        await new Promise<void>((r) => {
          wake = r;
        });
        wake = null;
      }
    });
  };

  return app;
}

async function jsonOf(req: Request, limits: RunnerLimits): Promise<unknown> {
  const type = (req.headers.get('content-type') ?? '').split(';')[0].trim().toLowerCase();
  if (type !== 'application/json')
    throw new AppError('unsupported_media_type', 'send the request body as application/json');
  const got = await readBodyLimited(req, limits.maxBodyBytes);
  if (!got.ok)
    throw new AppError('payload_too_large', `request body is larger than the limit of ${got.limit} bytes`, {
      limit_bytes: got.limit,
    });
  try {
    return JSON.parse(new TextDecoder().decode(got.bytes));
  } catch {
    throw new AppError('bad_request', 'request body is not valid JSON');
  }
}

/** The operator's caps on one generate request (400 naming the cap). */
function checkCaps(body: GenerateBody, limits: RunnerLimits): void {
  if (body.maxTokens > limits.maxTokens)
    throw new AppError(
      'bad_request',
      `maxTokens ${body.maxTokens} is over this runner's cap of ${limits.maxTokens}`,
    );
  if (body.deadlineMs !== undefined && body.deadlineMs > limits.maxDeadlineMs)
    throw new AppError(
      'bad_request',
      `deadlineMs ${body.deadlineMs} is over this runner's cap of ${limits.maxDeadlineMs}`,
    );
}

/** The scheduler's request from the API body: blocks resolved to token ids, the question encoded. */
async function toSeqRequest(core: RunnerCore, body: GenerateBody, signal: AbortSignal): Promise<SeqRequest> {
  const e = core.engine;
  const system =
    body.system === undefined
      ? []
      : typeof body.system === 'string'
        ? e.encode(body.system)
        : await blockTokens(core, body.system);
  const chunks = await Promise.all(body.chunks.map((b) => blockTokens(core, b)));
  let question: number[];
  if (body.messages) {
    if (!e.chatTemplate)
      throw new AppError('bad_request', 'this model has no chat template; send `question`');
    question = e.encodeChat(body.messages);
  } else
    question = typeof body.question === 'string' ? e.encode(body.question) : [...body.question!.tokenIds];
  return {
    system,
    chunks: chunks.filter((c) => c.length > 0),
    question,
    mode: body.reuse.mode,
    blendRatio: body.reuse.blendRatio,
    linkTokens: body.reuse.linkTokens,
    squeezed: squeezedMode(e, body.squeezed),
    sparse: body.sparse ?? null,
    maxTokens: body.maxTokens,
    sampling: body.sampling,
    stopTokenIds: body.ignoreEos ? [] : undefined,
    stopStrings: body.stop,
    signal,
    // every sequence has a deadline: the request's, or the operator's cap
    deadline: performance.now() + (body.deadlineMs ?? core.limits.maxDeadlineMs),
  };
}
