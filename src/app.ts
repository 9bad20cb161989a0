// createApp(services): the Hono application shared by the Node server and the Workers entry.
// Request ids, the error envelope, body limits, auth, and the routes; no Node-only imports may be
// reachable from here.
import { Hono } from 'hono';
import { routePath } from 'hono/route';
import { ApiMetrics } from './api-metrics.ts';
import { AppError, asAppError, toEnvelope } from '../contracts/errors.ts';
import { adminRoutes } from './routes/admin.ts';
import { answerRoutes } from './routes/answer-routes.ts';
import { authenticate } from './routes/auth.ts';
import { chunkRoutes } from './routes/chunks.ts';
import { consoleRoutes } from './routes/console.ts';
import { MetricsRegistry, PROMETHEUS_CONTENT_TYPE } from './metrics.ts';
import { limitBody } from './routes/body-limit.ts';
import { collectionRoutes } from './routes/collections.ts';
import { documentRoutes } from './routes/documents.ts';
import { healthRoutes } from './routes/health.ts';
import { jobRoutes } from './routes/jobs.ts';
import { openApiRoutes } from './routes/openapi.ts';
import { isOpenAiPath, OPENAI_PREFIXES, toOpenAiError } from './routes/openai/errors.ts';
import { openAiRoutes } from './routes/openai/index.ts';
import { runnerRoutes } from './routes/runners.ts';
import { searchRoutes } from './routes/search.ts';
import type { AppEnv, Services } from './services.ts';

/** Multipart framing and JSON escaping on top of the document bytes themselves. */
const UPLOAD_OVERHEAD_BYTES = 64 * 1024;
const RESOURCE_PREFIXES = [
  '/v1/admin',
  '/v1/collections',
  '/v1/jobs',
  '/v1/chunks',
  '/v1/runners',
  ...OPENAI_PREFIXES,
];
const UPLOAD_PATH = /^\/v1\/(collections\/[^/]+\/documents|files)\/?$/;

export function createApp(services: Services): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const { maxBodyBytes, maxUploadBytes } = services.config;

  const registry = services.metrics ?? new MetricsRegistry();
  const metrics = new ApiMetrics(registry);

  // Request id (the caller's x-request-id when well-formed, else a new one; echoed in the response),
  // then one access-log line and the request metrics once the response head is ready.
  app.use('*', async (c, next) => {
    const t0 = performance.now();
    const incoming = c.req.header('x-request-id');
    const id = incoming && /^[\w.-]{1,128}$/.test(incoming) ? incoming : crypto.randomUUID();
    c.set('requestId', id);
    c.set('services', services);
    c.set('metrics', metrics);
    c.header('x-request-id', id);
    await next();
    const ms = performance.now() - t0;
    // the matched route's pattern (bounded label values); a path no route matched is `unmatched`
    const matched = routePath(c, -1);
    const route = c.res.status === 404 && matched.endsWith('*') ? 'unmatched' : matched;
    metrics.request(c.req.method, route, c.res.status, ms / 1000);
    if (route !== '/metrics' && route !== '/healthz' && route !== '/readyz')
      services.log?.('info', 'request', {
        request_id: id,
        method: c.req.method,
        route,
        status: c.res.status,
        duration_ms: Math.round(ms * 10) / 10,
      });
  });

  app.route('/', healthRoutes());
  app.get('/metrics', async (c) =>
    c.body(await registry.render(), 200, { 'content-type': PROMETHEUS_CONTENT_TYPE }),
  );
  app.route('/', openApiRoutes());
  app.route('/', consoleRoutes());

  // Resource prefixes only (an unknown /v1 path stays a plain 404). Authenticate first: an anonymous
  // caller cannot make the server read a large body.
  const auth = authenticate();
  const limit = limitBody((path, method) =>
    method === 'POST' && UPLOAD_PATH.test(path) ? maxUploadBytes + UPLOAD_OVERHEAD_BYTES : maxBodyBytes,
  );
  for (const prefix of RESOURCE_PREFIXES) app.use(`${prefix}/*`, auth, limit);

  app.route('/v1/admin', adminRoutes());
  app.route('/v1/collections', collectionRoutes());
  app.route('/v1/collections', documentRoutes());
  app.route('/v1/collections', searchRoutes());
  app.route('/v1/jobs', jobRoutes());
  app.route('/v1/chunks', chunkRoutes());
  app.route('/v1/runners', runnerRoutes());
  // OpenAI's Files, Vector Stores, Responses and Embeddings, answering errors in OpenAI's shape
  app.route('/v1', openAiRoutes());
  // query, chat completions and models: their own auth and body limit (outside the prefixes above)
  app.route('/v1', answerRoutes(maxBodyBytes));

  // kvrag's envelope, or OpenAI's shape of it on the OpenAI routes (the SDKs raise their typed errors)
  const errorBody = (path: string, err: AppError, requestId: string) =>
    isOpenAiPath(path) ? toOpenAiError(err, requestId) : toEnvelope(err, requestId);

  app.notFound((c) => {
    const err = new AppError('not_found', `no route for ${c.req.method} ${new URL(c.req.url).pathname}`);
    return c.json(errorBody(c.req.path, err, c.get('requestId') ?? ''), 404);
  });

  app.onError((e, c) => {
    const err = asAppError(e);
    if (err.status >= 500)
      services.log?.('error', 'request failed', { request_id: c.get('requestId'), err: String(e) });
    // A refused body is drained only up to a cap (body-limit.ts), so its rest may still be in flight: the
    // server drops the connection, so tell the client not to reuse it (its next request there would fail).
    if (err.code === 'payload_too_large') c.header('connection', 'close');
    return c.json(errorBody(c.req.path, err, c.get('requestId') ?? ''), err.status as 400);
  });

  return app;
}
