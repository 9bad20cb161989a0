// createApp(services): the Hono application shared by the Node server and the Workers entry.
// Request ids, the error envelope, and the routes; no Node-only imports may be reachable from here.
import { Hono } from 'hono';
import { AppError, asAppError, toEnvelope } from './errors.ts';
import { healthRoutes } from './routes/health.ts';
import type { AppEnv, Services } from './services.ts';

export function createApp(services: Services): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.use('*', async (c, next) => {
    const incoming = c.req.header('x-request-id');
    const id = incoming && /^[\w.-]{1,128}$/.test(incoming) ? incoming : crypto.randomUUID();
    c.set('requestId', id);
    c.set('services', services);
    c.header('x-request-id', id);
    await next();
  });

  app.route('/', healthRoutes());

  app.notFound((c) => {
    const err = new AppError('not_found', `no route for ${c.req.method} ${new URL(c.req.url).pathname}`);
    return c.json(toEnvelope(err, c.get('requestId') ?? ''), 404);
  });

  app.onError((e, c) => {
    const err = asAppError(e);
    if (err.status >= 500)
      services.log?.('error', 'request failed', { request_id: c.get('requestId'), err: String(e) });
    return c.json(toEnvelope(err, c.get('requestId') ?? ''), err.status as 400);
  });

  return app;
}
